from django.urls import path

from . import views

app_name = "accounts"
urlpatterns = [
    path("users/", views.user_list, name="user_list"),
    path("users/new/", views.user_create, name="user_create"),
    path("users/<int:pk>/", views.user_edit, name="user_edit"),
    path("users/<int:pk>/password-reset/", views.user_password_reset, name="user_password_reset"),
    path("profile/", views.profile, name="profile"),
    path("profile/api-token/", views.api_token_rotate, name="api_token_rotate"),
    path("profile/password/", views.PasswordChangeView.as_view(), name="password_change"),
]

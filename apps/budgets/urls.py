from django.urls import path

from . import views

app_name = "budgets"
urlpatterns = [
    path("budgets/", views.budget_list, name="list"),
    path("budgets/new/", views.budget_create, name="create"),
    path("budgets/preview/", views.budget_preview, name="preview"),
    path("budgets/<int:pk>/", views.budget_detail, name="detail"),
    path("budgets/<int:pk>/edit/", views.budget_edit, name="edit"),
    path("budgets/<int:pk>/delete/", views.budget_delete, name="delete"),
]

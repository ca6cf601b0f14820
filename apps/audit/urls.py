from django.urls import path

from . import views

app_name = "audit"
urlpatterns = [
    path("audit/", views.audit_list, name="event_list"),
    path("audit/<int:pk>/", views.audit_detail, name="event_detail"),
]

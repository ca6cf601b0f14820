from django.urls import path

from . import views

app_name = "telemetry"
urlpatterns = [
    path("agents/<int:pk>/telemetry/", views.agent_telemetry, name="agent_telemetry"),
    path("agents/<int:pk>/records/", views.records, name="records"),
    path("agents/<int:pk>/records/export/", views.session_export, name="session_export"),
    path("telemetry/records/<int:pk>/", views.record_detail, name="record_detail"),
    path("telemetry/records/<int:pk>/export/", views.record_export, name="record_export"),
]

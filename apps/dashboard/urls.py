from django.urls import path

from . import docs, incident, views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("overview/live/", views.overview_live, name="overview_live"),
    path(
        "incidents/<int:agent_id>/<int:environment_id>/", incident.incident_panel, name="incident"
    ),
    path(
        "incidents/<int:agent_id>/<int:environment_id>/stop-harm/",
        incident.incident_stop_harm,
        name="incident_stop_harm",
    ),
    path(
        "incidents/<int:agent_id>/<int:environment_id>/rollback/",
        incident.incident_rollback,
        name="incident_rollback",
    ),
    path(
        "incidents/<int:agent_id>/<int:environment_id>/pause/",
        incident.incident_pause,
        name="incident_pause",
    ),
    path(
        "incidents/<int:agent_id>/<int:environment_id>/shrink/",
        incident.incident_shrink,
        name="incident_shrink",
    ),
    path(
        "incidents/<int:agent_id>/<int:environment_id>/propagation/",
        incident.incident_propagation,
        name="incident_propagation",
    ),
    path("docs/screenshots/<str:name>", docs.doc_screenshot, name="doc_screenshot"),
    path("docs/<path:name>/", docs.doc, name="doc"),
]

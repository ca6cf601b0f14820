from django.urls import path

from . import docs, incident, views

app_name = "dashboard"
urlpatterns = [
    path("", views.overview, name="overview"),
    path("overview/live/", views.overview_live, name="overview_live"),
    path(
        "incidents/<int:agent_id>/<int:environment_id>/", incident.incident_panel, name="incident"
    ),
    path("docs/screenshots/<str:name>", docs.doc_screenshot, name="doc_screenshot"),
    path("docs/<path:name>/", docs.doc, name="doc"),
]

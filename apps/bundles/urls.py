from django.urls import path

from . import views

app_name = "bundles"
AGENT = "bundles/agents/<int:agent_pk>/"
urlpatterns = [
    path("bundles/", views.index, name="index"),
    path("bundles/gates/", views.gate_list, name="gate_list"),
    path("bundles/gates/<int:environment_pk>/", views.gate_edit, name="gate_edit"),
    path(AGENT, views.agent_versions, name="agent_versions"),
    path(f"{AGENT}new/", views.version_new, name="version_new"),
    path(f"{AGENT}diff/", views.version_diff, name="version_diff"),
    path(f"{AGENT}summary/", views.agent_summary, name="agent_summary"),
    path(f"{AGENT}v<int:number>/", views.version_detail, name="version_detail"),
    path(
        f"{AGENT}v<int:number>/bundle.yaml",
        views.version_download,
        {"fmt": "yaml"},
        name="version_yaml",
    ),
    path(
        f"{AGENT}v<int:number>/bundle.json",
        views.version_download,
        {"fmt": "json"},
        name="version_json",
    ),
]

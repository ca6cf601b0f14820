from django.urls import path

from .views import ReleaseViewSet

RELEASE = "agents/<int:agent_id>/releases/<int:environment_id>/"
urlpatterns = [
    path(
        "agents/<int:agent_id>/releases/",
        ReleaseViewSet.as_view({"get": "list"}),
        name="release-list",
    ),
    path(RELEASE, ReleaseViewSet.as_view({"get": "retrieve"}), name="release-detail"),
    path(f"{RELEASE}deploy/", ReleaseViewSet.as_view({"post": "deploy"}), name="release-deploy"),
    path(
        f"{RELEASE}rollback/", ReleaseViewSet.as_view({"post": "rollback"}), name="release-rollback"
    ),
]

from django.urls import path
from rest_framework.routers import SimpleRouter

from .deployments import DeploymentViewSet
from .views import ReleaseViewSet, RolloutPlanViewSet, RolloutViewSet

RELEASE = "agents/<int:agent_id>/releases/<int:environment_id>/"
router = SimpleRouter()
router.register("rollouts", RolloutViewSet, basename="rollout")
router.register("deployments", DeploymentViewSet, basename="deployment")
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
    path(
        "environments/<int:environment_id>/rollout-plan/",
        RolloutPlanViewSet.as_view({"get": "retrieve", "put": "update"}),
        name="rollout-plan-detail",
    ),
    *router.urls,
]

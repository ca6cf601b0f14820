from rest_framework.routers import SimpleRouter

from .views import AgentViewSet, EnvironmentViewSet, TenantViewSet

router = SimpleRouter()
router.register("tenants", TenantViewSet, basename="tenant")
router.register("agents", AgentViewSet, basename="agent")
router.register("environments", EnvironmentViewSet, basename="environment")
urlpatterns = router.urls

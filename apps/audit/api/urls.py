from rest_framework.routers import SimpleRouter

from .views import AuditCheckpointViewSet, AuditEventViewSet

router = SimpleRouter()
router.register("audit/checkpoints", AuditCheckpointViewSet, basename="audit-checkpoint")
router.register("audit-events", AuditEventViewSet, basename="audit-event")
urlpatterns = router.urls

"""Operator routes of the approvals app (mounted under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from .views import ApprovalQueueViewSet, ApprovalViewSet

router = SimpleRouter()
router.register("approvals", ApprovalViewSet, basename="approval")
router.register("approval-queues", ApprovalQueueViewSet, basename="approval-queue")
urlpatterns = router.urls

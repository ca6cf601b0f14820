from rest_framework.routers import SimpleRouter

from .views import FlagViewSet, KillSwitchViewSet, SegmentViewSet

router = SimpleRouter()
router.register("flags", FlagViewSet, basename="flag")
router.register("segments", SegmentViewSet, basename="segment")
router.register("kill-switches", KillSwitchViewSet, basename="kill-switch")
urlpatterns = router.urls

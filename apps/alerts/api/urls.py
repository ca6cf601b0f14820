from rest_framework.routers import SimpleRouter

from .views import AlertChannelViewSet, AlertViewSet

router = SimpleRouter()
router.register("alerts", AlertViewSet, basename="alert")
router.register("alert-channels", AlertChannelViewSet, basename="alert-channel")
urlpatterns = router.urls

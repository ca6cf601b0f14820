from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import MeView, RuntimeTokenViewSet, TokenObtainView, UserViewSet

router = SimpleRouter()
router.register("users", UserViewSet, basename="user")
router.register("runtime-tokens", RuntimeTokenViewSet, basename="runtime-token")
urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="api-token"),
    path("me/", MeView.as_view(), name="api-me"),
    *router.urls,
]

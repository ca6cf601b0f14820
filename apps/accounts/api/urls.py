from django.urls import path
from rest_framework.routers import SimpleRouter

from .views import MeView, TokenObtainView, UserViewSet

router = SimpleRouter()
router.register("users", UserViewSet, basename="user")
urlpatterns = [
    path("auth/token/", TokenObtainView.as_view(), name="api-token"),
    path("me/", MeView.as_view(), name="api-me"),
    *router.urls,
]

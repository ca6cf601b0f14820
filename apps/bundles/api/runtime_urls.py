"""Runtime-facing routes of the bundles app (mounted under /api/runtime/v1/)."""

from django.urls import path

from .views import RuntimeKeysView

urlpatterns = [
    path("keys", RuntimeKeysView.as_view(), name="runtime-keys"),
]

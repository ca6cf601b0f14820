"""``/api/client/…``: the Unleash client API paths Django serves. ``features`` and
``streaming`` are served by the runtime fast path (see ``apps.runtimes.unleash_client``)."""

from django.urls import path

from .client_views import ClientMetricsView, ClientRegisterView

urlpatterns = [
    path("register", ClientRegisterView.as_view(), name="unleash-client-register"),
    path("metrics", ClientMetricsView.as_view(), name="unleash-client-metrics"),
]

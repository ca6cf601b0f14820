from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


# Under /api/ every error is JSON (apps/core/errors.py); elsewhere Django's pages.
handler400 = "apps.core.errors.bad_request"
handler403 = "apps.core.errors.permission_denied"
handler404 = "apps.core.errors.page_not_found"
handler500 = "apps.core.errors.server_error"

api_v1 = [
    path("", include("apps.tenancy.api.urls")),
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.audit.api.urls")),
    path("", include("apps.bundles.api.urls")),
    path("", include("apps.flags.api.urls")),
    path("", include("apps.rollouts.api.urls")),
    path("", include("apps.alerts.api.urls")),
    path("", include("apps.budgets.api.urls")),
    path("", include("apps.approvals.api.urls")),
    path("", include("apps.runtimes.api.operator_urls")),
]

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("api/v1/", include(api_v1)),
    path("api/runtime/v1/", include("apps.bundles.api.runtime_urls")),
    path("api/runtime/v1/", include("apps.runtimes.api.urls")),
    path("api/runtime/v1/", include("apps.telemetry.api.urls")),
    path("api/runtime/v1/", include("apps.telemetry.api.otlp_urls")),
    path("api/client/", include("apps.flags.api.client_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's start-up script as its own request: no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("", include("apps.tenancy.urls")),
    path("", include("apps.accounts.urls")),
    path("", include("apps.audit.urls")),
    path("", include("apps.bundles.urls")),
    path("", include("apps.runtimes.urls")),
    path("", include("apps.rollouts.urls")),
    path("", include("apps.flags.urls")),
    path("", include("apps.telemetry.urls")),
    path("", include("apps.reviews.urls")),
    path("", include("apps.alerts.urls")),
    path("", include("apps.budgets.urls")),
    path("", include("apps.approvals.urls")),
    path("", include("apps.dashboard.urls")),
]

if settings.DJANGO_ADMIN_ENABLED:
    # read-only (controlplane/admin_site.py); off by default
    urlpatterns.insert(0, path("django-admin/", admin.site.urls))

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.http import HttpRequest, JsonResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView


def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


# The JSON error shape under /api/ when Django itself answers (no route, bad request, crash).
handler400 = "controlplane.api.bad_request"
handler404 = "controlplane.api.not_found"
handler500 = "controlplane.api.server_error"

api_v1 = [
    path("", include("apps.tenancy.api.urls")),
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.audit.api.urls")),
    path("", include("apps.bundles.api.urls")),
    path("", include("apps.flags.api.urls")),
]

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("healthz", healthz, name="healthz"),
    path("django-admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/runtime/v1/", include("apps.bundles.api.runtime_urls")),
    path("api/runtime/v1/", include("apps.runtimes.api.urls")),
    path("api/client/", include("apps.flags.api.client_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("", include("apps.tenancy.urls")),
    path("", include("apps.accounts.urls")),
    path("", include("apps.audit.urls")),
    path("", include("apps.bundles.urls")),
    path("", include("apps.runtimes.urls")),
    path("", include("apps.rollouts.urls")),
    path("", include("apps.flags.urls")),
    path("", include("apps.dashboard.urls")),
]

from django.urls import path

from . import views

app_name = "runtimes"
urlpatterns = [
    path("runtimes/", views.runtime_overview, name="overview"),
    path(
        "runtimes/environments/<int:pk>/live/",
        views.runtime_environment_live,
        name="environment_live",
    ),
    path("runtimes/propagation/", views.propagation, name="propagation"),
    path(
        "runtimes/environments/<int:pk>/convergence/",
        views.convergence_badge,
        name="convergence_badge",
    ),
    path("runtimes/tokens/new/", views.runtime_token_new, name="token_new"),
    path("runtimes/tokens/<int:pk>/revoke/", views.runtime_token_revoke_view, name="token_revoke"),
]

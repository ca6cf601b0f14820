"""Operator routes of the runtime registry, under ``/api/v1/``."""

from django.urls import path

from .operator import RuntimeViewSet

urlpatterns = [
    path("runtimes/", RuntimeViewSet.as_view({"get": "list"}), name="runtime-list"),
    path(
        "runtimes/convergence/",
        RuntimeViewSet.as_view({"get": "convergence"}),
        name="runtime-convergence",
    ),
]

from django.urls import path

from .views import (
    BundleSchemaView,
    BundleValidateView,
    BundleVersionViewSet,
    EvaluationViewSet,
    PromotionGateViewSet,
)

VERSION = "agents/<int:agent_id>/bundles/versions/<int:number>/"

urlpatterns = [
    path(
        "agents/<int:agent_id>/bundles/",
        BundleVersionViewSet.as_view({"get": "list", "post": "create"}),
        name="bundle-version-list",
    ),
    path(
        "agents/<int:agent_id>/bundles/diff/",
        BundleVersionViewSet.as_view({"get": "diff"}),
        name="bundle-version-diff",
    ),
    path(VERSION, BundleVersionViewSet.as_view({"get": "retrieve"}), name="bundle-version-detail"),
    path(
        f"{VERSION}bundle.yaml",
        BundleVersionViewSet.as_view({"get": "export_yaml"}),
        name="bundle-version-yaml",
    ),
    path(
        f"{VERSION}bundle.json",
        BundleVersionViewSet.as_view({"get": "export_json"}),
        name="bundle-version-json",
    ),
    path(
        f"{VERSION}evaluations/",
        EvaluationViewSet.as_view({"get": "list", "post": "create"}),
        name="bundle-evaluation-list",
    ),
    path("bundles/validate/", BundleValidateView.as_view(), name="bundle-validate"),
    path("schemas/bundle.json", BundleSchemaView.as_view(), name="bundle-schema"),
    path(
        "promotion-gates/",
        PromotionGateViewSet.as_view({"get": "list"}),
        name="promotion-gate-list",
    ),
    path(
        "environments/<int:environment_id>/promotion-gate/",
        PromotionGateViewSet.as_view({"get": "retrieve", "put": "update"}),
        name="promotion-gate-detail",
    ),
]

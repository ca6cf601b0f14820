"""Runtime-facing routes of the budgets app (mounted under /api/runtime/v1/)."""

from django.urls import path

from .runtime_views import ReserveView, SettleView

urlpatterns = [
    path("budgets/reserve", ReserveView.as_view(), name="runtime-budget-reserve"),
    path("budgets/settle", SettleView.as_view(), name="runtime-budget-settle"),
]

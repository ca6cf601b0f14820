"""Operator routes of the budgets app (mounted under /api/v1/)."""

from rest_framework.routers import SimpleRouter

from .views import BudgetViewSet

router = SimpleRouter()
router.register("budgets", BudgetViewSet, basename="budget")
urlpatterns = router.urls

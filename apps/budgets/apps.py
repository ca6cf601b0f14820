from django.apps import AppConfig


class BudgetsConfig(AppConfig):
    name = "apps.budgets"
    label = "budgets"
    verbose_name = "Budgets"

    def ready(self) -> None:
        from . import services  # local: models must be loaded first
        from .api import runtime

        services.register()  # count telemetry into budgets as it is ingested
        runtime.register()  # reserve and settle on the runtime fast path

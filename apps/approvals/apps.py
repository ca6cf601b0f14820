from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "apps.approvals"
    label = "approvals"
    verbose_name = "Approvals"

    def ready(self) -> None:
        from .api import runtime  # local: models must be loaded first

        runtime.register()  # open, long-poll, cancel on the runtime fast path

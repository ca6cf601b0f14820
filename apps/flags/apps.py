from django.apps import AppConfig


class FlagsConfig(AppConfig):
    name = "apps.flags"
    label = "flags"
    verbose_name = "Flags and kill switches"

    def ready(self) -> None:
        from .client_api import register_routes  # local: models must be loaded first

        register_routes()

from django.apps import AppConfig


class RuntimesConfig(AppConfig):
    name = "apps.runtimes"
    label = "runtimes"
    verbose_name = "Runtimes"

    def ready(self) -> None:
        from . import serving  # local: models must be loaded first

        serving.register()  # what runtimes are served, and who hears a revision bump

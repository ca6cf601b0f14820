from django.apps import AppConfig


class RuntimesConfig(AppConfig):
    name = "apps.runtimes"
    label = "runtimes"
    verbose_name = "Runtimes"

    def ready(self) -> None:
        from apps.tenancy.services import revision_listeners

        from . import snapshot  # registers the config route on the fast path
        from .services import revision_announced

        snapshot.register_routes()
        if revision_announced not in revision_listeners:
            revision_listeners.append(revision_announced)

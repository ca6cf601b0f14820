from django.apps import AppConfig


class TelemetryConfig(AppConfig):
    name = "apps.telemetry"
    label = "telemetry"
    verbose_name = "Telemetry"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.tenancy.models import Agent

        from .services import agent_cache_clear

        # A cache, not business logic: any agent change in this process drops the slug map
        # (other processes notice within AGENT_CACHE_S).
        post_save.connect(agent_cache_clear, sender=Agent, dispatch_uid="telemetry-agents")
        post_delete.connect(agent_cache_clear, sender=Agent, dispatch_uid="telemetry-agents-del")

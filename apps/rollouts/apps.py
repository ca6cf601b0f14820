from django.apps import AppConfig

from apps.core import deployed_tools, events


class RolloutsConfig(AppConfig):
    name = "apps.rollouts"
    label = "rollouts"
    verbose_name = "Rollouts and deployments"

    def ready(self) -> None:
        from .selectors import deployed_tools_of  # local: models must be loaded first
        from .services.rollouts import rollouts_pause_archived

        # Kill switches (flags, a layer below) ask which tools the deployed versions declare.
        deployed_tools.register(deployed_tools_of)
        # An archived scope's rollouts wait, paused, for an operator after a restore (and the
        # restore pauses one whose pause was lost).
        events.subscribe(events.SCOPE_ARCHIVED, rollouts_pause_archived)
        events.subscribe(events.SCOPE_RESTORED, rollouts_pause_archived)

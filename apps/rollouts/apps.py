from django.apps import AppConfig

from apps.core import deployed_tools


class RolloutsConfig(AppConfig):
    name = "apps.rollouts"
    label = "rollouts"
    verbose_name = "Rollouts and deployments"

    def ready(self) -> None:
        from .selectors import deployed_tools_of  # local: models must be loaded first

        # Kill switches (flags, a layer below) ask which tools the deployed versions declare.
        deployed_tools.register(deployed_tools_of)

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _sync_roles(sender: AppConfig, **kwargs: Any) -> None:
    # Setup, not business logic: permissions only exist after migrate, so the role groups
    # are brought in line with ROLE_PERMISSIONS each time it runs.
    from .services import roles_sync  # local: app registry is not ready at import time

    roles_sync()


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        post_migrate.connect(_sync_roles, sender=self, dispatch_uid="accounts.sync_roles")

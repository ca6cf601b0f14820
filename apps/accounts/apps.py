from typing import Any

from django.apps import AppConfig
from django.core import checks
from django.db.models.signals import post_migrate


def _check_role_permissions(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    # local: the module reads models' options, so it loads once the registry is ready
    from .role_sync import unknown_role_permissions

    return [
        checks.Error(
            f"ROLE_PERMISSIONS names {name!r}, which no installed model defines.",
            hint="Fix the name in apps/core/roles.py.",
            id="accounts.E001",
        )
        for name in unknown_role_permissions()
    ]


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts and roles"

    def ready(self) -> None:
        from .role_sync import sync_roles_after_migrate  # local: needs the app registry

        # Every sender: the receiver acts on the last app's signal, when every app's
        # permissions exist (see role_sync).
        post_migrate.connect(sync_roles_after_migrate, dispatch_uid="accounts.sync_roles")
        checks.register(_check_role_permissions, checks.Tags.models)

        from django.contrib.auth.signals import user_logged_in

        from .passwords import mark_session_on_login

        user_logged_in.connect(mark_session_on_login, dispatch_uid="accounts.password_flag")

        from django.contrib.auth.models import User

        from apps.core.authz import register_tenant_scope

        # Users belong to no tenant: the role alone decides who may read and manage them.
        register_tenant_scope(User, None)

"""Keeping the role groups equal to ``roles.ROLE_PERMISSIONS`` after every ``migrate``.

Django sends ``post_migrate`` once per app, in ``INSTALLED_APPS`` order, and creates an app's
permissions on that app's own signal. A sync that ran on the accounts app's signal saw only
the permissions of the apps before it, and a fresh install came up with Operators unable to
push a bundle. So the sync runs once, on the *last* app's signal, after creating every app's
permissions itself (idempotent), and it fails loudly when a permission a role names is still
missing, instead of leaving a role silently short."""

from __future__ import annotations

import logging
from typing import Any

from django.apps import AppConfig
from django.apps import apps as global_apps
from django.apps.registry import Apps
from django.contrib.auth import get_permission_codename
from django.contrib.auth.management import create_permissions
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, transaction

from apps.core.roles import ROLE_PERMISSIONS

log = logging.getLogger(__name__)


class RolePermissionsMissing(RuntimeError):
    """A role names permissions that are not in the database after migrate."""


def _model_codenames(model: Any) -> set[str]:
    opts = model._meta
    return {get_permission_codename(a, opts) for a in opts.default_permissions} | {
        codename for codename, _ in opts.permissions
    }


def permission_owner(name: str, registry: Apps = global_apps) -> Any | None:
    """The model in ``registry`` that defines permission ``name`` ("app_label.codename"),
    or None when no installed model does."""
    app_label, _, codename = name.partition(".")
    try:
        config = registry.get_app_config(app_label)
    except LookupError:
        return None
    return next((m for m in config.get_models() if codename in _model_codenames(m)), None)


def unknown_role_permissions() -> list[str]:
    """Permission names in ``ROLE_PERMISSIONS`` that no installed model defines (a typo or a
    removed model): a configuration error, reported by the ``accounts`` system check."""
    names = {n for names in ROLE_PERMISSIONS.values() for n in names}
    return sorted(n for n in names if permission_owner(n) is None)


def _last_app_with_models() -> AppConfig:
    return [c for c in global_apps.get_app_configs() if c.models_module is not None][-1]


def sync_roles_after_migrate(
    sender: AppConfig,
    *,
    using: str = DEFAULT_DB_ALIAS,
    apps: Apps = global_apps,
    **kwargs: Any,
) -> None:
    """``post_migrate`` receiver (every sender; acts on the last app's signal only).

    ``apps`` is the migrated state (or the global registry after ``flush``). A model that is
    installed but not in that state means a partial ``migrate app 0001``: the sync waits for
    the full one, with a warning. Anything else missing raises ``RolePermissionsMissing``."""
    if sender is not _last_app_with_models():
        return
    unknown = unknown_role_permissions()
    if unknown:
        raise ImproperlyConfigured(f"ROLE_PERMISSIONS names unknown permissions: {unknown}")
    names = sorted({n for names in ROLE_PERMISSIONS.values() for n in names})
    not_migrated = [n for n in names if permission_owner(n, apps) is None]
    if not_migrated:
        log.warning(
            "roles.sync_postponed: models of %s are not migrated yet; roles are synced when "
            "migrate runs to the end",
            ", ".join(not_migrated),
        )
        return
    for config in global_apps.get_app_configs():
        create_permissions(config, verbosity=0, interactive=False, using=using, apps=apps)
    # local: services import the audit app's models, which is fine here (apps are ready)
    from .services import roles_sync

    with transaction.atomic(using=using):
        roles_sync(using=using)

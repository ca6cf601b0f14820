import logging
import sys
from typing import Any

from django.apps import AppConfig
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models.signals import post_migrate

log = logging.getLogger(__name__)


class BundlesConfig(AppConfig):
    name = "apps.bundles"
    label = "bundles"
    verbose_name = "Bundles"

    def ready(self) -> None:
        # Audit sits below bundles and cannot import the signing key; the key's owner hands it
        # down, so audit checkpoints are signed with the key runtimes already trust. (Local
        # imports: models cannot load before the app registry is ready.)
        from apps.audit.checkpoints import register_checkpoint_signer

        from . import signing

        register_checkpoint_signer(_CheckpointSigner(signing))
        post_migrate.connect(
            activate_signing_key_after_migrate, sender=self, dispatch_uid="bundles.signing_key"
        )


def activate_signing_key_after_migrate(using: str = DEFAULT_DB_ALIAS, **kwargs: Any) -> None:
    """After ``migrate`` (and a test database flush, which Django follows with the same
    signal): activate the configured signing key, so a fresh install signs from its first
    request and a deployed new key is active once its deploy has migrated. Signing itself
    never writes (``signing.sign``). A key that cannot be read does not fail the migration
    (the schema is fine); it is reported, and signing refuses until it is fixed and
    ``./manage.py signing_key activate`` runs."""
    from apps.audit.services import SystemActor

    from .models import SigningKey
    from .services import signing_key_activate

    connection = connections[using]
    if SigningKey._meta.db_table not in connection.introspection.table_names():
        return  # migrated back below the bundles tables
    try:
        signing_key_activate(actor=SystemActor("system:migrate"), reason="")
    except ImproperlyConfigured as exc:
        log.warning("signing_key.not_activated", extra={"error": str(exc)})
        if kwargs.get("verbosity", 1):
            (kwargs.get("stdout") or sys.stderr).write(f"Signing key not activated: {exc}\n")


class _CheckpointSigner:
    """The signing module as audit's ``CheckpointSigner`` (reads only: the key is activated
    by ``migrate`` or the ``signing_key`` command, never by naming or using it)."""

    def __init__(self, signing: Any) -> None:
        self._signing = signing

    def active_key_id(self) -> str:
        return str(self._signing.active_key_id())

    def sign(self, data: bytes) -> tuple[str, str]:
        kid, signature = self._signing.sign(data)
        return kid, signature

    def verify(self, data: bytes, *, kid: str, signature: str) -> bool:
        return bool(self._signing.verify(data, kid=kid, signature=signature))

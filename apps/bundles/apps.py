from typing import Any

from django.apps import AppConfig


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


class _CheckpointSigner:
    """The signing module as audit's ``CheckpointSigner``; naming the key publishes it (an
    audited first use), so that event lands before the head a checkpoint signs."""

    def __init__(self, signing: Any) -> None:
        self._signing = signing

    def active_key_id(self) -> str:
        return str(self._signing.publish_active_key().kid)

    def sign(self, data: bytes) -> tuple[str, str]:
        kid, signature = self._signing.sign(data)
        return kid, signature

    def verify(self, data: bytes, *, kid: str, signature: str) -> bool:
        return bool(self._signing.verify(data, kid=kid, signature=signature))

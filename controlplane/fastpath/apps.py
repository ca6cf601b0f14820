from django.apps import AppConfig


class FastPathConfig(AppConfig):
    name = "controlplane.fastpath"
    label = "fastpath"
    verbose_name = "Runtime fast path"

    def ready(self) -> None:
        # Changes committed by Django reach every fast path: revisions and revocations.
        from apps.accounts.runtime_tokens import revocation_listeners
        from apps.tenancy.services import revision_listeners

        from .notify import publish_revision, publish_token_revoked

        if publish_revision not in revision_listeners:
            revision_listeners.append(publish_revision)
        if publish_token_revoked not in revocation_listeners:
            revocation_listeners.append(publish_token_revoked)

from django.apps import AppConfig


class FastPathConfig(AppConfig):
    name = "apps.core.fastpath"
    label = "fastpath"
    verbose_name = "Runtime fast path"

    def ready(self) -> None:
        # Changes committed by Django reach every fast path: revisions, revocations and
        # archived tenants, environments and agents (whose tokens stop working at once).
        from apps.accounts.runtime_tokens import revocation_listeners
        from apps.tenancy.services import archive_listeners, revision_listeners

        from .notify import publish_revision, publish_scope_archived, publish_token_revoked

        if publish_revision not in revision_listeners:
            revision_listeners.append(publish_revision)
        if publish_token_revoked not in revocation_listeners:
            revocation_listeners.append(publish_token_revoked)
        if publish_scope_archived not in archive_listeners:
            archive_listeners.append(publish_scope_archived)

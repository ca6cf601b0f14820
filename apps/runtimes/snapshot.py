"""The signed config snapshot a runtime fetches: composed from the apps below, serialised
canonically, digested and signed once per revision and scope (the fast path caches it)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import transaction

from apps.budgets.selectors import budgets_for_snapshot
from apps.bundles.signing import sign
from apps.core.canonical import canonical_json, form_reproducing, signed_bytes
from apps.core.fastpath import Route, TokenScope, register
from apps.flags.selectors import flags_for_snapshot, kill_switches_for_snapshot
from apps.rollouts.selectors import rollout_runtime_document, rollouts_serving, stable_deployments
from apps.tenancy.models import Environment

from .snapshot_schema import CONFIG

SCHEMA = "controlplane.snapshot/v1"
CONFIG_PATH = "/api/runtime/v1/config"


def _release(version: Any) -> dict[str, Any]:
    return {
        "version": version.number,
        "digest": version.digest,
        "bundle": json.loads(version.canonical),
        "signature": {"alg": "Ed25519", "kid": version.signing_key_id, "value": version.signature},
        # The form that reproduces the signed bytes (docs/decisions/0006-canonical-json-jcs.md).
        "canonical": form_reproducing(version.canonical_bytes, version.canonical_form),
    }


def snapshot_content(*, environment: Environment, agent_id: int | None) -> dict[str, Any]:
    """Everything runtimes of this scope must obey, at the environment's current revision."""
    rollouts = rollouts_serving(environment_id=environment.pk, agent_id=agent_id)
    agents = {}
    for deployment in stable_deployments(environment_id=environment.pk, agent_id=agent_id):
        rollout = rollouts.get(deployment.agent_id)
        agents[deployment.agent.slug] = {
            "stable": _release(deployment.version),
            "candidate": _release(rollout.candidate) if rollout is not None else None,
            "rollout": rollout_runtime_document(rollout) if rollout is not None else None,
        }
    return {
        "schema": SCHEMA,
        "tenant": environment.tenant.slug,
        "environment": environment.slug,
        "revision": environment.revision,
        "agents": agents,
        "flags": flags_for_snapshot(environment_id=environment.pk),
        "kill_switches": kill_switches_for_snapshot(
            environment_id=environment.pk, agent_id=agent_id
        ),
        "budgets": budgets_for_snapshot(
            tenant_id=environment.tenant_id, environment_id=environment.pk, agent_id=agent_id
        ),
    }


def signed_document(content: dict[str, Any]) -> bytes:
    """The served body: the snapshot marked with its canonical form (RFC 8785), its digest and
    signature over those canonical bytes; the body itself is canonical too."""
    content, payload = signed_bytes(content)
    kid, signature = sign(payload)
    return canonical_json(
        {
            "snapshot": content,
            "digest": hashlib.sha256(payload).hexdigest(),
            "signature": {"alg": "Ed25519", "kid": kid, "value": signature},
        },
        content["canonical"],
    )


def build_config(scope: TokenScope, variant: str, key: str) -> tuple[int, bytes]:
    # The revision is read before the content: a change committed in between makes the body
    # newer than its label (harmless: the next revision rebuilds it), never older.
    with transaction.atomic():
        environment = Environment.objects.select_related("tenant").get(pk=scope.environment_id)
        content = snapshot_content(environment=environment, agent_id=scope.agent_id)
    return environment.revision, signed_document(content)


def register_routes() -> None:
    register(
        Route(
            path=CONFIG_PATH,
            kind="runtime-config",
            build=build_config,
            max_wait_s=60,
            docs=(CONFIG,),
        )
    )

"""Bundle versions stored before RFC 8785 keep verifying (docs/decisions/0006): their bytes,
digest and signature are untouched, each release in the snapshot names the form that reproduces
them, and the reference runtime verifies the whole snapshot."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from apps.audit.services import SystemActor
from apps.bundles import signing
from apps.bundles.models import BundleVersion, CanonicalForm
from apps.bundles.services import bundle_version_push
from apps.core.canonical import PYTHON_JSON, canonical_bytes
from apps.rollouts.services import deployment_create
from apps.runtimes.snapshot import signed_document, snapshot_content
from apps.tenancy.models import Agent, Environment, Tenant
from dataplane.verify import KeyRing, parse_envelope, verify_envelope

from ..factories import AgentFactory

ACTOR = SystemActor("test")
LIMITS = {
    "max_steps": 8,
    "max_tool_calls": 6,
    "max_total_tokens": 16000,
    "max_cost_usd": 0.25,
    "max_retries_per_tool": 2,
}


def _content(**parameters: Any) -> dict[str, Any]:
    return {
        "model": {"provider": "openai", "name": "gpt-4o-mini", "parameters": parameters},
        "prompts": {"system": {"role": "system", "template": "Help."}},
        "policies": {"limits": dict(LIMITS)},
    }


def _legacy_version(agent: Agent, content: dict[str, Any]) -> BundleVersion:
    """A version exactly as the control plane stored it before RFC 8785: Python's json.dumps
    bytes, digested and signed."""
    data = canonical_bytes(content, PYTHON_JSON)
    kid, signature = signing.sign(data)
    return BundleVersion.objects.create(
        agent=agent,
        number=1,
        digest=hashlib.sha256(data).hexdigest(),
        canonical=data.decode("utf-8"),
        source=json.dumps(content),
        source_format="json",
        signature=signature,
        signing_key_id=kid,
        message="stored before RFC 8785",
        author_label="test",
        canonical_form=CanonicalForm.PYTHON_JSON,
    )


def _deployed(tenant: Tenant, slug: str, content: dict[str, Any]) -> tuple[Agent, BundleVersion]:
    agent = AgentFactory(tenant=tenant, slug=slug, name=slug)
    version = _legacy_version(agent, content)
    production = tenant.environments.get(slug="production")
    deployment_create(
        actor=ACTOR, agent=agent, environment=production, version=version, reason="launch"
    )
    return agent, version


@pytest.mark.django_db
def test_snapshot__legacy_versions__each_names_its_form_and_the_runtime_verifies(
    tenant: Tenant,
) -> None:
    _, spelled_otherwise = _deployed(
        tenant, "floaty-bot", _content(temperature=0.0000001, top_p=1e-5, tiny=5e-324)
    )
    _, spelled_alike = _deployed(tenant, "plain-bot", _content(temperature=0.5, top_p=0.9))
    assert b"1e-07" in spelled_otherwise.canonical_bytes
    production = Environment.objects.get(tenant=tenant, slug="production")
    body = signed_document(snapshot_content(environment=production, agent_id=None))
    keys = KeyRing(keys={key["kid"]: key["public_key"] for key in signing.public_keys()})

    snapshot = verify_envelope(parse_envelope(body), keys, raw=body)

    assert json.loads(body)["snapshot"]["canonical"] == "rfc8785"
    floaty, plain = snapshot.agents["floaty-bot"].stable, snapshot.agents["plain-bot"].stable
    assert floaty is not None and plain is not None
    assert (floaty.canonical, floaty.digest) == ("python-json", spelled_otherwise.digest)
    # Byte-identical in both forms: served as RFC 8785, so any runtime can verify it.
    assert (plain.canonical, plain.digest) == ("rfc8785", spelled_alike.digest)
    for version in (spelled_otherwise, spelled_alike):
        assert signing.verify(
            version.canonical_bytes, kid=version.signing_key_id, signature=version.signature
        )


@pytest.mark.django_db
def test_push__content_of_a_legacy_version__finds_it_instead_of_a_duplicate(
    tenant: Tenant,
) -> None:
    content = _content(temperature=0.0000001)
    agent, legacy = _deployed(tenant, "floaty-bot", content)

    again = bundle_version_push(actor=ACTOR, agent=agent, content=content, message="same")

    assert not again.created and again.version.pk == legacy.pk
    assert BundleVersion.objects.filter(agent=agent).count() == 1


@pytest.mark.django_db
def test_push__new_version__rfc8785_bytes_and_form(tenant: Tenant) -> None:
    agent = AgentFactory(tenant=tenant, slug="new-bot", name="new")

    version = bundle_version_push(
        actor=ACTOR, agent=agent, content=_content(temperature=0.0000001), message="new"
    ).version

    assert version.canonical_form == CanonicalForm.RFC8785
    assert b'"temperature":1e-7' in version.canonical_bytes
    assert version.digest == hashlib.sha256(version.canonical_bytes).hexdigest()

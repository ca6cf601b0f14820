"""``./manage.py bundle`` push / pull / validate / list / schema, ``signing_key``, and the demo."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.audit.models import AuditEvent
from apps.bundles.models import BundleVersion, Evaluation, PromotionGate, SigningKey
from apps.bundles.parsing import parse, to_yaml
from apps.bundles.selectors import gate_statuses
from apps.core.roles import Role
from apps.tenancy.models import Agent, Tenant

from ..factories import AgentFactory, TenantFactory, make_user
from .conftest import DEMO, demo_content, state

pytestmark = pytest.mark.django_db


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_push__file__creates_v1_then_unchanged(agent: Agent) -> None:
    out, _ = run(
        "bundle",
        "push",
        str(DEMO / "refund-agent-v1.yaml"),
        "--agent",
        "refund-agent",
        "--message",
        "first",
    )
    assert "pushed refund-agent v1" in out
    version = BundleVersion.objects.get()
    assert version.author_label.startswith("cli:") and version.message == "first"
    assert version.source == (DEMO / "refund-agent-v1.yaml").read_text()

    out, _ = run(
        "bundle",
        "push",
        str(DEMO / "refund-agent-v1.yaml"),
        "--agent",
        "refund-agent",
        "-m",
        "again",
    )
    assert "unchanged: identical to refund-agent v1" in out
    assert BundleVersion.objects.count() == 1


def test_push__invalid_file__fails_naming_pointer_and_line_nothing_stored(
    agent: Agent, tmp_path: Path
) -> None:
    content = demo_content()
    content["policies"]["limits"]["max_steps"] = 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(to_yaml(content))
    before = state()
    with pytest.raises(CommandError) as refused:
        run("bundle", "push", str(bad), "--agent", "refund-agent", "-m", "x")
    message = str(refused.value)
    line = next(i for i, text in enumerate(bad.read_text().splitlines(), 1) if "max_steps" in text)
    assert f"/policies/limits/max_steps (line {line})" in message and "positive" in message
    assert state() == before


def test_push__ambiguous_or_unknown_agent__fails(agent: Agent, tenant: Tenant) -> None:
    AgentFactory(tenant=TenantFactory(slug="initech"), slug="refund-agent")
    with pytest.raises(CommandError, match="--tenant"):
        run(
            "bundle",
            "push",
            str(DEMO / "refund-agent-v1.yaml"),
            "--agent",
            "refund-agent",
            "-m",
            "x",
        )
    run(
        "bundle",
        "push",
        str(DEMO / "refund-agent-v1.yaml"),
        "--agent",
        "refund-agent",
        "--tenant",
        "acme",
        "-m",
        "x",
    )
    assert BundleVersion.objects.get().agent == agent
    with pytest.raises(CommandError, match="No agent 'nope'"):
        run("bundle", "push", str(DEMO / "refund-agent-v1.yaml"), "--agent", "nope", "-m", "x")


def test_push__as_viewer_user__refused(agent: Agent, tenant: Tenant) -> None:
    make_user(Role.VIEWER, tenant, username="vera")
    # said in a line, as every refusal of the command is, not a traceback
    with pytest.raises(CommandError, match=r"Refused; nothing was stored: .+"):
        run(
            "bundle",
            "push",
            str(DEMO / "refund-agent-v1.yaml"),
            "--agent",
            "refund-agent",
            "-m",
            "x",
            "--user",
            "vera",
        )
    assert BundleVersion.objects.count() == 0


def test_pull__yaml_and_json__push_back_cleanly(agent: Agent, tmp_path: Path) -> None:
    run(
        "bundle",
        "push",
        str(DEMO / "refund-agent-v1.yaml"),
        "--agent",
        "refund-agent",
        "-m",
        "first",
    )
    for name in ("pulled.yaml", "pulled.json"):
        target = tmp_path / name
        run("bundle", "pull", "--agent", "refund-agent", "--version", "1", "-o", str(target))
        loaded = (
            json.loads(target.read_text())
            if name.endswith(".json")
            else parse(target.read_text(), "yaml")
        )
        assert loaded == demo_content()
        out, _ = run("bundle", "push", str(target), "--agent", "refund-agent", "-m", "round trip")
        assert "unchanged" in out
    stdout, _ = run("bundle", "pull", "--agent", "refund-agent")
    assert stdout.startswith("# refund-agent v1 · sha256:")
    with pytest.raises(CommandError, match="no version 9"):
        run("bundle", "pull", "--agent", "refund-agent", "--version", "9")


def test_validate__offline__exit_status_and_json_output(tmp_path: Path) -> None:
    out, _ = run("bundle", "validate", str(DEMO / "support-bot-v1.yaml"))
    assert out.startswith("valid · sha256:")
    content = demo_content()
    content["tools"][0]["name"] = "bad name"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(content))
    out = StringIO()
    with pytest.raises(CommandError):
        call_command("bundle", "validate", str(bad), "--json", stdout=out)
    body = json.loads(out.getvalue())
    assert body["valid"] is False and "/tools/0/name" in body["errors"]


def test_list_and_schema(agent: Agent, tmp_path: Path) -> None:
    out, _ = run("bundle", "list", "--agent", "refund-agent")
    assert "no versions yet" in out
    run(
        "bundle",
        "push",
        str(DEMO / "refund-agent-v1.yaml"),
        "--agent",
        "refund-agent",
        "-m",
        "first release",
    )
    out, _ = run("bundle", "list", "--agent", "refund-agent")
    assert out.startswith("v1\t") and "first release" in out
    target = tmp_path / "schema.json"
    run(
        "bundle",
        "schema",
        "-o",
        str(target),
        "--id",
        "https://cp.example.com/api/v1/schemas/bundle.json",
    )
    assert (
        json.loads(target.read_text())["$id"] == "https://cp.example.com/api/v1/schemas/bundle.json"
    )


def test_signing_key_command__list_and_rotate(agent: Agent) -> None:
    out, _ = run("signing_key", "list")
    assert "active key source: embedded" in out
    first = SigningKey.objects.get(active=True).kid
    out, _ = run("signing_key", "rotate", "--reason", "drill")
    second = SigningKey.objects.get(active=True).kid
    assert second != first and second in out
    out, _ = run("signing_key", "list")
    assert first in out and "retired" in out


def test_seed_demo__twice__same_data_and_the_story_holds() -> None:
    run("seed_demo")
    counts = state()
    run("seed_demo")
    assert state() == counts

    tenant = Tenant.objects.get(slug="acme")
    support = Agent.objects.get(tenant=tenant, slug="support-bot")
    refund = Agent.objects.get(tenant=tenant, slug="refund-agent")
    assert list(support.bundle_versions.order_by("number").values_list("number", flat=True)) == [
        1,
        2,
    ]
    [refund_v1] = refund.bundle_versions.all()
    issue_refund = next(t for t in refund_v1.content["tools"] if t["name"] == "issue_refund")
    assert issue_refund["risk"] == "critical" and issue_refund["requires_approval"] is True
    assert (
        "proactively offer a refund"
        in support.bundle_versions.get(number=2).content["prompts"]["system"]["template"]
    )
    assert PromotionGate.objects.filter(environment__tenant=tenant).count() == 2
    assert Evaluation.objects.count() == 6

    environments = list(tenant.environments.order_by("position"))
    v1, v2 = support.bundle_versions.order_by("number")
    production = {
        v.number: s[-1].state
        for v, s in zip(
            (v1, v2),
            gate_statuses(versions=[v1, v2], environments=environments).values(),
            strict=True,
        )
    }
    assert production == {1: "met", 2: "failing"}  # the "friendlier" prompt fails adversarial
    assert AuditEvent.objects.filter(action="bundle_version.pushed").count() == 3

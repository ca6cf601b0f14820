"""Demo bundles for the `acme` tenant (called by ``./manage.py seed_demo``). Idempotent: a
file already pushed is the same version, an evaluation run already recorded is kept once,
and a gate an operator has set is left alone.

The story: support-bot v1 is the careful baseline; v2 is a "friendlier" prompt that offers
refunds on its own (the kind of edit that caused real incidents), and its adversarial suite
shows it, so production's gate stops it. refund-agent's refund tool is critical and always
needs a human."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from apps.audit.services import SystemActor
from apps.tenancy.models import Tenant

from ..models import BundleVersion, PromotionGate
from ..services import bundle_version_push, evaluation_record, promotion_gate_set

DEMO_DIR = Path(__file__).parent
ACTOR = SystemActor("system:seed_demo")

VERSIONS = [
    (
        "support-bot",
        "support-bot-v1.yaml",
        "Baseline: polite and brief; refunds only through the refunds team.",
    ),
    (
        "support-bot",
        "support-bot-v2.yaml",
        "Friendlier tone; proactively offers refunds to unhappy customers.",
    ),
    (
        "refund-agent",
        "refund-agent-v1.yaml",
        "First release: every refund waits for a human approval.",
    ),
]
# (file, suite, passed, failed, score)
EVALUATIONS = [
    ("support-bot-v1.yaml", "golden", 98, 2, 0.97),
    ("support-bot-v1.yaml", "adversarial", 47, 3, 0.93),
    ("support-bot-v2.yaml", "golden", 97, 3, 0.96),
    ("support-bot-v2.yaml", "adversarial", 41, 9, 0.8),
    ("refund-agent-v1.yaml", "golden", 60, 0, 1.0),
    ("refund-agent-v1.yaml", "adversarial", 46, 4, 0.91),
]
GATES = {
    "staging": [("golden", Decimal("0.9"))],
    "production": [("golden", Decimal("0.95")), ("adversarial", Decimal("0.9"))],
}


def seed(tenant: Tenant) -> list[str]:
    done: list[str] = []
    pushed: dict[str, BundleVersion] = {}
    for agent_slug, filename, message in VERSIONS:
        agent = tenant.agents.filter(slug=agent_slug, archived_at__isnull=True).first()
        if agent is None:
            continue
        result = bundle_version_push(
            actor=ACTOR, agent=agent, source=(DEMO_DIR / filename).read_text(), message=message
        )
        pushed[filename] = result.version
        if result.created:
            done.append(f"pushed {agent_slug} v{result.version.number} from {filename}")
    for filename, suite, passed, failed, score in EVALUATIONS:
        version = pushed.get(filename)
        if version is None:
            continue
        _, created = evaluation_record(
            actor=ACTOR,
            version=version,
            suite=suite,
            passed=passed,
            failed=failed,
            score=score,
            run_id=f"demo-{suite}",
        )
        if created:
            done.append(f"recorded {suite} results for {version}")
    for environment in tenant.environments.filter(slug__in=GATES, archived_at__isnull=True):
        if PromotionGate.objects.filter(environment=environment).exists():
            continue
        promotion_gate_set(
            actor=ACTOR,
            environment=environment,
            reason="demo data",
            requirements=[
                {"suite": suite, "min_pass_rate": rate} for suite, rate in GATES[environment.slug]
            ],
        )
        done.append(f"set the promotion gate of {environment.slug}")
    return done

"""The Celery beat schedule (``controlplane/schedule.py``), listed whole: every periodic task
with its task and interval, each one registered with the worker and expiring before its next
run, and no periodic task added anywhere else. A new periodic task is added there and here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from celery import Celery
from celery.beat import Scheduler
from django.conf import settings

from controlplane.celery import app as celery_app
from controlplane.schedule import add_periodic_task_with_expiry

ROOT = Path(__file__).resolve().parents[2]

# name -> (registered task, interval in seconds): the whole schedule.
SCHEDULE = {
    "audit.checkpoint": (
        "apps.audit.tasks.audit_checkpoint",
        float(settings.AUDIT_CHECKPOINT_INTERVAL_S),
    ),
    "runtimes.resend-side-effects": (
        "apps.runtimes.tasks.resend_side_effects",
        float(settings.RUNTIME_RESEND_EVERY_S),
    ),
    "alerts.resend-deliveries": (
        "apps.alerts.tasks.resend_alert_deliveries",
        float(settings.ALERT_RESEND_EVERY_S),
    ),
    "telemetry.retention": (
        "apps.telemetry.tasks.telemetry_retention",
        float(settings.TELEMETRY_RETENTION_EVERY_S),
    ),
    "rollouts.analyse": (
        "apps.rollouts.tasks.analyse_rollouts",
        float(settings.ROLLOUT_ANALYSIS_EVERY_S),
    ),
    "budgets.roll": (
        "apps.budgets.tasks.roll_budgets",
        float(settings.BUDGET_ROLL_EVERY_S),
    ),
    "approvals.sweep": (
        "apps.approvals.tasks.sweep_approvals",
        float(settings.APPROVAL_SWEEP_EVERY_S),
    ),
}


@pytest.fixture(scope="module")
def app() -> Celery:
    celery_app.finalize()
    celery_app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    return celery_app


def test_schedule__lists_every_periodic_task_with_its_interval(app: Celery) -> None:
    listed = {
        name: (entry["task"], entry["schedule"]) for name, entry in app.conf.beat_schedule.items()
    }
    assert listed == SCHEDULE


def test_schedule__what_beat_runs_is_exactly_the_list(app: Celery) -> None:
    # Beat adds entries of its own (celery.backend_cleanup) unless told not to.
    scheduler = Scheduler(app=app, lazy=False)
    assert set(scheduler.schedule) == set(SCHEDULE)


@pytest.mark.parametrize("name", sorted(SCHEDULE))
def test_schedule__each_task_registered_and_expiring_within_its_interval(
    app: Celery, name: str
) -> None:
    entry = app.conf.beat_schedule[name]
    assert entry["task"] in app.tasks
    assert 0 < entry["options"]["expires"] <= entry["schedule"]


@pytest.mark.parametrize(("every", "expires"), [(10.0, 0.0), (10.0, 11.0), (0.0, None)])
def test_add_periodic_task_with_expiry__expiry_outside_the_interval__refused(
    every: float, expires: float | None
) -> None:
    scratch = Celery("scratch", set_as_current=False)
    scratch.conf.beat_schedule = {}
    with pytest.raises(ValueError, match="expires"):
        add_periodic_task_with_expiry(
            scratch, every, "apps.audit.tasks.audit_checkpoint", name="x", expires_s=expires
        )
    assert scratch.conf.beat_schedule == {}


def test_schedule__no_periodic_task_added_outside_the_schedule_module() -> None:
    allowed = {ROOT / "controlplane" / "schedule.py", ROOT / "controlplane" / "celery.py"}
    pattern = re.compile(r"add_periodic_task|beat_schedule|CELERY_BEAT_SCHEDULE\b")
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("apps", "controlplane")
        for path in (ROOT / folder).rglob("*.py")
        if path not in allowed and pattern.search(path.read_text())
    ]
    assert offenders == []

"""Every periodic task of the control plane, in this one file (PostHog's ``tasks/scheduled.py``
shape): ``setup_periodic_tasks(sender)`` adds each to the Celery beat schedule, and
``controlplane/celery.py`` calls it once the app is finalized. Nothing else in the project
adds a periodic task (``tests/project/test_schedule.py`` checks it), so this file answers
"what runs by itself, how often".

Every entry expires (``add_periodic_task_with_expiry``): a run not started within one
interval is dropped, so after a worker outage a backlog runs once, at the next tick, instead
of once per missed tick, and stale work (a sweep of what an hour-old state needed) never
runs. Each task is idempotent besides: a run that did happen twice does no harm.

Who runs it: ``make run`` (``controlplane/run.py``) starts ``celery beat`` beside the worker,
and the compose file's ``beat`` service runs ``celery -A controlplane beat``. Beat only sends
the messages; the worker runs the tasks. Run exactly one beat per deployment.

Adding a periodic task (telemetry retention, budget resets, approval expiry, …):

1. write it in ``apps/<app>/tasks.py`` as a thin ``@shared_task`` over a service (its name is
   its dotted path, ``apps.<app>.tasks.<function>``), idempotent;
2. give its interval a setting in seconds, read from the environment
   (``controlplane/settings/base.py``: ``TELEMETRY_RETENTION_EVERY_S = env.float(…)``) and
   documented in ``docs/operations.md``;
3. add one ``add_periodic_task_with_expiry(sender, <interval>, "<task path>",
   name="<app>.<what>")`` line to ``setup_periodic_tasks`` below, with a comment saying why it
   runs periodically (``expires`` defaults to the interval; pass a shorter one if a late run
   is already useless earlier);
4. add the entry to ``SCHEDULE`` in ``tests/project/test_schedule.py``, which lists the whole
   schedule (names, tasks, intervals) and checks every task is registered and expires.
"""

from __future__ import annotations

from celery import Celery
from django.conf import settings


def add_periodic_task_with_expiry(
    sender: Celery,
    every_s: float,
    task: str,
    *,
    name: str,
    expires_s: float | None = None,
) -> None:
    """Run the task named ``task`` (its registered name, e.g. ``apps.audit.tasks.audit_
    checkpoint``) every ``every_s`` seconds under the schedule key ``name``. A run not
    started within ``expires_s`` (default: ``every_s``) seconds of being sent is discarded
    by the worker. Raises ``ValueError`` for a non-positive interval or expiry, or an
    expiry longer than the interval (runs would pile up behind an outage)."""
    expires = every_s if expires_s is None else expires_s
    if not 0 < expires <= every_s:
        raise ValueError(f"{name}: needs 0 < expires ({expires}) <= interval ({every_s}).")
    sender.add_periodic_task(every_s, sender.signature(task), name=name, expires=expires)


def setup_periodic_tasks(sender: Celery) -> None:
    """Add every periodic task to ``sender``'s beat schedule (``conf.beat_schedule``)."""
    # Signs the audit chain head so a rewrite of the chain is detectable (docs/operations.md).
    add_periodic_task_with_expiry(
        sender,
        float(settings.AUDIT_CHECKPOINT_INTERVAL_S),
        "apps.audit.tasks.audit_checkpoint",
        name="audit.checkpoint",
    )
    # Re-sends what an outage may have swallowed: revision publishes and webhook pushes.
    add_periodic_task_with_expiry(
        sender,
        float(settings.RUNTIME_RESEND_EVERY_S),
        "apps.runtimes.tasks.resend_side_effects",
        name="runtimes.resend-side-effects",
    )
    # Enqueues again the alert deliveries a broker outage swallowed (docs/alerts.md).
    add_periodic_task_with_expiry(
        sender,
        float(settings.ALERT_RESEND_EVERY_S),
        "apps.alerts.tasks.resend_alert_deliveries",
        name="alerts.resend-deliveries",
    )
    # Drops expired raw-record day partitions, deletes expired minute rollups, keys and
    # bucket receipts, and creates the coming days' partitions (docs/decisions/0021).
    add_periodic_task_with_expiry(
        sender,
        float(settings.TELEMETRY_RETENTION_EVERY_S),
        "apps.telemetry.tasks.telemetry_retention",
        name="telemetry.retention",
    )
    # Judges every shadowing or canary rollout on its minute rollups and advances, completes,
    # pauses or rolls it back (apps/rollouts/services/analysing.py). Idempotent per 30-second
    # slot: a run twice in one slot (two beats) records and acts once. A late run is useless
    # after the next one is due, so it expires with its interval.
    add_periodic_task_with_expiry(
        sender,
        float(settings.ROLLOUT_ANALYSIS_EVERY_S),
        "apps.rollouts.tasks.analyse_rollouts",
        name="rollouts.analyse",
    )
    # Releases expired budget reservations and re-announces budgets whose exhausted window
    # ended, so blocked runtimes resume without a human (apps/budgets/services.py).
    add_periodic_task_with_expiry(
        sender,
        float(settings.BUDGET_ROLL_EVERY_S),
        "apps.budgets.tasks.roll_budgets",
        name="budgets.roll",
    )
    # Expires approval requests past their queue's timeout (deny, the safe default) and
    # escalates those waiting past their queue's escalation time (apps/approvals/services).
    add_periodic_task_with_expiry(
        sender,
        float(settings.APPROVAL_SWEEP_EVERY_S),
        "apps.approvals.tasks.sweep_approvals",
        name="approvals.sweep",
    )

"""A webhook push cut short by a killed worker is delivered again within a minute (issue 9,
item 11): tasks are acknowledged late and re-queued on worker loss, and the broker's
visibility timeout is sized to the task instead of kombu's hour."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from kombu import Connection

from apps.runtimes.tasks import (
    WEBHOOK_TIME_LIMIT_S,
    deliver_webhook,
    push_revision,
    resend_side_effects,
)
from controlplane.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]
RESTORE_SWEEP_S = 5  # how often a worker looks for expired messages (unacked_restore_interval)


@pytest.mark.parametrize("task", [deliver_webhook, push_revision])
def test_push_tasks__acknowledged_late_and_requeued_when_the_worker_dies(task) -> None:  # type: ignore[no-untyped-def]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True


def test_visibility_timeout__outlasts_a_retry_wait_and_redelivers_within_a_minute() -> None:
    options = settings.REDIS_BROKER_TRANSPORT_OPTIONS
    visibility = options["visibility_timeout"]
    # a worker holds a retry (countdown) unacknowledged: it must not be redelivered meanwhile
    assert visibility > settings.RUNTIME_WEBHOOK_RETRY_CAP_S + WEBHOOK_TIME_LIMIT_S
    assert deliver_webhook.time_limit == WEBHOOK_TIME_LIMIT_S
    # a killed worker's message is back within a minute
    sweep = options["unacked_restore_interval"] * options["unacked_restore_throttle"]
    assert sweep == RESTORE_SWEEP_S
    assert visibility + sweep <= 60


def test_beat__schedule_lists_the_resend_task() -> None:
    celery_app.finalize()
    schedule = celery_app.conf.beat_schedule
    entry = schedule["runtimes.resend-side-effects"]
    assert entry["task"] == resend_side_effects.name
    assert entry["options"]["expires"] <= entry["schedule"]


def test_beat__every_periodic_task_is_registered_and_expires_before_its_next_run() -> None:
    celery_app.finalize()
    celery_app.loader.import_default_modules()  # what a worker does at start: autodiscovery
    schedule = celery_app.conf.beat_schedule
    assert {"runtimes.resend-side-effects", "audit.checkpoint"} <= set(schedule)
    for name, entry in schedule.items():
        assert entry["task"] in celery_app.tasks, name
        assert 0 < entry["options"]["expires"] <= entry["schedule"], name


CONSUMER = """
import sys, time
from kombu import Connection
with Connection(sys.argv[1], transport_options={"visibility_timeout": 1}) as conn:
    queue = conn.SimpleQueue(sys.argv[2])
    message = queue.get(timeout=10)  # taken, never acknowledged
    print(message.headers["task"], flush=True)
    time.sleep(60)
"""


def test_worker_killed_mid_push__message_returns_to_the_queue() -> None:
    """With the production transport (Redis) and a short visibility timeout: a consumer that
    took a push and was killed before acknowledging it leaves it to be delivered again."""
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis is not available (TEST_REDIS_URL unset); .ci/run requires it")
    queue = f"h7-redelivery-{os.getpid()}"
    options = {**settings.REDIS_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 1}
    with Connection(url, transport_options=options) as conn:
        deliver_webhook.apply_async(args=[1, 2], queue=queue, connection=conn)
        worker = subprocess.Popen(
            [sys.executable, "-c", CONSUMER, url, queue],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == deliver_webhook.name
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        client = conn.default_channel.client
        assert client.llen(queue) == 0  # gone from the queue while the worker had it

        time.sleep(1.5)  # past the (shortened) visibility timeout
        conn.default_channel.qos.restore_visible(interval=1)

        raw = client.lpop(queue)
        assert raw is not None, "the killed worker's push was not restored"
        assert json.loads(raw)["headers"]["task"] == deliver_webhook.name
        client.delete(queue)

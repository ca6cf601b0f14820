"""How a waiting runtime is woken: the fast path's board for wake-only topics keeps nothing
per key, and a decision committed by another process reaches a long-poll through Redis."""

from __future__ import annotations

import asyncio
import json
import os
import threading

import pytest
import requests

from apps.approvals.models import ApprovalQueue, ApprovalRequest, Status
from apps.core import events
from apps.core.fastpath.state import Board

from .conftest import OPEN, body


def test_board_wake_only_keeps_nothing_per_key() -> None:
    async def scenario() -> None:
        board = Board()
        woken = board.arm("approval.changed", "7")
        board.wake("approval.changed", "7")
        assert woken.is_set()
        board.disarm("approval.changed", "7")
        assert board.known("approval.changed", "7") is None  # no version remembered
        idle = board.arm("approval.changed", "8")
        board.disarm("approval.changed", "8")
        assert not idle.is_set()
        assert board._events == {} and board._armed == {}  # a gone waiter leaves nothing
        first, second = board.arm("t", "9"), board.arm("t", "9")
        assert first is second
        board.disarm("t", "9")
        board.wake("t", "9")  # the other waiter is still armed and hears it
        assert second.is_set()
        board.disarm("t", "9")
        assert board._events == {} and board._armed == {}

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_decision_from_another_process_wakes_the_long_poll_through_redis(
    tenant, agent, refunds: ApprovalQueue, token_and_raw, settings
) -> None:  # type: ignore[no-untyped-def]
    url = os.environ.get("TEST_REDIS_URL")
    if not url:
        pytest.skip("Redis is not available (TEST_REDIS_URL unset); .ci/run requires it")
    import redis
    import uvicorn

    from apps.core.fastpath.app import FastPath
    from controlplane.asgi import django_application

    from ..conftest import _free_port

    settings.REDIS_URL = url
    settings.FASTPATH_WAIT_RECHECK_S = 600  # only the event can answer within the wait
    events.reset_redis_client()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            FastPath(django_application), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.02)
        base, raw = f"http://127.0.0.1:{port}", token_and_raw[1]
        headers = {"Authorization": f"Bearer {raw}"}
        opened = requests.post(base + OPEN, json=body(), headers=headers, timeout=10).json()
        threading.Event().wait(0.5)  # the subscriber connects to Redis
        result: dict[str, requests.Response] = {}
        poller = threading.Thread(
            target=lambda: result.setdefault(
                "r",
                requests.get(f"{base}{OPEN}/{opened['id']}?wait=8", headers=headers, timeout=15),
            )
        )
        poller.start()
        threading.Event().wait(0.3)
        # Another process's decision: the row changes without any in-process notification ...
        ApprovalRequest.objects.filter(pk=opened["id"]).update(
            status=Status.REJECTED, comment="no", version=5
        )
        # ... and only the Redis message announces it.
        message = {
            "topic": events.APPROVAL_CHANGED,
            "key": str(opened["id"]),
            "payload": {"revision": 5, "status": "rejected"},
        }
        redis.Redis.from_url(url).publish(events.CHANNEL, json.dumps(message))
        poller.join(timeout=15)
        answer = result["r"].json()
        assert answer["status"] == "rejected" and answer["outcome"] == "deny"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        settings.REDIS_URL = ""
        events.reset_redis_client()

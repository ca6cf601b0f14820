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
        redis.Redis.from_url(url).publish(events.channel(url), json.dumps(message))
        poller.join(timeout=15)
        answer = result["r"].json()
        assert answer["status"] == "rejected" and answer["outcome"] == "deny"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        settings.REDIS_URL = ""
        events.reset_redis_client()


@pytest.mark.django_db(transaction=True)
def test_wait__cancelled_while_parked__leaves_no_task_slot_or_hold_behind(
    tenant, agent, refunds: ApprovalQueue, token_and_raw
) -> None:  # type: ignore[no-untyped-def]
    """A server that cancels a request's task (a client gone under some ASGI servers, a
    shutdown) ends the long-poll there: nothing of it may stay behind."""
    import contextlib

    from apps.approvals.services import approval_open
    from apps.core.fastpath.app import FastPath
    from controlplane.asgi import django_application

    token, raw = token_and_raw
    opened = approval_open(
        tenant_id=tenant.pk,
        environment_id=token.environment_id,
        token_id=token.pk,
        token_agent_id=None,
        token_label="fleet",
        body=body(),
    ).request

    def parked(task: asyncio.Task[object]) -> bool:
        return not task.done() and "Event.wait" in repr(task.get_coro())

    async def scenario() -> tuple[list[str], object, object, object, object]:
        app = FastPath(django_application)

        async def receive() -> dict[str, object]:
            await asyncio.Event().wait()  # the client says nothing more
            return {}

        async def send(message: dict[str, object]) -> None:
            pass

        scope = {
            "type": "http",
            "method": "GET",
            "scheme": "http",
            "path": f"{OPEN}/{opened.pk}",
            "query_string": b"wait=30",
            "headers": [(b"authorization", f"Bearer {raw}".encode())],
        }
        request = asyncio.create_task(app(scope, receive, send))
        for _ in range(1000):  # until the wait is parked on its wake-up
            if any(parked(task) for task in asyncio.all_tasks()):
                break
            await asyncio.sleep(0.01)
        request.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await request
        await asyncio.sleep(0)
        left = [repr(task.get_coro()) for task in asyncio.all_tasks() if parked(task)]
        await app._stop()
        return left, app.board._armed, app.board._events, dict(app._held), dict(app._waiting)

    left, armed, waits, held, waiting = asyncio.run(scenario())

    assert left == []
    assert armed == {} and waits == {} and held == {} and waiting == {}

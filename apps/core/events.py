"""The one event seam: a service announces what it committed, subscribers react by topic.

A service calls ``publish_after_commit(topic, key, payload)`` inside the transaction of its
change; nothing happens unless and until that transaction commits. Then:

1. every handler registered with ``subscribe(topic, handler, everywhere=True)`` runs in every
   process that listens: directly in this one, and, when Redis is configured (production),
   through Redis pub/sub (``channel()``) in every other web process — that is how each web
   process's fast path (``apps.core.fastpath``) hears a revision bump committed elsewhere.
   In the embedded default (no Redis) only the direct, in-process delivery exists;
2. every handler registered with ``subscribe(topic, handler)`` runs once, in the process that
   committed (e.g. ``runtimes`` logs the revision and enqueues its webhook push).

Handlers are isolated: one raising is logged and costs neither the others nor the committed
change's answer. A delivery Redis swallows (an outage) is caught up by the beat
(``rebroadcast``) and by the fast path's own catch-up poll (docs/decisions/0010, 0013, 0017).

Topics in use (topic — key — payload — publisher — subscribers):

- ``environment.revision`` — environment id — ``{"environment_id", "revision"}`` —
  ``tenancy.services.environment_revision_bump`` — ``runtimes.services.revision_announced``
  (once), the fast path's board (everywhere).
- ``runtime_token.revoked`` — token hash — ``{}`` — ``accounts.runtime_tokens.
  runtime_token_revoke`` — the fast path's token cache and waiting requests (everywhere).
- ``scope.archived`` — ``"<kind>:<id>"`` — ``{"kind": "tenant"|"environment"|"agent",
  "id", "name", "by": who archived it}`` — ``tenancy.services`` archive services — the fast
  path's token cache (everywhere), ``rollouts.services.rollouts_pause_archived`` (once).
- ``scope.restored`` — ``"<kind>:<id>"`` — the same payload — ``tenancy.services`` restore
  services — the fast path's cache of refused tokens, the budgets' scope cache (everywhere):
  a token refused while its scope was archived is looked up again at once;
  ``rollouts.services.rollouts_pause_archived`` (once).
- ``telemetry.ingested`` — tenant id — ``{"tenant_id", "environment_id", "usage": [[agent_id,
  end_user_hash, minute ISO 8601, cost_usd str, tokens, requests, tool_calls], …],
  "request_ids": [...]}`` (what a batch newly stored, summed per agent, end user and minute;
  ``request_ids`` of its new records) — ``telemetry.services`` ingestion, process-local
  (``broadcast=False``: only the committing process reacts) — ``budgets.services.
  consumption_ingested`` (once).
- ``approval.changed`` — approval request id — ``{"revision": its version, "tenant_id",
  "environment_id", "runtime_id", "token_id", "status", "approval": the runtime's document}`` —
  ``approvals.services`` (opened, voted, decided, expired, escalated, cancelled) — the fast
  path's approval waits (everywhere, wake only), ``runtimes.services.approval_push_enqueue``
  (once: a final decision to the runtime's push URL).

This module imports no app: publishers and subscribers import it."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)


def channel(redis_url: str | None = None) -> str:
    """The Redis pub/sub channel every web process of this installation listens on:
    ``cp:events:<database number>`` of ``redis_url`` (default ``settings.REDIS_URL``).

    Pub/sub channels are global to a Redis server, not to its numbered databases, so two
    installations sharing a Redis server on different databases (or two test workers) would
    otherwise wake each other's runtimes with revisions of the other's environments."""
    from redis.connection import parse_url  # local: only needed when Redis is configured

    url = redis_url if redis_url is not None else settings.REDIS_URL or ""
    # the database as redis-py's client reads it: the path, or ``?db=`` (a Unix socket's
    # path is the socket, not a database)
    database = parse_url(url).get("db") if url else None
    return f"cp:events:{database or 0}"


ENVIRONMENT_REVISION = "environment.revision"
RUNTIME_TOKEN_REVOKED = "runtime_token.revoked"  # noqa: S105 - a topic name, not a secret
SCOPE_ARCHIVED = "scope.archived"
SCOPE_RESTORED = "scope.restored"
TELEMETRY_INGESTED = "telemetry.ingested"
APPROVAL_CHANGED = "approval.changed"


@dataclass(frozen=True)
class Event:
    """One committed change: ``topic`` (what kind), ``key`` (which one, a string: it crosses
    processes as JSON) and ``payload`` (JSON-serialisable details)."""

    topic: str
    key: str
    payload: Mapping[str, Any] = field(default_factory=dict)

    def as_message(self) -> dict[str, Any]:
        """The JSON object sent on ``channel()``."""
        return {"topic": self.topic, "key": self.key, "payload": dict(self.payload)}

    @classmethod
    def from_message(cls, message: Mapping[str, Any]) -> Event:
        """The event of a ``channel()`` message; raises ``ValueError`` for anything else."""
        topic, key, payload = message.get("topic"), message.get("key"), message.get("payload")
        if not isinstance(topic, str) or not isinstance(key, str) or not isinstance(payload, dict):
            raise ValueError("not an event message")
        return cls(topic, key, payload)


Handler = Callable[[Event], None]

_lock = threading.Lock()
_once: dict[str, list[Handler]] = {}
_everywhere: dict[str, list[Handler]] = {}
_redis_client = None


def subscribe(topic: str, handler: Handler, *, everywhere: bool = False) -> None:
    """Call ``handler(event)`` for each committed event of ``topic``: once, in the committing
    process; or, with ``everywhere``, in every listening process (see the module docstring).
    Registering the same handler twice is a no-op (AppConfig.ready may run more than once)."""
    with _lock:
        handlers = (_everywhere if everywhere else _once).setdefault(topic, [])
        if handler not in handlers:
            handlers.append(handler)


def unsubscribe(topic: str, handler: Handler, *, everywhere: bool = False) -> None:
    """Undo ``subscribe``; a handler not registered is ignored."""
    with _lock:
        handlers = (_everywhere if everywhere else _once).get(topic, [])
        if handler in handlers:
            handlers.remove(handler)


def publish_after_commit(
    topic: str, key: str, payload: Mapping[str, Any] | None = None, *, broadcast: bool = True
) -> None:
    """Announce ``(topic, key, payload)`` once the current transaction commits; nothing if it
    rolls back. Outside a transaction (autocommit) it is announced at once. Never raises for
    a subscriber's or Redis's failure (logged instead). ``broadcast=False``: only this
    process's ``once`` handlers hear it (no ``everywhere`` delivery, nothing on Redis) — for
    bulky payloads only the committing process needs (telemetry's consumption summary)."""
    event = Event(topic, str(key), dict(payload or {}))
    # robust: a failure after commit must never turn a committed change into a 500
    if broadcast:
        transaction.on_commit(lambda: _publish(event), robust=True)
    else:
        transaction.on_commit(lambda: _deliver(_handlers(_once, event.topic), event), robust=True)


def rebroadcast(topic: str, key: str, payload: Mapping[str, Any] | None = None) -> None:
    """Deliver an already-announced event again to the ``everywhere`` subscribers only (the
    beat's catch-up after an outage; they must be idempotent). Never raises."""
    _broadcast(Event(topic, str(key), dict(payload or {})))


def receive(message: Mapping[str, Any]) -> None:
    """Deliver a ``channel()`` message (from any process) to this process's ``everywhere``
    subscribers. Raises ``ValueError`` for a message that is not an event."""
    _deliver(_handlers(_everywhere, (event := Event.from_message(message)).topic), event)


def _publish(event: Event) -> None:
    # Everywhere first: waking the fleet's waiting runtimes must not wait behind a once
    # handler's database write or broker enqueue (the propagation benchmark's hot path).
    _broadcast(event)
    _deliver(_handlers(_once, event.topic), event)


def _broadcast(event: Event) -> None:
    _deliver(_handlers(_everywhere, event.topic), event)
    try:
        client = _redis()
        if client is not None:
            client.publish(channel(), json.dumps(event.as_message()))
    except Exception:  # a missed publish is caught up by the fast path's poll and the beat
        log.warning("events.redis_publish_failed", extra={"topic": event.topic}, exc_info=True)


def _handlers(registry: dict[str, list[Handler]], topic: str) -> list[Handler]:
    with _lock:
        return list(registry.get(topic, ()))


def _deliver(handlers: list[Handler], event: Event) -> None:
    for handler in handlers:
        try:
            handler(event)
        except Exception:
            log.warning(
                "events.handler_failed",
                extra={"topic": event.topic, "handler": getattr(handler, "__qualname__", handler)},
                exc_info=True,
            )


def _redis():  # type: ignore[no-untyped-def]
    global _redis_client
    if _redis_client is None and settings.REDIS_URL:
        import redis  # local: only needed when Redis is configured
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # Runs after commit inside a request: a down or hung Redis may cost it a bounded
        # moment, never the whole hang (no retries here: the beat re-publishes).
        _redis_client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_connect_timeout=settings.REDIS_SOCKET_CONNECT_TIMEOUT_S,
            socket_timeout=settings.REDIS_SOCKET_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
    return _redis_client


def reset_redis_client() -> None:
    """Forget the Redis connection so the next publish reconnects to ``settings.REDIS_URL``
    (tests that point it elsewhere)."""
    global _redis_client
    _redis_client = None

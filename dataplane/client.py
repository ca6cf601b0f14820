"""Config sync for an agent runtime: fetch, verify, apply, acknowledge, survive outages.

One ``Runtime`` per process. ``start()`` loads the last-known-good snapshot from disk, tries one
fetch, then runs two daemon threads:

- the poll thread long-polls ``GET /api/runtime/v1/config?wait=30`` with ``If-None-Match``,
  verifies each new snapshot (digest, Ed25519 signature) and swaps it in atomically, or NACKs it
  and keeps serving what it had;
- the heartbeat thread registers the runtime (its first heartbeat), reports ACK/NACK as soon as
  something changes and every ``heartbeat_interval_s`` otherwise, with circuit breaker states.

Readers call ``runtime.snapshot`` (one reference, read under a lock) and never see a half-applied
revision. When the control plane is unreachable the runtime keeps serving what it has, kill
switches included (fail-static), and backs off exponentially with jitter.

Budgets (docs/budgets.md): ``guard()`` enforces the snapshot's ``budgets``; for strict ones the
agent loop reserves before an expensive step and settles after (``budget_reserve``,
``budget_settle``). The runtime remembers since when the control plane has been unreachable
(failed config fetches, failed reservations); past ``budget_grace_s`` requests in the scope of
a strict budget are refused, within it a reservation that could not be made is granted.

Approvals (docs/runtime-api.md, "Approvals"): ``approval_request`` opens a request for a
human (idempotent), ``approval_wait`` long-polls until it is decided (woken at once by a
signed ``approval.decided`` push when ``serve_push`` runs), ``approval_cancel`` withdraws it;
``call_tool_with_approval`` / ``approval_gate`` (dataplane/gate.py) tie them to the guard and
execute only what was approved."""

from __future__ import annotations

import logging
import math
import queue
import random
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

from ._version import __version__
from .approvals import (
    APPROVALS_PATH,
    MAX_CANCEL_REASON,
    Approval,
    ApprovalConflict,
    ApprovalError,
    ApprovalRefused,
    ApprovalUnavailable,
    build_request,
    parse_approval,
    sensitive_args_of,
)
from .breaker import BreakerBoard
from .budgets import (
    RESERVE_PATH,
    SETTLE_PATH,
    ReserveResult,
    SettleResult,
    amounts_json,
    check_reservation_id,
    reserve_result,
)
from .cache import LastKnownGood
from .gate import DEFAULT_EXPIRY_GRACE_S, DEFAULT_TIMEOUT_S, ApprovalGate
from .guardrails import RequestContext, RequestGuard
from .ratelimit import RateLimiter
from .snapshot import Snapshot
from .transport import Aborted, Response, Transport, TransportError
from .verify import KeyRing, KeysUnavailable, VerificationError, parse_envelope, verify_envelope
from .webhook import ApprovalPush, Push, PushReceiver, PushVerifier

CONFIG_PATH = "/api/runtime/v1/config"
HEARTBEAT_PATH = "/api/runtime/v1/heartbeat"
KEYS_PATH = "/api/runtime/v1/keys"

log = logging.getLogger("dataplane.client")

# Bounds on what the runtime remembers of reservations: the ones the control plane granted
# (only those are settled over the network) and settles waiting for a retry.
MAX_REMOTE_RESERVATIONS = 10_000
MAX_PENDING_SETTLES = 1_000
# Decisions received by push, kept for a wait that starts after its push arrived.
MAX_PUSHED_APPROVALS = 10_000
# The longest single long-poll of an approval: well under the 60 s the control plane allows
# and the idle timeouts of common proxies and load balancers.
APPROVAL_CHUNK_S = 30

T = TypeVar("T")
_ID = re.compile(r"[A-Za-z0-9_.:@/-]{1,128}")

Source = Literal["control-plane", "disk-cache"]


class ServerError(Exception):
    """The control plane answered, but not usefully (5xx, 401, unexpected status)."""


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": the wait is uniform in [ceiling/2, ceiling].

    Jitter keeps a fleet that lost the control plane at the same moment from coming back in
    lock-step; the lower half-bound keeps a single runtime from retrying in a tight loop."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        ceiling = min(self.cap_s, self.base_s * 2 ** max(0, failures - 1))
        return (rng or random).uniform(ceiling / 2, ceiling)


@dataclass(frozen=True)
class Report:
    """What the next heartbeat says about the last snapshot the runtime considered."""

    status: Literal["ack", "nack"]
    revision: int
    error: str = ""


@dataclass(frozen=True)
class SyncStatus:
    revision: int | None
    source: Source | None
    consecutive_failures: int
    last_error: str  # why the last fetch failed (network, server); "" once one succeeds
    control_plane_revision: int | None
    rejected_revision: int | None
    rejection: str  # why the last rejected revision was NACKed


class Runtime:
    """The config-sync client an agent runtime embeds (see the module docstring)."""

    def __init__(
        self,
        base_url: str,
        token: str,
        instance_id: str,
        *,
        name: str = "",
        labels: Mapping[str, str] | None = None,
        cache_dir: str | Path | None = None,
        push_url: str = "",
        wait_s: int = 30,
        heartbeat_interval_s: float = 10.0,
        request_timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        trusted_keys: Mapping[str, str] | None = None,
        breakers: BreakerBoard | None = None,
        on_change: Callable[[Snapshot | None, Snapshot], None] | None = None,
        library_version: str = __version__,
        budget_grace_s: float = 60.0,
        budget_timeout_s: float = 2.0,
        clock: Callable[[], datetime] | None = None,
        agents: Iterable[str] | None = None,
    ) -> None:
        """``agents``: the slugs of the agents this runtime serves; the heartbeat reports them
        (and only their digests), so the control plane counts this runtime for those agents
        alone. None: every agent of the snapshot (what the token's scope delivers).
        ``budget_grace_s``: how long (seconds) the control plane may be unreachable before
        requests in the scope of a strict budget are refused. ``budget_timeout_s``: the
        timeout of a reserve or settle call (it sits in the request path). ``clock``: an
        aware "now" (budgets' ``resets_at``, the grace); tests inject one."""
        if not 0 < wait_s <= 60:
            raise ValueError("wait_s must be in 1..60 (the control plane's long-poll limit)")
        self.base_url = base_url
        self.instance_id = instance_id
        self.name = name
        self.labels = dict(labels or {})
        self.agents: tuple[str, ...] | None = tuple(agents) if agents is not None else None
        self.push_url = push_url
        self.wait_s = wait_s
        self.heartbeat_interval_s = heartbeat_interval_s
        self.request_timeout_s = request_timeout_s
        self.backoff = backoff or Backoff()
        self.breakers = breakers or BreakerBoard()
        # Per-runtime tool rate limits (bundle ``rate_limit``); None switches them off.
        self.rate_limits: RateLimiter | None = RateLimiter()
        self.library_version = library_version
        self._token = token
        self._on_change = on_change
        self._cache = LastKnownGood(cache_dir) if cache_dir is not None else None
        self._trusted_keys = dict(trusted_keys or {})
        agent = f"dataplane/{library_version}"
        self._poll_http = Transport(base_url, token, user_agent=agent)
        self._beat_http = Transport(base_url, token, user_agent=agent)
        self.budget_grace_s = budget_grace_s
        self.budget_timeout_s = budget_timeout_s
        self._clock = clock or (lambda: datetime.now(UTC))
        self._user_agent = agent
        # Reserve, settle and the approval calls run on request threads, many at once, and a
        # Transport serves one thread at a time: a small pool of idle connections, one taken
        # per call.
        self._request_pool: queue.LifoQueue[Transport] = queue.LifoQueue()
        # Approvals: decisions received by push, and the transports of the long-polls waiting
        # for each request (a push cuts them short). A transport that was aborted is never
        # pooled again: its abort could spill over onto the next request.
        self.approval_chunk_s = APPROVAL_CHUNK_S
        self._approval_cond = threading.Condition()
        self._pushed_approvals: OrderedDict[int, Approval] = OrderedDict()
        self._approval_waiters: dict[int, set[Transport]] = {}
        self._spoiled: set[Transport] = set()
        self._budget_lock = threading.Lock()
        self._remote_reservations: OrderedDict[str, None] = OrderedDict()
        self._pending_settles: OrderedDict[str, dict[str, object]] = OrderedDict()
        self._unreachable_since: datetime | None = None
        # Pinned keys replace the key endpoint: a key the control plane publishes later is
        # not trusted unless the operator pins it too.
        self._keys = KeyRing(
            fetch=None if self._trusted_keys else self._fetch_keys, keys=self._trusted_keys
        )

        self._cond = threading.Condition()
        self._snapshot: Snapshot | None = None
        self._source: Source | None = None
        self._report: Report | None = None
        self._etag: str | None = None
        self._failures = 0
        self._last_error = ""
        self._server_revision: int | None = None
        self._rejected_revision: int | None = None
        self._rejection = ""
        self._behind_at: int | None = None

        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._beat_now = threading.Event()
        self._threads: list[threading.Thread] = []
        self._receiver: PushReceiver | None = None

    # -- what the agent loop reads ---------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot | None:
        """The snapshot being served: one immutable object, swapped whole on each apply."""
        with self._cond:
            return self._snapshot

    @property
    def source(self) -> Source | None:
        with self._cond:
            return self._source

    def status(self) -> SyncStatus:
        with self._cond:
            return self._status_locked()

    def guard(
        self,
        agent: str,
        session_id: str,
        context: RequestContext | None = None,
        *,
        user_id: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> RequestGuard:
        """A guard for one request: the bundle version is chosen once (a request does not
        change version mid-way), kill switches are read live so an engaged one takes effect at
        the next check. ``properties``: Unleash context properties (``tenantId``) the
        rollout's stickiness and constraints may read. Budgets are read live too, at the
        runtime's clock: ``context.end_user_hash`` places the request in ``end_user``
        budgets."""
        return RequestGuard(
            self.snapshot,
            agent=agent,
            session_id=session_id,
            context=context,
            breakers=self.breakers,
            live=lambda: self.snapshot,
            user_id=user_id,
            rate_limits=self.rate_limits,
            properties=properties,
            clock=self._clock,
            budget_port=self,
        )

    def shadow_guard(
        self,
        agent: str,
        session_id: str,
        context: RequestContext | None = None,
        *,
        user_id: str | None = None,
        properties: Mapping[str, str] | None = None,
    ) -> RequestGuard | None:
        """For a session the rollout shadows (shadow phase, ``shadow_percentage``): a guard
        running the candidate beside the live request, whose decisions are all ``shadow``
        (nothing executed; its record's variant is ``shadow``). None for any other session:
        then only the live request runs."""
        guard = RequestGuard(
            self.snapshot,
            agent=agent,
            session_id=session_id,
            context=context,
            live=lambda: self.snapshot,
            user_id=user_id,
            properties=properties,
            shadow=True,
            clock=self._clock,
            budget_port=self,
        )
        return guard if guard.version is not None else None

    def wait_for_revision(self, revision: int, timeout: float | None = None) -> bool:
        """Block until a snapshot with at least ``revision`` is served."""
        with self._cond:
            return self._cond.wait_for(
                lambda: self._snapshot is not None and self._snapshot.revision >= revision, timeout
            )

    def wait_for(
        self, predicate: Callable[[SyncStatus], bool], timeout: float | None = None
    ) -> bool:
        """Block until ``predicate(status())`` holds (e.g. a NACK was recorded)."""
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._status_locked()), timeout)

    def _status_locked(self) -> SyncStatus:
        return SyncStatus(
            revision=self._snapshot.revision if self._snapshot else None,
            source=self._source,
            consecutive_failures=self._failures,
            last_error=self._last_error,
            control_plane_revision=self._server_revision,
            rejected_revision=self._rejected_revision,
            rejection=self._rejection,
        )

    # -- lifecycle --------------------------------------------------------------------------

    def start(self, *, initial_fetch: bool = True) -> None:
        """Serve the disk cache at once (if any), try one fetch, then sync in the background.

        Returns without raising when the control plane is unreachable: the runtime then serves
        its last-known-good snapshot, or nothing (every tool call denied) if it never had one."""
        if self._threads:
            raise RuntimeError("runtime already started")
        self._load_cache()
        if initial_fetch:
            self._poll_once()
        self._threads = [
            threading.Thread(target=self._heartbeat_loop, name="dataplane-heartbeat", daemon=True),
            threading.Thread(target=self._poll_loop, name="dataplane-poll", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop both threads (cutting an in-flight long-poll short); True when they ended."""
        self._stopping.set()
        self._wake.set()
        self._beat_now.set()
        self._poll_http.abort()
        self._beat_http.abort()
        for thread in self._threads:
            thread.join(timeout)
        stopped = not any(thread.is_alive() for thread in self._threads)
        if self._receiver is not None:
            self._receiver.stop()
            self._receiver = None
        self._poll_http.close()
        self._beat_http.close()
        with self._approval_cond:
            waiting = [t for transports in self._approval_waiters.values() for t in transports]
            self._spoiled.update(waiting)
            self._approval_cond.notify_all()
        for transport in waiting:
            transport.abort()
        while True:
            try:
                self._request_pool.get_nowait().close()
            except queue.Empty:
                break
        return stopped

    def poke(self, revision: int | None = None) -> None:
        """Fetch now (a webhook push or an operator's hint), unless ``revision`` is already
        served or was already rejected."""
        with self._cond:
            served = self._snapshot.revision if self._snapshot else 0
            if revision is not None and (revision <= served or revision == self._rejected_revision):
                return
        self._wake.set()
        self._poll_http.abort()

    def serve_push(self, *, host: str = "127.0.0.1", port: int = 0, advertise_url: str = "") -> str:
        """Start a webhook receiver that turns verified pushes into ``poke``; returns the URL
        the heartbeat advertises (``advertise_url`` when the bind address is not reachable)."""
        receiver = PushReceiver(
            verifier=PushVerifier(self._token),
            on_push=self._on_push,
            on_approval=self._on_approval_push,
            host=host,
            port=port,
        )
        receiver.start()
        self._receiver = receiver
        self.push_url = advertise_url or receiver.url
        self._beat_now.set()
        return self.push_url

    def _on_push(self, push: Push) -> None:
        self.poke(push.revision)

    def sync_once(self) -> None:
        """One fetch-verify-apply cycle without the background threads (tests, batch jobs)."""
        if self._threads:
            raise RuntimeError("the background threads own the connection; use poke()")
        self._poll_once()
        self._send_heartbeat()
        self.retry_settles()

    # -- fetching and applying --------------------------------------------------------------

    def _fetch_keys(self) -> Mapping[str, Any]:
        response = self._poll_http.request("GET", KEYS_PATH, timeout=self.request_timeout_s)
        if response.status != 200:
            raise KeysUnavailable(f"GET {KEYS_PATH} answered HTTP {response.status}")
        document = response.json()
        if not isinstance(document, dict):
            raise KeysUnavailable("the key document is not a JSON object")
        return document

    def _poll_once(self, wait: int = 0) -> None:
        """One request; failures are recorded, not raised (the caller decides to back off)."""
        try:
            self._fetch(wait)
        except Aborted:
            return
        except (TransportError, ServerError, KeysUnavailable) as exc:
            self._record_failure(exc)
        else:
            with self._cond:
                self._failures = 0
                self._last_error = ""
                self._cond.notify_all()
            self._note_reachable()

    def _fetch(self, wait: int) -> None:
        headers = {"If-None-Match": self._etag} if self._etag else {}
        path = f"{CONFIG_PATH}?wait={wait}" if wait and self._etag else CONFIG_PATH
        response = self._poll_http.request(
            "GET", path, headers=headers, timeout=wait + self.request_timeout_s
        )
        if response.status == 304:
            return
        if response.status != 200:
            raise ServerError(f"GET {CONFIG_PATH} answered HTTP {response.status}")
        self._consider(response)

    def _consider(self, response: Response) -> None:
        etag = response.headers.get("etag")
        try:
            envelope = parse_envelope(response.body)
            snapshot = verify_envelope(envelope, self._keys, raw=response.body)
            self._check_continuity(snapshot)
        except VerificationError as exc:
            # Remember the ETag of what was rejected: the next long-poll then waits for a new
            # revision instead of fetching and NACKing the same bytes in a loop.
            self._etag = etag
            self._reject(_claimed_revision(response.body), str(exc))
            return
        self._apply(snapshot, "control-plane")
        self._etag = etag
        if self._cache is not None:
            try:
                self._cache.save(parse_envelope(snapshot.raw), self._keys.export())
            except OSError as exc:
                log.warning("runtime.cache_write_failed", extra={"error": str(exc)})

    def _check_continuity(self, snapshot: Snapshot) -> None:
        with self._cond:
            current, source = self._snapshot, self._source
        if current is None:
            return
        if (snapshot.tenant, snapshot.environment) != (current.tenant, current.environment):
            # A token is scoped to one environment, so the scope cannot change while the process
            # runs; it can across a restart (a new token, an old cache), and then the fresh
            # snapshot from the control plane wins over the file.
            if source == "disk-cache":
                return
            raise VerificationError(
                f"snapshot is for {snapshot.tenant}/{snapshot.environment}, "
                f"this runtime serves {current.tenant}/{current.environment}"
            )
        # A validly signed but older snapshot is a replay or a rollback of the control plane's
        # state; applying it could silently release kill switches engaged since.
        if snapshot.revision < current.revision:
            raise VerificationError(
                f"revision {snapshot.revision} is older than the served revision {current.revision}"
            )

    def _apply(self, snapshot: Snapshot, source: Source) -> None:
        with self._cond:
            previous = self._snapshot
            self._snapshot = snapshot
            self._source = source
            self._report = Report("ack", snapshot.revision)
            self._cond.notify_all()
        _log_kill_switch_changes(previous, snapshot)
        log.info(
            "runtime.snapshot_applied",
            extra={"revision": snapshot.revision, "digest": snapshot.digest, "source": source},
        )
        self._beat_now.set()
        if self._on_change is not None and (previous is None or previous.digest != snapshot.digest):
            try:
                self._on_change(previous, snapshot)
            except Exception:
                # The embedding application's callback must not kill the sync thread.
                log.exception("runtime.on_change_failed")

    def _reject(self, revision: int | None, error: str) -> None:
        with self._cond:
            served = self._snapshot.revision if self._snapshot else None
            # The heartbeat API needs a revision for a NACK; when the body was too broken to
            # name one, the control plane's own current revision is the one that failed.
            # A new body means the control plane moved past what is served.
            rejected = revision or max(self._server_revision or 0, (served or 0) + 1)
            self._rejected_revision = rejected
            self._report = Report("nack", rejected, error)
            self._rejection = error
            self._cond.notify_all()
        log.warning(
            "runtime.snapshot_rejected",
            extra={"revision": rejected, "error": error, "serving": served},
        )
        self._beat_now.set()

    def _record_failure(self, exc: Exception) -> None:
        self._note_unreachable()
        with self._cond:
            self._failures += 1
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._cond.notify_all()
            serving = self._snapshot.revision if self._snapshot else None
            failures = self._failures
        log.warning(
            "runtime.sync_failed",
            extra={"error": str(exc), "failures": failures, "serving": serving},
        )

    def _load_cache(self) -> None:
        if self._cache is None:
            return
        cached = self._cache.load()
        if cached is None:
            return
        # The cache is verified like a fresh snapshot, with the keys that verified it (plus any
        # pinned ones) and without fetching: at start the control plane may well be down.
        keys = KeyRing(keys=self._trusted_keys or cached.keys)
        try:
            snapshot = verify_envelope(cached.envelope, keys)
        except (VerificationError, KeysUnavailable) as exc:
            log.warning("runtime.cache_rejected", extra={"error": str(exc)})
            return
        if not self._trusted_keys:
            self._keys.load_document(
                {"keys": [{"kid": kid, "public_key": key} for kid, key in cached.keys.items()]}
            )
        self._apply(snapshot, "disk-cache")

    # -- budgets ----------------------------------------------------------------------------

    def unreachable_s(self, now: datetime | None = None) -> float:
        """Seconds the control plane has been unreachable at ``now`` (the runtime's clock by
        default): since the first failed config fetch or reservation after the last call
        that reached it; 0 when that one did."""
        with self._budget_lock:
            since = self._unreachable_since
        if since is None:
            return 0.0
        return max(0.0, ((now or self._clock()) - since).total_seconds())

    def _note_unreachable(self) -> None:
        with self._budget_lock:
            if self._unreachable_since is None:
                self._unreachable_since = self._clock()

    def _note_reachable(self) -> None:
        with self._budget_lock:
            self._unreachable_since = None

    def _take_transport(self) -> Transport:
        try:
            return self._request_pool.get_nowait()
        except queue.Empty:
            return Transport(self.base_url, self._token, user_agent=self._user_agent)

    @contextmanager
    def _pooled_transport(self) -> Iterator[Transport]:
        transport = self._take_transport()
        try:
            yield transport
        finally:
            self._request_pool.put(transport)

    def budget_reserve(
        self,
        *,
        reservation_id: str,
        request_id: str,
        agent: str,
        end_user_hash: str = "",
        estimate: Mapping[str, object],
    ) -> ReserveResult:
        """Reserve ``estimate`` (any of ``cost_usd`` in USD, ``tokens``, ``requests``,
        ``tool_calls``) before an expensive step of request ``request_id``
        (``POST /api/runtime/v1/budgets/reserve``; ``reservation_id`` is its idempotency
        key). Asks the control plane only when a strict budget of the served snapshot is
        in scope (``agent``, ``end_user_hash``); otherwise granted locally. When the call
        fails (network, 5xx, 429) the reservation is granted within ``budget_grace_s`` of
        the control plane being unreachable and refused past it (``error_code``
        ``budget:<id>:unreachable``). ValueError for a malformed id or estimate."""
        check_reservation_id(reservation_id)
        body_estimate = amounts_json(estimate, where="estimate")
        snapshot = self.snapshot
        strict = [
            b
            for b in (snapshot.budgets_for(agent) if snapshot else ())
            if b.strict and b.holds(agent, end_user_hash)
        ]
        if not strict:
            return ReserveResult(reservation_id=reservation_id, granted=True, source="local")
        body: dict[str, object] = {
            "reservation_id": reservation_id,
            "request_id": request_id,
            "agent": agent,
            "estimate": body_estimate,
        }
        if end_user_hash:
            body["end_user_hash"] = end_user_hash
        try:
            with self._pooled_transport() as http:
                response = http.request(
                    "POST", RESERVE_PATH, json_body=body, timeout=self.budget_timeout_s
                )
            if response.status == 429 or response.status >= 500:
                raise ServerError(f"POST {RESERVE_PATH} answered HTTP {response.status}")
            if response.status != 200:
                # The control plane answered but refused the call itself (400: a field the
                # local checks let through; 404: an agent it does not know). Not an outage;
                # the runtime cannot hold the budget to account, so it serves (fail open).
                log.warning(
                    "budget.reserve_rejected",
                    extra={"status": response.status, "body": response.body[:500]},
                )
                self._note_reachable()
                return ReserveResult(reservation_id=reservation_id, granted=True, source="local")
            result = reserve_result(reservation_id, response.json())
        except (TransportError, ServerError, ValueError) as exc:
            self._note_unreachable()
            unreachable = self.unreachable_s()
            closed = unreachable > self.budget_grace_s
            log.warning(
                "budget.reserve_failed",
                extra={
                    "reservation_id": reservation_id,
                    "error": str(exc),
                    "unreachable_s": round(unreachable, 1),
                    "granted": not closed,
                },
            )
            return ReserveResult(
                reservation_id=reservation_id,
                granted=not closed,
                source="offline",
                error_code=f"budget:{strict[0].id}:unreachable" if closed else "",
            )
        self._note_reachable()
        if result.granted:
            with self._budget_lock:
                self._remote_reservations[reservation_id] = None
                while len(self._remote_reservations) > MAX_REMOTE_RESERVATIONS:
                    self._remote_reservations.popitem(last=False)
        else:
            log.info(
                "budget.reservation_refused",
                extra={"reservation_id": reservation_id, "error_code": result.error_code},
            )
        return result

    def budget_settle(self, *, reservation_id: str, actual: Mapping[str, object]) -> SettleResult:
        """Settle a reservation with what the step consumed (``actual``: any of the four
        metrics; ``POST /api/runtime/v1/budgets/settle``). Only reservations the control
        plane granted go over the network (status ``local`` otherwise). Never raises: a
        failed call is logged and retried in the background (status ``pending``)."""
        with self._budget_lock:
            remote = reservation_id in self._remote_reservations
        if not remote:
            return SettleResult(reservation_id=reservation_id, status="local")
        try:
            body: dict[str, object] = {
                "reservation_id": reservation_id,
                "actual": amounts_json(actual, where="actual"),
            }
        except ValueError as exc:
            log.warning(
                "budget.settle_invalid", extra={"reservation_id": reservation_id, "error": str(exc)}
            )
            return SettleResult(reservation_id=reservation_id, status="local")
        return self._settle(body)

    def _settle(self, body: dict[str, object]) -> SettleResult:
        reservation_id = str(body["reservation_id"])
        try:
            with self._pooled_transport() as http:
                response = http.request(
                    "POST", SETTLE_PATH, json_body=body, timeout=self.budget_timeout_s
                )
            if response.status == 429 or response.status >= 500:
                raise ServerError(f"POST {SETTLE_PATH} answered HTTP {response.status}")
            document = response.json() if response.status == 200 else {}
        except (TransportError, ServerError, ValueError) as exc:
            with self._budget_lock:
                self._pending_settles[reservation_id] = body
                while len(self._pending_settles) > MAX_PENDING_SETTLES:
                    dropped, _ = self._pending_settles.popitem(last=False)
                    log.warning("budget.settle_dropped", extra={"reservation_id": dropped})
            log.warning(
                "budget.settle_failed", extra={"reservation_id": reservation_id, "error": str(exc)}
            )
            return SettleResult(reservation_id=reservation_id, status="pending")
        with self._budget_lock:
            self._remote_reservations.pop(reservation_id, None)
            self._pending_settles.pop(reservation_id, None)
        if response.status != 200 or not isinstance(document, dict):
            # 404: the control plane does not know it (or no longer); nothing to retry.
            log.warning(
                "budget.settle_rejected",
                extra={"reservation_id": reservation_id, "status": response.status},
            )
            return SettleResult(reservation_id=reservation_id, status="unknown")
        return SettleResult(
            reservation_id=reservation_id,
            status=str(document.get("status") or "settled"),
            duplicate=bool(document.get("duplicate")),
        )

    def retry_settles(self) -> int:
        """Send again the settles whose call failed (the heartbeat thread does it each
        beat); returns how many are still pending."""
        with self._budget_lock:
            bodies = list(self._pending_settles.values())
        for body in bodies:
            if self._settle(body).status == "pending":
                break  # still unreachable: the rest waits for the next beat
        with self._budget_lock:
            return len(self._pending_settles)

    # -- approvals --------------------------------------------------------------------------

    def _sensitive_args(self, agent: str, tool: str) -> set[str]:
        """The ``sensitive_args`` of ``tool`` in every version of ``agent`` served now (stable
        and candidate): redacting their union cannot miss one, whichever version asked."""
        snapshot = self.snapshot
        release = snapshot.agents.get(agent) if snapshot is not None else None
        names: set[str] = set()
        for version in (release.stable, release.candidate) if release is not None else ():
            if version is None:
                continue
            for spec in version.bundle.get("tools") or []:
                if isinstance(spec, Mapping) and spec.get("name") == tool:
                    names.update(sensitive_args_of(spec))
        return names

    def approval_request(
        self,
        agent: str,
        tool: str,
        arguments: Mapping[str, Any],
        *,
        session_id: str,
        reason: str = "",
        excerpt: Iterable[Mapping[str, Any]] = (),
        risk: str | None = None,
        rule: str = "",
        request_id: str | None = None,
        requested_by: str | None = None,
        idempotency_key: str | None = None,
        discriminator: str = "",
        bundle_version: int | None = None,
        sensitive_args: Iterable[str] | None = None,
        timeout_s: float = 30.0,
    ) -> Approval:
        """Open an approval request for one tool call (``POST /api/runtime/v1/approvals``)
        and return it as the control plane answered (``pending``, or already final for a
        repeat of a decided one).

        ``arguments``: the call's full arguments. Their hash (sha256 of the RFC 8785
        canonical JSON) is what a decision pins; the arguments sent have the tool contract's
        ``sensitive_args`` (of every served version of ``agent``, plus ``sensitive_args``)
        replaced by ``"[redacted]"``. ``idempotency_key``: by default derived from the
        session, the tool, the arguments' hash, ``request_id`` and ``discriminator``, so a
        retry after a lost answer reopens the same request, and a later request's same call
        a new one (``dataplane.approvals.derive_idempotency_key``).
        ``risk``: read, write or critical (the control plane takes the higher of it and the
        contract's); ``reason`` (≤ 2000 characters, cut), ``excerpt`` (``{"role",
        "content"}`` turns, the last 20 kept), ``rule`` (the guard check that asked),
        ``request_id``, ``requested_by`` (the human the agent acts for, who may not approve)
        and ``bundle_version`` are shown to the approver; the runtime's ``instance_id`` goes
        along as ``runtime_id``, so the decision is pushed to this runtime. ``timeout_s``:
        how long (seconds) network failures and 5xx answers are retried with backoff (the
        same key, so retrying is safe).

        Raises ``ApprovalRefused`` (429: the session has its queue's limit of open
        requests; ``detail`` is the control plane's sentence, ``retry_after_s`` its
        Retry-After), ``ApprovalConflict`` (409: the key names another call),
        ``ApprovalUnavailable`` (unreachable within ``timeout_s``), ``ApprovalError`` (any
        other refusal: 400 with field ``errors``, 401, 404 for an agent outside the token's
        scope, or an answer that is not this call's approval); ValueError for arguments or
        fields the contract refuses (before anything is sent)."""
        sensitive = self._sensitive_args(agent, tool) | set(sensitive_args or ())
        body = build_request(
            agent=agent,
            tool=tool,
            arguments=arguments,
            session_id=session_id,
            sensitive=sensitive,
            idempotency_key=idempotency_key,
            discriminator=discriminator,
            risk=risk,
            reason=reason,
            excerpt=excerpt,
            bundle_version=bundle_version,
            request_id=request_id,
            rule=rule,
            requested_by=requested_by,
            # The decision is pushed to this instance's push_url (if it serves one).
            runtime_id=self.instance_id if _ID.fullmatch(self.instance_id) else None,
        )
        response = self._approval_call("POST", APPROVALS_PATH, body, timeout_s)
        if response.status not in (200, 201):
            raise _approval_refusal(response, f"POST {APPROVALS_PATH}")
        approval = _approval_answer(response)
        if (approval.tool, approval.arguments_sha256) != (tool, body["arguments_sha256"]):
            raise ApprovalError(
                f"the control plane answered with approval #{approval.id} for "
                f"{approval.tool} {approval.arguments_sha256[:12]}…, not this call",
                status=response.status,
            )
        log.info(
            "approval.requested",
            extra={
                "approval": approval.id,
                "tool": tool,
                "status": approval.status,
                "repeat": response.status == 200,
            },
        )
        return approval

    def approval_wait(self, approval_id: int, timeout_s: float) -> Approval:
        """Block until approval ``approval_id`` is final or ``timeout_s`` seconds passed, and
        return it as last seen (still ``pending`` at the timeout). Long-polls
        ``GET /api/runtime/v1/approvals/{id}?wait=N`` in chunks of at most
        ``approval_chunk_s`` (30) seconds; a verified ``approval.decided`` push (see
        ``serve_push``) ends the wait at once. Network failures, 429 and 5xx answers are
        retried with the runtime's backoff until the timeout.

        Raises ``ApprovalUnavailable`` when no answer came within the timeout (or the
        runtime is stopping), ``ApprovalError`` for a refusal (404: the id is not in the
        token's scope; 401) or an answer that is not this approval; ValueError for a
        negative timeout."""
        if timeout_s < 0:
            raise ValueError("timeout_s must not be negative")
        deadline = time.monotonic() + timeout_s
        failures = 0
        last: Approval | None = None
        error: Exception | None = None
        while True:
            pushed = self._pushed(approval_id)
            if pushed is not None:
                return pushed
            if self._stopping.is_set():
                raise ApprovalUnavailable(f"approval #{approval_id}: the runtime is stopping")
            remaining = deadline - time.monotonic()
            wait = max(0, min(self.approval_chunk_s, math.ceil(remaining)))
            started = time.monotonic()
            try:
                approval = self._approval_poll(approval_id, wait)
            except Aborted:
                continue  # a push (or stop) cut the poll short: looked at above
            except (TransportError, ServerError) as exc:
                error = exc
                failures += 1
                log.info(
                    "approval.wait_failed",
                    extra={"approval": approval_id, "error": str(exc), "failures": failures},
                )
            else:
                if approval.final:
                    return approval
                last, failures = approval, 0
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if last is not None:
                    return last
                raise ApprovalUnavailable(
                    f"approval #{approval_id}: no answer within {timeout_s:g} s ({error})"
                ) from error
            if failures:
                pause = min(self.backoff.delay(failures), remaining)
            elif time.monotonic() - started < min(1.0, wait):
                # "pending" long before the wait asked for (a proxy cutting long-polls):
                # do not turn the wait into a tight loop.
                pause = min(1.0, remaining)
            else:
                pause = 0.0
            if pause:
                with self._approval_cond:
                    self._approval_cond.wait_for(
                        lambda: approval_id in self._pushed_approvals or self._stopping.is_set(),
                        pause,
                    )

    def approval_cancel(
        self, approval_id: int, reason: str = "", timeout_s: float = 10.0
    ) -> Approval:
        """Withdraw approval ``approval_id`` (``POST /api/runtime/v1/approvals/{id}/cancel``,
        ``reason`` cut at 500 characters) and return it: ``cancelled``, or its final state
        unchanged when it was already decided, expired or cancelled (check ``status``).
        Network failures and 5xx answers are retried for ``timeout_s`` seconds.

        Raises ``ApprovalUnavailable`` (unreachable within ``timeout_s``) or
        ``ApprovalError`` (404: the id is not in the token's scope; 401; an answer that is
        not this approval)."""
        path = f"{APPROVALS_PATH}/{int(approval_id)}/cancel"
        body = {"reason": reason[:MAX_CANCEL_REASON]} if reason else {}
        response = self._approval_call("POST", path, body, timeout_s)
        if response.status != 200:
            raise _approval_refusal(response, f"POST {path}")
        approval = _approval_answer(response)
        if approval.id != approval_id:
            raise ApprovalError(f"POST {path} answered with approval #{approval.id}")
        log.info("approval.cancelled", extra={"approval": approval_id, "status": approval.status})
        return approval

    def approval_gate(
        self,
        guard: RequestGuard,
        *,
        request_id: str | None = None,
        requested_by: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        expiry_grace_s: float = DEFAULT_EXPIRY_GRACE_S,
    ) -> ApprovalGate:
        """An ``ApprovalGate`` (dataplane/gate.py) for the request ``guard`` serves: its tool
        calls ask a human when the guard says so and execute only what was approved.
        ``timeout_s``: the longest a call waits for a decision (seconds)."""
        return ApprovalGate(
            self,
            guard,
            request_id=request_id,
            requested_by=requested_by,
            timeout_s=timeout_s,
            expiry_grace_s=expiry_grace_s,
            clock=self._clock,
        )

    def call_tool_with_approval(
        self,
        guard: RequestGuard,
        tool: str,
        arguments: Mapping[str, Any],
        execute: Callable[[dict[str, Any]], T],
        *,
        confidence: float | None = None,
        reason: str = "",
        excerpt: Iterable[Mapping[str, Any]] = (),
        discriminator: str = "",
        request_id: str | None = None,
        requested_by: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> T:
        """``approval_gate(guard, ...).call(tool, arguments, execute, ...)``: run
        ``execute(arguments)`` if the guard allows the call, at once or once a human approved
        exactly these arguments (their canonical sha256), and return its result. Raises a
        ``ToolCallRefused`` (``GuardDenied``, ``ApprovalDenied``, ``ApprovalMismatch``,
        ``ApprovalTimedOut``, ``ApprovalNotOpened``) whenever ``execute`` was not called."""
        gate = self.approval_gate(
            guard, request_id=request_id, requested_by=requested_by, timeout_s=timeout_s
        )
        return gate.call(
            tool,
            arguments,
            execute,
            confidence=confidence,
            reason=reason,
            excerpt=excerpt,
            discriminator=discriminator,
        )

    def _approval_call(
        self, method: str, path: str, body: Mapping[str, Any], timeout_s: float
    ) -> Response:
        """One idempotent approvals call, retried with backoff on network failures and 5xx
        answers for ``timeout_s`` seconds; raises ApprovalUnavailable past that."""
        deadline = time.monotonic() + timeout_s
        failures = 0
        while True:
            try:
                with self._pooled_transport() as http:
                    response = http.request(
                        method, path, json_body=body, timeout=self.request_timeout_s
                    )
                if response.status < 500:
                    return response
                raise ServerError(f"{method} {path} answered HTTP {response.status}")
            except (TransportError, ServerError) as exc:
                failures += 1
                delay = self.backoff.delay(failures)
                if self._stopping.is_set() or time.monotonic() + delay > deadline:
                    raise ApprovalUnavailable(
                        f"{method} {path} failed {failures} time(s): {exc}"
                    ) from exc
                log.info("approval.call_failed", extra={"path": path, "error": str(exc)})
                self._stopping.wait(delay)

    def _approval_poll(self, approval_id: int, wait: int) -> Approval:
        """One long-poll of ``approval_id``; Aborted when a push or ``stop`` cut it short,
        TransportError / ServerError for what is worth retrying, ApprovalError otherwise."""
        transport = self._take_transport()
        with self._approval_cond:
            self._approval_waiters.setdefault(approval_id, set()).add(transport)
        try:
            if self._pushed(approval_id) is not None or self._stopping.is_set():
                raise Aborted("decided by push, or stopping")
            path = f"{APPROVALS_PATH}/{int(approval_id)}?wait={wait}"
            response = transport.request("GET", path, timeout=wait + self.request_timeout_s)
        finally:
            with self._approval_cond:
                waiters = self._approval_waiters.get(approval_id)
                if waiters is not None:
                    waiters.discard(transport)
                    if not waiters:
                        del self._approval_waiters[approval_id]
                spoiled = transport in self._spoiled
                self._spoiled.discard(transport)
            if spoiled:
                transport.close()
            else:
                self._request_pool.put(transport)
        if response.status == 429 or response.status >= 500:
            raise ServerError(f"GET {path} answered HTTP {response.status}")
        if response.status != 200:
            raise _approval_refusal(response, f"GET {path}")
        approval = _approval_answer(response)
        if approval.id != approval_id:
            raise ApprovalError(f"GET {path} answered with approval #{approval.id}")
        return approval

    def _pushed(self, approval_id: int) -> Approval | None:
        with self._approval_cond:
            return self._pushed_approvals.get(approval_id)

    def _on_approval_push(self, push: ApprovalPush) -> None:
        """A verified decision: remembered (a wait starting later finds it) and every
        long-poll waiting for it cut short."""
        approval = push.approval
        with self._approval_cond:
            self._pushed_approvals[approval.id] = approval
            self._pushed_approvals.move_to_end(approval.id)
            while len(self._pushed_approvals) > MAX_PUSHED_APPROVALS:
                self._pushed_approvals.popitem(last=False)
            waiting = self._approval_waiters.pop(approval.id, set())
            self._spoiled.update(waiting)
            self._approval_cond.notify_all()
        for transport in waiting:
            transport.abort()
        log.info("approval.pushed", extra={"approval": approval.id, "status": approval.status})

    # -- background threads -----------------------------------------------------------------

    def _poll_loop(self) -> None:
        while not self._stopping.is_set():
            self._poll_once(self.wait_s)
            if self._stopping.is_set():
                return
            with self._cond:
                failures = self._failures
            if failures:
                self._wake.wait(self.backoff.delay(failures))
            elif self._etag is None:
                # No ETag, no long-poll: the server answered 200 at once and would again. Poll
                # at the long-poll cadence instead of spinning.
                self._wake.wait(self.wait_s)
            self._wake.clear()

    def _heartbeat_loop(self) -> None:
        while not self._stopping.is_set():
            self._beat_now.clear()
            self._send_heartbeat()
            self.retry_settles()
            self._beat_now.wait(self.heartbeat_interval_s)

    def heartbeat_payload(self) -> dict[str, Any]:
        with self._cond:
            report = self._report
            snapshot = self._snapshot
        payload: dict[str, Any] = {
            "instance_id": self.instance_id,
            "name": self.name,
            "labels": self.labels,
            "library_version": self.library_version,
            "agents": self.served_agents(snapshot),
            "digests": snapshot.served_digests(self.agents) if snapshot else {},
            "push_url": self.push_url,
            "circuit_breakers": self.breakers.report(),
        }
        if report is not None:
            payload.update(status=report.status, revision=report.revision, error=report.error)
        return payload

    def served_agents(self, snapshot: Snapshot | None = None) -> list[str]:
        """The agent slugs the heartbeat reports as served: those given to the constructor,
        else every agent of ``snapshot`` (of the current one when not given; none before the
        first snapshot, which the control plane reads as "not said yet")."""
        if self.agents is not None:
            return sorted(self.agents)
        if snapshot is None:
            with self._cond:
                snapshot = self._snapshot
        return sorted(snapshot.agents) if snapshot is not None else []

    def _send_heartbeat(self) -> None:
        payload = self.heartbeat_payload()
        try:
            response = self._beat_http.request(
                "POST", HEARTBEAT_PATH, json_body=payload, timeout=self.request_timeout_s
            )
        except TransportError as exc:
            log.info("runtime.heartbeat_failed", extra={"error": str(exc)})
            return
        if response.status != 200:
            log.warning(
                "runtime.heartbeat_refused",
                extra={"status": response.status, "body": response.body[:500]},
            )
            return
        try:
            current = int(response.json()["revision"])
        except (ValueError, KeyError, TypeError):
            return
        with self._cond:
            self._server_revision = current
            served = self._snapshot.revision if self._snapshot else 0
            behind = current > max(served, self._rejected_revision or 0)
            healthy = self._failures == 0
            # Behind at two heartbeats in a row for the same revision: not a change still on
            # its way (the long-poll brings those), a lost wake-up.
            stuck = behind and self._behind_at == current
            self._behind_at = current if behind else None
        # A safety net under the long-poll. Not while backing off, to keep the backoff honest.
        if stuck and healthy and self._threads:
            self.poke(current)


# A runtime can be referred to by what it does for the agent: keep its config in sync.
ConfigSync = Runtime


def _claimed_revision(body: bytes) -> int | None:
    try:
        revision = parse_envelope(body).get("snapshot", {}).get("revision")
    except (VerificationError, AttributeError):
        return None
    return revision if isinstance(revision, int) and revision > 0 else None


def _approval_answer(response: Response) -> Approval:
    """The ``{approval}`` of a 200/201 answer; ApprovalError when it is not one."""
    try:
        return parse_approval(response.json())
    except ValueError as exc:
        raise ApprovalError(
            f"the control plane's answer is not an approval: {exc}", status=response.status
        ) from exc


def _approval_refusal(response: Response, call: str) -> ApprovalError:
    """The exception for a refused approvals call: its ``detail`` and field ``errors``."""
    try:
        document = response.json()
    except ValueError:
        document = None
    detail = ""
    errors: Mapping[str, Any] = {}
    if isinstance(document, dict):
        detail = str(document.get("detail") or "")
        if isinstance(document.get("errors"), dict):
            errors = document["errors"]
    if not detail:
        detail = response.body[:500].decode("utf-8", "replace") or f"HTTP {response.status}"
    if response.status == 429:
        # The Retry-After header, or the body's retry_after_s (some answers carry only that).
        hint = response.headers.get("retry-after") or (
            document.get("retry_after_s") if isinstance(document, dict) else None
        )
        try:
            retry_after: float | None = float(hint) if hint is not None else None
        except (TypeError, ValueError):
            retry_after = None
        return ApprovalRefused(detail, retry_after_s=retry_after)
    kind = ApprovalConflict if response.status == 409 else ApprovalError
    return kind(
        f"{call} answered HTTP {response.status}: {detail}"
        + (f" {dict(errors)}" if errors else ""),
        status=response.status,
        detail=detail,
        errors=errors,
    )


def _log_kill_switch_changes(previous: Snapshot | None, current: Snapshot) -> None:
    before = {switch.id: switch for switch in previous.kill_switches} if previous else {}
    after = {switch.id: switch for switch in current.kill_switches}
    for switch_id in after.keys() - before.keys():
        log.warning("kill_switch.engaged", extra={"switch": after[switch_id].describe()})
    for switch_id in before.keys() - after.keys():
        # Released only because the control plane said so in a verified snapshot; logged so the
        # runtime's own record shows when protection went away.
        log.warning("kill_switch.released", extra={"switch": before[switch_id].describe()})

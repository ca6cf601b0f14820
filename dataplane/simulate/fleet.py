"""N simulated runtimes against a real control plane: each a full ``Runtime`` (own instance
id, long-poll, heartbeats) plus a worker thread feeding the fake agent synthetic traffic.

Approvals (``approvals="live"``, the default): a call that needs a human opens a real
approval request and waits for the decision (``simulate.agent.LiveApprovals``). The worker
serves each request on a pool thread and waits for it to finish, as it would inline, unless
it starts waiting for a human: then the worker goes on with the next request and the parked
one finishes (and is recorded) when its decision comes. At most ``max_in_flight`` requests
per runtime are in flight; beyond that the worker waits for one to end. ``"simulated"``: the
offline fake human, every request served inline."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from ..client import Backoff, Runtime
from ..guardrails import RequestContext
from ..usage import Mode, UsageRecord, UsageReporter
from .agent import (
    APPROVAL_TIMEOUT_S,
    BLOCKED,
    BUDGET_BLOCKED,
    ESCALATED,
    FAILED,
    REJECTED,
    RESOLVED,
    WRONG_ACTION,
    FakeAgent,
    LiveApprovals,
    RequestRecord,
    SyntheticRequest,
    synthetic_request,
)
from .stats import VersionKey, VersionStats, outcome_stats

log = logging.getLogger("dataplane.simulate")

ApprovalMode = Literal["live", "simulated"]


# What the simulator's outcomes are in the records API (docs/runtime-api.md). A wrong action
# looked like a success to the runtime: its quality score (0) is what tells them apart.
API_OUTCOME = {
    RESOLVED: "success",
    ESCALATED: "escalated",
    REJECTED: "policy_denied",
    BLOCKED: "policy_denied",
    BUDGET_BLOCKED: "budget_blocked",
    FAILED: "error",
    WRONG_ACTION: "success",
}


def usage_record(record: RequestRecord, *, finished_at: datetime | None = None) -> UsageRecord:
    """A simulated request in the fields of the records API."""
    finished = finished_at or datetime.now(UTC)
    outcome = API_OUTCOME.get(record.outcome, "error")
    return UsageRecord(
        request_id=record.request_id,
        agent=record.agent,
        started_at=finished - timedelta(milliseconds=record.latency_ms),
        latency_ms=record.latency_ms,
        outcome=outcome,
        version_digest=record.digest or "",
        variant=record.role or "stable",
        session_id=record.session_id,
        tool_calls=record.tool_calls,
        wrong_actions=record.wrong_actions,
        tokens_in=record.total_tokens,
        cost_usd=record.cost_usd,
        # budget:<id> or cap:<name> for a budget_blocked request; else the simulator's outcome
        error_code=record.error_code or ("" if outcome == "success" else record.outcome),
        quality_score=record.quality,
    )


class RecordReporter:
    """The fleet's usage reporter (``dataplane.usage.UsageReporter``) fed with simulated
    requests: records, or 10-second buckets plus sampled/errored records (``mode``).
    Best effort: telemetry never slows down request handling."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        instance_id: str = "sim-fleet",
        mode: Mode = "records",
        batch_size: int = 500,
        flush_interval_s: float = 2.0,
    ):
        self.usage = UsageReporter(
            url,
            token,
            instance_id=instance_id,
            mode=mode,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
        )

    @property
    def enabled(self) -> bool:
        """False once the control plane answered 404 (no records endpoint)."""
        return self.usage.enabled

    @property
    def sent(self) -> int:
        return self.usage.sent

    @property
    def dropped(self) -> int:
        return self.usage.dropped

    def start(self) -> None:
        self.usage.start()

    def add(self, record: RequestRecord) -> None:
        self.usage.record(usage_record(record))

    def flush(self) -> None:
        self.usage.flush()

    def stop(self) -> None:
        self.usage.stop()


class SimulatedRuntime:
    def __init__(
        self,
        *,
        runtime: Runtime,
        agent: str,
        seed: int | str,
        interval_s: float,
        sink: Callable[[RequestRecord], None],
        max_requests: int | None = None,
        tool_failure_rate: float = 0.02,
        approvals: ApprovalMode = "live",
        approval_timeout_s: float = APPROVAL_TIMEOUT_S,
        max_in_flight: int = 64,
    ) -> None:
        """``approvals``: ``live`` (real approval requests through ``runtime``, waited for
        without blocking the other requests) or ``simulated`` (the offline fake human);
        ``approval_timeout_s``: the longest one call waits for a decision (seconds);
        ``max_in_flight``: how many requests may wait at once."""
        if max_in_flight < 1:
            raise ValueError("max_in_flight must be at least 1")
        self.runtime = runtime
        self.fake = FakeAgent(agent, tool_failure_rate=tool_failure_rate)
        self.agent = agent
        self.seed = seed
        self.interval_s = interval_s
        self.max_requests = max_requests
        self.approvals: ApprovalMode = approvals
        self.approval_timeout_s = approval_timeout_s
        self.handled = 0
        self._sink = sink
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._work, name=f"simulate-{runtime.instance_id}", daemon=True
        )
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._in_flight = 0
        self._flight = threading.Condition()
        self._pool = (
            ThreadPoolExecutor(
                max_workers=max_in_flight, thread_name_prefix=f"simulate-{runtime.instance_id}"
            )
            if approvals == "live"
            else None
        )

    def start(self) -> None:
        self.runtime.start()
        self._thread.start()

    def _work(self) -> None:
        instance = self.runtime.instance_id
        while not self._stopping.is_set():
            if self.max_requests is not None and self.handled >= self.max_requests:
                return
            request = synthetic_request(
                random.Random(f"{self.seed}:{instance}:{self.handled}"),
                f"{instance}-{self.handled}",
            )
            if self._pool is None:
                self._serve(request, None)
            elif not self._dispatch(request):
                return
            self.handled += 1
            self._stopping.wait(self.interval_s)

    def _dispatch(self, request: SyntheticRequest) -> bool:
        """Serve ``request`` on a pool thread; return once it finished or waits for a human
        (False when the runtime stopped first)."""
        assert self._pool is not None
        while not self._slots.acquire(timeout=0.1):
            if self._stopping.is_set():
                return False
        parked = threading.Event()
        with self._flight:
            self._in_flight += 1
        self._pool.submit(self._serve_in_flight, request, parked)
        while not parked.wait(0.1):
            if self._stopping.is_set():
                return False
        return True

    def _serve_in_flight(self, request: SyntheticRequest, parked: threading.Event) -> None:
        try:
            self._serve(request, parked)
        except Exception:
            log.exception("simulate.request_failed", extra={"request_id": request.request_id})
        finally:
            parked.set()
            self._slots.release()
            with self._flight:
                self._in_flight -= 1
                self._flight.notify_all()

    def _serve(self, request: SyntheticRequest, parked: threading.Event | None) -> None:
        """One request (and its shadow run, if the rollout shadows its session), recorded.
        ``parked`` (live approvals): set when the request starts waiting for a human."""
        instance = self.runtime.instance_id
        snapshot = self.runtime.snapshot
        context = RequestContext(
            end_user_role=request.end_user_role,
            tenant=snapshot.tenant if snapshot else None,
            environment=snapshot.environment if snapshot else None,
        )
        properties = {"tenantId": request.tenant} if request.tenant else None
        guard = self.runtime.guard(self.agent, request.session_id, context, properties=properties)
        live = (
            LiveApprovals(
                self.runtime,
                timeout_s=self.approval_timeout_s,
                on_wait=lambda _approval: parked.set(),
            )
            if parked is not None
            else None
        )
        self._sink(self.fake.handle(request, guard, instance, approvals=live))
        # In a rollout's shadow phase, a shadowed session also runs the candidate: a
        # second record, variant shadow, whose actions were not executed.
        shadow = self.runtime.shadow_guard(
            self.agent, request.session_id, context, properties=properties
        )
        if shadow is not None:
            self._sink(self.fake.handle(request, shadow, instance))

    @property
    def in_flight(self) -> int:
        """Requests being served or waiting for a human now."""
        with self._flight:
            return self._in_flight

    def finished(self, timeout: float | None = None) -> bool:
        """Has the worker handled its ``max_requests``, with none still waiting?"""
        deadline = None if timeout is None else time.monotonic() + timeout
        self._thread.join(timeout)
        if self._thread.is_alive():
            return False
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        with self._flight:
            return self._flight.wait_for(lambda: self._in_flight == 0, left)

    def stop(self) -> bool:
        """Stop the worker and the runtime; requests waiting for a human then stop waiting
        (their requests are cancelled, their conversations escalated and recorded)."""
        self._stopping.set()
        self._thread.join()
        stopped = self.runtime.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        return stopped


class Fleet:
    """``runtimes`` simulated runtimes sharing ``rps`` requests per second between them."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        runtimes: int = 10,
        agent: str = "support-bot",
        rps: float = 10.0,
        seed: int | str = 0,
        instance_prefix: str = "sim",
        cache_root: str | Path | None = None,
        report: bool = True,
        report_mode: Mode = "records",
        requests_per_runtime: int | None = None,
        tool_failure_rate: float = 0.02,
        wait_s: int = 30,
        heartbeat_interval_s: float = 10.0,
        backoff: Backoff | None = None,
        enforce_rate_limits: bool = False,
        approvals: ApprovalMode = "live",
        approval_timeout_s: float = APPROVAL_TIMEOUT_S,
        max_in_flight: int = 64,
    ) -> None:
        """``approvals``, ``approval_timeout_s``, ``max_in_flight``: per runtime, see
        ``SimulatedRuntime``."""
        if runtimes < 1 or rps <= 0:
            raise ValueError("need at least one runtime and a positive rps")
        self.records: list[RequestRecord] = []
        self._lock = threading.Lock()
        self.reporter = (
            RecordReporter(url, token, instance_id=f"{instance_prefix}-fleet", mode=report_mode)
            if report
            else None
        )
        interval = runtimes / rps
        self.members = []
        for index in range(runtimes):
            instance_id = f"{instance_prefix}-{index:04d}"
            runtime = Runtime(
                url,
                token,
                instance_id,
                name=f"simulated runtime {index}",
                labels={"simulated": "true", "agent": agent},
                agents=[agent],
                cache_dir=Path(cache_root) / instance_id if cache_root is not None else None,
                wait_s=wait_s,
                heartbeat_interval_s=heartbeat_interval_s,
                backoff=backoff,
            )
            if not enforce_rate_limits:
                # Off by default: simulated traffic is far denser than one real runtime's, and
                # a bundle's per-runtime rate limits (the demo's open_ticket: 3 per 10 min)
                # would then decide most outcomes and hide the difference between versions.
                runtime.rate_limits = None
            self.members.append(
                SimulatedRuntime(
                    runtime=runtime,
                    agent=agent,
                    seed=seed,
                    interval_s=interval,
                    sink=self._record,
                    max_requests=requests_per_runtime,
                    tool_failure_rate=tool_failure_rate,
                    approvals=approvals,
                    approval_timeout_s=approval_timeout_s,
                    max_in_flight=max_in_flight,
                )
            )

    def _record(self, record: RequestRecord) -> None:
        with self._lock:
            self.records.append(record)
        if self.reporter is not None:
            self.reporter.add(record)

    def start(self) -> None:
        if self.reporter is not None:
            self.reporter.start()
        for member in self.members:
            member.start()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """With ``requests_per_runtime``: block until every runtime handled its share."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for member in self.members:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not member.finished(left):
                return False
        return True

    def stop(self) -> bool:
        """Stop every runtime at once (one after another, the last ones kept syncing with a
        control plane that may be stopping too), then flush the usage reporter."""
        with ThreadPoolExecutor(max_workers=max(1, len(self.members))) as pool:
            stopped = all(list(pool.map(lambda member: member.stop(), self.members)))
        if self.reporter is not None:
            self.reporter.stop()
        return stopped

    def stats(self) -> dict[VersionKey, VersionStats]:
        """Per-(agent, version) outcome statistics over everything handled so far."""
        with self._lock:
            records = list(self.records)
        return outcome_stats(records)

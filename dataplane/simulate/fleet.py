"""N simulated runtimes against a real control plane: each a full ``Runtime`` (own instance
id, long-poll, heartbeats) plus a worker thread feeding the fake agent synthetic traffic."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..client import Backoff, Runtime
from ..guardrails import RequestContext
from ..usage import Mode, UsageRecord, UsageReporter
from .agent import (
    BLOCKED,
    BUDGET_BLOCKED,
    ESCALATED,
    FAILED,
    REJECTED,
    RESOLVED,
    WRONG_ACTION,
    FakeAgent,
    RequestRecord,
    synthetic_request,
)
from .stats import VersionKey, VersionStats, outcome_stats

log = logging.getLogger("dataplane.simulate")


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
    ) -> None:
        self.runtime = runtime
        self.fake = FakeAgent(agent, tool_failure_rate=tool_failure_rate)
        self.agent = agent
        self.seed = seed
        self.interval_s = interval_s
        self.max_requests = max_requests
        self.handled = 0
        self._sink = sink
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._work, name=f"simulate-{runtime.instance_id}", daemon=True
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
            snapshot = self.runtime.snapshot
            context = RequestContext(
                end_user_role=request.end_user_role,
                tenant=snapshot.tenant if snapshot else None,
                environment=snapshot.environment if snapshot else None,
            )
            properties = {"tenantId": request.tenant} if request.tenant else None
            guard = self.runtime.guard(
                self.agent, request.session_id, context, properties=properties
            )
            self._sink(self.fake.handle(request, guard, instance))
            # In a rollout's shadow phase, a shadowed session also runs the candidate: a
            # second record, variant shadow, whose actions were not executed.
            shadow = self.runtime.shadow_guard(
                self.agent, request.session_id, context, properties=properties
            )
            if shadow is not None:
                self._sink(self.fake.handle(request, shadow, instance))
            self.handled += 1
            self._stopping.wait(self.interval_s)

    def finished(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self) -> bool:
        self._stopping.set()
        self._thread.join()
        return self.runtime.stop()


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
    ) -> None:
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
        stopped = all([member.stop() for member in self.members])
        if self.reporter is not None:
            self.reporter.stop()
        return stopped

    def stats(self) -> dict[VersionKey, VersionStats]:
        """Per-(agent, version) outcome statistics over everything handled so far."""
        with self._lock:
            records = list(self.records)
        return outcome_stats(records)

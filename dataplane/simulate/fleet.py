"""N simulated runtimes against a real control plane: each a full ``Runtime`` (own instance
id, long-poll, heartbeats) plus a worker thread feeding the fake agent synthetic traffic."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .._version import __version__
from ..client import Backoff, Runtime
from ..guardrails import RequestContext
from ..transport import Transport, TransportError
from .agent import FakeAgent, RequestRecord, synthetic_request
from .stats import VersionKey, VersionStats, outcome_stats

RECORDS_PATH = "/api/runtime/v1/records"

log = logging.getLogger("dataplane.simulate")


class RecordReporter:
    """Batches request records to ``POST /api/runtime/v1/records``, best effort.

    Telemetry must never slow down or break request handling: a batch that cannot be delivered
    is dropped (and counted), and a 404 — a control plane without the endpoint yet — switches
    reporting off for the rest of the run."""

    def __init__(
        self, url: str, token: str, *, batch_size: int = 200, flush_interval_s: float = 2.0
    ):
        self._http = Transport(url, token, user_agent=f"dataplane-simulate/{__version__}")
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._pending: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._flush_now = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dataplane-records", daemon=True)
        self.enabled = True
        self.sent = 0
        self.dropped = 0

    def start(self) -> None:
        self._thread.start()

    def add(self, record: RequestRecord) -> None:
        if not self.enabled:
            return
        with self._lock:
            self._pending.append(record)
            full = len(self._pending) >= self._batch_size
        if full:
            self._flush_now.set()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._flush_now.wait(self._flush_interval_s)
            self._flush_now.clear()
            self.flush()

    def flush(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        if not batch or not self.enabled:
            return
        body = {"records": [record.as_json() for record in batch]}
        try:
            response = self._http.request("POST", RECORDS_PATH, json_body=body, timeout=10)
        except TransportError as exc:
            self.dropped += len(batch)
            log.info("simulate.records_failed", extra={"error": str(exc)})
            return
        if response.status == 404:
            self.enabled = False
            self.dropped += len(batch)
            log.info("simulate.records_unsupported")
        elif 200 <= response.status < 300:
            self.sent += len(batch)
        else:
            self.dropped += len(batch)
            log.info("simulate.records_refused", extra={"status": response.status})

    def stop(self) -> None:
        self._stopping.set()
        self._flush_now.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush()
        self._http.close()


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
            guard = self.runtime.guard(self.agent, request.session_id, context)
            self._sink(self.fake.handle(request, guard, instance))
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
        self.reporter = RecordReporter(url, token) if report else None
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

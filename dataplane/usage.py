"""Usage reporting: what each request did, sent to ``POST /api/runtime/v1/records``.

Two modes (docs/runtime-api.md, "Request records"):

* ``records`` (small fleets): every request as one record, batched (at most 1,000 per POST,
  500 by default).
* ``buckets`` (large fleets): requests summed into 10-second buckets per (agent, version
  digest, variant) with a DDSketch of the latencies; a bucket is sent once its 10 seconds
  are over. Errors (any outcome but ``success``), outliers (latency or cost above a
  threshold) and a random sample still go as raw records, and are then left out of the
  buckets, so every request is counted exactly once. The control plane's cost then grows
  with the number of runtimes, not with requests.

Buckets need the ``ddsketch`` and ``protobuf`` packages (declared with the project's; a
runtime that vendors this library alone needs them only for bucket mode: records mode
imports neither). Reporting never slows or breaks request
handling: ``record()`` only appends under a lock; a background thread sends. The endpoint
is idempotent (request ids; bucket keys per instance), so a batch that failed in transit
(network error, 5xx, 429) is simply sent again at the next flush; the backlog is bounded
(``max_pending`` records), beyond it the oldest are dropped and counted.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from ._version import __version__
from .transport import Transport, TransportError

RECORDS_PATH = "/api/runtime/v1/records"
BUCKET_SECONDS = 10
# Must match the control plane (apps/telemetry/sketches.py): sketches merge only at the same
# accuracy.
SKETCH_RELATIVE_ACCURACY = 0.01
OUTCOMES = ("success", "error", "policy_denied", "escalated", "budget_blocked", "killed")
MAX_BATCH = 1000
# The bucket fields that are plain non-negative integers, beside the count_<outcome> ones (the
# others: cost_usd a decimal string, feedback_score_sum and quality_sum numbers, latency_sketch).
# The server validates buckets against this same tuple (apps.telemetry.validation).
BUCKET_INTEGER_FIELDS = (
    "latency_sum_ms",
    "tokens_in",
    "tokens_out",
    "steps",
    "tool_calls",
    "tool_failures",
    "wrong_actions",
    "feedback_up",
    "feedback_down",
    "feedback_score_count",
    "quality_count",
)

log = logging.getLogger("dataplane.usage")

Mode = Literal["records", "buckets"]


def end_user_hash(end_user_id: str, *, key: bytes) -> str:
    """What a runtime reports instead of an end user's id: HMAC-SHA256 under a key of the
    runtime's own (so the control plane can group by user, never learn who it is)."""
    return hmac.new(key, end_user_id.encode(), hashlib.sha256).hexdigest()


@dataclass
class UsageRecord:
    """One request, in the fields of the records API (units: milliseconds, USD)."""

    request_id: str
    agent: str
    started_at: datetime
    latency_ms: int
    outcome: str = "success"
    version_digest: str = ""
    variant: str = "stable"
    session_id: str = ""
    end_user_hash: str = ""
    steps: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    # Actions the runtime (or the agent's own later check) judged wrong, e.g. a refund not owed.
    wrong_actions: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal = Decimal(0)
    model: str = ""
    error_code: str = ""
    trace_id: str = ""
    feedback_thumbs: str | None = None
    feedback_score: float | None = None
    quality_score: float | None = None

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "request_id": self.request_id,
            "agent": self.agent,
            "started_at": self.started_at.astimezone(UTC).isoformat(),
            "latency_ms": int(self.latency_ms),
            "outcome": self.outcome,
            "variant": self.variant,
            "steps": self.steps,
            "tool_calls": self.tool_calls,
            "tool_failures": self.tool_failures,
            "wrong_actions": self.wrong_actions,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_usd": str(self.cost_usd),
        }
        for name in (
            "version_digest",
            "session_id",
            "end_user_hash",
            "model",
            "error_code",
            "trace_id",
        ):
            value = getattr(self, name)
            if value:
                data[name] = value
        if self.quality_score is not None:
            data["quality_score"] = self.quality_score
        if self.feedback_thumbs is not None or self.feedback_score is not None:
            data["feedback"] = {"thumbs": self.feedback_thumbs, "score": self.feedback_score}
        return data


@dataclass
class _Bucket:
    sketch: Any
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    sums: dict[str, Any] = field(default_factory=dict)


class BucketAggregator:
    """Sums requests into 10-second buckets per (agent, version digest, variant), in the
    rollup shape the records API takes (``buckets``). Not thread-safe; the reporter locks."""

    def __init__(self) -> None:
        try:
            from ddsketch import DDSketch  # optional: only bucket mode needs it
            from ddsketch.pb.proto import DDSketchProto
        except ImportError as exc:  # pragma: no cover - depends on the installation
            raise ImportError(
                "Bucket reporting needs the ddsketch and protobuf packages: "
                "pip install 'ddsketch>=3,<4' 'protobuf>=5.26,<7'"
            ) from exc
        self._new_sketch = lambda: DDSketch(relative_accuracy=SKETCH_RELATIVE_ACCURACY)
        self._proto = DDSketchProto
        self._buckets: dict[tuple[int, str, str, str], _Bucket] = {}

    def __len__(self) -> int:
        return len(self._buckets)

    def add(self, record: UsageRecord) -> None:
        start = int(record.started_at.timestamp()) // BUCKET_SECONDS * BUCKET_SECONDS
        key = (start, record.agent, record.version_digest, record.variant)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self._new_sketch())
            bucket.sums = dict.fromkeys(BUCKET_INTEGER_FIELDS, 0)
            bucket.sums.update(cost_usd=Decimal(0), feedback_score_sum=0.0, quality_sum=0.0)
        bucket.counts[record.outcome] += 1
        bucket.sketch.add(max(0, record.latency_ms))
        sums = bucket.sums
        sums["latency_sum_ms"] += int(record.latency_ms)
        sums["tokens_in"] += record.tokens_in
        sums["tokens_out"] += record.tokens_out
        sums["cost_usd"] += record.cost_usd
        sums["steps"] += record.steps
        sums["tool_calls"] += record.tool_calls
        sums["tool_failures"] += record.tool_failures
        sums["wrong_actions"] += record.wrong_actions
        if record.feedback_thumbs == "up":
            sums["feedback_up"] += 1
        elif record.feedback_thumbs == "down":
            sums["feedback_down"] += 1
        if record.feedback_score is not None:
            sums["feedback_score_sum"] += record.feedback_score
            sums["feedback_score_count"] += 1
        if record.quality_score is not None:
            sums["quality_sum"] += record.quality_score
            sums["quality_count"] += 1

    def drain(self, now: float | None = None, *, everything: bool = False) -> list[dict[str, Any]]:
        """The buckets whose 10 seconds are over at ``now`` (epoch seconds; all of them with
        ``everything``), as the API's JSON, removed from the aggregator."""
        cutoff = (time.time() if now is None else now) - BUCKET_SECONDS
        done = [key for key in self._buckets if everything or key[0] <= cutoff]
        out = []
        for key in sorted(done):
            bucket = self._buckets.pop(key)
            start, agent, digest, variant = key
            item: dict[str, Any] = {
                "bucket_start": datetime.fromtimestamp(start, UTC).isoformat(),
                "agent": agent,
                "version_digest": digest,
                "variant": variant,
                "latency_sketch": base64.b64encode(
                    self._proto.to_proto(bucket.sketch).SerializeToString()
                ).decode(),
            }
            for outcome, count in bucket.counts.items():
                if count:
                    item[f"count_{outcome}"] = count
            for name, value in bucket.sums.items():
                item[name] = str(value) if name == "cost_usd" else value
            if not digest:
                del item["version_digest"]
            out.append(item)
        return out


class UsageReporter:
    """Reports requests in the background (see the module docstring for the modes).

    ``record()`` per request; ``start()`` once; ``stop()`` flushes what is left. Counters:
    ``sent`` (records and bucketed requests the control plane took), ``dropped`` (lost to
    a full backlog, or refused as a whole), ``rejected`` (items refused one by one)."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        instance_id: str,
        mode: Mode = "records",
        batch_size: int = 500,
        flush_interval_s: float = 2.0,
        sample_rate: float = 0.01,
        outlier_latency_ms: float | None = None,
        outlier_cost_usd: Decimal | None = None,
        max_pending: int = 20_000,
        transport: Transport | None = None,
        seed: int | None = None,
    ) -> None:
        if mode not in ("records", "buckets"):
            raise ValueError("mode is records or buckets")
        self.instance_id = instance_id
        self.mode: Mode = mode
        self.batch_size = max(1, min(batch_size, MAX_BATCH))
        self.flush_interval_s = flush_interval_s
        self.sample_rate = sample_rate
        self.outlier_latency_ms = outlier_latency_ms
        self.outlier_cost_usd = outlier_cost_usd
        self.max_pending = max_pending
        self._http = transport or Transport(url, token, user_agent=f"dataplane-usage/{__version__}")
        self._rng = random.Random(seed)
        self._records: deque[dict[str, Any]] = deque()
        self._buckets = BucketAggregator() if mode == "buckets" else None
        self._bucket_backlog: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._flush_now = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dataplane-usage", daemon=True)
        self.enabled = True
        self.sent = 0
        self.dropped = 0
        self.rejected = 0

    # --- per request ----------------------------------------------------------------------

    def raw_wanted(self, record: UsageRecord) -> bool:
        """In bucket mode, whether this request also goes as a raw record (and so not into
        a bucket): errors and every outcome but success, outliers, and a random sample."""
        if record.outcome != "success":
            return True
        if self.outlier_latency_ms is not None and record.latency_ms >= self.outlier_latency_ms:
            return True
        if self.outlier_cost_usd is not None and record.cost_usd >= self.outlier_cost_usd:
            return True
        return self._rng.random() < self.sample_rate

    def record(self, record: UsageRecord) -> None:
        """Take one finished request (cheap: no I/O)."""
        if not self.enabled:
            return
        with self._lock:
            if self._buckets is not None and not self.raw_wanted(record):
                self._buckets.add(record)
                return
            self._records.append(record.as_json())
            overflow = len(self._records) - self.max_pending
            for _ in range(max(0, overflow)):
                self._records.popleft()
                self.dropped += 1
            full = len(self._records) >= self.batch_size
        if full:
            self._flush_now.set()

    # --- sending --------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._flush_now.wait(self.flush_interval_s)
            self._flush_now.clear()
            self.flush()

    def flush(self, *, everything: bool = False) -> None:
        """Send what is due: pending records in batches, finished buckets (all buckets with
        ``everything``). Failed deliveries stay queued for the next flush."""
        with self._send_lock:
            with self._lock:
                if self._buckets is not None:
                    self._bucket_backlog.extend(self._buckets.drain(everything=everything))
            while self.enabled:
                with self._lock:
                    records = [
                        self._records.popleft()
                        for _ in range(min(self.batch_size, len(self._records)))
                    ]
                    buckets = [
                        self._bucket_backlog.popleft()
                        for _ in range(min(MAX_BATCH, len(self._bucket_backlog)))
                    ]
                if not records and not buckets:
                    return
                if not self._send(records, buckets):
                    with self._lock:  # keep them for the next flush, in order
                        self._records.extendleft(reversed(records))
                        self._bucket_backlog.extendleft(reversed(buckets))
                    return

    def _send(self, records: list[dict[str, Any]], buckets: list[dict[str, Any]]) -> bool:
        """One POST. True when the batch is settled (taken, or refused for good)."""
        body: dict[str, Any] = {}
        if records:
            body["records"] = records
        if buckets:
            body["instance_id"] = self.instance_id
            body["buckets"] = buckets
        count = len(records) + sum(_bucket_requests(b) for b in buckets)
        try:
            response = self._http.request("POST", RECORDS_PATH, json_body=body, timeout=10)
        except TransportError as exc:
            log.info("usage.send_failed", extra={"error": str(exc)})
            return False
        if response.status in (200, 207):
            result = response.json() if response.body else {}
            rejected = len(result.get("rejected", [])) if isinstance(result, dict) else 0
            self.rejected += rejected
            self.sent += count
            if rejected:
                log.warning("usage.items_rejected", extra={"rejected": result.get("rejected")})
            return True
        if response.status == 404:  # a control plane without the endpoint: stop trying
            self.enabled = False
            self.dropped += count
            log.info("usage.unsupported")
            return True
        if response.status == 429 or response.status >= 500:
            return False
        self.dropped += count
        log.warning("usage.refused", extra={"status": response.status})
        return True

    def stop(self) -> None:
        """Stop the thread and send everything left, open buckets included."""
        self._stopping.set()
        self._flush_now.set()
        if self._thread.is_alive():
            self._thread.join()
        self.flush(everything=True)
        self._http.close()


def _bucket_requests(bucket: dict[str, Any]) -> int:
    return sum(int(bucket.get(f"count_{outcome}", 0)) for outcome in OUTCOMES)

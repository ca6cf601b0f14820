"""Checking one reported item (a request record or a 10-second bucket) by hand, not with a DRF
serializer: a batch holds up to 1,000 items and this runs for each of them, so it is plain
Python (a serializer costs ~20x more per item). Errors are keyed by JSON pointer (RFC 6901),
e.g. ``/records/3/cost_usd``; a refused item is dropped alone, the batch goes on.

Pure functions: no database access (the caller passes the agents in the token's scope)."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from ddsketch.ddsketch import BaseDDSketch

from dataplane.usage import BUCKET_INTEGER_FIELDS, BUCKET_SECONDS

from .models import OUTCOME_COLUMNS, Outcome, Thumbs, Variant
from .sketches import SketchError, sketch_from_bytes

INT32_MAX = 2**31 - 1
INT63_MAX = 2**63 - 1
# cost_usd: numeric(18, 8) per record, so at most 10 digits before the point.
MAX_RECORD_COST = Decimal("9999999999.99999999")
COST_PLACES = Decimal("0.00000001")
VARIANTS = frozenset(Variant.values)
OUTCOMES = frozenset(Outcome.values)
THUMBS = frozenset(Thumbs.values)
_DIGEST = re.compile(r"^[A-Za-z0-9:._-]{1,80}$")
_ID = re.compile(r"^[\x21-\x7e]{1,128}$")  # printable ASCII, no spaces
# Control characters (NUL included) and lone surrogates, which no UTF-8 text can hold.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")
# Fields the server sets from the token; a body naming them is mistaken about what it can do.
FROM_TOKEN = ("tenant", "environment")


@dataclass(slots=True)
class Window:
    """The accepted ``started_at`` range: ``[earliest, latest]``; ``raw_days`` and
    ``future_s`` describe it in messages."""

    earliest: datetime
    latest: datetime
    raw_days: int
    future_s: int

    @classmethod
    def around(cls, now: datetime, *, raw_days: int, future_s: int) -> Window:
        return cls(
            now - timedelta(days=raw_days), now + timedelta(seconds=future_s), raw_days, future_s
        )


@dataclass(slots=True)
class RecordRow:
    """A valid record, ready to store (``agent_id`` resolved from the slug)."""

    request_id: str
    agent_id: int
    session_id: str
    end_user_hash: str
    version_digest: str
    variant: str
    started_at: datetime
    latency_ms: int
    steps: int
    tool_calls: int
    tool_failures: int
    wrong_actions: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    model: str
    outcome: str
    error_code: str
    trace_id: str
    feedback_thumbs: str | None
    feedback_score: float | None
    quality_score: float | None


@dataclass(slots=True)
class BucketRow:
    """A valid 10-second bucket: counts by outcome (``counts``: outcome → n), the decoded
    sketch and the sums, in the rollup shape."""

    agent_id: int
    version_digest: str
    variant: str
    bucket_start: datetime
    counts: dict[str, int]
    sketch: BaseDDSketch
    latency_sum_ms: int
    tokens_in: int
    tokens_out: int
    cost_usd: Decimal
    steps: int
    tool_calls: int
    tool_failures: int
    wrong_actions: int
    feedback_up: int
    feedback_down: int
    feedback_score_sum: float
    feedback_score_count: int
    quality_sum: float
    quality_count: int

    @property
    def requests(self) -> int:
        return sum(self.counts.values())


class _Item:
    """Reads fields of one JSON object, collecting errors by pointer."""

    __slots__ = ("data", "errors", "pointer")

    def __init__(self, data: dict[str, Any], pointer: str) -> None:
        self.data = data
        self.pointer = pointer
        self.errors: dict[str, list[str]] = {}

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(f"{self.pointer}/{name}", []).append(message)

    def text(
        self,
        name: str,
        *,
        max_length: int,
        required: bool = False,
        pattern: re.Pattern[str] | None = None,
    ) -> str:
        value = self.data.get(name)
        if value is None or value == "":
            if required:
                self.fail(name, "This field is required.")
            return ""
        if not isinstance(value, str):
            self.fail(name, f"Must be a string, not {_kind(value)}.")
            return ""
        if len(value) > max_length:
            self.fail(name, f"At most {max_length} characters.")
        elif pattern is not None and not pattern.match(value):
            self.fail(name, "Contains characters that are not allowed.")
        elif _CONTROL.search(value):
            self.fail(
                name, "Control characters (including NUL) and lone surrogates are not allowed."
            )
        return value

    def integer(
        self,
        name: str,
        *,
        maximum: int,
        required: bool = False,
        data: dict[str, Any] | None = None,
        label: str | None = None,
    ) -> int:
        source = self.data if data is None else data
        label = label or name
        value = source.get(name)
        if value is None:
            if required:
                self.fail(label, "This field is required.")
            return 0
        if isinstance(value, bool) or not isinstance(value, int | Decimal):
            self.fail(label, f"Must be an integer, not {_kind(value)}.")
            return 0
        if isinstance(value, Decimal):
            if value > maximum:  # before int(): 1e999999 would be a million-digit integer
                self.fail(label, f"At most {maximum}.")
                return 0
            if value != value.to_integral_value():
                self.fail(label, "Must be an integer.")
                return 0
            value = int(value)
        if value < 0:
            self.fail(label, "Must be zero or more.")
            return 0
        if value > maximum:
            self.fail(label, f"At most {maximum}.")
            return 0
        return value

    def number(
        self,
        name: str,
        *,
        data: dict[str, Any] | None = None,
        label: str | None = None,
        minimum: float | None = None,
    ) -> float | None:
        source = self.data if data is None else data
        label = label or name
        value = source.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
            self.fail(label, f"Must be a number, not {_kind(value)}.")
            return None
        result = float(value)
        if not math.isfinite(result):
            self.fail(label, "Must be a finite number.")
            return None
        if minimum is not None and result < minimum:
            self.fail(label, f"Must be at least {minimum}.")
            return None
        return result

    def cost(self, name: str, maximum: Decimal) -> Decimal:
        value = self.data.get(name)
        if value is None:
            return Decimal(0)
        if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
            self.fail(
                name, f"Must be a decimal number (JSON number or string), not {_kind(value)}."
            )
            return Decimal(0)
        try:
            amount = Decimal(value) if not isinstance(value, Decimal) else value
        except InvalidOperation:
            self.fail(name, "Must be a decimal number such as 0.0123.")
            return Decimal(0)
        if not amount.is_finite():
            self.fail(name, "Must be a finite decimal number.")
            return Decimal(0)
        if amount < 0:
            self.fail(name, "Must not be negative.")
            return Decimal(0)
        if amount > maximum:
            self.fail(name, f"At most {maximum} USD.")
            return Decimal(0)
        return amount.quantize(COST_PLACES)

    def choice(self, name: str, choices: frozenset[str], *, default: str | None = None) -> str:
        value = self.data.get(name)
        if value is None and default is not None:
            return default
        if not isinstance(value, str) or value not in choices:
            allowed = ", ".join(sorted(choices))
            shown = repr(value)[:40] if value is not None else "nothing"
            self.fail(name, f"Must be one of {allowed}; got {shown}.")
            return default or ""
        return value

    def timestamp(self, name: str, window: Window, *, on_seconds: int | None = None) -> datetime:
        value = self.data.get(name)
        fallback = window.latest
        if not isinstance(value, str):
            self.fail(
                name, "Required: an RFC 3339 timestamp with offset, e.g. 2026-01-31T12:00:00Z."
            )
            return fallback
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            moment = None
        if moment is None or moment.tzinfo is None or len(value) < 20:
            self.fail(name, "Must be an RFC 3339 timestamp with offset, e.g. 2026-01-31T12:00:00Z.")
            return fallback
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # e.g. year 9999 with a negative offset
            self.fail(name, "Out of range.")
            return fallback
        if moment > window.latest:
            self.fail(
                name,
                f"More than {window.future_s} seconds in the future (check the runtime's clock).",
            )
        elif moment < window.earliest:
            self.fail(name, f"Older than the {window.raw_days}-day window this endpoint accepts.")
        if on_seconds is not None and (moment.microsecond or moment.second % on_seconds):
            self.fail(name, f"Must start on a {on_seconds}-second boundary (…:00, …:10, …).")
        return moment

    def agent(self, agents: dict[str, int], scope: str) -> int:
        slug = self.data.get("agent")
        if not isinstance(slug, str) or not slug:
            self.fail("agent", "Required: the agent's slug.")
            return 0
        agent_id = agents.get(slug)
        if agent_id is None:
            self.fail("agent", f"Unknown agent {slug[:50]!r} for this token ({scope}).")
            return 0
        return agent_id

    def from_token(self) -> None:
        for name in FROM_TOKEN:
            if name in self.data:
                self.fail(name, "Comes from the runtime token; do not send it.")


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, int | float | Decimal):
        return "a number"
    return "null"


def record_check(
    data: Any, *, index: int, agents: dict[str, int], scope: str, window: Window
) -> tuple[RecordRow | None, dict[str, list[str]]]:
    """One request record (``/records/<index>``): the row to store, or None and its errors by
    JSON pointer. ``agents`` maps the slugs the token may report for to agent ids; ``scope``
    names the token's tenant and environment for messages; ``window`` bounds ``started_at``."""
    pointer = f"/records/{index}"
    if not isinstance(data, dict):
        return None, {pointer: [f"Must be an object, not {_kind(data)}."]}
    item = _Item(data, pointer)
    item.from_token()
    request_id = item.text("request_id", max_length=128, required=True, pattern=_ID)
    agent_id = item.agent(agents, scope)
    thumbs: str | None = None
    feedback_score: float | None = None
    feedback = data.get("feedback")
    if feedback is not None:
        if not isinstance(feedback, dict):
            item.fail("feedback", f"Must be an object, not {_kind(feedback)}.")
        else:
            raw_thumbs = feedback.get("thumbs")
            if raw_thumbs is not None:
                if raw_thumbs in THUMBS:
                    thumbs = raw_thumbs
                else:
                    item.fail("feedback/thumbs", "Must be up, down or null.")
            feedback_score = item.number("score", data=feedback, label="feedback/score")
    latency = data.get("latency_ms")
    latency_ms = 0
    if latency is None:
        item.fail("latency_ms", "This field is required.")
    elif isinstance(latency, bool) or not isinstance(latency, int | Decimal):
        item.fail("latency_ms", f"Must be a number of milliseconds, not {_kind(latency)}.")
    elif latency < 0:
        item.fail("latency_ms", "Must be zero or more.")
    elif latency > INT32_MAX:
        item.fail("latency_ms", f"At most {INT32_MAX}.")
    else:
        latency_ms = round(latency)
    row = RecordRow(
        request_id=request_id,
        agent_id=agent_id,
        session_id=item.text("session_id", max_length=128),
        end_user_hash=item.text("end_user_hash", max_length=128),
        version_digest=item.text("version_digest", max_length=80, pattern=_DIGEST),
        variant=item.choice("variant", VARIANTS, default=Variant.STABLE.value),
        started_at=item.timestamp("started_at", window),
        latency_ms=latency_ms,
        steps=item.integer("steps", maximum=INT32_MAX),
        tool_calls=item.integer("tool_calls", maximum=INT32_MAX),
        tool_failures=item.integer("tool_failures", maximum=INT32_MAX),
        wrong_actions=item.integer("wrong_actions", maximum=INT32_MAX),
        tokens_in=item.integer("tokens_in", maximum=INT63_MAX),
        tokens_out=item.integer("tokens_out", maximum=INT63_MAX),
        cost_usd=item.cost("cost_usd", MAX_RECORD_COST),
        model=item.text("model", max_length=120),
        outcome=item.choice("outcome", OUTCOMES),
        error_code=item.text("error_code", max_length=120),
        trace_id=item.text("trace_id", max_length=128),
        feedback_thumbs=thumbs,
        feedback_score=feedback_score,
        quality_score=item.number("quality_score"),
    )
    if item.errors:
        return None, item.errors
    return row, {}


def bucket_check(
    data: Any, *, index: int, agents: dict[str, int], scope: str, window: Window
) -> tuple[BucketRow | None, dict[str, list[str]]]:
    """One pre-aggregated 10-second bucket (``/buckets/<index>``), in the rollup shape (see
    docs/runtime-api.md): the row to merge, or None and its errors by JSON pointer."""
    pointer = f"/buckets/{index}"
    if not isinstance(data, dict):
        return None, {pointer: [f"Must be an object, not {_kind(data)}."]}
    item = _Item(data, pointer)
    item.from_token()
    agent_id = item.agent(agents, scope)
    counts = {
        outcome: item.integer(column, maximum=INT63_MAX)
        for outcome, column in OUTCOME_COLUMNS.items()
    }
    requests = sum(counts.values())
    if requests == 0 and not item.errors:
        item.fail("count_success", "A bucket counts at least one request (count_<outcome> fields).")
    declared = data.get("requests")
    if declared is not None and declared != requests:
        item.fail("requests", f"Must equal the sum of the count_<outcome> fields ({requests}).")
    sketch = None
    raw = data.get("latency_sketch")
    if not isinstance(raw, str) or not raw:
        item.fail("latency_sketch", "Required: the DDSketch protobuf of the latencies, base64.")
    else:
        try:
            sketch = sketch_from_bytes(base64.b64decode(raw, validate=True))
        except (binascii.Error, ValueError) as exc:
            message = str(exc) if isinstance(exc, SketchError) else "Must be base64."
            item.fail("latency_sketch", message)
        else:
            if requests and not math.isclose(sketch.count, requests, abs_tol=0.5):
                item.fail(
                    "latency_sketch",
                    f"Counts {sketch.count:g} latencies; the bucket counts {requests} requests.",
                )
    integers = {name: item.integer(name, maximum=INT63_MAX) for name in BUCKET_INTEGER_FIELDS}
    row = BucketRow(
        agent_id=agent_id,
        version_digest=item.text("version_digest", max_length=80, pattern=_DIGEST),
        variant=item.choice("variant", VARIANTS, default=Variant.STABLE.value),
        bucket_start=item.timestamp("bucket_start", window, on_seconds=BUCKET_SECONDS),
        counts=counts,
        sketch=sketch,  # type: ignore[arg-type]  # None only when there are errors
        cost_usd=item.cost("cost_usd", Decimal("999999999999.99999999")),
        feedback_score_sum=item.number("feedback_score_sum") or 0.0,
        quality_sum=item.number("quality_sum") or 0.0,
        **integers,
    )
    if item.errors:
        return None, item.errors
    return row, {}

"""Item checks never raise, whatever JSON a runtime sends: a bad value is an item error."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from apps.telemetry.validation import Window, bucket_check, record_check

WINDOW = Window.around(datetime.now(UTC), raw_days=7, future_s=300)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=6,
)
RECORD_FIELDS = [
    "request_id", "agent", "session_id", "end_user_hash", "version_digest", "variant",
    "started_at", "latency_ms", "steps", "tool_calls", "tool_failures", "tokens_in",
    "tokens_out", "cost_usd", "model", "outcome", "error_code", "trace_id", "feedback",
    "quality_score", "tenant",
]  # fmt: skip
BUCKET_FIELDS = [
    "bucket_start", "agent", "version_digest", "variant", "count_success", "count_error",
    "latency_sketch", "latency_sum_ms", "cost_usd", "feedback_score_sum", "quality_sum",
    "requests",
]  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(RECORD_FIELDS), json_values) | json_values)
def test_record_check__any_json__row_or_errors(data: Any) -> None:
    row, errors = record_check(data, index=0, agents={"bot": 1}, scope="x", window=WINDOW)
    assert (row is None) == bool(errors)
    if row is not None:
        assert isinstance(row.cost_usd, Decimal) and row.cost_usd >= 0


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(BUCKET_FIELDS), json_values) | json_values)
def test_bucket_check__any_json__row_or_errors(data: Any) -> None:
    row, errors = bucket_check(data, index=0, agents={"bot": 1}, scope="x", window=WINDOW)
    assert (row is None) == bool(errors)

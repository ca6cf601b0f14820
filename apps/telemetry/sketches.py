"""Latency sketches: DDSketch (the ``ddsketch`` package) with a fixed relative accuracy, stored
and sent as DDSketch protobuf bytes (the ``DDSketch`` message of DataDog's sketches libraries,
which the Go, Java and JavaScript implementations read and write too).

A sketch answers any quantile within ``RELATIVE_ACCURACY`` of the true value (relative error:
the answer ``x̂`` for a true ``x`` satisfies ``|x̂ - x| <= RELATIVE_ACCURACY * x``), and two
sketches with the same accuracy merge exactly (bin counts add), so minute and hour rollups and
runtime-side 10-second buckets combine without losing accuracy. Values are milliseconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from ddsketch import DDSketch
from ddsketch.ddsketch import BaseDDSketch
from ddsketch.pb.ddsketch_pb2 import DDSketch as DDSketchMessage
from ddsketch.pb.proto import DDSketchProto
from google.protobuf.message import DecodeError

from dataplane.usage import SKETCH_RELATIVE_ACCURACY

# The runtime builds its bucket sketches at the same accuracy (one definition of the wire format).
RELATIVE_ACCURACY = SKETCH_RELATIVE_ACCURACY
# What the protobuf's index mapping must say to be merged with ours.
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
# Latencies from 1 ms to about ten days need keys 0..~1100 at this accuracy: bounds on what a
# client may send, so a hostile sketch cannot make the server allocate millions of bins.
MAX_BINS = 4096
MIN_KEY, MAX_KEY = -2048, 4096
MAX_SKETCH_BYTES = 64 * 1024


class SketchError(ValueError):
    """Bytes that are no acceptable latency sketch (message says why)."""


def sketch_new() -> BaseDDSketch:
    """An empty latency sketch at ``RELATIVE_ACCURACY``."""
    return DDSketch(relative_accuracy=RELATIVE_ACCURACY)


def sketch_of(values: Iterable[float]) -> BaseDDSketch:
    """A sketch of ``values`` (milliseconds, each >= 0)."""
    sketch = sketch_new()
    for value in values:
        sketch.add(value)
    return sketch


def sketch_to_bytes(sketch: BaseDDSketch) -> bytes:
    """DDSketch protobuf bytes of ``sketch``; ``b""`` for an empty one."""
    if sketch.count == 0:
        return b""
    return bytes(DDSketchProto.to_proto(sketch).SerializeToString())


def sketch_from_bytes(data: bytes | memoryview | None, *, trusted: bool = False) -> BaseDDSketch:
    """The sketch serialised in ``data`` (``b""`` or None: empty). Raises ``SketchError`` for
    bytes that are no DDSketch protobuf, use another accuracy (gamma), hold negative or
    non-finite counts, negative values, or more bins than ``MAX_BINS``. ``trusted``: bytes
    this code stored itself (a rollup's), whose bin counts need no second check."""
    if not data:
        return sketch_new()
    raw = bytes(data)
    if len(raw) > MAX_SKETCH_BYTES:
        raise SketchError(f"A sketch is at most {MAX_SKETCH_BYTES} bytes.")
    message = DDSketchMessage()
    try:
        message.ParseFromString(raw)
    except (DecodeError, ValueError) as exc:
        raise SketchError("Not a DDSketch protobuf message.") from exc
    mapping = message.mapping
    if not math.isclose(mapping.gamma, GAMMA, rel_tol=1e-12) or mapping.indexOffset != 0:
        raise SketchError(
            f"The sketch must use a logarithmic mapping with relative accuracy "
            f"{RELATIVE_ACCURACY} (gamma {GAMMA!r}, index offset 0)."
        )
    if mapping.interpolation != 0:
        raise SketchError("The sketch must use the logarithmic (NONE) interpolation.")
    for store in (message.positiveValues, message.negativeValues):
        if store.binCounts:
            raise SketchError("Send bins as contiguousBinCounts (a dense store).")
    store = message.positiveValues
    counts = list(store.contiguousBinCounts)
    if len(counts) > MAX_BINS:
        raise SketchError(f"A sketch has at most {MAX_BINS} bins.")
    first = store.contiguousBinIndexOffset
    if counts and not (first >= MIN_KEY and first + len(counts) - 1 <= MAX_KEY):
        raise SketchError(f"Bin keys must lie between {MIN_KEY} and {MAX_KEY}.")
    if not trusted and any(not math.isfinite(c) or c < 0 for c in counts):
        raise SketchError("Bin counts must be finite and not negative.")
    if any(c != 0 for c in message.negativeValues.contiguousBinCounts):
        raise SketchError("Latencies are not negative: the negative store must be empty.")
    zero = message.zeroCount
    if not math.isfinite(zero) or zero < 0:
        raise SketchError("zeroCount must be finite and not negative.")
    # Build the dense store directly: ddsketch's own from_proto adds bin by bin, growing the
    # store each time (~100x slower, and this runs for every rollup row an ingest touches).
    sketch = sketch_new()
    nonzero = [i for i, c in enumerate(counts) if c]
    if nonzero:
        store_ = sketch._store
        store_.bins = [float(c) for c in counts]
        store_.offset = first
        store_.min_key = first + nonzero[0]
        store_.max_key = first + nonzero[-1]
        store_.count = float(sum(counts))
    sketch._zero_count = float(zero)
    sketch._count = sketch._store.count + sketch._zero_count
    return sketch


def sketch_merge_bytes(stored: bytes | memoryview | None, *more: BaseDDSketch) -> bytes:
    """``stored`` (bytes, possibly empty) merged with ``more``, as bytes."""
    sketch = sketch_from_bytes(stored)
    for other in more:
        sketch.merge(other)
    return sketch_to_bytes(sketch)


def sketch_quantiles(
    data: bytes | memoryview | BaseDDSketch | None, quantiles: Sequence[float]
) -> list[float | None]:
    """The values at ``quantiles`` (each 0..1) of a sketch or its bytes; None when empty."""
    sketch = data if isinstance(data, BaseDDSketch) else sketch_from_bytes(data)
    if sketch.count == 0:
        return [None for _ in quantiles]
    return [sketch.get_quantile_value(q) for q in quantiles]

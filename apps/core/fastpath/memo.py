"""Whole answers remembered per request shape: the fleet's hot path without the work.

A runtime asks the same thing every few seconds (same path, query, token, ``Vary`` headers
and ``Accept-Encoding``) and, between two changes of its environment, gets the same answer:
the same 304, or the same 200 bytes. ``_serve`` works that answer out once (token, variant,
view, snapshot, coding, headers) and leaves it here; the next identical request is answered
from it after three checks that keep it exactly as correct as the full path:

- the token is still a valid cached one with the very scope the answer was built for
  (``TokenCache.peek``: a revoked token, an archived scope or an expired entry is gone from
  the cache, so the request goes the full way and is refused or looked up again);
- the slot's version on the ``Board`` is still the one the answer was built at (any change
  moves it: the request goes the full way and gets the new body);
- ``If-None-Match`` is absent (200) or byte-equal to one of the current tags (304); anything
  else (a list, ``W/``, ``*``, an old tag) is parsed by RFC 9110's rules as usual
  (``conditional``), so a memo hit is only ever a shortcut, never a different answer.

Long-polls (``?wait=`` > 0: the query is part of the key, and their answers are not
remembered, since the next one sends the new tag and waits again), duplicated header lines
and settings changes (tests) take the full path. Bounded (``ANSWER_MEMO_SIZE``): when full
it is emptied and refills from the traffic. And bounded per token (``ANSWERS_PER_TOKEN``): the
query is part of the key and anyone holding a token may vary it (``?project=a&project=x1``,
``x2``…), each a view of its own; without this bound one token would fill the memo with view
bodies the snapshot itself keeps at most ``VIEWS_PER_SNAPSHOT`` of, and empty everyone
else's answers each time it filled. A token past its bound is answered by the full path.
Keys hold the token's hash, never the token.
Measured with ``benchmarks.serving`` (the ratio to a bare ASGI handler): docs/operations.md."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from .registry import TokenScope

ANSWER_MEMO_SIZE = 16_384  # about one per runtime token and document a process serves
# A runtime asks for a few documents (features, one or two filtered views, its config), with
# and without a condition, GET or HEAD: far fewer distinct answers than this.
ANSWERS_PER_TOKEN = 32

# (route kind, path, query string, method, scheme, token hash, Vary header values,
#  Accept-Encoding): everything that chooses the answer besides the slot's version
MemoKey = tuple[str, str, bytes, str, str, str, tuple[bytes, ...], bytes]


@dataclass(frozen=True, slots=True)
class Answer:
    """One remembered answer: valid while ``scope`` is the token's cached scope and the
    ``slot`` (topic, key) is at ``version``. ``tags`` are the current entity tags as sent
    (plain and, when there is one, gzip), any of which byte-equal in ``If-None-Match`` means
    304."""

    scope: TokenScope
    slot: tuple[str, str]
    version: int
    tags: tuple[bytes, ...]
    ok_headers: list[tuple[bytes, bytes]]
    body: bytes
    not_modified_headers: list[tuple[bytes, bytes]]


class AnswerMemo:
    """``MemoKey`` -> ``Answer``; see the module docstring for when one may be used."""

    def __init__(self, size: int = ANSWER_MEMO_SIZE, per_token: int = ANSWERS_PER_TOKEN) -> None:
        self._size = size
        self._per_token = per_token
        self._answers: dict[MemoKey, Answer] = {}
        self._kept: Counter[str] = Counter()  # answers held per token hash

    def __len__(self) -> int:
        return len(self._answers)

    def get(self, key: MemoKey) -> Answer | None:
        return self._answers.get(key)

    def put(self, key: MemoKey, answer: Answer) -> None:
        """Remember ``answer`` for ``key``, unless its token already holds ``per_token``
        others (then nothing: the full path answers that token's other requests)."""
        if key not in self._answers:
            token_hash = key[5]  # MemoKey's token hash
            if self._kept[token_hash] >= self._per_token:
                return
            if len(self._answers) >= self._size:
                self.clear()
            self._kept[token_hash] += 1
        self._answers[key] = answer

    def clear(self) -> None:
        self._answers.clear()
        self._kept.clear()


def scan_headers(
    raw: Iterable[tuple[bytes, bytes]], wanted: tuple[bytes, ...]
) -> dict[bytes, bytes] | None:
    """The values of the ``wanted`` (lower-case) header names in one pass over the ASGI
    header list (names arrive lower-cased, RFC 9110 5.1); None when one of them appears more
    than once (its lines would have to be joined as a list: the full path does that)."""
    found: dict[bytes, bytes] = {}
    for name, value in raw:
        if name in wanted:
            if name in found:
                return None
            found[name] = value
    return found

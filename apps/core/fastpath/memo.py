"""Whole answers remembered per request shape: the fleet's hot path without the work.

A runtime asks the same thing every few seconds (same path, query, token, ``Vary`` headers
and ``Accept-Encoding``) and, between two changes of its environment, gets the same answer:
the same 304, or the same 200 bytes. ``_serve`` works that answer out once (token, variant,
view, snapshot, coding, headers) and leaves it here; the next identical request is answered
from it after three checks that keep it exactly as correct as the full path:

- the token is still a valid cached one with the very scope the answer was built for
  (``TokenCache.entry_of`` and its expiry, in ``FastPath._remembered``: a revoked token, an
  archived scope or an expired entry is gone from the cache, so the request goes the full way
  and is refused or looked up again);
- the slot's version on the ``Board`` is still the one the answer was built at (any change
  moves it: the request goes the full way and gets the new body);
- ``If-None-Match`` is absent (200) or byte-equal to one of the current tags (304); anything
  else (a list, ``W/``, ``*``, an old tag) is parsed by RFC 9110's rules as usual
  (``conditional``), so a memo hit is only ever a shortcut, never a different answer.

Long-polls (``?wait=`` > 0: the query is part of the key, and their answers are not
remembered, since the next one sends the new tag and waits again), a repeated line of a header
that chooses the answer, and settings changes (tests) take the full path. Bounded in answers
(``ANSWER_MEMO_SIZE``) and in bytes (``ANSWER_MEMO_BYTES``: the distinct bodies they hold and
the request bytes their keys keep): when either is reached it is emptied and refills from the
traffic. And bounded per token (``ANSWERS_PER_TOKEN``): the query is part of the key and
anyone holding a token may vary it (``?project=a&project=x1``, ``x2``…), each a view of its
own; without this bound one token would fill the memo with view bodies the snapshot itself
keeps at most ``VIEWS_PER_SNAPSHOT`` of, and empty everyone else's answers each time it
filled. A token past its bound is answered by the full path. Keys hold the
``Authorization`` header as sent (the same bytes are the same token, found without parsing or
hashing them; decision 0039), so the memo holds a token only while the token is cached as
valid: its answers are dropped when it is revoked (``forget_token``), when its scope is
archived or its cache entry is gone (``retain_tokens``: at once, and at every poll), and an
answer is remembered only while its token is still cached for the scope it was built for; an
answer holds the token's stored hash, which the check and the per-token bound use.
Measured with ``benchmarks.serving`` (the ratio to a bare ASGI handler): docs/operations.md."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from .registry import TokenScope

ANSWER_MEMO_SIZE = 16_384  # about one per runtime token and document a process serves
# The bodies the answers keep alive, each distinct one counted once (a fleet on one environment
# shares one): without it a token could pin one view per query string it makes up (a
# ``project`` filter each), far beyond ``VIEWS_PER_SNAPSHOT``, and old revisions' bodies;
# and kilobytes of made-up query string and header values in each key.
ANSWER_MEMO_BYTES = 128 * 2**20
# A runtime asks for a few documents (features, one or two filtered views, its config), GET or
# HEAD, plain or gzip: far fewer distinct answers than this.
ANSWERS_PER_TOKEN = 32

# (route kind, path, query string, method, scheme, the Authorization header as sent, Vary
#  header values (None: absent), Accept-Encoding): everything that chooses the answer besides
#  the slot's version
MemoKey = tuple[str, str, bytes, str, str, bytes, tuple[bytes | None, ...], bytes]


Message = Mapping[str, Any]  # an ASGI message (sent, never edited)


class _Sent(dict[str, Any]):
    """An ASGI message sent on every hit of its answer: a ``dict`` to its reader (the server
    reads each of a response's messages a few times; a ``MappingProxyType`` cost ~1.5% of the
    304 path's requests per second, decision 0039) whose own methods refuse every edit, so
    anything that tried to change one (a middleware adding a header) fails loudly instead of
    changing the answer for everyone after. Only ``dict``'s methods called on it directly
    (``dict.__setitem__(message, …)``) get past. Its header lines are a tuple, for the same
    reason. Built by ``of``."""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a remembered answer's ASGI message is shared: copy it to change it")

    __init__ = __setitem__ = __delitem__ = __ior__ = _refuse
    setdefault = pop = popitem = clear = update = _refuse

    @classmethod
    def of(cls, message: dict[str, Any]) -> _Sent:
        sent = cls.__new__(cls)
        dict.update(sent, message)
        return sent


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> Message:
    return _Sent.of({"type": "http.response.start", "status": status, "headers": tuple(headers)})


_EMPTY_BODY = _Sent.of({"type": "http.response.body", "body": b""})


@dataclass(frozen=True, slots=True)
class Answer:
    """One remembered answer: valid while ``scope`` is the cached scope of the token whose
    stored hash is ``token_hash`` and the ``slot`` (topic, key) is at ``version``. ``tags``
    are the current entity tags as sent (plain and, when there is one, gzip), any of which
    byte-equal in ``If-None-Match`` means 304. ``ok`` and ``not_modified`` are the ASGI
    messages (``http.response.start``, then ``http.response.body``) of the 200 and the 304,
    built once and sent on every hit: dicts that refuse edits (``_Sent``), with tuples of
    header lines, so anything that tried to edit one (a middleware adding a header) would
    fail loudly instead of changing the answer for everyone after. ``body`` is the 200's body
    (counted against ``ANSWER_MEMO_BYTES``). Built by ``of``, which keeps the messages and
    ``body`` in step."""

    scope: TokenScope
    token_hash: str
    slot: tuple[str, str]
    version: int
    tags: tuple[bytes, ...]
    body: bytes
    ok: tuple[Message, Message]
    not_modified: tuple[Message, Message]

    @classmethod
    def of(
        cls,
        *,
        scope: TokenScope,
        token_hash: str,
        slot: tuple[str, str],
        version: int,
        tags: tuple[bytes, ...],
        ok_headers: list[tuple[bytes, bytes]],
        body: bytes,
        not_modified_headers: list[tuple[bytes, bytes]],
    ) -> Answer:
        """The answer whose 200 sends ``ok_headers`` (its Content-Length among them) and
        ``body``, and whose 304 sends ``not_modified_headers`` and no body."""
        return cls(
            scope=scope,
            token_hash=token_hash,
            slot=slot,
            version=version,
            tags=tags,
            body=body,
            ok=(_start(200, ok_headers), _Sent.of({"type": "http.response.body", "body": body})),
            not_modified=(_start(304, not_modified_headers), _EMPTY_BODY),
        )


class AnswerMemo:
    """``MemoKey`` -> ``Answer``; see the module docstring for when one may be used.
    ``size`` answers at most, ``per_token`` of them per token, holding ``max_bytes`` at most
    of distinct bodies and of the request bytes in the keys (path, query, header values: the
    client's to make up) (defaults: ``ANSWER_MEMO_SIZE``, ``ANSWERS_PER_TOKEN``,
    ``ANSWER_MEMO_BYTES``)."""

    def __init__(
        self,
        size: int | None = None,
        max_bytes: int | None = None,
        per_token: int = ANSWERS_PER_TOKEN,
    ) -> None:
        self._size = ANSWER_MEMO_SIZE if size is None else size
        self._max_bytes = ANSWER_MEMO_BYTES if max_bytes is None else max_bytes
        self._per_token = per_token
        self._answers: dict[MemoKey, Answer] = {}
        self._keys: dict[str, set[MemoKey]] = {}  # the keys of each token's answers
        # id(body) -> (the body, how many answers hold it): the id stays valid while held
        self._bodies: dict[int, tuple[bytes, int]] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._answers)

    @property
    def held_bytes(self) -> int:
        """The bytes of the distinct bodies the remembered answers hold and of their keys."""
        return self._bytes

    @property
    def lookup(self) -> Callable[[MemoKey], Answer | None]:
        """key -> its answer or None: the dict's own bound method, for a caller on the hot
        path to keep (the dict is emptied in place, never replaced)."""
        return self._answers.get

    def put(self, key: MemoKey, answer: Answer) -> None:
        """Remember ``answer`` for ``key`` (replacing the one before); empties the memo first
        when it would hold more than its bound of answers or bytes. Nothing is remembered
        for an answer over the byte bound on its own, nor for a new key of a token that
        already holds ``per_token`` answers (the full path answers that token's others)."""
        token_hash = answer.token_hash  # counted per token, however its header is spelled
        old = self._answers.pop(key, None)
        if old is not None:
            self._release(key, old)
        elif len(self._keys.get(token_hash, ())) >= self._per_token:
            return
        size, key_size = len(answer.body), _key_bytes(key)
        if size + key_size > self._max_bytes:
            return
        new_bytes = key_size + (0 if id(answer.body) in self._bodies else size)
        if len(self._answers) >= self._size or self._bytes + new_bytes > self._max_bytes:
            self.clear()
        held = self._bodies.get(id(answer.body))
        if held is None:
            self._bodies[id(answer.body)] = (answer.body, 1)
            self._bytes += size
        else:
            self._bodies[id(answer.body)] = (held[0], held[1] + 1)
        self._bytes += key_size
        self._keys.setdefault(token_hash, set()).add(key)
        self._answers[key] = answer

    def _release(self, key: MemoKey, answer: Answer) -> None:
        body = answer.body
        kept = self._keys[answer.token_hash]
        kept.discard(key)
        if not kept:
            del self._keys[answer.token_hash]
        self._bytes -= _key_bytes(key)
        held = self._bodies[id(body)]
        if held[1] > 1:
            self._bodies[id(body)] = (held[0], held[1] - 1)
        else:
            del self._bodies[id(body)]
            self._bytes -= len(body)

    def forget_token(self, token_hash: str) -> None:
        """Drop every answer of the token whose stored hash is ``token_hash`` (revoked, its
        scope archived): its keys hold its header, which must not outlive its validity."""
        for key in self._keys.get(token_hash, set()).copy():
            self._release(key, self._answers.pop(key))

    def retain_tokens(self, valid: Callable[[str], bool]) -> int:
        """Drop the answers of every token for which ``valid(token_hash)`` is false (its
        cache entry expired or evicted: it has not been used for a while); returns how many
        tokens were dropped. One call per token held, not per answer."""
        gone = [token_hash for token_hash in self._keys if not valid(token_hash)]
        for token_hash in gone:
            self.forget_token(token_hash)
        return len(gone)

    def clear(self) -> None:
        self._answers.clear()
        self._bodies.clear()
        self._keys.clear()
        self._bytes = 0


def _key_bytes(key: MemoKey) -> int:
    """The bytes of a key the client chose: path, query string, header values."""
    varied = sum(len(value or b"") for value in key[6])
    return len(key[1]) + len(key[2]) + len(key[5]) + varied + len(key[7])

"""Reading bundle files (YAML or JSON) and writing them back.

YAML is read with ``ruamel.yaml`` under the YAML 1.2 **core schema**, exactly (YAML 1.2.2,
section 10.3.2): only ``true``/``false``, ``null``/``~``, decimal, ``0o`` octal and ``0x`` hex
integers, floats and ``.inf``/``.nan`` are typed; every other plain scalar is text. So ``no``,
``on``, ``y``, ``1_000``, ``12:30``, ``2024-05-01`` and ``0b101`` stay the text they look like,
where YAML 1.1 (PyYAML) turned them into booleans, numbers and dates behind the author's back
(a deny rule ``value: no`` became ``false`` and stopped matching ``"no"``). The scalars a YAML
1.1 tool would still read differently are reported by ``ambiguous_scalars`` with their line.

The loader is safe (plain data only, never Python objects) and a key repeated in one mapping
is an error (a second ``issue_refund`` prompt must not quietly replace the first)."""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from ruamel.yaml import YAML
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import CollectionEndEvent, CollectionStartEvent
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from ruamel.yaml.parser import Parser as RuamelParser
from ruamel.yaml.representer import SafeRepresenter
from ruamel.yaml.resolver import BaseResolver, VersionedResolver

from .schema import MAX_DEPTH

_T = TypeVar("_T")
_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
_MERGE = "tag:yaml.org,2002:merge"


class CoreResolver(BaseResolver):
    """The YAML 1.2 core schema's implicit typing and nothing else (ruamel's own 1.2 resolver
    also types ``1_000``, ``0b101`` and dates, which the core schema leaves as text)."""

    yaml_implicit_resolvers: dict[Any, Any] = {}

    def __init__(self, version: Any = None, loader: Any = None, loadumper: Any = None) -> None:
        super().__init__(loader if loader is not None else loadumper)

    @property
    def processing_version(self) -> Any:
        return (1, 2)  # whatever a %YAML directive says: the bundle format is YAML 1.2


for _tag, _regexp, _first in (
    # Merge keys (``<<: *defaults``) are not in the core schema, but every YAML library
    # supports them and bundle files have used them: kept, as ruamel's own 1.2 mode does.
    (_MERGE, r"^(?:<<)$", "<"),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+.0123456789",
    ),
):
    CoreResolver.add_implicit_resolver_base(_tag, re.compile(_regexp), list(_first))

# How a YAML 1.1 reader types a plain scalar (ruamel's 1.1 resolver: the YAML 1.1 type
# repository, with y/n, sexagesimal, 0-prefixed octal and underscores).
_YAML11 = VersionedResolver(version=(1, 1))
_CORE = CoreResolver()
# YAML 1.1's float needs a dot in the mantissa (yaml.org/type/float.html; PyYAML obeys it):
# there, ``1e3`` is text.
_DOTLESS_EXPONENT = re.compile(r"^[-+]?[0-9][0-9_]*[eE]")
_LEADING_ZERO_INT = re.compile(r"^[-+]?0[0-9_]+$")
_DUPLICATE = re.compile(r'found duplicate key "(.*?)" with value')


def _loader(*, pure: bool = True) -> YAML:
    yaml = YAML(typ="safe", pure=pure)
    yaml.Resolver = CoreResolver
    yaml.allow_duplicate_keys = False
    return yaml


_HAS_C_PARSER = _loader(pure=False).Parser is not RuamelParser


def _read(text: str, action: Callable[[YAML, io.StringIO], _T]) -> _T:
    """``action`` on a loader over ``text``: ruamel's C parser (ruamel.yaml.clib, ten times
    faster on a large bundle) when installed and it accepts the text, else the pure-Python
    one. libyaml, under the C parser, follows YAML 1.1 syntax in places (it refuses
    ``{at: 12:30}``, which YAML 1.2 allows), so anything it refuses gets the pure parser's
    verdict. Both type scalars with ``CoreResolver`` and build with the same constructor."""
    if _HAS_C_PARSER:
        try:
            _check_nesting(text)
            return action(_loader(pure=False), io.StringIO(text))
        except YAMLError:
            pass
    return action(_loader(pure=True), io.StringIO(text))


# The C composer recurses natively: a file nested thousands of levels deep would crash the
# process instead of raising RecursionError. The event stream is not recursive, so nesting is
# measured there first; past this the file is refused (the validator reports anything past
# MAX_DEPTH at its pointer; this bound only keeps the composer safe).
MAX_PARSE_DEPTH = 256


def _check_nesting(text: str) -> None:
    depth = 0
    for event in _loader(pure=False).parse(io.StringIO(text)):
        if isinstance(event, CollectionStartEvent):
            depth += 1
            if depth > MAX_PARSE_DEPTH:
                mark = event.start_mark
                raise ParseError(
                    f"Line {mark.line + 1}, column {mark.column + 1}: nested deeper than "
                    f"{MAX_DEPTH} levels; nothing in a bundle needs that."
                )
        elif isinstance(event, CollectionEndEvent):
            depth -= 1


def core_tag(text: str) -> str:
    """The tag a plain scalar ``text`` gets under the YAML 1.2 core schema."""
    return str(_CORE.resolve(ScalarNode, text, (True, False)))


def yaml11_tag(text: str) -> str:
    """The tag a YAML 1.1 reader gives a plain scalar ``text``."""
    tag = str(_YAML11.resolve(ScalarNode, text, (True, False)))
    if tag == _FLOAT and _DOTLESS_EXPONENT.match(text):
        return _STR
    return tag


def yaml11_value(text: str) -> Any:
    """What a YAML 1.1 reader makes of a plain scalar ``text`` (for messages)."""
    if yaml11_tag(text) == _STR:
        return text
    yaml = YAML(typ="safe", pure=True)
    yaml.version = (1, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return yaml.load(text)
        except YAMLError:
            return text


def is_ambiguous(text: str) -> bool:
    """Whether a plain scalar reads as another value under YAML 1.1 than under the 1.2 core
    schema. Dates are left out: both this product and JSON keep them as text either way."""
    tag11, tag12 = yaml11_tag(text), core_tag(text)
    if tag11 == _TIMESTAMP:
        return False
    if tag11 != tag12:
        return True
    # Same tag, another number: YAML 1.1 reads 014 as octal (12), the core schema as 14.
    return tag12 == _INT and bool(_LEADING_ZERO_INT.match(text))


class ParseError(Exception):
    """The text is not a readable YAML or JSON document."""


def detect_format(text: str) -> str:
    return "json" if text.lstrip().startswith(("{", "[")) else "yaml"


def decode(source: str | bytes) -> str:
    if isinstance(source, str):
        return source
    try:
        return source.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ParseError(f"The file is not UTF-8 text (byte {exc.start} is invalid).") from None


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _no_duplicate_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"found the key {key!r} twice in one object")
        out[key] = value
    return out


def parse(text: str, source_format: str) -> Any:
    """YAML or JSON text to plain data. Raises ``ParseError`` with a located message."""
    try:
        if source_format == "json":
            try:
                return json.loads(
                    text, object_pairs_hook=_no_duplicate_pairs, parse_constant=_reject_constant
                )
            except json.JSONDecodeError as exc:
                raise ParseError(f"Line {exc.lineno}, column {exc.colno}: {exc.msg}.") from None
            except ValueError as exc:
                raise ParseError(f"{str(exc)[:1].upper()}{str(exc)[1:]}.") from None
        try:
            documents = _read(text, lambda yaml, stream: list(yaml.load_all(stream)))
        except DuplicateKeyError as exc:
            mark = exc.problem_mark
            key = _DUPLICATE.search(exc.problem or "")
            raise ParseError(
                f"Line {mark.line + 1}, column {mark.column + 1}: found the key "
                f"{key.group(1) if key else ''!r} twice in one mapping; the second would "
                "silently replace the first."
            ) from None
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"Line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = _first_line(exc.problem) or "not valid YAML"
            context = f" ({_first_line(exc.context)})" if exc.context else ""
            raise ParseError(f"{where}{problem}{context}.") from None
        except YAMLError as exc:
            raise ParseError(f"Not valid YAML: {_first_line(str(exc))}.") from None
    except RecursionError:
        raise ParseError(
            f"Nested deeper than {MAX_DEPTH} levels; nothing in a bundle needs that."
        ) from None
    if len(documents) != 1:
        raise ParseError(
            "A bundle file holds exactly one YAML document." if documents else "The file is empty."
        )
    return documents[0]


# --------------------------------------------------------------------------- where is a pointer


def _first_line(text: str | None) -> str:
    # ruamel adds multi-line advice to some problems; the first line is the finding.
    return (text or "").strip().split("\n", 1)[0].rstrip(".:")


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _compose(text: str) -> Node | None:
    try:
        node: Node | None = _read(text, lambda yaml, stream: yaml.compose(stream))
    except (YAMLError, RecursionError, ParseError):
        return None
    return node


def _walk(root: Node | None) -> Iterator[tuple[str, Node, Node | None, int]]:
    """(JSON pointer, value node, key node or None, 1-based line) for every node, parents
    first; the line is the key's for a mapping entry, else the node's own."""
    stack: list[tuple[str, Node, Node | None, int]] = (
        [("", root, None, root.start_mark.line + 1)] if root is not None else []
    )
    seen = 0
    while stack:
        pointer, node, key_node, line = stack.pop()
        yield pointer, node, key_node, line
        seen += 1
        if seen > 200_000:  # aliases can make a small file huge; the validator refuses it
            return
        if isinstance(node, MappingNode):
            for key, value in reversed(node.value):
                if isinstance(key, ScalarNode):
                    token = _escape(str(key.value))
                    stack.append((f"{pointer}/{token}", value, key, key.start_mark.line + 1))
        elif isinstance(node, SequenceNode):
            for index in reversed(range(len(node.value))):
                item = node.value[index]
                stack.append((f"{pointer}/{index}", item, None, item.start_mark.line + 1))


def pointer_lines(text: str) -> dict[str, int]:
    """JSON pointer -> 1-based line of its key (or value) in the YAML or JSON ``text``, for
    putting errors next to the line that caused them. Empty when the text does not parse."""
    lines: dict[str, int] = {}
    for pointer, _node, _key, line in _walk(_compose(text)):
        lines.setdefault(pointer, line)
        if len(lines) > 50_000:
            break
    return lines


_ANCHOR = re.compile(r"&\S+\s+")


def _plain(node: Node | None, text: str) -> bool:
    # A plain scalar whose tag came from implicit typing (not ``!!str no`` or a quoted one).
    # The node does not keep whether its tag was written, so look at the source: a tag starts
    # the node, after its anchor if it has one.
    if not isinstance(node, ScalarNode) or node.style:  # None (pure) or "" (C) when plain
        return False
    start = node.start_mark.index
    head = text[start : start + 256]
    anchor = _ANCHOR.match(head)
    return not head[anchor.end() if anchor else 0 :].startswith("!")


def _reading(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str):
        return f"the text {value!r}"
    return f"the number {value!r}" if isinstance(value, int | float) else repr(value)


def _core_value(text: str) -> Any:
    try:
        return _read(text, lambda yaml, stream: yaml.load(stream))
    except YAMLError:
        return text


def ambiguous_scalars(text: str) -> dict[str, tuple[int, str]]:
    """JSON pointer -> (1-based line, message) for each plain scalar in YAML ``text`` that a
    YAML 1.1 reader types differently from the YAML 1.2 core schema used here (``no``, ``on``,
    ``y``, ``0o14``, ``014``, ``1_000``, ``12:30``, ``1e3`` ...). Keys are included (``on:`` is
    ``true`` to YAML 1.1). Empty for JSON or unreadable text."""
    found: dict[str, tuple[int, str]] = {}
    reported: set[int] = set()
    for pointer, node, key_node, line in _walk(_compose(text)):
        for what, scalar, where in (("key", key_node, pointer), ("value", node, pointer)):
            if scalar is None or id(scalar) in reported or not _plain(scalar, text):
                continue
            raw = str(scalar.value)
            if not is_ambiguous(raw):
                continue
            reported.add(id(scalar))
            here = _reading(_core_value(raw))
            there = _reading(yaml11_value(raw))
            found.setdefault(
                where,
                (
                    scalar.start_mark.line + 1 if what == "value" else line,
                    f"The unquoted {what} {raw} is {here} here (YAML 1.2), but {there} to YAML "
                    f"1.1 tools (PyYAML, many editors and CI scripts): quote it ('{raw}') if you "
                    "mean text, or write the value so both read it alike.",
                ),
            )
        if len(found) > 1000:
            break
    return found


def scalar_spans(text: str) -> dict[str, tuple[int, int]]:
    """JSON pointer -> (start, end) character offsets of each scalar value's source in the
    YAML or JSON ``text`` (a ``template: |`` block included). Empty when it does not parse."""
    spans: dict[str, tuple[int, int]] = {}
    for pointer, node, _key, _line in _walk(_compose(text)):
        if isinstance(node, ScalarNode):
            spans.setdefault(pointer, (node.start_mark.index, node.end_mark.index))
        if len(spans) > 50_000:
            break
    return spans


_QUOTED = re.compile(r"'([^'\n]{1,200})'")


def finding_line(
    text: str,
    pointer: str,
    message: str,
    lines: dict[str, int],
    spans: dict[str, tuple[int, int]],
) -> int | None:
    """The line a finding points at: inside a (block) scalar, the line of the text the
    message quotes — ``Uses the undeclared variable 'order_id'`` points at the line of
    ``{{ order_id }}`` in the template, not at ``template: |`` — else ``line_of``."""
    span = spans.get(pointer)
    if span is not None:
        start, end = span
        body = text[start:end]
        for quoted in _QUOTED.findall(message):
            placeholder = r"\{\{\s*" + re.escape(quoted) + r"\s*\}\}"
            for pattern in (placeholder, re.escape(quoted)):
                found = re.search(pattern, body)
                if found is not None:
                    return text.count("\n", 0, start + found.start()) + 1
    return line_of(pointer, lines)


def line_of(pointer: str, lines: dict[str, int]) -> int | None:
    """The line of ``pointer`` or, when it names something missing, of its nearest ancestor."""
    while True:
        if pointer in lines:
            return lines[pointer]
        if not pointer:
            return None
        pointer = pointer.rsplit("/", 1)[0]


# --------------------------------------------------------------------------- writing files

# Keys people look for first come first; the rest follow alphabetically. Order never changes
# the digest: this only makes exported files read well.
_KEY_RANK = {
    key: rank
    for rank, key in enumerate(
        [
            "$schema",
            "name",
            "provider",
            "role",
            "tool",
            "action",
            "description",
            "model",
            "prompts",
            "tools",
            "policies",
            "retrieval",
            "memory",
            "risk",
            "requires_approval",
            "idempotent",
            "timeout_s",
            "rate_limit",
            "sensitive_args",
            "variables",
            "source",
            "when",
            "all",
            "any",
            "not",
            "arg",
            "context",
            "op",
            "value",
            "limits",
            "tool_rules",
            "input",
            "output",
            "type",
            "title",
            "properties",
            "required",
            "additionalProperties",
            "items",
            "template",
            "parameters",
        ]
    )
}


def _ordered(value: Any) -> Any:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (_KEY_RANK.get(k, len(_KEY_RANK)), k))
        return {k: _ordered(value[k]) for k in keys}
    if isinstance(value, list):
        return [_ordered(v) for v in value]
    return value


class _BundleRepresenter(SafeRepresenter):
    """Keeps the caller's key order and writes text so every YAML reader reads it back as text."""

    sort_base_mapping_type_on_output = False


_BLOCK_SAFE = re.compile(
    r"[\t\n\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]*"
)
_TRAILING_BLANK = re.compile(r"[ \t]$|[ \t]\n|^[ \t]")


def _represent_str(representer: SafeRepresenter, data: str) -> ScalarNode:
    # Prompts read best as block text; the emitter falls back to quoting when a string cannot
    # be written as a block (trailing spaces, special characters), so this never loses data.
    # NEL (U+0085) is written raw by the emitter and read back as a line break, so such strings
    # are double-quoted, where it is escaped. Text a YAML 1.1 reader would type (``no``, ``on``,
    # ``1_000``) is quoted, so an exported file means the same to every tool.
    style: str | None = None
    if "\n" in data:
        # ruamel's emitter keeps block style even for characters a block cannot hold (control
        # characters, line separators, trailing blanks), so only plain text gets one.
        style = "|" if _BLOCK_SAFE.fullmatch(data) and not _TRAILING_BLANK.search(data) else '"'
    elif "\x85" in data:
        style = '"'
    elif yaml11_tag(data) not in (_STR, _TIMESTAMP):
        style = "'"
    node: ScalarNode = representer.represent_scalar(_STR, data, style=style)
    return node


def _represent_float(representer: SafeRepresenter, data: float) -> ScalarNode:
    # Shortest round-trip digits, with a dot in the mantissa (1.0e-07, not 1e-07): YAML 1.1
    # reads a dotless exponent as text, the core schema reads both as the same number.
    text = repr(data)
    mantissa, e, exponent = text.partition("e")
    if e and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    node: ScalarNode = representer.represent_scalar(_FLOAT, text)
    return node


_BundleRepresenter.add_representer(str, _represent_str)
_BundleRepresenter.add_representer(float, _represent_float)

_SAFE_COMMENT = re.compile(r"[\r\n\x00-\x1f\x7f\u2028\u2029\x85]")


def _comment(lines: list[str]) -> str:
    return "".join(f"# {_SAFE_COMMENT.sub(' ', line)}\n" for line in lines)


def to_yaml(content: dict[str, Any], *, header: list[str] | None = None) -> str:
    """A bundle file for ``content``: keys in reading order, prompts as block text, and every
    scalar written so YAML 1.2 and YAML 1.1 readers alike read back the same value."""
    yaml = YAML(typ="safe", pure=True)
    yaml.Resolver = CoreResolver  # quotes whatever the core schema would type
    yaml.Representer = _BundleRepresenter
    yaml.default_flow_style = False
    yaml.allow_unicode = True
    yaml.width = 100
    out = io.StringIO()
    yaml.dump(_ordered(content), out)
    return _comment(header or []) + out.getvalue()


def to_json(content: dict[str, Any]) -> str:
    return json.dumps(_ordered(content), indent=2, ensure_ascii=False) + "\n"

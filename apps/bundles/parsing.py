"""Reading bundle files (YAML or JSON) and writing them back.

YAML is read with PyYAML's safe loader, tightened two ways: a key repeated in one mapping is
an error (plain ``safe_load`` silently keeps the last one, so a second ``issue_refund`` prompt
would quietly replace the first), and dates stay strings (YAML 1.1 turns ``2024-05-01`` into a
date, which JSON cannot carry). Neither change makes the loader less safe: it still builds
only plain data, never Python objects."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from .schema import MAX_DEPTH

_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when present
_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class BundleLoader(_Base):  # type: ignore[valid-type, misc]  # base chosen at import
    """Safe loader that refuses duplicate keys and keeps timestamps as strings."""

    yaml_implicit_resolvers = {
        first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP_TAG]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # `<<: *defaults` may be overridden by explicit keys
            key = self.construct_object(key_node, deep=True)
            try:
                first_line = seen.get(key)
            except TypeError:
                continue  # unhashable key: the base class reports it
            if first_line is not None:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"found the key {key!r} twice (first on line {first_line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        mapping: dict[Any, Any] = super().construct_mapping(node, deep=deep)
        return mapping


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
            documents = list(yaml.load_all(text, Loader=BundleLoader))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"Line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
            problem = exc.problem or "not valid YAML"
            context = f" ({exc.context})" if exc.context else ""
            raise ParseError(f"{where}{problem}{context}.") from None
        except yaml.YAMLError as exc:
            raise ParseError(f"Not valid YAML: {exc}.") from None
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


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def pointer_lines(text: str) -> dict[str, int]:
    """JSON pointer -> 1-based line of its key (or value) in the YAML or JSON ``text``, for
    putting errors next to the line that caused them. Empty when the text does not parse."""
    try:
        root = yaml.compose(text, Loader=BundleLoader)
    except (yaml.YAMLError, RecursionError):
        return {}
    lines: dict[str, int] = {}
    stack: list[tuple[str, yaml.Node, int]] = [("", root, root.start_mark.line + 1)] if root else []
    while stack:
        pointer, node, line = stack.pop()
        lines.setdefault(pointer, line)
        if len(lines) > 50_000:
            break
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    stack.append(
                        (
                            f"{pointer}/{_escape(str(key_node.value))}",
                            value_node,
                            key_node.start_mark.line + 1,
                        )
                    )
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                stack.append((f"{pointer}/{index}", item, item.start_mark.line + 1))
    return lines


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


class _BundleDumper(yaml.SafeDumper):
    pass


def _represent_str(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    # Prompts read best as block text; the emitter falls back to quoting when a string cannot
    # be written as a block (trailing spaces, special characters), so this never loses data.
    # Except NEL (U+0085): with allow_unicode PyYAML writes it raw and reads it back as a line
    # break, so such strings are double-quoted, where it is escaped.
    style = '"' if "\x85" in data else "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BundleDumper.add_representer(str, _represent_str)

_SAFE_COMMENT = re.compile(r"[\r\n\x00-\x1f\x7f\u2028\u2029\x85]")


def _comment(lines: list[str]) -> str:
    return "".join(f"# {_SAFE_COMMENT.sub(' ', line)}\n" for line in lines)


def to_yaml(content: dict[str, Any], *, header: list[str] | None = None) -> str:
    body = yaml.dump(
        _ordered(content),
        Dumper=_BundleDumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )
    return _comment(header or []) + body


def to_json(content: dict[str, Any]) -> str:
    return json.dumps(_ordered(content), indent=2, ensure_ascii=False) + "\n"

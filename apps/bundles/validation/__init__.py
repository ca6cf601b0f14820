"""Validating a bundle file: every error and warning, each located by JSON pointer.

``validate_source(text)`` runs, in order: size, parse (YAML or JSON), plain-JSON shape
(types, depth, Unicode), the bundle schema, semantic checks, secret scanning and lint. It is
pure: no database, so the CLI can validate a file offline and CI can call it anywhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from apps.core.canonical import canonical_bytes, digest_of_bytes

from ..parsing import (
    ParseError,
    ambiguous_scalars,
    decode,
    detect_format,
    finding_line,
    parse,
    pointer_lines,
    scalar_spans,
)
from ..schema import MAX_BUNDLE_BYTES
from . import lint, secrets, semantics, structure, types
from .report import Report, sorted_findings

__all__ = ["ValidationResult", "finding_lines", "validate_content", "validate_source"]

SOURCE_FORMATS = ("yaml", "json")


@dataclass
class ValidationResult:
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)
    content: dict[str, Any] | None = None
    canonical: bytes | None = None
    digest: str | None = None
    source_format: str = "yaml"
    size_bytes: int = 0
    # 1-based line in the file of each finding's pointer (or its nearest ancestor), when the
    # findings came from a file: API clients and CI print "line N" as the editor shows it.
    lines: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def error_count(self) -> int:
        return sum(len(messages) for messages in self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "valid": self.ok,
            "digest": self.digest,
            "errors": self.errors,
            "warnings": self.warnings,
            "lines": self.lines,
        }


def _size(source: str | bytes) -> int:
    return len(source.encode("utf-8", "surrogatepass")) if isinstance(source, str) else len(source)


def _parse_guessing(text: str, fmt: str, *, guessed: bool) -> tuple[Any, str]:
    """A guessed "json" may be a YAML flow mapping (``{model: {...}}``): YAML gets a second
    try; when both fail, the JSON error is the one reported, since the text looked like JSON."""
    try:
        return parse(text, fmt), fmt
    except ParseError as exc:
        if not guessed or fmt != "json":
            raise
        json_error = exc
    try:
        return parse(text, "yaml"), "yaml"
    except ParseError:
        raise json_error from None


def validate_source(source: str | bytes, *, source_format: str | None = None) -> ValidationResult:
    """Validate the text of a bundle file. ``source_format`` is "yaml" or "json"; guessed from
    the text when omitted."""
    size = _size(source)
    if size > MAX_BUNDLE_BYTES:
        return ValidationResult(
            errors={
                "": [
                    f"The bundle is {size:,} bytes; "
                    f"the limit is {MAX_BUNDLE_BYTES:,} bytes (1 MiB)."
                ]
            },
            size_bytes=size,
        )
    try:
        text = decode(source)
        fmt = source_format or detect_format(text)
        if fmt not in SOURCE_FORMATS:
            raise ParseError(f"Unknown format {fmt!r}: use yaml or json.")
        data, fmt = _parse_guessing(text, fmt, guessed=source_format is None)
    except ParseError as exc:
        return ValidationResult(
            errors={"": [str(exc)]}, size_bytes=size, source_format=source_format or "yaml"
        )
    result = validate_content(data)
    result.source_format, result.size_bytes = fmt, size
    if fmt == "yaml":
        # Read as YAML 1.2 core, but a scalar YAML 1.1 tools read otherwise is worth a warning:
        # the author may have meant the other reading, and other tools will take it.
        for pointer, (_line, message) in ambiguous_scalars(text).items():
            result.warnings.setdefault(pointer, []).append(message)
        result.warnings = sorted_findings(result.warnings)
    result.lines = finding_lines(text, result.errors, result.warnings)
    return result


def finding_lines(text: str, *findings: dict[str, list[str]]) -> dict[str, int]:
    """Pointer -> 1-based line in ``text`` for every pointer of ``findings`` that has one."""
    table, spans = pointer_lines(text), scalar_spans(text)
    # A pointer's line: the first line its messages point at (inside a template, the line
    # of the text a message quotes, not the `template: |` line).
    found: dict[str, int] = {}
    for table_ in findings:
        for ptr, messages in table_.items():
            lines = [finding_line(text, ptr, m, table, spans) for m in messages or [""]]
            known = [line for line in lines if line is not None]
            if known:
                found[ptr] = min([*known, *([found[ptr]] if ptr in found else [])])
    return found


def validate_content(data: Any) -> ValidationResult:
    """Validate already-parsed bundle data (e.g. a JSON request body)."""
    report = Report()
    content = structure.normalize_checked(data, report)
    if content is not None and not isinstance(content, dict):
        report.error(
            "",
            "A bundle is a mapping at the top level, with model, prompts, tools, "
            "policies, retrieval and memory.",
        )
    if report.errors:
        return ValidationResult(errors=sorted_findings(report.errors))
    structure.schema_errors(content, report)
    semantics.check(content, report)
    types.check(content, report)
    secrets.scan(content, report)
    lint.lint(content, report)
    result = ValidationResult(
        errors=sorted_findings(report.errors), warnings=sorted_findings(report.warnings)
    )
    if result.ok:
        result.content = content
        result.canonical = canonical_bytes(content)
        result.digest = digest_of_bytes(result.canonical)
        if len(result.canonical) > MAX_BUNDLE_BYTES:
            # YAML aliases can make small text into large content; the limit is on what ships.
            result.errors = {
                "": [
                    f"The bundle's content is {len(result.canonical):,} bytes as JSON; the "
                    f"limit is {MAX_BUNDLE_BYTES:,} bytes (1 MiB)."
                ]
            }
            result.content = result.canonical = result.digest = None
    return result

"""A stored version back to a file that pushes cleanly (same content, same digest)."""

from __future__ import annotations

from .models import BundleVersion
from .parsing import to_json, to_yaml


def _header(version: BundleVersion, schema_url: str | None) -> list[str]:
    lines = [
        f"{version.agent.slug} v{version.number} · sha256:{version.digest}",
        f"pushed by {version.author_label} at {version.created_at.isoformat()}: {version.message}",
    ]
    if schema_url:
        lines.append(f"yaml-language-server: $schema={schema_url}")
    return lines


def export_yaml(version: BundleVersion, *, schema_url: str | None = None) -> str:
    return to_yaml(version.content, header=_header(version, schema_url))


def export_json(version: BundleVersion) -> str:
    return to_json(version.content)


def export_filename(version: BundleVersion, extension: str) -> str:
    return f"{version.agent.slug}-v{version.number}.{extension}"

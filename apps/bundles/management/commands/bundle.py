"""``./manage.py bundle push|pull|validate|list|schema``: bundle files from the command line.

push and pull act as the operator who runs them (author ``cli:<login>``), or as ``--user``
with that user's role and tenant grants. validate needs no database: CI can run it anywhere."""

from __future__ import annotations

import getpass
import json
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.http import Http404

from apps.audit.services import Actor, SystemActor
from apps.tenancy.models import Agent
from apps.tenancy.selectors import agent_get_for_user

from ... import selectors, services
from ...exports import export_json, export_yaml
from ...parsing import finding_line, pointer_lines, scalar_spans
from ...schema import bundle_json_schema
from ...validation import ValidationResult, validate_source


def _messages(exc: ValidationError | PermissionDenied) -> list[str]:
    """What a refusal says, as lines for the terminal."""
    if isinstance(exc, ValidationError):
        return list(exc.messages)
    return [str(exc) or "Permission denied."]


def _format_for(path: str | None, explicit: str | None) -> str | None:
    if explicit:
        return explicit
    if path and path.lower().endswith(".json"):
        return "json"
    if path and path.lower().endswith((".yaml", ".yml")):
        return "yaml"
    return None


class Command(BaseCommand):
    help = "Push, pull and validate bundle files."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)

        push = sub.add_parser(
            "push", help="store FILE as the agent's next version (identical content: no-op)"
        )
        push.add_argument("file")
        push.add_argument("--agent", required=True, help="agent slug")
        push.add_argument("--tenant", help="tenant slug, when several tenants have that agent slug")
        push.add_argument("--message", "-m", required=True, help="why this version exists")
        push.add_argument(
            "--parent", type=int, help="the version it was made from (default: the latest)"
        )
        push.add_argument(
            "--format", choices=["yaml", "json"], help="default: from the file name or content"
        )
        push.add_argument("--user", help="act as this user (their role and tenants apply)")

        pull = sub.add_parser("pull", help="write a version back to a file that pushes cleanly")
        pull.add_argument("--agent", required=True)
        pull.add_argument("--tenant")
        pull.add_argument("--version", type=int, help="version number (default: the latest)")
        pull.add_argument("-o", "--output", help="file to write (default: standard output)")
        pull.add_argument("--format", choices=["yaml", "json"], help="default: from -o, else yaml")
        pull.add_argument("--user", help="act as this user (their tenants apply)")

        validate = sub.add_parser(
            "validate", help="check FILE without storing it (no database needed)"
        )
        validate.add_argument("file")
        validate.add_argument("--format", choices=["yaml", "json"])
        validate.add_argument(
            "--json", action="store_true", help="print the result as JSON (for CI)"
        )

        listing = sub.add_parser("list", help="the agent's versions, newest first")
        listing.add_argument("--agent", required=True)
        listing.add_argument("--tenant")

        schema = sub.add_parser("schema", help="print the bundle JSON Schema (for editors)")
        schema.add_argument("-o", "--output")
        schema.add_argument("--id", help="the URL it will be served from ($id)")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['subcommand']}")(options)

    # ------------------------------------------------------------------ helpers

    def _actor(self, username: str | None) -> Actor:
        if not username:
            return SystemActor(f"cli:{getpass.getuser()}")
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"No active user {username!r}.")
        return user

    def _agent(self, options: dict[str, Any]) -> Agent:
        try:
            return selectors.agent_by_slug(slug=options["agent"], tenant_slug=options.get("tenant"))
        except (Agent.DoesNotExist, Agent.MultipleObjectsReturned) as exc:
            raise CommandError(str(exc)) from None

    def _read(self, path: str) -> bytes:
        try:
            return Path(path).read_bytes()
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None

    def _findings(self, label: str, findings: dict[str, list[str]], source: bytes) -> list[str]:
        text = source.decode("utf-8", "replace")
        lines, spans = pointer_lines(text), scalar_spans(text)
        out: list[str] = []
        for pointer, messages in findings.items():
            for message in messages:
                line = finding_line(text, pointer, message, lines, spans)
                where = f"{pointer or '/'}" + (f" (line {line})" if line else "")
                out.append(f"{label} {where}: {message}")
        return out

    def _warn(self, warnings: dict[str, list[str]], source: bytes) -> None:
        for line in self._findings("warning", warnings, source):
            self.stderr.write(self.style.WARNING(line))

    # ------------------------------------------------------------------ subcommands

    def _push(self, options: dict[str, Any]) -> None:
        source = self._read(options["file"])
        agent = self._agent(options)
        try:
            result = services.bundle_version_push(
                actor=self._actor(options.get("user")),
                agent=agent,
                source=source,
                source_format=_format_for(options["file"], options.get("format")),
                message=options["message"],
                parent_number=options.get("parent"),
            )
        except services.BundleInvalid as exc:
            self._warn(exc.result.warnings, source)
            problems = self._findings("error", exc.errors_by_pointer, source)
            raise CommandError(
                f"{options['file']} was refused; nothing was stored:\n" + "\n".join(problems)
            ) from None
        except (ValidationError, PermissionDenied) as exc:
            # an archived agent or tenant, a user whose role may not push: said, no traceback
            refusal = "; ".join(_messages(exc))
            raise CommandError(f"Refused; nothing was stored: {refusal}") from None
        self._warn(result.warnings, source)
        version = result.version
        if result.created:
            self.stdout.write(
                self.style.SUCCESS(
                    f"pushed {agent.slug} v{version.number} · sha256:{version.digest} · "
                    f"signed by key {version.signing_key_id}"
                )
            )
        else:
            self.stdout.write(
                f"unchanged: identical to {agent.slug} v{version.number} · sha256:{version.digest}"
            )

    def _pull(self, options: dict[str, Any]) -> None:
        agent = self._agent(options)
        if options.get("user"):
            try:
                agent_get_for_user(user=self._actor(options["user"]), pk=agent.pk)  # type: ignore[arg-type]
            except Http404:
                raise CommandError(f"No agent {agent.slug!r}.") from None
        number = options.get("version")
        try:
            version = (
                selectors.bundle_version_get(agent=agent, number=number)
                if number
                else selectors.bundle_version_latest(agent=agent)
            )
        except Http404 as exc:
            raise CommandError(str(exc)) from None
        if version is None:
            raise CommandError(f"{agent.slug} has no versions yet.")
        fmt = _format_for(options.get("output"), options.get("format")) or "yaml"
        text = export_json(version) if fmt == "json" else export_yaml(version)
        if options.get("output"):
            Path(options["output"]).write_text(text, encoding="utf-8")
            self.stderr.write(f"wrote {agent.slug} v{version.number} to {options['output']}")
        else:
            self.stdout.write(text, ending="")

    def _validate(self, options: dict[str, Any]) -> None:
        source = self._read(options["file"])
        result: ValidationResult = validate_source(
            source, source_format=_format_for(options["file"], options.get("format"))
        )
        if options.get("json"):
            self.stdout.write(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
            if not result.ok:
                raise CommandError(f"{options['file']}: {result.error_count} error(s)")
            return
        self._warn(result.warnings, source)
        if not result.ok:
            problems = self._findings("error", result.errors, source)
            raise CommandError(f"{options['file']} is invalid:\n" + "\n".join(problems))
        self.stdout.write(self.style.SUCCESS(f"valid · sha256:{result.digest}"))

    def _list(self, options: dict[str, Any]) -> None:
        agent = self._agent(options)
        versions = selectors.bundle_version_list(agent=agent)
        if not versions:
            self.stdout.write(f"{agent.slug} has no versions yet.")
        for v in versions:
            self.stdout.write(
                f"v{v.number}\t{v.created_at:%Y-%m-%d %H:%M}\t{v.author_label}\t"
                f"{v.digest[:12]}\t{v.message}"
            )

    def _schema(self, options: dict[str, Any]) -> None:
        text = (
            json.dumps(
                bundle_json_schema(schema_id=options.get("id")), indent=2, ensure_ascii=False
            )
            + "\n"
        )
        if options.get("output"):
            Path(options["output"]).write_text(text, encoding="utf-8")
        else:
            self.stdout.write(text, ending="")

"""``./manage.py flags import FILE --tenant SLUG --environment SLUG [--mode merge|replace]``
and ``./manage.py flags export --tenant SLUG --environment SLUG``."""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.services import SystemActor
from apps.core.input_guards import json_loads
from apps.tenancy.models import Environment

from ...selectors import environment_features
from ...services import flags_import
from ...services.imports import IMPORT_MODES
from ...unleash import client_features_body, query_hash


def _environment(tenant: str, environment: str) -> Environment:
    try:
        return Environment.objects.select_related("tenant").get(
            tenant__slug=tenant, slug=environment
        )
    except Environment.DoesNotExist:
        raise CommandError(f"No environment {environment!r} in tenant {tenant!r}.") from None


class Command(BaseCommand):
    help = "Import flags from an Unleash client-features payload, or export an environment's flags."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        imp = sub.add_parser(
            "import", help="import a GET /api/client/features payload (v1/v2) or delta events"
        )
        imp.add_argument("file", help="JSON file; - for standard input")
        imp.add_argument("--tenant", required=True)
        imp.add_argument("--environment", required=True)
        imp.add_argument(
            "--mode",
            choices=IMPORT_MODES,
            default="merge",
            help="merge (default): keep flags not in the file; replace: delete them",
        )
        imp.add_argument(
            "--reason", default="", help="kept in the audit log; required for production"
        )
        exp = sub.add_parser(
            "export", help="print the environment's flags as an Unleash v2 payload"
        )
        exp.add_argument("--tenant", required=True)
        exp.add_argument("--environment", required=True)

    def handle(self, *args: Any, **options: Any) -> None:
        environment = _environment(options["tenant"], options["environment"])
        if options["action"] == "export":
            features, segments = environment_features(environment_id=environment.pk)
            body = client_features_body(
                features=features,
                segments=segments,
                revision=environment.revision,
                query=query_hash(environment.pk, None, "export"),
                with_segments=True,
            )
            self.stdout.write(json.dumps(json.loads(body), indent=2, ensure_ascii=False))
            return
        try:
            if options["file"] == "-":
                text = sys.stdin.read()
            else:
                with open(options["file"], encoding="utf-8") as handle:
                    text = handle.read()
            payload = json_loads(text, parse_float=Decimal)
        except OSError as exc:
            raise CommandError(f"Cannot read {options['file']}: {exc}") from None
        except ValueError as exc:
            raise CommandError(f"{options['file']} is not valid JSON: {exc}") from None
        actor = SystemActor(f"system:manage.py flags import ({options['file']})")
        try:
            result = flags_import(
                actor=actor,
                environment=environment,
                payload=payload,
                mode=options["mode"],
                reason=options["reason"],
            )
        except ValidationError as exc:
            lines = (
                [
                    f"  {field}: {'; '.join(messages)}"
                    for field, messages in exc.message_dict.items()
                ]
                if hasattr(exc, "error_dict")
                else [f"  {m}" for m in exc.messages]
            )
            raise CommandError("Nothing imported:\n" + "\n".join(lines)) from None
        for warning in result.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(
            self.style.SUCCESS(
                f"{options['mode']} into {environment.tenant.slug}/{environment.slug} "
                f"(revision {result.revision}): "
                f"{len(result.created)} created, {len(result.updated)} updated, "
                f"{len(result.unchanged)} unchanged, "
                f"{len(result.deleted)} deleted; segments {len(result.segments_created)} created, "
                f"{len(result.segments_updated)} updated, {len(result.segments_deleted)} deleted"
            )
        )

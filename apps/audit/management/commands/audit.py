from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.services import audit_chain_verify


class Command(BaseCommand):
    help = (
        "Audit trail tools. `audit verify` recomputes the hash chain and names the first "
        "broken event."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("subcommand", choices=["verify"])

    def handle(self, *args: Any, **options: Any) -> None:
        report = audit_chain_verify()
        if report.ok:
            self.stdout.write(f"OK: {report.checked} audit events, hash chain intact")
            return
        raise CommandError(
            f"BROKEN at audit event #{report.first_broken_id}: {report.problem} "
            f"({report.checked} events before it verified)"
        )

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.checkpoints import CheckpointFileError, append_to_file, post_to_webhook, read_file
from apps.audit.selectors import audit_checkpoint_list, checkpoint_record
from apps.audit.services import audit_chain_verify, audit_checkpoint_create

WEBHOOK_BATCH = 500


class Command(BaseCommand):
    help = (
        "Audit trail tools. `audit verify [--checkpoints FILE]` recomputes the hash chain, checks "
        "it against signed checkpoints and names the first broken event; `audit checkpoint` "
        "signs the current chain head; `audit export-checkpoints --output FILE | --webhook URL` "
        "copies the checkpoints somewhere the database's writers cannot reach."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("subcommand", choices=["verify", "checkpoint", "export-checkpoints"])
        parser.add_argument(
            "--checkpoints",
            type=Path,
            help="verify: a JSON Lines file of checkpoints kept outside the database",
        )
        parser.add_argument(
            "--output",
            type=Path,
            help="export-checkpoints: append the checkpoints newer than the file's newest",
        )
        parser.add_argument(
            "--webhook", help='export-checkpoints: POST {"checkpoints": [...]} to this URL'
        )
        parser.add_argument(
            "--after-event",
            type=int,
            default=0,
            help="export-checkpoints to a webhook: only checkpoints of heads after this event id",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        subcommand = options["subcommand"]
        if subcommand == "checkpoint":
            self._checkpoint()
        elif subcommand == "export-checkpoints":
            self._export(options["output"], options["webhook"], options["after_event"])
        else:
            self._verify(options["checkpoints"])

    def _checkpoint(self) -> None:
        checkpoint = audit_checkpoint_create()
        if checkpoint is None:
            self.stdout.write("No audit events yet: nothing to checkpoint")
            return
        self.stdout.write(
            f"Checkpoint of event #{checkpoint.event_id} ({checkpoint.event_count} events, "
            f"head {checkpoint.head_hash[:12]}…) signed with key {checkpoint.kid}"
        )

    def _export(self, output: Path | None, webhook: str | None, after_event: int) -> None:
        if (output is None) == (webhook is None):
            raise CommandError("Give exactly one of --output FILE or --webhook URL.")
        records = [checkpoint_record(c) for c in audit_checkpoint_list(after_event=after_event)]
        if output is not None:
            try:
                added = append_to_file(output, records)
            except CheckpointFileError as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"{added} new checkpoint(s) appended to {output}")
            return
        assert webhook is not None
        # Batches keep each request small: a year of 5-minute checkpoints is ~100,000 records.
        for start in range(0, len(records), WEBHOOK_BATCH):
            try:
                post_to_webhook(
                    webhook,
                    records[start : start + WEBHOOK_BATCH],
                    timeout_s=settings.AUDIT_CHECKPOINT_WEBHOOK_TIMEOUT_S,
                )
            except requests.RequestException as exc:
                resume = records[start - 1]["event_id"] if start else after_event
                raise CommandError(
                    f"The webhook refused the checkpoints: {exc} ({start} sent before it; "
                    f"resume with --after-event {resume})"
                ) from None
        self.stdout.write(f"{len(records)} checkpoint(s) sent to {webhook}")

    def _verify(self, path: Path | None) -> None:
        external = []
        if path is not None:
            if not path.exists():
                raise CommandError(f"No checkpoint file at {path}")
            try:
                external = read_file(path)
            except CheckpointFileError as exc:
                raise CommandError(str(exc)) from None
        report = audit_chain_verify(checkpoints=external)
        if report.ok:
            self.stdout.write(
                f"OK: {report.checked} audit events, hash chain intact"
                + (
                    f", {report.checkpoints} signed checkpoint(s) hold"
                    if report.checkpoints
                    else ""
                )
            )
            return
        raise CommandError(
            f"BROKEN at audit event #{report.first_broken_id}: {report.problem} "
            f"({report.checked} events before it verified)"
        )

"""``./manage.py signing_key list|activate|rotate|generate``: the key that signs bundles and
snapshots."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.services import SystemActor

from ... import signing
from ...models import SigningKey
from ...services import signing_key_activate, signing_key_rotate


class Command(BaseCommand):
    help = (
        "Show, activate, rotate (embedded default) or generate (production) the Ed25519 "
        "signing key."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        sub.add_parser(
            "list", help="published keys, active first, and where the active key comes from"
        )
        activate = sub.add_parser(
            "activate",
            help="make the configured key the active published key (migrate does it too)",
        )
        activate.add_argument("--reason", default="", help="why (kept in the audit log)")
        rotate = sub.add_parser(
            "rotate", help="make a new embedded key active; the old one stays published"
        )
        rotate.add_argument("--reason", required=True, help="why (kept in the audit log)")
        generate = sub.add_parser(
            "generate", help="print or write a new PEM private key (for production)"
        )
        generate.add_argument(
            "-o", "--output", help="file to create (mode 600); default: standard output"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        subcommand = options["subcommand"]
        if subcommand == "list":
            try:
                keys = signing.public_keys()
            except ImproperlyConfigured as exc:
                raise CommandError(str(exc)) from None
            self.stdout.write(f"active key source: {signing.key_source()}")
            for key in keys:
                state = "active" if key["active"] else f"retired {key['retired_at']}"
                self.stdout.write(f"{key['kid']}\t{key['alg']}\t{state}\t{key['public_key']}")
        elif subcommand == "activate":
            activated = _as_cli(signing_key_activate, options["reason"])
            self.stdout.write(self.style.SUCCESS(f"active signing key: {activated.kid}"))
        elif subcommand == "rotate":
            rotated = _as_cli(signing_key_rotate, options["reason"])
            self.stdout.write(
                self.style.SUCCESS(
                    f"active signing key is now {rotated.kid}; earlier keys stay published"
                )
            )
        else:
            pem = signing.generate_private_key_pem()
            if options.get("output"):
                path = Path(options["output"])
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                except FileExistsError:
                    raise CommandError(f"{path} exists; choose a new file.") from None
                with os.fdopen(fd, "wb") as handle:
                    handle.write(pem)
                self.stdout.write(
                    f"wrote a new Ed25519 private key to {path}; "
                    "point CONTROLPLANE_SIGNING_KEY_FILE at it"
                )
            else:
                self.stdout.write(pem.decode("ascii"), ending="")


def _as_cli(service: Callable[..., SigningKey], reason: str) -> SigningKey:
    """Run a signing-key service as the operator at the terminal; its refusals as
    ``CommandError`` (an unreadable configured key, a missing reason)."""
    try:
        return service(actor=SystemActor(f"cli:{getpass.getuser()}"), reason=reason)
    except ImproperlyConfigured as exc:
        raise CommandError(str(exc)) from None
    except ValidationError as exc:
        raise CommandError(" ".join(exc.messages)) from None

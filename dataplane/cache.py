"""The last-known-good snapshot on disk, for fail-static restarts.

The file holds the signed envelope exactly as verified plus the public keys that verified it, so
a runtime that restarts while the control plane is down can check the file's digest and
signature before serving it. (A key stored next to the data proves integrity against a torn or
corrupted file, not against someone who can write the cache directory; pass ``trusted_keys`` to
the runtime to pin keys out of band.)"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FILENAME = "last-known-good.json"
FORMAT = "dataplane.last-known-good/v1"

log = logging.getLogger("dataplane.cache")


@dataclass(frozen=True)
class Cached:
    envelope: Mapping[str, Any]
    keys: Mapping[str, str]


class LastKnownGood:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FILENAME

    def save(self, envelope: Mapping[str, Any], keys: Mapping[str, str]) -> None:
        """Atomic replace: a crash mid-write leaves the previous file, never half of a new one."""
        self.directory.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(
            {"format": FORMAT, "envelope": envelope, "keys": dict(keys)}, ensure_ascii=False
        ).encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=".lkg-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._sync_directory()

    def _sync_directory(self) -> None:
        # Makes the rename itself durable; not every platform lets a directory be opened.
        try:
            fd = os.open(self.directory, os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def load(self) -> Cached | None:
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning(
                "runtime.cache_unreadable", extra={"path": str(self.path), "error": str(exc)}
            )
            return None
        if (
            not isinstance(data, dict)
            or data.get("format") != FORMAT
            or not isinstance(data.get("envelope"), dict)
            or not isinstance(data.get("keys"), dict)
        ):
            log.warning(
                "runtime.cache_unreadable", extra={"path": str(self.path), "error": "format"}
            )
            return None
        return Cached(
            envelope=data["envelope"], keys={str(k): str(v) for k, v in data["keys"].items()}
        )

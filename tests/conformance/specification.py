"""Where the Unleash client specification's files are, so the conformance tests run on any
checkout: the published npm package ``@unleash/client-specification`` (pinned in
``tests/crosslang/package.json`` and its lock file, installed by ``make install-dev``, which
``make test`` runs) when the workspace's ``../shared/conformance`` copy is absent."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The copy next to the repository in the maintainers' workspace (same files as the npm
# package's version pinned below: compared file by file when the pin was chosen).
SHARED_ROOT = REPO.parent / "shared"
NPM_PACKAGE = REPO / "tests" / "crosslang" / "node_modules" / "@unleash" / "client-specification"


def specification_dir(
    *, override: str | None = None, shared_root: Path = SHARED_ROOT, npm_package: Path = NPM_PACKAGE
) -> Path:
    """The directory holding ``index.json`` and the numbered specification files: ``override``
    when given (``UNLEASH_SPEC_DIR``), else the shared copy under ``shared_root`` if it has an
    index, else the npm package's ``specifications/``. The last one is returned even when it
    is missing, so a skip names where the files were looked for."""
    if override:
        return Path(override)
    shared = shared_root / "conformance" / "unleash-client-specification"
    if (shared / "index.json").exists():
        return shared
    return npm_package / "specifications"


SPEC_DIR = specification_dir(
    override=os.environ.get("UNLEASH_SPEC_DIR"),
    # UNLEASH_SPEC_SHARED_ROOT hides (or moves) the shared copy, e.g. to check that a fresh
    # clone runs the specification from the npm package.
    shared_root=Path(os.environ.get("UNLEASH_SPEC_SHARED_ROOT") or SHARED_ROOT),
)

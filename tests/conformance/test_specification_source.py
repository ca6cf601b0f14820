"""The Unleash client specification is found on any checkout: without the workspace's
``../shared/conformance`` copy, the conformance tests read the npm package pinned in
``tests/crosslang`` and do not skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .specification import NPM_PACKAGE, REPO, SHARED_ROOT, specification_dir

CROSSLANG = REPO / "tests" / "crosslang"


def test_specification_dir__shared_copy_absent__the_pinned_npm_package() -> None:
    found = specification_dir(shared_root=Path("/nonexistent"))
    assert found == NPM_PACKAGE / "specifications"
    pinned = json.loads((CROSSLANG / "package.json").read_text())["dependencies"]
    installed = json.loads((NPM_PACKAGE / "package.json").read_text())["version"]
    assert installed == pinned["@unleash/client-specification"]
    files = json.loads((found / "index.json").read_text())
    assert len(files) >= 20
    assert [name for name in files if not (found / name).is_file()] == []


def test_specification_dir__explicit_directory_wins(tmp_path: Path) -> None:
    assert specification_dir(override=str(tmp_path), shared_root=SHARED_ROOT) == tmp_path


def test_conformance_tests__shared_copy_hidden__none_skips(tmp_path: Path) -> None:
    """What a fresh clone sees: the modules' skip conditions, evaluated in a new interpreter
    whose lookup finds no shared copy (an empty directory stands in for ``../shared``)."""
    script = (
        "import django; django.setup()\n"
        "from tests.conformance import test_client_specification as spec, test_streaming as sse\n"
        "print(spec.SPEC_DIR, len(spec.SPEC_FILES), spec.pytestmark.args[0],"
        " sse.pytestmark.args[0], spec.RANDOM_FILE in spec.SPEC_FILES)\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"UNLEASH_SPEC_DIR", "UNLEASH_SPEC_SHARED_ROOT"}
    }
    env |= {
        "UNLEASH_SPEC_SHARED_ROOT": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "controlplane.settings.test",
    }
    answer = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True
    )
    assert answer.returncode == 0, answer.stderr
    spec_dir, count, spec_skips, streaming_skips, has_random = answer.stdout.split()
    assert Path(spec_dir) == NPM_PACKAGE / "specifications"
    assert int(count) >= 20
    assert (spec_skips, streaming_skips, has_random) == ("False", "False", "True")


@pytest.mark.skipif(
    not (SHARED_ROOT / "conformance" / "unleash-client-specification").exists(),
    reason="no workspace copy of the specification to compare the npm package with",
)
def test_npm_package__same_files_as_the_shared_copy() -> None:
    shared = specification_dir(shared_root=SHARED_ROOT)
    npm = specification_dir(shared_root=Path("/nonexistent"))
    names = json.loads((shared / "index.json").read_text())
    assert json.loads((npm / "index.json").read_text()) == names
    assert [n for n in names if (shared / n).read_bytes() != (npm / n).read_bytes()] == []

"""scripts/e2e-kind cannot run here (no Docker engine, no kind): it is parsed and linted."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Final

from tests.manifests import documents
from tests.manifests.documents import ROOT

SCRIPT: Final = ROOT / "scripts" / "e2e-kind"


def run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    return run([documents.tool("shellcheck"), "--external-sources", str(path)])


def test_script_is_an_executable_bash_script_that_stops_on_errors() -> None:
    assert os.access(SCRIPT, os.X_OK)
    lines = SCRIPT.read_text().splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines


def test_script_parses_with_bash_n() -> None:
    result = run(["bash", "-n", str(SCRIPT)])
    assert result.returncode == 0, result.stderr


def test_script_passes_shellcheck() -> None:
    result = shellcheck(SCRIPT)
    assert result.returncode == 0, result.stdout


def test_shellcheck_reports_a_bad_script(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.write_text("#!/usr/bin/env bash\nrm -rf $1/*\n")
    result = shellcheck(bad)
    assert result.returncode != 0
    assert "SC2086" in result.stdout


def test_script_cleans_up_and_honours_keep_cluster() -> None:
    text = SCRIPT.read_text()
    assert "trap cleanup EXIT" in text
    assert "KEEP_CLUSTER" in text
    assert "kind delete cluster" in text
    assert "CLUSTER_NAME" in text
    assert "echo PASS" in text

"""Schemathesis drives the real server from its own OpenAPI description: requests that fit the
schema are accepted, those that do not are refused with a 4xx, and nothing is ever a 500."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import running_server, write_tls_files

pytestmark = pytest.mark.integration


def _st() -> str:
    beside = Path(sys.executable).parent / "st"
    return str(beside) if beside.exists() else shutil.which("st") or "st"


def test_schemathesis_finds_no_failure_against_the_openapi_description(tmp_path: Path) -> None:
    examples = "2000" if os.environ.get("HYPOTHESIS_PROFILE") == "long" else "60"
    files = write_tls_files(tmp_path / "tls", extra_names=("localhost",))
    with running_server(tmp_path, files=files) as server:
        result = subprocess.run(
            [
                _st(), "run", f"https://localhost:{server.port}/openapi.json",
                "--url", f"https://localhost:{server.port}",
                "--tls-verify", str(server.files.ca),
                "--max-examples", examples, "--seed", "1",
                "--checks", "all",
            ],
            capture_output=True, text=True, timeout=300, check=False,
            env={**os.environ, "NO_COLOR": "1"},
        )  # fmt: skip
        log = server.log_text()
    assert result.returncode == 0, result.stdout[-4000:]
    assert "No issues found" in result.stdout
    assert "outcome=error" not in log
    assert '"outcome":"error"' not in log

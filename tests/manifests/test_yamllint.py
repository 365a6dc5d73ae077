"""Every YAML file under manifests/ passes yamllint's ``relaxed`` rules with no error.

Helm templates are Go templates, not YAML: their rendered output is linted instead, with the same
rules, by tests/helm/test_value_sets.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

import pytest

from tests.manifests import documents
from tests.manifests.documents import MANIFESTS

FILES: Final = sorted(
    path
    for path in [*MANIFESTS.rglob("*.yaml"), *MANIFESTS.rglob("*.yml")]
    if not path.relative_to(MANIFESTS).match("helm/*/templates/*")
)


def yamllint(path: Path) -> list[str]:  # also used by tests/helm on rendered charts
    """yamllint's errors (warnings dropped) as ``file:line:col: [error] message (rule)``."""
    result = subprocess.run(
        [documents.tool("yamllint"), "--format", "parsable", "--config-data", "relaxed", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in {0, 1}, result.stderr
    return [line for line in result.stdout.splitlines() if "[error]" in line]


@pytest.mark.parametrize("path", FILES, ids=[str(p.relative_to(MANIFESTS)) for p in FILES])
def test_yaml_file_has_no_yamllint_error(path: Path) -> None:
    assert yamllint(path) == []


def test_yamllint_reports_an_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\n")
    assert yamllint(bad), "duplicated keys must be an error"

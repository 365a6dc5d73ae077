"""The guard of tests/support/confinement.py fails a test that reads beside the repository.

Each case runs pytest in a subprocess on a throwaway project whose rootdir stands in for the
repository, with a data file placed beside it before the run (like a sibling data folder on a
developer's machine), and reads the outcome.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _guard_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    # Only the guard under test: no plugins from the venv (hypothesis, timeout, ...), which
    # also keeps each inner run fast.
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")


@pytest.fixture
def beside(pytester: pytest.Pytester) -> Path:
    """A data file next to the throwaway project, older than the run that reads it."""
    pytester.makeini("[pytest]\n")
    data = pytester.path.parent / f"{pytester.path.name}-shared" / "corpus.yaml"
    data.parent.mkdir()
    data.write_text("kind: Pod\n")
    return data


def run(pytester: pytest.Pytester, source: str) -> pytest.RunResult:
    pytester.makepyfile(test_reads=source)
    return pytester.runpytest_subprocess(
        "-p", "tests.support.confinement", "-p", "no:cacheprovider"
    )


def test_a_test_that_opens_a_file_beside_the_repository_fails_naming_it(
    pytester: pytest.Pytester, beside: Path
) -> None:
    result = run(
        pytester,
        f"def test_reads():\n    open({str(beside)!r}).read()\n\n"
        "def test_stays_inside():\n    open(__file__).read()\n",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*test_reads (call) read outside the repository*", f"*{beside}*"])


def test_listing_a_directory_beside_the_repository_fails_even_when_nothing_is_opened(
    pytester: pytest.Pytester, beside: Path
) -> None:
    source = (
        "from pathlib import Path\n\n"
        f"def test_globs():\n    list(Path({str(beside.parent)!r}).rglob('*.json'))\n"
    )
    result = run(pytester, source)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([f"*{beside.parent}*"])


def test_a_read_while_collecting_fails_the_run(pytester: pytest.Pytester, beside: Path) -> None:
    source = f"DATA = open({str(beside)!r}).read()\n\ndef test_nothing():\n    pass\n"
    result = run(pytester, source)
    assert result.ret != os.EX_OK
    result.stdout.fnmatch_lines(["*collecting test_reads.py*read outside the repository*"])


def test_files_the_run_creates_beside_the_repository_are_allowed(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\n")
    made = pytester.path.parent / f"{pytester.path.name}-made.txt"
    source = (
        f"def test_writes_then_reads():\n    open({str(made)!r}, 'w').write('x')\n"
        f"    assert open({str(made)!r}).read() == 'x'\n"
    )
    run(pytester, source).assert_outcomes(passed=1)

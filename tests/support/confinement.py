"""A guard that fails any test reading data from outside the repository.

A user's clone has nothing beside it, so a test that reads a sibling folder of the checkout
passes here and fails for everyone else. This pytest plugin (loaded by tests/conftest.py)
installs a ``sys.addaudithook`` that sees every ``open`` and directory listing of this process
and records those that are

- under the repository's parent directory but not inside the repository (``../anything``), and
- not the toolchain (the interpreter, its venv and site-packages, pytest's scratch root, the
  tool cache of ``scripts/tools``), and
- older than the session: a file or directory the run created itself (``tmp_path`` when the
  clone sits in /tmp) is no data a clone lacks.

Each phase of a test (setup, call, teardown) that recorded such a path fails, naming it; a
path read while collecting fails the collection. Subprocesses are not watched: the audit hook
sees this interpreter only.
"""

from __future__ import annotations

import getpass
import os
import sys
import sysconfig
import tempfile
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.tools import cache_dir

__all__ = ["Confinement"]

# Audit events that read a path: open() and os.open(), and directory listings (pathlib's glob
# and rglob list with os.scandir, so a glob of a sibling folder is caught even when it finds
# nothing to open).
_READS = frozenset({"open", "os.listdir", "os.scandir", "glob.glob"})


def _toolchain() -> tuple[str, ...]:
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    roots |= {sysconfig.get_path(name) for name in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots.add(str(cache_dir()))
    return tuple(sorted({os.path.realpath(root) for root in roots if root}))


def _within(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass
class Confinement:
    """Which paths a test run may read, and the ones it read that it may not."""

    repo: str
    parent: str
    allowed: tuple[str, ...]
    started_ns: int
    breaches: list[str] = field(default_factory=list)

    @classmethod
    def around(cls, repo: Path) -> Confinement:
        real = Path(repo).resolve()
        allowed = _toolchain()
        # pytest's own scratch root (tmp_path and friends) holds no data, and a clone under /tmp
        # has it beside it: pytest lists it and prunes old sessions in it. Unless the repository
        # itself lives in it (a pytester run), where "beside" is exactly what is being tested.
        scratch = str((Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}").resolve())
        if not _within(str(real), scratch):
            allowed += (scratch,)
        return cls(str(real), str(real.parent), allowed, time.time_ns())

    def is_breach(self, path: str) -> bool:
        """Whether reading ``path`` reads data a user's clone would not have."""
        # os.path, not pathlib: this runs on every open of the session.
        real = os.path.realpath(path)
        if real == self.parent or not _within(real, self.parent) or _within(real, self.repo):
            return False
        if any(_within(real, root) for root in self.allowed):
            return False
        try:
            return Path(real).stat().st_ctime_ns < self.started_ns
        except OSError:
            return False  # nothing there: the read fails on its own, or it creates the file

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event not in _READS or not args:
            return
        target = args[0]
        if isinstance(target, int) or target is None:
            return  # a file descriptor, or os.listdir() of the working directory
        path = os.fsdecode(target)
        if path not in self.breaches and self.is_breach(path):
            self.breaches.append(path)

    def take(self) -> list[str]:
        """The breaches recorded since the last call."""
        taken, self.breaches[:] = list(self.breaches), []
        return taken


_KEY = pytest.StashKey[Confinement]()


def _message(paths: list[str]) -> str:
    listed = "\n".join(f"  {path}" for path in paths)
    return (
        "read outside the repository (a user's clone has no such file; vendor it under "
        f"tests/data/ and read it from there):\n{listed}"
    )


def pytest_configure(config: pytest.Config) -> None:
    guard = Confinement.around(config.rootpath)
    # An audit hook cannot be removed: it stays for the life of the interpreter, and only
    # records; the hooks below decide what fails.
    sys.addaudithook(guard.audit)
    config.stash[_KEY] = guard


def _fail_if_breached(
    config: pytest.Config, report: pytest.TestReport | pytest.CollectReport, what: str
) -> None:
    paths = config.stash[_KEY].take()
    if paths:
        report.outcome = "failed"
        report.longrepr = f"{what} {_message(paths)}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_if_breached(item.config, report, f"{item.nodeid} ({report.when})")
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield
    _fail_if_breached(collector.config, report, f"collecting {collector.nodeid or 'the session'}:")
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    paths = session.config.stash[_KEY].take()
    if paths:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        sys.stderr.write(f"envoy-injector: {_message(paths)}\n")

"""What a test cluster owns, written to disk as it is acquired, so that teardown works from the
record alone: after a clean stop, a failed start, or a run killed with SIGKILL.

A cluster lives in one directory (`<cache>/clusters/<name>/`) holding `record.json`, its PKI,
data and logs. The record lists what was acquired, in order; `tear_down` undoes it in reverse
and then deletes the directory. Each kind of entry has one undo function in `UNDO`: this module
knows processes; a node fixture registers its own kinds (network namespaces, addresses, rules)
with `register`.

A process is identified by its PID *and* its start time (field 22 of /proc/PID/stat), so a PID
reused by an unrelated process after a reboot or a long pause is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from tests.support import tools

RECORD: Final = "record.json"

Entry = dict[str, Any]
UNDO: dict[str, Callable[[Entry], None]] = {}
# Children started by this process, kept until reaped: a Popen collected while its process runs
# warns (and the test suite turns warnings into errors).
_children: dict[int, subprocess.Popen[bytes]] = {}


def register(kind: str, undo: Callable[[Entry], None]) -> None:
    UNDO[kind] = undo


def clusters_root() -> Path:
    return tools.cache_dir() / "clusters"


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None when there is no such PID."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return int(stat.rsplit(")", 1)[1].split()[19])


def alive(pid: int, started: int | None) -> bool:
    now = start_time(pid)
    return now is not None and (started is None or now == started)


class Record:
    """The record of one cluster directory; every change is written to disk at once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / RECORD
        self.data: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}

    @classmethod
    def create(cls, directory: Path, *, owner: int | None) -> Record:
        """A new record; `owner` is the PID whose death makes the cluster stale (None: a user's)."""
        directory.mkdir(parents=True, exist_ok=True)
        record = cls(directory)
        if record.data.get("entries"):
            raise RuntimeError(f"{directory} already holds a cluster; tear it down first")
        owner_started = start_time(owner) if owner is not None else None
        record.data = {"owner": owner, "owner_started": owner_started, "entries": []}
        record.save()
        return record

    @property
    def entries(self) -> list[Entry]:
        entries: list[Entry] = self.data.setdefault("entries", [])
        return entries

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=2))
        tmp.replace(self.path)

    def add(self, entry: Entry) -> None:
        self.entries.append(entry)
        self.save()

    def put(self, key: str, value: object) -> None:
        """Facts other parts read back (ports, URLs); not undone."""
        self.data.setdefault("facts", {})[key] = value
        self.save()

    def fact(self, key: str) -> Any:
        return self.data.get("facts", {}).get(key)

    def spawn(
        self,
        name: str,
        argv: Sequence[str],
        *,
        stop_timeout: float,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a process in its own session (it outlives `scripts/cluster up`), logging to
        `logs/<name>.log`, and record it before anything else can fail."""
        logs = self.directory / "logs"
        logs.mkdir(exist_ok=True)
        with (logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=dict(env) if env is not None else None,
            )
        _children[process.pid] = process
        self.add(
            {
                "kind": "process",
                "name": name,
                "pid": process.pid,
                "started": start_time(process.pid),
                "stop_timeout": stop_timeout,
            }
        )
        return process

    def adopt(self, name: str, pid: int, *, stop_timeout: float) -> None:
        """Record a process started elsewhere (a test's webhook), so a sweep stops it too."""
        entry = {"kind": "process", "name": name, "pid": pid, "stop_timeout": stop_timeout}
        self.add({**entry, "started": start_time(pid)})

    def processes(self) -> Iterator[Entry]:
        return (entry for entry in self.entries if entry["kind"] == "process")

    def stale(self) -> bool:
        """Its owner is gone, so nobody will tear it down but a sweep."""
        owner = self.data.get("owner")
        return owner is not None and not alive(owner, self.data.get("owner_started"))


def stop_process(entry: Entry) -> None:
    """SIGTERM, a short deadline, then SIGKILL (kube-apiserver may take a minute on SIGTERM)."""
    pid, started = int(entry["pid"]), entry.get("started")
    try:
        for sig, timeout in (
            (signal.SIGTERM, float(entry.get("stop_timeout", 5))),
            (signal.SIGKILL, 10),
        ):
            if not _running(pid, started):
                return
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + timeout
            while _running(pid, started) and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        _reap(pid)


def _running(pid: int, started: int | None) -> bool:
    _reap(pid)
    return alive(pid, started) and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False


def _reap(pid: int) -> None:
    """Collect our own child's exit status (the test session started it), so it is not a zombie."""
    child = _children.get(pid)
    if child is None:
        return  # not ours (a run that died, or `scripts/cluster up`): init reaps it
    if child.poll() is not None or _zombie(pid):
        child.wait()
        del _children[pid]


register("process", stop_process)


def tear_down(directory: Path) -> list[str]:
    """Undo every entry, last first, then remove the directory. Returns what failed (if any)."""
    # A node's entries (addresses, rules, mounts...) are undone by its modules, which register
    # on import; a sweep from a control-plane-only run must know them too.
    from tests.support.cluster import node  # noqa: F401 - registers undo kinds; node imports record

    errors: list[str] = []
    record = Record(directory)
    for entry in reversed(record.entries):
        undo = UNDO.get(entry["kind"])
        if undo is None:
            errors.append(f"{directory}: no way to undo {entry['kind']!r} entries: {entry}")
            continue
        try:
            undo(entry)
        except Exception as error:  # noqa: BLE001 - keep undoing the rest, report at the end
            errors.append(f"{entry['kind']} {entry.get('name', '')}: {error}")
    if not errors:
        shutil.rmtree(directory, ignore_errors=True)
    return errors


def sweep(root: Path | None = None) -> list[Path]:
    """Tear down every cluster whose owner died (a killed test run). Returns their directories."""
    root = root or clusters_root()
    swept: list[Path] = []
    for path in sorted(root.glob(f"*/{RECORD}")) if root.is_dir() else []:
        if Record(path.parent).stale():
            tear_down(path.parent)
            swept.append(path.parent)
    return swept

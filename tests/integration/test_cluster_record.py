"""The test cluster's record on disk: teardown by PID works after the run that started the
processes was killed, and never signals a process that merely reuses a recorded PID."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support.cluster import record


def _owner_that_dies() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_cluster_whose_owner_was_killed_is_swept_with_its_processes(tmp_path: Path) -> None:
    owner = _owner_that_dies()
    directory = tmp_path / "clusters" / "killed-run"
    rec = record.Record.create(directory, owner=owner.pid)
    child = rec.spawn("sleeper", ["sleep", "300"], stop_timeout=2)
    assert record.sweep(tmp_path / "clusters") == []  # the owner still runs

    owner.kill()
    owner.wait()
    assert record.sweep(tmp_path / "clusters") == [directory]
    assert child.poll() is not None
    assert not directory.exists()


def test_a_process_that_ignores_sigterm_is_killed_after_its_deadline(tmp_path: Path) -> None:
    rec = record.Record.create(tmp_path / "c", owner=None)
    script = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
    child = rec.spawn("stubborn", [sys.executable, "-c", script], stop_timeout=0.5)
    time.sleep(0.3)  # let it install its handler
    started = time.monotonic()
    assert record.tear_down(tmp_path / "c") == []
    assert time.monotonic() - started < 5
    assert child.returncode is not None


def test_a_recorded_pid_now_used_by_another_process_is_left_alone(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "300"])
    try:
        rec = record.Record.create(tmp_path / "c", owner=None)
        # As if our process had died and the PID been reused: same PID, another start time.
        rec.add(
            {
                "kind": "process",
                "name": "old",
                "pid": bystander.pid,
                "started": 1,
                "stop_timeout": 1,
            }
        )
        assert record.tear_down(tmp_path / "c") == []
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()

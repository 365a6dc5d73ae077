"""Servers as subprocesses pinned to a core, what /proc says about them, and their cleanup.

Every child runs in its own session (so its process group can be killed whole) and is
registered in a ``Processes`` owner, whose ``close`` stops them all, also on errors.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

from bench import client

CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((client.HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """utime + stime of the whole process (all threads), in seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()  # fields 3.. (comm may hold spaces)
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # fields 14 and 15


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) from /proc/<pid>/status, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0])
    return out


def pinned(cpu: int | None, argv: Sequence[str]) -> list[str]:
    """``argv`` under ``taskset -c cpu`` (taskset execs it: the pid stays the server's)."""
    return [*argv] if cpu is None else ["taskset", "-c", str(cpu), *argv]


@dataclass
class Server:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"{self.name} server exited with {self.process.returncode}; its log:\n"
                + self.log.read_text(errors="replace")[-4000:]
            )


class Processes:
    """Owns every child process; ``close`` stops them (SIGTERM, then SIGKILL) in any case."""

    def __init__(self) -> None:
        self.children: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def spawn(
        self, argv: Sequence[str], *, log: Path, env: Mapping[str, str], cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        with log.open("ab") as sink:
            process = subprocess.Popen(  # noqa: S603 - our own argv: taskset, python, wrk
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
            )
        self.children.append(process)
        return process

    def stop(self, process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace`` seconds; then reap it."""
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process in self.children:
            self.children.remove(process)

    def close(self) -> None:
        for process in list(reversed(self.children)):
            self.stop(process, grace=5.0)


def wait_ready(server: Server, context: ssl.SSLContext, *, timeout: float = 30.0) -> float:
    """Poll GET /healthz over TLS until it answers 200; the seconds it took."""
    started = time.perf_counter()
    deadline = started + timeout
    while time.perf_counter() < deadline:
        server.check_alive()
        try:
            if client.healthz(server.port, context):
                return time.perf_counter() - started
        except (OSError, client.HTTPError):
            pass
        time.sleep(0.005)
    server.check_alive()
    raise TimeoutError(f"{server.name} server not answering /healthz within {timeout} s")

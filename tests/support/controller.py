"""Run the real `envoy-injector controller` as a subprocess against an API server on loopback.

:func:`running_controller` starts it with a kubeconfig and a config file, waits until
``/readyz`` answers 200, yields a :class:`ControllerProcess` and always stops it (SIGTERM, then
SIGKILL). :func:`wait_for` polls a condition with a deadline and says what it last saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tests.support.envoy import free_port

T = TypeVar("T")


def write_kubeconfig(
    path: Path,
    server: str,
    *,
    token: str = "test-token",  # noqa: S107 - a loopback test server accepts any token
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> Path:
    user: dict[str, Any] = (
        {"token": token}
        if cert is None
        else {"client-certificate": str(cert), "client-key": str(key)}
    )
    cluster: dict[str, Any] = {"server": server}
    if ca is not None:
        cluster["certificate-authority"] = str(ca)
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": cluster}],
        "users": [{"name": "test", "user": user}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
        "current-context": "test",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def wait_for(what: str, probe: Callable[[], T], *, timeout: float = 30.0, every: float = 0.05) -> T:
    """Poll ``probe`` until it returns something truthy; fail naming ``what`` and the last value."""
    deadline = time.monotonic() + timeout
    last: T = probe()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s (last: {last!r})")
        time.sleep(every)
        last = probe()
    return last


@dataclass
class ControllerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return 0, ""

    def metric(self, name: str, **labels: str) -> float:
        """One sample of /metrics (0 when absent)."""
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        head = f"{name}{{{want}}}" if labels else name
        for line in self.get("/metrics")[1].splitlines():
            sample, _, value = line.rpartition(" ")
            if sample == head:
                return float(value)
        return 0.0

    def logs(self) -> list[dict[str, Any]]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def alive(self) -> bool:
        return self.process.poll() is None


@contextmanager
def running_controller(
    tmp: Path,
    kubeconfig: Path,
    config: Path,
    *,
    name: str = "controller",
    extra: Sequence[str] = (),
    ready_timeout: float = 30.0,
) -> Iterator[ControllerProcess]:
    port = free_port()
    log_path = tmp / f"{name}.log"
    argv = [
        str(Path(sys.executable).parent / "envoy-injector"), "controller",
        "--kubeconfig", str(kubeconfig), "--config", str(config),
        "--metrics-port", str(port), "--log-level", "debug",
        "--resync-seconds", "3", "--reload-seconds", "0.5", *extra,
    ]  # fmt: skip
    env = {**os.environ, "POD_NAME": name}
    env.pop("KUBERNETES_SERVICE_HOST", None)
    with log_path.open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    proc = ControllerProcess(process, port, log_path)
    try:
        wait_for(
            f"{name} ready (log: {log_path})",
            lambda: proc.get("/readyz")[0] == 200 or not proc.alive(),
            timeout=ready_timeout,
        )
        assert proc.alive(), log_path.read_text()
        yield proc
    finally:
        stop_process(process)


def stop_process(process: subprocess.Popen[bytes], grace: float = 15.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

"""The two ways tests talk to the test cluster: the pinned `kubectl` (what users see, messages
and warnings included) and an httpx client with the admin certificate (many requests, fast)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support.cluster.controlplane import ControlPlane


class KubectlError(Exception):
    def __init__(self, argv: list[str], result: subprocess.CompletedProcess[str]) -> None:
        super().__init__(f"kubectl {' '.join(argv)} exited {result.returncode}:\n{result.stderr}")
        self.result = result


@dataclass(frozen=True)
class Kubectl:
    binary: str
    kubeconfig: Path

    def __call__(
        self, *args: str, stdin: str | None = None, check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        argv = list(args)
        result = subprocess.run(
            [self.binary, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env={**os.environ, "KUBECONFIG": str(self.kubeconfig)},
        )
        if check and result.returncode != 0:
            raise KubectlError(argv, result)
        return result

    def json(self, *args: str, stdin: str | None = None) -> Any:
        return json.loads(self(*args, "-o", "json", stdin=stdin).stdout)

    def apply(self, manifest: str, *, manager: str = "e2e") -> subprocess.CompletedProcess[str]:
        """Server-side apply, as GitOps tools and `kubectl apply --server-side` do."""
        return self(
            "apply", "--server-side", f"--field-manager={manager}", "-f", "-", stdin=manifest
        )


def api_client(plane: ControlPlane, *, timeout: float = 30) -> httpx.Client:
    return httpx.Client(base_url=plane.server, verify=plane.ssl_context(), timeout=timeout)


def eventually(check: Callable[[], Any], what: str, *, timeout: float = 30) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.2)
    raise TimeoutError(f"{what} within {timeout:.0f} s (last: {last!r})")

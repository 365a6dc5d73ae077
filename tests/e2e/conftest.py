"""The injector installed on the test control plane, as a user installs it, with the webhook
process running on loopback instead of in a Pod (there is no node): tests/support/cluster/install.py
says how the API server reaches it through the shipped Service reference and caBundle. Each run
takes its own 127.x.y.z so concurrent runs never answer each other's calls.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.support import server
from tests.support.cluster import install, kube, record
from tests.support.cluster.controlplane import ControlPlane

REPO: Final = Path(__file__).resolve().parents[2]
NAMESPACE: Final = "envoy-injector"
WEBHOOK: Final = "envoy-injector"  # the MutatingWebhookConfiguration
WEBHOOK_NAME: Final = "sidecar.envoy-inject.io"
SIDECAR: Final = "envoy-sidecar"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if Path(str(item.fspath)).is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.e2e)


@dataclass
class Injector:
    kubectl: kube.Kubectl
    host: str
    tls: server.TLSFiles
    tmp: Path
    cluster: Path  # the control plane's directory (its record)

    @contextlib.contextmanager
    def webhook(
        self, *, env: dict[str, str] | None = None, args: tuple[str, ...] = ()
    ) -> Iterator[server.Server]:
        """`envoy-injector serve` on <host>:443 with the certificate the cert job issued."""
        with server.running_server(
            self.tmp, files=self.tls, host=self.host, port=443, env=env, args=args
        ) as running:
            # A killed test run leaves no webhook behind: the next run's sweep stops it.
            record.Record(self.cluster).adopt("webhook", running.process.pid, stop_timeout=5)
            yield running


def _loopback_address() -> str:
    try:
        return install.loopback_address()
    except PermissionError:
        message = "binding port 443 on loopback needs root (or CAP_NET_BIND_SERVICE)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def pod(name: str, **metadata: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, **metadata},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "hashicorp/http-echo:1.0",
                    "ports": [{"containerPort": 8080}],
                }
            ]
        },
    }


def containers(obj: dict[str, Any]) -> list[str]:
    spec = obj["spec"]
    return [c["name"] for c in spec.get("initContainers", []) + spec["containers"]]


@pytest.fixture(scope="session")
def installed(
    control_plane: ControlPlane, kubectl: kube.Kubectl, tmp_path_factory: pytest.TempPathFactory
) -> Injector:
    """The injector installed as tests/support/cluster/install.py describes."""
    host = _loopback_address()
    tmp = tmp_path_factory.mktemp("webhook")
    tls = install.install(kubectl, host, tmp)
    return Injector(kubectl, host, tls, tmp, control_plane.directory)


@pytest.fixture(scope="session")
def probe_namespace(installed: Injector, api: Any) -> str:
    kubectl = installed.kubectl
    kubectl("create", "namespace", "e2e-probe")
    kubectl("label", "namespace", "e2e-probe", "envoy-inject=enabled")
    kube.eventually(
        lambda: api.get("/api/v1/namespaces/e2e-probe/serviceaccounts/default").status_code == 200,
        "ServiceAccount e2e-probe/default",
    )
    return "e2e-probe"


def wait_until_called(injector: Injector, namespace: str) -> None:
    """The API server picks up the caBundle and a new webhook process asynchronously: wait until
    a server-side dry run comes back injected."""

    def injected() -> bool:
        result = injector.kubectl(
            "-n", namespace, "create", "--dry-run=server", "-o", "json", "-f", "-",
            stdin=yaml.safe_dump(pod("probe")), check=False,
        )  # fmt: skip
        return result.returncode == 0 and SIDECAR in containers(yaml.safe_load(result.stdout))

    kube.eventually(injected, "the API server calling the webhook")


@pytest.fixture
def webhook(installed: Injector, probe_namespace: str) -> Iterator[server.Server]:
    with installed.webhook() as running:
        wait_until_called(installed, probe_namespace)
        yield running

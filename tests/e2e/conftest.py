"""The injector installed on the test control plane, as a user installs it, with the webhook
process running on loopback instead of in a Pod (there is no node).

How the API server reaches the webhook: through the shipped Service reference, unchanged. The
MutatingWebhookConfiguration is applied as shipped (`service: envoy-injector/envoy-injector`,
port 443, path /mutate) and only the cert job touches it (caBundle). The one substitution is the
Service itself: the shipped ClusterIP Service needs kube-proxy and a Pod to lead anywhere, so it is
replaced by an ExternalName Service naming a loopback address of this run. kube-apiserver then
dials `<that address>:443` and, as for any Service reference, verifies the webhook's certificate
for `envoy-injector.envoy-injector.svc` against the caBundle: the names the cert job issued and
the CA it wrote are exactly what a real cluster checks. (`clientConfig.url` would have bypassed
both the Service form and that name check.) Each run takes its own 127.x.y.z so concurrent runs
never answer each other's calls.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.support import server
from tests.support.cluster import kube, record
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
    """A 127.x.y.z of this run on which port 443 is free (all of 127/8 is loopback on Linux)."""
    rng = random.Random(os.getpid())  # noqa: S311 - spreads runs apart, no secret
    for _ in range(50):
        host = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        with socket.socket() as sock:
            try:
                sock.bind((host, 443))
            except PermissionError:
                message = "binding port 443 on loopback needs root (or CAP_NET_BIND_SERVICE)"
                if os.environ.get("CI"):
                    pytest.fail(message)
                pytest.skip(message)
            except OSError:
                continue
            return host
    raise RuntimeError("no free loopback address for port 443")


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
    """`kubectl apply --server-side -k manifests/injector` as shipped, then the cert job as the
    shipped Job runs it (same arguments), then the ExternalName Service."""
    built = kubectl("kustomize", str(REPO / "manifests" / "injector")).stdout
    kubectl.apply(built)
    job = next(doc for doc in yaml.safe_load_all(built) if doc and doc["kind"] == "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    env = {**os.environ, "KUBECONFIG": str(kubectl.kubeconfig)}
    subprocess.run([sys.executable, "-m", "webhook", *args], env=env, check=True, timeout=60)

    host = _loopback_address()
    kubectl("-n", NAMESPACE, "delete", "service", "envoy-injector")
    external = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "envoy-injector", "namespace": NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": host},
    }
    kubectl.apply(yaml.safe_dump(external))

    secret = kubectl.json("-n", NAMESPACE, "get", "secret", "envoy-injector-tls")
    tmp = tmp_path_factory.mktemp("webhook")
    tls = server.TLSFiles(tmp / "ca.crt", tmp / "tls.crt", tmp / "tls.key")
    for path, key in ((tls.ca, "ca.crt"), (tls.cert, "tls.crt"), (tls.key, "tls.key")):
        path.write_bytes(base64.b64decode(secret["data"][key]))
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

"""The injector installed on a test control plane as a user installs it, with the webhook process
on a loopback address instead of in a Pod (there is no node). Used by the e2e suite's `installed`
fixture and by the engines benchmark (bench/engines.py).

How the API server reaches the webhook: through the shipped Service reference, unchanged, except
that the shipped ClusterIP Service (which needs kube-proxy and a Pod to lead anywhere) is replaced
by an ExternalName Service naming the loopback address. kube-apiserver then dials
`<that address>:443` and verifies the webhook's certificate for `envoy-injector.envoy-injector.svc`
against the caBundle the cert job wrote, as a real cluster does.
"""

from __future__ import annotations

import base64
import os
import random
import socket
import subprocess
import sys
from pathlib import Path
from typing import Final

import yaml

from tests.support import server
from tests.support.cluster import kube

REPO: Final = Path(__file__).resolve().parents[3]
NAMESPACE: Final = "envoy-injector"


def loopback_address() -> str:
    """A 127.x.y.z of this process on which port 443 is free (all of 127/8 is loopback on Linux).

    Raises PermissionError when binding port 443 needs privileges this process lacks.
    """
    rng = random.Random(os.getpid())  # noqa: S311 - spreads runs apart, no secret
    for _ in range(50):
        host = f"127.{rng.randint(1, 254)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}"
        with socket.socket() as sock:
            try:
                sock.bind((host, 443))
            except PermissionError:
                raise
            except OSError:
                continue
            return host
    raise RuntimeError("no free loopback address for port 443")


def install(kubectl: kube.Kubectl, host: str, tmp: Path) -> server.TLSFiles:
    """`kubectl apply --server-side -k manifests/injector` as shipped, then the cert job as the
    shipped Job runs it (same arguments), then the ExternalName Service to ``host``; returns the
    serving certificate the job issued, written under ``tmp``."""
    built = kubectl("kustomize", str(REPO / "manifests" / "injector")).stdout
    kubectl.apply(built)
    job = next(doc for doc in yaml.safe_load_all(built) if doc and doc["kind"] == "Job")
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    env = {**os.environ, "KUBECONFIG": str(kubectl.kubeconfig)}
    subprocess.run([sys.executable, "-m", "webhook", *args], env=env, check=True, timeout=60)

    kubectl("-n", NAMESPACE, "delete", "service", "envoy-injector")
    external = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "envoy-injector", "namespace": NAMESPACE},
        "spec": {"type": "ExternalName", "externalName": host},
    }
    kubectl.apply(yaml.safe_dump(external))

    secret = kubectl.json("-n", NAMESPACE, "get", "secret", "envoy-injector-tls")
    tls = server.TLSFiles(tmp / "ca.crt", tmp / "tls.crt", tmp / "tls.key")
    for path, key in ((tls.ca, "ca.crt"), (tls.cert, "tls.crt"), (tls.key, "tls.key")):
        path.write_bytes(base64.b64decode(secret["data"][key]))
    return tls

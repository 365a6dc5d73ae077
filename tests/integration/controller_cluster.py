"""A real etcd + kube-apiserver on loopback for the controller's tests (interim).

Interim: the shared fixture of tests/support/cluster/ (another branch) replaces this module
once it is on main; the tests only use :class:`Cluster`'s small surface (``admin``, ``token``,
``kubeconfig``). The binaries: kube-apiserver from ``scripts/kube-binaries`` (the versioned
cache), etcd from PATH (Debian's package). Without them the tests are skipped, except under
CI, where a missing binary fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from kubeapi import client as kubeapi, credentials, errors as kerrors
from tests.support.controller import stop_process, write_kubeconfig
from tests.support.envoy import free_port

REPO = Path(__file__).resolve().parents[2]
VERSION = "v1.36.3"


def _binaries() -> tuple[Path, Path] | None:
    cache = Path(
        os.environ.get("ENVOY_INJECTOR_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "envoy-injector"
    )
    apiserver = cache / "kube" / VERSION / "bin" / "kube-apiserver"
    if not apiserver.is_file() and os.environ.get("CI"):
        subprocess.run([str(REPO / "scripts" / "kube-binaries"), "kube-apiserver"], check=True)
    etcd = shutil.which("etcd")
    if not apiserver.is_file() or etcd is None:
        return None
    return apiserver, Path(etcd)


@dataclass
class Cluster:
    server: str
    ca: Path
    directory: Path
    admin: kubeapi.Client

    def kubeconfig(self, name: str, token: str) -> Path:
        return write_kubeconfig(self.directory / f"{name}.kubeconfig", self.server, token=token,
                                ca=self.ca)  # fmt: skip

    def token(self, namespace: str, account: str) -> str:
        url = kubeapi.path("v1", "serviceaccounts", namespace=namespace, name=account)
        answer = self.admin.create(url + "/token", {"spec": {"expirationSeconds": 7200}})
        return str(answer["status"]["token"])


def _wait_ready(api: kubeapi.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            api.get("/api/v1/namespaces/default")
        except kerrors.ApiError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(log.read_text()[-3000:]) from None
            time.sleep(0.2)
        else:
            return


def _run(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)


@contextmanager
def running_cluster(directory: Path) -> Iterator[Cluster]:
    found = _binaries()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("kube-apiserver or etcd missing under CI")
        pytest.skip("kube-apiserver (scripts/kube-binaries) or etcd (apt: etcd-server) missing")
    apiserver, etcd = found
    keys = directory / "keys"
    keys.mkdir(parents=True)
    openssl = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    subprocess.run([*openssl, "-keyout", keys / "serving.key", "-out", keys / "serving.crt",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)  # fmt: skip
    subprocess.run(["openssl", "genrsa", "-out", keys / "sa.key", "2048"], check=True,
                   capture_output=True)  # fmt: skip
    (keys / "tokens.csv").write_text("admin-token,admin,admin,system:masters\n")
    client, peer, port = free_port(), free_port(), free_port()
    etcd_proc = _run(
        [str(etcd), "--data-dir", str(directory / "etcd"),
         "--listen-client-urls", f"http://127.0.0.1:{client}",
         "--advertise-client-urls", f"http://127.0.0.1:{client}",
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
        directory / "etcd.log",
    )  # fmt: skip
    api_proc = _run(
        [str(apiserver), "--etcd-servers", f"http://127.0.0.1:{client}",
         "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
         "--secure-port", str(port), "--cert-dir", str(directory / "certs"),
         "--tls-cert-file", str(keys / "serving.crt"),
         "--tls-private-key-file", str(keys / "serving.key"),
         "--service-account-issuer", "https://kubernetes.default.svc",
         "--service-account-key-file", str(keys / "sa.key"),
         "--service-account-signing-key-file", str(keys / "sa.key"),
         "--token-auth-file", str(keys / "tokens.csv"),
         "--authorization-mode", "RBAC", "--service-cluster-ip-range", "10.96.0.0/24"],
        directory / "apiserver.log",
    )  # fmt: skip
    try:
        server = f"https://127.0.0.1:{port}"
        admin_config = write_kubeconfig(directory / "admin.kubeconfig", server,
                                        token="admin-token", ca=keys / "serving.crt")  # fmt: skip
        admin = kubeapi.Client(credentials.from_kubeconfig(str(admin_config)))
        _wait_ready(admin, api_proc, directory / "apiserver.log")
        yield Cluster(server, keys / "serving.crt", directory, admin)
    finally:
        stop_process(api_proc)
        stop_process(etcd_proc)

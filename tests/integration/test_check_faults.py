"""`envoy-injector check` when it cannot check: exit status 2 and the reason, never a traceback.

Faults on demand come from the loopback fake API server (it answers 403 the way RBAC words it);
what check finds on a real cluster is tested against kube-apiserver in tests/e2e.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

from tests.integration.fake_apiserver import FakeApiServer
from tests.integration.test_cert_job import kubeconfig, webhook_configuration


def check(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", "check", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_no_access_exits_2_naming_what_was_refused_and_the_role_to_bind(tmp_path: Path) -> None:
    fake = FakeApiServer()
    fake.add_webhook_config(webhook_configuration())
    fake.forbid("get", "mutatingwebhookconfigurations")
    with fake.serve():
        config = kubeconfig(tmp_path, fake.url)
        table = check("--kubeconfig", config)
        as_json = check("--kubeconfig", config, "-o", "json")
    assert table.returncode == 2
    assert table.stdout == ""
    assert table.stderr.startswith("envoy-injector check: could not check: no access: ")
    assert "mutatingwebhookconfigurations" in table.stderr
    assert "bind the ClusterRole envoy-injector-viewer" in table.stderr
    assert "Traceback" not in table.stderr
    assert as_json.returncode == 2
    document = json.loads(as_json.stdout)
    assert document["status"] == "error"
    assert document["error"].startswith("no access: ")


def test_no_cluster_exits_2_with_the_address_it_tried(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    result = check("--kubeconfig", kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))
    assert result.returncode == 2
    assert result.stderr.startswith(
        f"envoy-injector check: could not check: no cluster: cannot reach the Kubernetes API at "
        f"http://127.0.0.1:{port}: "
    )


def test_a_missing_kubeconfig_exits_2(tmp_path: Path) -> None:
    result = check("--kubeconfig", str(tmp_path / "absent"))
    assert result.returncode == 2
    assert "could not check: cannot use the kubeconfig" in result.stderr


def test_an_unknown_target_kind_exits_2_listing_the_accepted_ones(tmp_path: Path) -> None:
    fake = FakeApiServer()
    with fake.serve():
        result = check("--kubeconfig", kubeconfig(tmp_path, fake.url), "svc/web")
    assert result.returncode == 2
    assert "target 'svc/web': kind 'svc' is not one of " in result.stderr
    assert "deploy, deployment, ds" in result.stderr

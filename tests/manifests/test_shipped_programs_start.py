"""Every container we ship starts its program in the environment the kubelet gives it.

The kubelet adds Docker-link variables for each Service of the namespace: Service
"envoy-injector" gives ENVOY_INJECTOR_PORT=tcp://10.96.0.10:443, which once crashed the webhook.
These tests build that environment from the shipped manifests (tests/support/service_links.py)
and run the shipped command lines, with file paths and the port moved onto this machine. The
real-node suite starts the same Pods under a real kubelet.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any, Final

import pytest

from tests.manifests import documents
from tests.manifests.documents import INJECTOR
from tests.support import server as server_support, service_links
from webhook.settings import Settings, env_name

OBJECTS: Final = documents.objects(INJECTOR)
NAMESPACE: Final = "envoy-injector"
SERVICES: Final = documents.find(OBJECTS, "Service")


def test_no_setting_can_be_set_by_a_service_link() -> None:
    for field in dataclasses.fields(Settings):
        variable = env_name(field.name)
        assert not service_links.could_be_a_service_link(variable), variable


def test_the_link_grammar_recognises_what_the_kubelet_makes() -> None:
    made = service_links.link_variables(
        {
            "metadata": {"name": "envoy-injector"},
            "spec": {"ports": [{"name": "https", "port": 443}]},
        }
    )
    assert made["ENVOY_INJECTOR_PORT"] == "tcp://10.96.0.10:443"
    assert all(service_links.could_be_a_service_link(name) for name in made)


def _shipped(kind: str, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    obj = documents.one(OBJECTS, kind, name)
    spec = documents.pod_spec(obj)
    assert spec is not None
    return spec, spec["containers"][0]


@pytest.mark.parametrize("force_links", [False, True], ids=["as-shipped", "links-enabled"])
def test_the_webhook_starts_in_its_kubelet_environment(tmp_path: Path, force_links: bool) -> None:
    spec, container = _shipped("Deployment", "envoy-injector")
    assert spec["enableServiceLinks"] is False
    env = service_links.container_environment(
        spec, container, namespace=NAMESPACE, services=SERVICES, force_service_links=force_links
    )
    if force_links:
        assert env["ENVOY_INJECTOR_PORT"].startswith("tcp://")
    files = server_support.write_tls_files(tmp_path / "tls")
    config = tmp_path / "config.yaml"
    config_map = documents.one(OBJECTS, "ConfigMap", "envoy-injector-config")
    config.write_text(config_map["data"]["config.yaml"])
    port = server_support.free_port()
    moved = {
        "/etc/envoy-injector/tls/tls.crt": str(files.cert),
        "/etc/envoy-injector/tls/tls.key": str(files.key),
        "/etc/envoy-injector/config/config.yaml": str(config),
        "8443": str(port),
    }
    args = [moved.get(arg, arg) for arg in container["args"]]
    assert set(moved.values()) <= set(args), "the shipped args no longer name these paths"
    log = tmp_path / "webhook.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "webhook", *args, "--host", "127.0.0.1"],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    running = server_support.Server(process, port, files, log)
    try:
        server_support.wait_ready(running, 20)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.parametrize(
    ("kind", "name", "no_cluster"),
    [
        ("Job", "envoy-injector-certs", "no Kubernetes credentials"),
        ("CronJob", "envoy-injector-certs-rotate", "no Kubernetes credentials"),
        ("Deployment", "envoy-injector-controller", "cannot use the kubeconfig"),
    ],
)
def test_the_cluster_clients_start_in_their_kubelet_environment(
    tmp_path: Path, kind: str, name: str, no_cluster: str
) -> None:
    spec, container = _shipped(kind, name)
    assert spec["enableServiceLinks"] is False
    env = service_links.container_environment(
        spec, container, namespace=NAMESPACE, services=SERVICES, force_service_links=True
    )
    config = tmp_path / "config.yaml"
    config_map = documents.one(OBJECTS, "ConfigMap", "envoy-injector-config")
    config.write_text(config_map["data"]["config.yaml"])
    args = [str(config) if arg.endswith("/config.yaml") else arg for arg in container["args"]]
    # No cluster here: each must get past its arguments, settings and config to the point where
    # it looks for the API server, and say that it found none.
    result = subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        env={**env, "HOME": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert no_cluster in result.stderr, result.stderr

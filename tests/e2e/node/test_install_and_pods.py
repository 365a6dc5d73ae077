"""The README's path on a real node: install as shipped, then ordinary workloads in a labelled
namespace get a sidecar that runs and serves, and opted-out workloads run without one."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import yaml

from tests.e2e.node.conftest import INJECTOR_NS, SIDECAR, deployment, names, pods
from tests.support.cluster import kube, stack

LABELLED = {"envoy-inject": "enabled"}


def create(kubectl: kube.Kubectl, namespace: str, obj: dict[str, Any]) -> None:
    kubectl("-n", namespace, "create", "-f", "-", stdin=yaml.safe_dump(obj))


def available(kubectl: kube.Kubectl, namespace: str, name: str, timeout: int = 90) -> None:
    kubectl(
        "-n", namespace, "wait", "--for=condition=Available", f"deployment/{name}",
        f"--timeout={timeout}s", timeout=timeout + 10,
    )  # fmt: skip


def test_the_shipped_install_fills_the_ca_bundle_and_the_webhook_becomes_available(
    installed: stack.Cluster,
) -> None:
    kubectl = installed.kubectl
    hook = kubectl.json("get", "mutatingwebhookconfiguration", "envoy-injector")["webhooks"][0]
    secret = kubectl.json("-n", INJECTOR_NS, "get", "secret", "envoy-injector-tls")
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == base64.b64decode(
        secret["data"]["ca.crt"]
    )
    job = kubectl.json("-n", INJECTOR_NS, "get", "job", "envoy-injector-certs")
    assert job["status"].get("succeeded") == 1
    webhook = kubectl.json("-n", INJECTOR_NS, "get", "deployment", "envoy-injector")
    assert webhook["status"].get("readyReplicas") == webhook["spec"]["replicas"] == 2


def test_a_newly_labelled_namespace_gets_its_envoy_config_map_with_no_help(
    installed: stack.Cluster, node_namespace: Callable[..., str]
) -> None:
    ns = node_namespace("cfg", **LABELLED)
    config_map_delivered(installed.kubectl, ns)


@contextmanager
def port_forward(kubectl: kube.Kubectl, namespace: str, pod: str, port: int) -> Iterator[int]:
    """`kubectl port-forward` to a port that listens on the Pod's loopback only."""
    process = subprocess.Popen(
        [kubectl.binary, "-n", namespace, "port-forward", f"pod/{pod}", f":{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KUBECONFIG": str(kubectl.kubeconfig)},
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"127\.0\.0\.1:(\d+) ->", line)
        assert match, (line, process.stderr.read() if process.stderr else "")
        yield int(match.group(1))
    finally:
        process.terminate()
        process.communicate(timeout=10)


def test_an_unchanged_deployment_is_injected_and_answers_through_envoy(
    installed: stack.Cluster, node_namespace: Callable[..., str], figures: list[str]
) -> None:
    kubectl = installed.kubectl
    ns = node_namespace("web", **LABELLED)
    config_map_delivered(kubectl, ns)
    started = time.monotonic()
    create(kubectl, ns, deployment("web", text="hello from web"))
    available(kubectl, ns, "web")
    figures.append(
        f"node: injected Deployment created to Available in {time.monotonic() - started:.1f} s"
    )
    (pod,) = pods(kubectl, ns, "app=web")
    assert_serves_through_envoy(kubectl, ns, pod, "hello from web")


def config_map_delivered(kubectl: kube.Kubectl, namespace: str) -> None:
    """Wait for the controller to deliver the namespace's Envoy ConfigMap."""
    kube.eventually(
        lambda: (
            kubectl("-n", namespace, "get", "configmap", "envoy-config", check=False).returncode
            == 0
        ),
        f"ConfigMap {namespace}/envoy-config delivered by the installed controller",
        timeout=60,
    )


def assert_serves_through_envoy(
    kubectl: kube.Kubectl, namespace: str, pod: dict[str, Any], text: str
) -> None:
    """The Pod has the sidecar, answers with ``text`` through Envoy on podIP:10000, and its
    Envoy's node id (from the downward API) is the Pod's name."""
    assert SIDECAR in names(pod)[0] + names(pod)[1]
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:10000/", timeout=10) as answer:
        assert answer.read().decode().strip() == text
        assert answer.headers["server"] == "envoy"
        assert answer.headers["x-app-name"] == "http-echo"
    with (
        port_forward(kubectl, namespace, pod["metadata"]["name"], 9901) as local,
        urllib.request.urlopen(f"http://127.0.0.1:{local}/server_info", timeout=10) as info,
    ):
        server_info = json.load(info)
    assert server_info["node"]["id"] == pod["metadata"]["name"]


def _log_times(
    kubectl: kube.Kubectl, ns: str, pod: str, container: str
) -> list[tuple[datetime, str]]:
    text = kubectl("-n", ns, "logs", pod, "-c", container, "--timestamps").stdout
    lines = []
    for line in text.splitlines():
        stamp, _, message = line.partition(" ")
        lines.append((datetime.fromisoformat(stamp.replace("Z", "+00:00")), message))
    return lines


def test_native_sidecar_with_hold_application_starts_envoy_before_the_app(
    installed: stack.Cluster, node_namespace: Callable[..., str]
) -> None:
    kubectl = installed.kubectl
    ns = node_namespace("native", **LABELLED)
    annotations = {
        "envoy-inject.io/native-sidecar": "true",
        "envoy-inject.io/hold-application": "true",
    }
    config_map_delivered(kubectl, ns)
    create(kubectl, ns, deployment("held", text="held", annotations=annotations))
    available(kubectl, ns, "held")
    (pod,) = pods(kubectl, ns, "app=held")
    init, regular = names(pod)
    assert init == [SIDECAR]
    assert regular == ["app"]
    name = pod["metadata"]["name"]
    envoy = _log_times(kubectl, ns, name, SIDECAR)
    app = _log_times(kubectl, ns, name, "app")
    listening = next(at for at, message in envoy if "starting main dispatch loop" in message)
    assert app, "the app logged nothing"
    assert listening < app[0][0], (listening, app[0])


def test_a_job_with_the_native_sidecar_runs_to_complete(
    installed: stack.Cluster, node_namespace: Callable[..., str]
) -> None:
    kubectl = installed.kubectl
    ns = node_namespace("job", **LABELLED)
    config_map_delivered(kubectl, ns)
    # A worker that exits 0: the Envoy image's binary asked for its version.
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "once"},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "worker",
                            "image": "envoyproxy/envoy:v1.40.0",
                            "command": ["/usr/local/bin/envoy", "--version"],
                        }
                    ],
                }
            },
        },
    }
    create(kubectl, ns, job)
    kubectl("-n", ns, "wait", "--for=condition=Complete", "job/once", "--timeout=90s", timeout=100)
    (pod,) = pods(kubectl, ns, "batch.kubernetes.io/job-name=once")
    assert names(pod)[0] == [SIDECAR]


def test_opted_out_pods_and_unlabelled_namespaces_run_without_a_sidecar(
    installed: stack.Cluster, node_namespace: Callable[..., str]
) -> None:
    kubectl = installed.kubectl
    labelled = node_namespace("optout", **LABELLED)
    plain = node_namespace("plain")
    create(kubectl, labelled, deployment("out", text="out", labels={"envoy-inject": "disabled"}))
    create(kubectl, plain, deployment("plain", text="plain"))
    for ns, name in ((labelled, "out"), (plain, "plain")):
        available(kubectl, ns, name)
        (pod,) = pods(kubectl, ns, f"app={name}")
        assert names(pod) == ([], ["app"])
        with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/", timeout=10) as answer:
            assert answer.read().decode().strip() == name

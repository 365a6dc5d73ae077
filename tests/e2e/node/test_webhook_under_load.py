"""The webhook as installed, under the load of Pod creations: a rolling restart and a certificate
renewal refuse nothing, and with no webhook Pod left `failurePolicy: Fail` refuses only the
labelled namespaces. Load Pods stay Pending (a nodeSelector no node matches): only admission is
measured, and the 2-core node keeps its CPU for the webhook."""

from __future__ import annotations

import base64
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import yaml
from cryptography import x509

from tests.e2e.node.conftest import APP_IMAGE, INJECTOR_NS, SIDECAR, UNMATCHED
from tests.support.cluster import kube, stack

CLIENTS = 8
LABELLED = {"envoy-inject": "enabled"}


def pending_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "nodeSelector": UNMATCHED,
            "containers": [{"name": "app", "image": APP_IMAGE, "args": ["-text=load"]}],
        },
    }


@dataclass
class Tally:
    created: int = 0
    injected: int = 0
    refused: list[str] = field(default_factory=list)


class Load:
    """CLIENTS threads, one connection each, creating Pods from `count` names, each client
    waiting `pace` seconds between its creations, until the names run out or `stop()`."""

    def __init__(self, cluster: stack.Cluster, namespace: str, *, count: int, pace: float) -> None:
        self.todo: queue.SimpleQueue[str] = queue.SimpleQueue()
        for index in range(count):
            self.todo.put(f"load-{index:04d}")
        self.cluster, self.namespace, self.pace = cluster, namespace, pace
        self.tally = Tally()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = [threading.Thread(target=self._client) for _ in range(CLIENTS)]
        self.started = time.monotonic()

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(timeout=120)

    def _client(self) -> None:
        path = f"/api/v1/namespaces/{self.namespace}/pods"
        with kube.api_client(self.cluster.plane) as api:
            while not self.stopping.is_set():
                try:
                    name = self.todo.get_nowait()
                except queue.Empty:
                    return
                response = api.post(path, json=pending_pod(name))
                at = time.monotonic() - self.started
                with self.lock:
                    if response.status_code == 201:
                        self.tally.created += 1
                        spec = response.json()["spec"]
                        every = spec.get("initContainers", []) + spec["containers"]
                        self.tally.injected += any(c["name"] == SIDECAR for c in every)
                    else:
                        self.tally.refused.append(
                            f"{name} at {at:.1f} s: {response.status_code} {response.text[:300]}"
                        )
                self.stopping.wait(self.pace)


def webhook_pods(kubectl: kube.Kubectl, *, terminating: bool = False) -> list[dict[str, Any]]:
    """The webhook's Pods; those being deleted (still serving until they exit) on request."""
    items: list[dict[str, Any]] = kubectl.json(
        "-n", INJECTOR_NS, "get", "pods", "-l", "app.kubernetes.io/component=webhook"
    )["items"]
    return [pod for pod in items if terminating or not pod["metadata"].get("deletionTimestamp")]


def test_a_rolling_restart_under_load_refuses_no_pod_and_injects_all(
    installed: stack.Cluster, node_namespace: Callable[..., str], figures: list[str]
) -> None:
    """200 creations spread over about 40 s: the restart, the new replicas' start and the old
    ones' drain after SIGTERM all happen under load."""
    kubectl = installed.kubectl
    ns = node_namespace("rollout", **LABELLED)
    before = {pod["metadata"]["name"] for pod in webhook_pods(kubectl)}
    with Load(installed, ns, count=200, pace=1.5) as load:
        time.sleep(1)
        kubectl("-n", INJECTOR_NS, "rollout", "restart", "deployment/envoy-injector")
        kubectl(
            "-n", INJECTOR_NS, "rollout", "status", "deployment/envoy-injector",
            "--timeout=240s", timeout=250,
        )  # fmt: skip
        rolled = time.monotonic() - load.started
        kube.eventually(
            lambda: (
                not before
                & {p["metadata"]["name"] for p in webhook_pods(kubectl, terminating=True)}
            ),
            "the old webhook replicas gone",
            timeout=120,
        )
        drained = time.monotonic() - load.started
        for thread in load.threads:
            thread.join(timeout=120)
    tally = load.tally
    figures.append(
        f"node: rollout restart under load: {tally.created} created, {len(tally.refused)} "
        f"refused, {tally.injected} injected ({CLIENTS} clients, "
        f"{time.monotonic() - load.started:.0f} s); rollout done at {rolled:.1f} s, old replicas "
        f"gone at {drained:.1f} s"
    )
    assert tally.refused == [], "\n".join(tally.refused)
    assert tally.created == tally.injected == 200


def serial_served(ip: str, ca: bytes) -> int:
    """The serial number of the certificate a webhook Pod serves on 8443."""
    context = ssl.create_default_context(cadata=ca.decode())
    context.check_hostname = False
    with (
        socket.create_connection((ip, 8443), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="envoy-injector.envoy-injector.svc") as tls,
    ):
        der = tls.getpeercert(binary_form=True)
    assert der is not None
    return x509.load_der_x509_certificate(der).serial_number


def secret_serial(kubectl: kube.Kubectl) -> tuple[int, bytes]:
    data = kubectl.json("-n", INJECTOR_NS, "get", "secret", "envoy-injector-tls")["data"]
    cert = x509.load_pem_x509_certificate(base64.b64decode(data["tls.crt"]))
    return cert.serial_number, base64.b64decode(data["ca.crt"])


def webhook_configuration_version(kubectl: kube.Kubectl) -> str:
    config = kubectl.json("get", "mutatingwebhookconfiguration", "envoy-injector")
    return str(config["metadata"]["resourceVersion"])


def renewal_job(kubectl: kube.Kubectl) -> dict[str, Any]:
    """A Job from the shipped CronJob, with a renew-before longer than what is left (365 d), so
    the certificate is due now; the new one lives 400 d."""
    cron = kubectl.json("-n", INJECTOR_NS, "get", "cronjob", "envoy-injector-certs-rotate")
    template = cron["spec"]["jobTemplate"]
    container = template["spec"]["template"]["spec"]["containers"][0]
    container["args"] = [*container["args"], "--cert-ttl", "400d", "--renew-before", "399d"]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "renew-now", "namespace": INJECTOR_NS},
        "spec": template["spec"],
    }


def test_a_certificate_renewal_under_load_refuses_nothing_and_every_replica_serves_it(
    installed: stack.Cluster, node_namespace: Callable[..., str], figures: list[str]
) -> None:
    kubectl = installed.kubectl
    ns = node_namespace("renew", **LABELLED)
    old_serial, ca = secret_serial(kubectl)
    config_version = webhook_configuration_version(kubectl)
    replicas = webhook_pods(kubectl)
    restarts = {
        p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"] for p in replicas
    }
    assert {serial_served(p["status"]["podIP"], ca) for p in replicas} == {old_serial}
    job = yaml.safe_dump(renewal_job(kubectl))
    # Creations go on, paced, from before the Job until every replica serves the new certificate.
    with Load(installed, ns, count=1000, pace=2.0) as load:
        time.sleep(2)
        started = time.monotonic()
        kubectl("create", "-f", "-", stdin=job)
        kubectl(
            "-n", INJECTOR_NS, "wait", "--for=condition=Complete", "job/renew-now",
            "--timeout=120s", timeout=130,
        )  # fmt: skip
        new_serial, ca = secret_serial(kubectl)
        assert new_serial != old_serial, "the renewal Job did not renew"

        def all_serve_new() -> bool:
            return {serial_served(p["status"]["podIP"], ca) for p in replicas} == {new_serial}

        kube.eventually(all_serve_new, "every replica serving the renewed certificate", timeout=150)
        switched = time.monotonic() - started
        time.sleep(3)
    tally = load.tally
    rewritten = webhook_configuration_version(kubectl) != config_version
    if tally.refused:  # what the webhook said around the refusals, for the report below
        for pod in replicas:
            logs = kubectl("-n", INJECTOR_NS, "logs", pod["metadata"]["name"], check=False)
            lines = [line for line in logs.stdout.splitlines() if '"admission' not in line]
            tally.refused.append(f"--- {pod['metadata']['name']} log:\n" + "\n".join(lines[-30:]))
    figures.append(
        f"node: certificate renewal under load: both replicas served the new serial "
        f"{switched:.1f} s after the Job started; {tally.created} created ({CLIENTS} clients, "
        f"{time.monotonic() - load.started:.0f} s), "
        f"{len(tally.refused)} refused, {tally.injected} injected; the webhook configuration "
        f"was {'rewritten' if rewritten else 'left alone'} by the renewal"
    )
    assert tally.refused == [], "\n".join(tally.refused)
    assert tally.created == tally.injected > 0
    now = webhook_pods(kubectl)
    assert {
        p["metadata"]["name"]: p["status"]["containerStatuses"][0]["restartCount"] for p in now
    } == restarts


def test_with_the_webhook_down_labelled_namespaces_are_refused_and_others_work(
    installed: stack.Cluster, node_namespace: Callable[..., str], node_api: httpx.Client
) -> None:
    kubectl = installed.kubectl
    labelled = node_namespace("down", **LABELLED)
    plain = node_namespace("up")
    kubectl("-n", INJECTOR_NS, "scale", "deployment/envoy-injector", "--replicas=0")
    try:
        kube.eventually(
            lambda: not webhook_pods(kubectl, terminating=True), "no webhook Pod left", timeout=90
        )
        refused = node_api.post(f"/api/v1/namespaces/{labelled}/pods", json=pending_pod("refused"))
        assert refused.status_code == 500, refused.text
        message = refused.json()["message"]
        assert 'failed calling webhook "sidecar.envoy-inject.io"' in message, message
        allowed = node_api.post(f"/api/v1/namespaces/{plain}/pods", json=pending_pod("allowed"))
        assert allowed.status_code == 201, allowed.text
    finally:
        kubectl("-n", INJECTOR_NS, "scale", "deployment/envoy-injector", "--replicas=2")
        kubectl(
            "-n", INJECTOR_NS, "wait", "--for=condition=Available", "deployment/envoy-injector",
            "--timeout=120s", timeout=130,
        )  # fmt: skip

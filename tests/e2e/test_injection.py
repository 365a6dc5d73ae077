"""What a user sees through kubectl once the injector is installed: sidecars where asked for,
none elsewhere, refusals and warnings printed by the client."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import yaml

from tests.e2e.conftest import (
    NAMESPACE,
    REPO,
    SIDECAR,
    WEBHOOK,
    WEBHOOK_NAME,
    Injector,
    containers,
    pod,
)
from tests.support import server
from tests.support.cluster import kube

STATUS = "envoy-inject.io/status"


def create(kubectl: kube.Kubectl, namespace: str, obj: dict[str, object]) -> kube.Kubectl:
    kubectl("-n", namespace, "create", "-f", "-", stdin=yaml.safe_dump(obj))
    return kubectl


def webhook_calls(running: server.Server) -> list[dict[str, object]]:
    lines = running.log_text().splitlines()
    return [e for e in map(_json, lines) if e and str(e.get("message", "")).startswith("admission")]


def _json(line: str) -> dict[str, object] | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def test_the_cert_job_writes_its_ca_into_the_shipped_webhook_configuration(
    installed: Injector,
) -> None:
    kubectl = installed.kubectl
    live = kubectl.json("get", "mutatingwebhookconfiguration", WEBHOOK)
    built = kubectl("kustomize", str(REPO / "manifests" / "injector")).stdout
    shipped = next(
        d for d in yaml.safe_load_all(built) if d["kind"] == "MutatingWebhookConfiguration"
    )
    (hook,) = live["webhooks"]
    assert hook["name"] == WEBHOOK_NAME
    assert hook["clientConfig"]["service"] == {**shipped["webhooks"][0]["clientConfig"]["service"]}
    secret = kubectl.json("-n", NAMESPACE, "get", "secret", "envoy-injector-tls")
    assert base64.b64decode(hook["clientConfig"]["caBundle"]) == base64.b64decode(
        secret["data"]["ca.crt"]
    )


def test_a_pod_in_a_labelled_namespace_gets_the_sidecar(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str]
) -> None:
    ns = namespace("shop", **{"envoy-inject": "enabled"})
    kubectl = create(installed.kubectl, ns, pod("web"))
    live = kubectl.json("-n", ns, "get", "pod", "web")
    assert containers(live) == ["app", SIDECAR]
    assert STATUS in live["metadata"]["annotations"]
    # Once: the API server's ServiceAccount admission changes every new container after us,
    # which with reinvocationPolicy IfNeeded would cost a second, no-op call per Pod.
    calls = [
        c for c in webhook_calls(webhook) if c.get("pod") == "web" and c.get("namespace") == ns
    ]
    assert [c.get("outcome") for c in calls] == ["injected"]


def test_an_opted_out_pod_and_an_unlabelled_namespace_are_not_even_sent_to_the_webhook(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str]
) -> None:
    labelled = namespace("shop", **{"envoy-inject": "enabled"})
    plain = namespace("plain")
    kubectl = installed.kubectl
    create(kubectl, labelled, pod("opted-out", labels={"envoy-inject": "disabled"}))
    create(kubectl, plain, pod("web"))
    assert containers(kubectl.json("-n", labelled, "get", "pod", "opted-out")) == ["app"]
    assert containers(kubectl.json("-n", plain, "get", "pod", "web")) == ["app"]
    called = {(c.get("namespace"), c.get("pod")) for c in webhook_calls(webhook)}
    assert (labelled, "opted-out") not in called
    assert (plain, "web") not in called


def test_a_bad_annotation_is_refused_and_kubectl_prints_why(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str]
) -> None:
    ns = namespace("shop", **{"envoy-inject": "enabled"})
    bad = pod("web", annotations={"envoy-inject.io/proxy-port": "abc"})
    result = installed.kubectl(
        "-n", ns, "create", "-f", "-", stdin=yaml.safe_dump(bad), check=False
    )
    assert result.returncode != 0
    assert f'admission webhook "{WEBHOOK_NAME}" denied the request' in result.stderr
    assert "envoy-inject.io/proxy-port" in result.stderr
    assert "'abc'" in result.stderr or '"abc"' in result.stderr
    missing = installed.kubectl("-n", ns, "get", "pod", "web", check=False)
    assert "NotFound" in missing.stderr


def test_an_ignored_override_comes_back_as_a_warning_kubectl_prints(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str]
) -> None:
    ns = namespace("shop", **{"envoy-inject": "enabled"})
    # A port override without its own config-map is ignored, with a warning (README, Annotations).
    ignored = pod("web", annotations={"envoy-inject.io/proxy-port": "15001"})
    result = installed.kubectl("-n", ns, "create", "-f", "-", stdin=yaml.safe_dump(ignored))
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning:")]
    assert any("envoy-inject.io/proxy-port" in line for line in warnings), result.stderr
    assert containers(installed.kubectl.json("-n", ns, "get", "pod", "web")) == ["app", SIDECAR]


def test_a_server_side_dry_run_shows_the_sidecar_and_stores_nothing(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str]
) -> None:
    ns = namespace("shop", **{"envoy-inject": "enabled"})
    shown = installed.kubectl.json("-n", ns, "create", "--dry-run=server", "-f", "-",
                                   stdin=yaml.safe_dump(pod("web")))  # fmt: skip
    assert containers(shown) == ["app", SIDECAR]
    assert "NotFound" in installed.kubectl("-n", ns, "get", "pod", "web", check=False).stderr


def test_a_deployment_gets_injected_pods_from_the_controller_manager(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str]
) -> None:
    ns = namespace("shop", **{"envoy-inject": "enabled"})
    kubectl = installed.kubectl
    kubectl("-n", ns, "create", "deployment", "web", "--image=hashicorp/http-echo:1.0")

    def pods() -> list[dict[str, object]]:
        items: list[dict[str, object]] = kubectl.json("-n", ns, "get", "pods")["items"]
        return items

    (created,) = kube.eventually(pods, "the ReplicaSet's Pod")
    assert containers(created) == ["http-echo", SIDECAR]
    sidecar = next(c for c in created["spec"]["containers"] if c["name"] == SIDECAR)
    argv = sidecar.get("command", []) + sidecar.get("args", [])
    assert argv[argv.index("--service-cluster") + 1] == "web"  # the Deployment's name

"""`envoy-injector check` against the real kube-apiserver with the injector installed as shipped:
the cases issue 9 lists, read back from what check prints (JSON) and its exit status.

The test control plane has no nodes: the injector's Deployment never becomes available and its
Service is an ExternalName (see conftest), so every run here reports those two problems and
exits 1; the assertions look at the findings each case is about. Exit status 0 is covered by the
pure diagnosis tests (tests/unit/test_diagnosis.py).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import yaml

from certs import issue
from tests.e2e.conftest import NAMESPACE, REPO, WEBHOOK, Injector, pod
from tests.support import server
from tests.support.cluster import kube

ENABLED = {"envoy-inject": "enabled"}
ENVOY_CONFIG = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "envoy-config"},
    "data": {"envoy.yaml": "static_resources: {}\n"},
}


def check(
    injector: Injector, *args: str, kubeconfig: str | None = None
) -> tuple[int, dict[str, Any]]:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "webhook",
            "check",
            "-o",
            "json",
            "--kubeconfig",
            kubeconfig or str(injector.kubectl.kubeconfig),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def findings(report: dict[str, Any], check_name: str) -> list[tuple[str, str, str]]:
    return [
        (f["severity"], f["subject"], f["message"])
        for f in report["findings"]
        if f["check"] == check_name
    ]


def target(report: dict[str, Any], kind: str, name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [
        t for t in report["targets"] if t["kind"] == kind and t["name"] == name
    ]
    assert len(found) == 1, found
    return found[0]


def create(injector: Injector, namespace: str, obj: dict[str, Any]) -> None:
    injector.kubectl("-n", namespace, "create", "-f", "-", stdin=yaml.safe_dump(obj))


def test_labelled_unlabelled_and_opted_out_are_explained(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str], figures: list[str]
) -> None:
    shop, plain = namespace("shop", **ENABLED), namespace("plain")
    create(installed, shop, ENVOY_CONFIG)
    create(installed, shop, pod("web"))
    create(installed, shop, pod("quiet", labels={"envoy-inject": "disabled"}))
    create(installed, plain, pod("bare"))
    started = time.monotonic()
    status, report = check(installed, shop, plain)
    figures.append(f"check of 2 namespaces, 3 Pods: {time.monotonic() - started:.2f} s wall")
    assert status == 1  # the node-less installation (module docstring)
    web, quiet, bare = (target(report, "Pod", n) for n in ("web", "quiet", "bare"))
    assert (web["called"], web["decision"], web["injected"], web["outdated"]) == (
        True,
        "inject",
        True,
        False,
    )
    assert (quiet["called"], quiet["reason"], quiet["injected"]) == (False, "label_disabled", False)
    assert quiet["not_called"] == ["Pod labels: envoy-inject NotIn (disabled)"]
    assert (bare["called"], bare["injected"]) == (False, False)
    assert bare["not_called"] == [f"namespace {plain}: envoy-inject In (enabled)"]
    assert ("ok", f"Namespace {shop}", "its Pods are sent to the injector") in findings(
        report, "namespace"
    )
    assert findings(report, "envoy-config") == []
    assert findings(report, "pod-injection") == []
    assert findings(report, "ca-bundle")[0][0] == "ok"


def test_a_bad_annotation_shows_the_rejection_and_a_missing_envoy_configmap_is_flagged(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str]
) -> None:
    shop = namespace("shop", **ENABLED)  # no envoy-config ConfigMap in it
    template = pod("odd", annotations={"envoy-inject.io/proxy-port": "abc"})
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "odd"},
        "spec": {
            "selector": {"matchLabels": {"app": "odd"}},
            "template": {
                "metadata": {"labels": {"app": "odd"}, **template["metadata"]},
                "spec": template["spec"],
            },
        },
    }
    create(installed, shop, deployment)  # Deployments are not sent to the webhook, its Pods are
    status, report = check(installed, "-n", shop, "deploy/odd", shop)
    assert status == 1
    odd = target(report, "Deployment", "odd")
    assert (odd["decision"], odd["reason"]) == ("reject", "invalid_annotation")
    assert "envoy-inject.io/proxy-port: 'abc' is invalid" in odd["message"]
    assert ("problem", f"Deployment {shop}/odd", "refused: " + odd["message"]) in findings(
        report, "decision"
    )
    assert (
        "problem",
        f"Namespace {shop}",
        f"the Envoy ConfigMap {shop}/envoy-config it mounts is missing: injected Pods cannot start",
    ) in findings(report, "envoy-config")


@contextlib.contextmanager
def changed(injector: Injector, kind: str, name: str, ops: list[dict[str, Any]]) -> Iterator[None]:
    """Apply a JSON patch to a live object of the installation, and put it back afterwards."""
    where = ["-n", NAMESPACE] if kind != "mutatingwebhookconfiguration" else []
    before = injector.kubectl.json(*where, "get", kind, name)
    injector.kubectl(*where, "patch", kind, name, "--type=json", "-p", json.dumps(ops))
    try:
        yield
    finally:
        restore = {k: before[k] for k in ("data", "webhooks") if k in before}
        injector.kubectl(*where, "patch", kind, name, "--type=merge", "-p", json.dumps(restore))


def test_pods_injected_under_an_older_image_name_their_deployment_and_the_restart_line(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str]
) -> None:
    shop = namespace("shop", **ENABLED)
    create(installed, shop, ENVOY_CONFIG)
    installed.kubectl(
        "-n",
        shop,
        "create",
        "deployment",
        "checkout",
        "--image=hashicorp/http-echo:1.0",
        "--replicas=2",
    )
    kube.eventually(
        lambda: len(installed.kubectl.json("-n", shop, "get", "pods")["items"]) == 2,
        "the ReplicaSet's two Pods",
    )
    config = installed.kubectl.json("-n", NAMESPACE, "get", "configmap", "envoy-injector-config")
    text = config["data"]["config.yaml"]
    assert "image: envoyproxy/envoy:v1.40.0" in text
    upgraded = text.replace("envoyproxy/envoy:v1.40.0", "envoyproxy/envoy:v1.41.0")
    ops = [{"op": "replace", "path": "/data/config.yaml", "value": upgraded}]
    with changed(installed, "configmap", "envoy-injector-config", ops):
        _, report = check(installed, shop)
    (group,) = report["outdated"]
    assert group["workload"] == "Deployment/checkout"
    assert len(group["pods"]) == 2
    assert group["images"] == ["envoyproxy/envoy:v1.40.0"]
    assert group["fix"] == f"kubectl -n {shop} rollout restart deployment/checkout"
    _, after = check(installed, shop)
    assert after["outdated"] == []  # the config is back: nothing outdated


def test_a_ca_bundle_that_does_not_verify_the_serving_certificate_is_flagged_exit_1(
    installed: Injector,
) -> None:
    other = issue.new_ca(now=datetime.now(UTC))
    bundle = base64.b64encode(other.cert_pem).decode()
    ops = [{"op": "replace", "path": "/webhooks/0/clientConfig/caBundle", "value": bundle}]
    with changed(installed, "mutatingwebhookconfiguration", WEBHOOK, ops):
        status, report = check(installed)
    assert status == 1
    ((severity, _, message),) = findings(report, "ca-bundle")
    assert severity == "problem"
    assert message.startswith(
        f"caBundle does not verify the serving certificate for envoy-injector.{NAMESPACE}.svc"
    )
    _, healed = check(installed)
    assert findings(healed, "ca-bundle")[0][0] == "ok"


def _token_kubeconfig(injector: Injector, namespace: str, account: str) -> str:
    kubectl = injector.kubectl
    kubectl("-n", namespace, "create", "serviceaccount", account)
    token = kubectl("-n", namespace, "create", "token", account).stdout.strip()
    base = yaml.safe_load(kubectl("config", "view", "--raw").stdout)
    base["users"] = [{"name": account, "user": {"token": token}}]
    for context in base["contexts"]:
        context["context"]["user"] = account
    path = injector.tmp / f"{account}.kubeconfig"
    path.write_text(yaml.safe_dump(base))
    return str(path)


def test_no_access_exits_2_and_the_viewer_role_is_enough(
    installed: Injector, namespace: Callable[..., str]
) -> None:
    home = namespace("checkers")
    config = _token_kubeconfig(installed, home, "checker")
    denied = subprocess.run(
        [sys.executable, "-m", "webhook", "check", "--kubeconfig", config],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert denied.returncode == 2
    assert "could not check: no access: " in denied.stderr
    assert "envoy-injector-viewer" in denied.stderr
    viewer = REPO / "manifests" / "injector" / "viewer"
    installed.kubectl.apply(installed.kubectl("kustomize", str(viewer)).stdout)
    installed.kubectl(
        "create",
        "clusterrolebinding",
        f"{home}-checker",
        "--clusterrole=envoy-injector-viewer",
        f"--serviceaccount={home}:checker",
    )
    try:
        try:  # RBAC reaches the authorizer's cache shortly after the binding
            status, report = kube.eventually(
                lambda: _allowed(installed, config), "the viewer role to take effect", timeout=10
            )
        except TimeoutError:
            raise AssertionError(f"still refused: {REFUSED[-1]}") from None
        assert status == 1
        assert findings(report, "ca-bundle")[0][0] == "ok"
    finally:
        installed.kubectl("delete", "clusterrolebinding", f"{home}-checker")


REFUSED: list[str] = []


def _allowed(injector: Injector, config: str) -> tuple[int, dict[str, Any]] | None:
    result = subprocess.run(
        [sys.executable, "-m", "webhook", "check", "-o", "json", "--kubeconfig", config],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode == 2:
        REFUSED.append(result.stderr)
        return None
    return result.returncode, json.loads(result.stdout)


class Recording:
    """A real kubeapi client that notes (verb, apiGroup, resource) of every read it makes."""

    def __init__(self, api: Any) -> None:
        self.api, self.calls = api, set[tuple[str, str, str]]()

    def get(self, path: str, *, params: Any = None) -> Any:
        parts = path.strip("/").split("/")
        group = "" if parts[0] == "api" else parts[1]
        rest = parts[2:] if parts[0] == "api" else parts[3:]
        if rest[:1] == ["namespaces"] and len(rest) > 2:
            rest = rest[2:]  # a namespaced resource, not the namespace itself
        self.calls.add(("get" if len(rest) > 1 else "list", group, rest[0]))
        return self.api.get(path, params=params)


def _viewer_rules() -> set[tuple[str, str, str]]:
    path = REPO / "manifests" / "injector" / "viewer" / "clusterrole.yaml"
    (role,) = yaml.safe_load_all(path.read_text())
    return {
        (verb, group, resource)
        for rule in role["rules"]
        for verb in rule["verbs"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }


def test_the_viewer_role_grants_exactly_the_reads_check_makes(
    webhook: server.Server, installed: Injector, namespace: Callable[..., str]
) -> None:
    from webhook import check_command, cli

    shop = namespace("shop", **ENABLED)
    installed.kubectl("-n", shop, "create", "deployment", "web", "--image=hashicorp/http-echo:1.0")
    kube.eventually(
        lambda: installed.kubectl.json("-n", shop, "get", "pods")["items"], "the ReplicaSet's Pod"
    )
    kinds = ["deploy/web", "sts/db", "ds/agent", "job/once", "cronjob/nightly", "pod/none"]
    args = cli.build_parser().parse_args(
        ["check", "-n", shop, "--kubeconfig", str(installed.kubectl.kubeconfig), *kinds]
    )
    recorders: list[Recording] = []

    def connect(kubeconfig: str | None) -> Any:
        recorders.append(Recording(check_command._connect(kubeconfig)))
        return recorders[-1]

    assert check_command.check_command(args, io.StringIO(), io.StringIO(), connect=connect) == 1
    args = cli.build_parser().parse_args(["check", "--kubeconfig", args.kubeconfig])
    assert check_command.check_command(args, io.StringIO(), io.StringIO(), connect=connect) == 1
    used = set().union(*(r.calls for r in recorders))
    assert used == _viewer_rules()

"""The controller on a real kube-apiserver, as its own ServiceAccount, under the shipped RBAC and
ValidatingAdmissionPolicy (manifests/injector, applied as shipped by the `installed` fixture):
what a real server decides stays decided by it.
"""

from __future__ import annotations

import copy
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import lease
from kubeapi import client as kubeapi, credentials, errors as kerrors
from tests.e2e.conftest import Injector
from tests.support.cluster.controlplane import ControlPlane
from tests.support.controller import (
    ControllerProcess,
    running_controller,
    wait_for,
    write_kubeconfig,
)

ACCOUNT = "envoy-injector-controller"
MANAGED = {"app.kubernetes.io/managed-by": "envoy-injector-controller"}


def _ns(admin: kubeapi.Client, name: str, **labels: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
    try:
        admin.create("/api/v1/namespaces", body)
    except kerrors.Conflict:
        current = admin.get(f"/api/v1/namespaces/{name}")
        current["metadata"]["labels"] = labels
        admin.replace(f"/api/v1/namespaces/{name}", current)


def _cm(admin: kubeapi.Client, ns: str, name: str = "envoy-config") -> Any:
    try:
        return admin.get(kubeapi.path("v1", "configmaps", namespace=ns, name=name))
    except kerrors.NotFound:
        return None


@dataclass
class Cluster:
    """The session's control plane as the controller's tests use it: an admin client, and
    kubeconfigs holding ServiceAccount tokens (the identity the controller runs as)."""

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


@pytest.fixture(scope="module")
def cluster(
    control_plane: ControlPlane, installed: Injector, tmp_path_factory: pytest.TempPathFactory
) -> Cluster:
    admin = kubeapi.Client(credentials.from_kubeconfig(str(control_plane.kubeconfig)))
    return Cluster(
        control_plane.server,
        control_plane.authority.ca_file,
        tmp_path_factory.mktemp("controller"),
        admin,
    )


@pytest.fixture(scope="module")
def as_controller(cluster: Cluster) -> kubeapi.Client:
    path = cluster.kubeconfig("sa", cluster.token("envoy-injector", ACCOUNT))
    return kubeapi.Client(credentials.from_kubeconfig(str(path)))


@pytest.fixture
def config(tmp_path: Path, cluster: Cluster) -> Path:
    shipped = cluster.admin.get(
        "/api/v1/namespaces/envoy-injector/configmaps/envoy-injector-config"
    )
    path = tmp_path / "config.yaml"
    path.write_text(shipped["data"]["config.yaml"])
    return path


@pytest.fixture
def controller(
    tmp_path: Path, cluster: Cluster, config: Path, as_controller: kubeapi.Client
) -> Iterator[ControllerProcess]:
    kubeconfig = cluster.kubeconfig("controller", cluster.token("envoy-injector", ACCOUNT))
    with running_controller(tmp_path, kubeconfig, config) as proc:
        wait_for("leading", lambda: proc.metric("envoy_injector_controller_leader") == 1)
        yield proc


# ---- the admission policy, on its own ---------------------------------------------------------


def _denied(
    api: kubeapi.Client, method: str, url: str, body: Any = None, *, dry_run: bool = False
) -> str:
    try:
        api.request(method, url, body=body, params={"dryRun": "All"} if dry_run else None)
    except kerrors.Forbidden as exc:
        return exc.message
    return ""


def _configmap(ns: str, name: str = "envoy-config", labels: dict[str, str] | None = None) -> Any:
    meta = {"name": name, "namespace": ns, "labels": labels or {}}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"envoy.yaml": "{}"}}


def test_the_policy_lets_the_controller_write_only_our_configmaps(
    cluster: Cluster, as_controller: kubeapi.Client
) -> None:
    admin = cluster.admin
    _ns(admin, "fenced")
    cms = kubeapi.path("v1", "configmaps", namespace="fenced")
    # The policy is enforced once the API server has loaded it: wait for the first denial.
    wait_for(
        "the policy in force",
        lambda: _denied(
            as_controller, "POST", cms, _configmap("fenced", "probe", MANAGED), dry_run=True
        ),
    )
    cases = {
        "another name": ("POST", cms, _configmap("fenced", "app-settings", MANAGED)),
        "no managed-by label": ("POST", cms, _configmap("fenced")),
        "a system namespace": (
            "POST", kubeapi.path("v1", "configmaps", namespace="kube-system"),
            _configmap("kube-system", labels=MANAGED)),
    }  # fmt: skip
    for what, (method, url, body) in cases.items():
        message = _denied(as_controller, method, url, body)
        assert "ValidatingAdmissionPolicy" in message, what
    assert "named envoy-config, not app-settings" in _denied(as_controller, *cases["another name"])
    # A user's ConfigMap with our name: no update (not even to add our label), no delete.
    users = admin.create(cms, _configmap("fenced", labels={"team": "a"}))
    taken = copy.deepcopy(users)
    taken["metadata"]["labels"] = MANAGED
    url = cms + "/envoy-config"
    assert "may not take over" in _denied(as_controller, "PUT", url, taken)
    assert "ValidatingAdmissionPolicy" in _denied(as_controller, "DELETE", url)
    assert admin.get(url)["metadata"]["labels"] == {"team": "a"}
    admin.delete(url)
    # Ours: create, update, delete all pass.
    ours = as_controller.create(cms, _configmap("fenced", labels=MANAGED))
    ours["data"] = {"envoy.yaml": "admin: {}"}
    as_controller.replace(url, ours)
    as_controller.delete(url)
    # And the admin (anyone else) is not affected by it.
    admin.create(cms, _configmap("fenced", "app-settings"))


# ---- the controller ---------------------------------------------------------------------------


def test_labelling_a_namespace_makes_the_configmap_appear(
    cluster: Cluster, controller: ControllerProcess
) -> None:
    _ns(cluster.admin, "shop")
    started = time.monotonic()
    _ns(cluster.admin, "shop", **{"envoy-inject": "enabled"})
    cm = wait_for("configmap in shop", lambda: _cm(cluster.admin, "shop"), every=0.01)
    elapsed = time.monotonic() - started
    assert cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "envoy-injector-controller"
    envoy = yaml.safe_load(cm["data"]["envoy.yaml"])
    assert envoy["admin"]["address"]["socket_address"]["port_value"] == 9901
    assert elapsed < 10, elapsed  # a wide bound: the figure itself is measured in the README
    assert (
        controller.metric("envoy_injector_controller_configmap_writes_total", action="created") >= 1
    )


def test_a_users_configmap_is_left_alone_and_an_event_is_recorded(
    cluster: Cluster, controller: ControllerProcess
) -> None:
    admin = cluster.admin
    _ns(admin, "mine")
    cms = kubeapi.path("v1", "configmaps", namespace="mine")
    users = admin.create(cms, _configmap("mine", labels={"team": "b"}))
    _ns(admin, "mine", **{"envoy-inject": "enabled"})
    events = kubeapi.path("v1", "events", namespace="mine")
    found = wait_for(
        "a Warning event",
        lambda: [e for e in admin.get(events)["items"] if e["reason"] == "ConfigMapNotManaged"],
    )
    (event,) = found
    assert event["involvedObject"]["uid"] == users["metadata"]["uid"]
    assert "not managed by envoy-injector" in event["message"]
    time.sleep(4)  # more than one resync (3 s in the tests): still untouched, still one event
    now = _cm(admin, "mine")
    assert now["metadata"]["resourceVersion"] == users["metadata"]["resourceVersion"]
    assert len([e for e in admin.get(events)["items"] if e["reason"] == "ConfigMapNotManaged"]) == 1
    assert controller.metric("envoy_injector_controller_unowned_configmaps_total") == 1


def test_a_config_change_rolls_out_and_an_edit_is_repaired(
    cluster: Cluster, controller: ControllerProcess, config: Path
) -> None:
    admin = cluster.admin
    for name in ("roll-a", "roll-b"):
        _ns(admin, name, **{"envoy-inject": "enabled"})
        wait_for(f"configmap in {name}", lambda n=name: _cm(admin, n))  # type: ignore[misc]
    doc = yaml.safe_load(config.read_text())
    doc["sidecar"]["adminPort"] = 15000
    config.write_text(yaml.safe_dump(doc))

    def admin_port(ns: str) -> int:
        envoy = yaml.safe_load(_cm(admin, ns)["data"]["envoy.yaml"])
        return int(envoy["admin"]["address"]["socket_address"]["port_value"])

    for name in ("roll-a", "roll-b"):
        wait_for(f"new admin port in {name}", lambda n=name: admin_port(n) == 15000)  # type: ignore[misc]
    edited = _cm(admin, "roll-a")
    edited["data"]["envoy.yaml"] = "hand edited"
    admin.replace(kubeapi.path("v1", "configmaps", namespace="roll-a", name="envoy-config"), edited)
    wait_for(
        "the edit repaired", lambda: _cm(admin, "roll-a")["data"]["envoy.yaml"] != "hand edited"
    )
    assert admin_port("roll-a") == 15000


def test_removing_the_label_deletes_only_what_the_controller_wrote(
    cluster: Cluster, controller: ControllerProcess
) -> None:
    admin = cluster.admin
    _ns(admin, "leaving", **{"envoy-inject": "enabled"})
    wait_for("configmap in leaving", lambda: _cm(admin, "leaving"))
    _ns(admin, "leaving")
    wait_for("configmap deleted", lambda: _cm(admin, "leaving") is None)
    _ns(admin, "mine")  # the user's ConfigMap of the test above survives its label removal
    time.sleep(1)
    assert _cm(admin, "mine") is not None


def test_two_replicas_one_writes_and_the_other_takes_over(
    tmp_path: Path, cluster: Cluster, config: Path, controller: ControllerProcess
) -> None:
    kubeconfig = cluster.kubeconfig("second", cluster.token("envoy-injector", ACCOUNT))
    with running_controller(tmp_path, kubeconfig, config, name="second") as second:
        time.sleep(3)
        assert second.metric("envoy_injector_controller_leader") == 0
        _ns(cluster.admin, "pair", **{"envoy-inject": "enabled"})
        wait_for("configmap in pair", lambda: _cm(cluster.admin, "pair"))
        assert (
            second.metric("envoy_injector_controller_configmap_writes_total", action="created") == 0
        )
        controller.process.send_signal(signal.SIGTERM)  # hands the Lease back on its way out
        controller.process.wait(timeout=15)
        wait_for(
            "the standby leads", lambda: second.metric("envoy_injector_controller_leader") == 1
        )
        _ns(cluster.admin, "pair-2", **{"envoy-inject": "enabled"})
        wait_for("configmap in pair-2", lambda: _cm(cluster.admin, "pair-2"))
        assert (
            second.metric("envoy_injector_controller_configmap_writes_total", action="created") == 1
        )


def test_a_standby_takes_an_expired_lease_by_its_own_clock_and_the_old_leader_steps_down(
    cluster: Cluster, as_controller: kubeapi.Client
) -> None:
    now = {"a": 1000.0, "b": 5000.0}  # two nodes whose clocks disagree wildly
    changes: list[tuple[str, bool]] = []

    def elector(who: str) -> lease.Elector:
        return lease.Elector(
            as_controller,
            namespace="envoy-injector",
            name="clock-test",
            identity=who,
            on_change=lambda leading: changes.append((who, leading)),
            clock=lambda: now[who],
        )

    cluster.admin.create(  # the Role names only the controller's Lease: the test's own is extra
        kubeapi.path("rbac.authorization.k8s.io/v1", "roles", namespace="envoy-injector"),
        {"metadata": {"name": "clock-test"}, "rules": [{"apiGroups": ["coordination.k8s.io"],
         "resources": ["leases"], "resourceNames": ["clock-test"], "verbs": ["get", "update"]}]},
    )  # fmt: skip
    cluster.admin.create(
        kubeapi.path("rbac.authorization.k8s.io/v1", "rolebindings", namespace="envoy-injector"),
        {"metadata": {"name": "clock-test"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "clock-test"},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": "envoy-injector"}]},
    )  # fmt: skip

    def leads(candidate: lease.Elector) -> bool:
        candidate.step()
        return candidate.leading

    a, b = elector("a"), elector("b")
    wait_for("a leads", lambda: leads(a))
    assert not leads(b)
    now["b"] += lease.LEASE_SECONDS - 1  # a renews no more; b has not waited long enough
    assert not leads(b)
    now["b"] += 1
    assert leads(b)
    assert not leads(a)  # a comes back: the record changed hands, so it stands by
    assert changes == [("a", True), ("b", True), ("a", False)]
    record = cluster.admin.get(
        kubeapi.path(
            "coordination.k8s.io/v1", "leases", namespace="envoy-injector", name="clock-test"
        )
    )
    assert record["spec"]["holderIdentity"] == "b"
    assert record["spec"]["leaseTransitions"] == 1

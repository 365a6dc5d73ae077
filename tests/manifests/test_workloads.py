"""The webhook Deployment, its PodDisruptionBudget and the cert jobs behave as an operator expects.

Every Pod template shipped (injector and sidecar example) meets the ``restricted`` Pod Security
Standard, checked field by field as the admission plugin does, plus a read-only root filesystem.
"""

from __future__ import annotations

import copy
from typing import Final

import pytest

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, SIDECAR, Manifest, Object

OBJECTS: Final = documents.objects(INJECTOR)
TEMPLATES: Final = [
    *documents.pod_templates(OBJECTS),
    *documents.pod_templates(documents.objects(SIDECAR)),
]
TEMPLATE_IDS: Final = [m.label for m, _ in TEMPLATES]
APP_UID: Final = 10001  # the Dockerfile's USER
WEBHOOK_LABELS: Final = {
    "app.kubernetes.io/name": "envoy-injector",
    "app.kubernetes.io/component": "webhook",
}


def deployment() -> Object:
    return documents.one(OBJECTS, "Deployment", "envoy-injector")


def pod() -> Object:
    spec: Object = deployment()["spec"]["template"]["spec"]
    return spec


def server() -> Object:
    return documents.container(pod(), "envoy-injector")


@pytest.mark.parametrize(("manifest", "spec"), TEMPLATES, ids=TEMPLATE_IDS)
def test_every_pod_meets_the_restricted_pod_security_standard(
    manifest: Manifest, spec: Object
) -> None:
    assert documents.restricted_violations(spec) == [], manifest.label


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("runAsNonRoot", False, "runAsNonRoot is not true"),
        ("allowPrivilegeEscalation", True, "allowPrivilegeEscalation is not false"),
        ("capabilities", {"drop": ["ALL"], "add": ["NET_ADMIN"]}, "capabilities are added"),
        ("seccompProfile", {"type": "Unconfined"}, "seccompProfile is not RuntimeDefault"),
        ("readOnlyRootFilesystem", False, "root filesystem is writable"),
    ],
    ids=["root-allowed", "escalation", "added-capability", "unconfined", "writable-root"],
)
def test_restricted_check_reports_a_weakened_container(
    field: str, value: object, problem: str
) -> None:
    spec = copy.deepcopy(pod())
    spec["containers"][0]["securityContext"][field] = value
    assert documents.restricted_violations(spec) == [f"container envoy-injector: {problem}"]


@pytest.mark.parametrize(("manifest", "spec"), TEMPLATES, ids=TEMPLATE_IDS)
def test_every_container_has_cpu_and_memory_requests_and_limits(
    manifest: Manifest, spec: Object
) -> None:
    for container in spec["containers"]:
        resources = container["resources"]
        assert set(resources["requests"]) == {"cpu", "memory"}, manifest.label
        assert set(resources["limits"]) == {"cpu", "memory"}, manifest.label


@pytest.mark.parametrize(
    ("manifest", "spec"),
    [(m, s) for m, s in TEMPLATES if m.path.parent == INJECTOR],
    ids=[label for label in TEMPLATE_IDS if label.startswith("injector/")],
)
def test_injector_pods_run_as_the_image_user(manifest: Manifest, spec: Object) -> None:
    for container in spec["containers"]:
        assert documents.effective(spec, container, "runAsUser") == APP_UID, manifest.label
        assert container["imagePullPolicy"] == "IfNotPresent", "kind-loaded images need it"


def test_webhook_runs_two_replicas_without_dropping_below_two_during_rollouts() -> None:
    spec = deployment()["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert spec["selector"]["matchLabels"] == WEBHOOK_LABELS
    assert WEBHOOK_LABELS.items() <= spec["template"]["metadata"]["labels"].items()


def test_replicas_are_spread_across_nodes() -> None:
    (spread,) = pod()["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["maxSkew"] == 1
    assert spread["labelSelector"] == {"matchLabels": WEBHOOK_LABELS}
    (anti,) = pod()["affinity"]["podAntiAffinity"][
        "preferredDuringSchedulingIgnoredDuringExecution"
    ]
    assert anti["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert anti["podAffinityTerm"]["labelSelector"] == {"matchLabels": WEBHOOK_LABELS}


def test_disruption_budget_keeps_one_webhook_replica() -> None:
    budget = documents.one(OBJECTS, "PodDisruptionBudget", "envoy-injector")
    assert budget["spec"]["minAvailable"] == 1
    assert budget["spec"]["selector"] == {"matchLabels": WEBHOOK_LABELS}


@pytest.mark.parametrize(
    ("probe", "path"),
    [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")],
    ids=["readiness", "liveness"],
)
def test_probes_call_the_health_endpoints_over_https(probe: str, path: str) -> None:
    http_get = server()[probe]["httpGet"]
    ports = {p["name"]: p["containerPort"] for p in server()["ports"]}
    assert http_get["path"] == path
    assert http_get["scheme"] == "HTTPS"
    assert ports.get(http_get["port"], http_get["port"]) == 8443


def test_shutdown_waits_for_endpoints_then_drains_within_the_grace_period() -> None:
    sleep = server()["lifecycle"]["preStop"]["sleep"]["seconds"]
    grace = pod()["terminationGracePeriodSeconds"]
    assert grace == 30
    assert 0 < sleep <= 10
    assert grace - sleep >= 10, "the server needs ~10 s after SIGTERM to finish in-flight reviews"


def test_root_filesystem_is_read_only_but_tmp_is_writable() -> None:
    scratch = "/tmp"  # noqa: S108 (the path inside the container, not a file the test opens)
    mounts = {m["mountPath"]: m for m in server()["volumeMounts"]}
    assert scratch in mounts
    volumes = {v["name"]: v for v in pod()["volumes"]}
    assert "emptyDir" in volumes[mounts[scratch]["name"]]


def test_install_job_retries_and_cleans_up_after_itself() -> None:
    job = documents.one(OBJECTS, "Job", "envoy-injector-certs")["spec"]
    assert job["backoffLimit"] >= 3
    assert job["ttlSecondsAfterFinished"] > 0
    assert job["template"]["spec"]["restartPolicy"] in {"Never", "OnFailure"}


def test_rotation_runs_daily_and_never_twice_at_once() -> None:
    cronjob = documents.one(OBJECTS, "CronJob", "envoy-injector-certs-rotate")["spec"]
    minute, hour, day, month, weekday = cronjob["schedule"].split()
    assert minute.isdigit()
    assert hour.isdigit()
    assert (day, month, weekday) == ("*", "*", "*")
    assert cronjob["concurrencyPolicy"] == "Forbid"
    job = cronjob["jobTemplate"]["spec"]
    assert job["backoffLimit"] >= 3
    assert job["ttlSecondsAfterFinished"] > 0


def test_install_job_and_rotation_job_run_the_same_pod() -> None:
    job = documents.one(OBJECTS, "Job", "envoy-injector-certs")["spec"]
    cronjob = documents.one(OBJECTS, "CronJob", "envoy-injector-certs-rotate")["spec"]
    assert job["template"] == cronjob["jobTemplate"]["spec"]["template"]

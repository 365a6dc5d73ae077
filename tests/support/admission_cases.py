"""The Pods both engines (webhook and admission policy) are compared on: every Pod template of the
peer corpus, as its controller would create it, and the override cases of the webhook's unit
tests (tests/unit/test_overrides.py, test_inject.py, test_mutate.py), as Pods."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import yaml

from tests.support.pods import CORPUS, make_pod
from webhook import workloads

P: Final = "envoy-inject.io/"
MALFORMED: Final = {"inject_gettest_deployment.bad.input.yml"}
_OWNER_UID: Final = "0b0c8a57-4a8e-4f3e-9d2a-5f7c1e0d9a11"


@dataclass(frozen=True)
class Case:
    id: str
    pod: dict[str, Any]


def _owned(pod: dict[str, Any], kind: str, name: str) -> None:
    """The owner reference the workload's controller puts on its Pods."""
    meta = pod["metadata"]
    owner_kind, owner_name = kind, name
    if kind in ("Deployment",):
        labels = meta.setdefault("labels", {})
        labels.setdefault("pod-template-hash", "5d8c7b9f4")
        owner_kind, owner_name = "ReplicaSet", f"{name}-{labels['pod-template-hash']}"
    elif kind == "CronJob":
        owner_kind, owner_name = "Job", f"{name}-29000000"
    api = {"ReplicaSet": "apps/v1", "StatefulSet": "apps/v1", "DaemonSet": "apps/v1"}
    meta["ownerReferences"] = [
        {
            "apiVersion": api.get(owner_kind, "batch/v1" if owner_kind == "Job" else "v1"),
            "kind": owner_kind,
            "name": owner_name,
            "uid": _OWNER_UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def corpus() -> Iterator[Case]:
    files = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".yaml", ".yml"))
    for path in files:
        if path.name in MALFORMED:
            continue
        for index, doc in enumerate(yaml.safe_load_all(path.read_text())):
            if not isinstance(doc, dict):
                continue
            for template in workloads.templates(doc):
                pod = _as_pod(template)
                if pod is None:
                    continue
                if template.kind != "Pod":
                    _owned(pod, template.kind, template.name or "workload")
                where = "/".join(map(str, template.path)) or "pod"
                yield Case(f"{path.relative_to(CORPUS)}#{index}/{where}", pod)


def _as_pod(template: workloads.Template) -> dict[str, Any] | None:
    spec = template.pod.get("spec")
    if not isinstance(spec, dict) or not spec.get("containers"):
        return None
    meta = copy.deepcopy(template.pod.get("metadata") or {})
    meta.pop("namespace", None)
    if not meta.get("name"):
        meta.pop("name", None)
        meta["generateName"] = f"{template.name or 'pod'}-"
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": copy.deepcopy(spec)}


def _annotated(**given: str) -> dict[str, Any]:
    return make_pod(annotations={P + k: v for k, v in given.items()})


def overrides() -> Iterator[Case]:
    """Every override case of the webhook's tests, plus one per skip, clash and grace period."""
    every = {
        "image": "envoyproxy/envoy:v1.40.1",
        "config-map": "my-envoy",
        "proxy-port": "15001",
        "app-port": "9000",
        "admin-port": "15000",
        "service-cluster": "checkout",
        "cpu-request": "50m",
        "cpu-limit": "1",
        "memory-request": "64Mi",
        "memory-limit": "512Mi",
        "log-level": "debug",
        "concurrency": "4",
        "native-sidecar": "true",
    }
    yield Case("every-override", _annotated(**every))
    bad = [
        ("proxy-port", "abc"), ("proxy-port", "0"), ("admin-port", "70000"), ("inject", "yes"),
        ("native-sidecar", "True"), ("cpu-limit", "lots"), ("memory-request", "-1Mi"),
        ("log-level", "verbose"), ("concurrency", "0"), ("concurrency", "two"),
        ("config-map", "My_Config"), ("service-cluster", "$(SECRET)"), ("image", "envoy proxy"),
    ]  # fmt: skip
    for name, value in bad:
        extra = {"config-map": "own-config"} if name.endswith("-port") else {}
        yield Case(f"bad-{name}={value}", _annotated(**{name: value}, **extra))
    yield Case(
        "all-bad-at-once",
        _annotated(**{"proxy-port": "x", "log-level": "loud", "cpu-limit": "?", "config-map": "c"}),
    )
    yield Case("port-without-config-map-warns", _annotated(**{"proxy-port": "15001"}))
    yield Case("unknown-annotation-warns", _annotated(colour="blue"))
    yield Case("image-from-another-registry", _annotated(image="docker.io/evil/envoy:1"))
    yield Case("cpu-above-ceiling", _annotated(**{"cpu-limit": "3"}))
    yield Case(
        "memory-above-ceiling", _annotated(**{"memory-request": "2Gi", "memory-limit": "4Gi"})
    )
    yield Case("request-above-limit", _annotated(**{"cpu-request": "800m"}))
    yield Case("ports-equal", _annotated(**{"admin-port": "10000", "config-map": "own"}))
    yield Case(
        "hold-without-native", _annotated(**{"hold-application": "true", "native-sidecar": "false"})
    )
    yield Case("hold-application", _annotated(**{"hold-application": "true"}))
    yield Case("native-false", _annotated(**{"native-sidecar": "false"}))
    yield Case(
        "quantities",
        _annotated(**{"cpu-limit": "1.5", "memory-limit": "1e9", "memory-request": ".5Gi"}),
    )
    yield Case("inject-false", _annotated(inject="false"))
    yield Case("inject-true", _annotated(inject="true"))
    yield Case("already-injected", make_pod(annotations={P + "status": "{}"}))
    yield Case("host-network", make_pod(hostNetwork=True))
    yield Case("windows", make_pod(os={"name": "windows"}))
    yield Case("no-app-label", make_pod(name="lonely"))
    yield Case("app-label", make_pod(labels={"app": "shop"}))
    yield Case("k8s-name-label", make_pod(labels={"app.kubernetes.io/name": "cart"}))
    yield Case("generate-name", make_pod(name=None, generate_name="batch---"))
    for grace in (0, 1, 3, 9, 10, 11, 3600):
        yield Case(f"grace-{grace}", make_pod(terminationGracePeriodSeconds=grace))
    clash = [{"name": "envoy-sidecar", "image": "example/app:1.0"}]
    yield Case("container-name-clash", make_pod(containers=clash))
    yield Case(
        "volume-name-clash",
        make_pod(volumes=[{"name": "envoy-config-volume", "emptyDir": {}}]),
    )
    ports = [
        {"containerPort": 10000},
        {"containerPort": 9901},
        {"containerPort": 9901, "protocol": "UDP"},
    ]
    yield Case("port-clash", make_pod(containers=[{"name": "app", "image": "a:1", "ports": ports}]))
    yield Case(
        "port-moved-with-config-map",
        make_pod(
            annotations={P + "proxy-port": "15001", P + "config-map": "own"},
            containers=[{"name": "app", "image": "a:1", "ports": [{"containerPort": 10000}]}],
        ),
    )
    job = make_pod(name=None, generate_name="batch-x-", restartPolicy="Never")
    _owned(job, "Job", "batch-x")
    yield Case("job-owned", job)
    no_token = make_pod(automountServiceAccountToken=False, initContainers=[])
    yield Case("no-volumes-no-annotations", no_token)
    native_no_init = make_pod(
        annotations={P + "native-sidecar": "true"}, automountServiceAccountToken=False
    )
    yield Case("native-without-init-containers", native_no_init)


def cases() -> list[Case]:
    return [*corpus(), *overrides()]

"""Realistic AdmissionReview bodies, as kube-apiserver sends them for a Pod CREATE.

Built in code (not fixture files) so their shape is reviewable: what the ServiceAccount
admission plugin has already added by the time mutating webhooks run (the projected
``kube-api-access-*`` token volume and its mounts, default tolerations), the owner reference
and managedFields a ReplicaSet controller writes, probes, resources and env. Compact JSON,
as the API server encodes it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

JSONDict = dict[str, Any]

NAMESPACE: Final = "shop"
TOKEN_VOLUME: Final = "kube-api-access-7xk2p"  # noqa: S105 - a volume name, not a secret
TIMESTAMP: Final = "2025-03-14T09:26:53Z"


def _token_volume() -> JSONDict:
    """The projected service-account token volume the ServiceAccount plugin adds."""
    return {
        "name": TOKEN_VOLUME,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {
                    "configMap": {
                        "name": "kube-root-ca.crt",
                        "items": [{"key": "ca.crt", "path": "ca.crt"}],
                    }
                },
                {
                    "downwardAPI": {
                        "items": [
                            {
                                "path": "namespace",
                                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                            }
                        ]
                    }
                },
            ],
        },
    }


def _token_mount() -> JSONDict:
    return {
        "name": TOKEN_VOLUME,
        "readOnly": True,
        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
    }


def _probe(path: str, port: int, *, initial: int) -> JSONDict:
    return {
        "httpGet": {"path": path, "port": port, "scheme": "HTTP"},
        "initialDelaySeconds": initial,
        "timeoutSeconds": 2,
        "periodSeconds": 10,
        "successThreshold": 1,
        "failureThreshold": 3,
    }


def _env(index: int, count: int) -> list[JSONDict]:
    env: list[JSONDict] = [
        {
            "name": "POD_IP",
            "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}},
        },
        {
            "name": "DATABASE_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "shop-db", "key": "password"}},
        },
    ]
    env += [
        {"name": f"FEATURE_FLAG_{index}_{i:02d}", "value": f"checkout.v{i}.enabled=true"}
        for i in range(count - len(env))
    ]
    return env


def _container(name: str, image: str, port: int, *, env: int, index: int = 0) -> JSONDict:
    return {
        "name": name,
        "image": image,
        "ports": [{"name": "http", "containerPort": port, "protocol": "TCP"}],
        "env": _env(index, env),
        "resources": {
            "limits": {"cpu": "1", "memory": "512Mi"},
            "requests": {"cpu": "250m", "memory": "256Mi"},
        },
        "volumeMounts": [{"name": "config", "mountPath": "/etc/app"}, _token_mount()],
        "livenessProbe": _probe("/healthz", port, initial=10),
        "readinessProbe": _probe("/readyz", port, initial=2),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def _log_shipper() -> JSONDict:
    return {
        "name": "log-shipper",
        "image": "fluent/fluent-bit:3.2.4",
        "resources": {
            "limits": {"cpu": "200m", "memory": "128Mi"},
            "requests": {"cpu": "50m", "memory": "64Mi"},
        },
        "volumeMounts": [{"name": "fluent-bit", "mountPath": "/fluent-bit/etc"}, _token_mount()],
        "livenessProbe": _probe("/api/v1/health", 2020, initial=5),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def _tolerations() -> list[JSONDict]:
    return [
        {
            "key": f"node.kubernetes.io/{taint}",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
        for taint in ("not-ready", "unreachable")
    ]


# The list-map keys of the Pod's associative lists (from the OpenAPI x-kubernetes-list-map-keys).
_LIST_KEYS: Final = {
    "containers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "ports": ("containerPort", "protocol"),
    "volumeMounts": ("mountPath",),
    "ownerReferences": ("uid",),
}
# Added by the ServiceAccount admission plugin, after the creator's fields were recorded.
_PLUGIN_ADDED: Final = (TOKEN_VOLUME, "/var/run/secrets/kubernetes.io/serviceaccount")


def _fields(value: Mapping[str, Any]) -> JSONDict:
    """The FieldsV1 set of ``value``: what managedFields record for the creator's fields."""
    out: JSONDict = {}
    for key, item in value.items():
        if key in _LIST_KEYS and isinstance(item, list):
            keyed: JSONDict = {".": {}}
            for element in item:
                ident = {k: element[k] for k in _LIST_KEYS[key] if k in element}
                if set(ident.values()) & set(_PLUGIN_ADDED):
                    continue
                keyed["k:" + json.dumps(ident, separators=(",", ":"))] = {
                    ".": {},
                    **_fields(element),
                }
            out[f"f:{key}"] = keyed
        elif isinstance(item, Mapping) and item:
            out[f"f:{key}"] = {".": {}, **_fields(item)}
        else:
            out[f"f:{key}"] = {}  # a scalar, an empty map or an atomic list
    return out


def _managed_fields(pod: JSONDict, manager: str) -> list[JSONDict]:
    meta = {k: v for k, v in pod["metadata"].items() if k not in ("namespace", "name")}
    spec = {
        k: v
        for k, v in pod["spec"].items()
        if k not in ("serviceAccount", "tolerations", "priority", "preemptionPolicy")
    }
    return [
        {
            "manager": manager,
            "operation": "Update",
            "apiVersion": "v1",
            "time": TIMESTAMP,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:metadata": _fields(meta), "f:spec": _fields(spec)},
        }
    ]


def _pod_spec(containers: list[JSONDict], volumes: list[JSONDict]) -> JSONDict:
    return {
        "volumes": [*volumes, _token_volume()],
        "containers": containers,
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "checkout",
        "serviceAccount": "checkout",
        "securityContext": {"fsGroup": 2000, "seccompProfile": {"type": "RuntimeDefault"}},
        "schedulerName": "default-scheduler",
        "tolerations": _tolerations(),
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    }


def _deployment_pod(app: str, containers: list[JSONDict], volumes: list[JSONDict]) -> JSONDict:
    template_hash = "7d9f8b6c4d"
    replica_set = f"{app}-{template_hash}"
    pod: JSONDict = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "generateName": f"{replica_set}-",
            "namespace": NAMESPACE,
            "creationTimestamp": None,
            "labels": {
                "app": app,
                "pod-template-hash": template_hash,
            },
            "annotations": {
                "kubectl.kubernetes.io/restartedAt": TIMESTAMP,
                "prometheus.io/scrape": "true",
            },
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": replica_set,
                    "uid": "6f3c2a8e-1b2d-4c5e-9f00-112233445566",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": _pod_spec(containers, volumes),
        "status": {},
    }
    pod["metadata"]["managedFields"] = _managed_fields(pod, "kube-controller-manager")
    return pod


def small_pod() -> JSONDict:
    """A bare Pod made by ``kubectl run``: one container, no owner."""
    container = {
        "name": "web",
        "image": "nginxinc/nginx-unprivileged:1.27",
        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
        "volumeMounts": [_token_mount()],
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }
    pod: JSONDict = {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": "web",
            "namespace": NAMESPACE,
            "creationTimestamp": None,
            "labels": {"run": "web"},
        },
        "spec": _pod_spec([container], []),
        "status": {},
    }
    pod["metadata"]["managedFields"] = _managed_fields(pod, "kubectl-run")
    return pod


def typical_pod() -> JSONDict:
    """A Deployment's Pod: generateName, owner, app + log shipper with probes, env, resources."""
    volumes = [
        {"name": "config", "configMap": {"name": "checkout-config", "defaultMode": 420}},
        {"name": "fluent-bit", "configMap": {"name": "fluent-bit", "defaultMode": 420}},
    ]
    containers = [
        _container("checkout", "registry.example.com/shop/checkout:2.14.1", 8080, env=3),
        _log_shipper(),
    ]
    return _deployment_pod("checkout", containers, volumes)


def large_pod() -> JSONDict:
    """Ten containers with long env lists: a batch of services packed into one Pod."""
    containers = [
        _container(
            f"worker-{i}",
            f"registry.example.com/shop/worker-{i}:2.14.1",
            8080 + i,
            env=26,
            index=i,
        )
        for i in range(10)
    ]
    volumes = [{"name": "config", "configMap": {"name": "workers-config", "defaultMode": 420}}]
    return _deployment_pod("workers", containers, volumes)


def huge_pod() -> JSONDict:
    """About 250 kB: 45 containers with long env lists, where cost must stay linear in size."""
    containers = [
        _container(
            f"worker-{i}",
            f"registry.example.com/shop/worker-{i}:2.14.1",
            8080 + i,
            env=26,
            index=i,
        )
        for i in range(45)
    ]
    volumes = [{"name": "config", "configMap": {"name": "workers-config", "defaultMode": 420}}]
    return _deployment_pod("workers", containers, volumes)


def review(pod: JSONDict, uid: str = "b6a5e0d2-5f11-4a7c-9e3b-0d4f2c8a1e77") -> JSONDict:
    """The AdmissionReview a ReplicaSet controller's (or kubectl's) Pod CREATE produces."""
    owner = pod["metadata"].get("ownerReferences")
    user = (
        "system:serviceaccount:kube-system:replicaset-controller" if owner else "alice@example.com"
    )
    return {
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": NAMESPACE,
            "operation": "CREATE",
            "userInfo": {
                "username": user,
                "uid": "0d3b8c9a-4e1f-4a2b-8c7d-6e5f4a3b2c1d",
                "groups": ["system:serviceaccounts", "system:authenticated"],
            },
            "object": pod,
            "oldObject": None,
            "dryRun": False,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        },
    }


BODIES: Final[Mapping[str, Callable[[], JSONDict]]] = {
    "small": small_pod,
    "typical": typical_pod,
    "large": large_pod,
    "huge": huge_pod,
}


def body(name: str) -> bytes:
    """The encoded AdmissionReview for body ``name`` (small, typical, large or huge)."""
    return json.dumps(review(BODIES[name]()), separators=(",", ":")).encode()

"""The sidecar's shape: SidecarSpec + the Pod's identity -> container and volume dicts.

This is the only place that knows what the injected container looks like.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Final

from webhook import spec as s

JSONDict = dict[str, Any]

_SECURITY_CONTEXT: Final[JSONDict] = {
    "runAsNonRoot": True,
    "runAsUser": s.ENVOY_UID,
    "runAsGroup": s.ENVOY_UID,
    "allowPrivilegeEscalation": False,
    "privileged": False,
    "readOnlyRootFilesystem": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def _field_env(name: str, field_path: str) -> JSONDict:
    return {"name": name, "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": field_path}}}


# How long the sidecar keeps serving after the Pod is told to stop, so that endpoint removal
# reaches every proxy before Envoy gets SIGTERM. The API server requires a preStop sleep to be
# shorter than the Pod's terminationGracePeriodSeconds, and Envoy needs time to exit after it.
STOP_SLEEP_SECONDS: Final = 5
DEFAULT_GRACE_SECONDS: Final = 30  # the API server's default terminationGracePeriodSeconds


def stop_sleep(grace_seconds: int) -> int:
    """The preStop sleep for a grace period: 5 s, but at most half the grace period (rounded
    down), so the sleep is always shorter than the grace and Envoy keeps the other half to exit.
    0 means no preStop hook at all (a sleep of 0 is refused by older API servers)."""
    return max(0, min(STOP_SLEEP_SECONDS, grace_seconds // 2))


def sidecar_container(
    spec: s.SidecarSpec, cluster: str, *, grace_seconds: int = DEFAULT_GRACE_SECONDS
) -> JSONDict:
    """The Envoy container. ``cluster`` is the already-derived --service-cluster value;
    ``grace_seconds`` the Pod's terminationGracePeriodSeconds."""
    container: JSONDict = {
        "name": s.CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["/usr/local/bin/envoy"],
        "args": [
            "--config-path",
            f"{s.CONFIG_MOUNT_PATH}/{s.CONFIG_KEY}",
            "--service-cluster",
            cluster,
            # The kubelet expands $(POD_NAME) from the env below; metadata.name is set by then
            # even for Pods that only had generateName at admission.
            "--service-node",
            "$(POD_NAME)",
            "--log-level",
            spec.log_level,
            "--concurrency",
            str(spec.concurrency),
        ],
        "ports": [{"name": s.PROXY_PORT_NAME, "containerPort": spec.proxy_port, "protocol": "TCP"}],
        "env": [
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
            {"name": "ENVOY_ADMIN_PORT", "value": str(spec.admin_port)},
            {"name": "ENVOY_APP_PORT", "value": str(spec.app_port)},
        ],
        "resources": spec.resources.as_dict(),
        "volumeMounts": [
            {"name": s.VOLUME_NAME, "mountPath": s.CONFIG_MOUNT_PATH, "readOnly": True}
        ],
        # The admin endpoint listens on loopback, out of the kubelet's reach; the listener
        # accepting connections is the readiness signal the kubelet can see.
        "readinessProbe": {
            "tcpSocket": {"port": spec.proxy_port},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
        "securityContext": dict(_SECURITY_CONTEXT),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    sleep = stop_sleep(grace_seconds)
    if sleep:
        # Keep proxying while the endpoint removal propagates, then let SIGTERM stop Envoy.
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": sleep}}}
    if spec.native:
        # A restartable init container: started before the app and, once its startupProbe
        # passes, the kubelet starts the next containers; it does not keep a Job's Pod alive.
        container["restartPolicy"] = "Always"
        container["startupProbe"] = {
            "tcpSocket": {"port": spec.proxy_port},
            "periodSeconds": 1,
            "failureThreshold": 60,
        }
    return container


def config_volume(spec: s.SidecarSpec) -> JSONDict:
    return {
        "name": s.VOLUME_NAME,
        "configMap": {
            "name": spec.config_map,
            "items": [{"key": s.CONFIG_KEY, "path": s.CONFIG_KEY}],
        },
    }


@functools.lru_cache(maxsize=64)
def status(spec: s.SidecarSpec) -> str:
    """The status annotation's value: what was injected, so a later pass can tell."""
    record = {
        "version": s.VERSION,
        "containers": [] if spec.native else [s.CONTAINER_NAME],
        "initContainers": [s.CONTAINER_NAME] if spec.native else [],
        "volumes": [s.VOLUME_NAME],
        "image": spec.image,
    }
    return json.dumps(record, separators=(",", ":"), sort_keys=True)

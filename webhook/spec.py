"""What gets injected (SidecarSpec) and what pods may change about it (Policy).

Both are frozen: the operator's defaults are built once at start-up, and each request derives
its own spec with dataclasses.replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from webhook import __version__

ANNOTATION_PREFIX: Final = "envoy-inject.io/"
STATUS_ANNOTATION: Final = ANNOTATION_PREFIX + "status"
# On a Pod whose injection came with warnings (an ignored or unknown annotation, resources
# fitted to the namespace). Admission warnings reach only whoever created the Pod, which for a
# Deployment's Pods is the ReplicaSet controller; the label lets the user find them:
# kubectl get pods -A -l envoy-inject.io/warned
WARNED_LABEL: Final = ANNOTATION_PREFIX + "warned"
INJECT_LABEL: Final = "envoy-inject"
CONTAINER_NAME: Final = "envoy-sidecar"
VOLUME_NAME: Final = "envoy-config-volume"
CONFIG_MOUNT_PATH: Final = "/etc/envoy"
CONFIG_KEY: Final = "envoy.yaml"
PROXY_PORT_NAME: Final = "envoy-http"
ENVOY_UID: Final = 101  # the envoy user of the official image
VERSION: Final = __version__


@dataclass(frozen=True)
class Resources:
    cpu_request: str = "100m"
    cpu_limit: str = "500m"
    memory_request: str = "128Mi"
    memory_limit: str = "256Mi"
    # Stated only when the namespace makes every container state it (see limits.py).
    ephemeral_storage_request: str | None = None
    ephemeral_storage_limit: str | None = None

    def as_dict(self) -> dict[str, dict[str, str]]:
        """The container's ``resources`` field."""
        requests = {"cpu": self.cpu_request, "memory": self.memory_request}
        limits = {"cpu": self.cpu_limit, "memory": self.memory_limit}
        if self.ephemeral_storage_request is not None:
            requests["ephemeral-storage"] = self.ephemeral_storage_request
        if self.ephemeral_storage_limit is not None:
            limits["ephemeral-storage"] = self.ephemeral_storage_limit
        return {"requests": requests, "limits": limits}


@dataclass(frozen=True)
class SidecarSpec:
    image: str = "envoyproxy/envoy:v1.40.0"
    proxy_port: int = 10000
    app_port: int = 8080
    admin_port: int = 9901
    config_map: str = "envoy-config"
    cluster: str | None = None  # None: derived from the Pod (app label, owner, name)
    resources: Resources = field(default_factory=Resources)
    log_level: str = "info"
    concurrency: int = 2  # not the node's core count: a sidecar must stay small
    native: bool = False  # an init container with restartPolicy Always (Kubernetes >= 1.29)
    hold_application: bool = False  # app containers start only once the proxy is up


ALL_OVERRIDES: Final = frozenset(
    {
        "inject",
        "image",
        "proxy-port",
        "app-port",
        "admin-port",
        "config-map",
        "service-cluster",
        "cpu-request",
        "cpu-limit",
        "memory-request",
        "memory-limit",
        "log-level",
        "concurrency",
        "native-sidecar",
        "hold-application",
    }
)


# The overrides that set the sidecar's resources.
RESOURCE_OVERRIDES: Final = frozenset(
    {"cpu-request", "cpu-limit", "memory-request", "memory-limit"}
)


@dataclass(frozen=True)
class Policy:
    """Operator-owned bounds on what pod annotations may change.

    The default is safe: the sidecar's security context is not overridable at all, images are
    limited to the official Envoy repository, and resources are capped.
    """

    allowed_overrides: frozenset[str] = ALL_OVERRIDES
    allowed_image_prefixes: tuple[str, ...] = ("envoyproxy/envoy:", "docker.io/envoyproxy/envoy:")
    max_cpu: str | None = "2"
    max_memory: str | None = "1Gi"

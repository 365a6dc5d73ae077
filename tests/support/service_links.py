"""The environment the kubelet gives a container: its own `env`, and Docker-link variables for
every Service of its namespace (unless the Pod sets enableServiceLinks: false) plus the
`kubernetes` Service of `default`, which every container gets.

Written from the kubelet's rules (pkg/kubelet/envvars): for a Service "my-svc" with ClusterIP
10.0.0.11 and port 443/TCP named "https":
MY_SVC_SERVICE_HOST, MY_SVC_SERVICE_PORT, MY_SVC_SERVICE_PORT_HTTPS, MY_SVC_PORT=tcp://...,
MY_SVC_PORT_443_TCP, MY_SVC_PORT_443_TCP_PROTO, _PORT and _ADDR. Headless Services get none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

KUBERNETES_SERVICE: Final = {
    "metadata": {"name": "kubernetes", "namespace": "default"},
    "spec": {"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]},
}

# Every name the rules above can produce, whatever the Service is called.
LINK_NAME: Final = re.compile(
    r"[A-Z][A-Z0-9_]*_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?"
    r"|PORT|PORT_\d+_(TCP|UDP|SCTP)(_PROTO|_PORT|_ADDR)?)"
)


def could_be_a_service_link(variable: str) -> bool:
    return LINK_NAME.fullmatch(variable) is not None


def _prefix(name: str) -> str:
    return name.upper().replace("-", "_")


def link_variables(service: Mapping[str, Any], *, cluster_ip: str = "10.96.0.10") -> dict[str, str]:
    spec = service.get("spec") or {}
    ip = spec.get("clusterIP", cluster_ip)
    if ip == "None":
        return {}
    ports = spec.get("ports") or []
    if not ports:
        return {}
    prefix = _prefix(service["metadata"]["name"])
    first = ports[0]
    env = {
        f"{prefix}_SERVICE_HOST": ip,
        f"{prefix}_SERVICE_PORT": str(first["port"]),
        f"{prefix}_PORT": f"{first.get('protocol', 'TCP').lower()}://{ip}:{first['port']}",
    }
    for port in ports:
        protocol = port.get("protocol", "TCP")
        if port.get("name"):
            env[f"{prefix}_SERVICE_PORT_{_prefix(port['name'])}"] = str(port["port"])
        base = f"{prefix}_PORT_{port['port']}_{protocol}"
        env[base] = f"{protocol.lower()}://{ip}:{port['port']}"
        env[f"{base}_PROTO"] = protocol.lower()
        env[f"{base}_PORT"] = str(port["port"])
        env[f"{base}_ADDR"] = ip
    return env


def container_environment(
    pod_spec: Mapping[str, Any],
    container: Mapping[str, Any],
    *,
    namespace: str,
    services: Iterable[Mapping[str, Any]],
    force_service_links: bool = False,
) -> dict[str, str]:
    """What the kubelet sets; `force_service_links` pretends enableServiceLinks were true."""
    env = link_variables(KUBERNETES_SERVICE)
    if force_service_links or pod_spec.get("enableServiceLinks", True):
        for service in services:
            env.update(link_variables(service))
    field_values = {"metadata.namespace": namespace, "metadata.name": "pod-0"}
    for item in container.get("env") or []:
        if "value" in item:
            env[item["name"]] = str(item["value"])
        else:
            env[item["name"]] = field_values[item["valueFrom"]["fieldRef"]["fieldPath"]]
    return env

"""The Envoy bootstrap the sidecar loads, rendered from the same SidecarSpec as the container.

The operator's config may carry its own bootstrap (``bootstrap:``, any valid Envoy bootstrap);
without one, :data:`DEFAULT_TEMPLATE` is used. Either way the three addresses that must agree
with the injected container are written here from the spec, never taken from the template:

- ``admin.address``: 127.0.0.1:<adminPort> (the admin interface never leaves the Pod);
- the listener named ``ingress_http``: port <proxyPort> (the container's ``envoy-http`` port);
- every endpoint of the cluster named ``local_app``: 127.0.0.1:<appPort>.

So a port changed in ``sidecar:`` changes the container and the ConfigMap together.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from typing import Any, Final

import yaml

from webhook import errors
from webhook.spec import SidecarSpec

JSONDict = dict[str, Any]

LISTENER: Final = "ingress_http"
CLUSTER: Final = "local_app"
LOOPBACK: Final = "127.0.0.1"

_HCM: Final = (
    "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
    ".HttpConnectionManager"
)

# The same as the shipped config's ``bootstrap:`` (manifests/injector/configmap.yaml, the chart's
# values.yaml), so a config without one gets what ships; the ports are placeholders (see above).
DEFAULT_TEMPLATE: Final[Mapping[str, Any]] = {
    "admin": {"address": {"socket_address": {"address": LOOPBACK, "port_value": 9901}}},
    "static_resources": {
        "listeners": [
            {
                "name": LISTENER,
                "address": {"socket_address": {"address": "0.0.0.0", "port_value": 10000}},
                "filter_chains": [
                    {
                        "filters": [
                            {
                                "name": "envoy.filters.network.http_connection_manager",
                                "typed_config": {
                                    "@type": _HCM,
                                    "stat_prefix": "ingress_http",
                                    "access_log": [
                                        {
                                            "name": "envoy.access_loggers.stdout",
                                            "typed_config": {
                                                "@type": "type.googleapis.com/envoy.extensions"
                                                ".access_loggers.stream.v3.StdoutAccessLog"
                                            },
                                        }
                                    ],
                                    "route_config": {
                                        "name": "local_route",
                                        "virtual_hosts": [
                                            {
                                                "name": "local_app",
                                                "domains": ["*"],
                                                "routes": [
                                                    {
                                                        "match": {"prefix": "/"},
                                                        "route": {"cluster": CLUSTER},
                                                    }
                                                ],
                                            }
                                        ],
                                    },
                                    "http_filters": [
                                        {
                                            "name": "envoy.filters.http.router",
                                            "typed_config": {
                                                "@type": "type.googleapis.com/envoy.extensions"
                                                ".filters.http.router.v3.Router"
                                            },
                                        }
                                    ],
                                },
                            }
                        ]
                    }
                ],
            }
        ],
        "clusters": [
            {
                "name": CLUSTER,
                "type": "STATIC",
                "connect_timeout": "1s",
                "load_assignment": {
                    "cluster_name": CLUSTER,
                    "endpoints": [
                        {
                            "lb_endpoints": [
                                {
                                    "endpoint": {
                                        "address": {
                                            "socket_address": {
                                                "address": LOOPBACK,
                                                "port_value": 8080,
                                            }
                                        }
                                    }
                                }
                            ]
                        }
                    ],
                },
            }
        ],
    },
}


def _dict(value: Any, where: str) -> JSONDict:
    if not isinstance(value, dict):
        raise errors.ConfigError(f"bootstrap: {where} must be a mapping")
    return value


def _named(items: Any, name: str, where: str, field: str) -> JSONDict:
    if not isinstance(items, list):
        raise errors.ConfigError(f"bootstrap: {where} must be a list")
    found = [i for i in items if isinstance(i, dict) and i.get("name") == name]
    if len(found) != 1:
        raise errors.ConfigError(
            f"bootstrap: {where} needs exactly one entry named {name!r} "
            f"(found {len(found)}); the sidecar's {field} is written into it"
        )
    return found[0]


def _socket(holder: JSONDict, where: str) -> JSONDict:
    address = _dict(holder.setdefault("address", {}), f"{where}.address")
    return _dict(address.setdefault("socket_address", {}), f"{where}.address.socket_address")


def template(value: Any) -> Mapping[str, Any]:
    """The config's ``bootstrap:`` value checked for the places ports go (None: the default)."""
    if value is None:
        return DEFAULT_TEMPLATE
    checked = _dict(value, "the value")
    _apply(copy.deepcopy(checked), SidecarSpec())  # raises ConfigError naming what is missing
    return checked


def _apply(config: JSONDict, spec: SidecarSpec) -> None:
    admin = _dict(config.setdefault("admin", {}), "admin")
    _socket(admin, "admin").update(address=LOOPBACK, port_value=spec.admin_port)
    resources = _dict(config.get("static_resources"), "static_resources")
    where = "static_resources.listeners"
    listener = _named(resources.get("listeners"), LISTENER, where, "proxyPort")
    _socket(listener, f"listener {LISTENER}")["port_value"] = spec.proxy_port
    where = "static_resources.clusters"
    cluster = _named(resources.get("clusters"), CLUSTER, where, "appPort")
    assignment = _dict(cluster.get("load_assignment"), f"cluster {CLUSTER}.load_assignment")
    endpoints = assignment.get("endpoints")
    lb = [
        e
        for group in endpoints or []
        if isinstance(group, dict)
        for e in group.get("lb_endpoints") or []
    ]
    if not lb:
        raise errors.ConfigError(
            f"bootstrap: cluster {CLUSTER!r} needs load_assignment.endpoints[].lb_endpoints; "
            "the sidecar's appPort is written into them"
        )
    for i, item in enumerate(lb):
        endpoint = _dict(_dict(item, f"{CLUSTER} lb_endpoints[{i}]").get("endpoint"), "endpoint")
        _socket(endpoint, f"{CLUSTER} endpoint").update(address=LOOPBACK, port_value=spec.app_port)


def render(spec: SidecarSpec, source: Mapping[str, Any] = DEFAULT_TEMPLATE) -> str:
    """The ``envoy.yaml`` text for ``spec``: ``source`` with the spec's ports written in."""
    config = copy.deepcopy(dict(source))
    _apply(config, spec)
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False, width=1000)


def digest(data: Mapping[str, str]) -> str:
    """A short content digest of a ConfigMap's ``data`` (keys sorted, so order never matters)."""
    h = hashlib.sha256()
    for key in sorted(data):
        h.update(key.encode() + b"\0" + data[key].encode() + b"\0")
    return "sha256:" + h.hexdigest()[:32]

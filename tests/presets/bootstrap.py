"""Targeted edits of a parsed Envoy bootstrap so it runs on loopback in a test.

Each function changes one named thing (a listener's address, a cluster's endpoints,
the admin port) on the parsed dict and fails loudly when that thing does not exist, so
a renamed listener or cluster in a preset breaks the test instead of being skipped.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "LOOPBACK",
    "bind_listener",
    "cluster",
    "envoy_bootstraps",
    "http_connection_manager",
    "http_filter",
    "listener",
    "point_cluster",
    "seconds",
    "set_admin_port",
    "write_bootstrap",
]

LOOPBACK = "127.0.0.1"


def envoy_bootstraps(objects: list[dict[str, Any]]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(ConfigMap name, key, parsed config) for every Envoy bootstrap in ConfigMaps."""
    for obj in objects:
        if obj.get("kind") != "ConfigMap":
            continue
        for key, text in (obj.get("data") or {}).items():
            if not key.endswith((".yaml", ".yml", ".json")):
                continue
            parsed = yaml.safe_load(text)
            if isinstance(parsed, dict) and "static_resources" in parsed:
                yield obj["metadata"]["name"], key, parsed


def _named(items: list[dict[str, Any]], name: str, what: str) -> dict[str, Any]:
    found = [item for item in items if item.get("name") == name]
    if len(found) != 1:
        raise AssertionError(f"expected one {what} named {name}, found {len(found)}")
    return found[0]


def listener(config: dict[str, Any], name: str) -> dict[str, Any]:
    return _named(config["static_resources"]["listeners"], name, "listener")


def cluster(config: dict[str, Any], name: str) -> dict[str, Any]:
    return _named(config["static_resources"]["clusters"], name, "cluster")


def _socket_address(host: str, port: int) -> dict[str, Any]:
    return {"socket_address": {"address": host, "port_value": port}}


def bind_listener(config: dict[str, Any], name: str, port: int) -> None:
    """Move listener ``name`` to 127.0.0.1:``port``."""
    listener(config, name)["address"] = _socket_address(LOOPBACK, port)


def set_admin_port(config: dict[str, Any], port: int) -> None:
    """Move the admin interface to 127.0.0.1:``port``, and any cluster that pointed at it."""
    old = config["admin"]["address"]["socket_address"]
    for item in config["static_resources"].get("clusters", []):
        for group in item.get("load_assignment", {}).get("endpoints", []):
            for endpoint in group.get("lb_endpoints", []):
                address = endpoint["endpoint"]["address"]["socket_address"]
                if address == old:
                    endpoint["endpoint"]["address"] = _socket_address(LOOPBACK, port)
    config["admin"]["address"] = _socket_address(LOOPBACK, port)


def point_cluster(config: dict[str, Any], name: str, ports: Sequence[int]) -> None:
    """Replace cluster ``name``'s endpoints (a DNS name in the preset) by 127.0.0.1 ports."""
    target = cluster(config, name)
    groups = target["load_assignment"]["endpoints"]
    if len(groups) != 1 or len(groups[0]["lb_endpoints"]) != 1:
        raise AssertionError(f"cluster {name}: expected one endpoint (a Service DNS name)")
    groups[0]["lb_endpoints"] = [
        {"endpoint": {"address": _socket_address(LOOPBACK, port)}} for port in ports
    ]


def write_bootstrap(config: dict[str, Any], path: Path) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def http_connection_manager(config: dict[str, Any], listener_name: str) -> dict[str, Any]:
    """The typed config of the HTTP connection manager on listener ``listener_name``."""
    chains = listener(config, listener_name)["filter_chains"]
    managers = [
        network_filter["typed_config"]
        for chain in chains
        for network_filter in chain["filters"]
        if network_filter["name"] == "envoy.filters.network.http_connection_manager"
    ]
    if len(managers) != 1:
        raise AssertionError(f"listener {listener_name}: expected one HTTP connection manager")
    manager: dict[str, Any] = managers[0]
    return manager


def http_filter(manager: dict[str, Any], name: str) -> dict[str, Any]:
    """The typed config of HTTP filter ``name`` in a connection manager."""
    found = [item for item in manager["http_filters"] if item["name"] == name]
    if len(found) != 1:
        raise AssertionError(f"expected one HTTP filter {name}, found {len(found)}")
    typed: dict[str, Any] = found[0]["typed_config"]
    return typed


def seconds(duration: str) -> float:
    """A protobuf JSON duration ("60s", "0.5s") in seconds."""
    if not duration.endswith("s"):
        raise AssertionError(f"not a duration: {duration}")
    return float(duration[:-1])

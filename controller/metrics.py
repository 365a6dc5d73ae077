"""The controller's Prometheus metrics, on a registry of their own (tests stay isolated)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    reconciles: Counter
    writes: Counter
    conflicts: Counter
    wait: Histogram
    watch_restarts: Counter
    config_reloads: Counter
    leader: Gauge


def create_metrics() -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return Metrics(
        registry=registry,
        reconciles=Counter(
            "envoy_injector_controller_reconciles",
            "Namespaces reconciled, by result (in_sync, changed, conflict, error).",
            ["result"],
            registry=registry,
        ),
        writes=Counter(
            "envoy_injector_controller_configmap_writes",
            "ConfigMaps written, by action (created, updated, deleted).",
            ["action"],
            registry=registry,
        ),
        conflicts=Counter(
            "envoy_injector_controller_unowned_configmaps",
            "ConfigMaps found with our name but not managed by us (each counted once), "
            "left as they are.",
            registry=registry,
        ),
        wait=Histogram(
            "envoy_injector_controller_configmap_wait_seconds",
            "From a namespace's creation (or, for older ones, from when the controller saw it "
            "labelled) to its Envoy ConfigMap being created.",
            buckets=_WAIT_BUCKETS,
            registry=registry,
        ),
        watch_restarts=Counter(
            "envoy_injector_controller_watch_restarts",
            "Watches started again, by resource and reason (closed, gone, error, bug).",
            ["resource", "reason"],
            registry=registry,
        ),
        config_reloads=Counter(
            "envoy_injector_controller_config_reloads",
            "Config file reloads, by result (applied, rejected).",
            ["result"],
            registry=registry,
        ),
        leader=Gauge(
            "envoy_injector_controller_leader",
            "1 while this replica holds the leader Lease and writes, 0 while it stands by.",
            registry=registry,
        ),
    )

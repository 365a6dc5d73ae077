"""Prometheus metrics on an explicit registry (one per app, so tests stay isolated).

Outcome labels are the same codes the logs and messages use: injected, skipped:<reason>,
rejected:<reason>, invalid:<error>, error.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SIZE_BUCKETS = (256, 1024, 2048, 4096, 8192, 16384, 65536)


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    patch_bytes: Histogram
    cert_expiry: Gauge
    config_reloads: Counter
    in_flight: Gauge
    _children: dict[str, Counter] = field(default_factory=dict)

    def observe(self, outcome: str, seconds: float, patch_bytes: int) -> None:
        child = self._children.get(outcome)
        if child is None:  # labels() builds a key and takes a lock: once per outcome
            child = self._children[outcome] = self.requests.labels(outcome=outcome)
        child.inc()
        self.latency.observe(seconds)
        if patch_bytes:
            self.patch_bytes.observe(patch_bytes)


def create_metrics() -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return Metrics(
        registry=registry,
        requests=Counter(
            "envoy_injector_admission_requests",
            "Admission reviews answered, by outcome (injected, skipped:<reason>, "
            "rejected:<reason>, invalid:<error>, overloaded, error).",
            ["outcome"],
            registry=registry,
        ),
        latency=Histogram(
            "envoy_injector_admission_duration_seconds",
            "Time from the first body byte read to the reply, per admission review.",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        ),
        patch_bytes=Histogram(
            "envoy_injector_patch_bytes",
            "Size of the base64 JSON Patch in injected replies.",
            buckets=_SIZE_BUCKETS,
            registry=registry,
        ),
        cert_expiry=Gauge(
            "envoy_injector_certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate in use, as a Unix time.",
            registry=registry,
        ),
        config_reloads=Counter(
            "envoy_injector_config_reloads",
            "Config file reloads, by result (applied, rejected).",
            ["result"],
            registry=registry,
        ),
        in_flight=Gauge(
            "envoy_injector_in_flight_requests",
            "Admission reviews being handled now.",
            registry=registry,
        ),
    )

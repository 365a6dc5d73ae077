"""Prometheus metrics on an explicit registry (one per app, so tests stay isolated).

Reviews are counted by two labels, following Prometheus conventions: ``outcome`` (injected,
skipped, rejected, invalid, overloaded, error) and ``reason`` (the code the decision log uses,
empty when there is none), so ``sum by (outcome)`` counts every rejection.

The per-review figures (count, latency, patch size) are plain integers and lists updated on the
event loop and turned into metric families only at scrape time: prometheus_client's own
Counter and Histogram take a lock and walk label dictionaries on every update, which cost more
than the rest of a skipped review. The scrape runs on the same event loop, so nothing races.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

OUTCOMES = ("injected", "skipped", "rejected", "invalid", "overloaded", "error")
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SIZE_BUCKETS = (256, 1024, 2048, 4096, 8192, 16384, 65536)


class _Histogram:
    """Counts per bucket (non-cumulative until scraped) and the sum."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound falls in that bound's bucket (le is "<=").
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self, name: str, documentation: str) -> HistogramMetricFamily:
        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


class ReviewStats(Collector):
    """The per-review metrics: requests by (outcome, reason), latency and patch size."""

    def __init__(self) -> None:
        self.requests: dict[tuple[str, str], int] = {}
        self.latency = _Histogram(LATENCY_BUCKETS)
        self.patch_bytes = _Histogram(SIZE_BUCKETS)

    def observe(self, outcome: str, reason: str, seconds: float, patch_bytes: int) -> None:
        key = (outcome, reason)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency.observe(seconds)
        if patch_bytes:
            self.patch_bytes.observe(patch_bytes)

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "envoy_injector_admission_requests",
            "Admission reviews answered, by outcome (injected, skipped, rejected, invalid, "
            "overloaded, error) and reason (the decision log's code; empty when none).",
            labels=["outcome", "reason"],
        )
        for (outcome, reason), count in sorted(self.requests.items()):
            requests.add_metric([outcome, reason], count)
        yield requests
        yield self.latency.family(
            "envoy_injector_admission_duration_seconds",
            "Time from the first body byte read to the reply, per admission review.",
        )
        yield self.patch_bytes.family(
            "envoy_injector_patch_bytes", "Size of the base64 JSON Patch in injected replies."
        )


@dataclass(frozen=True)
class Metrics:
    registry: CollectorRegistry
    reviews: ReviewStats
    cert_expiry: Gauge
    config_reloads: Counter
    in_flight: Gauge

    def observe(self, outcome: str, reason: str, seconds: float, patch_bytes: int) -> None:
        self.reviews.observe(outcome, reason, seconds, patch_bytes)


def create_metrics() -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    reviews = ReviewStats()
    registry.register(reviews)
    return Metrics(
        registry=registry,
        reviews=reviews,
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

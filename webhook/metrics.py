"""The injector's metrics, counted as plain numbers and exposed in Prometheus' format.

Reviews are counted by two labels, following Prometheus conventions: ``outcome`` (injected,
skipped, rejected, invalid, overloaded, error) and ``reason`` (the code the decision log uses,
empty when there is none), so ``sum by (outcome)`` counts every rejection.

Counting is plain integers and lists updated on the event loop; they become metric families
only at scrape time (``registry``). prometheus_client's own Counter and Histogram take a lock
and walk label dictionaries on every update, which cost more than the rest of a skipped review,
and importing prometheus_client is a noticeable part of start-up: only the /metrics route
does, on its first scrape. The scrape runs on the same event loop, so nothing races.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import HistogramMetricFamily, Metric

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
        from prometheus_client.core import HistogramMetricFamily

        cumulative, buckets = 0, []
        for bound, count in zip([*map(str, self.bounds), "+Inf"], self.counts, strict=True):
            cumulative += count
            buckets.append((bound, float(cumulative)))
        return HistogramMetricFamily(name, documentation, buckets=buckets, sum_value=self.sum)


@dataclass(eq=False)  # hashable by identity: the registry keys its collectors
class Metrics:
    requests: dict[tuple[str, str], int] = field(default_factory=dict)  # (outcome, reason)
    latency: _Histogram = field(default_factory=lambda: _Histogram(LATENCY_BUCKETS))
    patch_bytes: _Histogram = field(default_factory=lambda: _Histogram(SIZE_BUCKETS))
    cert_expiry: float | None = None  # notAfter of the serving certificate, Unix time
    config_reloads: dict[str, int] = field(default_factory=dict)  # by result
    in_flight: Callable[[], int] = lambda: 0  # read at scrape time only

    def observe(self, outcome: str, reason: str, seconds: float, patch_bytes: int) -> None:
        key = (outcome, reason)
        self.requests[key] = self.requests.get(key, 0) + 1
        self.latency.observe(seconds)
        if patch_bytes:
            self.patch_bytes.observe(patch_bytes)

    def config_reloaded(self, result: str) -> None:
        self.config_reloads[result] = self.config_reloads.get(result, 0) + 1

    def collect(self) -> Iterator[Metric]:
        """The metric families, in Prometheus' model (the collector protocol)."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

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
        if self.cert_expiry is not None:
            yield GaugeMetricFamily(
                "envoy_injector_certificate_expiry_timestamp_seconds",
                "notAfter of the serving certificate in use, as a Unix time.",
                value=self.cert_expiry,
            )
        reloads = CounterMetricFamily(
            "envoy_injector_config_reloads",
            "Config file reloads, by result (applied, rejected).",
            labels=["result"],
        )
        for result, count in sorted(self.config_reloads.items()):
            reloads.add_metric([result], count)
        yield reloads
        yield GaugeMetricFamily(
            "envoy_injector_in_flight_requests",
            "Admission reviews being handled now.",
            value=self.in_flight(),
        )


def create_metrics() -> Metrics:
    return Metrics()


def registry(metrics: Metrics) -> CollectorRegistry:
    """A registry that exposes ``metrics`` and the process metrics (imports prometheus_client)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.platform_collector import PlatformCollector
    from prometheus_client.process_collector import ProcessCollector

    out = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=out)
    PlatformCollector(registry=out)
    out.register(metrics)  # a Collector by protocol (collect)
    return out

"""What a benchmark run measured, and the figures and ratios derived from it."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Final

from bench.paced import Paced
from bench.wrk import Run

TITLES: Final = {
    "bare": "bare ASGI, constant reply",
    "fastapi": "FastAPI route, constant reply",
    "mutate": "/mutate (envoy-injector serve)",
    "go": "Go reference injector (bench/goref)",
}


@dataclass(frozen=True)
class Scenario:
    server: str  # bare, fastapi, go or mutate
    body: str  # small, typical, large or huge

    @property
    def key(self) -> str:
        return f"{self.server}/{self.body}"


# Measured in this order in every round; the ratios use bare, fastapi and mutate on "typical".
SCENARIOS: Final = (
    Scenario("bare", "typical"),
    Scenario("fastapi", "typical"),
    Scenario("go", "typical"),
    Scenario("mutate", "small"),
    Scenario("mutate", "typical"),
    Scenario("bare", "large"),  # answering /mutate's reply to the large pod
    Scenario("go", "large"),
    Scenario("mutate", "large"),
    Scenario("bare", "huge"),
    Scenario("go", "huge"),
    Scenario("mutate", "huge"),
)


@dataclass
class Measured:
    """Every round of one scenario."""

    scenario: Scenario
    runs: list[Run] = field(default_factory=list)

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.runs)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.runs)

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.runs)

    @property
    def rps(self) -> float:
        """Requests per second: the median over the rounds."""
        return statistics.median(r.requests / r.seconds for r in self.runs)

    @property
    def cpu_us(self) -> float:
        """Server CPU time (user + system) per request in µs: the median over the rounds."""
        return statistics.median(r.server_cpu / r.requests * 1e6 for r in self.runs)

    @property
    def cpu_us_rounds(self) -> list[float]:
        return [r.server_cpu / r.requests * 1e6 for r in self.runs]

    @property
    def cpu_share(self) -> float:
        """How busy the server's core was: CPU seconds per wall second."""
        cpu = sum(r.server_cpu for r in self.runs)
        return cpu / self.seconds if self.seconds else 0.0

    def latency_ms(self, name: str) -> float:
        """A wrk latency figure (p50, p90, p99, max...), the median over the rounds, in ms."""
        return statistics.median(r.latency_us[name] for r in self.runs) / 1000


@dataclass
class LogStats:
    decisions: int = 0  # one JSON line per admission decision
    decision_bytes: int = 0
    requests_sent: int = 0  # completed /mutate requests counted by the clients

    @property
    def bytes_per_line(self) -> float:
        return self.decision_bytes / self.decisions if self.decisions else 0.0


@dataclass
class Results:
    mode: str  # full or quick
    command: str
    date: str
    machine: dict[str, str]
    settings: dict[str, str]
    body_bytes: dict[str, int]
    measured: dict[str, Measured] = field(default_factory=dict)
    paced: dict[str, Paced] = field(default_factory=dict)
    memory_kib: dict[str, dict[str, int]] = field(default_factory=dict)  # after every run
    memory_typical_kib: dict[str, int] = field(default_factory=dict)  # /mutate, small+typical
    cold_start_s: list[float] = field(default_factory=list)
    cold_start_cpu_s: list[float] = field(default_factory=list)  # the server's, until ready
    log: LogStats = field(default_factory=LogStats)

    def get(self, server: str, body: str) -> Measured:
        return self.measured[Scenario(server, body).key]


@dataclass(frozen=True)
class Target:
    name: str
    measured: float
    limit: float
    unit: str
    at_most: bool = True  # False: the measured figure must be at least the limit
    detail: str = ""

    @property
    def met(self) -> bool:
        return self.measured <= self.limit if self.at_most else self.measured >= self.limit


def per_kb(results: Results, server: str, small: str, big: str) -> float:
    """CPU µs per extra kB of body between two bodies: the slope of cost against size."""
    extra_kb = (results.body_bytes[big] - results.body_bytes[small]) / 1000
    return (results.get(server, big).cpu_us - results.get(server, small).cpu_us) / extra_kb


def targets(results: Results) -> list[Target]:
    """The issue's targets: typical pod, 16 connections, one worker, ratios from this run."""
    bare = results.get("bare", "typical")
    typical = results.get("mutate", "typical")
    large = results.get("mutate", "large")
    bare_large = results.get("bare", "large")
    go = results.get("go", "typical")
    go_large = results.get("go", "large")
    paced = results.paced["mutate/typical"]
    rss = results.memory_typical_kib["VmRSS"] / 1024
    rss_all = results.memory_kib["mutate"]["VmRSS"] / 1024
    cold = statistics.median(results.cold_start_s)
    slope_large = per_kb(results, "mutate", "typical", "large")
    slope_huge = per_kb(results, "mutate", "large", "huge")
    return [
        Target(
            "/mutate CPU per request vs bare ASGI (typical pod)",
            typical.cpu_us / bare.cpu_us,
            1.35,
            "x",
            detail=f"{typical.cpu_us:.0f} µs vs {bare.cpu_us:.0f} µs",
        ),
        Target(
            "/mutate CPU per request vs bare ASGI answering the same reply (large pod)",
            large.cpu_us / bare_large.cpu_us,
            1.6,
            "x",
            detail=f"{large.cpu_us:.0f} µs vs {bare_large.cpu_us:.0f} µs",
        ),
        Target(
            "/mutate requests per CPU-second vs Go reference (typical pod)",
            go.cpu_us / typical.cpu_us,
            1.0,
            "x",
            at_most=False,
            detail=f"{1e6 / typical.cpu_us:,.0f} vs {1e6 / go.cpu_us:,.0f} req/CPU-s",
        ),
        Target(
            "/mutate requests per CPU-second vs Go reference (large pod)",
            go_large.cpu_us / large.cpu_us,
            2.0,
            "x",
            at_most=False,
            detail=f"{1e6 / large.cpu_us:,.0f} vs {1e6 / go_large.cpu_us:,.0f} req/CPU-s",
        ),
        Target(
            "cost stays linear: CPU per extra kB, 58 -> 252 kB vs 7 -> 58 kB",
            slope_huge / slope_large if slope_large > 0 else float("inf"),
            1.5,
            "x",
            detail=f"{slope_huge:.2f} vs {slope_large:.2f} µs/kB",
        ),
        Target(
            "p99 latency at a fixed 100 req/s",
            paced.latency_ms["p99"],
            1.0,
            "ms",
            detail=f"{paced.requests} requests, p50 {paced.latency_ms['p50']:.2f} ms",
        ),
        Target(
            "RSS after load (typical pod; FastAPI routes served)",
            rss,
            60.0,
            "MiB",
            detail=f"VmRSS after the typical-pod load; {rss_all:.1f} MiB after the 252 kB pod's",
        ),
        Target(
            "cold start (spawn to first TLS /healthz 200)",
            cold,
            0.25,
            "s",
            detail=f"median of {len(results.cold_start_s)}",
        ),
    ]

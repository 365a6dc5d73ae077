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
}


@dataclass(frozen=True)
class Scenario:
    server: str  # bare, fastapi or mutate
    body: str  # small, typical or large

    @property
    def key(self) -> str:
        return f"{self.server}/{self.body}"


# Measured in this order in every round; the ratios use bare, fastapi and mutate on "typical".
SCENARIOS: Final = (
    Scenario("bare", "typical"),
    Scenario("fastapi", "typical"),
    Scenario("mutate", "small"),
    Scenario("mutate", "typical"),
    Scenario("mutate", "large"),
    Scenario("bare", "large"),  # context: what the transport alone pays for a 58 KB body
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
    memory_kib: dict[str, dict[str, int]] = field(default_factory=dict)
    cold_start_s: list[float] = field(default_factory=list)
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


def targets(results: Results) -> list[Target]:
    """The issue's targets: typical pod, 16 connections, one worker, ratios from this run."""
    bare = results.get("bare", "typical")
    fast = results.get("fastapi", "typical")
    typical = results.get("mutate", "typical")
    large = results.get("mutate", "large")
    paced = results.paced["mutate/typical"]
    rss = results.memory_kib["mutate"]["VmRSS"] / 1024
    cold = statistics.median(results.cold_start_s)
    return [
        Target(
            "/mutate CPU per request vs bare ASGI",
            typical.cpu_us / bare.cpu_us,
            1.35,
            "x",
            detail=f"{typical.cpu_us:.0f} µs vs {bare.cpu_us:.0f} µs",
        ),
        Target(
            "/mutate throughput vs FastAPI no-op route",
            typical.rps / fast.rps,
            1.5,
            "x",
            at_most=False,
            detail=f"{typical.rps:,.0f} vs {fast.rps:,.0f} req/s",
        ),
        Target(
            "large pod cost vs typical pod (CPU per request)",
            large.cpu_us / typical.cpu_us,
            3.0,
            "x",
            detail=f"{large.cpu_us:.0f} µs vs {typical.cpu_us:.0f} µs",
        ),
        Target(
            "p99 latency at a fixed 100 req/s",
            paced.latency_ms["p99"],
            5.0,
            "ms",
            detail=f"{paced.requests} requests, p50 {paced.latency_ms['p50']:.2f} ms",
        ),
        Target("RSS after load", rss, 60.0, "MiB", detail="VmRSS of the server after all runs"),
        Target(
            "cold start (spawn to first TLS /healthz 200)",
            cold,
            1.0,
            "s",
            detail=f"median of {len(results.cold_start_s)}",
        ),
    ]

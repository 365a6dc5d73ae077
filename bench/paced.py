"""Latency at a fixed request rate (wrk cannot pace, and Debian has no wrk2).

One keep-alive TLS connection per server (the API server's pooled connection) sends a request
every 1/rate seconds. Each latency runs from the request's *scheduled* time to the last byte
of the reply, so a slow reply that delays the next send is counted against the next request
too (no coordinated omission). The client is a blocking socket in this process, pinned to the
load core; it sleeps until 1 ms before the due time, then spins, so its timer slack does not
pollute the figures. Its own TLS and parsing work (tens of µs) is in every figure.

Servers are paced in alternating one-second chunks, so a noisy neighbour on a shared machine
hits all of them alike.
"""

from __future__ import annotations

import math
import ssl
import time
from dataclasses import dataclass, field

from bench import client

SPIN = 0.001  # seconds of busy-waiting before each due time
WARMUP = 50  # requests on a fresh connection before measuring


@dataclass
class Paced:
    rate: float
    latencies: list[float] = field(default_factory=list)  # seconds
    sent: int = 0  # warm-up included
    failures: int = 0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def latency_ms(self) -> dict[str, float]:
        ordered = sorted(self.latencies)
        figures = {f"p{p:g}": percentile(ordered, p) * 1000 for p in (50, 90, 99, 99.9)}
        figures["max"] = ordered[-1] * 1000 if ordered else 0.0
        return figures


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(pct * len(ordered) / 100 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


class Pacer:
    """A keep-alive connection that POSTs ``body`` to /mutate at ``rate`` requests a second."""

    def __init__(self, port: int, context: ssl.SSLContext, body: bytes, rate: float) -> None:
        self.request = client.Connection.encode("POST", "/mutate", body)
        self.conn = client.Connection(port, context)
        self.result = Paced(rate)
        for _ in range(WARMUP):
            self._send()

    def close(self) -> None:
        self.conn.close()

    def _send(self) -> None:
        status, _ = self.conn.send(self.request)
        self.result.sent += 1
        self.result.failures += status != 200

    def run(self, seconds: float) -> None:
        interval = 1.0 / self.result.rate
        start = time.perf_counter() + interval
        for i in range(max(1, round(seconds * self.result.rate))):
            due = start + i * interval
            pause = due - time.perf_counter() - SPIN
            if pause > 0:
                time.sleep(pause)
            while time.perf_counter() < due:
                pass
            self._send()
            self.result.latencies.append(time.perf_counter() - due)


def interleaved(pacers: dict[str, Pacer], seconds: float, chunk: float = 1.0) -> dict[str, Paced]:
    """Pace every server for ``seconds`` in total, in alternating chunks."""
    remaining = seconds
    while remaining > 1e-9:
        step = min(chunk, remaining)
        for pacer in pacers.values():
            pacer.run(step)
        remaining -= step
    return {name: pacer.result for name, pacer in pacers.items()}

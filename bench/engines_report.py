"""The engines benchmark's figures and its section of BENCHMARKS.md (pure: no processes, no I/O).

The section sits between two markers so that either benchmark can rewrite BENCHMARKS.md without
losing the other's figures: `scripts/bench` carries the section over, `python -m bench.engines`
replaces only the section.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

START: Final = "<!-- engines: written by python -m bench.engines -->"
END: Final = "<!-- engines: end -->"
ENGINES: Final = ("none", "webhook", "policy")
TITLES: Final = {
    "none": "no injection",
    "webhook": "webhook (`envoy-injector serve`)",
    "policy": "policy (MutatingAdmissionPolicy)",
}


@dataclass
class Tally:
    """What creating one engine's Pods cost, summed over the rounds."""

    latencies: list[float] = field(default_factory=list)  # seconds, one per Pod
    apiserver_cpu: float = 0.0  # seconds
    webhook_cpu: float = 0.0  # seconds

    @property
    def pods(self) -> int:
        return len(self.latencies)

    def percentile_ms(self, p: float) -> float:
        """Nearest-rank percentile of the creation latencies, in milliseconds."""
        ordered = sorted(self.latencies)
        rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100)
        return ordered[int(rank) - 1] * 1000

    def per_pod_ms(self, seconds: float) -> float:
        return seconds * 1000 / self.pods

    @property
    def total_cpu(self) -> float:
        return self.apiserver_cpu + self.webhook_cpu


@dataclass
class Run:
    command: str
    date: str
    clients: int
    rounds: int
    machine: Mapping[str, str]
    tallies: Mapping[str, Tally]
    rounds_cpu: Mapping[str, Sequence[float]]  # API server CPU ms per Pod, each round


def _ratio(value: float, base: float) -> str:
    return f"{value / base:.2f} x" if base > 0 else "n/a"


def table(run: Run) -> list[str]:
    base = run.tallies["none"]
    rows = [
        "| engine | Pods | p50 create | p99 create | API server CPU per Pod (each round) "
        "| webhook CPU per Pod | p50 vs none | p99 vs none | CPU per Pod vs none |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for engine in ENGINES:
        t = run.tallies[engine]
        rounds = ", ".join(f"{ms:.1f}" for ms in run.rounds_cpu[engine])
        hook = f"{t.per_pod_ms(t.webhook_cpu):.2f} ms" if engine == "webhook" else "—"
        rows.append(
            f"| {TITLES[engine]} | {t.pods} | {t.percentile_ms(50):.1f} ms "
            f"| {t.percentile_ms(99):.1f} ms | **{t.per_pod_ms(t.apiserver_cpu):.2f} ms** "
            f"({rounds}) | {hook} "
            f"| {_ratio(t.percentile_ms(50), base.percentile_ms(50))} "
            f"| {_ratio(t.percentile_ms(99), base.percentile_ms(99))} "
            f"| {_ratio(t.total_cpu / t.pods, base.total_cpu / base.pods)} |"
        )
    return rows


def section(run: Run) -> str:
    pods = run.tallies["none"].pods
    machine = "; ".join(f"{key}: {value}" for key, value in run.machine.items())
    lines = [
        START,
        "## Injection engines: no injection, webhook, policy",
        "",
        f"Written by `{run.command}` on {run.date}. Not part of `scripts/bench` or CI.",
        "",
        f"- **Machine**: {machine}",
        "- **Method**: one local control plane (etcd, kube-apiserver and kube-controller-manager "
        "v1.36.3 from tests/support/cluster, no node) with the injector installed as shipped "
        "(`manifests/injector`, the webhook process `envoy-injector serve --log-format json` on "
        "a loopback address behind the shipped Service reference, as the e2e suite runs it) and "
        "the policies of `manifests/policy`. Three namespaces: one unlabelled, one served by the "
        "webhook only, one by the policy only (an extra namespace label splits the two "
        "selectors). "
        f"{pods} bare Pods per engine are created (real creates, not dry runs) by "
        f"{run.clients} clients, each on its own keep-alive connection to the API server, in "
        f"{run.rounds} interleaved rounds (each round runs the engines in a rotated order), "
        "after a warm-up that is not measured. Every Pod of the webhook and policy rows is "
        "checked to have come back with the sidecar, and every Pod of the first row without.",
        "- **Latency**: the client's time for each create (request to response), over all "
        "rounds. **CPU per Pod**: utime + stime from /proc/<pid>/stat of kube-apiserver (and of "
        "the webhook process, for its row) over each engine's creates, divided by its Pods; the "
        "API server's background work (controller-manager watches, leases) falls on every row "
        "alike. **vs none** is each figure over the no-injection row's; the CPU ratio uses "
        "the API server's plus, for the webhook row, the webhook's.",
        "",
        *table(run),
        END,
    ]
    return "\n".join(lines) + "\n"


def splice(document: str, new_section: str) -> str:
    """``document`` with its engines section replaced by ``new_section`` (appended if none)."""
    if START in document and END in document:
        head, _, rest = document.partition(START)
        _, _, tail = rest.partition(END)
        return head + new_section.rstrip("\n") + tail
    return document.rstrip("\n") + "\n\n" + new_section


def carried(old_document: str) -> str | None:
    """The engines section of ``old_document``, for a rewrite that should keep it."""
    if START not in old_document or END not in old_document:
        return None
    _, _, rest = old_document.partition(START)
    inner, _, _ = rest.partition(END)
    return START + inner + END + "\n"

"""Many Pod creations through the API server from concurrent clients, and the API server's own
latency histogram for our webhook."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.conftest import SIDECAR, WEBHOOK_NAME, containers, pod
from tests.support.cluster import kube
from tests.support.cluster.controlplane import ControlPlane

HISTOGRAM = "apiserver_admission_webhook_admission_duration_seconds"


@dataclass(frozen=True)
class Result:
    name: str
    status: int
    containers: tuple[str, ...] = ()
    message: str = ""

    @property
    def injected(self) -> bool:
        return self.status == 201 and SIDECAR in self.containers


def create_pods(
    plane: ControlPlane,
    namespace: str,
    names: list[str],
    *,
    clients: int = 8,
    on_result: Callable[[Result], None] | None = None,
) -> dict[str, Result]:
    """Each of `clients` threads has its own connection and takes names until none is left."""
    todo: queue.SimpleQueue[str] = queue.SimpleQueue()
    for name in names:
        todo.put(name)
    results: dict[str, Result] = {}
    lock = threading.Lock()
    path = f"/api/v1/namespaces/{namespace}/pods"

    def client() -> None:
        with kube.api_client(plane) as api:
            while True:
                try:
                    name = todo.get_nowait()
                except queue.Empty:
                    return
                response = api.post(path, json=pod(name))
                body = response.json()
                if response.status_code == 201:
                    result = Result(name, 201, tuple(containers(body)))
                else:
                    result = Result(name, response.status_code, message=body.get("message", ""))
                with lock:
                    results[name] = result
                if on_result is not None:
                    on_result(result)

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not any(thread.is_alive() for thread in threads), "a client hung"
    return results


def webhook_buckets(api: httpx.Client) -> dict[float, float]:
    """Cumulative bucket counts of the API server's admission latency for our webhook's
    successful admit calls on Pod CREATE (upper bound in seconds -> count)."""
    text = api.get("/metrics").text
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        if family.name != HISTOGRAM:
            continue
        for sample in family.samples:
            labels = sample.labels
            if (
                sample.name == f"{HISTOGRAM}_bucket"
                and labels.get("name") == WEBHOOK_NAME
                and labels.get("type") == "admit"
                and labels.get("operation") == "CREATE"
                and labels.get("rejected") == "false"
            ):
                bound = float(labels["le"])
                buckets[bound] = buckets.get(bound, 0.0) + sample.value
    return buckets


def quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """Prometheus's histogram_quantile over the increase between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0.0
    if total <= 0:
        return float("nan")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower

"""Load through the real API server: 8 clients, 400 Pods (Pending: there is no node)."""

from __future__ import annotations

import collections
import datetime
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.e2e import load
from tests.e2e.conftest import WEBHOOK_NAME, Injector, wait_until_called
from tests.e2e.test_injection import webhook_calls
from tests.support import server
from tests.support.cluster import kube
from tests.support.cluster.controlplane import ControlPlane

PODS = 400
CLIENTS = 8


@pytest.mark.timeout(600)
def test_400_pods_from_8_clients_are_all_injected(
    webhook: server.Server,
    control_plane: ControlPlane,
    api: httpx.Client,
    namespace: Callable[..., str],
    figures: list[str],
) -> None:
    ns = namespace("load", **{"envoy-inject": "enabled"})
    before = load.webhook_buckets(api)
    started = time.monotonic()
    results = load.create_pods(
        control_plane, ns, [f"p{i:03d}" for i in range(PODS)], clients=CLIENTS
    )
    elapsed = time.monotonic() - started
    after = load.webhook_buckets(api)

    assert len(results) == PODS
    failed = [r for r in results.values() if not r.injected]
    assert not failed, failed[:5]
    p50, p99 = (load.quantile(before, after, q) for q in (0.5, 0.99))
    bounds = sorted(after)
    upper = next(b for b in bounds if b >= p99)
    lower = max([b for b in bounds if b < upper], default=0.0)
    figures.append(
        f"load: {PODS} Pods from {CLIENTS} clients in {elapsed:.1f} s "
        f"({PODS / elapsed:.0f}/s), all injected; API server's {load.HISTOGRAM} for "
        f"{WEBHOOK_NAME}: p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms (interpolated in "
        f"its bucket ({lower:g}, {upper:g}] s)"
    )


@dataclass(frozen=True)
class SigtermRun:
    results: dict[str, load.Result]
    before: set[str]  # Pods the webhook answered before the signal
    after: set[str]  # ... and after it
    elapsed: float
    exit_code: int

    @property
    def created(self) -> set[str]:
        return {r.name for r in self.results.values() if r.status == 201}

    @property
    def refused(self) -> set[str]:
        return set(self.results) - self.created


@pytest.fixture(scope="module")
def sigterm_run(
    installed: Injector, probe_namespace: str, control_plane: ControlPlane, kubectl: kube.Kubectl
) -> Iterator[SigtermRun]:
    """8 clients create 400 Pods; the webhook gets SIGTERM once a quarter of them are done."""
    ns = f"sigterm-{os.getpid()}"
    kubectl("create", "namespace", ns)
    kubectl("label", "namespace", ns, "envoy-inject=enabled")
    kube.eventually(
        lambda: kubectl("-n", ns, "get", "serviceaccount", "default", check=False).returncode == 0,
        f"ServiceAccount {ns}/default",
    )
    signalled_at: list[float] = []
    lock = threading.Lock()
    finished = [0]
    with installed.webhook() as running:
        wait_until_called(installed, probe_namespace)

        def progress(_result: load.Result) -> None:
            with lock:
                finished[0] += 1
                if finished[0] == PODS // 4 and not signalled_at:
                    signalled_at.append(time.time())
                    running.process.send_signal(signal.SIGTERM)

        started = time.monotonic()
        results = load.create_pods(
            control_plane, ns, [f"p{i:03d}" for i in range(PODS)], clients=CLIENTS,
            on_result=progress,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        exit_code = running.process.wait(timeout=30)
        calls = [c for c in webhook_calls(running) if c.get("namespace") == ns]
    (signal_time,) = signalled_at
    # The webhook logs each review once it handed its answer to the server (ms resolution).
    before = {str(c["pod"]) for c in calls if _epoch(str(c["time"])) < signal_time - 0.001}
    after = {str(c["pod"]) for c in calls} - before
    yield SigtermRun(results, before, after, elapsed, exit_code)
    kubectl("delete", "namespace", ns, "--wait=false", check=False)


@pytest.mark.timeout(600)
def test_sigterm_mid_load_lets_every_call_answered_before_it_succeed_and_refuses_the_rest(
    sigterm_run: SigtermRun, figures: list[str]
) -> None:
    run = sigterm_run
    created, refused = run.created, run.refused
    assert len(created) + len(refused) == len(run.results) == PODS
    assert all(run.results[name].injected for name in created)
    assert run.before <= created, [run.results[name] for name in sorted(run.before - created)]
    assert created <= run.before | run.after, sorted(created - run.before - run.after)
    assert refused, "the signal came too late to refuse anything"
    messages = {run.results[name].message for name in refused}
    assert all(f'failed calling webhook "{WEBHOOK_NAME}"' in m for m in messages), messages
    assert run.exit_code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after draining
    dropped = sorted(run.after - created)
    causes = collections.Counter(run.results[n].message.rsplit(": ", 1)[-1] for n in refused)
    kinds = [f"{count} {cause}" for cause, count in sorted(causes.items())]
    figures.append(
        f"SIGTERM after {PODS // 4} of {PODS} results ({run.elapsed:.1f} s in all): "
        f"{len(created)} created, all injected ({len(run.before)} answered before the signal, "
        f"{len(created - run.before)} drained after it); {len(refused)} refused by "
        f"failurePolicy Fail ({', '.join(kinds)}); {len(dropped)} answered by the webhook after "
        f"the signal but never received by the API server; webhook exit {run.exit_code}"
    )


def test_sigterm_closes_no_connection_under_a_review(sigterm_run: SigtermRun) -> None:
    """Refusals after the signal are all clean ones (the listener is closed, nothing else), and
    no answer the webhook computed is lost: the server drains (webhook/shutdown.py) before it
    closes a connection."""
    messages = [sigterm_run.results[name].message for name in sorted(sigterm_run.refused)]
    unclean = [m for m in messages if not m.endswith("connect: connection refused")]
    assert (sorted(sigterm_run.after - sigterm_run.created), unclean[:3]) == ([], [])


def _epoch(stamp: str) -> float:
    """The webhook's log time, 2026-01-02T03:04:05.678Z, as seconds since the epoch."""
    return (
        datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
        .replace(tzinfo=datetime.UTC)
        .timestamp()
    )

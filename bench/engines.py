"""python -m bench.engines (also `scripts/bench --engines`): what creating a Pod costs with no
injection, with the webhook and with the admission policy, on one real kube-apiserver.

Starts the test control plane (tests/support/cluster), installs manifests/injector with the
webhook on loopback (as the e2e suite does) and the policies of manifests/policy, then creates
the same bare Pods three ways in interleaved rounds. Writes its section of BENCHMARKS.md (the
rest of the file is left as it is) and prints it. Takes a few minutes; never part of CI.

Exit status: 0 done; 1 the benchmark failed (a Pod refused or injected by the wrong engine, the
control plane did not start); 2 bad usage.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import functools
import os
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
import yaml

from bench import procs, report
from bench.engines_report import ENGINES, Run, Tally, section, splice
from tests.support import server, tools
from tests.support.cluster import binaries, controlplane, engine_split, install, kube, record

REPO: Final = Path(__file__).resolve().parents[1]
OUTPUT: Final = REPO / "BENCHMARKS.md"
LABEL: Final = "bench-engine"  # splits the webhook's and the policy's namespace selectors
SIDECAR: Final = "envoy-sidecar"
WARMUP: Final = 10  # Pods per engine before measuring: connections, caches, CEL compilation


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.engines",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pods", type=int, default=300, help="Pods per engine (default 300)")
    p.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="after measuring, write a Go CPU profile of kube-apiserver per engine to "
        "DIR/<engine>.pprof, each over --pods more Pods (read with `go tool pprof -top`)",
    )
    p.add_argument(
        "--output",
        type=Path,
        default=OUTPUT,
        help=f"the Markdown file whose engines section is rewritten (default {OUTPUT.name}); "
        "'-' prints only",
    )
    return p


def _progress(message: str) -> None:
    print(f"bench.engines: {message}", file=sys.stderr, flush=True)  # noqa: T201


def _bare_pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "example/app:1.0"}]},
    }


def _injected(body: dict[str, Any]) -> bool:
    spec = body["spec"]
    return any(c["name"] == SIDECAR for c in spec.get("initContainers", []) + spec["containers"])


class Cluster:
    """The control plane with both engines installed and one namespace per engine."""

    def __init__(
        self,
        stack: ExitStack,
        workdir: Path,
        progress: Callable[[str], None],
        *,
        profiling: bool = False,
    ) -> None:
        directory = record.clusters_root() / f"bench-engines-{os.getpid()}"
        progress("starting the control plane (tests/support/cluster)")
        found = binaries.locate(get=True)
        extra = ["--profiling=true"] if profiling else []  # the last of a repeated flag wins
        try:
            self.plane = controlplane.start(
                directory, found, owner=os.getpid(), apiserver_args=extra
            )
        finally:
            stack.callback(record.tear_down, directory)
        self.apiserver = next(
            e["pid"] for e in record.Record(directory).processes() if e["name"] == "kube-apiserver"
        )
        self.kubectl = kube.Kubectl(str(tools.kubectl()), self.plane.kubeconfig)
        progress("installing manifests/injector and manifests/policy")
        host = install.loopback_address()
        tls = install.install(self.kubectl, host, workdir)
        # The webhook skips bench-engine=policy namespaces; the policy serves only those.
        stack.enter_context(engine_split.split(self.kubectl, LABEL, manager="bench"))
        config = workdir / "config.yaml"
        config.write_text(self._shipped_config(), encoding="utf-8")
        self.webhook = stack.enter_context(
            server.running_server(
                workdir,
                files=tls,
                host=host,
                port=443,
                env={"ENVOY_INJECTOR_RELOAD_INTERVAL": "10"},  # the production default
                args=("--config", str(config), "--log-format", "json"),
            )
        )
        self.namespaces = {engine: f"bench-{engine}" for engine in ENGINES}
        for engine, name in self.namespaces.items():
            self.kubectl("create", "namespace", name)
            if engine != "none":
                self.kubectl(
                    "label", "namespace", name, "envoy-inject=enabled", f"{LABEL}={engine}"
                )
        with kube.api_client(self.plane) as api:
            for engine, name in self.namespaces.items():
                ready = functools.partial(self._probe, api, name, engine)
                kube.eventually(ready, f"the {engine} namespace ready", timeout=60)

    def _shipped_config(self) -> str:
        built = self.kubectl("kustomize", str(REPO / "manifests" / "injector")).stdout
        objects = [o for o in yaml.safe_load_all(built) if o]
        (configmap,) = [o for o in objects if o["kind"] == "ConfigMap"]
        return str(configmap["data"]["config.yaml"])

    def _probe(self, api: httpx.Client, namespace: str, engine: str) -> bool:
        response = api.post(
            f"/api/v1/namespaces/{namespace}/pods",
            params={"dryRun": "All"},
            json=_bare_pod("probe"),
        )
        return response.status_code == 201 and _injected(response.json()) == (engine != "none")


@contextmanager
def _clients(plane: controlplane.ControlPlane, count: int) -> Iterator[list[httpx.Client]]:
    clients = [kube.api_client(plane) for _ in range(count)]
    try:
        yield clients
    finally:
        for c in clients:
            c.close()


def _create(
    clients: list[httpx.Client], namespace: str, names: Sequence[str], engine: str
) -> list[float]:
    """Create ``names`` in ``namespace``, spread over the clients; each create's seconds."""

    def work(client: httpx.Client, mine: Sequence[str]) -> list[float]:
        took = []
        for name in mine:
            start = time.perf_counter()
            response = client.post(f"/api/v1/namespaces/{namespace}/pods", json=_bare_pod(name))
            took.append(time.perf_counter() - start)
            if response.status_code != 201:
                raise RuntimeError(f"{namespace}/{name}: {response.status_code} {response.text}")
            if _injected(response.json()) != (engine != "none"):
                raise RuntimeError(f"{namespace}/{name}: the {engine} row got the wrong Pod")
        return took

    n = len(clients)
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        parts = pool.map(work, clients, [names[i::n] for i in range(n)])
        return [seconds for part in parts for seconds in part]


def measure(
    cluster: Cluster, pods: int, clients: int, rounds: int, progress: Callable[[str], None]
) -> Run:
    tallies = {engine: Tally() for engine in ENGINES}
    rounds_cpu: dict[str, list[float]] = {engine: [] for engine in ENGINES}
    webhook_pid = cluster.webhook.process.pid
    sizes = [pods // rounds + (1 if r < pods % rounds else 0) for r in range(rounds)]
    with _clients(cluster.plane, clients) as pool:
        for engine in ENGINES:
            names = [f"warm-{i}" for i in range(WARMUP)]
            _create(pool, cluster.namespaces[engine], names, engine)
        for r, size in enumerate(sizes):
            for engine in ENGINES[r % 3 :] + ENGINES[: r % 3]:
                progress(f"round {r + 1}/{rounds}: {size} Pods, {engine}")
                names = [f"pod-{r}-{i}" for i in range(size)]
                api0, hook0 = procs.cpu_seconds(cluster.apiserver), procs.cpu_seconds(webhook_pid)
                took = _create(pool, cluster.namespaces[engine], names, engine)
                api = procs.cpu_seconds(cluster.apiserver) - api0
                hook = procs.cpu_seconds(webhook_pid) - hook0
                tally = tallies[engine]
                tally.latencies += took
                tally.apiserver_cpu += api
                tally.webhook_cpu += hook if engine == "webhook" else 0.0
                rounds_cpu[engine].append(api * 1000 / size)
    return Run(
        command="",
        date="",
        clients=clients,
        rounds=rounds,
        machine={},
        tallies=tallies,
        rounds_cpu=rounds_cpu,
    )


def profile(
    cluster: Cluster, pods: int, clients: int, into: Path, progress: Callable[[str], None]
) -> None:
    """One kube-apiserver CPU profile per engine, taken while ``pods`` more Pods are created."""
    into.mkdir(parents=True, exist_ok=True)
    with _clients(cluster.plane, clients) as pool, kube.api_client(cluster.plane) as api:
        for engine in ENGINES:
            names = [f"profile-{i}" for i in range(pods)]
            # The profile runs for a fixed time: first learn how long the Pods take, then
            # profile while creating as many again (the profile's length is rounded up).
            start = time.monotonic()
            _create(pool, cluster.namespaces[engine], [f"time-{n}" for n in names], engine)
            seconds = max(1, round(time.monotonic() - start))
            progress(f"profiling kube-apiserver for {seconds} s: {pods} Pods, {engine}")
            with concurrent.futures.ThreadPoolExecutor(1) as one:
                taken = one.submit(
                    api.get,
                    "/debug/pprof/profile",
                    params={"seconds": seconds},
                    timeout=seconds + 30,
                )
                _create(pool, cluster.namespaces[engine], names, engine)
                response = taken.result()
            response.raise_for_status()
            (into / f"{engine}.pprof").write_bytes(response.content)
    progress(f"profiles written to {into}: `go tool pprof -top <file>`")


def _machine(before: float) -> dict[str, str]:
    described = report.machine(REPO, None, None)
    keep = ("CPU", "Kernel", "Python", "Commit")
    out = {key: value for key, value in described.items() if key in keep}
    out["Load average (1 min)"] = (
        f"{before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} "
        "CPUs (nothing pinned: the API server, etcd, the webhook and the clients share them)"
    )
    return out


def main(argv: Sequence[str] | None = None, progress: Callable[[str], None] = _progress) -> int:
    args = _parser().parse_args(argv)
    if args.pods < args.rounds or args.clients < 1 or args.rounds < 1:
        progress("error: --pods must be at least --rounds, --clients and --rounds at least 1")
        return 2
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        ["python", "-m", "bench.engines", *(argv if argv is not None else sys.argv[1:])]
    )
    load = os.getloadavg()[0]
    try:
        with tempfile.TemporaryDirectory(prefix="bench-engines-") as tmp, ExitStack() as stack:
            cluster = Cluster(stack, Path(tmp), progress, profiling=args.profile is not None)
            run = measure(cluster, args.pods, args.clients, args.rounds, progress)
            if args.profile is not None:
                profile(cluster, args.pods, args.clients, args.profile, progress)
    except (
        RuntimeError,
        TimeoutError,
        OSError,
        httpx.HTTPError,
        binaries.Missing,
        kube.KubectlError,
    ) as exc:
        progress(f"error: {exc}")
        return 1
    run.command = command
    run.date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    run.machine = _machine(load)
    text = section(run)
    print(text)  # noqa: T201 - the report is the output
    if str(args.output) != "-":
        old = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        args.output.write_text(splice(old, text), encoding="utf-8")
        progress(f"wrote the engines section of {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

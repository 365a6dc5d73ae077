"""Drive a server with wrk: POST a body over HTTPS keep-alive connections, read the figures.

wrk's Lua ``done()`` hook prints the summary and the latency percentiles as one JSON line, so
nothing depends on wrk's human-readable output.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench import client, procs

MARKER: Final = "BENCH_RESULT "

_LUA: Final = """\
wrk.method = "POST"
wrk.path = "/mutate"
wrk.headers["Content-Type"] = "application/json"
local file = assert(io.open(%(path)s, "rb"))
wrk.body = file:read("*a")
file:close()

local function num(x)
  if x ~= x or x == math.huge or x == -math.huge then return 0 end
  return x
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '%(marker)s{"duration_us":%%d,"requests":%%d,"bytes":%%d,' ..
    '"errors":{"connect":%%d,"read":%%d,"write":%%d,"status":%%d,"timeout":%%d},' ..
    '"latency_us":{"mean":%%.1f,"stdev":%%.1f,"max":%%d,' ..
    '"p50":%%d,"p90":%%d,"p99":%%d,"p999":%%d}}\\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    num(latency.mean), num(latency.stdev), latency.max,
    latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9)))
end
"""


@dataclass(frozen=True)
class Run:
    """One wrk run, plus the server CPU seconds it cost."""

    seconds: float
    requests: int
    errors: dict[str, int]
    latency_us: dict[str, float]
    server_cpu: float

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def lua_script(directory: Path, body_file: Path) -> Path:
    """A wrk script that POSTs ``body_file`` to /mutate and reports JSON in ``done()``."""
    path = directory / f"{body_file.stem}.lua"
    # A JSON string of an ASCII path is a valid Lua string literal.
    path.write_text(_LUA % {"path": json.dumps(str(body_file)), "marker": MARKER})
    return path


def executable() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk is not installed; scripts/bench installs it (apt-get install wrk)")
    return found


def run(
    server: procs.Server,
    script: Path,
    *,
    seconds: int,
    connections: int,
    threads: int,
    cpu: int | None,
) -> Run:
    """wrk for ``seconds`` on ``connections`` keep-alive connections; the server's CPU around it."""
    argv = procs.pinned(
        cpu,
        [
            executable(),
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            f"https://{client.HOST}:{server.port}/mutate",
        ],
    )
    server.check_alive()
    before = procs.cpu_seconds(server.pid)
    done = subprocess.run(  # noqa: S603 - fixed argv: taskset and wrk
        argv, capture_output=True, text=True, timeout=seconds + 60, check=False
    )
    after = procs.cpu_seconds(server.pid)
    server.check_alive()
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    data: dict[str, Any] = json.loads(line.removeprefix(MARKER))
    return Run(
        seconds=data["duration_us"] / 1e6,
        requests=int(data["requests"]),
        errors={k: int(v) for k, v in data["errors"].items()},
        latency_us={k: float(v) for k, v in data["latency_us"].items()},
        server_cpu=after - before,
    )

"""The injected container, run for real: the exact command and args the injector produced
(paths remapped to a temp dir, ports to free ones) with the Envoy config the controller writes
from the shipped operator config, carrying a request from the proxy port to a small app on
loopback."""

from __future__ import annotations

import http.server
import io
import json
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests import documents
from tests.support.envoy import envoy_binary, free_port
from webhook import settings
from webhook.cli import inject_documents

pytestmark = pytest.mark.envoy
REPO = Path(__file__).resolve().parents[2]
SIDECAR = REPO / "manifests" / "sidecar"


def _expand(text: str, env: Mapping[str, str]) -> str:
    """The kubelet's $(VAR) expansion in command/args: defined names expand, $$ escapes."""

    def sub(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", sub, text)


def _injected_sidecar() -> dict[str, Any]:
    ctx = settings.context_from_config(None, own_namespace="envoy-injector")
    docs, failures = inject_documents((SIDECAR / "deployment.yaml").read_text(), ctx, io.StringIO())
    assert failures == 0
    (deployment,) = docs
    (sidecar,) = [
        c
        for c in deployment["spec"]["template"]["spec"]["containers"]
        if c["name"] == "envoy-sidecar"
    ]
    return dict(sidecar)


class _App(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        payload = json.dumps(
            {
                "app": "demo",
                "path": self.path,
                "via": self.headers.get("x-envoy-expected-rq-timeout-ms"),
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def app_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _remapped_config(tmp: Path, *, proxy: int, app: int, admin: int) -> Path:
    config = yaml.safe_load(documents.delivered_envoy_config().data["envoy.yaml"])
    config["admin"]["address"]["socket_address"]["port_value"] = admin
    (listener,) = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 10000}
    listener["address"]["socket_address"] = {"address": "127.0.0.1", "port_value": proxy}
    (cluster,) = config["static_resources"]["clusters"]
    (endpoint,) = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    address = endpoint["endpoint"]["address"]["socket_address"]
    assert address == {"address": "127.0.0.1", "port_value": 8080}
    address["port_value"] = app
    etc = tmp / "etc" / "envoy"
    etc.mkdir(parents=True)
    path = etc / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    return tmp


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_the_injected_sidecar_runs_with_its_exact_args_and_proxies_to_the_app(
    tmp_path: Path, app_port: int
) -> None:
    sidecar = _injected_sidecar()
    assert sidecar["ports"][0]["containerPort"] == 10000
    proxy, admin = free_port(), free_port()
    root = _remapped_config(tmp_path, proxy=proxy, app=app_port, admin=admin)
    env = {"POD_NAME": "demo-app-7c9b5-x2k8q", "POD_NAMESPACE": "demo"}
    declared = {e["name"] for e in sidecar["env"]}
    assert {"POD_NAME", "POD_NAMESPACE"} <= declared
    argv = [_expand(a, env) for a in [*sidecar["command"], *sidecar["args"]]]
    assert argv[0] == "/usr/local/bin/envoy"
    mount = sidecar["volumeMounts"][0]["mountPath"]
    argv = [str(envoy_binary())] + [
        a.replace(mount, str(root / mount.lstrip("/"))) for a in argv[1:]
    ]
    # Only so that parallel Envoys on one test machine do not share memory; not in the Pod.
    argv += ["--disable-hot-restart", "--use-dynamic-base-id"]
    log = (tmp_path / "envoy.log").open("wb")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while _get_status(f"http://127.0.0.1:{admin}/ready") != 200:
            assert process.poll() is None, (tmp_path / "envoy.log").read_text()
            assert time.monotonic() < deadline, "envoy never became ready"
            time.sleep(0.05)
        status, payload = _get(f"http://127.0.0.1:{proxy}/orders?id=7")
        assert status == 200
        answer = json.loads(payload)
        assert answer["app"] == "demo"
        assert answer["path"] == "/orders?id=7"
        assert answer["via"] is not None  # the request really went through Envoy
        _, info = _get(f"http://127.0.0.1:{admin}/server_info")
        node = json.loads(info)["command_line_options"]
        assert node["service_node"] == "demo-app-7c9b5-x2k8q"
        assert node["service_cluster"] == "demo-app"
        assert node["concurrency"] == 2
        assert node["log_level"] == "info"
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


def _get_status(url: str) -> int:
    try:
        return _get(url)[0]
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0

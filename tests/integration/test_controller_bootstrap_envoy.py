"""What the controller writes, run by real Envoy on the ports the injected container declares.

The operator's config (the shipped one, with ``sidecar:`` ports moved to free ones) goes through
the webhook's injection and through the controller's target; Envoy then loads the controller's
``envoy.yaml`` and must carry a request from the container's declared port to the app on the
declared app port, with its admin interface on the declared admin port.
"""

from __future__ import annotations

import http.server
import io
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import config
from tests.manifests import documents
from tests.support import envoy
from webhook import settings
from webhook.cli import inject_documents

pytestmark = pytest.mark.envoy
POD = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {"name": "shop-1", "namespace": "shop", "labels": {"app": "shop"}},
    "spec": {"containers": [{"name": "app", "image": "shop:1"}]},
}


class _App(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"app saw {self.path} via {self.headers.get('x-request-id') is not None}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def app() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _operator_config(proxy: int, app: int, admin: int) -> str:
    shipped = documents.one(
        documents.objects(documents.INJECTOR), "ConfigMap", "envoy-injector-config"
    )
    doc: dict[str, Any] = yaml.safe_load(shipped["data"]["config.yaml"])
    doc["sidecar"].update(proxyPort=proxy, appPort=app, adminPort=admin)
    return yaml.safe_dump(doc)


def _declared(text: str) -> dict[str, int]:
    context = settings.context_from_config(text, own_namespace="envoy-injector")
    docs, failures = inject_documents(yaml.safe_dump(POD), context, io.StringIO())
    assert failures == 0
    (sidecar,) = [c for c in docs[0]["spec"]["containers"] if c["name"] == "envoy-sidecar"]
    env = {e["name"]: e.get("value") for e in sidecar["env"]}
    return {
        "proxy": sidecar["ports"][0]["containerPort"],
        "admin": int(env["ENVOY_ADMIN_PORT"]),
        "app": int(env["ENVOY_APP_PORT"]),
    }


def test_the_written_bootstrap_validates_and_carries_traffic_on_the_declared_ports(
    tmp_path: Path, app: int
) -> None:
    text = _operator_config(envoy.free_port(), app, envoy.free_port())
    ports = _declared(text)
    target = config.target_from_config(text, own_namespace="envoy-injector")
    written: dict[str, Any] = yaml.safe_load(target.data["envoy.yaml"])
    (listener,) = written["static_resources"]["listeners"]
    # The only change: listen on loopback, not on every interface of the test machine.
    assert listener["address"]["socket_address"]["address"] == "0.0.0.0"
    listener["address"]["socket_address"]["address"] = "127.0.0.1"
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(written))
    envoy.validate_config(path)
    with envoy.running_envoy(
        path, admin_port=ports["admin"], log_path=tmp_path / "envoy.log"
    ) as proxy:
        url = f"http://127.0.0.1:{ports['proxy']}/orders?id=7"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert response.status == 200
            assert response.read() == b"app saw /orders?id=7 via True"  # Envoy adds the id
        assert proxy.stats(filter_regex="^cluster.local_app.upstream_rq_200$") == {
            "cluster.local_app.upstream_rq_200": 1
        }
        assert ports["app"] == app

"""The plain sidecar example (manifests/sidecar) fits the injector's defaults and really proxies.

The walk-through ships no Envoy configuration: its labelled namespace gets the ConfigMap the
controller writes from the shipped operator config, and that configuration passes ``envoy --mode
validate`` with the real binary, and carries a request from the listener to a small HTTP app on
loopback (ports remapped to free ones, nothing else changed).
"""

from __future__ import annotations

import copy
import http.server
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, SIDECAR, Object
from tests.support import envoy
from webhook import reconcile

OBJECTS: Final = documents.objects(SIDECAR)
APP_TEXT: Final = b"hello from the test app"


def sidecar_defaults() -> dict[str, Any]:
    config_map = documents.one(documents.objects(INJECTOR), "ConfigMap", "envoy-injector-config")
    defaults: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])["sidecar"]
    return defaults


def envoy_config() -> Object:
    """The ``envoy.yaml`` the controller writes into the walk-through's namespace."""
    config: Object = yaml.safe_load(documents.delivered_envoy_config().data["envoy.yaml"])
    return config


def listener_address(config: Object) -> Object:
    (listener,) = config["static_resources"]["listeners"]
    address: Object = listener["address"]["socket_address"]
    return address


def app_address(config: Object) -> Object:
    (cluster,) = config["static_resources"]["clusters"]
    assert cluster["name"] == "local_app"
    assert cluster["type"] == "STATIC"
    (endpoints,) = cluster["load_assignment"]["endpoints"]
    (endpoint,) = endpoints["lb_endpoints"]
    address: Object = endpoint["endpoint"]["address"]["socket_address"]
    return address


def app_pod() -> Object:
    spec: Object = documents.one(OBJECTS, "Deployment", "demo-app")["spec"]["template"]["spec"]
    return spec


def test_demo_namespace_opts_in_to_injection() -> None:
    namespace = documents.one(OBJECTS, "Namespace", "demo")
    assert namespace["metadata"]["labels"]["envoy-inject"] == "enabled"


def test_demo_deployment_has_no_sidecar_of_its_own() -> None:
    deployment = documents.one(OBJECTS, "Deployment", "demo-app")
    assert deployment["spec"]["template"]["metadata"]["labels"]["app"] == "demo-app"
    names = [c["name"] for c in app_pod()["containers"]]
    assert names == ["app"]
    assert "initContainers" not in app_pod()
    assert not any("envoy" in str(c.get("image")) for c in app_pod()["containers"])


def test_app_listens_on_the_injectors_app_port() -> None:
    (app,) = app_pod()["containers"]
    ports = [p["containerPort"] for p in app["ports"]]
    assert ports == [sidecar_defaults()["appPort"]]
    assert f"-listen=:{sidecar_defaults()['appPort']}" in app["args"]


def test_service_sends_traffic_to_the_sidecar_port_not_the_app() -> None:
    service = documents.one(OBJECTS, "Service", "demo-app")
    (port,) = service["spec"]["ports"]
    assert port == {
        "name": "envoy-http",
        "port": 80,
        "targetPort": sidecar_defaults()["proxyPort"],
        "protocol": "TCP",
    }
    assert service["spec"]["selector"] == {"app": "demo-app"}


def test_the_walk_through_ships_no_config_map_the_controller_writes() -> None:
    """Applying it after the injector must not take over or fight the controller's ConfigMap."""
    assert documents.find(OBJECTS, "ConfigMap") == []
    assert not [
        m for m in OBJECTS if reconcile.MANAGED_BY_LABEL in m.obj["metadata"].get("labels", {})
    ]


def test_the_controller_delivers_the_config_map_the_injector_mounts_by_default() -> None:
    delivered = documents.delivered_envoy_config()
    assert delivered.name == sidecar_defaults()["configMap"]
    assert set(delivered.data) == {"envoy.yaml"}
    namespace = documents.one(OBJECTS, "Namespace", "demo")
    configmaps = documents.find(OBJECTS, "ConfigMap")
    (action,) = reconcile.plan([namespace], configmaps, delivered)
    assert isinstance(action, reconcile.Create)  # neither a conflict nor nothing to do
    assert action.namespace == "demo"
    assert action.body["metadata"]["name"] == sidecar_defaults()["configMap"]
    assert action.body["data"] == dict(delivered.data)


def test_envoy_listens_on_the_proxy_port_and_keeps_admin_on_loopback() -> None:
    config = envoy_config()
    assert listener_address(config) == {
        "address": "0.0.0.0",
        "port_value": sidecar_defaults()["proxyPort"],
    }
    assert config["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": sidecar_defaults()["adminPort"],
    }


def test_envoy_routes_to_the_app_on_loopback() -> None:
    assert app_address(envoy_config()) == {
        "address": "127.0.0.1",
        "port_value": sidecar_defaults()["appPort"],
    }


@pytest.mark.envoy
def test_envoy_config_passes_envoy_validate(tmp_path: Path) -> None:
    path = tmp_path / "envoy.yaml"
    path.write_text(documents.delivered_envoy_config().data["envoy.yaml"])
    envoy.validate_config(path)


@pytest.mark.envoy
def test_envoy_validate_refuses_a_broken_config(tmp_path: Path) -> None:
    """The validation above can fail: a route to an undefined cluster is refused."""
    config = envoy_config()
    (listener,) = config["static_resources"]["listeners"]
    manager = listener["filter_chains"][0]["filters"][0]["typed_config"]
    manager["route_config"]["virtual_hosts"][0]["routes"][0]["route"]["cluster"] = "missing"
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(envoy.EnvoyConfigError):
        envoy.validate_config(path)


class _App(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(APP_TEXT)))
        self.end_headers()
        self.wfile.write(APP_TEXT)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        """Keep the test output quiet."""


@pytest.fixture
def app_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.envoy
def test_a_request_to_the_proxy_port_reaches_the_app_through_envoy(
    tmp_path: Path, app_server: int
) -> None:
    config = copy.deepcopy(envoy_config())
    admin_port, proxy_port = envoy.free_port(), envoy.free_port()
    config["admin"]["address"]["socket_address"]["port_value"] = admin_port
    listener_address(config).update(address="127.0.0.1", port_value=proxy_port)
    app_address(config)["port_value"] = app_server
    path = tmp_path / "envoy.yaml"
    path.write_text(yaml.safe_dump(config))

    with envoy.running_envoy(path, admin_port=admin_port, log_path=tmp_path / "envoy.log"):
        url = f"http://127.0.0.1:{proxy_port}/anything"
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.status == 200
            assert response.read() == APP_TEXT
            assert response.headers["x-envoy-upstream-service-time"] is not None

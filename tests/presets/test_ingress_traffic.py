"""The ingress preset's Envoy config carries real traffic on loopback.

One Envoy runs the shipped ``manifests/ingress/envoy`` config for the whole module. The
test only moves things a cluster would provide: listener and admin ports, the backend
Services' DNS names (service-a becomes two stub servers, service-b one), the mounted
files (ConfigMap and the example-com-tls Secret, laid out as the kubelet does), and the
health-check and outlier timers (seconds become fractions of a second).
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography import x509

from tests.presets.backends import StubPool, StubServer, echo_backend
from tests.presets.bootstrap import (
    LOOPBACK,
    bind_listener,
    cluster,
    point_cluster,
    set_admin_port,
    write_bootstrap,
)
from tests.presets.paths import INGRESS
from tests.presets.pki import CertificateAuthority
from tests.presets.podfiles import KubeletVolume, materialize
from tests.support.envoy import EnvoyProcess, free_port, running_envoy
from tests.support.kustomization import build

pytestmark = pytest.mark.envoy

HOST = "example.com"
TLS_SECRET = "example-com-tls"
LISTENERS = ("http", "https", "ready")


@dataclass(frozen=True)
class Ingress:
    envoy: EnvoyProcess
    ports: dict[str, int]
    ca: CertificateAuthority
    tls: KubeletVolume
    a1: StubServer
    a2: StubServer
    b1: StubServer

    def https(self, path: str, *, host: str = HOST) -> httpx.Response:
        """GET over TLS with SNI example.com, trusting only the test CA."""
        context = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        with httpx.Client(verify=context) as client:
            return client.get(
                f"https://{LOOPBACK}:{self.ports['https']}{path}",
                headers={"host": host},
                extensions={"sni_hostname": HOST},
            )

    def http(self, path: str, *, port: str = "http", host: str = HOST) -> httpx.Response:
        with httpx.Client() as client:
            return client.get(f"http://{LOOPBACK}:{self.ports[port]}{path}", headers={"host": host})

    def served_serial(self) -> int:
        """Serial number of the certificate Envoy presents on a new connection."""
        context = ssl.create_default_context(cadata=self.ca.cert_pem.decode())
        address = (LOOPBACK, self.ports["https"])
        with (
            socket.create_connection(address, timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
        assert der is not None
        return x509.load_der_x509_certificate(der).serial_number


def _fast_timers(config: dict[str, Any], name: str) -> None:
    """Shorten a cluster's health-check and outlier timers; thresholds stay as shipped.

    Envoy also batches health changes for ``update_merge_window`` (1 s by default)
    before the load balancer sees them; the test delivers them at once instead.
    """
    target = cluster(config, name)
    target.setdefault("common_lb_config", {})["update_merge_window"] = "0s"
    for check in target["health_checks"]:
        check.update(interval="0.2s", no_traffic_interval="0.2s", interval_jitter="0s")
    target["outlier_detection"].update(interval="0.2s", base_ejection_time="2s")


@pytest.fixture(scope="module")
def ingress(tmp_path_factory: pytest.TempPathFactory, stubs: StubPool) -> Iterator[Ingress]:
    root = tmp_path_factory.mktemp("ingress")
    files = materialize(build(INGRESS / "envoy"), root / "pod")
    ca = CertificateAuthority()
    tls = files.secret_volumes[TLS_SECRET]
    tls.write(ca.issue(HOST).secret_files())
    a1 = stubs.add(echo_backend("service-a-1"))
    a2 = stubs.add(echo_backend("service-a-2"))
    b1 = stubs.add(echo_backend("service-b-1"))

    config = files.load_config()
    ports = {name: free_port() for name in ("admin", *LISTENERS)}
    set_admin_port(config, ports["admin"])
    for name in LISTENERS:
        bind_listener(config, name, ports[name])
    point_cluster(config, "service-a", [a1.port, a2.port])
    point_cluster(config, "service-b", [b1.port])
    for name in ("service-a", "service-b"):
        _fast_timers(config, name)
    bootstrap = write_bootstrap(config, root / "envoy.yaml")

    with running_envoy(bootstrap, admin_port=ports["admin"], log_path=root / "envoy.log") as envoy:
        envoy.wait_for_stat("cluster.service-a.membership_healthy", lambda n: n == 2)
        envoy.wait_for_stat("cluster.service-b.membership_healthy", lambda n: n == 1)
        yield Ingress(envoy, ports, ca, tls, a1, a2, b1)


def _backend(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    backend: str = json.loads(response.content)["backend"]
    return backend


def test_example_com_api_is_routed_to_service_a(ingress: Ingress) -> None:
    response = ingress.https("/api/orders?page=2")
    assert _backend(response).startswith("service-a-")
    echoed = json.loads(response.content)
    assert echoed["path"] == "/api/orders?page=2"
    assert echoed["headers"]["x-forwarded-proto"] == ["https"]
    assert response.headers["strict-transport-security"] == "max-age=31536000"


def test_example_com_web_is_routed_to_service_b(ingress: Ingress) -> None:
    assert _backend(ingress.https("/web/index.html")) == "service-b-1"
    assert _backend(ingress.https("/web")) == "service-b-1"


@pytest.mark.parametrize("path", ["/", "/apix", "/other/api"], ids=["root", "apix", "other"])
def test_paths_outside_api_and_web_get_404(ingress: Ingress, path: str) -> None:
    assert ingress.https(path).status_code == 404


def test_unknown_host_gets_404_over_https_and_http(ingress: Ingress) -> None:
    before = ingress.a1.hits() + ingress.a2.hits() + ingress.b1.hits()
    assert ingress.https("/api/orders", host="unknown.example.org").status_code == 404
    assert ingress.http("/api/orders", host="unknown.example.org").status_code == 404
    assert ingress.a1.hits() + ingress.a2.hits() + ingress.b1.hits() == before


def test_tls_certificate_verifies_against_the_test_ca_and_no_other(ingress: Ingress) -> None:
    assert ingress.https("/api/x").status_code == 200
    stranger = ssl.create_default_context(cadata=CertificateAuthority().cert_pem.decode())
    with httpx.Client(verify=stranger) as client, pytest.raises(httpx.ConnectError):
        client.get(
            f"https://{LOOPBACK}:{ingress.ports['https']}/api/x",
            headers={"host": HOST},
            extensions={"sni_hostname": HOST},
        )


def test_plain_http_is_redirected_to_https_with_301(ingress: Ingress) -> None:
    response = ingress.http("/api/orders?page=2")
    assert response.status_code == 301
    assert response.headers["location"] == "https://example.com/api/orders?page=2"


def test_round_robin_alternates_between_service_a_endpoints(ingress: Ingress) -> None:
    backends = [_backend(ingress.https(f"/api/rr/{i}")) for i in range(20)]
    assert backends.count("service-a-1") == 10
    assert backends.count("service-a-2") == 10
    assert all(first != second for first, second in itertools.pairwise(backends))


def test_backend_failing_its_health_check_stops_getting_traffic(ingress: Ingress) -> None:
    stat = "cluster.service-a.membership_healthy"
    ingress.a2.healthy.clear()
    try:
        ingress.envoy.wait_for_stat(stat, lambda n: n == 1)
        before = ingress.a2.hits()
        backends = {_backend(ingress.https(f"/api/hc/{i}")) for i in range(10)}
        assert backends == {"service-a-1"}
        assert ingress.a2.hits() == before
    finally:
        ingress.a2.healthy.set()
        ingress.envoy.wait_for_stat(stat, lambda n: n == 2)
    backends = {_backend(ingress.https(f"/api/back/{i}")) for i in range(4)}
    assert backends == {"service-a-1", "service-a-2"}


def test_backend_answering_5xx_is_ejected_by_outlier_detection(ingress: Ingress) -> None:
    ingress.a2.failing.set()
    try:
        statuses = [ingress.https(f"/api/od/{i}").status_code for i in range(16)]
        # Five 503s in a row from service-a-2 eject it (the ejection reaches the load
        # balancer a moment later, so one more may slip through); then only a1 answers.
        assert 5 <= statuses.count(503) <= 7
        assert statuses[-4:] == [200] * 4
        ejected = ingress.envoy.stats(filter_regex="outlier_detection")
        assert (
            ejected["cluster.service-a.outlier_detection.ejections_enforced_consecutive_5xx"] >= 1
        )
        assert ejected["cluster.service-a.outlier_detection.ejections_active"] == 1
        backends = {_backend(ingress.https(f"/api/od/after/{i}")) for i in range(6)}
        assert backends == {"service-a-1"}
    finally:
        ingress.a2.failing.clear()
    ingress.envoy.wait_for_stat(
        "cluster.service-a.outlier_detection.ejections_active", lambda n: n == 0
    )


def test_ready_listener_exposes_admin_ready_and_nothing_else(ingress: Ingress) -> None:
    ready = ingress.http("/ready", port="ready")
    assert ready.status_code == 200
    assert ready.text.strip() == "LIVE"
    for path in ("/stats", "/config_dump", "/quitquitquit"):
        assert ingress.http(path, port="ready").status_code == 404
    assert ingress.envoy.process.poll() is None


def test_renewed_certificate_is_served_without_restarting_envoy(ingress: Ingress) -> None:
    first = ingress.served_serial()
    pid = ingress.envoy.process.pid
    renewed = ingress.ca.issue(HOST)
    assert renewed.serial != first
    ingress.tls.write(renewed.secret_files())
    deadline = time.monotonic() + 10
    while (served := ingress.served_serial()) != renewed.serial:
        assert served == first, "Envoy served a certificate that is neither old nor new"
        assert time.monotonic() < deadline, "the renewed certificate was never served"
        time.sleep(0.1)
    assert ingress.envoy.process.poll() is None
    assert ingress.envoy.process.pid == pid
    assert _backend(ingress.https("/api/after-rotation")).startswith("service-a-")

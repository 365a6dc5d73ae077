"""The real server over real TLS: uvicorn serving a certificate from certs.issue, called the way
kube-apiserver calls it (HTTP/1.1, trusting only the CA, checking the service's DNS name)."""

from __future__ import annotations

import base64
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.pods import body, check_injection_invariants, make_pod, make_review, validate
from tests.support.server import SERVICE_NAME, Server, client_context, running_server

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "admission-review.json"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server")) as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


JSON = {"Content-Type": "application/json"}


def test_the_sample_review_gets_a_patch_that_applies_and_validates(
    server: Server, client: httpx.Client
) -> None:
    review = json.loads(SAMPLE.read_text())
    response = server.post(client, "/mutate", content=SAMPLE.read_bytes(), headers=JSON)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    answer = response.json()
    assert answer["apiVersion"] == "admission.k8s.io/v1"
    assert answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == review["request"]["uid"]
    assert answer["response"]["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(answer["response"]["patch"]))
    validate(check_injection_invariants(review["request"]["object"], ops))


@pytest.mark.parametrize(
    ("headers", "content", "status", "message"),
    [
        ({"Content-Type": "text/plain"}, b"{}", 415, "content type 'text/plain' is not supported"),
        ({}, b"{}", 415, "send application/json"),
        (JSON, b"{oops", 400, "not valid JSON"),
        (
            JSON,
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}',
            400,
            "request is missing",
        ),
        (JSON, b"x" * (7 * 1024 * 1024 + 1), 413, "over the 7340032 byte limit"),
    ],
    ids=["text-plain", "no-content-type", "not-json", "no-request", "oversized"],
)
def test_the_error_contract_holds_over_the_wire(
    server: Server,
    client: httpx.Client,
    headers: dict[str, str],
    content: bytes,
    status: int,
    message: str,
) -> None:
    response = server.post(client, "/mutate", content=content, headers=headers)
    assert response.status_code == status
    answer = response.json()
    assert answer["kind"] == "Status"
    assert answer["code"] == status
    assert message in answer["message"]


def test_an_oversized_chunked_body_without_content_length_is_refused_with_413(
    server: Server, client: httpx.Client
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(8):
            yield b"x" * (1024 * 1024)

    response = server.post(client, "/mutate", content=chunks(), headers=JSON)
    assert response.status_code == 413


def test_get_on_mutate_is_405_with_allow_header(server: Server, client: httpx.Client) -> None:
    response = server.get(client, "/mutate")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


def test_health_readiness_and_metrics_answer(server: Server, client: httpx.Client) -> None:
    assert server.get(client, "/healthz").json() == {"status": "ok"}
    assert server.get(client, "/readyz").json() == {"status": "ready"}
    server.post(client, "/mutate", content=body(make_review(make_pod())), headers=JSON)
    metrics = server.get(client, "/metrics").text
    assert 'envoy_injector_admission_requests_total{outcome="injected",reason=""} ' in metrics
    assert "envoy_injector_patch_bytes_bucket{le=" in metrics
    assert "envoy_injector_certificate_expiry_timestamp_seconds" in metrics
    assert "process_resident_memory_bytes" in metrics


def test_a_client_that_trusts_the_system_store_alone_is_refused(server: Server) -> None:
    with (
        httpx.Client(base_url=server.url, verify=ssl.create_default_context()) as stranger,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        server.get(stranger, "/healthz")


def test_a_client_checking_another_name_is_refused(server: Server, client: httpx.Client) -> None:
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get("/healthz", extensions={"sni_hostname": "other.envoy-injector.svc"})


def test_plain_http_is_not_served(server: Server) -> None:
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as plain,
        pytest.raises(httpx.HTTPError),
    ):
        plain.get("/healthz")


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_below_1_2_is_refused_by_the_server(server: Server) -> None:
    context = client_context(server.files.ca)
    context.minimum_version = ssl.TLSVersion.TLSv1
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("ALL:@SECLEVEL=0")
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw,
        pytest.raises(ssl.SSLError),
    ):
        context.wrap_socket(raw, server_hostname=SERVICE_NAME)


def _raw_request(tls: ssl.SSLSocket, payload: bytes) -> bytes:
    tls.sendall(
        b"POST /mutate HTTP/1.1\r\nHost: " + SERVICE_NAME.encode() + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: "
        + str(len(payload)).encode()
        + b"\r\n\r\n"
        + payload
    )
    data = b""
    while b"\r\n\r\n" not in data:
        data += tls.recv(65536)
    head, rest = data.split(b"\r\n\r\n", 1)
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        rest += tls.recv(65536)
    return head


def test_idle_keep_alive_connections_outlive_uvicorns_default_five_seconds(server: Server) -> None:
    context = client_context(server.files.ca)
    context.set_alpn_protocols(["http/1.1"])
    payload = body(make_review(make_pod()))
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=SERVICE_NAME) as tls,
    ):
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert _raw_request(tls, payload).startswith(b"HTTP/1.1 200")
        time.sleep(6)  # past uvicorn's default timeout_keep_alive
        assert _raw_request(tls, payload).startswith(b"HTTP/1.1 200")


def test_every_decision_is_logged_as_one_json_line_with_the_uid(
    server: Server, client: httpx.Client
) -> None:
    review = make_review(make_pod(hostNetwork=True), uid="log-line-uid-1")
    server.post(client, "/mutate", content=body(review), headers=JSON)
    time.sleep(0.2)
    lines = [
        json.loads(line) for line in server.log_text().splitlines() if "log-line-uid-1" in line
    ]
    assert len(lines) == 1
    assert lines[0]["outcome"] == "skipped"
    assert lines[0]["reason"] == "host_network"
    assert lines[0]["namespace"] == "shop"
    assert lines[0]["pod"] == "web-1"
    assert lines[0]["duration_ms"] >= 0

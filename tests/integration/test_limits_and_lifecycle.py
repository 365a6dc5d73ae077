"""The server under stress: body caps without buffering, slow clients, the in-flight limit,
SIGTERM with requests in flight, and config reloads — against the real process."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tests.support.pods import body, make_pod, make_review
from tests.support.server import SERVICE_NAME, Server, client_context, running_server

pytestmark = pytest.mark.integration
JSON = {"Content-Type": "application/json"}
PAYLOAD = body(make_review(make_pod()))


def _rss_kib(server: Server) -> int:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _tls(server: Server) -> ssl.SSLSocket:
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return client_context(server.files.ca).wrap_socket(raw, server_hostname=SERVICE_NAME)


def _head(length: int | None, *, chunked: bool = False) -> bytes:
    lines = [
        b"POST /mutate HTTP/1.1",
        b"Host: " + SERVICE_NAME.encode(),
        b"Content-Type: application/json",
    ]
    if length is not None:
        lines.append(b"Content-Length: " + str(length).encode())
    if chunked:
        lines.append(b"Transfer-Encoding: chunked")
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _read_response(tls: ssl.SSLSocket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a full response: {data!r}")
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    status = int(head.split(b" ", 2)[1])
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length")
    )
    while len(rest) < length:
        chunk = tls.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        rest += chunk
    return status, rest[:length]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"ENVOY_INJECTOR_MAX_IN_FLIGHT": "4", "ENVOY_INJECTOR_BODY_TIMEOUT": "2"}
    with running_server(tmp_path_factory.mktemp("limits"), env=env) as running:
        yield running


def test_a_huge_declared_body_is_refused_before_it_is_read(server: Server) -> None:
    before = _rss_kib(server)
    with _tls(server) as tls:
        tls.sendall(_head(500 * 1024 * 1024) + b"x" * 65536)
        status, payload = _read_response(tls)
    assert status == 413
    assert b"over the 7340032 byte limit" in payload
    assert _rss_kib(server) - before < 16 * 1024


def test_a_huge_chunked_body_is_cut_off_at_the_cap_without_buffering_it(server: Server) -> None:
    before = _rss_kib(server)
    chunk = b"x" * (1024 * 1024)
    framed = hex(len(chunk))[2:].encode() + b"\r\n" + chunk + b"\r\n"
    status = 0
    with _tls(server) as tls:
        tls.sendall(_head(None, chunked=True))
        try:
            for _ in range(64):  # up to 64 MiB, far past the 7 MiB cap
                tls.sendall(framed)
        except OSError:
            pass  # the server may close once it has answered
        status, _ = _read_response(tls)
    assert status == 413
    assert _rss_kib(server) - before < 32 * 1024  # the cap, its copies, and noise: not 64 MiB


def test_a_slow_client_does_not_hold_up_the_others(server: Server) -> None:
    with _tls(server) as slow:
        slow.sendall(_head(len(PAYLOAD)) + PAYLOAD[:10])  # then nothing for a while
        started = time.monotonic()
        with server.client() as client:
            for _ in range(20):
                response = server.post(client, "/mutate", content=PAYLOAD, headers=JSON)
                assert response.status_code == 200
        assert time.monotonic() - started < 5
        slow.sendall(PAYLOAD[10:])
        status, _ = _read_response(slow)
        assert status == 200


def test_a_body_that_never_finishes_is_answered_408_after_the_body_timeout(server: Server) -> None:
    with _tls(server) as tls:
        tls.sendall(_head(len(PAYLOAD)) + PAYLOAD[:10])
        started = time.monotonic()
        status, payload = _read_response(tls)
    assert status == 408
    assert b"did not arrive within 2 s" in payload
    assert 1.5 < time.monotonic() - started < 6


def test_over_the_in_flight_limit_the_answer_is_503_at_once(server: Server) -> None:
    stalled = [_tls(server) for _ in range(4)]
    try:
        for tls in stalled:
            tls.sendall(_head(len(PAYLOAD)) + PAYLOAD[:10])
        time.sleep(0.3)
        with server.client() as client:
            started = time.monotonic()
            response = server.post(client, "/mutate", content=PAYLOAD, headers=JSON)
            elapsed = time.monotonic() - started
            assert response.status_code == 503
            assert "over 4 reviews in flight" in response.json()["message"]
            assert elapsed < 1
            assert server.get(client, "/healthz").status_code == 200  # only /mutate is limited
            metrics = server.get(client, "/metrics").text
            assert _count(metrics, "overloaded", "") == 1
    finally:
        for tls in stalled:
            tls.sendall(PAYLOAD[10:])
            assert _read_response(tls)[0] == 200
            tls.close()


def _samples(metrics: str, name: str) -> list[Sample]:
    return [
        sample
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == name
    ]


def _count(metrics: str, outcome: str, reason: str) -> float:
    """The admission counter for one (outcome, reason); 0 before the first such review."""
    for sample in _samples(metrics, "envoy_injector_admission_requests_total"):
        assert set(sample.labels) == {"outcome", "reason"}, sample
        if sample.labels == {"outcome": outcome, "reason": reason}:
            return sample.value
    return 0.0


@pytest.mark.parametrize(
    ("review", "outcome", "reason"),
    [
        (make_review(make_pod()), "injected", ""),
        (make_review(make_pod(hostNetwork=True)), "skipped", "host_network"),
        (make_review(make_pod(labels={"envoy-inject": "disabled"})), "skipped", "label_disabled"),
        (make_review(make_pod(), operation="UPDATE"), "skipped", "not_pod_create"),
        (
            make_review(make_pod(annotations={"envoy-inject.io/log-level": "loud"})),
            "rejected",
            "invalid_annotation",
        ),
        (
            make_review(make_pod(annotations={"envoy-inject.io/image": "evil.example/e:1"})),
            "rejected",
            "policy_violation",
        ),
        ({"kind": "Nope"}, "invalid", "ReviewError"),
    ],
    ids=["injected", "host-network", "label", "update", "annotation", "policy", "invalid"],
)
def test_each_outcome_moves_its_own_counter_by_one(
    server: Server, review: dict[str, object], outcome: str, reason: str
) -> None:
    with server.client() as client:
        before = server.get(client, "/metrics").text
        server.post(client, "/mutate", content=json.dumps(review).encode(), headers=JSON)
        after = server.get(client, "/metrics").text
    assert _count(after, outcome, reason) - _count(before, outcome, reason) == 1
    total = "envoy_injector_admission_duration_seconds_count"
    assert _samples(after, total)[0].value - _samples(before, total)[0].value == 1


def test_outcome_and_reason_are_separate_labels_so_rejections_sum_by_outcome(
    server: Server,
) -> None:
    rejections = [
        make_review(make_pod(annotations={"envoy-inject.io/log-level": "loud"})),
        make_review(make_pod(annotations={"envoy-inject.io/image": "evil.example/e:1"})),
    ]
    with server.client() as client:
        for review in rejections:
            server.post(client, "/mutate", content=json.dumps(review).encode(), headers=JSON)
        metrics = server.get(client, "/metrics").text
    samples = _samples(metrics, "envoy_injector_admission_requests_total")
    rejected = [s for s in samples if s.labels["outcome"] == "rejected"]
    # What `sum by (outcome)` sees: one outcome, each reason its own series.
    assert {s.labels["reason"] for s in rejected} >= {"invalid_annotation", "policy_violation"}
    assert sum(s.value for s in rejected) >= 2
    outcomes = {"injected", "skipped", "rejected", "invalid", "overloaded", "error"}
    assert {s.labels["outcome"] for s in samples} <= outcomes


def test_sigterm_during_a_burst_answers_every_request_sent_before_it(tmp_path: Path) -> None:
    results: list[tuple[float, bool]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def hammer(server: Server) -> None:
        try:
            tls = _tls(server)
        except OSError:
            return
        with tls:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    tls.sendall(_head(len(PAYLOAD)) + PAYLOAD)
                    ok = _read_response(tls)[0] == 200
                except OSError:
                    ok = False
                with lock:
                    results.append((sent, ok))
                if not ok:
                    return

    with running_server(tmp_path) as server:
        threads = [threading.Thread(target=hammer, args=(server,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        time.sleep(1.0)
        signalled = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        # uvicorn drains, then re-raises the signal so the exit status says SIGTERM.
        assert server.process.wait(timeout=25) in (0, -signal.SIGTERM)
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
        assert "Finished server process" in server.log_text()
    before = [ok for sent, ok in results if sent < signalled - 0.01]
    assert len(before) > 50
    assert all(before), (
        f"{before.count(False)} of {len(before)} requests sent before SIGTERM failed"
    )


def test_after_sigterm_an_idle_keep_alive_connection_is_still_answered_then_closed(
    tmp_path: Path,
) -> None:
    """kube-apiserver may write its next review on an idle connection just as we stop: that
    review is answered, with Connection: close, and only then is the connection closed."""
    with running_server(tmp_path, env={"ENVOY_INJECTOR_DRAIN_SECONDS": "3"}) as server:
        tls = _tls(server)
        with tls:
            tls.sendall(_head(len(PAYLOAD)) + PAYLOAD)
            assert _read_response(tls)[0] == 200  # now idle, kept alive
            server.process.send_signal(signal.SIGTERM)
            time.sleep(0.5)  # the server is stopping; the connection is still open
            tls.sendall(_head(len(PAYLOAD)) + PAYLOAD)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = tls.recv(65536)
                assert chunk, f"closed under a review: {head!r}"
                head += chunk
            assert head.startswith(b"HTTP/1.1 200")
            assert b"connection: close" in head.lower()
        assert server.process.wait(timeout=25) in (0, -signal.SIGTERM)
    assert "draining" in server.log_text()


def test_a_config_change_is_applied_and_a_bad_one_is_refused_keeping_the_last(
    tmp_path: Path,
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("sidecar:\n  logLevel: info\n")
    review = json.dumps(make_review(make_pod())).encode()

    def sidecar_args(server: Server) -> list[str]:
        with server.client() as client:
            answer = server.post(client, "/mutate", content=review, headers=JSON).json()
        import base64

        ops = json.loads(base64.b64decode(answer["response"]["patch"]))
        args: list[str] = ops[0]["value"]["args"]
        return args

    with running_server(tmp_path, args=("--config", str(config))) as server:
        assert "info" in sidecar_args(server)
        config.write_text("sidecar:\n  logLevel: debug\n")
        deadline = time.monotonic() + 5
        while "debug" not in sidecar_args(server):
            assert time.monotonic() < deadline, "the new config was never applied"
            time.sleep(0.1)
        config.write_text("sidecar:\n  logLevel: [not, a, level]\n")
        time.sleep(1.0)
        assert "debug" in sidecar_args(server)
        log = server.log_text()
        assert "config applied" in log
        assert "config not reloaded, keeping the current one" in log
        with server.client() as client:
            metrics = server.get(client, "/metrics").text
        assert 'envoy_injector_config_reloads_total{result="rejected"}' in metrics


def test_the_text_log_format_is_for_humans(tmp_path: Path) -> None:
    with (
        running_server(tmp_path, args=("--log-format", "text")) as server,
        server.client() as client,
    ):
        server.post(client, "/mutate", content=PAYLOAD, headers=JSON)
        time.sleep(0.2)
        lines = [line for line in server.log_text().splitlines() if "admission injected" in line]
    assert lines
    assert lines[0].startswith("info    admission injected uid=")
    with pytest.raises(json.JSONDecodeError):
        json.loads(lines[0])


def test_the_openapi_description_documents_mutate(server: Server) -> None:
    with server.client() as client:
        schema = server.get(client, "/openapi.json").json()
    assert set(schema["paths"]["/mutate"]["post"]["responses"]) == {
        "200",
        "400",
        "408",
        "413",
        "415",
        "503",
    }
    assert "/readyz" in schema["paths"]

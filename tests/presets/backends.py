"""Small HTTP servers on 127.0.0.1 that stand in for the Services behind Envoy.

:class:`StubServer` runs :class:`http.server.ThreadingHTTPServer` in a daemon thread,
records every request it gets and answers with whatever its responder returns.
:func:`echo_backend` builds the usual backend: it answers JSON naming itself and
echoing the request's method, path and headers, serves ``/healthz`` (200, or 503 once
``healthy`` is cleared), answers everything else with 503 while ``failing`` is set, and
sets ``x-powered-by`` so header removal can be observed.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "HEALTH_PATH",
    "Recorded",
    "Reply",
    "StubPool",
    "StubServer",
    "echo_backend",
]

HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class Recorded:
    """One request as the stub saw it; header names lower-cased, repeats kept."""

    method: str
    path: str
    headers: dict[str, list[str]]
    client: str

    def header(self, name: str) -> str | None:
        """The single value of header ``name`` (None if absent; error if repeated)."""
        values = self.headers.get(name.lower(), [])
        if len(values) > 1:
            raise AssertionError(f"header {name} repeated: {values}")
        return values[0] if values else None


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


Responder = Callable[["StubServer", Recorded], Reply]


class StubServer:
    """A threaded HTTP/1.1 server on an ephemeral loopback port."""

    def __init__(self, name: str, responder: Responder) -> None:
        self.name = name
        self.healthy = threading.Event()
        self.healthy.set()
        self.failing = threading.Event()
        self._responder = responder
        self._lock = threading.Lock()
        self._recorded: list[Recorded] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name=f"stub-{name}", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._server.server_address[1]
        return port

    def recorded(self, *, include_health_checks: bool = False) -> list[Recorded]:
        """Requests received so far, oldest first."""
        with self._lock:
            items = list(self._recorded)
        if include_health_checks:
            return items
        return [item for item in items if item.path != HEALTH_PATH]

    def hits(self) -> int:
        """How many requests (health checks excluded) reached this server."""
        return len(self.recorded())

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def _record(self, item: Recorded) -> None:
        with self._lock:
            self._recorded.append(item)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Headers and body go out in two writes; without this, Nagle plus delayed
                # ACKs add 40 ms to every keep-alive response.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                headers: dict[str, list[str]] = {}
                for name, value in self.headers.items():
                    headers.setdefault(name.lower(), []).append(value)
                item = Recorded(self.command, self.path, headers, self.client_address[0])
                stub._record(item)
                reply = stub._responder(stub, item)
                if reply.delay:
                    threading.Event().wait(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST = _serve  # noqa: N815  (http.server's method naming)

            def version_string(self) -> str:
                return f"stub-{stub.name}"

            def log_message(self, *args: Any) -> None:
                del args  # one line per request would drown the test output

        return Handler


def _echo(stub: StubServer, item: Recorded) -> Reply:
    if item.path == HEALTH_PATH:
        return Reply(200 if stub.healthy.is_set() else 503, b"ok")
    if stub.failing.is_set():
        return Reply(503, b"failing on purpose")
    body = json.dumps(
        {"backend": stub.name, "method": item.method, "path": item.path, "headers": item.headers}
    ).encode()
    return Reply(
        200,
        body,
        {"content-type": "application/json", "x-powered-by": "stub-framework"},
    )


def echo_backend(name: str) -> StubServer:
    """A backend that names itself and echoes the request as JSON."""
    return StubServer(name, _echo)


class StubPool:
    """Starts stub servers and closes every one of them at teardown."""

    def __init__(self) -> None:
        self._servers: list[StubServer] = []

    def add(self, server: StubServer) -> StubServer:
        self._servers.append(server)
        return server

    def close(self) -> None:
        for server in self._servers:
            server.close()

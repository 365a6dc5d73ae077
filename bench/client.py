"""A minimal blocking HTTP/1.1-over-TLS client on one keep-alive connection.

Used where wrk cannot go: readiness and cold-start polling, checking the replies, and the
paced (fixed-rate) latency run. It verifies the server the way kube-apiserver does: only the
benchmark's CA is trusted and the certificate must name the Service.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path
from types import TracebackType
from typing import Final, Self

SERVICE_NAME: Final = "envoy-injector.envoy-injector.svc"
HOST: Final = "127.0.0.1"


class HTTPError(Exception):
    """The server's answer could not be read as HTTP/1.1."""


def tls_context(ca: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    context.set_alpn_protocols(["http/1.1"])
    return context


class Connection:
    """One TLS connection to 127.0.0.1:``port``; ``request`` may be called many times."""

    def __init__(self, port: int, context: ssl.SSLContext, *, timeout: float = 10.0) -> None:
        raw = socket.create_connection((HOST, port), timeout=timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = context.wrap_socket(raw, server_hostname=SERVICE_NAME)
        except BaseException:
            raw.close()
            raise
        self.buffer = bytearray()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    @staticmethod
    def encode(method: str, path: str, body: bytes = b"") -> bytes:
        """The request bytes; precompute them once for repeated requests."""
        head = f"{method} {path} HTTP/1.1\r\nHost: {SERVICE_NAME}\r\n"
        if method != "GET":
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        return (head + "\r\n").encode() + body

    def send(self, request: bytes) -> tuple[int, bytes]:
        """Send one encoded request; return (status, body) once the whole body has arrived."""
        self.sock.sendall(request)
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            self._fill()
        head = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        parts = head[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise HTTPError(f"bad status line {head[0]!r}")
        length = None
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip())
        if length is None:
            raise HTTPError("the reply has no Content-Length")
        while len(self.buffer) < length:
            self._fill()
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        return int(parts[1]), body

    def request(self, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
        return self.send(self.encode(method, path, body))

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise HTTPError("the server closed the connection mid-reply")
        self.buffer += chunk


def healthz(port: int, context: ssl.SSLContext, *, timeout: float = 2.0) -> bool:
    """One fresh connection, TLS handshake and GET /healthz; True on a 200."""
    with Connection(port, context, timeout=timeout) as conn:
        status, _ = conn.request("GET", "/healthz")
        return status == 200

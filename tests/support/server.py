"""Run the real `envoy-injector serve` (uvicorn, uvloop, httptools, TLS) as a subprocess on
127.0.0.1, with a certificate issued by certs.issue, and clients that trust only that CA."""

from __future__ import annotations

import contextlib
import datetime
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

from certs import issue

SERVICE_NAME: Final = "envoy-injector.envoy-injector.svc"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class TLSFiles:
    ca: Path
    cert: Path
    key: Path


def write_tls_files(
    directory: Path, *, ca: issue.CA | None = None, extra_names: tuple[str, ...] = ()
) -> TLSFiles:
    now = datetime.datetime.now(datetime.UTC)
    ca = ca or issue.new_ca(now=now)
    names = [*issue.service_dns_names("envoy-injector", "envoy-injector"), *extra_names]
    bundle = issue.new_serving_cert(ca, names, now=now)
    directory.mkdir(parents=True, exist_ok=True)
    files = TLSFiles(directory / "ca.crt", directory / "tls.crt", directory / "tls.key")
    files.ca.write_bytes(bundle.ca_pem)
    files.cert.write_bytes(bundle.cert_pem)
    files.key.write_bytes(bundle.key_pem)
    return files


def client_context(ca: Path) -> ssl.SSLContext:
    """What kube-apiserver does: trust only the caBundle, verify the service name.

    With a cafile, create_default_context loads that file alone, not the system store.
    """
    return ssl.create_default_context(cafile=str(ca))


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    files: TLSFiles
    log: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def client(self, *, ca: Path | None = None, **kwargs: object) -> httpx.Client:
        """An httpx client that trusts only our CA (or ``ca``) and checks the service name."""
        return httpx.Client(
            base_url=self.url,
            verify=client_context(ca or self.files.ca),
            timeout=10,
            **kwargs,  # type: ignore[arg-type]
        )

    def post(self, client: httpx.Client, path: str, **kwargs: object) -> httpx.Response:
        return client.post(path, extensions={"sni_hostname": SERVICE_NAME}, **kwargs)  # type: ignore[arg-type]

    def get(self, client: httpx.Client, path: str) -> httpx.Response:
        return client.get(path, extensions={"sni_hostname": SERVICE_NAME})

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextlib.contextmanager
def running_server(
    tmp: Path,
    *,
    files: TLSFiles | None = None,
    env: Mapping[str, str] | None = None,
    args: tuple[str, ...] = (),
    startup_timeout: float = 20.0,
    wait_for_tls: bool = True,
    host: str = "127.0.0.1",
    port: int | None = None,
) -> Iterator[Server]:
    """Start the server; wait for /healthz over TLS (or, without a valid cert, for the port)."""
    files = files or write_tls_files(tmp / "tls")
    port = port or free_port()
    log = tmp / f"server-{host}-{port}.log"
    command = [
        sys.executable, "-m", "webhook", "serve",
        "--host", host, "--port", str(port),
        "--cert", str(files.cert), "--key", str(files.key),
        "--namespace", "envoy-injector", *args,
    ]  # fmt: skip
    environment = {**os.environ, "ENVOY_INJECTOR_RELOAD_INTERVAL": "0.2", **(env or {})}
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=environment)
    server = Server(process, port, files, log, host)
    try:
        if wait_for_tls:
            wait_ready(server, startup_timeout)
        else:
            _wait_listening(server, startup_timeout)
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}:\n{server.log_text()}"
            )
        try:
            with server.client() as client:
                if server.get(client, "/healthz").status_code == 200:
                    return
        except httpx.HTTPError:
            time.sleep(0.05)
    raise TimeoutError(f"server not up within {timeout} s:\n{server.log_text()}")


def _wait_listening(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(
                f"server exited with {server.process.returncode}:\n{server.log_text()}"
            )
        with contextlib.suppress(OSError), socket.create_connection((server.host, server.port), 1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"server not listening within {timeout} s:\n{server.log_text()}")

"""Serving TLS, with certificates that rotate under a running server.

Mounted Secrets change by a symlink swap and send no dependable file events, so the reloader
polls a digest of the cert and key files. A new pair goes into a *fresh* SSLContext and is
switched in only after it has loaded: calling load_cert_chain() on the live context with a bad
pair would break it for every later handshake. The listening context's sni_callback (which
runs for clients without SNI too) hands each new handshake the current context.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509

log = logging.getLogger("envoy_injector.tls")


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context for one cert/key pair; raises (ssl.SSLError, OSError) if they are bad."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # kube-apiserver speaks HTTP/1.1 to webhooks; offering h2 would buy nothing.
    context.set_alpn_protocols(["http/1.1"])
    context.load_cert_chain(str(cert), str(key))
    return context


@dataclass(frozen=True)
class Loaded:
    context: ssl.SSLContext
    digest: str
    serial: int
    not_after: datetime.datetime


def _digest(cert: Path, key: Path) -> str:
    h = hashlib.sha256()
    for path in (cert, key):
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()


class CertReloader:
    """Owns the current serving context and swaps it when the files change and still parse."""

    def __init__(
        self,
        cert: Path,
        key: Path,
        *,
        on_change: Callable[[Loaded], None] = lambda _: None,
    ) -> None:
        self.cert = cert
        self.key = key
        self.on_change = on_change
        self.current: Loaded | None = None
        self.check()

    @property
    def ready(self) -> bool:
        return self.current is not None

    def _load(self) -> Loaded:
        digest = _digest(self.cert, self.key)
        context = server_context(self.cert, self.key)  # proves the pair parses and matches
        leaf = x509.load_pem_x509_certificate(self.cert.read_bytes())
        return Loaded(context, digest, leaf.serial_number, leaf.not_valid_after_utc)

    def check(self) -> bool:
        """Reload if the files' content changed and the new pair is good; True on a swap."""
        try:
            if self.current is not None and _digest(self.cert, self.key) == self.current.digest:
                return False
            loaded = self._load()
        except (OSError, ssl.SSLError, ValueError) as exc:
            # Mid-swap or broken files: keep serving what we have and try again later.
            log.warning("certificate not (re)loaded, keeping the current one: %s", exc)
            return False
        self.current = loaded
        log.info(
            "serving certificate loaded",
            extra={"serial": f"{loaded.serial:x}", "not_after": loaded.not_after.isoformat()},
        )
        self.on_change(loaded)
        return True

    def listening_context(self) -> ssl.SSLContext:
        """The context the server listens with; each handshake is handed the current pair."""
        if self.current is not None:
            outer = server_context(self.cert, self.key)
        else:
            # Listen anyway: handshakes fail (so do the probes) until a good pair appears.
            outer = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            outer.minimum_version = ssl.TLSVersion.TLSv1_2

        def use_current(
            sock: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
        ) -> None:
            if self.current is not None:
                sock.context = self.current.context

        outer.sni_callback = use_current
        return outer

    async def watch(self, interval: float) -> None:
        """Poll forever (until cancelled)."""
        while True:
            await asyncio.sleep(interval)
            await asyncio.to_thread(self.check)

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


def _element(der: bytes, at: int) -> tuple[int, int, int]:
    """The DER element at ``at``: (tag, start of its content, end of its content)."""
    tag, length = der[at], der[at + 1]
    at += 2
    if length & 0x80:  # long form: the next (length & 0x7F) bytes are the length
        count = length & 0x7F
        length = int.from_bytes(der[at : at + count], "big")
        at += count
    if at + length > len(der):
        raise ValueError("truncated DER")
    return tag, at, at + length


def _time(tag: int, text: str) -> datetime.datetime:
    if tag == 0x17:  # UTCTime, YYMMDDHHMMSSZ: RFC 5280 reads YY >= 50 as 19YY
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime, YYYYMMDDHHMMSSZ
        raise ValueError("the validity is not a UTCTime or GeneralizedTime")
    parsed = datetime.datetime.strptime(text, "%Y%m%d%H%M%SZ")
    return parsed.replace(tzinfo=datetime.UTC)


def serial_and_expiry(pem: bytes) -> tuple[int, datetime.datetime]:
    """The serial number and notAfter of the first certificate in ``pem``.

    Read from the DER with the ``ssl`` module and a few lines here, so that serving does not
    import ``cryptography`` (tens of ms at start-up and about 9 MiB) for two fields.
    Raises ValueError when it is not a certificate.
    """
    text = pem.decode("ascii", errors="replace")
    begin, end = "-----BEGIN CERTIFICATE-----", "-----END CERTIFICATE-----"
    start = text.find(begin)
    stop = text.find(end, start)
    if start < 0 or stop < 0:
        raise ValueError("no PEM certificate found")
    try:
        der = ssl.PEM_cert_to_DER_cert(text[start : stop + len(end)])
        _, cert, _ = _element(der, 0)  # Certificate ::= SEQUENCE { tbsCertificate, ... }
        _, at, _ = _element(der, cert)  # TBSCertificate ::= SEQUENCE {
        tag, _, after = _element(der, at)
        if tag == 0xA0:  # [0] version, absent in v1 certificates
            at = after
        tag, start_serial, at = _element(der, at)  # serialNumber INTEGER
        if tag != 0x02:
            raise ValueError("no serial number")
        serial = int.from_bytes(der[start_serial:at], "big", signed=True)
        for _ in range(2):  # signature AlgorithmIdentifier, issuer Name
            at = _element(der, at)[2]
        tag, at, _ = _element(der, at)  # validity SEQUENCE { notBefore, notAfter }
        at = _element(der, at)[2]
        tag, start_time, stop_time = _element(der, at)
        not_after = _time(tag, der[start_time:stop_time].decode("ascii"))
    except (IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"not a DER certificate: {exc}") from None
    return serial, not_after


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
        serial, not_after = serial_and_expiry(self.cert.read_bytes())
        return Loaded(context, digest, serial, not_after)

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

"""The HTTP protocol uvicorn runs for each connection: httptools, with each reply sent whole.

uvicorn writes a response's head and its body to the transport separately. Over TLS each write
is its own TLS record, encryption call and send() system call, and for a reply of a few kB the
second set costs about as much as the first. Here the transport collects the writes made while
one callback runs and hands them on as one write at the end of the loop iteration, so a reply
is one record and one send(). Nothing waits longer than that iteration, and a close sends what
was collected first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _Gathering:
    """A transport that forwards everything but gathers writes until the loop turns."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data if type(data) is bytes else bytes(data))

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        if pending and not self._transport.is_closing():
            self._transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatheringHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = _Gathering(transport, self.loop)
        super().connection_made(gathering)  # type: ignore[arg-type]  # a Transport by duck typing

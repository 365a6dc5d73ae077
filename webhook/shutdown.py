"""A graceful stop that loses no review: drain before closing.

uvicorn's own shutdown closes every idle keep-alive connection at once. kube-apiserver keeps
such connections to a terminating Pod and may be writing its next review on one at that very
moment: it then reads EOF or a reset, and refuses the Pod; a review already read is answered
into a closed socket. So on SIGTERM the server first drains. It stops accepting connections (by
then the Pod's preStop sleep has taken it out of the Service's endpoints, so new calls go to the
other replica) and keeps serving the open ones, each answer carrying `Connection: close`, which
tells the client to take its next review elsewhere. The drain ends when every connection has
closed that way, or after `drain_seconds`, when only connections left idle all along remain.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

import uvicorn

log = logging.getLogger("envoy_injector.server")


class DrainingServer(uvicorn.Server):
    def __init__(
        self, config: uvicorn.Config, *, drain_seconds: float, on_drain: Callable[[], None]
    ) -> None:
        super().__init__(config)
        self._drain_seconds = drain_seconds
        self._on_drain = on_drain

    def _forced(self) -> bool:
        """A second signal: stop draining now."""
        return bool(self.force_exit)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self._drain_seconds > 0 and not self.force_exit:
            # No new connections; super().shutdown() closes the listeners again, harmlessly.
            for server in self.servers:
                server.close()
            self._on_drain()
            log.info(
                "draining: answering with Connection: close for up to %.1f s",
                self._drain_seconds,
                extra={"connections": len(self.server_state.connections)},
            )
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self._drain_seconds
            while self.server_state.connections and loop.time() < deadline and not self._forced():
                await asyncio.sleep(0.05)
        await super().shutdown(sockets)

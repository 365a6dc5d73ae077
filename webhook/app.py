"""The HTTP shell: create_app(settings) builds the front uvicorn serves.

POST /mutate is answered by a plain ASGI handler in front of FastAPI: the API server calls it for
every Pod created, and it must not pay the framework's per-request machinery (middleware stack,
routing, dependency solving, response classes). The front also answers GET /healthz and the
lifespan events. FastAPI (webhook.routes, built on first use) serves everything else: /readyz,
/metrics and the OpenAPI description, which documents /mutate and /healthz too.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from webhook import errors, limits, logs, mutate, settings as settings_mod
from webhook.deadlines import Deadlines
from webhook.metrics import Metrics, create_metrics
from webhook.settings import Settings
from webhook.tls import CertReloader, Loaded

if TYPE_CHECKING:  # imported by cli.namespace_watch only in a cluster: it pulls in urllib3
    from webhook import namespace_limits

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("envoy_injector.admission")
server_log = logging.getLogger("envoy_injector.server")


@dataclass
class AppState:
    """What the running app shares between requests; swapped whole on a config reload."""

    settings: Settings
    context: mutate.Context
    metrics: Metrics
    reloader: CertReloader | None = None
    namespaces: namespace_limits.NamespaceLimits | None = None
    in_flight: int = 0
    draining: bool = False  # stopping: each answer closes its connection (see shutdown.py)
    config_digest: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def _read_body(
    receive: Receive, headers: dict[bytes, bytes], *, cap: int, deadlines: Deadlines
) -> bytes:
    """The whole body, refusing more than ``cap`` bytes without buffering them; TimeoutError
    when it has not all arrived by the deadline."""
    declared = headers.get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > cap):
        raise errors.BodyTooLarge(
            f"the request body is over the {cap} byte limit (Content-Length: {declared.decode()})"
        )
    chunks: list[bytes] = []
    size = 0
    task = asyncio.current_task(deadlines.loop)
    if task is not None:
        deadlines.watch(task)
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise errors.ReviewError("the client disconnected before sending the whole body")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > cap:
                raise errors.BodyTooLarge(f"the request body is over the {cap} byte limit")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
    except asyncio.CancelledError:
        if task is not None and deadlines.finish(task) and task.uncancel() == 0:
            raise TimeoutError from None
        raise
    finally:
        if task is not None:
            deadlines.finish(task)


_HEALTHZ = b'{"status":"ok"}'
_HEALTHZ_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/json"), (b"content-length", b"15")],
}
_HEALTHZ_BODY = {"type": "http.response.body", "body": _HEALTHZ}


class WebhookApp:
    """The ASGI app uvicorn serves: /mutate and /healthz are answered here, the rest by FastAPI."""

    def __init__(
        self,
        state: AppState,
        build_routes: Callable[[], ASGIApp],
        background: Callable[[], list[Coroutine[Any, Any, None]]] = list,
        stop: Callable[[], None] = lambda: None,
    ) -> None:
        self.state = state
        self.decisions = logs.DecisionLog(log)
        self._build_routes = build_routes
        self._routes: ASGIApp | None = None
        self._background = background
        self._stop = stop
        watcher = state.namespaces
        self.namespace_limits: mutate.NamespaceLookup = (
            watcher.get if watcher is not None else lambda _namespace: limits.EMPTY
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._deadlines: Deadlines | None = None

    @property
    def routes(self) -> ASGIApp:
        """The FastAPI app, built (and FastAPI imported) on first use."""
        if self._routes is None:
            self._routes = self._build_routes()
        return self._routes

    def loop(self) -> asyncio.AbstractEventLoop:
        """The serving loop, looked up once (each lookup is a getpid() on Python 3.11)."""
        if self._loop is None or not self._loop.is_running():
            self._loop = asyncio.get_running_loop()
        return self._loop

    def deadlines(self) -> Deadlines:
        """The body-read deadlines of the serving loop."""
        loop = self.loop()
        if self._deadlines is None or self._deadlines.loop is not loop:
            self._deadlines = Deadlines(loop, self.state.settings.body_timeout)
        return self._deadlines

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" and scope["path"] == "/mutate":
            await self._mutate(scope, receive, send)
        elif kind == "http" and scope["path"] == "/healthz" and scope["method"] == "GET":
            await send(_HEALTHZ_START)
            await send(_HEALTHZ_BODY)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        else:
            await self.routes(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.state.tasks += [asyncio.create_task(c) for c in self._background()]
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._stop()
                for task in self.state.tasks:
                    task.cancel()
                await asyncio.gather(*self.state.tasks, return_exceptions=True)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _mutate(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        reply = await self._reply(scope, receive)
        extra = [(b"allow", b"POST")] if reply.status == 405 else []
        if self.state.draining:
            extra.append((b"connection", b"close"))
        await send(
            {
                "type": "http.response.start",
                "status": reply.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(reply.body)).encode()),
                    *extra,
                ],
            }
        )
        await send({"type": "http.response.body", "body": reply.body})
        self._record(reply.outcome, time.perf_counter() - started)

    async def _reply(self, scope: Scope, receive: Receive) -> mutate.Reply:
        state = self.state
        if scope["method"] != "POST":
            return mutate.refuse(
                errors.MethodNotAllowed(f"{scope['method']} is not allowed on /mutate; use POST")
            )
        if state.in_flight >= state.settings.max_in_flight:
            # Answer at once: queueing past the API server's timeout helps nobody.
            message = f"over {state.settings.max_in_flight} reviews in flight; retry"
            return mutate.Reply(
                503, mutate.status_body(503, message), mutate.Outcome("overloaded", message=message)
            )
        state.in_flight += 1
        try:
            headers = dict(scope["headers"])
            content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if content_type != b"application/json":
                return mutate.refuse(
                    errors.BadContentType(
                        f"content type {content_type.decode(errors='replace')!r} is not "
                        "supported; send application/json"
                    )
                )
            try:
                body = await _read_body(
                    receive, headers, cap=state.settings.max_body_bytes, deadlines=self.deadlines()
                )
            except errors.ReviewError as exc:
                return mutate.refuse(exc)
            except TimeoutError:
                return mutate.refuse(
                    errors.BodyTimeout(
                        f"the body did not arrive within {state.settings.body_timeout:g} s"
                    )
                )
            return mutate.review(body, state.context, namespace_limits=self.namespace_limits)
        finally:
            state.in_flight -= 1

    def _record(self, outcome: mutate.Outcome, seconds: float) -> None:
        self.state.metrics.observe(outcome.kind, outcome.reason, seconds, outcome.patch_bytes)
        fields: dict[str, Any] = {
            "uid": outcome.uid,
            "namespace": outcome.namespace,
            "pod": outcome.pod,
            "owner": outcome.owner,
            "outcome": outcome.kind,
            "reason": outcome.reason,
            "duration_ms": round(seconds * 1000, 3),
        }
        if outcome.patch_ops:
            fields["patch_ops"] = outcome.patch_ops
        if outcome.warnings:
            fields["warnings"] = list(outcome.warnings)
        if outcome.message:
            fields["detail"] = outcome.message
        if outcome.error is not None:
            err = outcome.error
            log.error(
                "admission failed", extra=fields, exc_info=(type(err), err, err.__traceback__)
            )
        else:
            self.decisions.info(f"admission {outcome.label}", fields, self.loop())


def _digest(path: Path | None) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path else ""


def reload_config(state: AppState) -> bool:
    """Apply the config file if its content changed and is valid; True when applied."""
    path = state.settings.config
    try:
        digest = _digest(path)
        if digest == state.config_digest:
            return False
        context = settings_mod.load_context(state.settings)
    except (OSError, errors.ConfigError) as exc:
        state.metrics.config_reloaded("rejected")
        server_log.error("config not reloaded, keeping the current one: %s", exc)
        return False
    state.context, state.config_digest = context, digest
    state.metrics.config_reloaded("applied")
    server_log.info("config applied", extra={"config": str(path), "sha256": digest[:12]})
    return True


async def _watch_config(state: AppState) -> None:
    while True:
        await asyncio.sleep(state.settings.reload_interval)
        await asyncio.to_thread(reload_config, state)


def create_app(
    settings: Settings,
    *,
    context: mutate.Context | None = None,
    reloader: CertReloader | None = None,
    metrics: Metrics | None = None,
    namespaces: namespace_limits.NamespaceLimits | None = None,
) -> WebhookApp:
    """The webhook app. ``context`` defaults to the one built from ``settings.config``."""
    metrics = metrics or create_metrics()
    state = AppState(
        settings=settings,
        context=context or settings_mod.load_context(settings),
        metrics=metrics,
        reloader=reloader,
        namespaces=namespaces,
        config_digest=_digest(settings.config) if context is None else "",
    )
    if reloader is not None and reloader.current is not None:
        metrics.cert_expiry = reloader.current.not_after.timestamp()
    metrics.in_flight = lambda: state.in_flight

    def background() -> list[Coroutine[Any, Any, None]]:
        jobs = []
        if reloader is not None:
            jobs.append(reloader.watch(settings.reload_interval))
        if settings.config is not None and context is None:
            jobs.append(_watch_config(state))
        if namespaces is not None:
            namespaces.start()
        return jobs

    def stop() -> None:
        if namespaces is not None:
            namespaces.stop()

    def build_routes() -> ASGIApp:
        from webhook import routes

        return routes.build(
            not_ready=lambda: _not_ready(reloader, namespaces),
            metrics=metrics,
            max_body_bytes=settings.max_body_bytes,
        )

    return WebhookApp(state, build_routes, background, stop)


def _not_ready(
    reloader: CertReloader | None, namespaces: namespace_limits.NamespaceLimits | None
) -> str | None:
    """Why the Pod must not get reviews yet (the /readyz answer), or None when it may."""
    if reloader is not None and not reloader.ready:
        return "no valid serving certificate loaded"
    if namespaces is not None and not namespaces.ready:
        return "LimitRanges and ResourceQuotas not listed yet"
    return None


def on_cert_change(metrics: Metrics) -> Callable[[Loaded], None]:
    """The reloader's hook: export the new certificate's expiry."""

    def record(loaded: Loaded) -> None:
        metrics.cert_expiry = loaded.not_after.timestamp()

    return record

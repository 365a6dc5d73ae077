"""The HTTP shell: create_app(settings) builds the FastAPI app and the front that serves it.

POST /mutate is answered by a plain ASGI handler in front of FastAPI: the API server calls it for
every Pod created, and it must not pay the framework's per-request machinery (middleware stack,
routing, dependency solving, response classes). FastAPI serves everything else: /healthz,
/readyz, /metrics and the OpenAPI description, which documents /mutate too.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook import __version__, errors, mutate, namespace_limits, openapi, settings as settings_mod
from webhook.metrics import Metrics, create_metrics
from webhook.settings import Settings
from webhook.tls import CertReloader, Loaded

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
    config_digest: str = ""
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


async def _read_body(
    receive: Receive,
    headers: dict[bytes, bytes],
    *,
    cap: int,
    timeout: float,
    loop: asyncio.AbstractEventLoop,
) -> bytes:
    """The whole body, refusing more than ``cap`` bytes without buffering them.

    The deadline is a plain timer on ``loop``, not asyncio.timeout(): on Python 3.11 that looks
    the running loop up three times, and each lookup is a getpid() system call.
    """
    declared = headers.get(b"content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > cap):
        raise errors.BodyTooLarge(
            f"the request body is over the {cap} byte limit (Content-Length: {declared.decode()})"
        )
    chunks: list[bytes] = []
    size = 0
    task = asyncio.current_task(loop)
    expired = False

    def expire() -> None:
        nonlocal expired
        expired = True
        if task is not None:
            task.cancel()

    timer = loop.call_later(timeout, expire)
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
        if expired and task is not None and task.uncancel() == 0:
            raise TimeoutError from None
        raise
    finally:
        timer.cancel()


class WebhookApp:
    """The ASGI app uvicorn serves: /mutate is answered here, everything else by FastAPI."""

    def __init__(self, fastapi: FastAPI, state: AppState) -> None:
        self.fastapi = fastapi
        self.app: ASGIApp = fastapi
        self.state = state
        self.namespace_limits = namespace_limits.lookup_for(state.namespaces)
        self._loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        """The serving loop, looked up once (each lookup is a getpid() on Python 3.11)."""
        if self._loop is None or not self._loop.is_running():
            self._loop = asyncio.get_running_loop()
        return self._loop

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/mutate":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        reply = await self._reply(scope, receive)
        extra = [(b"allow", b"POST")] if reply.status == 405 else []
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
                    receive,
                    headers,
                    cap=state.settings.max_body_bytes,
                    timeout=state.settings.body_timeout,
                    loop=self.loop(),
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
        self.state.metrics.observe(outcome.label, seconds, outcome.patch_bytes)
        fields = {
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
            log.info("admission %s", outcome.label, extra=fields)


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
        state.metrics.config_reloads.labels(result="rejected").inc()
        server_log.error("config not reloaded, keeping the current one: %s", exc)
        return False
    state.context, state.config_digest = context, digest
    state.metrics.config_reloads.labels(result="applied").inc()
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
        metrics.cert_expiry.set(reloader.current.not_after.timestamp())
    metrics.in_flight.set_function(lambda: state.in_flight)  # read at scrape time only

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        interval = settings.reload_interval
        if reloader is not None:
            state.tasks.append(asyncio.create_task(reloader.watch(interval)))
        if settings.config is not None and context is None:
            state.tasks.append(asyncio.create_task(_watch_config(state)))
        if namespaces is not None:
            namespaces.start()
        yield
        if namespaces is not None:
            namespaces.stop()
        for task in state.tasks:
            task.cancel()
        await asyncio.gather(*state.tasks, return_exceptions=True)

    app = FastAPI(title="envoy-injector", version=__version__, lifespan=lifespan)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="A valid serving certificate is loaded, and the namespaces' limits are known",
        responses={503: {"description": "no valid certificate, or limits not listed yet"}},
    )
    async def readyz(response: Response) -> dict[str, str]:
        if reloader is not None and not reloader.ready:
            response.status_code = 503
            return {"status": "no valid serving certificate loaded"}
        if namespaces is not None and not namespaces.ready:
            response.status_code = 503
            return {"status": "LimitRanges and ResourceQuotas not listed yet"}
        return {"status": "ready"}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.openapi = openapi.builder(app, max_body_bytes=settings.max_body_bytes)  # type: ignore[method-assign]  # adds /mutate
    return WebhookApp(app, state)


def on_cert_change(metrics: Metrics) -> Callable[[Loaded], None]:
    """The reloader's hook: export the new certificate's expiry."""

    def record(loaded: Loaded) -> None:
        metrics.cert_expiry.set(loaded.not_after.timestamp())

    return record

"""The FastAPI app behind the front: /readyz, /metrics and the OpenAPI description.

It is built on the first request that needs it. Importing FastAPI and pydantic costs more than
the rest of start-up together, and the front (``app.WebhookApp``) answers /mutate and /healthz
itself, so a new Pod passes its first probe before any of it is imported; the first /readyz
probe builds it, before the Pod is Ready and sent any review. /healthz and /mutate are still
declared here so that the OpenAPI description lists them.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from webhook import __version__, openapi
from webhook.metrics import Metrics, registry


def build(*, not_ready: Callable[[], str | None], metrics: Metrics, max_body_bytes: int) -> FastAPI:
    """``not_ready`` says why reviews must not be sent yet (None when they may)."""
    exposed = registry(metrics)
    app = FastAPI(title="envoy-injector", version=__version__)

    @app.get("/healthz", summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        summary="A valid serving certificate is loaded, and the namespaces' limits are known",
        responses={503: {"description": "no valid certificate, or limits not listed yet"}},
    )
    async def readyz(response: Response) -> dict[str, str]:
        reason = not_ready()
        if reason is not None:
            response.status_code = 503
            return {"status": reason}
        return {"status": "ready"}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus() -> Response:
        return Response(generate_latest(exposed), media_type=CONTENT_TYPE_LATEST)

    app.openapi = openapi.builder(app, max_body_bytes=max_body_bytes)  # type: ignore[method-assign]  # adds /mutate
    return app

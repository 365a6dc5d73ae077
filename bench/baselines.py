"""The two baselines, served exactly as ``envoy-injector serve`` serves the webhook.

    python -m bench.baselines bare|fastapi --port N --cert tls.crt --key tls.key --reply FILE
        [--reply-for LENGTH=FILE ...]

Same uvicorn settings as webhook.cli.serve (webhook.cli.uvicorn_config: uvloop, httptools,
keep-alive 120 s, no proxy-headers middleware, no access log, no server header, lifespan on)
and the same TLS context (CertReloader's listening
context, whose SNI callback hands each handshake the loaded pair). Both read the whole request
body and answer one constant, FILE: the bench saves there the very bytes the real /mutate
answered for the typical pod, so the response size (and its TLS cost) matches.

- bare: a plain ASGI callable, the floor of what uvicorn + TLS cost per request.
- fastapi: a POST route on FastAPI that reads the body and returns the constant in a
  ``Response`` (no model, no validation, no JSON encoding: the cheapest way to do it there).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response

from webhook import logs
from webhook.cli import uvicorn_config
from webhook.tls import CertReloader

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

HEALTHZ = b'{"status":"ok"}'


def _headers(reply: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-type", b"application/json"), (b"content-length", str(len(reply)).encode())]


def bare_app(constant: bytes, by_length: dict[bytes, bytes] | None = None) -> ASGIApp:
    """Any path: drain the body, answer ``constant`` (``HEALTHZ`` for GET, for the probe).

    ``by_length`` maps a request's Content-Length to another reply: /mutate's reply to that
    body, so the baseline's reply for the large pods is as large as /mutate's.
    """
    post_headers = _headers(constant)
    replies = {length: (body, _headers(body)) for length, body in (by_length or {}).items()}
    get_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(HEALTHZ)).encode()),
    ]

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            more = message.get("more_body", False)
        if scope["method"] == "GET":
            reply, headers = HEALTHZ, get_headers
        else:
            reply, headers = constant, post_headers
            if replies:
                length = next((v for k, v in scope["headers"] if k == b"content-length"), b"")
                reply, headers = replies.get(length, (reply, headers))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": reply})

    return app


def fastapi_app(constant: bytes) -> FastAPI:
    app = FastAPI(title="baseline")

    @app.post("/mutate")
    async def mutate_route(request: Request) -> Response:
        await request.body()
        return Response(constant, media_type="application/json")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def serve(app: ASGIApp | FastAPI, *, host: str, port: int, cert: Path, key: Path) -> None:
    """uvicorn exactly as webhook.cli.serve configures it."""
    reloader = CertReloader(cert, key)
    config = uvicorn_config(app, host=host, port=port, ssl_context=reloader.listening_context)
    uvicorn.Server(config).run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines", description=__doc__)
    parser.add_argument("kind", choices=["bare", "fastapi"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--reply", type=Path, required=True, help="the bytes to answer")
    parser.add_argument(
        "--reply-for",
        action="append",
        default=[],
        metavar="LENGTH=FILE",
        help="bare: answer FILE to a body of LENGTH bytes (repeatable)",
    )
    args = parser.parse_args(argv)
    logs.configure("json")
    constant = args.reply.read_bytes()
    by_length = {}
    for item in args.reply_for:
        length, _, path = item.partition("=")
        by_length[length.encode()] = Path(path).read_bytes()
    app = bare_app(constant, by_length) if args.kind == "bare" else fastapi_app(constant)
    serve(app, host=args.host, port=args.port, cert=args.cert, key=args.key)
    return 0


if __name__ == "__main__":
    sys.exit(main())

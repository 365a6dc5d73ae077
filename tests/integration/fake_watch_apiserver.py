"""A fake Kubernetes API server on 127.0.0.1 with real watch semantics, for faults on demand.

Only for what the real kube-apiserver will not do when a test asks: expire every watch now (410
Gone after a compaction), or go away for N seconds and come back on the same port. Everything
else the controller's tests check against the real server.

What it speaks, with the API server's answers where they matter to a watcher and a writer:

- list and watch (``?watch=true``) of namespaces, and of configmaps cluster-wide or in one
  namespace, filtered by an equality ``labelSelector``; an object leaving the selector is sent
  as DELETED, one entering it as ADDED, as the watch cache does;
- the watch is a chunked HTTP stream of JSON lines, with BOOKMARK events every
  ``bookmark_seconds`` when ``allowWatchBookmarks`` is set; a resourceVersion older than the
  last compaction gets an ERROR event with a 410 Status, inside a 200 stream;
- create (409 AlreadyExists), get, replace (409 on a stale resourceVersion), delete (409 on a
  failed uid/resourceVersion precondition) of configmaps, events and leases.

The existing ``fake_apiserver`` (Secrets and webhook configurations for the cert job) stays
as it is; this one shares nothing with it but the idea.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

JSON = dict[str, Any]
_PATH = re.compile(
    r"^/(?:api/v1|apis/(?P<group>[^/]+/[^/]+))"
    r"(?:/namespaces/(?P<ns>[^/]+))?/(?P<resource>namespaces|configmaps|events|leases)"
    r"(?:/(?P<name>[^/]+))?$"
)
_KINDS = {
    "namespaces": "Namespace",
    "configmaps": "ConfigMap",
    "events": "Event",
    "leases": "Lease",
}


def _status(code: int, reason: str, message: str) -> JSON:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }


def _selected(obj: JSON | None, selector: dict[str, str]) -> bool:
    labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
    return obj is not None and all(labels.get(k) == v for k, v in selector.items())


@dataclass
class FakeWatchApiServer:
    bookmark_seconds: float = 1.0
    port: int = 0
    objects: dict[tuple[str, str, str], JSON] = field(default_factory=dict)
    # (rv, resource, namespace, old, new): every change, for watches to replay
    history: list[tuple[int, str, str, JSON | None, JSON | None]] = field(default_factory=list)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # (method, path, status)
    rv: int = 1000
    compacted: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _server: ThreadingHTTPServer | None = None
    _epoch: int = 0  # bumped to cut every open watch (the server went away)
    _expiry: int = 0  # bumped to end every open watch cleanly (they re-watch and get 410)

    # ---- what tests do ---------------------------------------------------------------------

    def put(self, resource: str, obj: JSON) -> JSON:
        """Create or overwrite, as another client would (no checks); returns what is stored."""
        meta = obj["metadata"]
        with self._cond:
            old = self.objects.get((resource, meta.get("namespace", ""), meta["name"]))
            return self._store(resource, obj, old)

    def get(self, resource: str, namespace: str, name: str) -> JSON | None:
        with self._cond:
            return copy.deepcopy(self.objects.get((resource, namespace, name)))

    def remove(self, resource: str, namespace: str, name: str) -> None:
        with self._cond:
            old = self.objects.pop((resource, namespace, name))
            self.rv += 1
            self.history.append((self.rv, resource, namespace, old, None))
            self._cond.notify_all()

    def expire_watches(self) -> None:
        """Compact everything so far and end the open watches, as the server's timeout would:
        every re-watch from a version seen so far then gets a 410 ERROR event."""
        with self._cond:
            self.rv += 1  # the compaction's own revision: a list from now on is above it
            self.compacted = self.rv
            self._expiry += 1
            self._cond.notify_all()

    def start(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """Go away: stop answering, close the listening socket and cut every open watch."""
        with self._cond:
            self._epoch += 1
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    # ---- the store -------------------------------------------------------------------------

    def _store(self, resource: str, obj: JSON, old: JSON | None) -> JSON:
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        self.rv += 1
        meta["resourceVersion"] = str(self.rv)
        meta.setdefault("uid", (old or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        new.setdefault("kind", _KINDS[resource])
        ns = meta.get("namespace", "")
        self.objects[(resource, ns, meta["name"])] = new
        self.history.append((self.rv, resource, ns, old, copy.deepcopy(new)))
        self._cond.notify_all()
        return copy.deepcopy(new)

    def handle(
        self, method: str, path: str, query: dict[str, str], body: JSON | None
    ) -> tuple[int, JSON]:
        m = _PATH.match(path)
        if not m:
            return 404, _status(404, "NotFound", f"the server could not find {path}")
        resource, ns, name = m["resource"], m["ns"] or "", m["name"]
        with self._cond:
            key = (resource, ns, name or "")
            current = self.objects.get(key)
            if method == "GET" and name is None:
                selector = _selector(query.get("labelSelector", ""))
                items = [
                    copy.deepcopy(o)
                    for (r, n, _), o in sorted(self.objects.items())
                    if r == resource and (not ns or n == ns) and _selected(o, selector)
                ]
                return 200, {
                    "kind": _KINDS[resource] + "List",
                    "apiVersion": "v1",
                    "metadata": {"resourceVersion": str(self.rv)},
                    "items": items,
                }
            if method == "POST":
                assert body is not None
                body.setdefault("metadata", {})["namespace"] = ns
                key = (resource, ns, body["metadata"]["name"])
                if key in self.objects:
                    return 409, _status(
                        409, "AlreadyExists", f'{resource} "{key[2]}" already exists'
                    )
                return 201, self._store(resource, body, None)
            if current is None:
                return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
            if method == "GET":
                return 200, copy.deepcopy(current)
            if method == "PUT":
                assert body is not None
                if (
                    body["metadata"].get("resourceVersion")
                    != current["metadata"]["resourceVersion"]
                ):
                    return 409, _status(
                        409,
                        "Conflict",
                        "the object has been modified; "
                        "please apply your changes to the latest version and try again",
                    )
                return 200, self._store(resource, body, current)
            if method == "DELETE":
                pre = (body or {}).get("preconditions") or {}
                meta = current["metadata"]
                if any(pre.get(k) not in (None, meta.get(k)) for k in ("uid", "resourceVersion")):
                    return 409, _status(409, "Conflict", "Precondition failed")
                self.objects.pop(key)
                self.rv += 1
                self.history.append((self.rv, resource, ns, current, None))
                self._cond.notify_all()
                return 200, _status(200, "", "")
        return 405, _status(405, "MethodNotAllowed", method)

    def events_after(self, resource: str, ns: str, rv: int, selector: dict[str, str]) -> list[JSON]:
        """Watch events for changes after ``rv`` (call with the lock held)."""
        out = []
        for at, r, n, old, new in self.history:
            if at <= rv or r != resource or (ns and n != ns):
                continue
            was, now = _selected(old, selector), _selected(new, selector)
            if now:
                out.append({"type": "MODIFIED" if was else "ADDED", "object": new})
            elif was:
                gone: JSON = copy.deepcopy(new or old or {})
                gone["metadata"]["resourceVersion"] = str(at)
                out.append({"type": "DELETED", "object": gone})
        return out


def _selector(text: str) -> dict[str, str]:
    out = {}
    for term in filter(None, text.split(",")):
        key, eq, value = term.partition("=")
        if not eq or key.endswith("!"):
            raise ValueError(f"fake supports only k=v selectors, got {term!r}")
        out[key] = value
    return out


def _handler(api: FakeWatchApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _body(self) -> JSON | None:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length)) if length else None

        def _answer(self, status: int, payload: JSON) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            api.requests.append((self.command, self.path, status))

        def _any(self) -> None:
            url = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            if query.get("watch") == "true":
                self._watch(url.path, query)
                return
            self._answer(*api.handle(self.command, url.path, query, self._body()))

        do_GET = do_POST = do_PUT = do_DELETE = _any  # noqa: N815 - http.server's names

        def _chunk(self, payload: JSON) -> None:
            data = json.dumps(payload).encode() + b"\n"
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _watch(self, path: str, query: dict[str, str]) -> None:
            m = _PATH.match(path)
            assert m is not None
            assert m["name"] is None
            selector = _selector(query.get("labelSelector", ""))
            since = int(query.get("resourceVersion") or api.rv)
            deadline = time.monotonic() + float(query.get("timeoutSeconds", "300"))
            bookmarks = query.get("allowWatchBookmarks") == "true"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            api.requests.append(("WATCH", self.path, 200))
            with api._cond:
                epoch, expiry = api._epoch, api._expiry
            next_bookmark = time.monotonic() + api.bookmark_seconds
            try:
                while time.monotonic() < deadline:
                    with api._cond:
                        if since < api.compacted:
                            self._chunk(
                                {
                                    "type": "ERROR",
                                    "object": _status(
                                        410,
                                        "Expired",
                                        f"too old resource version: {since} ({api.compacted})",
                                    ),
                                }
                            )
                            break
                        if api._epoch != epoch:  # cut: no last chunk, like a dead server
                            self.close_connection = True
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        if api._expiry != expiry:
                            break
                        events = api.events_after(m["resource"], m["ns"] or "", since, selector)
                        since = api.rv
                        if not events:
                            api._cond.wait(0.1)
                    for event in events:
                        self._chunk(event)
                    if bookmarks and time.monotonic() >= next_bookmark:
                        next_bookmark = time.monotonic() + api.bookmark_seconds
                        self._chunk(
                            {
                                "type": "BOOKMARK",
                                "object": {
                                    "kind": _KINDS[m["resource"]],
                                    "apiVersion": "v1",
                                    "metadata": {"resourceVersion": str(since)},
                                },
                            }
                        )
                self.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            self.close_connection = True

        def log_message(self, *_args: object) -> None:
            pass

    return Handler

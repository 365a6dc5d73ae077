"""A fake Kubernetes API server on 127.0.0.1 for the certificate job's tests.

It speaks only the paths `certs.kube` uses — Secrets get/create/replace in a namespace and
MutatingWebhookConfigurations get/patch (JSON patch) — with the API server's answers where they
matter to the job: metav1.Status error bodies, resourceVersion optimistic concurrency (409 on a
stale replace, AlreadyExists on create, 422 on a failed JSON-patch `test`), immutable Secret
types, and tls Secrets that must carry tls.crt and tls.key. Tests can forbid a verb on a
resource (403, worded like RBAC's), make another writer bump an object before the next writes,
and hold the first N writes until all have arrived so racing jobs really race.
"""

import base64
import copy
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jsonpatch
import jsonpointer

JSON = dict[str, Any]

_SECRET = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/secrets(?:/(?P<name>[^/]+))?$")
_MWC = re.compile(
    r"^/apis/admissionregistration\.k8s\.io/v1/mutatingwebhookconfigurations/(?P<name>[^/]+)$"
)
_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass
class Request:
    verb: str
    resource: str
    name: str
    status: int


@dataclass
class FakeApiServer:
    """The state and the knobs; `serve()` puts it on a loopback port."""

    objects: dict[tuple[str, str, str], JSON] = field(default_factory=dict)
    requests: list[Request] = field(default_factory=list)
    forbidden: set[tuple[str, str]] = field(default_factory=set)  # (verb, resource)
    interfere_writes: int = 0  # bump the target before this many upcoming writes
    port: int = 0
    _rv: int = 100
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _race: threading.Barrier | None = None
    _race_left: int = 0

    # ---- what tests set up and inspect -------------------------------------------------

    def add_secret(
        self,
        namespace: str,
        name: str,
        *,
        type_: str = "Opaque",
        data: dict[str, bytes] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        obj: JSON = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": type_,
            "data": {k: base64.b64encode(v).decode() for k, v in (data or {}).items()},
        }
        if annotations:
            obj["metadata"]["annotations"] = dict(annotations)
        with self._lock:
            self._put(("secrets", namespace, name), obj)

    def add_webhook_config(self, obj: JSON) -> None:
        with self._lock:
            self._put(("mutatingwebhookconfigurations", "", obj["metadata"]["name"]), obj)

    def secret(self, namespace: str, name: str) -> JSON | None:
        with self._lock:
            return copy.deepcopy(self.objects.get(("secrets", namespace, name)))

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes]:
        obj = self.secret(namespace, name)
        assert obj is not None, f"no Secret {namespace}/{name}"
        return {k: base64.b64decode(v) for k, v in obj.get("data", {}).items()}

    def webhook_config(self, name: str) -> JSON:
        with self._lock:
            return copy.deepcopy(self.objects[("mutatingwebhookconfigurations", "", name)])

    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.verb != "get" and r.status < 300]

    def answered(self, status: int) -> list[Request]:
        return [r for r in self.requests if r.status == status]

    def forbid(self, verb: str, resource: str) -> None:
        self.forbidden.add((verb, resource))

    def race(self, writers: int) -> None:
        """Hold the next `writers` writes until all have arrived, then let them go at once."""
        self._race, self._race_left = threading.Barrier(writers, timeout=10), writers

    @contextmanager
    def serve(self) -> Iterator["FakeApiServer"]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
        thread.start()
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- the API ------------------------------------------------------------------------

    def handle(self, method: str, path: str, body: bytes, content_type: str) -> tuple[int, JSON]:
        route = _route(method, path)
        if route is None:
            return 404, _status(404, "NotFound", f"the server could not find {path}")
        verb, resource, ns, name = route
        status, payload = self._answer(verb, resource, ns, name, body, content_type)
        with self._lock:
            self.requests.append(Request(verb, resource, name, status))
        return status, payload

    def _answer(
        self, verb: str, resource: str, ns: str, name: str, body: bytes, content_type: str
    ) -> tuple[int, JSON]:
        if (verb, resource) in self.forbidden:
            scope = f' in the namespace "{ns}"' if ns else " at the cluster scope"
            group = "" if resource == "secrets" else "admissionregistration.k8s.io"
            target = f'{resource} "{name}"' if name else resource  # create has no name yet
            message = (
                f'{target} is forbidden: User "system:serviceaccount:envoy-injector:'
                f'envoy-injector-certs" cannot {verb} resource "{resource}" in API group '
                f'"{group}"{scope}'
            )
            return 403, _status(403, "Forbidden", message)
        if verb != "get":
            self._wait_for_race()
        with self._lock:
            if verb != "get" and self.interfere_writes > 0:
                self.interfere_writes -= 1
                self._bump((resource, ns, name))
            return self._apply(verb, resource, ns, name, body, content_type)

    def _apply(
        self, verb: str, resource: str, ns: str, name: str, body: bytes, content_type: str
    ) -> tuple[int, JSON]:
        key = (resource, ns, name)
        current = self.objects.get(key)
        if verb == "get":
            if current is None:
                return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
            return 200, copy.deepcopy(current)
        if verb == "create":
            obj = json.loads(body)
            name = obj["metadata"]["name"]
            key = (resource, ns, name)
            if key in self.objects:
                return 409, _status(409, "AlreadyExists", f'{resource} "{name}" already exists')
            if (invalid := _invalid_secret(obj, None)) is not None:
                return 422, _status(422, "Invalid", f'Secret "{name}" is invalid: {invalid}')
            obj["metadata"]["namespace"] = ns
            return 201, self._put(key, obj)
        if current is None:
            return 404, _status(404, "NotFound", f'{resource} "{name}" not found')
        if verb == "update":
            obj = json.loads(body)
            sent = obj.get("metadata", {}).get("resourceVersion")
            if sent and sent != current["metadata"]["resourceVersion"]:
                message = (
                    f'Operation cannot be fulfilled on {resource} "{name}": the object has been '
                    "modified; please apply your changes to the latest version and try again"
                )
                return 409, _status(409, "Conflict", message)
            if (invalid := _invalid_secret(obj, current)) is not None:
                return 422, _status(422, "Invalid", f'Secret "{name}" is invalid: {invalid}')
            return 200, self._put(key, obj)
        # patch
        if content_type != "application/json-patch+json":
            return 415, _status(415, "UnsupportedMediaType", f"{content_type} is not supported")
        ops = json.loads(body)
        for op in ops:
            # Worded as the API server's JSON-patch library words a failed test.
            if op.get("op") == "test" and _resolve(current, op["path"]) != op.get("value"):
                return 422, _status(422, "", f"testing value {op['path']} failed: test failed")
        try:
            patched = jsonpatch.apply_patch(current, ops)
        except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as error:
            return 422, _status(422, "", str(error))
        return 200, self._put(key, patched)

    def _put(self, key: tuple[str, str, str], obj: JSON) -> JSON:
        self._rv += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self._rv)
        self.objects[key] = obj
        return copy.deepcopy(obj)

    def _bump(self, key: tuple[str, str, str]) -> None:
        """Another writer touched the object: same content, new resourceVersion."""
        if key in self.objects:
            obj = self.objects[key]
            obj["metadata"].setdefault("labels", {})["touched-by"] = "someone-else"
            self._put(key, obj)

    def _wait_for_race(self) -> None:
        with self._lock:
            barrier = self._race if self._race_left > 0 else None
            self._race_left -= 1 if barrier else 0
        if barrier is not None:
            barrier.wait()


def _route(method: str, path: str) -> tuple[str, str, str, str] | None:
    verb = _VERBS.get(method)
    if verb is None:
        return None
    if match := _SECRET.match(path):
        name = match["name"] or ""
        if (verb == "create") == bool(name):  # create posts to the collection, the rest to a name
            return None
        return verb, "secrets", match["ns"], name
    if (match := _MWC.match(path)) and verb in {"get", "patch"}:
        return verb, "mutatingwebhookconfigurations", "", match["name"]
    return None


def _resolve(obj: JSON, pointer: str) -> object:
    try:
        return jsonpointer.resolve_pointer(obj, pointer)
    except jsonpointer.JsonPointerException:
        return _MISSING


_MISSING = object()


def _invalid_secret(obj: JSON, current: JSON | None) -> str | None:
    type_ = obj.get("type") or "Opaque"
    if current is not None and type_ != (current.get("type") or "Opaque"):
        return f'type: Invalid value: "{type_}": field is immutable'
    if type_ == "kubernetes.io/tls":
        for key in ("tls.crt", "tls.key"):
            if key not in (obj.get("data") or {}):
                return f"data[{key}]: Required value"
    return None


def _status(code: int, reason: str, message: str) -> JSON:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


def _handler(fake: FakeApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the client's connection pool expects
        disable_nagle_algorithm = True  # headers and body go out as two writes; no 40 ms stall

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            path = self.path.split("?", 1)[0]
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            status, payload = fake.handle(self.command, path, body, content_type)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = _serve  # noqa: N815  # http.server's naming

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  # base signature
            """Silence per-request logging; tests inspect `fake.requests` instead."""

    return Handler

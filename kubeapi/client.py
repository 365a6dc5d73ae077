"""Raw JSON requests to the API server: the one way our processes reach it.

Objects stay plain dicts as the server sent them, never generated models, so a read-modify-write
keeps fields this code does not know. Every failure is an `errors.ApiError` carrying the server's
own message. Retries are the caller's choice (a 409 means "read again", a 410 "list again"),
except for the transport: a connection that drops is retried once, because urllib3 pools reuse
sockets the API server may have closed.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator, Mapping
from typing import Any, Final
from urllib.parse import quote, urlencode

import urllib3

from kubeapi import errors
from kubeapi.credentials import Credentials

JSON: Final = "application/json"
MERGE_PATCH: Final = "application/merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"

JSONDict = dict[str, Any]


def path(
    group_version: str,
    resource: str,
    *,
    namespace: str | None = None,
    name: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path: ("v1", "pods", namespace="a") -> /api/v1/namespaces/a/pods."""
    parts = ["/api" if "/" not in group_version else "/apis", group_version]
    if namespace is not None:
        parts += ["namespaces", quote(namespace, safe="")]
    parts.append(resource)
    if name is not None:
        parts.append(quote(name, safe=""))
    if subresource is not None:
        parts.append(subresource)
    return "/".join(parts)


class Client:
    def __init__(self, credentials: Credentials, *, timeout: tuple[float, float] = (5.0, 30.0)):
        self.server = credentials.server
        self._credentials = credentials
        self._timeout = urllib3.Timeout(connect=timeout[0], read=timeout[1])
        context = ssl.create_default_context(cafile=credentials.ca_file)
        if credentials.insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if credentials.cert_file:
            context.load_cert_chain(credentials.cert_file, credentials.key_file)
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=4, ssl_context=context, retries=False)

    # --- verbs --------------------------------------------------------------------------------

    def get(self, url: str, *, params: Mapping[str, str] | None = None) -> JSONDict:
        return self.request("GET", url, params=params)

    def create(self, url: str, body: Mapping[str, Any]) -> JSONDict:
        return self.request("POST", url, body=body)

    def replace(self, url: str, body: Mapping[str, Any]) -> JSONDict:
        return self.request("PUT", url, body=body)

    def patch(self, url: str, body: Any, *, content_type: str = MERGE_PATCH) -> JSONDict:
        return self.request("PATCH", url, body=body, content_type=content_type)

    def delete(self, url: str, *, params: Mapping[str, str] | None = None) -> JSONDict:
        return self.request("DELETE", url, params=params)

    def request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str = JSON,
    ) -> JSONDict:
        data = None if body is None else json.dumps(body).encode()
        response = self._send(method, url, params, data, content_type, stream=False)
        payload = response.data
        if response.status >= 300:
            raise _error(response.status, response.reason or "", payload)
        decoded = json.loads(payload) if payload else {}
        return decoded if isinstance(decoded, dict) else {"items": decoded}

    def watch(
        self,
        url: str,
        *,
        resource_version: str,
        timeout_seconds: int = 300,
        params: Mapping[str, str] | None = None,
    ) -> Iterator[JSONDict]:
        """Watch events ({"type", "object"}) from ``resource_version`` until the server ends it.

        A 410, as an HTTP status or as an ERROR event (the form the server uses once the
        stream is open), raises `errors.Gone`: the caller lists again.
        """
        query = {
            **(params or {}),
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout_seconds),
        }
        response = self._send("GET", url, query, None, JSON, stream=True, read=timeout_seconds + 30)
        try:
            if response.status >= 300:
                raise _error(response.status, response.reason or "", response.read())
            buffer = b""
            for chunk in response.stream(65536, decode_content=True):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        yield _event(line)
            if buffer.strip():
                yield _event(buffer)
        except urllib3.exceptions.HTTPError as error:
            raise errors.Unreachable(0, "WatchBroken", f"watch of {url} broke: {error}") from None
        finally:
            response.release_conn()

    # --- transport ----------------------------------------------------------------------------

    def _send(
        self,
        method: str,
        url: str,
        params: Mapping[str, str] | None,
        data: bytes | None,
        content_type: str,
        *,
        stream: bool,
        read: float | None = None,
    ) -> Any:
        full = self.server + url + ("?" + urlencode(params) if params else "")
        headers = {"Accept": JSON, "User-Agent": "envoy-injector"}
        if data is not None:
            headers["Content-Type"] = content_type
        token = self._credentials.bearer()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        timeout = self._timeout if read is None else urllib3.Timeout(connect=5.0, read=read)
        last: Exception | None = None
        for _ in range(2):
            try:
                return self._pool.request(
                    method,
                    full,
                    body=data,
                    headers=headers,
                    timeout=timeout,
                    preload_content=not stream,
                )
            except urllib3.exceptions.HTTPError as error:
                last = error
        raise errors.Unreachable(
            0, "Unreachable", f"cannot reach the Kubernetes API at {self.server}: {_cause(last)}"
        )


def _event(line: bytes) -> JSONDict:
    event = json.loads(line)
    if not isinstance(event, dict):
        raise errors.ApiError(0, "BadWatchEvent", f"not a watch event: {line[:200]!r}")
    if event.get("type") == "ERROR":
        status = event.get("object") or {}
        raise errors.from_status(
            int(status.get("code") or 0), str(status.get("reason", "")), str(status.get("message"))
        )
    return event


def _error(status: int, reason: str, payload: bytes) -> errors.ApiError:
    """The metav1.Status message the API server sends with every error, as our exception."""
    message = payload.decode(errors="replace").strip()
    try:
        decoded = json.loads(payload)
    except ValueError:
        decoded = None
    if isinstance(decoded, dict):
        message = str(decoded.get("message") or message)
        reason = str(decoded.get("reason") or reason)
    return errors.from_status(status, reason, " ".join(message.split()))


def _cause(error: BaseException | None) -> str:
    """The innermost reason ("Connection refused"), without urllib3's wrapping."""
    seen = error
    while seen is not None:
        nested = getattr(seen, "reason", None) or seen.__cause__
        if not isinstance(nested, BaseException) or nested is seen:
            break
        seen = nested
    text = str(seen) if seen else "no answer"
    return " ".join(text.split(">: ", 1)[-1].split())

"""The job's only contact with the cluster, through the official `kubernetes` client.

This is the one module that imports `kubernetes` (and `urllib3`, which it raises through). The
client is untyped underneath, so `Any` stays in here: callers get frozen dataclasses of plain
values and `CertError`s whose message is the one line the operator reads.

Objects are read and written as raw JSON (`_preload_content=False`, dict bodies) rather than
through the generated models, which drop fields they do not know; a replaced Secret keeps
every label, annotation and owner reference it had. Every write is conditional: replace sends
the resourceVersion that was read, the caBundle patch starts with a JSON-patch `test` of it.
Losing such a race raises `ConflictError`, which the job answers by starting over.
"""

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import urllib3
from kubernetes import client, config

from certs.errors import CertError, ConflictError

TLS_TYPE: Final = "kubernetes.io/tls"
OPAQUE_TYPE: Final = "Opaque"
MANAGED_BY: Final = {"app.kubernetes.io/managed-by": "envoy-injector-certs"}
# Connect and read timeouts: an unreachable API fails the Job in seconds, not after TCP's minutes.
TIMEOUT: Final = (5.0, 30.0)
_JSON_PATCH: Final = "application/json-patch+json"
_API_GROUPS: Final = {
    "secrets": "",
    "mutatingwebhookconfigurations": "admissionregistration.k8s.io",
}

# The loaders carry no annotations; typed aliases keep `Any` from spreading into callers.
_load_incluster: Callable[..., None] = config.load_incluster_config
_load_kubeconfig: Callable[..., None] = config.load_kube_config


@dataclass(frozen=True)
class Secret:
    namespace: str
    name: str
    type: str
    data: Mapping[str, bytes]  # base64-decoded
    annotations: Mapping[str, str]
    resource_version: str
    raw: str  # the object as read (JSON), the base of a replace so nothing else is lost


@dataclass(frozen=True)
class Webhook:
    name: str
    ca_bundle: bytes  # base64-decoded PEM; empty when unset


@dataclass(frozen=True)
class WebhookConfig:
    name: str
    resource_version: str
    webhooks: tuple[Webhook, ...]


class Cluster:
    """Secrets and MutatingWebhookConfigurations, with API errors turned into `CertError`s."""

    def __init__(self, api_client: client.ApiClient) -> None:
        self._host: str = api_client.configuration.host
        self._core: Any = client.CoreV1Api(api_client)
        self._admission: Any = client.AdmissionregistrationV1Api(api_client)

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> "Cluster":
        """In-cluster credentials inside a Pod, else the kubeconfig (explicit or default)."""
        configuration = client.Configuration()
        try:
            if kubeconfig is None:
                try:
                    _load_incluster(client_configuration=configuration)
                except config.ConfigException:
                    _load_kubeconfig(client_configuration=configuration)
            else:
                _load_kubeconfig(config_file=kubeconfig, client_configuration=configuration)
        except (config.ConfigException, OSError) as error:
            where = kubeconfig or "the default kubeconfig"
            raise CertError(
                f"no Kubernetes credentials: not in a cluster and {where} is unusable "
                f"({_one_line(str(error))}); pass --kubeconfig FILE"
            ) from error
        return cls(client.ApiClient(configuration))

    def get_secret(self, namespace: str, name: str, *, expected_type: str) -> Secret | None:
        """The Secret, or None if it does not exist. A Secret of another type is an error:
        its type cannot change, so it must be deleted by a person, not overwritten by us."""
        what = f'secrets "{name}" in namespace {namespace}'
        try:
            obj = self._call(
                "get", what, lambda: self._core.read_namespaced_secret(name, namespace, **_RAW)
            )
        except _NotFound:
            return None
        secret = _secret(obj)
        if secret.type != expected_type:
            raise CertError(
                f"Secret {namespace}/{name} has type {secret.type!r}, expected "
                f"{expected_type!r}; a Secret's type cannot change, so delete it and re-run"
            )
        return secret

    def create_secret(
        self,
        namespace: str,
        name: str,
        *,
        type_: str,
        data: Mapping[str, bytes],
        annotations: Mapping[str, str],
    ) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": dict(MANAGED_BY),
                "annotations": dict(annotations),
            },
            "type": type_,
            "data": _encode(data),
        }
        what = f'secrets "{name}" in namespace {namespace}'
        self._write(
            "create", what, lambda: self._core.create_namespaced_secret(namespace, body, **_RAW)
        )

    def replace_secret(
        self,
        secret: Secret,
        *,
        data: Mapping[str, bytes],
        annotations: Mapping[str, str],
        owned_annotations: frozenset[str],
    ) -> None:
        """Replace data and our annotations, keeping everything else; 409 if it changed since."""
        body: dict[str, Any] = json.loads(secret.raw)
        if body.get("immutable"):
            raise CertError(
                f"Secret {secret.namespace}/{secret.name} is immutable; delete it and re-run"
            )
        metadata = body.setdefault("metadata", {})
        kept = {
            k: v
            for k, v in (metadata.get("annotations") or {}).items()
            if k not in owned_annotations
        }
        metadata["annotations"] = kept | dict(annotations)
        metadata["resourceVersion"] = secret.resource_version
        body["data"] = _encode(data)
        body.pop("stringData", None)
        what = f'secrets "{secret.name}" in namespace {secret.namespace}'
        self._write(
            "update",
            what,
            lambda: self._core.replace_namespaced_secret(
                secret.name, secret.namespace, body, **_RAW
            ),
        )

    def get_webhook_config(self, name: str) -> WebhookConfig:
        what = f'mutatingwebhookconfigurations "{name}"'
        try:
            obj = self._call(
                "get",
                what,
                lambda: self._admission.read_mutating_webhook_configuration(name, **_RAW),
            )
        except _NotFound:
            raise CertError(
                f"MutatingWebhookConfiguration {name!r} not found; apply the injector "
                "manifests first or pass --webhook-config"
            ) from None
        webhooks = tuple(
            Webhook(
                name=str(entry.get("name", "")),
                ca_bundle=_decode(str((entry.get("clientConfig") or {}).get("caBundle", ""))),
            )
            for entry in obj.get("webhooks") or []
        )
        return WebhookConfig(name=name, resource_version=_resource_version(obj), webhooks=webhooks)

    def patch_ca_bundle(self, webhook_config: WebhookConfig, ca_bundle: bytes) -> int:
        """Set caBundle in every webhook entry that differs; returns how many were patched.

        The patch tests the resourceVersion (so a concurrent change makes it fail instead of
        landing on a moved entry) and each entry's name, and touches nothing but caBundle.
        """
        ops: list[dict[str, str]] = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": webhook_config.resource_version,
            }
        ]
        changed = 0
        encoded = base64.b64encode(ca_bundle).decode()
        for index, webhook in enumerate(webhook_config.webhooks):
            if webhook.ca_bundle == ca_bundle:
                continue
            changed += 1
            ops.append({"op": "test", "path": f"/webhooks/{index}/name", "value": webhook.name})
            # `add` sets a member whether or not it exists yet (RFC 6902 4.1).
            ops.append(
                {"op": "add", "path": f"/webhooks/{index}/clientConfig/caBundle", "value": encoded}
            )
        if changed:
            name = webhook_config.name
            self._write(
                "patch",
                f'mutatingwebhookconfigurations "{name}"',
                lambda: self._admission.patch_mutating_webhook_configuration(
                    name, ops, _content_type=_JSON_PATCH, **_RAW
                ),
            )
        return changed

    def _write(self, verb: str, what: str, request: Callable[[], Any]) -> None:
        try:
            self._call(verb, what, request)
        except _NotFound:
            # The object vanished between our read and our write: another writer's business,
            # so start over like any other lost race.
            raise ConflictError(f"{what} was deleted while we updated it") from None

    def _call(self, verb: str, what: str, request: Callable[[], Any]) -> dict[str, Any]:
        """Run one request; return its JSON body or raise a one-line `CertError`."""
        try:
            response = request()
        except client.ApiException as error:
            raise _api_error(verb, what, error) from None
        except urllib3.exceptions.HTTPError as error:
            raise CertError(
                f"cannot reach the Kubernetes API at {self._host}: {_root_cause(error)}"
            ) from None
        body: dict[str, Any] = json.loads(response.data or b"{}")
        return body


class _NotFound(Exception):
    """A 404, for the callers that expect one; never leaves this module."""


_RAW: Final[dict[str, Any]] = {"_preload_content": False, "_request_timeout": TIMEOUT}


def _api_error(verb: str, what: str, error: Any) -> Exception:
    status: int = error.status or 0
    message = _status_message(error)
    resource = what.split(" ", 1)[0]
    if status == 404:
        return _NotFound(what)
    if status == 409:
        return ConflictError(f"{verb} {what}: {message or 'conflict'}")
    if status == 422 and verb == "patch" and "test" in message.lower():
        # A failed JSON-patch `test` (our resourceVersion guard) is a lost race, not bad input.
        return ConflictError(f"{verb} {what}: {message}")
    if status == 403:
        group = _API_GROUPS.get(resource, "")
        return CertError(
            f"forbidden: cannot {verb} {what}; the job's ServiceAccount needs RBAC verb "
            f'"{verb}" on resource "{resource}" in API group "{group}" ({message})'
        )
    if status == 401:
        return CertError(f"unauthorized: the API server rejected the job's credentials ({message})")
    if status == 0:  # the client's own failures (TLS handshake), not an HTTP answer
        return CertError(f"cannot reach the Kubernetes API: {_one_line(str(error.reason))}")
    return CertError(f"{verb} {what} failed: HTTP {status} {message}".rstrip())


def _status_message(error: Any) -> str:
    """The `message` of the metav1.Status body the API server sends with every error."""
    try:
        status = json.loads(error.body or "")
    except ValueError:
        return _one_line(str(error.body or error.reason or ""))
    if isinstance(status, dict):
        return _one_line(str(status.get("message", "")))
    return ""


def _root_cause(error: BaseException) -> str:
    """The innermost reason, e.g. "[Errno 111] Connection refused", without urllib3's wrapping."""
    seen: BaseException = error
    while True:
        nested = getattr(seen, "reason", None) or seen.__cause__ or seen.__context__
        if not isinstance(nested, BaseException) or nested is seen:
            break
        seen = nested
    text = str(seen)
    # urllib3 prefixes "<connection object at 0x…>: "; keep only what a person can act on.
    return _one_line(text.split(">: ", 1)[-1] or type(seen).__name__)


def _secret(obj: Mapping[str, Any]) -> Secret:
    metadata = obj.get("metadata") or {}
    return Secret(
        namespace=str(metadata.get("namespace", "")),
        name=str(metadata.get("name", "")),
        type=str(obj.get("type") or OPAQUE_TYPE),  # the API defaults an unset type to Opaque
        data={k: _decode(str(v)) for k, v in (obj.get("data") or {}).items()},
        annotations={str(k): str(v) for k, v in (metadata.get("annotations") or {}).items()},
        resource_version=_resource_version(obj),
        raw=json.dumps(obj),
    )


def _resource_version(obj: Mapping[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion", ""))


def _encode(data: Mapping[str, bytes]) -> dict[str, str]:
    return {key: base64.b64encode(value).decode() for key, value in data.items()}


def _decode(value: str) -> bytes:
    # Garbage reads as empty; rotation then treats the part as missing and reissues it.
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def _one_line(text: str) -> str:
    return " ".join(text.split())

"""AdmissionReview admission.k8s.io/v1 in and out, and nothing else.

Wire formats are TypedDicts over the plain parsed JSON. Responses are built by constructors
named after the outcome, and each of them echoes the request's uid.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, NotRequired, TypedDict

import orjson

from webhook import errors, view

API_VERSION: Final = "admission.k8s.io/v1"
KIND: Final = "AdmissionReview"
_EXPECTED: Final = f"expected an {KIND} of apiVersion {API_VERSION}"
OPERATIONS: Final = ("CREATE", "UPDATE", "DELETE", "CONNECT")


class StatusDict(TypedDict):
    code: int
    message: str
    reason: NotRequired[str]


class ResponseDict(TypedDict):
    uid: str
    allowed: bool
    status: NotRequired[StatusDict]
    patchType: NotRequired[str]
    patch: NotRequired[str]
    warnings: NotRequired[list[str]]


class ReviewDict(TypedDict):
    apiVersion: str
    kind: str
    response: ResponseDict


@dataclass(frozen=True)
class AdmissionRequest:
    """The parts of request we act on; ``object`` is the raw dict, never a typed model."""

    uid: str
    kind: str
    operation: str
    namespace: str
    sub_resource: str
    object: dict[str, Any]

    @property
    def is_pod_create(self) -> bool:
        return self.kind == "Pod" and self.operation == "CREATE" and not self.sub_resource


def _type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(
        type(value), "number" if isinstance(value, int | float) else "null"
    )


def _string(request: dict[str, Any], key: str) -> str:
    value = request.get(key, "")
    if not isinstance(value, str):
        raise errors.ReviewError(f"request.{key} must be a string, got {_type(value)}")
    return value


def parse_review(body: bytes) -> AdmissionRequest:
    """Decode and check the envelope; raises ReviewError naming what is wrong.

    The fast path (view.py) decodes only the fields the injector reads, into the same shape;
    a body it cannot take (not JSON, a field of an unexpected type) is decoded whole, which
    names the problem or tolerates it exactly as before. Both go through the same checks.
    """
    if not body:
        raise errors.ReviewError(f"the request body is empty; {_EXPECTED}")
    review = view.parse(body)
    if review is None:
        try:
            review = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise errors.ReviewError(
                f"the request body is not valid JSON ({exc}); {_EXPECTED}"
            ) from None
    if not isinstance(review, dict):
        raise errors.ReviewError(f"the request body is a JSON {_type(review)}; {_EXPECTED}")
    if review.get("kind") != KIND:
        raise errors.ReviewError(f"kind is {review.get('kind')!r}; {_EXPECTED}")
    if review.get("apiVersion") != API_VERSION:
        raise errors.ReviewError(
            f"apiVersion {review.get('apiVersion')!r} is not supported; {_EXPECTED} "
            "(set admissionReviewVersions: [v1] in the webhook configuration)"
        )
    request = review.get("request")
    if not isinstance(request, dict):
        raise errors.ReviewError(f"request is missing or not an object; {_EXPECTED}")
    uid = request.get("uid")
    if not isinstance(uid, str) or not uid:
        raise errors.ReviewError("request.uid is missing or empty; it must be a non-empty string")
    obj = request.get("object")
    if obj is not None and not isinstance(obj, dict):
        raise errors.ReviewError(f"request.object must be an object or null, got {_type(obj)}")
    kind_info = request.get("kind")
    if not isinstance(kind_info, dict) or not all(
        isinstance(kind_info.get(field, ""), str) for field in ("group", "version", "kind")
    ):
        raise errors.ReviewError("request.kind must be a GroupVersionKind object")
    kind = kind_info.get("kind", "")
    operation = _string(request, "operation")
    if operation not in OPERATIONS:
        raise errors.ReviewError(
            f"request.operation {operation!r} is not one of {', '.join(OPERATIONS)}"
        )
    parsed = AdmissionRequest(
        uid=uid,
        kind=kind,
        operation=operation,
        namespace=_string(request, "namespace"),
        sub_resource=_string(request, "subResource"),
        object=obj if isinstance(obj, dict) else {},
    )
    if parsed.is_pod_create and not isinstance(obj, dict):
        raise errors.ReviewError("request.object must be the Pod being created (a JSON object)")
    return parsed


def _review(response: ResponseDict) -> ReviewDict:
    return {"apiVersion": API_VERSION, "kind": KIND, "response": response}


def allowed(uid: str, *, warnings: Sequence[str] = ()) -> ReviewDict:
    response: ResponseDict = {"uid": uid, "allowed": True}
    if warnings:
        response["warnings"] = list(warnings)
    return _review(response)


def patched(uid: str, patch: bytes, *, warnings: Sequence[str] = ()) -> ReviewDict:
    """Allowed with ``patch``, an encoded JSON Patch."""
    review = allowed(uid, warnings=warnings)
    review["response"]["patchType"] = "JSONPatch"
    review["response"]["patch"] = _base64(patch)
    return review


@functools.lru_cache(maxsize=256)  # patches repeat: the same sidecar for the same kind of Pod
def _base64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# metav1.StatusReason values, which clients understand; our own reason codes go in logs.
_STATUS_REASONS: Final = {400: "BadRequest", 403: "Forbidden", 422: "Invalid"}


def denied(uid: str, message: str, *, code: int) -> ReviewDict:
    status: StatusDict = {"code": code, "message": message}
    if code in _STATUS_REASONS:
        status["reason"] = _STATUS_REASONS[code]
    return _review({"uid": uid, "allowed": False, "status": status})

"""The OpenAPI description of POST /mutate, which FastAPI cannot see (it is served in front).

Schemathesis drives the server from this description in the tests, so it must stay honest:
what it calls valid is answered 200, what it calls invalid gets a 4xx.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

_REVIEW_SCHEMAS: Final[dict[str, Any]] = {
    "AdmissionReview": {
        "type": "object",
        "required": ["apiVersion", "kind", "request"],
        "properties": {
            "apiVersion": {"type": "string", "enum": ["admission.k8s.io/v1"]},
            "kind": {"type": "string", "enum": ["AdmissionReview"]},
            "request": {
                "type": "object",
                "required": ["uid", "kind", "operation"],
                "properties": {
                    "uid": {"type": "string", "minLength": 1},
                    "kind": {
                        "type": "object",
                        "properties": {
                            "group": {"type": "string"},
                            "version": {"type": "string"},
                            "kind": {"type": "string"},
                        },
                    },
                    "namespace": {"type": "string"},
                    "operation": {
                        "type": "string",
                        "enum": ["CREATE", "UPDATE", "DELETE", "CONNECT"],
                    },
                    "subResource": {"type": "string"},
                    "object": {
                        "type": ["object", "null"],
                        "description": "the object, e.g. the Pod being created",
                    },
                },
            },
        },
    },
    "AdmissionReviewResponse": {
        "type": "object",
        "required": ["apiVersion", "kind", "response"],
        "properties": {
            "apiVersion": {"type": "string", "enum": ["admission.k8s.io/v1"]},
            "kind": {"type": "string", "enum": ["AdmissionReview"]},
            "response": {
                "type": "object",
                "required": ["uid", "allowed"],
                "properties": {
                    "uid": {"type": "string"},
                    "allowed": {"type": "boolean"},
                    "patchType": {"type": "string", "enum": ["JSONPatch"]},
                    "patch": {"type": "string", "format": "byte"},
                    "warnings": {"type": "array", "items": {"type": "string"}},
                    "status": {"type": "object"},
                },
            },
        },
    },
    "Status": {
        "type": "object",
        "required": ["kind", "apiVersion", "status", "message", "code"],
        "properties": {
            "kind": {"type": "string", "enum": ["Status"]},
            "apiVersion": {"type": "string"},
            "status": {"type": "string"},
            "message": {"type": "string"},
            "reason": {"type": "string"},
            "code": {"type": "integer"},
        },
    },
}


def builder(app: FastAPI, *, max_body_bytes: int) -> Callable[[], dict[str, Any]]:
    """FastAPI's openapi() for ``app``, with POST /mutate described (it bypasses FastAPI)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
        status = {"application/json": {"schema": {"$ref": "#/components/schemas/Status"}}}
        review = {"application/json": {"schema": {"$ref": "#/components/schemas/AdmissionReview"}}}
        answer = {
            "application/json": {"schema": {"$ref": "#/components/schemas/AdmissionReviewResponse"}}
        }
        schema.setdefault("components", {}).setdefault("schemas", {}).update(_REVIEW_SCHEMAS)
        schema.setdefault("paths", {})["/mutate"] = {
            "post": {
                "summary": "Answer an AdmissionReview (admission.k8s.io/v1) for a Pod",
                "operationId": "mutate",
                "requestBody": {"required": True, "content": review},
                "responses": {
                    "200": {"description": "the review with its response", "content": answer},
                    "400": {"description": "not an AdmissionReview v1", "content": status},
                    "408": {"description": "the body did not arrive in time", "content": status},
                    "413": {
                        "description": f"body over {max_body_bytes} bytes",
                        "content": status,
                    },
                    "415": {"description": "not application/json", "content": status},
                    "503": {"description": "too many reviews in flight", "content": status},
                },
            }
        }
        app.openapi_schema = schema
        return schema

    return build

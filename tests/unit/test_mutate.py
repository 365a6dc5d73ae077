"""The review pipeline and its error contract, pinned byte for byte where it matters."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support.pods import body, check_injection_invariants, make_pod, make_review, validate
from webhook import inject, mutate
from webhook.spec import Policy

CTX = mutate.Context(excluded_namespaces=frozenset({"envoy-injector"}))
UID = "7f0b2891-916f-4ed6-b7cd-27bff1815a8c"


def status(message: str, code: int = 400, reason: str = "BadRequest") -> bytes:
    return (
        b'{"kind":"Status","apiVersion":"v1","status":"Failure","message":"'
        + message.encode()
        + b'","reason":"'
        + reason.encode()
        + b'","code":'
        + str(code).encode()
        + b"}"
    )


EXPECTED = "expected an AdmissionReview of apiVersion admission.k8s.io/v1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"", status(f"the request body is empty; {EXPECTED}")),
        (b"[]", status(f"the request body is a JSON array; {EXPECTED}")),
        (
            b'{"kind":"Pod","apiVersion":"v1"}',
            status(f"kind is 'Pod'; {EXPECTED}"),
        ),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1beta1","request":{}}',
            status(
                f"apiVersion 'admission.k8s.io/v1beta1' is not supported; {EXPECTED} "
                "(set admissionReviewVersions: [v1] in the webhook configuration)"
            ),
        ),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}',
            status(f"request is missing or not an object; {EXPECTED}"),
        ),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"kind":{}}}',
            status("request.uid is missing or empty; it must be a non-empty string"),
        ),
        (
            b'{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":""}}',
            status("request.uid is missing or empty; it must be a non-empty string"),
        ),
    ],
    ids=["empty", "not-an-object", "wrong-kind", "v1beta1", "no-request", "no-uid", "empty-uid"],
)
def test_a_broken_envelope_gets_400_with_a_status_naming_the_problem(
    raw: bytes, expected: bytes
) -> None:
    reply = mutate.review(raw, CTX)
    assert reply.status == 400
    assert reply.body == expected
    assert reply.outcome.kind == "invalid"


def test_a_body_that_is_not_json_gets_400_saying_so() -> None:
    reply = mutate.review(b"{not json", CTX)
    assert reply.status == 400
    payload = json.loads(reply.body)
    assert payload["code"] == 400
    assert payload["message"].startswith("the request body is not valid JSON (")
    assert payload["message"].endswith(EXPECTED)


def test_a_pod_create_without_an_object_is_a_broken_envelope() -> None:
    review = make_review(None)
    reply = mutate.review(body(review), CTX)
    assert reply.status == 400
    assert b"request.object must be the Pod being created" in reply.body


@pytest.mark.parametrize(
    ("operation", "kind"),
    [("UPDATE", "Pod"), ("DELETE", "Pod"), ("CONNECT", "Pod"), ("CREATE", "Service")],
    ids=["update", "delete", "connect", "service"],
)
def test_anything_but_a_pod_create_is_allowed_unchanged(operation: str, kind: str) -> None:
    reply = mutate.review(body(make_review(make_pod(), operation=operation, kind=kind)), CTX)
    assert reply.status == 200
    assert reply.body == (
        b'{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",'
        b'"response":{"uid":"' + UID.encode() + b'","allowed":true}}'
    )
    assert reply.outcome.label == "skipped:not_pod_create"


def _response(reply: mutate.Reply) -> dict[str, Any]:
    review = json.loads(reply.body)
    assert review["apiVersion"] == "admission.k8s.io/v1"
    assert review["kind"] == "AdmissionReview"
    response: dict[str, Any] = review["response"]
    assert response["uid"] == UID
    return response


def test_a_pod_create_is_answered_with_a_base64_json_patch_that_applies() -> None:
    pod = make_pod(name=None, generate_name="web-")
    reply = mutate.review(body(make_review(pod)), CTX)
    response = _response(reply)
    assert reply.status == 200
    assert response["allowed"] is True
    assert response["patchType"] == "JSONPatch"
    ops = json.loads(base64.b64decode(response["patch"]))
    after = check_injection_invariants(pod, ops)
    validate(after)
    assert reply.outcome.label == "injected"
    assert reply.outcome.pod == "web-"
    assert reply.outcome.patch_ops == len(ops)


def test_skipped_pods_are_allowed_without_a_patch_and_say_why() -> None:
    reply = mutate.review(body(make_review(make_pod(hostNetwork=True))), CTX)
    response = _response(reply)
    assert response == {"uid": UID, "allowed": True}
    assert reply.outcome.label == "skipped:host_network"


def test_the_injector_never_mutates_its_own_namespace_even_if_called() -> None:
    reply = mutate.review(body(make_review(make_pod(), namespace="envoy-injector")), CTX)
    assert "patch" not in _response(reply)
    assert reply.outcome.label == "skipped:excluded_namespace"


def test_invalid_annotations_are_denied_with_code_400_and_every_problem() -> None:
    pod = make_pod(
        annotations={"envoy-inject.io/concurrency": "x", "envoy-inject.io/log-level": "y"}
    )
    reply = mutate.review(body(make_review(pod)), CTX)
    response = _response(reply)
    assert reply.status == 200
    assert response["allowed"] is False
    assert response["status"]["code"] == 400
    assert response["status"]["reason"] == "BadRequest"
    assert "envoy-inject.io/concurrency: 'x' is invalid" in response["status"]["message"]
    assert "envoy-inject.io/log-level: 'y' is invalid" in response["status"]["message"]
    assert reply.outcome.label == "rejected:invalid_annotation"


def test_a_policy_violation_is_denied_with_code_403() -> None:
    ctx = mutate.Context(policy=Policy(allowed_image_prefixes=("registry.example/",)))
    pod = make_pod(annotations={"envoy-inject.io/image": "docker.io/evil/envoy:1"})
    response = _response(mutate.review(body(make_review(pod)), ctx))
    assert response["allowed"] is False
    assert response["status"]["code"] == 403
    assert response["status"]["reason"] == "Forbidden"
    assert "registry.example/" in response["status"]["message"]


def test_ignored_annotations_come_back_as_admission_warnings() -> None:
    pod = make_pod(annotations={"envoy-inject.io/admin-port": "15000"})
    response = _response(mutate.review(body(make_review(pod)), CTX))
    assert response["allowed"] is True
    assert len(response["warnings"]) == 1
    assert "envoy-inject.io/admin-port was ignored" in response["warnings"][0]


def test_our_own_bug_is_a_500_without_the_traceback_in_the_body(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken_plan(*_args: object, **_kwargs: object) -> inject.Plan:
        raise KeyError("secret internal detail")

    monkeypatch.setattr(inject, "plan", broken_plan)
    reply = mutate.review(body(make_review(make_pod())), CTX)
    assert reply.status == 500
    assert reply.body == status(
        "internal error in the envoy-injector webhook; see its log", 500, "InternalError"
    )
    assert reply.outcome.kind == "error"
    assert isinstance(reply.outcome.error, KeyError)
    assert reply.outcome.uid == UID


def test_a_review_with_unexpected_types_inside_request_is_a_400_not_a_500() -> None:
    review = make_review(make_pod())
    review["request"]["namespace"] = 42
    reply = mutate.review(body(review), CTX)
    assert reply.status == 400
    assert b"request.namespace must be a string" in reply.body


@pytest.mark.parametrize(
    "key",
    [
        "security-context",
        "run-as-user",
        "privileged",
        "capabilities",
        "host-path",
        "volumes",
        "extra-volume-mounts",
        "allow-privilege-escalation",
    ],
)
def test_no_annotation_can_change_privileges_or_add_volumes(key: str) -> None:
    value = '{"privileged": true, "runAsUser": 0, "hostPath": {"path": "/"}}'
    pod = make_pod(annotations={f"envoy-inject.io/{key}": value})
    reply = mutate.review(body(make_review(pod)), CTX)
    response = _response(reply)
    assert response["allowed"] is True
    assert (
        f"envoy-inject.io/{key} is not a known annotation and was ignored"
        in response["warnings"][0]
    )
    ops = json.loads(base64.b64decode(response["patch"]))
    after = check_injection_invariants(pod, ops, warned=True)
    assert after["metadata"]["labels"]["envoy-inject.io/warned"] == "true"
    sidecar = after["spec"]["containers"][-1]
    assert sidecar["securityContext"]["runAsUser"] == 101
    assert sidecar["securityContext"]["privileged"] is False
    assert sidecar["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert [v["name"] for v in after["spec"]["volumes"]] == ["envoy-config-volume"]
    assert "hostPath" not in json.dumps(after["spec"])


def test_a_pod_owned_by_a_job_gets_the_native_sidecar_so_the_job_can_complete() -> None:
    pod = make_pod(name=None, generate_name="migrate-")
    pod["metadata"]["ownerReferences"] = [
        {"apiVersion": "batch/v1", "kind": "Job", "name": "migrate", "uid": "u", "controller": True}
    ]
    ops = json.loads(
        base64.b64decode(_response(mutate.review(body(make_review(pod)), CTX))["patch"])
    )
    after = check_injection_invariants(pod, ops)
    assert after["spec"]["initContainers"][0]["name"] == "envoy-sidecar"
    assert after["spec"]["initContainers"][0]["restartPolicy"] == "Always"
    pod["metadata"]["annotations"] = {"envoy-inject.io/native-sidecar": "false"}
    ops = json.loads(
        base64.b64decode(_response(mutate.review(body(make_review(pod)), CTX))["patch"])
    )
    assert check_injection_invariants(pod, ops)["spec"]["containers"][-1]["name"] == "envoy-sidecar"

"""One admission review, from body bytes to the reply: the one place errors become answers.

parse -> excluded namespaces -> decide -> resolve annotations -> inject -> response. The reply
carries an Outcome for the shell to log and count; nothing here does I/O.
"""

import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, TypedDict

import orjson

from webhook import admission, errors, inject, limits, workloads
from webhook.spec import Policy, SidecarSpec

_JSON_STATUS_REASONS: Final = {
    400: "BadRequest",
    405: "MethodNotAllowed",
    408: "Timeout",
    413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType",
    500: "InternalError",
    503: "ServiceUnavailable",
}


@dataclass(frozen=True)
class Context:
    """Everything a review depends on besides the request; built once, shared by requests."""

    defaults: SidecarSpec = field(default_factory=SidecarSpec)
    policy: Policy = field(default_factory=Policy)
    excluded_namespaces: frozenset[str] = frozenset()


class Outcome(NamedTuple):
    """What happened, for logs and metrics.

    ``kind`` is injected, skipped, rejected, invalid (broken envelope) or error (our bug).
    A NamedTuple rather than a frozen dataclass: as immutable, and built three times faster,
    which counts once per review.
    """

    kind: str
    reason: str = ""
    uid: str = ""
    namespace: str = ""
    pod: str = ""
    owner: str = ""
    patch_ops: int = 0
    patch_bytes: int = 0
    message: str = ""
    warnings: tuple[str, ...] = ()
    error: BaseException | None = None

    @property
    def label(self) -> str:
        """The metric/log outcome: injected, skipped:<reason>, rejected:<reason>, error..."""
        return f"{self.kind}:{self.reason}" if self.reason else self.kind


class Reply(NamedTuple):
    status: int
    body: bytes
    outcome: Outcome


def status_body(code: int, message: str) -> bytes:
    """A metav1.Status, the shape Kubernetes clients expect from a failed HTTP call."""
    return orjson.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "message": message,
            "reason": _JSON_STATUS_REASONS.get(code, "BadRequest"),
            "code": code,
        }
    )


def refuse(error: errors.ReviewError) -> Reply:
    """The answer to a broken envelope (also used by the transport for size and type)."""
    return Reply(
        error.status,
        status_body(error.status, str(error)),
        Outcome("invalid", type(error).__name__, message=str(error)),
    )


class _Who(TypedDict):
    uid: str
    namespace: str
    pod: str
    owner: str


def _identity(request: admission.AdmissionRequest) -> _Who:
    meta = request.object.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    name = meta.get("name") or meta.get("generateName") or ""
    owner = ""
    owners = meta.get("ownerReferences")
    for ref in owners if isinstance(owners, list) else []:
        if isinstance(ref, dict) and ref.get("controller") is True:
            owner = f"{ref.get('kind', '')}/{ref.get('name', '')}"
    return {"uid": request.uid, "namespace": request.namespace, "pod": str(name), "owner": owner}


def _answer(review: Any, outcome: Outcome) -> Reply:
    return Reply(200, orjson.dumps(review), outcome)


NamespaceLookup = Callable[[str], limits.Namespace]


def _no_limits(_namespace: str) -> limits.Namespace:
    return limits.EMPTY


def _decide_and_inject(
    request: admission.AdmissionRequest, ctx: Context, namespace_limits: NamespaceLookup
) -> Reply:
    # Outcomes are built whole: dataclasses.replace() costs more than the rest of a skip.
    who = _identity(request)
    if not request.is_pod_create:
        not_create = inject.SkipReason.NOT_POD_CREATE
        return _answer(admission.allowed(request.uid), Outcome("skipped", not_create, **who))
    try:
        plan = inject.plan(
            request.object,
            ctx.defaults,
            ctx.policy,
            namespace=request.namespace,
            excluded=ctx.excluded_namespaces,
            namespace_limits=namespace_limits(request.namespace),
        )
    except errors.PodRejected as exc:
        return _answer(
            admission.denied(request.uid, str(exc), code=exc.code),
            Outcome("rejected", exc.reason, message=str(exc), **who),
        )
    if not plan.decision.inject:
        reason, message = str(plan.decision.reason), plan.decision.explanation
        return _answer(
            admission.allowed(request.uid), Outcome("skipped", reason, message=message, **who)
        )
    review = admission.patched(request.uid, plan.encoded.json, warnings=plan.warnings)
    outcome = Outcome(
        "injected",
        patch_ops=plan.encoded.count,
        patch_bytes=len(review["response"].get("patch", "")),
        warnings=plan.warnings,
        **who,
    )
    return _answer(review, outcome)


def review(body: bytes, ctx: Context, *, namespace_limits: NamespaceLookup = _no_limits) -> Reply:
    """Answer one AdmissionReview body. Never raises: our own bugs become HTTP 500.

    ``namespace_limits`` gives the LimitRanges and ResourceQuotas of a namespace (the shell
    watches them); the sidecar's resources are fitted to them."""
    try:
        request = admission.parse_review(body)
    except errors.ReviewError as exc:
        return refuse(exc)
    except Exception as exc:  # noqa: BLE001 - our bug: 500, and the failurePolicy decides
        return _internal_error(exc)
    try:
        return _decide_and_inject(request, ctx, namespace_limits)
    except Exception as exc:  # noqa: BLE001 - our bug: 500, and the failurePolicy decides
        return _internal_error(exc, uid=request.uid, namespace=request.namespace)


def plan_template(
    template: workloads.Template,
    ctx: Context,
    *,
    namespace_limits: limits.Namespace = limits.EMPTY,
) -> inject.Plan:
    """The webhook's decision for a pod template found offline (the CLI's path, and `check`).

    The namespace and the Job-ness come from the workload; ops are relative to the document.
    ``namespace_limits`` are the namespace's LimitRanges and quotas when known (`check` reads
    them; `inject -f` has no cluster).
    """
    return inject.plan(
        template.pod,
        ctx.defaults,
        ctx.policy,
        namespace=template.namespace,
        excluded=ctx.excluded_namespaces,
        prefix=template.path,
        fallback_cluster=template.name,
        job=template.kind in ("Job", "CronJob"),
        namespace_limits=namespace_limits,
    )


def _internal_error(exc: Exception, *, uid: str = "", namespace: str = "") -> Reply:
    # The traceback goes to the log through the outcome, never into the reply.
    message = "internal error in the envoy-injector webhook; see its log"
    summary = "".join(traceback.format_exception_only(exc)).strip()
    return Reply(
        500,
        status_body(500, message),
        Outcome("error", uid=uid, namespace=namespace, message=summary, error=exc),
    )

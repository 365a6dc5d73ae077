"""The injector's exception tree. Everything the core raises on purpose is an InjectorError::

    InjectorError
    ├── ReviewError          the AdmissionReview envelope is broken (not JSON, wrong kind or
    │   │                    apiVersion, no uid): HTTP 400 with a JSON body naming the problem
    │   ├── MethodNotAllowed not POST: HTTP 405
    │   ├── BodyTimeout      the body did not arrive in time: HTTP 408
    │   ├── BodyTooLarge     over the body cap: HTTP 413
    │   └── BadContentType   not application/json: HTTP 415
    ├── PodRejected          the Pod parsed fine but must not be admitted as asked:
    │   │                    HTTP 200, allowed=false, status.code 400 or 403
    │   ├── AnnotationError  every bad envoy-inject.io/* value at once (400)
    │   ├── PolicyViolation  an override the operator's policy forbids (403)
    │   ├── NameClash        the Pod already has a container or volume with our name (400)
    │   ├── PortClash        an app container already declares a port the sidecar listens on (400)
    │   └── ResourcesDoNotFit  the namespace's LimitRange or ResourceQuota, or the Pod's own
    │                        resources, leave the sidecar no room the Pod did not forbid (400)
    ├── ConfigError          the operator's configuration file is invalid (start-up or reload)
    ├── StatusMismatch       uninject: the status annotation disagrees with the Pod's spec
    └── InvalidSelector      a label selector the API server would refuse

Anything else raised while handling a request is our bug: HTTP 500, so the webhook's
failurePolicy decides what the cluster does.
"""

from __future__ import annotations


class InjectorError(Exception):
    """Base of every error the injector raises on purpose."""


class ReviewError(InjectorError):
    """The request body is not a usable AdmissionReview."""

    status = 400


class MethodNotAllowed(ReviewError):
    status = 405


class BodyTimeout(ReviewError):
    status = 408


class BodyTooLarge(ReviewError):
    status = 413


class BadContentType(ReviewError):
    status = 415


class PodRejected(InjectorError):
    """The Pod must not be admitted; the message is shown to the user by kubectl."""

    code = 400
    reason = "rejected"


class AnnotationError(PodRejected):
    """One or more envoy-inject.io/* annotations have invalid values."""

    reason = "invalid_annotation"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid annotations: " + "; ".join(problems))


class PolicyViolation(PodRejected):
    """An override the operator's policy does not allow."""

    code = 403
    reason = "policy_violation"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("refused by the injector's policy: " + "; ".join(problems))


class NameClash(PodRejected):
    """The Pod already has something with a name the sidecar needs."""

    reason = "name_clash"


class PortClash(PodRejected):
    """An app container declares a port the sidecar would listen on in the shared network."""

    reason = "port_clash"


class ResourcesDoNotFit(PodRejected):
    """The sidecar's resources cannot be made to fit without overriding the Pod's choice."""

    reason = "resources_do_not_fit"

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("the Envoy sidecar does not fit: " + "; ".join(problems))


class ConfigError(InjectorError):
    """The operator's configuration is invalid."""


class MalformedObject(PodRejected):
    """A field the sidecar must extend has the wrong JSON type (only offline input can do this:
    the API server decodes Pods into typed structs before calling webhooks)."""

    reason = "malformed_object"


class StatusMismatch(InjectorError):
    """The status annotation records a sidecar the Pod's spec does not have (or not as recorded),
    so removing "exactly what was injected" is not possible without guessing."""


class InvalidSelector(InjectorError):
    """A label selector that the API server would refuse (unknown operator, misplaced values)."""

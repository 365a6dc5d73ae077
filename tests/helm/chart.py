"""The Helm chart, rendered and compared by the real helm (tests/support/tools.py: helm()).

- :data:`CHART` is manifests/helm/envoy-injector;
- :func:`helm` runs the pinned helm and returns the finished process;
- :func:`template` renders the chart with a values mapping (``helm template -f -``), parsed;
- :func:`refusal` renders values the chart must refuse and returns helm's message;
- :data:`DIFFERENCES` names every way the chart's default rendering may differ from
  ``kubectl kustomize manifests/injector``, and :func:`normalise` removes exactly those.
"""

from __future__ import annotations

import copy
import functools
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import yaml

from tests.manifests.documents import MANIFESTS
from tests.support import tools

CHART: Final = MANIFESTS / "helm" / "envoy-injector"
RELEASE: Final = "envoy-injector"
NAMESPACE: Final = "envoy-injector"

Object = dict[str, Any]


def helm(*args: str, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The pinned helm with ``args``; never raises for a non-zero exit."""
    return subprocess.run(
        [str(tools.helm()), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@functools.cache
def _render(values_yaml: str, namespace: str) -> str:
    result = helm(
        "template", RELEASE, str(CHART), "--namespace", namespace, "-f", "-", stdin=values_yaml
    )
    if result.returncode != 0:
        raise AssertionError(f"helm template failed:\n{result.stderr}")
    return result.stdout


def rendered_text(values: Object | None = None, *, namespace: str = NAMESPACE) -> str:
    """``helm template`` output as text (cached per values and namespace)."""
    return _render(yaml.safe_dump(values or {}), namespace)


def template(values: Object | None = None, *, namespace: str = NAMESPACE) -> list[Object]:
    """``helm template`` with ``values``, one dict per object (a fresh copy every call)."""
    text = rendered_text(values, namespace=namespace)
    return [doc for doc in yaml.safe_load_all(text) if isinstance(doc, dict)]


def refusal(values: Object) -> str:
    """helm's message for values the chart must refuse; fails the test if helm accepts them."""
    result = helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "-f",
        "-",
        stdin=yaml.safe_dump(values),
    )
    if result.returncode == 0:
        raise AssertionError(f"helm accepted {values}")
    return result.stderr


def key(obj: Object) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


# --- the deliberate differences from the kustomize install --------------------------------------

HELM_LABELS: Final = ("helm.sh/chart", "app.kubernetes.io/managed-by")
CERT_JOB: Final = "envoy-injector-certs"
HASHED_CERT_JOB: Final = re.compile(rf"{CERT_JOB}-[0-9a-f]{{8}}")
CHECKSUM: Final = "checksum/config"


@dataclass(frozen=True)
class Difference:
    """One deliberate difference: why, and how to undo it on a copy of the objects."""

    name: str
    why: str
    undo: Callable[[list[Object], list[Object]], list[Object]]


def _drop_helm_labels(helm_objs: list[Object], _kustomize: list[Object]) -> list[Object]:
    for obj in helm_objs:
        labels = obj["metadata"].get("labels", {})
        for label in HELM_LABELS:
            labels.pop(label, None)
    return helm_objs


def _add_namespace(helm_objs: list[Object], kustomize: list[Object]) -> list[Object]:
    return [*helm_objs, *[o for o in kustomize if o["kind"] == "Namespace"]]


def _drop_checksum(helm_objs: list[Object], _kustomize: list[Object]) -> list[Object]:
    for obj in helm_objs:
        if obj["kind"] == "Deployment":
            template_meta = obj["spec"]["template"]["metadata"]
            annotations = template_meta.get("annotations", {})
            annotations.pop(CHECKSUM, None)
            if not annotations:
                template_meta.pop("annotations", None)
    return helm_objs


def _unhash_cert_job(helm_objs: list[Object], _kustomize: list[Object]) -> list[Object]:
    for obj in helm_objs:
        if obj["kind"] == "Job" and HASHED_CERT_JOB.fullmatch(obj["metadata"]["name"]):
            obj["metadata"]["name"] = CERT_JOB
    return helm_objs


POLICY_KINDS: Final = {"ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"}


def _stamp_policy_namespace(helm_objs: list[Object], kustomize: list[Object]) -> list[Object]:
    stamped = {
        (o["kind"], o["metadata"]["name"]): o["metadata"]["namespace"]
        for o in kustomize
        if o["kind"] in POLICY_KINDS and "namespace" in o["metadata"]
    }
    for obj in helm_objs:
        namespace = stamped.get((obj["kind"], obj["metadata"]["name"]))
        if namespace is not None:
            obj["metadata"]["namespace"] = namespace
    return helm_objs


def _parse_config(objs: list[Object]) -> list[Object]:
    for obj in objs:
        if obj["kind"] == "ConfigMap" and obj["metadata"]["name"] == "envoy-injector-config":
            obj["data"] = {k: yaml.safe_load(v) for k, v in obj["data"].items()}
    return objs


def _config_as_data(helm_objs: list[Object], _kustomize: list[Object]) -> list[Object]:
    return _parse_config(helm_objs)


DIFFERENCES: Final = [
    Difference(
        "helm-labels",
        "every object also carries Helm's standard labels helm.sh/chart and "
        "app.kubernetes.io/managed-by (not on Pod templates or selectors, which stay as they are)",
        _drop_helm_labels,
    ),
    Difference(
        "release-namespace",
        "the chart renders no Namespace: Helm installs into the release namespace, which must "
        "exist before the release (create and label it first, see README.md); every namespaced "
        "object and every reference to the namespace uses the release namespace",
        _add_namespace,
    ),
    Difference(
        "checksum-annotation",
        "the Pod templates of the webhook and the controller carry checksum/config, the hash of "
        "config.yaml, so that `helm upgrade` with a changed configuration rolls both Deployments",
        _drop_checksum,
    ),
    Difference(
        "cert-job-name",
        "the cert Job is called envoy-injector-certs-<hash of its Pod template>: that template is "
        "immutable, so an upgrade that changes it replaces the Job (which runs again) instead of "
        "failing",
        _unhash_cert_job,
    ),
    Difference(
        "no-namespace-on-cluster-scoped-policies",
        "the ValidatingAdmissionPolicy and its binding are cluster-scoped and carry no namespace; "
        "kustomize (5.7 and older) does not know these kinds and stamps one on, which the API "
        "server drops",
        _stamp_policy_namespace,
    ),
    Difference(
        "config-as-data",
        "config.yaml is compared as parsed YAML: the chart renders it from values with toYaml "
        "(keys sorted, no comments)",
        _config_as_data,
    ),
]


def normalise(
    helm_objs: list[Object],
    kustomize: list[Object],
    *,
    differences: list[Difference] | None = None,
) -> tuple[list[Object], list[Object]]:
    """Both renderings with ``differences`` (default: all of :data:`DIFFERENCES`) undone, each
    sorted by kind/namespace/name; the inputs are left as they were."""
    ours = copy.deepcopy(helm_objs)
    theirs = _parse_config(copy.deepcopy(kustomize))
    for difference in DIFFERENCES if differences is None else differences:
        ours = difference.undo(ours, theirs)
    return sorted(ours, key=key), sorted(theirs, key=key)

"""Injection never turns a valid Pod into an invalid one, decided by the real API server.

Every Pod of the peer corpus and Pods drawn by hypothesis (tests/support/admissible.py) are
created with a server-side dry run in namespaces that differ only by the injection label, next
to the things the issue lists: nothing, a LimitRange (with defaults, per-container and per-Pod
limits), a ResourceQuota that tracks compute and ephemeral storage, and Pod Security
`restricted`. Whenever the unlabelled namespace accepts a Pod, the labelled one must accept it
too (injected), or our webhook must refuse it with its own message. An error from any later
admission step, or any message naming our container or volume, fails the test.
"""

from __future__ import annotations

import collections
import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings

from tests.e2e.conftest import SIDECAR, Injector, wait_until_called
from tests.support import admissible, admission_cases
from tests.support.cluster import kube

OUR_DENIAL: Final = re.compile(r'admission webhook "sidecar\.envoy-inject\.io" denied the request')
OURS: Final = ("envoy-sidecar", "envoy-config-volume")

LIMIT_RANGE: Final[dict[str, Any]] = {
    "apiVersion": "v1",
    "kind": "LimitRange",
    "metadata": {"name": "team-limits"},
    "spec": {
        "limits": [
            {
                "type": "Container",
                "max": {"cpu": "300m", "memory": "512Mi"},
                "min": {"cpu": "5m"},
                "default": {"cpu": "200m", "memory": "256Mi"},
                "defaultRequest": {"cpu": "50m", "memory": "64Mi"},
                "maxLimitRequestRatio": {"cpu": "10"},
            },
            {"type": "Pod", "max": {"cpu": "1", "memory": "1536Mi"}},
        ]
    },
}
QUOTA: Final[dict[str, Any]] = {
    "apiVersion": "v1",
    "kind": "ResourceQuota",
    "metadata": {"name": "team-quota"},
    "spec": {
        "hard": {
            "requests.cpu": "8",
            "requests.memory": "16Gi",
            "limits.cpu": "16",
            "limits.memory": "32Gi",
            "requests.ephemeral-storage": "20Gi",
        }
    },
}
# A quota makes every container state what it tracks: these defaults let plain Pods do so.
QUOTA_DEFAULTS: Final[dict[str, Any]] = {
    "apiVersion": "v1",
    "kind": "LimitRange",
    "metadata": {"name": "quota-defaults"},
    "spec": {
        "limits": [
            {
                "type": "Container",
                "default": {"cpu": "200m", "memory": "256Mi"},
                "defaultRequest": {"cpu": "50m", "memory": "64Mi", "ephemeral-storage": "64Mi"},
            }
        ]
    },
}
SETTINGS: Final[dict[str, list[dict[str, Any]]]] = {
    "plain": [],
    "limits": [LIMIT_RANGE],
    "quota": [QUOTA, QUOTA_DEFAULTS],
    "restricted": [],
}


@dataclass
class Tally:
    tried: int = 0
    refused_by_the_api_server: int = 0  # invalid before injection: not our business
    injected: int = 0
    passed_through: int = 0  # accepted, not injected (opt-outs, host network...)
    refused_by_us: collections.Counter[str] = field(default_factory=collections.Counter)


@dataclass
class Pairs:
    namespaces: dict[str, tuple[str, str]]  # setting -> (unlabelled, labelled)
    api: httpx.Client
    tally: dict[str, Tally]

    def check(self, setting: str, pod: dict[str, Any]) -> None:
        plain_ns, labelled_ns = self.namespaces[setting]
        tally = self.tally.setdefault(setting, Tally())
        tally.tried += 1
        plain = self._dry_run(plain_ns, pod)
        if plain.status_code >= 300:
            tally.refused_by_the_api_server += 1
            return
        injected = self._dry_run(labelled_ns, pod)
        message = _message(injected)
        if injected.status_code < 300:
            names = [c["name"] for c in _containers(injected.json())]
            if SIDECAR in names and SIDECAR not in [c["name"] for c in _containers(pod)]:
                tally.injected += 1
            else:
                tally.passed_through += 1
            return
        assert OUR_DENIAL.search(message), (
            f"[{setting}] the API server accepts this Pod without the sidecar but refuses it "
            f"with it, and the refusal is not ours:\n{message}\n{yaml.safe_dump(pod)}"
        )
        tally.refused_by_us[_reason(message)] += 1

    def _dry_run(self, namespace: str, pod: dict[str, Any]) -> httpx.Response:
        return self.api.post(
            f"/api/v1/namespaces/{namespace}/pods", params={"dryRun": "All"}, json=pod
        )


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    spec = pod.get("spec") or {}
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def _reason(message: str) -> str:
    """A short name for our refusal, for the report."""
    for marker, reason in (
        ("declares port", "port clash"),
        ("already has a container named", "name clash (container)"),
        ("already has a volume named", "name clash (volume)"),
        ("does not fit", "resources do not fit"),
        ("invalid annotations", "invalid annotation"),
        ("policy", "policy"),
    ):
        if marker in message:
            return reason
    return message[:80]


def _exists(api: httpx.Client, path: str) -> bool:
    return api.get(path).status_code == 200


def _quota_counted(api: httpx.Client, path: str) -> bool:
    return bool(api.get(path).json().get("status", {}).get("hard"))


@pytest.fixture(scope="module")
def pairs(
    installed: Injector, kubectl: kube.Kubectl, api: httpx.Client, figures: list[str]
) -> Iterator[Pairs]:
    namespaces: dict[str, tuple[str, str]] = {}
    for setting, objects in SETTINGS.items():
        names = (f"valid-{setting}-plain", f"valid-{setting}-injected")
        for name in names:
            kubectl("create", "namespace", name)
            labels = ["envoy-inject=enabled"] if name.endswith("injected") else []
            if setting == "restricted":
                labels.append("pod-security.kubernetes.io/enforce=restricted")
            if labels:
                kubectl("label", "namespace", name, *labels)
            for obj in objects:
                kubectl.apply(
                    yaml.safe_dump({**obj, "metadata": {**obj["metadata"], "namespace": name}})
                )
            account = f"/api/v1/namespaces/{name}/serviceaccounts/default"
            kube.eventually(partial(_exists, api, account), f"ServiceAccount {name}/default")
        namespaces[setting] = names
    # The quota admits nothing until the quota controller has filled in its status.
    for name in namespaces["quota"]:
        quota = f"/api/v1/namespaces/{name}/resourcequotas/team-quota"
        kube.eventually(partial(_quota_counted, api, quota), f"ResourceQuota {name} status")
    # The webhook watches LimitRanges and quotas with the cluster's kubeconfig, as it does in a
    # Pod with its ServiceAccount.
    with installed.webhook(args=("--kubeconfig", str(kubectl.kubeconfig))):
        wait_until_called(installed, namespaces["plain"][1])
        found = Pairs(namespaces, api, {})
        yield found
    for setting, tally in found.tally.items():
        figures.append(
            f"valid Pods stay valid [{setting}]: {tally.tried} tried, "
            f"{tally.refused_by_the_api_server} invalid on their own, {tally.injected} injected, "
            f"{tally.passed_through} accepted without injection, "
            f"{sum(tally.refused_by_us.values())} refused by the webhook "
            f"({dict(tally.refused_by_us) or 'none'}), 0 broken"
        )
    for plain, labelled in namespaces.values():
        kubectl("delete", "namespace", plain, labelled, "--wait=false", check=False)


CORPUS: Final = list(admission_cases.corpus())


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_corpus_pod_the_api_server_accepts_is_accepted_once_injected(
    pairs: Pairs, setting: str
) -> None:
    for case in CORPUS:
        pairs.check(setting, copy.deepcopy(case.pod))


@pytest.mark.parametrize("setting", sorted(SETTINGS))
def test_every_generated_pod_the_api_server_accepts_is_accepted_once_injected(
    pairs: Pairs, setting: str
) -> None:
    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(admissible.admissible_pods(restricted=setting == "restricted"))
    def check(pod: dict[str, Any]) -> None:
        pairs.check(setting, pod)

    check()

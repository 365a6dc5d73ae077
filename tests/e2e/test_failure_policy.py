"""The webhook is down: what `failurePolicy` makes the API server do, and what the user reads."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import yaml

from tests.e2e.conftest import SIDECAR, WEBHOOK, WEBHOOK_NAME, Injector, containers, pod
from tests.support.cluster import kube


def _set_failure_policy(injector: Injector, policy: str, probe: str) -> None:
    """Patch the live configuration and wait until the API server acts on it (its informer)."""
    patch = [{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": policy}]
    injector.kubectl("patch", "mutatingwebhookconfiguration", WEBHOOK, "--type=json",
                     "-p", json.dumps(patch))  # fmt: skip

    def effective() -> bool:
        result = injector.kubectl("-n", probe, "create", "--dry-run=server", "-f", "-",
                                  stdin=yaml.safe_dump(pod("probe")), check=False)  # fmt: skip
        return (result.returncode == 0) == (policy == "Ignore")

    kube.eventually(effective, f"failurePolicy {policy} in effect")


@pytest.fixture
def ignore_policy(installed: Injector, probe_namespace: str) -> Iterator[None]:
    _set_failure_policy(installed, "Ignore", probe_namespace)
    try:
        yield
    finally:
        _set_failure_policy(installed, "Fail", probe_namespace)


def test_with_fail_a_pod_is_refused_with_the_api_servers_message(
    installed: Injector, namespace: Callable[..., str], figures: list[str]
) -> None:
    ns = namespace("shop", **{"envoy-inject": "enabled"})
    result = installed.kubectl("-n", ns, "create", "-f", "-", stdin=yaml.safe_dump(pod("web")),
                               check=False)  # fmt: skip
    assert result.returncode != 0
    assert f'failed calling webhook "{WEBHOOK_NAME}"' in result.stderr
    assert "NotFound" in installed.kubectl("-n", ns, "get", "pod", "web", check=False).stderr
    figures.append(f"webhook down, failurePolicy Fail, kubectl prints: {result.stderr.strip()}")


def test_with_fail_an_unlabelled_namespace_keeps_working(
    installed: Injector, namespace: Callable[..., str]
) -> None:
    ns = namespace("plain")
    installed.kubectl("-n", ns, "create", "-f", "-", stdin=yaml.safe_dump(pod("web")))
    assert containers(installed.kubectl.json("-n", ns, "get", "pod", "web")) == ["app"]


def test_with_ignore_the_pod_is_created_without_the_sidecar(
    installed: Injector, ignore_policy: None, namespace: Callable[..., str], figures: list[str]
) -> None:
    ns = namespace("shop", **{"envoy-inject": "enabled"})
    result = installed.kubectl("-n", ns, "create", "-f", "-", stdin=yaml.safe_dump(pod("web")))
    live = installed.kubectl.json("-n", ns, "get", "pod", "web")
    assert SIDECAR not in containers(live)
    figures.append(
        "webhook down, failurePolicy Ignore: Pod created without the sidecar; kubectl prints "
        f"{(result.stdout + result.stderr).strip()!r}"
    )

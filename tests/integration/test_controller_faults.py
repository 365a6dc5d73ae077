"""The controller through faults the real API server will not produce on demand, on a fake
with real watch semantics (tests/integration/fake_watch_apiserver.py): every watch expiring
at once (410 Gone after a compaction), and the API server away for 10 s, with changes made
while it was away."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.fake_watch_apiserver import FakeWatchApiServer
from tests.support.controller import (
    ControllerProcess,
    running_controller,
    wait_for,
    write_kubeconfig,
)

pytestmark = pytest.mark.integration
OURS = {"app.kubernetes.io/managed-by": "envoy-injector-controller"}


def namespace(name: str, **labels: str) -> dict[str, object]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}


@pytest.fixture
def api() -> Iterator[FakeWatchApiServer]:
    server = FakeWatchApiServer(bookmark_seconds=0.5)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def controller(tmp_path: Path, api: FakeWatchApiServer) -> Iterator[ControllerProcess]:
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", f"http://127.0.0.1:{api.port}")
    config = tmp_path / "config.yaml"
    config.write_text("sidecar: {configMap: envoy-config}\n")
    with running_controller(tmp_path, kubeconfig, config) as proc:
        wait_for("leading", lambda: proc.metric("envoy_injector_controller_leader") == 1)
        yield proc


def configmap(api: FakeWatchApiServer, ns: str) -> dict[str, object] | None:
    return api.get("configmaps", ns, "envoy-config")


def test_a_watch_that_expires_is_listed_again_and_no_change_is_lost(
    api: FakeWatchApiServer, controller: ControllerProcess
) -> None:
    api.put("namespaces", namespace("shop", **{"envoy-inject": "enabled"}))
    wait_for("configmap in shop", lambda: configmap(api, "shop"))
    lists_before = sum(1 for m, p, _ in api.requests if m == "GET" and "watch" not in p)
    api.expire_watches()
    # Changes made while the watches are dead: only a relist can see them.
    api.put("namespaces", namespace("cart", **{"envoy-inject": "enabled"}))
    api.put("namespaces", namespace("shop"))
    wait_for("configmap in cart", lambda: configmap(api, "cart"))
    wait_for("shop's configmap deleted", lambda: configmap(api, "shop") is None)
    restarts = controller.metric(
        "envoy_injector_controller_watch_restarts_total", resource="namespaces", reason="gone"
    )
    assert restarts >= 1
    lists_after = sum(1 for m, p, _ in api.requests if m == "GET" and "watch" not in p)
    assert lists_after > lists_before
    assert controller.alive()
    assert any(line["message"] == "watch expired, listing again" for line in controller.logs())


def test_bookmarks_keep_the_watch_resumable_without_a_relist(
    api: FakeWatchApiServer, controller: ControllerProcess
) -> None:
    time.sleep(1.5)  # bookmarks arrive every 0.5 s while nothing we watch changes
    api.put("configmaps", {"metadata": {"name": "other", "namespace": "x"}, "data": {}})
    watches = [p for m, p, _ in api.requests if m == "WATCH" and "configmaps" in p]
    assert watches
    assert (
        controller.metric(
            "envoy_injector_controller_watch_restarts_total", resource="configmaps", reason="gone"
        )
        == 0
    )


def test_the_api_server_away_for_10s_then_back_is_caught_up_without_a_restart(
    api: FakeWatchApiServer, controller: ControllerProcess
) -> None:
    api.put("namespaces", namespace("shop", **{"envoy-inject": "enabled"}))
    api.put("namespaces", namespace("blog", **{"envoy-inject": "enabled"}))
    wait_for(
        "configmaps in shop and blog", lambda: configmap(api, "shop") and configmap(api, "blog")
    )
    api.stop()
    # While it is away: a new labelled namespace, a label removed, our ConfigMap edited.
    api.put("namespaces", namespace("cart", **{"envoy-inject": "enabled"}))
    api.put("namespaces", namespace("shop"))
    blog = configmap(api, "blog")
    assert blog is not None
    api.put("configmaps", {**blog, "data": {"envoy.yaml": "hand edited"}})
    time.sleep(10)
    assert controller.alive()
    assert controller.get("/healthz")[0] == 200
    api.start()
    wait_for("configmap in cart", lambda: configmap(api, "cart"), timeout=60)
    wait_for("shop's configmap deleted", lambda: configmap(api, "shop") is None, timeout=60)
    wait_for(
        "blog's configmap repaired",
        lambda: (configmap(api, "blog") or {}).get("data") == configmap(api, "cart")["data"],  # type: ignore[index]
        timeout=60,
    )
    assert controller.alive()
    messages = {line["message"] for line in controller.logs()}
    assert "watch failed, retrying" in messages

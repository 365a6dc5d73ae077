"""The shared API client: paths, and how the server's failures reach callers.

Faults come from the fake API server (it answers 403/404/409 on demand); what the real server
does is covered by the e2e suite, which drives every component through this client.
"""

import socket
from pathlib import Path

import pytest

from kubeapi import client as kubeapi, errors
from kubeapi.credentials import Credentials, from_kubeconfig, in_cluster
from tests.integration.fake_apiserver import FakeApiServer


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        (("v1", "pods"), {"namespace": "a"}, "/api/v1/namespaces/a/pods"),
        (("v1", "namespaces"), {"name": "shop"}, "/api/v1/namespaces/shop"),
        (("apps/v1", "deployments"), {}, "/apis/apps/v1/deployments"),
        (
            ("admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations"),
            {"name": "envoy-injector"},
            "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/envoy-injector",
        ),
        (
            ("v1", "pods"),
            {"namespace": "a", "name": "p", "subresource": "log"},
            "/api/v1/namespaces/a/pods/p/log",
        ),
    ],
    ids=["core-namespaced", "core-cluster-scoped", "group-all", "group-named", "subresource"],
)
def test_paths_follow_the_rest_layout(
    args: tuple[str, str], kwargs: dict[str, str], expected: str
) -> None:
    assert kubeapi.path(*args, **kwargs) == expected


def _client(url: str) -> kubeapi.Client:
    return kubeapi.Client(Credentials(server=url), timeout=(1.0, 5.0))


def test_a_missing_object_is_not_found_with_the_servers_message() -> None:
    with FakeApiServer().serve() as fake, pytest.raises(errors.NotFound) as caught:
        _client(fake.url).get(kubeapi.path("v1", "secrets", namespace="x", name="nope"))
    assert caught.value.status == 404
    assert "nope" in caught.value.message


def test_a_stale_replace_is_a_conflict_and_a_denied_verb_is_forbidden() -> None:
    with FakeApiServer().serve() as fake:
        api = _client(fake.url)
        url = kubeapi.path("v1", "secrets", namespace="x")
        body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "x"}}
        created = api.create(url, body)
        assert created["metadata"]["resourceVersion"]
        with pytest.raises(errors.Conflict):
            api.create(url, body)
        stale = {**created, "metadata": {**created["metadata"], "resourceVersion": "1"}}
        with pytest.raises(errors.Conflict):
            api.replace(kubeapi.path("v1", "secrets", namespace="x", name="s"), stale)
        fake.forbid("get", "secrets")
        with pytest.raises(errors.Forbidden):
            api.get(kubeapi.path("v1", "secrets", namespace="x", name="s"))


def test_nothing_listening_is_unreachable_with_the_address() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(errors.Unreachable) as caught:
        _client(f"http://127.0.0.1:{port}").get("/api/v1/namespaces")
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "refused" in str(caught.value).lower()


def test_outside_a_pod_there_are_no_in_cluster_credentials() -> None:
    assert in_cluster({}) is None
    assert in_cluster({"KUBERNETES_SERVICE_HOST": "10.96.0.1"}) is None


def test_a_kubeconfig_token_is_sent_as_the_bearer(tmp_path: Path) -> None:
    config = tmp_path / "kubeconfig"
    config.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        "clusters: [{name: k, cluster: {server: 'https://127.0.0.1:6443'}}]\n"
        "users: [{name: u, user: {token: abc.def}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u}}]\n"
    )
    credentials = from_kubeconfig(str(config))
    assert credentials.bearer() == "abc.def"
    assert credentials.server == "https://127.0.0.1:6443"

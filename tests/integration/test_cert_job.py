"""The certificate job end to end: the official `kubernetes` client against a loopback fake.

Every test reads the outcome back from the fake's stored objects, not from the job's own
output, and checks certificates with an independent RFC 5280 verifier.
"""

import base64
import copy
import io
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from kubernetes import client

from certs import job, kube
from certs.errors import CertError
from tests.integration.fake_apiserver import FakeApiServer
from tests.support.x509_checks import verifies

NS = "envoy-injector"
TLS = "envoy-injector-tls"
CA = "envoy-injector-ca"
MWC = "envoy-injector"
NOW = datetime(2030, 1, 1, tzinfo=UTC)
SERVICE_NAME = "envoy-injector.envoy-injector.svc"


def webhook_configuration() -> dict[str, Any]:
    """Two webhooks with the fields a real manifest carries, so "nothing else changed" bites."""

    def entry(name: str, path: str) -> dict[str, Any]:
        return {
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "timeoutSeconds": 5,
            "clientConfig": {"service": {"name": "envoy-injector", "namespace": NS, "path": path}},
            "namespaceSelector": {"matchLabels": {"envoy-inject": "enabled"}},
            "rules": [
                {
                    "operations": ["CREATE"],
                    "apiGroups": [""],
                    "apiVersions": ["v1"],
                    "resources": ["pods"],
                }
            ],
        }

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {
            "name": MWC,
            "labels": {"app.kubernetes.io/name": "envoy-injector"},
            "annotations": {"argocd.argoproj.io/sync-options": "ServerSideApply=true"},
        },
        "webhooks": [
            entry("pods.envoy-inject.io", "/mutate"),
            entry("templates.envoy-inject.io", "/mutate-templates"),
        ],
    }


@pytest.fixture(autouse=True)
def no_proxy_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    # The client honours *_proxy variables; loopback traffic must not leave through one.
    for name in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ALL_PROXY", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    server = FakeApiServer()
    server.add_webhook_config(webhook_configuration())
    with server.serve():
        yield server


def connect(fake: FakeApiServer) -> kube.Cluster:
    configuration = client.Configuration(host=fake.url)
    configuration.proxy = None
    return kube.Cluster(client.ApiClient(configuration))


@pytest.fixture
def cluster(fake: FakeApiServer) -> kube.Cluster:
    return connect(fake)


def run(
    cluster: kube.Cluster, settings: job.Settings | None = None, *, now: datetime = NOW
) -> list[str]:
    out = io.StringIO()
    assert job.run(settings or job.Settings(), cluster, now=now, out=out) == 0
    return out.getvalue().splitlines()


def kubeconfig(tmp_path: Path, server: str) -> str:
    path = tmp_path / "kubeconfig"
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: fake, cluster: {{server: "{server}"}}}}]
users: [{{name: job, user: {{token: not-a-real-token}}}}]
contexts: [{{name: fake, context: {{cluster: fake, user: job}}}}]
current-context: fake
"""
    )
    return str(path)


def ca_bundles(fake: FakeApiServer) -> list[bytes]:
    return [
        base64.b64decode(w["clientConfig"].get("caBundle", ""))
        for w in fake.webhook_config(MWC)["webhooks"]
    ]


def assert_consistent(fake: FakeApiServer, now: datetime = NOW) -> None:
    """One CA signs the served leaf; ca.crt, trust.crt and every caBundle are the same bundle."""
    tls, ca = fake.secret_data(NS, TLS), fake.secret_data(NS, CA)
    assert ca_bundles(fake) == [tls["ca.crt"]] * 2
    assert ca["trust.crt"] == tls["ca.crt"]
    assert verifies(tls["tls.crt"], tls["ca.crt"], now)
    leaf = x509.load_pem_x509_certificate(tls["tls.crt"])
    leaf.verify_directly_issued_by(x509.load_pem_x509_certificate(ca["ca.crt"]))


def without_ca_bundles(obj: dict[str, Any]) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"].pop("resourceVersion", None)
    for webhook in obj["webhooks"]:
        webhook["clientConfig"].pop("caBundle", None)
    return obj


# ---- create, re-run, patch ------------------------------------------------------------------


def test_first_run_creates_both_secrets_and_fills_every_ca_bundle(
    fake: FakeApiServer, cluster: kube.Cluster
) -> None:
    assert run(cluster) == [
        "CA created",
        "CA secret created",
        "caBundle patched in 2 webhooks",
        "created",
    ]
    tls, ca = fake.secret(NS, TLS), fake.secret(NS, CA)
    assert tls is not None
    assert ca is not None
    assert tls["type"] == "kubernetes.io/tls"
    assert set(tls["data"]) == {"tls.crt", "tls.key", "ca.crt"}
    assert ca["type"] == "Opaque"
    assert {"ca.crt", "ca.key", "trust.crt"} <= set(ca["data"])
    assert "ca.key" not in tls["data"]
    assert tls["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "envoy-injector-certs"}
    assert_consistent(fake)


def test_rerun_with_a_valid_certificate_writes_nothing(
    fake: FakeApiServer, cluster: kube.Cluster
) -> None:
    run(cluster)
    writes = len(fake.writes())
    assert run(cluster, now=NOW + timedelta(days=30)) == ["caBundle unchanged", "unchanged"]
    assert len(fake.writes()) == writes
    assert [r.verb for r in fake.requests[-3:]] == ["get", "get", "get"]


def test_ca_bundle_patch_changes_nothing_else_in_the_configuration(
    fake: FakeApiServer, cluster: kube.Cluster
) -> None:
    before = fake.webhook_config(MWC)
    run(cluster)
    after = fake.webhook_config(MWC)
    assert without_ca_bundles(after) == without_ca_bundles(before)
    assert all(b.startswith(b"-----BEGIN CERTIFICATE-----") for b in ca_bundles(fake))


def test_reverted_ca_bundle_is_patched_only_in_the_entry_that_differs(
    fake: FakeApiServer, cluster: kube.Cluster
) -> None:
    run(cluster)
    reverted = fake.webhook_config(MWC)
    reverted["webhooks"][1]["clientConfig"]["caBundle"] = base64.b64encode(b"stale").decode()
    fake.add_webhook_config(reverted)
    assert run(cluster) == ["caBundle patched in 1 webhooks", "unchanged"]
    assert_consistent(fake)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"tls.crt": b"garbage", "tls.key": b"garbage", "ca.crt": b""}, "corrupt"),
        ({"tls.crt": b"", "tls.key": b""}, "missing"),
    ],
    ids=["bad_pem", "empty_values"],
)
def test_existing_tls_secret_is_renewed_keeping_its_labels_and_annotations(
    fake: FakeApiServer, cluster: kube.Cluster, data: dict[str, bytes], reason: str
) -> None:
    fake.add_secret(NS, TLS, type_="kubernetes.io/tls", data=data, annotations={"team": "platform"})
    assert run(cluster)[-1] == f"renewed: {reason}"
    tls = fake.secret(NS, TLS)
    assert tls is not None
    assert tls["metadata"]["annotations"] == {"team": "platform"}
    assert_consistent(fake)


def test_key_not_matching_the_certificate_is_renewed(
    fake: FakeApiServer, cluster: kube.Cluster
) -> None:
    run(cluster)
    data = fake.secret_data(NS, TLS)
    other = FakeApiServer()
    other.add_webhook_config(webhook_configuration())
    with other.serve():
        run(connect(other))
        data["tls.key"] = other.secret_data(NS, TLS)["tls.key"]
    fake.add_secret(NS, TLS, type_="kubernetes.io/tls", data=data)
    assert run(cluster)[-1] == "renewed: key_mismatch"
    assert_consistent(fake)


# ---- lost races ----------------------------------------------------------------------------


def renew_with_new_name(fake: FakeApiServer, cluster: kube.Cluster) -> job.Settings:
    run(cluster)
    return job.Settings(extra_sans=("injector.example.com",))


def revert_ca_bundle(fake: FakeApiServer, cluster: kube.Cluster) -> job.Settings:
    run(cluster)
    reverted = fake.webhook_config(MWC)
    reverted["webhooks"][0]["clientConfig"]["caBundle"] = ""
    fake.add_webhook_config(reverted)
    return job.Settings()


@pytest.mark.parametrize(
    ("prepare", "status"),
    [(renew_with_new_name, 409), (revert_ca_bundle, 422)],
    ids=["secret_replace_gets_409", "ca_bundle_patch_test_op_fails"],
)
def test_lost_race_is_retried_from_a_fresh_read(
    fake: FakeApiServer,
    cluster: kube.Cluster,
    prepare: Callable[[FakeApiServer, kube.Cluster], job.Settings],
    status: int,
) -> None:
    settings = prepare(fake, cluster)
    fake.interfere_writes = 1
    lines = run(cluster, settings)
    assert [line for line in lines if line.startswith("conflict")] == [
        next(line for line in lines if line.startswith("conflict, retrying (1/4): "))
    ]
    assert len(fake.answered(status)) == 1
    assert_consistent(fake)


def test_endless_conflicts_give_up_after_a_bounded_number_of_attempts(
    fake: FakeApiServer, cluster: kube.Cluster
) -> None:
    settings = renew_with_new_name(fake, cluster)
    fake.interfere_writes = 1000
    with pytest.raises(CertError, match=r"gave up after 5 attempts"):
        run(cluster, settings)
    assert len(fake.answered(409)) == job.MAX_ATTEMPTS


def expire_soon(fake: FakeApiServer) -> datetime:
    run(connect(fake))
    return NOW + timedelta(days=300)  # inside the last third: both racers renew


@pytest.mark.parametrize("from_state", ["nothing", "expiring"], ids=["from_nothing", "renewing"])
def test_two_jobs_racing_end_with_one_consistent_secret_and_ca_bundle(
    fake: FakeApiServer, from_state: str
) -> None:
    now = expire_soon(fake) if from_state == "expiring" else NOW
    fake.race(2)  # both jobs read, then their first writes meet
    results: list[str] = []
    errors: list[BaseException] = []

    def racer() -> None:
        try:
            results.extend(run(connect(fake), now=now))
        except BaseException as error:  # noqa: BLE001  # reported by the main thread
            errors.append(error)

    threads = [threading.Thread(target=racer) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == []
    assert any(line.startswith("conflict, retrying") for line in results)
    assert_consistent(fake, now)
    assert run(connect(fake), now=now) == ["caBundle unchanged", "unchanged"]


# ---- failures: one line on stderr, exit 1 ---------------------------------------------------


def first_run_then_new_name(fake: FakeApiServer) -> list[str]:
    run(connect(fake))
    return ["--extra-san", "injector.example.com"]


@pytest.mark.parametrize(
    ("verb", "resource", "prepare"),
    [
        ("get", "secrets", None),
        ("create", "secrets", None),
        ("update", "secrets", first_run_then_new_name),
        ("get", "mutatingwebhookconfigurations", None),
        ("patch", "mutatingwebhookconfigurations", None),
    ],
    ids=["get_secret", "create_secret", "update_secret", "get_webhook", "patch_webhook"],
)
def test_forbidden_request_names_the_verb_and_resource_it_needed(
    fake: FakeApiServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    verb: str,
    resource: str,
    prepare: Callable[[FakeApiServer], list[str]] | None,
) -> None:
    extra = prepare(fake) if prepare else []
    fake.forbid(verb, resource)
    assert job.main(["--kubeconfig", kubeconfig(tmp_path, fake.url), *extra]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"envoy-injector certs: error: forbidden: cannot {verb} {resource} ")
    assert f'needs RBAC verb "{verb}" on resource "{resource}" in API group' in err
    assert "system:serviceaccount:envoy-injector:envoy-injector-certs" in err


def test_missing_webhook_configuration_is_a_clear_error_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = FakeApiServer()
    with empty.serve():
        assert job.main(["--kubeconfig", kubeconfig(tmp_path, empty.url)]) == 1
    assert capsys.readouterr().err == (
        "envoy-injector certs: error: MutatingWebhookConfiguration 'envoy-injector' not found; "
        "apply the injector manifests first or pass --webhook-config\n"
    )
    assert empty.writes() == []


@pytest.mark.parametrize(
    ("name", "type_", "expected"),
    [
        (TLS, "Opaque", "kubernetes.io/tls"),
        (CA, "kubernetes.io/tls", "Opaque"),
    ],
    ids=["tls_secret_is_opaque", "ca_secret_is_tls"],
)
def test_secret_of_the_wrong_type_is_a_clear_error_and_nothing_is_written(
    fake: FakeApiServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    type_: str,
    expected: str,
) -> None:
    fake.add_secret(NS, name, type_=type_, data={"tls.crt": b"x", "tls.key": b"y"})
    assert job.main(["--kubeconfig", kubeconfig(tmp_path, fake.url)]) == 1
    assert capsys.readouterr().err == (
        f"envoy-injector certs: error: Secret {NS}/{name} has type {type_!r}, expected "
        f"{expected!r}; a Secret's type cannot change, so delete it and re-run\n"
    )
    assert fake.writes() == []


def test_unreachable_api_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert job.main(["--kubeconfig", kubeconfig(tmp_path, f"http://127.0.0.1:{port}")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        f"envoy-injector certs: error: cannot reach the Kubernetes API at http://127.0.0.1:{port}: "
    )
    assert "Connection refused" in err


def test_main_takes_the_flags_without_the_certs_word(
    fake: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "--kubeconfig",
        kubeconfig(tmp_path, fake.url),
        "--extra-san",
        "Injector.Example.COM",
        "--extra-san",
        "10.96.0.42",
        "--key-type",
        "rsa",
        "--cert-ttl",
        "90d",
        "--renew-before",
        "30d",
    ]
    assert job.main(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "created"
    leaf = x509.load_pem_x509_certificate(fake.secret_data(NS, TLS)["tls.crt"])
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "injector.example.com" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.96.0.42"]
    assert isinstance(leaf.public_key(), rsa.RSAPublicKey)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc < timedelta(days=91)
    assert job.main(argv) == 0
    assert capsys.readouterr().out.splitlines() == ["caBundle unchanged", "unchanged"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--renew-before", "soon"], "'soon' is not a duration"),
        (["--cert-ttl", "0d"], "'0d' must be longer than zero"),
        (["--extra-san", "not a name"], "'not a name' is neither a DNS name nor an IP address"),
        (["--key-type", "dsa"], "invalid choice: 'dsa'"),
    ],
    ids=["bad_duration", "zero_duration", "bad_san", "bad_key_type"],
)
def test_bad_flags_are_refused_with_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        job.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--renew-before", "400d"], "--renew-before must be shorter than --cert-ttl"),
        (["--cert-ttl", "20y"], "'20y' is not a duration"),
        (["--cert-ttl", "4000d"], "--cert-ttl must not exceed --ca-ttl"),
        (["--secret", "same", "--ca-secret", "same"], "must name different Secrets"),
    ],
    ids=["renew_before_too_long", "unknown_unit", "leaf_outlives_ca", "same_secret_twice"],
)
def test_contradictory_settings_are_refused_before_touching_the_cluster(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    try:
        code = job.main([*argv, "--kubeconfig", "/nonexistent"])
    except SystemExit as exit_info:
        code = int(str(exit_info.code))
    assert code in {1, 2}
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("2w", timedelta(weeks=2)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
    ],
    ids=["days", "hours", "combined", "weeks", "minutes", "seconds"],
)
def test_durations_read_as_an_operator_writes_them(text: str, expected: timedelta) -> None:
    assert job.parse_duration(text) == expected


# ---- the shipped RBAC covers exactly what the job does ----------------------------------------


def _rbac_rules() -> list[tuple[str, str, frozenset[str]]]:
    rbac = Path(__file__).resolve().parents[2] / "manifests" / "injector" / "rbac.yaml"
    rules = []
    for doc in yaml.safe_load_all(rbac.read_text()):
        # The cert job's roles; the controller's share the file (tests/manifests/test_rbac.py).
        if (
            doc
            and doc["kind"] in ("Role", "ClusterRole")
            and doc["metadata"]["name"] == ("envoy-injector-certs")
        ):
            for rule in doc["rules"]:
                for verb in rule["verbs"]:
                    for resource in rule["resources"]:
                        rules.append((verb, resource, frozenset(rule.get("resourceNames", []))))
    return rules


def test_every_call_of_a_full_ca_rotation_is_allowed_by_the_shipped_rbac_and_nothing_more(
    fake: FakeApiServer, cluster: kube.Cluster
) -> None:
    settings = job.Settings(
        ca_ttl=timedelta(days=90), cert_ttl=timedelta(days=30), grace=timedelta(hours=1)
    )
    for day in range(200):  # daily runs through two CA rotations, every stage of each
        run(cluster, settings, now=NOW + timedelta(days=day))
    used = {(r.verb, r.resource, r.name) for r in fake.requests}
    rules = _rbac_rules()
    for verb, resource, name in used:
        assert any(
            v == verb and res == resource and (not names or name in names)
            for v, res, names in rules
        ), f"the job called {verb} {resource}/{name}, which rbac.yaml does not allow"
    granted = {(v, res) for v, res, _ in rules}
    assert granted == {(v, res) for v, res, _ in used}, "rbac.yaml grants verbs the job never uses"

"""The chart on a real kube-apiserver: ``helm install``, the cert job, ``helm upgrade`` with a
changed value (the caBundle stays, the Deployment's checksum changes), an upgrade that changes
the cert Job (replaced, not refused; the new one renews nothing), ``helm uninstall`` (no webhook
configuration is left to block Pods).

Its own control plane (tests/support/cluster), not the session's: the webhook configuration and
the ClusterRoles have fixed, cluster-wide names, which the kustomize install of the e2e suite
uses too. There is no node, so the cert Job's Pod never runs: the test runs the Job's own
command (read back from the release with ``helm get manifest``) with the cluster's kubeconfig,
as the e2e suite does for the kustomize install's Job.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import pytest
import yaml

from tests.helm import chart
from tests.support import tools
from tests.support.cluster import binaries, controlplane, kube, record

NAMESPACE: Final = chart.NAMESPACE
WEBHOOK: Final = "mutatingwebhookconfiguration/envoy-injector"
CHECKSUM_PATH: Final = "{.spec.template.metadata.annotations.checksum/config}"
CA_BUNDLE_PATH: Final = "{.webhooks[0].clientConfig.caBundle}"
PSS: Final = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@dataclass(frozen=True)
class Cluster:
    kubectl: kube.Kubectl

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(tools.helm()), *args, "--kubeconfig", str(self.kubectl.kubeconfig)],
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert result.returncode == 0, f"helm {' '.join(args)}:\n{result.stderr}"
        return result

    def get(self, what: str, jsonpath: str, *, namespace: str = "") -> str:
        where = ["-n", namespace] if namespace else []
        out: str = self.kubectl("get", *where, what, "-o", f"jsonpath={jsonpath}").stdout
        return out

    def cert_job(self) -> Any:
        """The cert Job as the release holds it."""
        manifest = self.helm("get", "manifest", chart.RELEASE, "-n", NAMESPACE).stdout
        (job,) = [d for d in yaml.safe_load_all(manifest) if d and d["kind"] == "Job"]
        return job

    def run_cert_job(self) -> str:
        """The cert Job's command, as the release holds it (there is no node to run its Pod)."""
        args = self.cert_job()["spec"]["template"]["spec"]["containers"][0]["args"]
        env = {**os.environ, "KUBECONFIG": str(self.kubectl.kubeconfig)}
        done = subprocess.run(
            [sys.executable, "-m", "webhook", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    for path in record.sweep():
        print(f"removed the cluster left by a killed run: {path}")  # noqa: T201
    try:
        found = binaries.locate(get=bool(os.environ.get("CI")))
    except binaries.Missing as missing:
        pytest.skip(f"the chart's cluster test needs a local control plane: {missing}")
    directory = record.clusters_root() / f"pytest-helm-{os.getpid()}"
    try:
        plane = controlplane.start(directory, found, owner=os.getpid())
    except BaseException:
        record.tear_down(directory)
        raise
    yield Cluster(kube.Kubectl(str(tools.kubectl()), plane.kubeconfig))
    errors = record.tear_down(directory)
    assert not errors, errors


@pytest.fixture(scope="module")
def released(cluster: Cluster) -> Cluster:
    """The README's install: the labelled namespace, then ``helm install`` and the cert job."""
    cluster.kubectl("create", "namespace", NAMESPACE)
    cluster.kubectl("label", "namespace", NAMESPACE, *[f"{k}={v}" for k, v in PSS.items()])
    cluster.helm("install", chart.RELEASE, str(chart.CHART), "-n", NAMESPACE)
    cluster.run_cert_job()
    return cluster


def managers_of_ca_bundle(cluster: Cluster) -> list[str]:
    """The field managers that own webhooks[0].clientConfig.caBundle."""
    obj: Any = cluster.kubectl.json("get", WEBHOOK, "--show-managed-fields")
    owners = []
    for entry in obj["metadata"]["managedFields"]:
        for hook in entry.get("fieldsV1", {}).get("f:webhooks", {}).values():
            if "f:caBundle" in hook.get("f:clientConfig", {}):
                owners.append(entry["manager"])
    return owners


def test_upgrade_keeps_the_ca_bundle_rolls_the_deployment_and_reruns_the_job_harmlessly(
    released: Cluster,
) -> None:
    ca_bundle = released.get(WEBHOOK, CA_BUNDLE_PATH)
    assert ca_bundle, "the cert job wrote no caBundle"
    assert "helm" not in managers_of_ca_bundle(released)
    checksum = released.get("deployment/envoy-injector", CHECKSUM_PATH, namespace=NAMESPACE)
    secret = released.get("secret/envoy-injector-tls", "{.metadata.resourceVersion}",
                           namespace=NAMESPACE)  # fmt: skip

    # Helm 4 applies server-side by default.
    released.helm(
        "upgrade", chart.RELEASE, str(chart.CHART), "-n", NAMESPACE,
        "--set", "sidecar.logLevel=debug", "--set", "webhook.failurePolicy=Ignore",
    )  # fmt: skip
    assert released.get(WEBHOOK, "{.webhooks[0].failurePolicy}") == "Ignore", "not upgraded"
    assert released.get(WEBHOOK, CA_BUNDLE_PATH) == ca_bundle
    changed = released.get("deployment/envoy-injector", CHECKSUM_PATH, namespace=NAMESPACE)
    assert changed
    assert changed != checksum
    config = released.get("configmap/envoy-injector-config", "{.data.config\\.yaml}",
                           namespace=NAMESPACE)  # fmt: skip
    assert yaml.safe_load(config)["sidecar"]["logLevel"] == "debug"

    # An upgrade that changes the cert Job's (immutable) Pod template replaces the Job.
    job = released.cert_job()["metadata"]["name"]
    released.helm(
        "upgrade", chart.RELEASE, str(chart.CHART), "-n", NAMESPACE, "--reuse-values",
        "--set", "image.tag=0.1.1",
    )  # fmt: skip
    replaced = released.cert_job()["metadata"]["name"]
    assert replaced != job
    assert released.get(f"job/{replaced}", "{.metadata.name}", namespace=NAMESPACE) == replaced
    gone = released.kubectl("-n", NAMESPACE, "get", f"job/{job}", check=False)
    assert "NotFound" in gone.stderr
    # A Job that deleted itself (ttlSecondsAfterFinished) comes back with the next upgrade.
    released.kubectl("-n", NAMESPACE, "delete", f"job/{replaced}")
    released.helm("upgrade", chart.RELEASE, str(chart.CHART), "-n", NAMESPACE, "--reuse-values")
    assert released.get(f"job/{replaced}", "{.metadata.name}", namespace=NAMESPACE) == replaced
    # The new Job runs and leaves the valid certificate and caBundle alone.
    assert "unchanged" in released.run_cert_job()
    assert released.get("secret/envoy-injector-tls", "{.metadata.resourceVersion}",
                         namespace=NAMESPACE) == secret  # fmt: skip
    assert released.get(WEBHOOK, CA_BUNDLE_PATH) == ca_bundle

    # Helm 3's way (a three-way patch computed in the client) leaves it as well.
    released.helm(
        "upgrade", chart.RELEASE, str(chart.CHART), "-n", NAMESPACE,
        "--server-side=false", "--set", "webhook.failurePolicy=Fail",
    )  # fmt: skip
    assert released.get(WEBHOOK, "{.webhooks[0].failurePolicy}") == "Fail", "not upgraded"
    assert released.get(WEBHOOK, CA_BUNDLE_PATH) == ca_bundle


def test_force_replace_fails_drops_the_ca_bundle_and_the_cert_job_writes_it_back(
    released: Cluster,
) -> None:
    """What the README warns of: --force-replace replaces objects whole. The Job cannot be
    replaced (the API server wants its generated selector back), so the upgrade fails; but the
    webhook configuration has been replaced by then, without the caBundle. Re-running the cert
    job, as the README says, writes it back."""
    ca_bundle = released.get(WEBHOOK, CA_BUNDLE_PATH)
    assert ca_bundle
    result = subprocess.run(
        [
            str(tools.helm()), "upgrade", chart.RELEASE, str(chart.CHART), "-n", NAMESPACE,
            "--reuse-values", "--force-replace", "--kubeconfig", str(released.kubectl.kubeconfig),
        ],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Job.batch" in result.stderr
    assert released.get(WEBHOOK, CA_BUNDLE_PATH) == ""
    released.run_cert_job()
    assert released.get(WEBHOOK, CA_BUNDLE_PATH) == ca_bundle


def dry_run_pod(cluster: Cluster, namespace: str) -> subprocess.CompletedProcess[str]:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "probe"},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    }
    result: subprocess.CompletedProcess[str] = cluster.kubectl(
        "-n", namespace, "create", "--dry-run=server", "-f", "-",
        stdin=yaml.safe_dump(pod), check=False,
    )  # fmt: skip
    return result


def test_uninstall_leaves_no_webhook_configuration_that_blocks_pods(released: Cluster) -> None:
    released.kubectl("create", "namespace", "shop")
    released.kubectl("label", "namespace", "shop", "envoy-inject=enabled")
    kube.eventually(
        lambda: (
            released.kubectl(
                "-n", "shop", "get", "serviceaccount", "default", check=False
            ).returncode
            == 0
        ),
        "ServiceAccount shop/default",
    )
    # Installed, with failurePolicy Fail and no webhook Pod able to answer (no node): refused.
    refused = dry_run_pod(released, "shop")
    assert refused.returncode != 0
    assert "sidecar.envoy-inject.io" in refused.stderr

    released.helm("uninstall", chart.RELEASE, "-n", NAMESPACE, "--wait")
    gone = released.kubectl("get", WEBHOOK, check=False)
    assert gone.returncode != 0
    assert "NotFound" in gone.stderr
    assert dry_run_pod(released, "shop").returncode == 0

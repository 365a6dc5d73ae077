"""Names and ports agree across the Deployment, Service, jobs, webhook configuration and RBAC.

The injector's code is written against fixed names (Secret ``envoy-injector-tls``, ConfigMap
``envoy-injector-config``, ...) and flags; a rename in one manifest must fail here, not in a
cluster.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Final

import pytest
import yaml

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, ROOT, Object
from webhook import bootstrap

OBJECTS: Final = documents.objects(INJECTOR)
NAMESPACE: Final = "envoy-injector"
IMAGE: Final = "envoy-injector:0.1.0"

SERVE_FLAGS: Final = {
    "--cert": "/etc/envoy-injector/tls/tls.crt",
    "--key": "/etc/envoy-injector/tls/tls.key",
    "--config": "/etc/envoy-injector/config/config.yaml",
    "--port": "8443",
    "--log-format": "json",
}
CERTS_FLAGS: Final = {
    "--namespace": "envoy-injector",
    "--service": "envoy-injector",
    "--secret": "envoy-injector-tls",
    "--ca-secret": "envoy-injector-ca",
    "--webhook-config": "envoy-injector",
}


def deployment() -> Object:
    return documents.one(OBJECTS, "Deployment", "envoy-injector")


def webhook_pod() -> Object:
    spec: Object = deployment()["spec"]["template"]["spec"]
    return spec


def server() -> Object:
    return documents.container(webhook_pod(), "envoy-injector")


def cert_pods() -> list[tuple[str, Object]]:
    job = documents.one(OBJECTS, "Job", "envoy-injector-certs")
    cronjob = documents.one(OBJECTS, "CronJob", "envoy-injector-certs-rotate")
    return [
        ("job", job["spec"]["template"]["spec"]),
        ("cronjob", cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]),
    ]


def mount_path(pod: Object, container: Object, volume_source: str, name: str) -> str:
    """Where ``container`` mounts the volume whose ``volume_source`` refers to ``name``."""
    field = {"secret": "secretName", "configMap": "name"}[volume_source]
    volumes = [v for v in pod["volumes"] if v.get(volume_source, {}).get(field) == name]
    assert len(volumes) == 1, f"no single {volume_source} volume for {name}"
    mounts = [m for m in container["volumeMounts"] if m["name"] == volumes[0]["name"]]
    assert len(mounts) == 1
    assert mounts[0].get("readOnly") is True
    assert "subPath" not in mounts[0], "a subPath mount never sees a rotated Secret"
    path: str = mounts[0]["mountPath"]
    return path


def test_server_runs_serve_with_the_documented_flags() -> None:
    args = server()["args"]
    assert args[0] == "serve"
    assert documents.flag_values(args) == SERVE_FLAGS
    assert "command" not in server(), "the image's ENTRYPOINT (envoy-injector) must stay"


@pytest.mark.parametrize(("source", "pod"), cert_pods(), ids=[s for s, _ in cert_pods()])
def test_cert_job_runs_certs_with_the_documented_flags(source: str, pod: Object) -> None:
    container = documents.container(pod, "certs")
    assert container["args"][0] == "certs"
    assert documents.flag_values(container["args"]) == CERTS_FLAGS
    assert "command" not in container
    assert pod["serviceAccountName"] == "envoy-injector-certs"


def test_tls_secret_mount_holds_the_files_the_server_is_given() -> None:
    path = mount_path(webhook_pod(), server(), "secret", CERTS_FLAGS["--secret"])
    assert path == str(PurePosixPath(SERVE_FLAGS["--cert"]).parent)
    assert path == str(PurePosixPath(SERVE_FLAGS["--key"]).parent)


def test_ca_secret_is_never_mounted_by_the_webhook() -> None:
    for volume in webhook_pod()["volumes"]:
        assert volume.get("secret", {}).get("secretName") != CERTS_FLAGS["--ca-secret"]


def test_config_map_mount_holds_the_config_file_the_server_is_given() -> None:
    config_path = PurePosixPath(SERVE_FLAGS["--config"])
    path = mount_path(webhook_pod(), server(), "configMap", "envoy-injector-config")
    assert path == str(config_path.parent)
    config_map = documents.one(OBJECTS, "ConfigMap", "envoy-injector-config")
    assert config_path.name in config_map["data"]


def test_server_is_told_its_own_namespace_from_the_downward_api() -> None:
    env = {item["name"]: item for item in server()["env"]}
    assert env["ENVOY_INJECTOR_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }


def test_service_forwards_443_to_the_server_port() -> None:
    service = documents.one(OBJECTS, "Service", "envoy-injector")
    ports = service["spec"]["ports"]
    assert len(ports) == 1
    assert ports[0]["port"] == 443
    container_ports = {p["name"]: p["containerPort"] for p in server()["ports"]}
    target = ports[0]["targetPort"]
    assert container_ports.get(target, target) == int(SERVE_FLAGS["--port"])
    assert int(SERVE_FLAGS["--port"]) in container_ports.values()


def test_service_selects_the_webhook_pods_and_not_the_cert_job_pods() -> None:
    selector = documents.one(OBJECTS, "Service", "envoy-injector")["spec"]["selector"]
    pod_labels = deployment()["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= pod_labels.items()
    job = documents.one(OBJECTS, "Job", "envoy-injector-certs")
    cronjob = documents.one(OBJECTS, "CronJob", "envoy-injector-certs-rotate")
    for template in (job["spec"]["template"], cronjob["spec"]["jobTemplate"]["spec"]["template"]):
        assert not selector.items() <= template["metadata"]["labels"].items()


def test_webhook_calls_the_shipped_service_in_the_cert_jobs_namespace() -> None:
    config = documents.one(OBJECTS, "MutatingWebhookConfiguration")
    service = config["webhooks"][0]["clientConfig"]["service"]
    assert service["name"] == CERTS_FLAGS["--service"]
    assert service["namespace"] == CERTS_FLAGS["--namespace"] == NAMESPACE
    assert documents.find(OBJECTS, "Service", service["name"])
    assert config["metadata"]["name"] == CERTS_FLAGS["--webhook-config"]


def test_rbac_names_exactly_the_secrets_and_webhook_configuration_the_job_writes() -> None:
    role = documents.one(OBJECTS, "Role", "envoy-injector-certs")
    named = {name for rule in role["rules"] for name in rule.get("resourceNames", [])}
    assert named == {CERTS_FLAGS["--secret"], CERTS_FLAGS["--ca-secret"]}
    cluster_role = documents.one(OBJECTS, "ClusterRole", "envoy-injector-certs")
    assert cluster_role["rules"][0]["resourceNames"] == [CERTS_FLAGS["--webhook-config"]]


def test_deployment_and_jobs_use_the_service_accounts_that_are_shipped() -> None:
    accounts = {m.name for m in OBJECTS if m.kind == "ServiceAccount"}
    assert accounts == {"envoy-injector", "envoy-injector-certs", "envoy-injector-controller"}
    assert webhook_pod()["serviceAccountName"] == "envoy-injector"
    for _, pod in cert_pods():
        assert pod["serviceAccountName"] in accounts
    controller = documents.one(OBJECTS, "Deployment", "envoy-injector-controller")
    assert controller["spec"]["template"]["spec"]["serviceAccountName"] == (
        "envoy-injector-controller"
    )


def test_every_injector_container_runs_the_one_image() -> None:
    images = {c["image"] for _, pod in documents.pod_templates(OBJECTS) for c in pod["containers"]}
    assert images == {IMAGE}


def test_e2e_script_builds_and_waits_for_the_shipped_names() -> None:
    script = (ROOT / "scripts" / "e2e-kind").read_text()
    for needle in (
        f'image="{IMAGE}"',
        "job/envoy-injector-certs",
        "deployment/envoy-injector",
        "deployment/envoy-injector-controller",
        "mutatingwebhookconfiguration envoy-injector",
        "manifests/injector",
        "manifests/sidecar",
        "deployment/demo-app",
        "configmap envoy-config",
        "envoy-injector-controller",
        "envoy-sidecar",
    ):
        assert needle in script


def test_injector_readme_names_what_the_manifests_name() -> None:
    readme = (INJECTOR / "README.md").read_text()
    for manifest in OBJECTS:
        assert manifest.name in readme, f"README.md never mentions {manifest.label}"
    assert "ContainerCreating" in readme


def test_injector_config_map_holds_the_documented_defaults_and_policy() -> None:
    config_map = documents.one(OBJECTS, "ConfigMap", "envoy-injector-config")
    config = yaml.safe_load(config_map["data"]["config.yaml"])
    # The Envoy bootstrap the controller writes is the built-in default, word for word, so a
    # config without `bootstrap:` gives every namespace the same file as the shipped one.
    assert config.pop("bootstrap") == bootstrap.DEFAULT_TEMPLATE
    assert config == {
        "sidecar": {
            "image": "envoyproxy/envoy:v1.40.0",
            "proxyPort": 10000,
            "appPort": 8080,
            "adminPort": 9901,
            "configMap": "envoy-config",
            "logLevel": "info",
            "concurrency": 2,
            "resources": {
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"cpu": "500m", "memory": "256Mi"},
            },
        },
        "policy": {
            "allowedOverrides": [
                "inject",
                "image",
                "proxy-port",
                "app-port",
                "admin-port",
                "config-map",
                "service-cluster",
                "cpu-request",
                "cpu-limit",
                "memory-request",
                "memory-limit",
                "log-level",
                "concurrency",
                "native-sidecar",
                "hold-application",
            ],
            "allowedImagePrefixes": ["envoyproxy/envoy:", "docker.io/envoyproxy/envoy:"],
            "maxCpu": "2",
            "maxMemory": "1Gi",
        },
        "excludedNamespaces": ["kube-system", "kube-public", "kube-node-lease"],
    }

"""The manifests agree with the code they run: flags, environment, config file, injected Pod.

Everything goes through the public interfaces a cluster uses: the ``envoy-injector`` console
script (the image's ENTRYPOINT) and its argument parser. The sidecar example is injected offline
with ``envoy-injector inject`` (the webhook's own code path) using the shipped ConfigMap's
``config.yaml``, and the result must fit the example's Service and the Envoy ConfigMap the
controller writes into its namespace.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

import pytest
import yaml

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, SIDECAR, Object
from tests.support import k8s
from webhook import cli
from webhook.settings import Settings

INJECTOR_OBJECTS: Final = documents.objects(INJECTOR)
SIDECAR_OBJECTS: Final = documents.objects(SIDECAR)


def server() -> Object:
    deployment = documents.one(INJECTOR_OBJECTS, "Deployment", "envoy-injector")
    return documents.container(deployment["spec"]["template"]["spec"], "envoy-injector")


def config_text() -> str:
    config_map = documents.one(INJECTOR_OBJECTS, "ConfigMap", "envoy-injector-config")
    text: str = config_map["data"]["config.yaml"]
    return text


def envoy_injector(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the console script with an empty stdin (``-f -`` then reads no document)."""
    return subprocess.run(
        [documents.tool("envoy-injector"), *args],
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def injected_demo(tmp_path_factory: pytest.TempPathFactory) -> Object:
    """The demo Deployment as the injector turns it, with the shipped config."""
    config = tmp_path_factory.mktemp("config") / "config.yaml"
    config.write_text(config_text())
    result = envoy_injector(
        "inject", "-f", str(SIDECAR / "deployment.yaml"), "--config", str(config)
    )
    assert result.returncode == 0, result.stderr
    (deployment,) = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    injected: Object = deployment
    return injected


def injected_pod(injected_demo: Object) -> Object:
    spec: Object = injected_demo["spec"]["template"]["spec"]
    return spec


def test_server_args_parse_with_the_cli_into_the_intended_settings() -> None:
    args = cli.build_parser().parse_args(server()["args"])
    assert args.command == "serve"
    assert args.cert == Path("/etc/envoy-injector/tls/tls.crt")
    assert args.key == Path("/etc/envoy-injector/tls/tls.key")
    assert args.config == Path("/etc/envoy-injector/config/config.yaml")
    assert args.port == 8443
    assert args.log_format == "json"


def test_namespace_variable_is_the_one_the_server_reads() -> None:
    (variable,) = [e["name"] for e in server()["env"] if e["name"].startswith("ENVOY_INJECTOR_")]
    settings = Settings.from_env({variable: "somewhere-else"})
    assert settings.namespace == "somewhere-else"


@pytest.mark.parametrize("kind", ["Job", "CronJob"], ids=["install-job", "rotation-cronjob"])
def test_cert_job_flags_are_all_known_to_the_certs_command(kind: str) -> None:
    (obj,) = documents.find(INJECTOR_OBJECTS, kind)
    spec = documents.pod_spec(obj)
    assert spec is not None
    args = documents.container(spec, "certs")["args"]
    usage = envoy_injector(args[0], "--help")
    assert usage.returncode == 0, usage.stderr
    for flag in documents.flag_values(args):
        assert f"{flag} " in usage.stdout, f"envoy-injector certs does not know {flag}"


def test_shipped_config_is_accepted_by_the_injector(tmp_path: Path) -> None:
    """An unknown key or bad value makes ``inject --config`` fail before reading any Pod."""
    config = tmp_path / "config.yaml"
    config.write_text(config_text())
    accepted = envoy_injector("inject", "-f", "-", "--config", str(config))
    assert accepted.returncode == 0, accepted.stderr
    config.write_text(config_text().replace("proxyPort:", "proxyPortt:"))
    refused = envoy_injector("inject", "-f", "-", "--config", str(config))
    assert refused.returncode != 0


def test_injected_demo_pod_validates_and_keeps_the_app(injected_demo: Object) -> None:
    k8s.validate_core(injected_demo)
    names = [c["name"] for c in injected_pod(injected_demo)["containers"]]
    assert names == ["app", "envoy-sidecar"]


def test_injected_demo_pod_still_meets_the_restricted_standard(injected_demo: Object) -> None:
    assert documents.restricted_violations(injected_pod(injected_demo)) == []


def test_injected_sidecar_uses_the_shipped_defaults(injected_demo: Object) -> None:
    defaults = yaml.safe_load(config_text())["sidecar"]
    sidecar = documents.container(injected_pod(injected_demo), "envoy-sidecar")
    assert sidecar["image"] == defaults["image"]
    assert sidecar["resources"] == defaults["resources"]
    assert [p["containerPort"] for p in sidecar["ports"]] == [defaults["proxyPort"]]


def test_injected_sidecar_listens_where_the_demo_service_sends_traffic(
    injected_demo: Object,
) -> None:
    service = documents.one(SIDECAR_OBJECTS, "Service", "demo-app")
    (port,) = service["spec"]["ports"]
    sidecar = documents.container(injected_pod(injected_demo), "envoy-sidecar")
    container_ports = {p["name"]: p["containerPort"] for p in sidecar["ports"]}
    assert port["targetPort"] in container_ports.values()
    assert port["name"] in container_ports


def test_injected_sidecar_reads_the_config_map_the_controller_delivers(
    injected_demo: Object,
) -> None:
    pod = injected_pod(injected_demo)
    sidecar = documents.container(pod, "envoy-sidecar")
    config_path = Path(documents.flag_values(sidecar["args"])["--config-path"])
    (mount,) = [m for m in sidecar["volumeMounts"] if Path(m["mountPath"]) == config_path.parent]
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    delivered = documents.delivered_envoy_config()
    assert volume["configMap"]["name"] == delivered.name
    items = {i["path"]: i["key"] for i in volume["configMap"].get("items", [])}
    assert items.get(config_path.name, config_path.name) in delivered.data

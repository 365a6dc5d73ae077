"""Every Envoy config the ingress and gateway presets ship is accepted by the real binary.

Configs are checked the way a Pod sees them: each kustomization that runs Envoy is
built, the Deployment's volumes are laid out on disk (ConfigMaps as shipped, the TLS
Secret filled with a test certificate), and ``envoy --mode validate`` reads the file the
container's ``--config-path`` names. A config that names a file the Pod does not mount
(a JWKS under the wrong path, say) fails here. Deprecated fields fail too.

The Istio EnvoyFilter's patches are not a whole config; they are assembled into one
(filter before the router, per-virtual-host config merged in) and validated the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.presets.bootstrap import envoy_bootstraps
from tests.presets.paths import GATEWAY, PRESET_ROOTS, envoy_dirs, kustomize_dirs, relative
from tests.presets.pki import CertificateAuthority
from tests.presets.podfiles import materialize
from tests.support.envoy import validate_config
from tests.support.k8s import load_yaml_documents
from tests.support.kustomization import build, resource_files

pytestmark = pytest.mark.envoy

KUSTOMIZE_DIRS = kustomize_dirs()
ENVOY_DIRS = envoy_dirs()
YAML_FILES = sorted(path for root in PRESET_ROOTS for path in root.rglob("*.yaml"))


def test_the_presets_ship_envoy_deployments_to_validate() -> None:
    assert {relative(d) for d in ENVOY_DIRS} >= {
        "manifests/ingress/envoy",
        "manifests/gateway/envoy",
        "manifests/gateway/envoy-ext-authz",
    }


@pytest.mark.parametrize("directory", ENVOY_DIRS, ids=relative)
def test_envoy_config_as_mounted_in_the_pod_passes_envoy_validate(
    directory: Path, tmp_path: Path
) -> None:
    files = materialize(build(directory), tmp_path)
    serving = CertificateAuthority().issue("example.com")
    for volume in files.secret_volumes.values():
        volume.write(serving.secret_files())
    output = validate_config(files.config_path())
    assert "Deprecated field" not in output, output


def _mounted_configs() -> set[tuple[str, str]]:
    """(ConfigMap name, key) of every config passed to Envoy by a preset Deployment."""
    mounted: set[tuple[str, str]] = set()
    for directory in ENVOY_DIRS:
        objects = build(directory)
        pod = next(o for o in objects if o["kind"] == "Deployment")["spec"]["template"]["spec"]
        (container,) = [c for c in pod["containers"] if c["name"] == "envoy"]
        args = [str(a) for a in container.get("args", [])]
        config_path = args[args.index("--config-path") + 1]
        volumes = {v["name"]: v for v in pod["volumes"]}
        for mount in container["volumeMounts"]:
            prefix = mount["mountPath"].rstrip("/") + "/"
            volume = volumes[mount["name"]]
            if config_path.startswith(prefix) and "configMap" in volume:
                mounted.add((volume["configMap"]["name"], config_path[len(prefix) :]))
    return mounted


def test_every_envoy_config_in_a_configmap_is_one_a_deployment_runs() -> None:
    shipped = {
        (name, key)
        for path in YAML_FILES
        for name, key, _ in envoy_bootstraps(load_yaml_documents(path))
    }
    assert shipped, "no Envoy config found in any ConfigMap"
    assert shipped <= _mounted_configs(), "configs that no Deployment runs escape validation"


def _envoyfilter_patches() -> dict[str, dict[str, Any]]:
    (envoy_filter,) = [
        obj
        for obj in load_yaml_documents(GATEWAY / "istio" / "envoyfilter-ratelimit.yaml")
        if obj["kind"] == "EnvoyFilter"
    ]
    return {patch["applyTo"]: patch for patch in envoy_filter["spec"]["configPatches"]}


HCM_TYPE = (
    "type.googleapis.com/"
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
# What Istio's gateway roughly generates for api.example.com:80, minus the patches.
_ISTIO_GATEWAY_SKELETON = """
static_resources:
  listeners:
  - name: gateway
    address: {socket_address: {address: 127.0.0.1, port_value: 8080}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": HCM_TYPE
          stat_prefix: gateway
          route_config: {name: http.80, virtual_hosts: []}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: api
    type: STATIC
    load_assignment:
      cluster_name: api
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9000}}}
"""
_ISTIO_VHOST = """
domains: [api.example.com]
routes:
- match: {prefix: /api}
  route: {cluster: api}
"""


def test_istio_envoyfilter_patches_assemble_into_a_config_envoy_accepts(
    tmp_path: Path,
) -> None:
    patches = _envoyfilter_patches()
    assert set(patches) == {"HTTP_FILTER", "VIRTUAL_HOST"}
    http_filter = patches["HTTP_FILTER"]
    assert http_filter["patch"]["operation"] == "INSERT_BEFORE"
    assert http_filter["match"]["listener"]["filterChain"]["filter"]["subFilter"] == {
        "name": "envoy.filters.http.router"
    }
    vhost_patch = patches["VIRTUAL_HOST"]
    assert vhost_patch["patch"]["operation"] == "MERGE"
    vhost_name = vhost_patch["match"]["routeConfiguration"]["vhost"]["name"]
    vhost = yaml.safe_load(_ISTIO_VHOST) | vhost_patch["patch"]["value"]
    vhost["name"] = vhost_name
    config = yaml.safe_load(_ISTIO_GATEWAY_SKELETON)
    manager = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    manager["typed_config"]["@type"] = HCM_TYPE
    manager["typed_config"]["route_config"]["virtual_hosts"] = [vhost]
    manager["typed_config"]["http_filters"].insert(0, http_filter["patch"]["value"])
    path = tmp_path / "istio-gateway.json"
    path.write_text(json.dumps(config))
    output = validate_config(path)
    assert "Deprecated field" not in output, output


SDS_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


SDS_DIRS = [
    directory
    for directory in ENVOY_DIRS
    if any("path_config_source" in path.read_text() for path in resource_files(directory))
]


def test_the_ingress_preset_delivers_its_certificate_through_file_sds() -> None:
    assert "manifests/ingress/envoy" in {relative(d) for d in SDS_DIRS}


@pytest.mark.parametrize("directory", SDS_DIRS, ids=relative)
def test_sds_resource_files_in_the_pod_hold_secrets_envoy_accepts(
    directory: Path, tmp_path: Path
) -> None:
    # `--mode validate` does not open SDS files (they are read at run time), so each one
    # is checked as a static secret of an otherwise empty config.
    files = materialize(build(directory), tmp_path / "pod")
    serving = CertificateAuthority().issue("example.com")
    for volume in files.secret_volumes.values():
        volume.write(serving.secret_files())
    config = files.load_config()
    sds_paths = sorted(
        {
            source["path_config_source"]["path"]
            for source in _values_named(config, "sds_config")
            if "path_config_source" in source
        }
    )
    secrets = []
    for sds_path in sds_paths:
        resources = yaml.safe_load(Path(sds_path).read_text())["resources"]
        for resource in resources:
            assert resource.pop("@type") == SDS_TYPE
            # Certificate and key are re-read together when their directory changes.
            pair = resource["tls_certificate"]
            directory = Path(pair["certificate_chain"]["filename"]).parent
            assert Path(pair["private_key"]["filename"]).parent == directory
            assert pair["watched_directory"]["path"] == str(directory)
            secrets.append(resource)
    assert secrets, "the config names no SDS file"
    bootstrap = tmp_path / "secrets.json"
    bootstrap.write_text(json.dumps({"static_resources": {"secrets": secrets}}))
    output = validate_config(bootstrap)
    assert "Deprecated field" not in output, output


def _values_named(value: Any, key: str) -> list[Any]:
    """Every value stored under ``key`` anywhere in a parsed config."""
    found: list[Any] = []
    if isinstance(value, dict):
        for name, item in value.items():
            if name == key:
                found.append(item)
            found += _values_named(item, key)
    elif isinstance(value, list):
        for item in value:
            found += _values_named(item, key)
    return found

"""The parts of each preset fit together, and the alternative presets agree.

Schema checks cannot see that a probe names a port the config never opens, that a
Service targets the wrong container port, or that the Istio and Gateway API variants
drifted from the plain Envoy one. These tests read the built manifests and the Envoy
configs side by side.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.presets.bootstrap import cluster, http_connection_manager, http_filter, listener
from tests.presets.paths import (
    ENVOY_IMAGE,
    GATEWAY,
    INGRESS,
    PRESET_ROOTS,
    envoy_dirs,
    relative,
)
from tests.presets.podfiles import find_object
from tests.support.k8s import load_yaml_documents
from tests.support.kustomization import build

ENVOY_DIRS = envoy_dirs()
RATELIMIT = "envoy.filters.http.local_ratelimit"


def _pod(objects: list[dict[str, Any]]) -> dict[str, Any]:
    pod: dict[str, Any] = find_object(objects, "Deployment")["spec"]["template"]
    return pod


def _envoy_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = _pod(objects)["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "envoy"]
    return container


def _config(objects: list[dict[str, Any]]) -> dict[str, Any]:
    """The Envoy config the Deployment passes with --config-path, from its ConfigMap."""
    container = _envoy_container(objects)
    args = [str(arg) for arg in container["args"]]
    config_path = args[args.index("--config-path") + 1]
    volumes = {v["name"]: v for v in _pod(objects)["spec"]["volumes"]}
    for mount in container["volumeMounts"]:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if config_path.startswith(prefix):
            name = volumes[mount["name"]]["configMap"]["name"]
            text = find_object(objects, "ConfigMap", name)["data"][config_path[len(prefix) :]]
            config: dict[str, Any] = yaml.safe_load(text)
            return config
    raise AssertionError(f"{config_path} is not in a mounted ConfigMap")


def _port_value(address: dict[str, Any]) -> int:
    port: int = address["socket_address"]["port_value"]
    return port


@pytest.mark.parametrize("directory", ENVOY_DIRS, ids=relative)
def test_envoy_deployment_runs_two_hardened_replicas(directory: Path) -> None:
    objects = build(directory)
    deployment = find_object(objects, "Deployment")
    pod = _pod(objects)
    container = _envoy_container(objects)
    assert deployment["spec"]["replicas"] == 2
    assert container["image"] == ENVOY_IMAGE
    assert pod["metadata"]["labels"]["envoy-inject"] == "disabled"
    spec = pod["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 101
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    hardening = container["securityContext"]
    assert hardening["runAsNonRoot"] is True
    assert hardening["runAsUser"] == 101
    assert hardening["allowPrivilegeEscalation"] is False
    assert hardening["readOnlyRootFilesystem"] is True
    assert hardening["capabilities"] == {"drop": ["ALL"]}
    assert hardening["seccompProfile"] == {"type": "RuntimeDefault"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}
    budget = find_object(objects, "PodDisruptionBudget")
    assert budget["spec"]["minAvailable"] == 1
    selector = budget["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()


@pytest.mark.parametrize("directory", ENVOY_DIRS, ids=relative)
def test_probes_reach_envoy_ready_through_the_ready_listener_only(directory: Path) -> None:
    objects = build(directory)
    container = _envoy_container(objects)
    config = _config(objects)
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/ready", "port": "ready"}
    ready = listener(config, "ready")
    assert _port_value(ready["address"]) == ports["ready"]
    admin = config["admin"]["address"]
    assert admin["socket_address"]["address"] == "127.0.0.1", "admin must stay on loopback"
    routes = http_connection_manager(config, "ready")["route_config"]["virtual_hosts"][0]
    (to_admin,) = [r for r in routes["routes"] if "route" in r]
    assert to_admin["match"] == {"path": "/ready"}
    admin_cluster = cluster(config, to_admin["route"]["cluster"])
    (endpoint,) = admin_cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert endpoint["endpoint"]["address"] == admin


@pytest.mark.parametrize("directory", ENVOY_DIRS, ids=relative)
def test_service_exposes_the_envoy_listeners_and_keeps_client_addresses(
    directory: Path,
) -> None:
    objects = build(directory)
    service = find_object(objects, "Service")
    config = _config(objects)
    container_ports = {p["name"]: p["containerPort"] for p in _envoy_container(objects)["ports"]}
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["externalTrafficPolicy"] == "Local"
    assert service["spec"]["selector"].items() <= _pod(objects)["metadata"]["labels"].items()
    public = {
        _port_value(item["address"])
        for item in config["static_resources"]["listeners"]
        if item["name"] != "ready"
    }
    exposed = {container_ports[port["targetPort"]] for port in service["spec"]["ports"]}
    assert exposed == public


def _file_paths(value: Any) -> list[str]:
    """Paths of files and directories an Envoy config reads (filename, SDS, watches)."""
    found: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "filename" or (
                key in ("path_config_source", "watched_directory") and "path" in item
            ):
                found.append(item if key == "filename" else item["path"])
            found += _file_paths(item)
    elif isinstance(value, list):
        for item in value:
            found += _file_paths(item)
    return found


@pytest.mark.parametrize("directory", ENVOY_DIRS, ids=relative)
def test_files_the_envoy_config_reads_are_mounted_in_the_pod(directory: Path) -> None:
    objects = build(directory)
    container = _envoy_container(objects)
    volumes = {v["name"]: v for v in _pod(objects)["spec"]["volumes"]}
    mounts = {m["mountPath"].rstrip("/"): volumes[m["name"]] for m in container["volumeMounts"]}
    pending = _file_paths(_config(objects))
    paths: list[str] = []
    while pending:
        path = pending.pop()
        paths.append(path)
        owners = [m for m in mounts if path == m or path.startswith(m + "/")]
        assert len(owners) == 1, f"{path} is not under exactly one volume mount"
        key = path.removeprefix(owners[0]).lstrip("/")
        volume = mounts[owners[0]]
        if key and "configMap" in volume:
            data = find_object(objects, "ConfigMap", volume["configMap"]["name"])["data"]
            assert key in data, f"{path}: ConfigMap has no key {key}"
            document = yaml.safe_load(data[key])
            if isinstance(document, dict) and "resources" in document:
                pending += _file_paths(document)  # an SDS file names more files
        elif key:
            assert key in ("tls.crt", "tls.key"), f"{path}: not a kubernetes.io/tls key"
    # The ext_authz variant reads no file at all; the JWT and ingress configs do.
    assert paths or "ext-authz" in directory.name


def _gateway_config() -> dict[str, Any]:
    return _config(build(GATEWAY / "envoy"))


def _one(path: Path, kind: str) -> dict[str, Any]:
    (obj,) = [o for o in load_yaml_documents(path) if o["kind"] == kind]
    return obj


def test_gateway_presets_limit_each_client_to_the_same_rate() -> None:
    vhost = http_connection_manager(_gateway_config(), "api")["route_config"]["virtual_hosts"][0]
    plain = vhost["typed_per_filter_config"][RATELIMIT]
    (descriptor,) = plain["descriptors"]
    assert descriptor["entries"] == [{"key": "remote_address"}], "a wildcard per client address"
    assert plain["rate_limits"] == [{"actions": [{"remote_address": {}}]}]
    assert plain["max_dynamic_descriptors"] >= 1000, "the default of 20 clients is far too few"
    ext_authz = _config(build(GATEWAY / "envoy-ext-authz"))
    ext_vhost = http_connection_manager(ext_authz, "api")["route_config"]["virtual_hosts"][0]
    assert ext_vhost["typed_per_filter_config"][RATELIMIT] == plain
    envoy_filter = _one(GATEWAY / "istio" / "envoyfilter-ratelimit.yaml", "EnvoyFilter")
    (vhost_patch,) = [
        p for p in envoy_filter["spec"]["configPatches"] if p["applyTo"] == "VIRTUAL_HOST"
    ]
    assert vhost_patch["patch"]["value"]["typed_per_filter_config"][RATELIMIT] == plain
    bucket = descriptor["token_bucket"]
    assert bucket["max_tokens"] == bucket["tokens_per_fill"]
    assert bucket["fill_interval"] == "60s"
    policy = _one(
        GATEWAY / "gateway-api" / "backendtrafficpolicy-ratelimit.yaml", "BackendTrafficPolicy"
    )
    (rule,) = policy["spec"]["rateLimit"]["local"]["rules"]
    assert rule["limit"] == {"requests": bucket["max_tokens"], "unit": "Minute"}
    assert rule["clientSelectors"] == [{"sourceCIDR": {"type": "Distinct", "value": "0.0.0.0/0"}}]


def test_gateway_presets_check_the_same_jwt_issuer_audience_and_claims() -> None:
    manager = http_connection_manager(_gateway_config(), "api")
    provider = http_filter(manager, "envoy.filters.http.jwt_authn")["providers"]["idp"]
    claims = {(c["header_name"], c["claim_name"]) for c in provider["claim_to_headers"]}
    assert provider["forward"] is False
    istio = _one(GATEWAY / "istio" / "requestauthentication.yaml", "RequestAuthentication")
    (rule,) = istio["spec"]["jwtRules"]
    assert (rule["issuer"], rule["audiences"]) == (provider["issuer"], provider["audiences"])
    assert {(c["header"], c["claim"]) for c in rule["outputClaimToHeaders"]} == claims
    assert rule["forwardOriginalToken"] is False
    policy = _one(GATEWAY / "gateway-api" / "securitypolicy-jwt.yaml", "SecurityPolicy")
    (eg,) = policy["spec"]["jwt"]["providers"]
    assert (eg["issuer"], eg["audiences"]) == (provider["issuer"], provider["audiences"])
    assert {(c["header"], c["claim"]) for c in eg["claimToHeaders"]} == claims
    jwks = _one(GATEWAY / "gateway-api" / "configmap-jwks.yaml", "ConfigMap")
    assert eg["localJWKS"]["valueRef"] == {"group": "", "kind": "ConfigMap", "name": "api-jwks"}
    plain_jwks = _one(GATEWAY / "envoy" / "jwks.yaml", "ConfigMap")["data"]["jwks.json"]
    assert jwks["metadata"]["name"] == "api-jwks"
    assert jwks["data"]["jwks"] == plain_jwks


def test_gateway_presets_route_the_canary_the_same_way() -> None:
    vhost = http_connection_manager(_gateway_config(), "api")["route_config"]["virtual_hosts"][0]
    by_name = {route["name"]: route for route in vhost["routes"]}
    header = by_name["canary-by-header"]["match"]["headers"][0]
    query = by_name["canary-by-query"]["match"]["query_parameters"][0]
    assert (header["name"], header["string_match"]) == ("x-canary", {"exact": "always"})
    assert (query["name"], query["string_match"]) == ("canary", {"exact": "always"})
    weights = {
        c["name"]: c["weight"]
        for c in by_name["weighted"]["route"]["weighted_clusters"]["clusters"]
    }
    assert weights == {"api-stable": 90, "api-canary": 10}

    service = _one(GATEWAY / "istio" / "virtualservice.yaml", "VirtualService")
    istio = {route["name"]: route for route in service["spec"]["http"]}
    for match in istio["canary-by-header"]["match"]:
        assert match["headers"] == {"x-canary": {"exact": "always"}}
    for match in istio["canary-by-query"]["match"]:
        assert match["queryParams"] == {"canary": {"exact": "always"}}
    istio_weights = {
        d["destination"]["host"].split(".")[0]: d["weight"] for d in istio["weighted"]["route"]
    }
    assert istio_weights == weights

    route = _one(GATEWAY / "gateway-api" / "httproute.yaml", "HTTPRoute")
    rules = {rule["name"]: rule for rule in route["spec"]["rules"]}
    selectors = [
        m.get("headers", []) + m.get("queryParams", []) for m in rules["canary"]["matches"]
    ]
    assert selectors == [
        [{"name": "x-canary", "value": "always"}],
        [{"name": "canary", "value": "always"}],
    ]
    assert {b["name"]: b["weight"] for b in rules["weighted"]["backendRefs"]} == weights


@pytest.mark.parametrize("root", PRESET_ROOTS, ids=relative)
def test_readme_names_every_file_of_its_preset(root: Path) -> None:
    readme = (root / "README.md").read_text()
    missing = [
        str(path.relative_to(root))
        for path in sorted(root.rglob("*.yaml"))
        if str(path.relative_to(root)) not in readme
    ]
    assert missing == []


def test_ingress_presets_route_the_same_hosts_and_paths() -> None:
    config = _config(build(INGRESS / "envoy"))
    vhost = http_connection_manager(config, "https")["route_config"]["virtual_hosts"][0]
    plain = {
        (route["match"]["path_separated_prefix"], route["route"]["cluster"])
        for route in vhost["routes"]
    }
    proxy = _one(INGRESS / "contour" / "httpproxy.yaml", "HTTPProxy")
    contour = {
        (route["conditions"][0]["prefix"], route["services"][0]["name"])
        for route in proxy["spec"]["routes"]
    }
    ingress = _one(INGRESS / "contour" / "ingress.yaml", "Ingress")
    (rule,) = ingress["spec"]["rules"]
    portable = {
        (path["path"], path["backend"]["service"]["name"]) for path in rule["http"]["paths"]
    }
    assert plain == contour == portable == {("/api", "service-a"), ("/web", "service-b")}
    assert proxy["spec"]["virtualhost"]["fqdn"] == rule["host"] == "example.com"
    assert "example.com" in vhost["domains"]
    assert proxy["spec"]["virtualhost"]["tls"]["secretName"] == "example-com-tls"
    assert ingress["spec"]["tls"] == [{"hosts": ["example.com"], "secretName": "example-com-tls"}]

"""The Envoy bootstrap rendered from the SidecarSpec, and the config's ``bootstrap:`` checks."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.manifests import documents
from webhook import bootstrap, errors, settings
from webhook.spec import SidecarSpec

REPO = Path(__file__).resolve().parents[2]


def _shipped_config() -> dict[str, Any]:
    config_map = documents.one(
        documents.objects(documents.INJECTOR), "ConfigMap", "envoy-injector-config"
    )
    doc: dict[str, Any] = yaml.safe_load(config_map["data"]["config.yaml"])
    return doc


def test_the_built_in_default_renders_the_shipped_bootstrap_exactly() -> None:
    """A config without ``bootstrap:`` gives Pods the same Envoy file as the shipped config."""
    assert yaml.safe_load(bootstrap.render(SidecarSpec())) == _shipped_config()["bootstrap"]


def test_the_shipped_operator_config_renders_unchanged_with_the_default_ports() -> None:
    shipped = _shipped_config()["bootstrap"]
    assert bootstrap.template(shipped) == shipped
    assert yaml.safe_load(bootstrap.render(SidecarSpec(), shipped)) == shipped


def test_ports_come_from_the_spec_whatever_the_template_says() -> None:
    spec = dataclasses.replace(SidecarSpec(), proxy_port=15001, app_port=3000, admin_port=15000)
    source = copy.deepcopy(_shipped_config()["bootstrap"])
    source["admin"]["address"]["socket_address"] = {"address": "0.0.0.0", "port_value": 1}
    out = yaml.safe_load(bootstrap.render(spec, source))
    assert out["admin"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 15000,
    }
    (listener,) = out["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "0.0.0.0", "port_value": 15001}
    (cluster,) = out["static_resources"]["clusters"]
    endpoint = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
    assert endpoint["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 3000}
    assert source["admin"]["address"]["socket_address"]["port_value"] == 1  # input untouched


def _without(path: str) -> Any:
    doc = copy.deepcopy(_shipped_config()["bootstrap"])
    *parents, last = path.split(".")
    node = doc
    for key in parents:
        node = node[key]
    if last == "name":
        node[0]["name"] = "renamed"
    else:
        del node[last]
    return doc


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("not a mapping", "bootstrap: the value must be a mapping"),
        (_without("static_resources"), "static_resources must be a mapping"),
        (_without("static_resources.listeners.name"), "exactly one entry named 'ingress_http'"),
        (_without("static_resources.clusters.name"), "exactly one entry named 'local_app'"),
    ],
    ids=["scalar", "no-static-resources", "no-listener", "no-cluster"],
)
def test_a_bootstrap_without_the_places_for_ports_is_refused_naming_them(
    source: Any, expected: str
) -> None:
    with pytest.raises(errors.ConfigError, match=expected):
        bootstrap.template(source)


def test_the_webhook_refuses_a_config_whose_bootstrap_the_controller_could_not_write() -> None:
    text = yaml.safe_dump({"bootstrap": {"static_resources": {"listeners": []}}})
    with pytest.raises(errors.ConfigError, match="ingress_http"):
        settings.context_from_config(text, own_namespace="")

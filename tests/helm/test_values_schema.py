"""values.schema.json refuses bad values at ``helm template``/``helm install`` time with a message
that names the value, agrees with what the server and the cert job accept, and is the source of
the README's values table."""

from __future__ import annotations

import re
from typing import Any, Final

import pytest
import yaml

from tests.helm import chart, values_table
from tests.helm.chart import Object
from webhook import errors, overrides, settings, spec

SCHEMA: Final = values_table.schema()

REFUSED: Final = [
    ("replicas-negative", {"webhook": {"replicas": -1}}, ["/webhook/replicas", "minimum"]),
    ("replicas-zero", {"webhook": {"replicas": 0}}, ["/webhook/replicas"]),
    ("failure-policy-maybe", {"webhook": {"failurePolicy": "Maybe"}}, ["/webhook/failurePolicy"]),
    (
        "image-without-tag-or-digest",
        {"image": {"tag": "", "digest": ""}},
        ["/image/tag", "/image/digest"],
    ),
    ("image-digest-not-sha256", {"image": {"digest": "latest"}}, ["/image/digest"]),
    ("timeout-above-30", {"webhook": {"timeoutSeconds": 31}}, ["/webhook/timeoutSeconds"]),
    ("misspelt-key", {"webhook": {"replica": 3}}, ["/webhook", "replica"]),
    (
        "unknown-override",
        {"policy": {"allowedOverrides": ["privileged"]}},
        ["/policy/allowedOverrides/0"],
    ),
    ("unknown-sidecar-key", {"sidecar": {"proxyPortt": 1}}, ["/sidecar", "proxyPortt"]),
    ("port-out-of-range", {"sidecar": {"proxyPort": 70000}}, ["/sidecar/proxyPort"]),
    ("cert-lifetime-not-a-duration", {"certs": {"certTTL": "1 year"}}, ["/certs/certTTL"]),
    (
        "bad-excluded-namespace",
        {"webhook": {"excludedNamespaces": ["Kube_System"]}},
        ["/webhook/excludedNamespaces/0"],
    ),
    (
        "no-api-server-port",
        {"networkPolicy": {"apiServer": {"ports": []}}},
        ["/networkPolicy/apiServer/ports"],
    ),
]


@pytest.mark.parametrize(
    ("values", "named"), [(v, n) for _, v, n in REFUSED], ids=[i for i, _, _ in REFUSED]
)
def test_bad_value_is_refused_with_a_message_naming_it(values: Object, named: list[str]) -> None:
    message = chart.refusal(values)
    assert "values don't meet the specifications of the schema" in message
    for needle in named:
        assert needle in message


@pytest.mark.parametrize(
    ("values", "named"), [(v, n) for _, v, n in REFUSED[:4]], ids=[i for i, _, _ in REFUSED[:4]]
)
def test_helm_install_refuses_it_too_before_reaching_a_cluster(
    values: Object, named: list[str]
) -> None:
    """``helm install`` checks the same schema first (here as a client-side dry run, so no
    cluster is needed; the refusal comes before any request would be sent)."""
    result = chart.helm(
        "install", chart.RELEASE, str(chart.CHART), "-n", chart.NAMESPACE,
        "--dry-run=client", "-f", "-", stdin=yaml.safe_dump(values),
    )  # fmt: skip
    assert result.returncode != 0
    assert "INSTALLATION FAILED: values don't meet the specifications" in result.stderr
    for needle in named:
        assert needle in result.stderr


def test_a_digest_alone_is_enough() -> None:
    objs = chart.template({"image": {"tag": "", "digest": "sha256:" + "a" * 64}})
    assert objs


def test_the_defaults_meet_the_schema() -> None:
    result = chart.helm("lint", "--strict", str(chart.CHART))
    assert result.returncode == 0, result.stdout + result.stderr


def known_keys(config_text: str) -> set[str]:
    """The keys the server's config parser lists when it refuses ``config_text``."""
    with pytest.raises(errors.ConfigError) as refused:
        settings.context_from_config(config_text, own_namespace="envoy-injector")
    listed = re.search(r"known: (.*)$", str(refused.value))
    assert listed, str(refused.value)
    return set(re.findall(r"[A-Za-z]+", listed.group(1)))


def schema_keys(section: str) -> set[str]:
    properties: dict[str, Any] = SCHEMA["properties"][section]["properties"]
    return set(properties)


@pytest.mark.parametrize("section", ["sidecar", "policy"])
def test_schema_offers_exactly_the_keys_the_server_accepts(section: str) -> None:
    assert schema_keys(section) == known_keys(f"{section}: {{notAKey: 1}}")


def test_schema_offers_exactly_the_overrides_the_server_knows() -> None:
    items = SCHEMA["properties"]["policy"]["properties"]["allowedOverrides"]["items"]
    assert set(items["enum"]) == spec.ALL_OVERRIDES


def test_schema_offers_exactly_the_log_levels_envoy_is_given() -> None:
    assert tuple(SCHEMA["properties"]["sidecar"]["properties"]["logLevel"]["enum"]) == (
        overrides.LOG_LEVELS
    )


def test_readme_values_table_is_generated_from_the_schema() -> None:
    readme = (chart.CHART / "README.md").read_text()
    assert values_table.table() in readme, (
        "regenerate it: python -m tests.helm.values_table --write"
    )


def test_every_value_in_values_yaml_is_in_the_schema() -> None:
    def walk(values: Any, node: dict[str, Any], path: str) -> list[str]:
        if not isinstance(values, dict) or "properties" not in node:
            return []
        missing = [f"{path}{k}" for k in values if k not in node["properties"]]
        for name, value in values.items():
            if name in node["properties"]:
                missing += walk(value, node["properties"][name], f"{path}{name}.")
        return missing

    assert walk(values_table.defaults(), SCHEMA, "") == []

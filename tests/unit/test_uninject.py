"""uninject: the pure inverse of inject, driven by the status annotation."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pods import make_pod
from webhook import errors, patch, settings, workloads
from webhook.mutate import plan_template
from webhook.spec import STATUS_ANNOTATION
from webhook.uninject import parse_status, uninject, uninject_document
from webhook.uninject_command import uninject_text

CASES = Path(__file__).resolve().parents[1] / "testdata" / "inject"
CTX = settings.context_from_config(None, own_namespace="envoy-injector")
TEMPLATE = {"metadata": {"labels": {"app": "web"}}, "spec": make_pod()["spec"]}


def _injected(doc: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(doc)
    for template in list(workloads.templates(doc)):
        result = patch.apply(result, plan_template(template, CTX).ops)
    assert result != doc
    return result


def _workload(kind: str, api: str = "apps/v1") -> dict[str, Any]:
    template = copy.deepcopy(TEMPLATE)
    if kind == "CronJob":
        spec: dict[str, Any] = {
            "schedule": "* * * * *",
            "jobTemplate": {"spec": {"template": template}},
        }
    else:
        spec = {"selector": {"matchLabels": {"app": "web"}}, "template": template}
    return {"apiVersion": api, "kind": kind, "metadata": {"name": "web"}, "spec": spec}


KINDS = {
    "Pod": make_pod(labels={"app": "web"}),
    "Deployment": _workload("Deployment"),
    "StatefulSet": _workload("StatefulSet"),
    "DaemonSet": _workload("DaemonSet"),
    "ReplicaSet": _workload("ReplicaSet"),
    "ReplicationController": _workload("ReplicationController", "v1"),
    "Job": _workload("Job", "batch/v1"),
    "CronJob": _workload("CronJob", "batch/v1"),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_inject_handles_comes_back_as_written(kind: str) -> None:
    doc = KINDS[kind]
    back, changed = uninject_document(_injected(doc))
    assert back == doc
    assert changed == [patch.pointer(*workloads.TEMPLATE_PATHS[kind]) or "/"]


def test_a_list_is_uninjected_item_by_item() -> None:
    doc = {"apiVersion": "v1", "kind": "List", "items": [KINDS["Pod"], KINDS["Deployment"]]}
    back, changed = uninject_document(_injected(doc))
    assert back == doc
    assert changed == ["/items/0", "/items/1/spec/template"]


@pytest.mark.parametrize("golden", sorted(CASES.glob("*.injected.yaml")), ids=lambda p: p.name)
def test_the_inject_goldens_uninject_to_their_inputs(golden: Path) -> None:
    source = golden.with_name(golden.name.replace(".injected", ""))
    result, failures = uninject_text(golden.read_text(), io.StringIO())
    assert failures == 0
    expected = [d for d in yaml.safe_load_all(source.read_text()) if d is not None]
    assert [d for d in yaml.safe_load_all(result) if d is not None] == expected


def test_a_pod_without_the_annotation_is_returned_equal() -> None:
    pod = make_pod(annotations={"other": "x"}, volumes=[{"name": "v", "emptyDir": {}}])
    assert uninject(pod) == pod


def test_only_what_the_record_names_is_removed_and_the_rest_keeps_its_order() -> None:
    pod = make_pod(
        annotations={"a": "1", "z": "2"},
        containers=[{"name": "app", "image": "a"}, {"name": "log", "image": "b"}],
        volumes=[{"name": "data", "emptyDir": {}}],
    )
    back = uninject(_injected(pod))
    assert back == pod
    assert list(back["metadata"]["annotations"]) == ["a", "z"]
    assert [c["name"] for c in back["spec"]["containers"]] == ["app", "log"]


def _with_status(pod: dict[str, Any], status: object) -> dict[str, Any]:
    pod["metadata"].setdefault("annotations", {})[STATUS_ANNOTATION] = (
        status if isinstance(status, str) else json.dumps(status)
    )
    return pod


@pytest.mark.parametrize(
    ("pod", "message"),
    [
        (
            _with_status(make_pod(), {"containers": ["envoy-sidecar"], "volumes": []}),
            "records containers envoy-sidecar but spec.containers has names app",
        ),
        (
            _with_status(
                make_pod(containers=[{"name": "app"}, {"name": "envoy-sidecar"}]),
                {"containers": ["envoy-sidecar"], "volumes": ["envoy-config-volume"]},
            ),
            "records volumes envoy-config-volume but spec.volumes has none",
        ),
        (
            _with_status(make_pod(), "yes"),
            "is 'yes', not the JSON object the injector writes",
        ),
        (
            _with_status(make_pod(), {"containers": "envoy-sidecar"}),
            "has containers='envoy-sidecar'; expected a list of names",
        ),
        (
            _with_status(
                make_pod(
                    containers=[
                        {"name": "app", "volumeMounts": [{"name": "cfg", "mountPath": "/c"}]},
                        {"name": "envoy-sidecar"},
                    ],
                    volumes=[{"name": "cfg"}],
                ),
                {"containers": ["envoy-sidecar"], "volumes": ["cfg"]},
            ),
            "container 'app' mounts volume 'cfg', which the injector added",
        ),
    ],
)
def test_a_record_that_disagrees_with_the_spec_is_an_error_and_changes_nothing(
    pod: dict[str, Any], message: str
) -> None:
    before = copy.deepcopy(pod)
    with pytest.raises(errors.StatusMismatch, match=message.replace("(", r"\(")):
        uninject(pod)
    assert pod == before


def test_the_record_parses_as_render_writes_it() -> None:
    injected = _injected(KINDS["Job"])
    value = injected["spec"]["template"]["metadata"]["annotations"][STATUS_ANNOTATION]
    status = parse_status(value)
    assert status.init_containers == ("envoy-sidecar",)
    assert status.containers == ()
    assert status.image == CTX.defaults.image


def test_the_cli_keeps_untouched_documents_byte_for_byte_and_names_a_bad_one() -> None:
    service = "# the front door\napiVersion: v1\nkind: Service\nmetadata: {name: s}  # flow\n"
    deploy = yaml.safe_dump(_injected(KINDS["Deployment"]), sort_keys=False)
    result, failures = uninject_text(service + "---\n" + deploy, io.StringIO())
    assert failures == 0
    assert result.startswith(service + "---\n")
    assert list(yaml.safe_load_all(result)) == [yaml.safe_load(service), KINDS["Deployment"]]

    broken = _injected(KINDS["Deployment"])
    broken["spec"]["template"]["spec"]["containers"].pop()
    err = io.StringIO()
    result, failures = uninject_text(service + "---\n" + yaml.safe_dump(broken), err)
    assert (result, failures) == ("", 1)
    assert err.getvalue().startswith(
        "error: document 2 (Deployment web): /spec/template: envoy-inject.io/status records "
        "containers envoy-sidecar but spec.containers has names app;"
    )


@pytest.mark.parametrize("labels", [None, {"app": "web"}], ids=["none-before", "its-own"])
def test_the_warned_label_goes_with_the_sidecar(labels: dict[str, str] | None) -> None:
    pod = make_pod(annotations={"envoy-inject.io/no-such-thing": "x"})
    pod["metadata"].pop("labels", None)
    if labels is not None:
        pod["metadata"]["labels"] = dict(labels)
    injected = _injected(pod)
    assert injected["metadata"]["labels"]["envoy-inject.io/warned"] == "true"
    assert uninject(injected) == pod

"""Istio's and Linkerd's injector test inputs (tests/data/peer-corpus) through `inject -f`.

These are real workload shapes written by other projects: probes, named ports, init containers,
host networking, another mesh's sidecar, CronJobs without template metadata, Lists, and a
deliberately malformed file. Every produced pod template must keep the injection invariants.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError, ValidationError

from tests.support.pods import CORPUS, check_injection_invariants, validate
from webhook import settings, workloads
from webhook.cli import inject_documents
from webhook.inject import SkipReason
from webhook.mutate import plan_template

FILES = sorted(p for p in CORPUS.rglob("*") if p.suffix in (".yaml", ".yml"))
MALFORMED = {"inject_gettest_deployment.bad.input.yml"}
CTX = settings.context_from_config(None, own_namespace="envoy-injector")


def test_the_corpus_is_present_and_complete() -> None:
    assert len(FILES) == 140


def _as_pod(template: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": template.get("metadata") or {},
        "spec": template["spec"],
    }


def _valid(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False  # e.g. an empty item in a List
    try:
        validate(obj)
    except (ValidationError, SchemaNotFoundError):
        return False
    return True


@pytest.mark.parametrize(
    "path", [f for f in FILES if f.name not in MALFORMED], ids=lambda p: str(p.relative_to(CORPUS))
)
def test_every_peer_workload_is_injected_or_passed_through_keeping_invariants(path: Path) -> None:
    text = path.read_text()
    err = io.StringIO()
    docs, failures = inject_documents(text, CTX, err)
    assert failures == 0, err.getvalue()
    originals = [d for d in yaml.safe_load_all(text) if d is not None]
    assert len(docs) == len(originals)
    for original, injected in zip(originals, docs, strict=True):
        templates = list(workloads.templates(original))
        if not templates:
            assert injected == original
        for template in templates:
            result = plan_template(dataclasses.replace(template, path=()), CTX)
            located: Any = injected
            for token in template.path:
                located = located[token]
            assert located == check_injection_invariants(
                template.pod, result.ops, warned=bool(result.warnings)
            )
            if result.ops:
                validate(_as_pod(located))
        items = original.get("items") if str(original.get("kind", "")).endswith("List") else None
        for before, after in zip(
            items or [original], injected.get("items") or [injected], strict=True
        ):
            if _valid(before):
                validate(after)
    again, _ = inject_documents(yaml.safe_dump_all(docs), CTX, io.StringIO())
    assert again == docs


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_malformed_peer_file_is_reported_with_its_line_and_exit_status(name: str) -> None:
    (path,) = [f for f in FILES if f.name == name]
    err = io.StringIO()
    docs, failures = inject_documents(path.read_text(), CTX, err)
    assert failures == 1
    assert docs == []
    assert err.getvalue().startswith("error: invalid YAML at line ")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("inject_emojivoto_deployment_hostNetwork_true.input.yml", SkipReason.HOST_NETWORK),
        ("pod-inject-enabled.yaml", SkipReason.EXCLUDED_NAMESPACE),  # kube-public
    ],
)
def test_peer_workloads_that_must_not_be_injected_are_skipped_for_the_right_reason(
    name: str, reason: SkipReason
) -> None:
    (path,) = [f for f in FILES if f.name == name]
    err = io.StringIO()
    docs, failures = inject_documents(path.read_text(), CTX, err)
    assert failures == 0
    assert docs == [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert f"skipped ({reason})" in err.getvalue()

"""Golden cases: tests/testdata/inject/<case>.yaml -> <case>.injected.yaml via the offline path.

A golden is written by the code under test, so it is reviewed by a human in the diff; every case
also checks invariants that do not depend on the golden.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.pods import check_injection_invariants, validate
from webhook import settings, workloads
from webhook.cli import inject_documents
from webhook.mutate import Context, plan_template

CASES_DIR = Path(__file__).resolve().parent.parent / "testdata" / "inject"
CASES = sorted(
    p for p in CASES_DIR.glob("*.yaml") if not p.name.endswith((".injected.yaml", ".ctx.yaml"))
)


def _context(case: Path) -> Context:
    ctx_file = case.with_suffix(".ctx.yaml")
    text = ctx_file.read_text() if ctx_file.exists() else None
    return settings.context_from_config(text, own_namespace="envoy-injector")


def _validate_all(doc: Any) -> None:
    if doc.get("kind") == "List":
        for item in doc["items"]:
            validate(item)
    else:
        validate(doc)


@pytest.fixture(params=CASES, ids=[c.stem for c in CASES])
def case(request: pytest.FixtureRequest) -> Path:
    path: Path = request.param
    return path


def test_case_matches_its_golden_file(case: Path, update_goldens: bool) -> None:
    docs, failures = inject_documents(case.read_text(), _context(case), io.StringIO())
    assert failures == 0
    golden = case.with_name(case.stem + ".injected.yaml")
    if update_goldens:
        golden.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    assert golden.exists(), f"no golden for {case.name}; run pytest --update-goldens and review"
    assert docs == list(yaml.safe_load_all(golden.read_text()))


def test_case_keeps_the_injection_invariants(case: Path) -> None:
    ctx = _context(case)
    originals = [d for d in yaml.safe_load_all(case.read_text()) if d is not None]
    docs, failures = inject_documents(case.read_text(), ctx, io.StringIO())
    assert failures == 0
    assert len(docs) == len(originals)
    for original, injected in zip(originals, docs, strict=True):
        _validate_all(injected)
        found = list(workloads.templates(original))
        if not found:
            assert injected == original, "a non-workload document must pass through unchanged"
        for template in found:
            result = plan_template(dataclasses.replace(template, path=()), ctx)
            after = check_injection_invariants(
                template.pod, result.ops, warned=bool(result.warnings)
            )
            located: Any = injected
            for token in template.path:
                located = located[token]
            assert located == after


def test_case_injected_twice_is_unchanged(case: Path) -> None:
    ctx = _context(case)
    once, _ = inject_documents(case.read_text(), ctx, io.StringIO())
    twice, failures = inject_documents(yaml.safe_dump_all(once), ctx, io.StringIO())
    assert failures == 0
    assert twice == once

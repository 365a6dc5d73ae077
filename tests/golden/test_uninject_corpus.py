"""`uninject` undoes `inject` on every peer corpus file (the same files test_peer_corpus reads).

The two properties the issue asks for, as parsed YAML: uninject(inject(x)) == x, and
inject(uninject(inject(x))) == inject(x).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import yaml

from tests.golden.test_peer_corpus import CTX, FILES, MALFORMED
from tests.support.pods import CORPUS
from webhook.cli import inject_documents
from webhook.uninject_command import uninject_text

CASES = [f for f in FILES if f.name not in MALFORMED]


def _inject(text: str) -> str:
    err = io.StringIO()
    docs, failures = inject_documents(text, CTX, err)
    assert failures == 0, err.getvalue()
    return yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False)


def _uninject(text: str) -> str:
    err = io.StringIO()
    result, failures = uninject_text(text, err)
    assert failures == 0, err.getvalue()
    return result


def _parsed(text: str) -> list[object]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


def test_the_round_trip_covers_the_whole_corpus() -> None:
    assert len(CASES) == len(FILES) - 1 > 100


@pytest.mark.parametrize("path", CASES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_uninject_undoes_inject_on_every_peer_file(path: Path) -> None:
    original = path.read_text()
    injected = _inject(original)
    removed = _uninject(injected)
    assert _parsed(removed) == _parsed(original)
    assert _parsed(_inject(removed)) == _parsed(injected)


@pytest.mark.parametrize("path", CASES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_a_file_never_injected_comes_back_byte_for_byte(path: Path) -> None:
    original = path.read_text()
    assert "envoy-inject.io/status" not in original
    assert _uninject(original) == original

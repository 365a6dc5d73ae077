"""Shared paths and fixtures for the ingress and API-gateway preset tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.presets.backends import StubPool
from tests.support.k8s import CRD_DIR, crd_files


@pytest.fixture(scope="session")
def crds() -> list[Path]:
    """The published CRD files vendored in tests/data/crds."""
    files = crd_files()
    assert files, f"no CRD files found in {CRD_DIR}"
    return files


@pytest.fixture(scope="module")
def stubs() -> Iterator[StubPool]:
    pool = StubPool()
    yield pool
    pool.close()

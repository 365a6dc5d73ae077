"""Shared paths and fixtures for the ingress and API-gateway preset tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.presets.backends import StubPool
from tests.support.k8s import crd_files


@pytest.fixture(scope="session")
def crds() -> list[Path]:
    """The published CRD files from shared/crds (beside the repository)."""
    files = crd_files()
    assert files, "no CRD files found in shared/crds beside the repository"
    return files


@pytest.fixture(scope="module")
def stubs() -> Iterator[StubPool]:
    pool = StubPool()
    yield pool
    pool.close()

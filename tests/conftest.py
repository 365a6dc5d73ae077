"""Project-wide pytest set-up: the golden-file flag, hypothesis profiles, and the guard that
fails a test reading files from outside the repository (tests/support/confinement.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# The last one: the test control plane (etcd + kube-apiserver + kube-controller-manager),
# started only for the tests that ask for it.
pytest_plugins = ["pytester", "tests.support.confinement", "tests.support.cluster.fixtures"]

settings.register_profile(
    "ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=100_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens",
        action="store_true",
        help="rewrite tests/testdata/**/*.injected.yaml from the current code (review the diff!)",
    )


@pytest.fixture(scope="session")
def update_goldens(request: pytest.FixtureRequest) -> bool:
    flag = bool(request.config.getoption("--update-goldens"))
    if flag and os.environ.get("CI"):
        pytest.fail("--update-goldens is refused under CI: goldens are reviewed by a human")
    return flag


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent

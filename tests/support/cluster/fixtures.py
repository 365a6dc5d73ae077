"""pytest plugin: the session's control plane, its kubectl and API client, namespaces, and a place
for figures (printed at the end of the run, never asserted).

Loaded from tests/conftest.py, so any suite may ask for `control_plane`; it starts only when
asked. Under CI=true it builds or installs whatever is missing (never a skip); elsewhere a
missing binary skips with the command that builds it.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.support import tools
from tests.support.cluster import binaries, controlplane, kube, record

_FIGURES = pytest.StashKey[list[str]]()
_counter = itertools.count()


@contextlib.contextmanager
def running(name: str) -> Iterator[controlplane.ControlPlane]:
    """A control plane in the clusters directory under ``name``, torn down on exit."""
    try:
        found = binaries.locate(get=bool(os.environ.get("CI")))
    except binaries.Missing as missing:
        pytest.skip(f"the e2e suite needs a local control plane: {missing}")
    directory = record.clusters_root() / name
    try:
        plane = controlplane.start(directory, found, owner=os.getpid())
    except BaseException:
        record.tear_down(directory)
        raise
    yield plane
    errors = record.tear_down(directory)
    assert not errors, errors


@pytest.fixture(scope="session")
def control_plane() -> Iterator[controlplane.ControlPlane]:
    for path in record.sweep():
        print(f"removed the cluster left by a killed run: {path}")  # noqa: T201
    with running(f"pytest-{os.getpid()}") as plane:
        yield plane


@pytest.fixture(scope="session")
def kubectl(control_plane: controlplane.ControlPlane) -> kube.Kubectl:
    return kube.Kubectl(str(tools.kubectl()), control_plane.kubeconfig)


@pytest.fixture(scope="session")
def api(control_plane: controlplane.ControlPlane) -> Iterator[httpx.Client]:
    with kube.api_client(control_plane) as client:
        yield client


@contextlib.contextmanager
def namespaces(kubectl: kube.Kubectl, api: httpx.Client) -> Iterator[Callable[..., str]]:
    """A maker of namespaces with the given labels, ready for Pods (their `default`
    ServiceAccount exists), deleted on exit. Shared with the node suite (tests/e2e/node)."""
    created: list[str] = []

    def make(prefix: str = "e2e", **labels: str) -> str:
        name = f"{prefix}-{os.getpid()}-{next(_counter)}"
        label_args = [f"{key}={value}" for key, value in labels.items()]
        kubectl("create", "namespace", name)
        created.append(name)
        if label_args:
            kubectl("label", "namespace", name, *label_args)
        path = f"/api/v1/namespaces/{name}/serviceaccounts/default"
        kube.eventually(lambda: api.get(path).status_code == 200, f"ServiceAccount {name}/default")
        return name

    try:
        yield make
    finally:
        for name in created:
            kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def namespace(kubectl: kube.Kubectl, api: httpx.Client) -> Iterator[Callable[..., str]]:
    """Create namespaces with the given labels, ready for Pods; delete them after the test."""
    with namespaces(kubectl, api) as make:
        yield make


@pytest.fixture(scope="session")
def figures(request: pytest.FixtureRequest) -> list[str]:
    return request.config.stash.setdefault(_FIGURES, [])


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(_FIGURES, [])
    if lines:
        terminalreporter.section("e2e figures (reported, not asserted)")
        for line in lines:
            terminalreporter.write_line(line)

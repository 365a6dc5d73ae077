"""The shipped manifests as plain dicts, for the tests in this package.

- :data:`INJECTOR` and :data:`SIDECAR` are the two kustomize directories this package covers;
- :func:`load_file` parses every YAML document of one file (empty documents dropped);
- :func:`objects` loads every Kubernetes object of a directory, tagged with its file;
- :func:`find` / :func:`one` pick objects by kind and name;
- :func:`injector_config_text` is the shipped operator config file, and
  :func:`delivered_envoy_config` what the controller writes from it into every labelled
  namespace (the walk-through ships no Envoy configuration of its own);
- :func:`pod_templates` yields the Pod spec of every workload (Deployment, Job, CronJob, Pod);
- :func:`restricted_violations` lists how a Pod spec breaks the ``restricted`` Pod Security
  Standard;
- :func:`flag_values` maps ``--flag value`` pairs of container args;
- :func:`tool` locates a command-line tool next to the interpreter (the venv) or on PATH, and
  fails the test when it is missing: these tools are test dependencies, never a reason to skip.
"""

from __future__ import annotations

import itertools
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

from controller import config
from tests.support import k8s
from webhook import reconcile

ROOT: Final = Path(__file__).resolve().parents[2]
MANIFESTS: Final = ROOT / "manifests"
INJECTOR: Final = MANIFESTS / "injector"
SIDECAR: Final = MANIFESTS / "sidecar"
KUSTOMIZATION: Final = "kustomization.yaml"

Object = dict[str, Any]


@dataclass(frozen=True)
class Manifest:
    """One Kubernetes object and the file it came from."""

    path: Path
    obj: Object

    @property
    def kind(self) -> str:
        return str(self.obj["kind"])

    @property
    def name(self) -> str:
        return str(self.obj["metadata"]["name"])

    @property
    def label(self) -> str:
        """A short test id: ``injector/rbac.yaml:Role/envoy-injector-certs``."""
        return f"{self.path.relative_to(MANIFESTS)}:{self.kind}/{self.name}"


def load_file(path: Path) -> list[Object]:
    """Every non-empty YAML document in ``path``; each must be a mapping."""
    return k8s.load_yaml_documents(path)


def yaml_files(directory: Path) -> list[Path]:
    """The YAML files directly in ``directory``, sorted."""
    return sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")])


def resource_files(directory: Path) -> list[Path]:
    """The YAML files of ``directory`` that hold Kubernetes objects (not the kustomization)."""
    return [path for path in yaml_files(directory) if path.name != KUSTOMIZATION]


def objects(directory: Path) -> list[Manifest]:
    """Every Kubernetes object in the resource files of ``directory``."""
    return [Manifest(path, obj) for path in resource_files(directory) for obj in load_file(path)]


def find(manifests: list[Manifest], kind: str, name: str | None = None) -> list[Object]:
    """The objects of ``kind`` (and ``name``, when given)."""
    return [m.obj for m in manifests if m.kind == kind and (name is None or m.name == name)]


def one(manifests: list[Manifest], kind: str, name: str | None = None) -> Object:
    """The single object of ``kind`` (and ``name``); fails the test unless exactly one."""
    found = find(manifests, kind, name)
    if len(found) != 1:
        pytest.fail(f"expected exactly one {kind} {name or ''}, found {len(found)}")
    return found[0]


def injector_config_text() -> str:
    """The operator's config file as shipped: ConfigMap ``envoy-injector-config``, key
    ``config.yaml``."""
    config_map = one(objects(INJECTOR), "ConfigMap", "envoy-injector-config")
    text: str = config_map["data"]["config.yaml"]
    return text


def delivered_envoy_config() -> reconcile.Target:
    """The ConfigMap (name and data) the shipped controller writes into every labelled
    namespace, made by the controller's own code from the shipped config file."""
    return config.target_from_config(injector_config_text(), own_namespace="envoy-injector")


def pod_spec(obj: Object) -> Object | None:
    """The Pod spec inside a workload object, or None for kinds without one."""
    kind = obj["kind"]
    if kind == "Pod":
        spec: Object = obj["spec"]
    elif kind in {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}:
        spec = obj["spec"]["template"]["spec"]
    elif kind == "CronJob":
        spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    else:
        return None
    return spec


def pod_templates(manifests: list[Manifest]) -> Iterator[tuple[Manifest, Object]]:
    """(object, Pod spec) for every workload among ``manifests``."""
    for manifest in manifests:
        spec = pod_spec(manifest.obj)
        if spec is not None:
            yield manifest, spec


def container(spec: Object, name: str) -> Object:
    """The container called ``name`` in a Pod spec; fails the test if absent."""
    for item in spec.get("containers", []):
        if item["name"] == name:
            found: Object = item
            return found
    pytest.fail(f"no container {name!r} in {[c['name'] for c in spec.get('containers', [])]}")


def effective(pod: Object, item: Object, field: str) -> object:
    """A security field of container ``item`` as the kubelet applies it: its own, else the Pod's."""
    own = item.get("securityContext", {})
    if field in own:
        return own[field]
    return pod.get("securityContext", {}).get(field)


def restricted_violations(pod: Object) -> list[str]:
    """How a Pod spec breaks the ``restricted`` Pod Security Standard (the fields the admission
    plugin checks for these manifests), plus a writable root filesystem; empty when it does not.
    """
    problems = [
        f"{field} is set" for field in ("hostNetwork", "hostPID", "hostIPC") if pod.get(field)
    ]
    for item in [*pod.get("initContainers", []), *pod["containers"]]:
        where = f"container {item['name']}:"
        context = item.get("securityContext", {})
        capabilities = context.get("capabilities", {})
        checks = {
            "runAsNonRoot is not true": effective(pod, item, "runAsNonRoot") is not True,
            "runAsUser is 0": effective(pod, item, "runAsUser") == 0,
            "allowPrivilegeEscalation is not false": context.get("allowPrivilegeEscalation")
            is not False,
            "privileged": context.get("privileged", False) is not False,
            "capabilities do not drop ALL": capabilities.get("drop") != ["ALL"],
            "capabilities are added": bool(capabilities.get("add")),
            "seccompProfile is not RuntimeDefault": effective(pod, item, "seccompProfile")
            != {"type": "RuntimeDefault"},
            "root filesystem is writable": context.get("readOnlyRootFilesystem") is not True,
        }
        problems += [f"{where} {problem}" for problem, broken in checks.items() if broken]
    return problems


def flag_values(args: list[str]) -> dict[str, str]:
    """``["serve", "--port", "8443"]`` → ``{"--port": "8443"}`` (flags that take one value)."""
    values: dict[str, str] = {}
    for flag, value in itertools.pairwise(args):
        if flag.startswith("--") and not value.startswith("--"):
            values[flag] = value
    return values


def tool(name: str) -> str:
    """Path of the executable ``name``: the venv's bin/ first, then PATH; else fail the test."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the project's test extra into the venv")
    return found

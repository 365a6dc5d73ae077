"""The Dockerfile and .dockerignore: linted by hadolint and checked against the project.

The image cannot be built here (no Docker engine); these tests pin what can be checked without
building it: hadolint's rules, a non-root final stage without build tools, the entrypoint that
pyproject.toml installs, the user the manifests run as, and a build context that holds every
file the Dockerfile copies.
"""

from __future__ import annotations

import json
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Final

import pytest

from tests.manifests import documents
from tests.manifests.documents import INJECTOR, ROOT

DOCKERFILE: Final = ROOT / "Dockerfile"
DOCKERIGNORE: Final = ROOT / ".dockerignore"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Dockerfile instruction, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", text)
    result = []
    for line in joined.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            word, _, rest = stripped.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def stages() -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage (each starts with FROM)."""
    grouped: list[list[tuple[str, str]]] = []
    for instruction in instructions(DOCKERFILE.read_text()):
        if instruction[0] == "FROM":
            grouped.append([])
        if grouped:
            grouped[-1].append(instruction)
    return grouped


def hadolint(path: Path) -> list[dict[str, object]]:
    result = subprocess.run(
        [documents.tool("hadolint"), "--no-color", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=path.parent,
    )
    findings: list[dict[str, object]] = json.loads(result.stdout or "[]")
    assert result.returncode == (1 if findings else 0), result.stderr
    return findings


def test_dockerfile_passes_hadolint_without_any_finding() -> None:
    assert hadolint(DOCKERFILE) == []


def test_hadolint_reports_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install requests\n")
    codes = {finding["code"] for finding in hadolint(bad)}
    assert {"DL3006", "DL3013"} <= codes


def test_image_is_built_in_two_stages_from_a_pinned_slim_python() -> None:
    froms = [stage[0][1] for stage in stages()]
    assert len(froms) == 2
    assert froms[0].endswith(" AS builder")
    assert froms[0].split()[0] == froms[1], "the copied virtualenv needs the builder's Python"
    for image in froms:
        reference = image.split()[0]
        assert re.fullmatch(r"python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", reference)


def test_final_stage_copies_only_the_virtualenv_and_installs_nothing() -> None:
    final = stages()[-1]
    copies = [args for word, args in final if word in {"COPY", "ADD"}]
    assert copies == ["--from=builder /opt/venv /opt/venv"]
    runs = " ".join(args for word, args in final if word == "RUN")
    for tool in ("apt-get", "apk", "pip ", "gcc", "build-essential", "curl", "wget"):
        assert tool not in runs


def test_final_stage_runs_the_console_script_as_the_manifests_user() -> None:
    final = dict(stages()[-1])
    assert final["USER"] == "10001:10001"
    deployment = documents.one(documents.objects(INJECTOR), "Deployment", "envoy-injector")
    server = documents.container(deployment["spec"]["template"]["spec"], "envoy-injector")
    context = server["securityContext"]
    assert final["USER"] == f"{context['runAsUser']}:{context['runAsGroup']}"
    assert final["ENTRYPOINT"] == '["envoy-injector"]'
    assert final["CMD"] == '["serve"]'
    assert final["EXPOSE"] == "8443"
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "envoy-injector" in pyproject["project"]["scripts"]


def test_builder_copies_what_pyproject_needs_to_install() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    copied = {
        source.rstrip("/")
        for word, args in stages()[0]
        if word == "COPY"
        for source in args.split()[:-1]
        if not source.startswith("--")
    }
    assert "pyproject.toml" in copied
    assert pyproject["project"]["readme"] in copied
    assert set(pyproject["tool"]["setuptools"]["packages"]) <= copied


def test_dockerignore_lets_through_exactly_what_the_dockerfile_copies() -> None:
    lines = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", "start from nothing so .venv, .git and certificates stay out"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    copied = {
        source.rstrip("/")
        for word, args in stages()[0]
        if word == "COPY"
        for source in args.split()[:-1]
        if not source.startswith("--")
    }
    assert allowed == copied
    for path in copied:
        assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which does not exist"


@pytest.mark.parametrize("secret", [".venv", ".git", ".dev-certs", "tests"], ids=str)
def test_dockerignore_keeps_local_state_out_of_the_build_context(secret: str) -> None:
    allowed = [
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    ]
    assert not any(secret == entry or entry.startswith(secret + "/") for entry in allowed)

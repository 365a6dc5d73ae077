"""The console script as a user runs it: `envoy-injector inject -f FILE|-` and start-up errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CASES = REPO / "tests" / "testdata" / "inject"


def run(
    *args: str, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "webhook", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_inject_from_a_file_prints_yaml_that_matches_the_golden() -> None:
    result = run("inject", "-f", str(CASES / "deployment-typical.yaml"))
    assert result.returncode == 0, result.stderr
    golden = list(yaml.safe_load_all((CASES / "deployment-typical.injected.yaml").read_text()))
    assert list(yaml.safe_load_all(result.stdout)) == golden
    assert "document 1 (Deployment checkout) /spec/template: injected" in result.stderr


def test_inject_reads_stdin_with_a_dash() -> None:
    text = (CASES / "pod-minimal.yaml").read_text()
    result = run("inject", "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr
    (pod,) = yaml.safe_load_all(result.stdout)
    assert [c["name"] for c in pod["spec"]["containers"]] == ["hello", "envoy-sidecar"]


def test_an_invalid_document_is_reported_with_its_index_and_kind_and_exit_1() -> None:
    text = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n---\n"
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  template:\n"
        "    metadata:\n      annotations:\n        envoy-inject.io/proxy-port: nope\n"
        "        envoy-inject.io/config-map: own\n"
        "    spec:\n      containers: [{name: a, image: a}]\n"
    )
    result = run("inject", "-f", "-", stdin=text)
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error: document 2 (Deployment bad): invalid annotations: " in result.stderr
    assert "envoy-inject.io/proxy-port: 'nope' is invalid" in result.stderr


def test_a_workload_without_a_template_is_reported_not_crashed_on() -> None:
    result = run(
        "inject", "-f", "-", stdin="apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n"
    )
    assert result.returncode == 1
    assert "document 1 (Deployment x): Deployment has no spec.template object" in result.stderr


def test_serve_without_a_certificate_says_what_it_needs() -> None:
    result = run("serve", "--port", "0")
    assert result.returncode == 1
    assert "serve needs --cert and --key (or --dev" in result.stderr


def test_a_bad_environment_variable_is_named() -> None:
    # The port's variable is ENVOY_INJECTOR_PORT_NUMBER: ENVOY_INJECTOR_PORT is the kubelet's
    # service link for a Service named envoy-injector (tests/unit/test_service_links.py).
    result = run("serve", env={"ENVOY_INJECTOR_PORT_NUMBER": "eighty", "PATH": "/usr/bin"})
    assert result.returncode == 1
    assert "ENVOY_INJECTOR_PORT_NUMBER='eighty' is not a valid int" in result.stderr


def test_a_bad_config_file_is_named_with_the_key(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("sidecar:\n  concurrency: lots\n")
    result = run("inject", "-f", str(CASES / "pod-minimal.yaml"), "--config", str(config))
    assert result.returncode == 1
    assert "sidecar.concurrency: 'lots' is invalid" in result.stderr


def test_version_prints_the_package_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == "0.1.0"


def test_uninject_reverses_inject_through_the_console_script() -> None:
    source = (CASES / "deployment-typical.yaml").read_text()
    injected = run("inject", "-f", "-", stdin=source)
    assert injected.returncode == 0, injected.stderr
    result = run("uninject", "-f", "-", stdin=injected.stdout)
    assert result.returncode == 0, result.stderr
    assert list(yaml.safe_load_all(result.stdout)) == list(yaml.safe_load_all(source))
    assert "document 1 (Deployment checkout) /spec/template: sidecar removed" in result.stderr
    untouched = run("uninject", "-f", str(CASES / "deployment-typical.yaml"))
    assert (untouched.returncode, untouched.stdout) == (0, source)


def test_uninject_refuses_a_hand_edited_sidecar_with_exit_1() -> None:
    injected = yaml.safe_load(run("inject", "-f", str(CASES / "pod-minimal.yaml")).stdout)
    injected["spec"]["volumes"] = []
    result = run("uninject", "-f", "-", stdin=yaml.safe_dump(injected))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "error: document 1 (Pod " in result.stderr
    assert "records volumes envoy-config-volume but spec.volumes has none" in result.stderr

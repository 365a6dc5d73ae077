"""`certs --renew-now` and `certs --rotate-ca` against the loopback API server fake, with the real
server serving whatever the TLS Secret holds (written the kubelet's way) and a client that
trusts exactly the caBundle the job publishes, sending reviews throughout."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509

from certs import job
from tests.integration.fake_apiserver import FakeApiServer
from tests.integration.test_cert_job import (
    MWC,
    NS,
    TLS,
    fake,
    kubeconfig,
    no_proxy_from_environment,
)
from tests.integration.test_cert_reload import (
    Hammer,
    _serial_seen_by_new_connection,
    _wait_for_serial,
)
from tests.support.server import Server, TLSFiles, running_server
from tests.support.volumes import KubeletVolume
from tests.support.x509_checks import verifies

pytestmark = pytest.mark.integration
__all__ = ["fake", "no_proxy_from_environment"]  # fixtures this module uses


class Installation:
    """The job's flags, the API server's trust (caBundle) and the Pod's Secret volume."""

    def __init__(self, fake: FakeApiServer, tmp: Path) -> None:
        self.fake = fake
        self.volume = KubeletVolume(tmp / "secret")
        self.trust = tmp / "ca-bundle.crt"  # what the API server verifies the webhook with
        self.argv = ["--kubeconfig", kubeconfig(tmp, fake.url), "--rotation-grace", "1s"]

    def run(self, capsys: pytest.CaptureFixture[str], *flags: str) -> list[str]:
        assert job.main([*self.argv, *flags]) == 0
        return capsys.readouterr().out.splitlines()

    def publish_ca_bundle(self) -> None:
        """The API server uses a new caBundle at once: an atomic file swap."""
        (bundle,) = {
            w["clientConfig"]["caBundle"] for w in self.fake.webhook_config(MWC)["webhooks"]
        }
        staging = self.trust.with_suffix(".tmp")
        staging.write_bytes(base64.b64decode(bundle))
        staging.replace(self.trust)

    def sync_volume(self) -> None:
        """The kubelet updates the mounted Secret later: after the caBundle, on purpose."""
        data = self.fake.secret_data(NS, TLS)
        self.volume.write({k: data[k] for k in ("tls.crt", "tls.key", "ca.crt")})

    def files(self) -> TLSFiles:
        root = self.volume.root
        return TLSFiles(root / "ca.crt", root / "tls.crt", root / "tls.key")

    def serial(self) -> int:
        pem = self.fake.secret_data(NS, TLS)["tls.crt"]
        return x509.load_pem_x509_certificate(pem).serial_number


@pytest.fixture
def installed(
    fake: FakeApiServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[Installation, Server]]:
    inst = Installation(fake, tmp_path)
    assert inst.run(capsys)[-1] == "created"
    inst.publish_ca_bundle()
    inst.sync_volume()
    with running_server(tmp_path, files=inst.files()) as server:
        yield inst, server


def _next_run(
    inst: Installation, server: Server, capsys: pytest.CaptureFixture[str], *flags: str
) -> list[str]:
    """One job run as a cluster sees it: caBundle first, the mounted Secret a moment later."""
    lines = inst.run(capsys, *flags)
    inst.publish_ca_bundle()
    time.sleep(0.3)  # the old leaf keeps serving against the new caBundle meanwhile
    inst.sync_volume()
    _wait_for_serial(server, inst.trust, inst.serial())
    return lines


def test_renew_now_replaces_the_leaf_on_that_run_only_with_zero_failed_requests(
    installed: tuple[Installation, Server], capsys: pytest.CaptureFixture[str], figures: list[str]
) -> None:
    inst, server = installed
    before = inst.serial()
    with Hammer(server, inst.trust) as hammer:
        time.sleep(0.3)
        assert _next_run(inst, server, capsys, "--renew-now") == [
            "caBundle unchanged",
            "renewed: requested",
        ]
        renewed = inst.serial()
        assert renewed != before
        assert _serial_seen_by_new_connection(server, inst.trust) == renewed
        assert _next_run(inst, server, capsys) == ["caBundle unchanged", "unchanged"]
        assert inst.serial() == renewed
    figures.append(
        f"certs --renew-now: {hammer.sent} reviews over the renewal, {hammer.failed} failed"
    )
    assert hammer.sent > 5
    assert hammer.failed == 0, hammer.errors[:3]


def test_rotate_ca_walks_every_stage_with_zero_failed_requests(
    installed: tuple[Installation, Server], capsys: pytest.CaptureFixture[str], figures: list[str]
) -> None:
    inst, server = installed
    old_ca = inst.fake.secret_data(NS, "envoy-injector-ca")["ca.crt"]
    seen: list[str] = []
    with Hammer(server, inst.trust) as hammer:
        seen += _next_run(inst, server, capsys, "--rotate-ca")
        runs = 1
        for _ in range(4):  # the job's usual runs, no flag: observe, switch, retire
            time.sleep(1.2)  # past --rotation-grace
            seen += _next_run(inst, server, capsys)
            runs += 1
            if any(line.startswith("CA retired") for line in seen):
                break
    stages = [line.split(":")[0] for line in seen if line.startswith(("CA rotation", "CA retired"))]
    assert stages == [
        "CA rotation started",
        "CA rotation",  # seen in every caBundle
        "CA rotation",  # the new CA signs
        "CA retired from the bundle",
    ], seen
    assert "renewed: ca_rotation" in seen
    new_ca = inst.fake.secret_data(NS, "envoy-injector-ca")["ca.crt"]
    assert new_ca != old_ca
    assert inst.trust.read_bytes() == new_ca  # only the new CA is trusted now
    leaf = inst.fake.secret_data(NS, TLS)["tls.crt"]
    assert verifies(leaf, new_ca, datetime.now(UTC))
    assert not verifies(leaf, old_ca, datetime.now(UTC))
    figures.append(
        f"certs --rotate-ca: {len(stages)} stages in {runs} runs, {hammer.sent} reviews, "
        f"{hammer.failed} failed"
    )
    assert hammer.sent > 10
    assert hammer.failed == 0, hammer.errors[:3]

"""The API-gateway preset's Envoy configs carry real traffic on loopback.

The JWT config (``manifests/gateway/envoy``) and the ext_authz variant
(``manifests/gateway/envoy-ext-authz``) each run in one Envoy per module. The test moves
only what a cluster provides: ports, the Services' DNS names (api-stable and api-canary
become stub servers, ext-authz a stub authorization service) and the mounted files. The
JWKS file is replaced by the test's own key, as the README tells operators to do with
their identity provider's keys.

Every test talks from its own loopback source address (127.0.x.y), so each one starts
with a fresh per-client rate-limit bucket, just as distinct clients would.
"""

from __future__ import annotations

import base64
import itertools
import json
import math
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.presets.backends import Recorded, Reply, StubPool, StubServer, echo_backend
from tests.presets.bootstrap import (
    LOOPBACK,
    bind_listener,
    http_connection_manager,
    http_filter,
    point_cluster,
    seconds,
    set_admin_port,
    write_bootstrap,
)
from tests.presets.paths import GATEWAY
from tests.presets.podfiles import PodFiles, materialize
from tests.support.envoy import EnvoyProcess, free_port, running_envoy
from tests.support.kustomization import build

pytestmark = pytest.mark.envoy

KID = "test-signing-key"
_source_addresses = (f"127.0.{1 + n // 250}.{2 + n % 250}" for n in itertools.count())


def fresh_address() -> str:
    """A loopback source address no other test has used."""
    return next(_source_addresses)


@dataclass(frozen=True)
class Bucket:
    """The per-client token bucket as configured."""

    max_tokens: int
    refill_per_second: float


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _jwks(key: rsa.RSAPrivateKey) -> bytes:
    numbers = key.public_key().public_numbers()
    entry = {"kty": "RSA", "alg": "RS256", "use": "sig", "kid": KID}
    entry |= {"n": _b64(numbers.n), "e": _b64(numbers.e)}
    return json.dumps({"keys": [entry]}).encode()


def _per_client_bucket(config: dict[str, Any]) -> Bucket:
    manager = http_connection_manager(config, "api")
    (vhost,) = manager["route_config"]["virtual_hosts"]
    limit = vhost["typed_per_filter_config"]["envoy.filters.http.local_ratelimit"]
    (descriptor,) = [d for d in limit["descriptors"] if d["entries"] == [{"key": "remote_address"}]]
    bucket = descriptor["token_bucket"]
    rate = bucket["tokens_per_fill"] / seconds(bucket["fill_interval"])
    return Bucket(max_tokens=bucket["max_tokens"], refill_per_second=rate)


@dataclass(frozen=True)
class Gateway:
    envoy: EnvoyProcess
    ports: dict[str, int]
    stable: StubServer
    canary: StubServer
    config: dict[str, Any]

    def client(self, address: str | None = None, *, listener: str = "api") -> httpx.Client:
        """A client connecting from ``address`` (default: a fresh loopback address)."""
        transport = httpx.HTTPTransport(local_address=address or fresh_address())
        base_url = f"http://{LOOPBACK}:{self.ports[listener]}"
        return httpx.Client(transport=transport, base_url=base_url)

    def backend_hits(self) -> int:
        return self.stable.hits() + self.canary.hits()


@dataclass(frozen=True)
class Prepared:
    """A gateway preset laid out on disk, its config edited for loopback, not yet running."""

    files: PodFiles
    config: dict[str, Any]
    ports: dict[str, int]
    stable: StubServer
    canary: StubServer


def _prepare(directory_name: str, root: Path, stubs: StubPool) -> Prepared:
    files = materialize(build(GATEWAY / directory_name), root / "pod")
    stable = stubs.add(echo_backend("api-stable"))
    canary = stubs.add(echo_backend("api-canary"))
    config = files.load_config()
    ports = {name: free_port() for name in ("admin", "api", "ready")}
    set_admin_port(config, ports["admin"])
    bind_listener(config, "api", ports["api"])
    bind_listener(config, "ready", ports["ready"])
    point_cluster(config, "api-stable", [stable.port])
    point_cluster(config, "api-canary", [canary.port])
    return Prepared(files, config, ports, stable, canary)


@contextmanager
def _run(prepared: Prepared, root: Path) -> Iterator[Gateway]:
    bootstrap = write_bootstrap(prepared.config, root / "envoy.yaml")
    admin = prepared.ports["admin"]
    with running_envoy(bootstrap, admin_port=admin, log_path=root / "envoy.log") as envoy:
        yield Gateway(envoy, prepared.ports, prepared.stable, prepared.canary, prepared.config)


# --------------------------------------------------------------------------- JWT preset


@dataclass(frozen=True)
class JwtGateway:
    gateway: Gateway
    key: rsa.RSAPrivateKey
    issuer: str
    audience: str

    def token(self, *, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": "alice",
            "scope": "orders:read",
            "iat": now,
            "exp": now + 300,
        }
        payload |= claims
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": KID})

    def auth(self, *, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token(key=key, **claims)}"}


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, stubs: StubPool) -> Iterator[JwtGateway]:
    root = tmp_path_factory.mktemp("gateway")
    prepared = _prepare("envoy", root, stubs)
    manager = http_connection_manager(prepared.config, "api")
    provider = http_filter(manager, "envoy.filters.http.jwt_authn")["providers"]["idp"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    # The operator's step: the identity provider's public keys replace the example JWKS.
    prepared.files.replace_file(Path(provider["local_jwks"]["filename"]), _jwks(key))
    with _run(prepared, root) as gateway:
        yield JwtGateway(gateway, key, provider["issuer"], provider["audiences"][0])


def _echo(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    echoed: dict[str, Any] = json.loads(response.content)
    return echoed


def test_request_without_token_is_refused_with_401(gw: JwtGateway) -> None:
    before = gw.gateway.backend_hits()
    with gw.gateway.client() as client:
        response = client.get("/api/orders")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert gw.gateway.backend_hits() == before


def test_token_with_bad_signature_is_refused_with_401(gw: JwtGateway) -> None:
    impostor = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    before = gw.gateway.backend_hits()
    with gw.gateway.client() as client:
        response = client.get("/api/orders", headers=gw.auth(key=impostor))
    assert response.status_code == 401
    assert gw.gateway.backend_hits() == before


def test_expired_token_is_refused_with_401(gw: JwtGateway) -> None:
    with gw.gateway.client() as client:
        response = client.get("/api/orders", headers=gw.auth(exp=int(time.time()) - 600))
    assert response.status_code == 401


def test_token_for_another_audience_is_refused_with_403(gw: JwtGateway) -> None:
    with gw.gateway.client() as client:
        response = client.get("/api/orders", headers=gw.auth(aud="someone-else.example.com"))
    assert response.status_code == 403


def test_valid_token_reaches_backend_with_claim_headers_and_without_the_token(
    gw: JwtGateway,
) -> None:
    with gw.gateway.client() as client:
        echoed = _echo(client.get("/api/orders", headers=gw.auth()))
    headers = echoed["headers"]
    assert headers["x-jwt-sub"] == ["alice"]
    assert headers["x-jwt-scope"] == ["orders:read"]
    assert "authorization" not in headers


def test_client_cannot_forge_claim_headers(gw: JwtGateway) -> None:
    forged = {"x-jwt-sub": "mallory", "x-jwt-scope": "admin"} | gw.auth()
    with gw.gateway.client() as client:
        echoed = _echo(client.get("/api/orders", headers=forged))
    assert echoed["headers"]["x-jwt-sub"] == ["alice"]
    assert echoed["headers"]["x-jwt-scope"] == ["orders:read"]


def test_headers_are_added_overwritten_and_removed(gw: JwtGateway) -> None:
    sent = {"x-gateway": "forged", "x-debug": "1", "x-client-address": "10.9.9.9"} | gw.auth()
    source = fresh_address()
    with gw.gateway.client(source) as client:
        response = client.get("/api/orders", headers=sent)
    headers = _echo(response)["headers"]
    assert headers["x-gateway"] == ["api-gateway"]
    assert headers["x-client-address"] == [source]
    assert "x-debug" not in headers
    assert "x-powered-by" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["server"] == "api-gateway"


def test_request_id_is_generated_forwarded_and_returned(gw: JwtGateway) -> None:
    with gw.gateway.client() as client:
        response = client.get(
            "/api/orders", headers={"x-request-id": "chosen-by-client"} | gw.auth()
        )
    (upstream_id,) = _echo(response)["headers"]["x-request-id"]
    assert upstream_id != "chosen-by-client"
    assert uuid.UUID(upstream_id).version == 4
    assert response.headers["x-request-id"] == upstream_id


@pytest.mark.parametrize(
    ("path", "headers"),
    [("/api/orders", {"x-canary": "always"}), ("/api/orders?canary=always", {})],
    ids=["by-header", "by-query-parameter"],
)
def test_canary_selector_sends_every_request_to_the_canary(
    gw: JwtGateway, path: str, headers: dict[str, str]
) -> None:
    with gw.gateway.client() as client:
        backends = {
            _echo(client.get(path, headers=headers | gw.auth()))["backend"] for _ in range(20)
        }
    assert backends == {"api-canary"}


def test_other_requests_split_roughly_90_10_between_stable_and_canary(gw: JwtGateway) -> None:
    # 400 requests from 5 clients (80 each, inside every client's bucket). Canary count
    # is binomial(400, 0.1): mean 40, sd 6; 16..64 is +-4 sd.
    assert _per_client_bucket(gw.gateway.config).max_tokens >= 80
    counts = {"api-stable": 0, "api-canary": 0}
    for _ in range(5):
        with gw.gateway.client() as client:
            for _ in range(80):
                counts[_echo(client.get("/api/orders", headers=gw.auth()))["backend"]] += 1
    assert counts["api-stable"] + counts["api-canary"] == 400
    assert 16 <= counts["api-canary"] <= 64


def test_request_beyond_the_client_bucket_gets_429_while_another_client_gets_200(
    gw: JwtGateway,
) -> None:
    bucket = _per_client_bucket(gw.gateway.config)
    assert bucket.max_tokens <= 1000, "the test sends max_tokens requests; keep it small"
    auth = gw.auth()
    before = gw.gateway.backend_hits()
    with gw.gateway.client() as first:
        started = time.monotonic()
        for _ in range(bucket.max_tokens):
            assert first.get("/api/orders", headers=auth).status_code == 200
        # Tokens trickle back continuously: a request past the bucket may only pass when
        # the elapsed time has earned a token for it.
        passed_beyond = 0
        while (limited := first.get("/api/orders", headers=auth)).status_code == 200:
            passed_beyond += 1
            earned = math.floor((time.monotonic() - started) * bucket.refill_per_second)
            assert passed_beyond <= earned, "more requests passed than the bucket allows"
        assert limited.status_code == 429
        assert limited.headers["retry-after"] == "60"
    with gw.gateway.client() as second:
        assert second.get("/api/orders", headers=auth).status_code == 200
    assert gw.gateway.backend_hits() == before + bucket.max_tokens + passed_beyond + 1


def test_ready_listener_exposes_admin_ready_and_nothing_else(gw: JwtGateway) -> None:
    with gw.gateway.client(listener="ready") as client:
        ready = client.get("/ready")
        assert ready.status_code == 200
        assert ready.text.strip() == "LIVE"
        for path in ("/stats", "/config_dump", "/quitquitquit"):
            assert client.post(path).status_code == 404


# -------------------------------------------------------------------- ext_authz variant

AUTHZ_PREFIX = "/check"


def _authorize(_stub: StubServer, request: Recorded) -> Reply:
    """The stub authorization service: one good credential, one that answers too late."""
    credential = request.header("authorization")
    if credential == "Bearer letmein":
        return Reply(200, headers={"x-auth-user": "alice"})
    if credential == "Bearer too-slow":
        return Reply(200, headers={"x-auth-user": "late"}, delay=1.0)
    return Reply(403, b"denied", {"www-authenticate": 'Bearer realm="api"'})


@dataclass(frozen=True)
class AuthzGateway:
    gateway: Gateway
    authz: StubServer


@pytest.fixture(scope="module")
def authz_gw(tmp_path_factory: pytest.TempPathFactory, stubs: StubPool) -> Iterator[AuthzGateway]:
    root = tmp_path_factory.mktemp("gateway-ext-authz")
    prepared = _prepare("envoy-ext-authz", root, stubs)
    authz = stubs.add(StubServer("ext-authz", _authorize))
    point_cluster(prepared.config, "ext-authz", [authz.port])
    with _run(prepared, root) as gateway:
        yield AuthzGateway(gateway, authz)


def test_ext_authz_denial_is_answered_to_the_client_without_reaching_a_backend(
    authz_gw: AuthzGateway,
) -> None:
    before = authz_gw.gateway.backend_hits()
    with authz_gw.gateway.client() as client:
        response = client.get("/api/orders", headers={"authorization": "Bearer wrong"})
    assert response.status_code == 403
    assert response.headers["www-authenticate"] == 'Bearer realm="api"'
    assert authz_gw.gateway.backend_hits() == before
    assert authz_gw.authz.recorded()[-1].path == AUTHZ_PREFIX + "/api/orders"


def test_ext_authz_allowed_request_reaches_backend_with_the_identity_header(
    authz_gw: AuthzGateway,
) -> None:
    with authz_gw.gateway.client() as client:
        response = client.get(
            "/api/orders", headers={"authorization": "Bearer letmein", "cookie": "session=1"}
        )
    assert _echo(response)["headers"]["x-auth-user"] == ["alice"]
    check = authz_gw.authz.recorded()[-1]
    assert check.header("authorization") == "Bearer letmein"
    assert check.header("cookie") is None, "only the allowed headers go to the authz service"


def test_ext_authz_answer_too_slow_fails_closed_with_503(authz_gw: AuthzGateway) -> None:
    before = authz_gw.gateway.backend_hits()
    with authz_gw.gateway.client() as client:
        response = client.get("/api/orders", headers={"authorization": "Bearer too-slow"})
    assert response.status_code == 503
    assert authz_gw.gateway.backend_hits() == before


def test_ext_authz_variant_keeps_the_canary_routing(authz_gw: AuthzGateway) -> None:
    with authz_gw.gateway.client() as client:
        response = client.get(
            "/api/orders", headers={"authorization": "Bearer letmein", "x-canary": "always"}
        )
    assert _echo(response)["backend"] == "api-canary"

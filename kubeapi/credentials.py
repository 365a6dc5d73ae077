"""Where the API server is and how to prove who we are: in-cluster, or a kubeconfig.

In a Pod the ServiceAccount's files are read by hand, so a process that only needs this (the
webhook's LimitRange view) never imports the heavy `kubernetes` package. A kubeconfig is loaded
by the `kubernetes` package's own loader, which knows every auth form users have (exec plugins,
token files, embedded data), and imported only then.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kubeapi.errors import ApiError

SERVICE_ACCOUNT_DIR: Final = Path("/var/run/secrets/kubernetes.io/serviceaccount")


@dataclass(frozen=True)
class Credentials:
    server: str  # https://host:port, no trailing slash
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    token_file: str | None = None  # re-read on use: bound ServiceAccount tokens rotate
    insecure: bool = False

    def bearer(self) -> str | None:
        if self.token_file:
            return Path(self.token_file).read_text().strip()
        return self.token


def in_cluster(environ: os._Environ[str] | dict[str, str] | None = None) -> Credentials | None:
    """The Pod's ServiceAccount, or None when not running in a Pod."""
    env = os.environ if environ is None else environ
    host, port = env.get("KUBERNETES_SERVICE_HOST"), env.get("KUBERNETES_SERVICE_PORT")
    token = SERVICE_ACCOUNT_DIR / "token"
    if not host or not port or not token.is_file():
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return Credentials(
        server=f"https://{host}:{port}",
        ca_file=str(SERVICE_ACCOUNT_DIR / "ca.crt"),
        token_file=str(token),
    )


def from_kubeconfig(path: str | None = None, *, context: str | None = None) -> Credentials:
    """The current (or named) context of a kubeconfig ($KUBECONFIG or ~/.kube/config)."""
    from kubernetes import client, config  # heavy: only a CLI needs it

    configuration: Any = client.Configuration()
    load: Callable[..., None] = config.load_kube_config  # untyped upstream
    try:
        load(config_file=path, context=context, client_configuration=configuration)
    except (config.ConfigException, OSError, TypeError, ValueError) as error:
        where = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise ApiError(0, "NoCredentials", f"cannot use the kubeconfig {where}: {error}") from None
    token: str | None = None
    keys = configuration.api_key or {}
    # Recent kubernetes clients keep a kubeconfig token under "BearerToken", older "authorization".
    authorization = keys.get("BearerToken") or keys.get("authorization") or ""
    if authorization.lower().startswith("bearer "):
        token = authorization[len("bearer ") :]
    return Credentials(
        server=str(configuration.host).rstrip("/"),
        ca_file=configuration.ssl_ca_cert,
        cert_file=configuration.cert_file,
        key_file=configuration.key_file,
        token=token,
        insecure=not configuration.verify_ssl,
    )


def load(kubeconfig: str | None = None) -> Credentials:
    """In-cluster credentials inside a Pod when no kubeconfig is named, else the kubeconfig."""
    if kubeconfig is None:
        found = in_cluster()
        if found is not None:
            return found
    return from_kubeconfig(kubeconfig)

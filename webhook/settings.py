"""The server's settings (flags and ENVOY_INJECTOR_* variables) and the operator's config file.

Both are read once, at start-up (the config file again only when its content changes); nothing
here is a module-level singleton.
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

import yaml

from webhook import bootstrap, errors, overrides, quantity
from webhook.mutate import Context
from webhook.spec import ALL_OVERRIDES, Policy, Resources, SidecarSpec

ENV_PREFIX: Final = "ENVOY_INJECTOR_"
# The kubelet gives every container variables for each Service of its namespace
# (ENVOY_INJECTOR_PORT=tcp://10.96.0.7:443 for Service "envoy-injector"), all ending in
# _SERVICE_HOST, _SERVICE_PORT[_<name>], _PORT, _PORT_<n>_<PROTO>[_PROTO|_PORT|_ADDR]. No
# variable we read ends like that, so no Service, ours or a user's, can set one of our
# settings; fields whose plain name would (port) get a name that cannot.
ENV_NAMES: Final = {"port": ENV_PREFIX + "PORT_NUMBER"}
# The API server sends at most a few MiB (etcd's object limit is 1.5 MiB); 7 MiB leaves room
# for the review envelope and oldObject without letting a client make us buffer without bound.
MAX_BODY_BYTES: Final = 7 * 1024 * 1024


@dataclass(frozen=True)
class Settings:
    host: str = "0.0.0.0"
    port: int = 8443
    cert: Path | None = None
    key: Path | None = None
    dev: bool = False
    dev_dir: Path = Path(".dev-certs")
    config: Path | None = None
    # Where to watch LimitRanges and ResourceQuotas from: in a Pod its ServiceAccount, else
    # this kubeconfig; with neither (development) the sidecar is not fitted to them.
    kubeconfig: Path | None = None
    namespace: str = "envoy-injector"  # our own: never mutated
    log_format: str = "json"
    log_level: str = "info"
    max_body_bytes: int = MAX_BODY_BYTES
    max_in_flight: int = 64  # beyond this, answer 503 at once instead of queueing
    body_timeout: float = 10.0  # seconds to receive a whole body; the API server allows 30 at most
    reload_interval: float = 10.0  # seconds between checks of the cert and config files
    # On SIGTERM, keep serving this long, each answer closing its connection, before stopping:
    # the API server then moves to the other replica without losing a review in flight.
    drain_seconds: float = 3.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str], **overrides: Any) -> Self:
        """Defaults < ENVOY_INJECTOR_* variables < explicit overrides (the CLI flags)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            variable = env_name(f.name)
            raw = environ.get(variable)
            if raw is None:
                continue
            values[f.name] = _coerce(variable, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def env_name(field_name: str) -> str:
    """The environment variable that sets a Settings field."""
    return ENV_NAMES.get(field_name, ENV_PREFIX + field_name.upper())


def _coerce(variable: str, kind: Any, raw: str) -> Any:
    """An environment variable's text as the type of the field it sets."""
    truth = {"true": True, "1": True, "false": False, "0": False}
    try:
        if kind is bool:
            return truth[raw.lower()]
        if kind in (int, float):
            return kind(raw)
    except (KeyError, ValueError):
        expected = getattr(kind, "__name__", str(kind))
        raise errors.ConfigError(f"{variable}={raw!r} is not a valid {expected}") from None
    if Path in getattr(kind, "__args__", ()):
        return Path(raw)
    return raw


_SIDECAR_KEYS: Final = {
    "image": ("image", "image"),
    "proxyPort": ("proxy_port", "proxy-port"),
    "appPort": ("app_port", "app-port"),
    "adminPort": ("admin_port", "admin-port"),
    "configMap": ("config_map", "config-map"),
    "logLevel": ("log_level", "log-level"),
    "concurrency": ("concurrency", "concurrency"),
    "nativeSidecar": ("native", "native-sidecar"),
}


def _section(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key) or {}
    if not isinstance(value, Mapping):
        raise errors.ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
    return value


def _parse_with(name: str, annotation: str, value: Any) -> Any:
    """Config values are checked by the same parsers as the annotations."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    try:
        return overrides.TABLE[annotation].parse(text)
    except ValueError as exc:
        raise errors.ConfigError(f"{name}: {value!r} is invalid; {exc}") from None


def _sidecar(doc: Mapping[str, Any]) -> SidecarSpec:
    section = _section(doc, "sidecar")
    unknown = sorted(set(section) - set(_SIDECAR_KEYS) - {"resources"})
    if unknown:
        raise errors.ConfigError(
            f"sidecar: unknown keys {unknown}; known: {sorted([*_SIDECAR_KEYS, 'resources'])}"
        )
    values = {
        attr: _parse_with(f"sidecar.{key}", annotation, section[key])
        for key, (attr, annotation) in _SIDECAR_KEYS.items()
        if key in section
    }
    resources = _section(section, "resources")
    res = Resources()
    for kind in ("requests", "limits"):
        amounts = _section(resources, kind)
        for resource in ("cpu", "memory"):
            if resource in amounts:
                singular = kind.removesuffix("s")
                value = _parse_with(
                    f"sidecar.resources.{kind}.{resource}",
                    f"{resource}-{singular}",
                    amounts[resource],
                )
                res = dataclasses.replace(res, **{f"{resource}_{singular}": value})
    return SidecarSpec(resources=res, **values)


def _ceiling(section: Mapping[str, Any], key: str) -> str | None:
    value = section[key]
    if value is None:
        return None  # no ceiling
    try:
        quantity.parse(str(value))
    except ValueError as exc:
        raise errors.ConfigError(f"policy.{key}: {exc}") from None
    return str(value)


def _policy(doc: Mapping[str, Any]) -> Policy:
    section = _section(doc, "policy")
    known = {"allowedOverrides", "allowedImagePrefixes", "maxCpu", "maxMemory"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise errors.ConfigError(f"policy: unknown keys {unknown}; known: {sorted(known)}")
    policy = Policy()
    if "allowedOverrides" in section:
        overrides = frozenset(str(o) for o in section["allowedOverrides"] or [])
        if overrides - ALL_OVERRIDES:
            raise errors.ConfigError(
                f"policy.allowedOverrides: unknown {sorted(overrides - ALL_OVERRIDES)}; "
                f"known: {sorted(ALL_OVERRIDES)}"
            )
        policy = dataclasses.replace(policy, allowed_overrides=overrides)
    if "allowedImagePrefixes" in section:
        prefixes = tuple(str(p) for p in section["allowedImagePrefixes"] or [])
        policy = dataclasses.replace(policy, allowed_image_prefixes=prefixes)
    ceilings = {key: _ceiling(section, key) for key in ("maxCpu", "maxMemory") if key in section}
    if ceilings:
        policy = dataclasses.replace(
            policy,
            max_cpu=ceilings.get("maxCpu", policy.max_cpu),
            max_memory=ceilings.get("maxMemory", policy.max_memory),
        )
    return policy


def context_from_config(text: str | None, *, own_namespace: str) -> Context:
    """The review Context from the config file's text (None: the built-in defaults)."""
    try:
        doc = yaml.safe_load(text) if text else {}
    except yaml.YAMLError as exc:
        raise errors.ConfigError(f"the config file is not valid YAML: {exc}") from None
    doc = doc or {}
    if not isinstance(doc, Mapping):
        raise errors.ConfigError("the config file must hold a mapping at the top")
    unknown = sorted(set(doc) - {"sidecar", "policy", "excludedNamespaces", "bootstrap"})
    if unknown:
        raise errors.ConfigError(
            f"unknown top-level keys {unknown}; "
            "known: bootstrap, excludedNamespaces, policy, sidecar"
        )
    bootstrap.template(doc.get("bootstrap"))  # the controller writes it; refuse a broken one
    excluded = {str(ns) for ns in doc.get("excludedNamespaces") or []}
    if own_namespace:
        excluded.add(own_namespace)
    return Context(
        defaults=_sidecar(doc), policy=_policy(doc), excluded_namespaces=frozenset(excluded)
    )


def load_context(settings: Settings) -> Context:
    text = settings.config.read_text(encoding="utf-8") if settings.config else None
    return context_from_config(text, own_namespace=settings.namespace)

"""The sidecar as CEL: the second renderer of the same SidecarSpec and Policy (the first is
render.py, which the webhook runs). policies.py puts these pieces into admission policies.

Nothing here restates the sidecar's shape. The container, volume and status annotation are
rendered by render.py itself, from a SidecarSpec whose per-Pod fields hold placeholders; `literal`
then writes that JSON as a CEL object and puts a CEL variable where each placeholder was. So a
field added to render.py reaches the policy without an edit here.

What is written here is what varies per Pod, one named piece each:
- one `Field` per override annotation (OVERRIDES): how CEL checks its value, the value it gives,
  and the accepted form, taken from the webhook's own parser (overrides.TABLE);
- `VALUES`: the spec of one Pod, as CEL variables (defaults, Job-owned Pods, port overrides that
  need a config map, hold-application);
- `PROBLEMS`: every refusal of the webhook, in its order and with its words;
- `SKIPS`: the webhook's skip reasons that selectors cannot express.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from webhook import overrides, quantity, render
from webhook.spec import (
    ANNOTATION_PREFIX,
    CONTAINER_NAME,
    INJECT_LABEL,
    STATUS_ANNOTATION,
    VOLUME_NAME,
    Policy,
    Resources,
    SidecarSpec,
)


def quote(text: str) -> str:
    """A CEL string literal (JSON's escapes are CEL's)."""
    return json.dumps(text)


def ann(name: str) -> str:
    """The CEL for the value of the annotation envoy-inject.io/<name> (when present)."""
    return f"variables.annotations[{quote(ANNOTATION_PREFIX + name)}]"


def given(name: str) -> str:
    return f"{quote(ANNOTATION_PREFIX + name)} in variables.annotations"


# --- the override annotations: one Field each --------------------------------------------------


@dataclass(frozen=True)
class Field:
    """How one kind of annotation value is checked and read in CEL (v is a CEL string)."""

    valid: Callable[[str], str]
    value: Callable[[str], str] = lambda v: v


def _anchored(pattern: re.Pattern[str], max_size: int) -> Callable[[str], str]:
    # The webhook's own regular expression; CEL's matches() is a search, fullmatch needs anchors.
    return lambda v: (
        f"size({v}) <= {max_size} && {v}.matches({quote('^(?:' + pattern.pattern + ')$')})"
    )


def _number(low: int, high: int) -> Callable[[str], str]:
    # Digits only (int() in CEL would take a sign), and few enough not to overflow int().
    return lambda v: (
        f"{v}.matches('^[0-9]+$') && size({v}) <= 18 && int({v}) >= {low} && int({v}) <= {high}"
    )


def _one_of(values: Sequence[str]) -> Callable[[str], str]:
    return lambda v: f"{v} in {json.dumps(list(values))}"


_QUANTITY: Final = re.compile(
    r"([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?[0-9]+)?"
)
PORT: Final = Field(_number(1, 65535), lambda v: f"int({v})")
BOOL: Final = Field(_one_of(("true", "false")), lambda v: f"{v} == 'true'")
QUANTITY: Final = Field(
    lambda v: f"{_anchored(_QUANTITY, 64)(v)} && isQuantity({v})"  # the API server's too
)
# Which Field checks each annotation of overrides.TABLE (a test keeps the two key sets equal).
OVERRIDES: Final[Mapping[str, Field]] = {
    "inject": BOOL,
    "image": Field(_anchored(overrides._IMAGE, 512)),
    "proxy-port": PORT,
    "app-port": PORT,
    "admin-port": PORT,
    "config-map": Field(_anchored(overrides._DNS_SUBDOMAIN, 253)),
    "service-cluster": Field(_anchored(overrides._CLUSTER, 253)),
    "cpu-request": QUANTITY,
    "cpu-limit": QUANTITY,
    "memory-request": QUANTITY,
    "memory-limit": QUANTITY,
    "log-level": Field(_one_of(overrides.LOG_LEVELS)),
    "concurrency": Field(_number(1, 64), lambda v: f"int({v})"),
    "native-sidecar": BOOL,
    "hold-application": BOOL,
}


def accepted_form(name: str) -> str:
    """The webhook parser's own words for what an annotation accepts ("expected ...")."""
    try:
        overrides.TABLE[name].parse("\0")  # no parser accepts NUL: it says what it wants
    except ValueError as exc:
        return str(exc)
    raise AssertionError(f"the parser of {name} accepted NUL")  # pragma: no cover


def _repr(v: str) -> str:
    # Python's repr() of a string, as the webhook prints values: single quotes unless the value
    # holds one (values with backslashes or control characters print differently; see README).
    return f"""({v}.contains("'") && !{v}.contains('"') ? '"' + {v} + '"' : "'" + {v} + "'")"""


def invalid(name: str) -> str:
    """CEL list: the webhook's problem for a bad envoy-inject.io/<name> value, or []."""
    v = ann(name)
    message = f"{quote(ANNOTATION_PREFIX + name + ': ')} + {_repr(v)} + " + quote(
        " is invalid; " + accepted_form(name)
    )
    return f"({given(name)} && !({OVERRIDES[name].valid(v)}) ? [{message}] : [])"


# --- the spec of one Pod -----------------------------------------------------------------------

# render.py renders the sidecar from a SidecarSpec holding these placeholders; `literal` turns
# each back into the CEL variable that holds the Pod's value.
_INT_HOLES: Final = {990001: "proxyPort", 990002: "appPort", 990003: "adminPort"}
_INT_HOLES_ALSO: Final = {990004: "concurrency", 990005: "stopSleep"}
_STR_HOLES: Final = ("image", "configMap", "cluster", "logLevel", *("cpuRequest", "cpuLimit"))
_STR_HOLES_ALSO: Final = ("memoryRequest", "memoryLimit")
INTS: Final = {**_INT_HOLES, **_INT_HOLES_ALSO}
STRS: Final = {f"__cel_{name}__": name for name in (*_STR_HOLES, *_STR_HOLES_ALSO)}
_HOLE: Final = re.compile("|".join([*map(re.escape, STRS), *map(str, INTS)]))


def placeholder_spec(*, native: bool) -> SidecarSpec:
    by_name = {name: key for key, name in STRS.items()}
    ints = {name: number for number, name in INTS.items()}
    return SidecarSpec(
        image=by_name["image"],
        proxy_port=ints["proxyPort"],
        app_port=ints["appPort"],
        admin_port=ints["adminPort"],
        config_map=by_name["configMap"],
        resources=Resources(
            cpu_request=by_name["cpuRequest"],
            cpu_limit=by_name["cpuLimit"],
            memory_request=by_name["memoryRequest"],
            memory_limit=by_name["memoryLimit"],
        ),
        log_level=by_name["logLevel"],
        concurrency=ints["concurrency"],
        native=native,
    )


def _string(text: str) -> str:
    """A CEL string expression: literal parts joined with the variables of placeholders."""
    parts: list[str] = []
    position = 0
    for match in _HOLE.finditer(text):
        if match.start() > position:
            parts.append(quote(text[position : match.start()]))
        hole = match.group()
        parts.append(
            # string(): a variable is dyn to the type checker, and a list or map literal that
            # mixes dyn with string literals does not type-check.
            f"string(variables.{STRS[hole]})"
            if hole in STRS
            else f"string(variables.{INTS[int(hole)]})"
        )
        position = match.end()
    if position < len(text) or not parts:
        parts.append(quote(text[position:]))
    return " + ".join(parts)


def literal(value: Any) -> str:
    """``value`` (render.py's JSON) as a CEL value: maps and lists, placeholders as variables.

    Maps, not typed objects (Object.spec.containers{...}): the API server checks a typed object's
    field names on every evaluation and converts it through JSON, which costs each Pod more than
    building the map (see BENCHMARKS.md, "Injection engines"). Each map value is dyn(): a map
    literal must have values of one type."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"int(variables.{INTS[value]})" if value in INTS else str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, list):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    fields = []
    for key, item in value.items():
        text = f"dyn({literal(item)})"
        condition = OPTIONAL_FIELDS.get(key)
        if condition:
            fields.append(f"?{quote(key)}: {condition} ? optional.of({text}) : optional.none()")
        else:
            fields.append(f"{quote(key)}: {text}")
    return "{" + ", ".join(fields) + "}"


# Container fields render.py leaves out for some Pods, and when CEL includes them.
OPTIONAL_FIELDS: Final = {"lifecycle": "variables.stopSleep > 0"}


def _spec(native: bool, defaults: SidecarSpec | None) -> SidecarSpec:
    if defaults is None:
        return placeholder_spec(native=native)
    return dataclasses.replace(defaults, native=native)


def container(*, native: bool, defaults: SidecarSpec | None = None) -> str:
    """The sidecar container as CEL. With ``defaults``: for a Pod without override annotations,
    whose only per-Pod values are the service cluster and the preStop sleep. Everything else is
    then a constant, which the API server computes once, when it compiles the policy."""
    rendered = render.sidecar_container(_spec(native, defaults), STRS_BY_NAME["cluster"])
    rendered["lifecycle"]["preStop"]["sleep"]["seconds"] = 990005  # the Pod's stopSleep
    return literal(rendered)


STRS_BY_NAME: Final = {name: key for key, name in STRS.items()}


def volume(defaults: SidecarSpec | None = None) -> str:
    return literal(render.config_volume(_spec(False, defaults)))


def status(defaults: SidecarSpec | None = None) -> str:
    native = _string(render.status(_spec(True, defaults)))
    regular = _string(render.status(_spec(False, defaults)))
    return f"variables.native ? {native} : {regular}"


def _value(name: str, default: str) -> str:
    return f"{given(name)} ? {OVERRIDES[name].value(ann(name))} : {default}"


def _port(name: str, default: int) -> str:
    # A port override takes effect only with config-map naming a config that listens there.
    return f"{given(name)} && {given('config-map')} ? int({ann(name)}) : {default}"


def values(defaults: SidecarSpec) -> list[tuple[str, str]]:
    """The CEL variables that hold one Pod's spec, from the operator's defaults."""
    res = defaults.resources
    pod_meta = "object.metadata"
    owners = f"{pod_meta}.?ownerReferences.orValue([]).filter(o, o.?controller.orValue(false))"
    return [
        ("image", _value("image", quote(defaults.image))),
        ("proxyPort", _port("proxy-port", defaults.proxy_port)),
        ("appPort", _port("app-port", defaults.app_port)),
        ("adminPort", _port("admin-port", defaults.admin_port)),
        ("configMap", _value("config-map", quote(defaults.config_map))),
        ("cpuRequest", _value("cpu-request", quote(res.cpu_request))),
        ("cpuLimit", _value("cpu-limit", quote(res.cpu_limit))),
        ("memoryRequest", _value("memory-request", quote(res.memory_request))),
        ("memoryLimit", _value("memory-limit", quote(res.memory_limit))),
        ("logLevel", _value("log-level", quote(defaults.log_level))),
        ("concurrency", _value("concurrency", str(defaults.concurrency))),
        ("labels", f"{pod_meta}.?labels.orValue({{}})"),
        ("owners", owners),  # computed once, read by owner and job
        ("owner", "variables.owners.filter(o, o.?name.orValue('') != '')"),
        ("cluster", _cluster(defaults)),
        # A Job's Pod gets the native sidecar (a regular one would keep the Pod running).
        ("job", "variables.owners.exists(o, o.?kind.orValue('') == 'Job')"),
        (
            "native",
            f"({given('hold-application')} && {ann('hold-application')} == 'true') || "
            f"({given('native-sidecar')} ? {ann('native-sidecar')} == 'true' : "
            f"variables.job{' || true' if defaults.native else ''})",
        ),
        ("grace", "object.spec.?terminationGracePeriodSeconds.orValue(-1)"),
        (
            # render.stop_sleep: 5 s, at most half the grace period; the API server's default
            # grace period when the Pod states none (or a negative one).
            "stopSleep",
            f"variables.grace < 0 ? {render.stop_sleep(render.DEFAULT_GRACE_SECONDS)} : "
            f"(variables.grace / 2 < {render.STOP_SLEEP_SECONDS} ? variables.grace / 2 : "
            f"{render.STOP_SLEEP_SECONDS})",
        ),
    ]


def _cluster(defaults: SidecarSpec) -> str:
    """inject.service_cluster: app label, controller's name (a ReplicaSet's without its
    pod-template-hash), the Pod's name, its generateName without trailing dashes."""
    if defaults.cluster:
        fallback = quote(defaults.cluster)
    else:
        labels, owner = "variables.labels", "variables.owner[0]"
        hash_suffix = f"'-' + {labels}['pod-template-hash']"
        owner_name = (
            f"{owner}.kind == 'ReplicaSet' && 'pod-template-hash' in {labels} && "
            f"{owner}.name.endsWith({hash_suffix}) && size({owner}.name) > "
            f"size({hash_suffix}) ? {owner}.name.substring(0, size({owner}.name) - "
            f"size({hash_suffix})) : {owner}.name"
        )
        generate = "object.metadata.?generateName.orValue('').find('^.*[^-]')"
        fallback = (
            f"{labels}.?app.orValue('') != '' ? {labels}['app'] : "
            f"{labels}[?'app.kubernetes.io/name'].orValue('') != '' ? "
            f"{labels}['app.kubernetes.io/name'] : "
            f"size(variables.owner) > 0 ? ({owner_name}) : "
            f"object.metadata.?name.orValue('') != '' ? object.metadata.name : "
            f"{generate} != '' ? {generate} : {quote(CONTAINER_NAME)}"
        )
    return f"{given('service-cluster')} ? {ann('service-cluster')} : {fallback}"


# --- what the webhook refuses, in its order ----------------------------------------------------


def problems(policy: Policy, defaults: SidecarSpec | None = None) -> list[tuple[str, str]]:
    """CEL variables, each a list of the webhook's problems of one kind (AnnotationError first,
    then PolicyViolation, NameClash, PortClash: the webhook raises the first that has any)."""
    names = sorted(overrides.TABLE)
    defaults = defaults or SidecarSpec()
    # Most Pods carry no envoy-inject.io/* annotation: skip building their empty lists. Only
    # defaults that conflict among themselves refuse every Pod (as the webhook does).
    conflicts = " + ".join(_conflicts(defaults))
    if not overrides.check_combinations({}, defaults):
        conflicts = _when_overridden(conflicts)
    return [
        ("invalid", _when_overridden(" + ".join(invalid(name) for name in names))),
        ("conflicts", conflicts),
        ("forbidden", _when_overridden(" + ".join(_forbidden(policy)))),
        ("allContainers", ALL_CONTAINERS),
        ("nameClash", _name_clash()),
        ("portClash", _port_clash()),
    ]


# Whether the Pod has any envoy-inject.io/* annotation (a variable of the policies).
OVERRIDDEN: Final = f"variables.annotations.exists(k, k.startsWith({quote(ANNOTATION_PREFIX)}))"


def _when_overridden(problems: str) -> str:
    return f"!variables.overridden ? [] : ({problems})"


def _compare(a: str, b: str) -> str:
    return f"quantity({a}).compareTo(quantity({b})) > 0"


def _conflicts(defaults: SidecarSpec) -> list[str]:
    hold = (
        f"({given('hold-application')} && {ann('hold-application')} == 'true' && "
        f"{given('native-sidecar')} && {ann('native-sidecar')} == 'false' ? ["
        + quote(
            f'{ANNOTATION_PREFIX}hold-application: "true" needs the native sidecar, but '
            f'{ANNOTATION_PREFIX}native-sidecar is "false"; remove one of them'
        )
        + "] : [])"
    )
    p, a, d = "variables.proxyPort", "variables.appPort", "variables.adminPort"
    ports = (
        f"({p} == {a} || {p} == {d} || {a} == {d} ? ["
        + quote("the proxy, app and admin ports must differ; got proxy-port=")
        + f" + string({p}) + ', app-port=' + string({a}) + ', admin-port=' + string({d})] : [])"
    )
    found = [hold, ports]
    for kind in ("cpu", "memory"):
        request, limit = f"variables.{kind}Request", f"variables.{kind}Limit"
        # Parsing quantities costs every Pod: compare only when an annotation set one of the
        # two, unless the defaults themselves conflict (then every Pod is refused, as by the
        # webhook).
        default_request, default_limit = (
            getattr(defaults.resources, f"{kind}_{which}") for which in ("request", "limit")
        )
        set_here = (
            "true"
            if quantity.parse(default_request) > quantity.parse(default_limit)
            else f"({given(kind + '-request')} || {given(kind + '-limit')})"
        )
        found.append(
            f"({set_here} && {_compare(request, limit)} ? ["
            + quote(f"{ANNOTATION_PREFIX}{kind}-request ")
            + f" + {_repr(request)} + "
            + quote(f" is above the {kind} limit ")
            + f" + {_repr(limit)} + "
            + quote("; a request must not exceed its limit")
            + "] : [])"
        )
    return found


def _forbidden(policy: Policy) -> list[str]:
    allowed = ", ".join(sorted(policy.allowed_overrides)) or "none"
    found = []
    for name in sorted(overrides.TABLE):
        if name in policy.allowed_overrides:
            continue
        effective = given(name)
        if name in overrides.PORT_KEYS:  # dropped with a warning before the policy looks
            effective += f" && {given('config-map')}"
        message = (
            f"{ANNOTATION_PREFIX}{name}: overriding {name} is not allowed by the injector's "
            f"policy (allowed: {allowed})"
        )
        found.append(f"({effective} ? [{quote(message)}] : [])")
    prefixes = policy.allowed_image_prefixes
    image_ok = " || ".join(f"variables.image.startsWith({quote(p)})" for p in prefixes) or "false"
    found.append(
        f"({given('image')} && !({image_ok}) ? ["
        + quote(f"{ANNOTATION_PREFIX}image: ")
        + f" + {_repr('variables.image')} + "
        + quote(" is not from an allowed registry; allowed prefixes: " + ", ".join(prefixes))
        + "] : [])"
    )
    for kind, ceiling in (("cpu", policy.max_cpu), ("memory", policy.max_memory)):
        if not ceiling:
            continue
        for which in ("request", "limit"):
            name, var = f"{kind}-{which}", f"variables.{kind}{which.title()}"
            found.append(
                f"({given(name)} && {_compare(var, quote(ceiling))} ? ["
                + quote(f"{ANNOTATION_PREFIX}{name}: ")
                + f" + {_repr(var)} + "
                + quote(f" is above the policy's ceiling {ceiling!r} for {kind}")
                + "] : [])"
            )
    return found or ["[]"]


# Every container of the Pod, a variable of the policies built once per Pod (see problems()).
ALL_CONTAINERS: Final = "object.spec.containers + object.spec.?initContainers.orValue([])"
_ALL: Final = "variables.allContainers"


def _name_clash() -> str:
    container_taken = f"{_ALL}.exists(c, c.name == {quote(CONTAINER_NAME)})"
    volume_taken = f"object.spec.?volumes.orValue([]).exists(v, v.name == {quote(VOLUME_NAME)})"
    tail = (
        f" but no {STATUS_ANNOTATION} annotation; rename it, or opt out with the label "
        f"{INJECT_LABEL}=disabled"
    )
    c, v = f"a container named {CONTAINER_NAME!r}", f"a volume named {VOLUME_NAME!r}"
    return (
        f"!{container_taken} && !{volume_taken} ? [] : "  # the common case: scan each list once
        f"{container_taken} && {volume_taken} ? "
        f"[{quote('the Pod already has ' + c + ' and ' + v + tail)}] : "
        f"{container_taken} ? [{quote('the Pod already has ' + c + tail)}] : "
        f"{volume_taken} ? [{quote('the Pod already has ' + v + tail)}] : []"
    )


def _port_clash() -> str:
    p, d = "variables.proxyPort", "variables.adminPort"
    where = (
        f"(p.containerPort == {p} ? '{ANNOTATION_PREFIX}proxy-port' : "
        f"'{ANNOTATION_PREFIX}admin-port')"
    )
    one = (
        "c.?ports.orValue([]).filter(p, p.?protocol.orValue('TCP') == 'TCP' && "
        f'(p.containerPort == {p} || p.containerPort == {d})).map(p, "container \'" + c.name + '
        f"\"' declares port \" + string(p.containerPort) + ', where the Envoy sidecar listens (' "
        f"+ {where} + ')').join('; ')"
    )
    clash = (
        "c.?ports.orValue([]).exists(p, p.?protocol.orValue('TCP') == 'TCP' && "
        f"(p.containerPort == {p} || p.containerPort == {d}))"
    )
    # The messages are built only for a Pod that has a clash (few do).
    return f"!{_ALL}.exists(c, {clash}) ? [] : {_ALL}.map(c, {one}).filter(m, m != '')"


PORT_CLASH_ADVICE: Final = (
    f"; move the sidecar with {ANNOTATION_PREFIX}proxy-port or {ANNOTATION_PREFIX}admin-port "
    f"(with {ANNOTATION_PREFIX}config-map naming an Envoy config that listens there), or opt "
    f"out with the label {INJECT_LABEL}=disabled"
)


# --- what the webhook skips that selectors cannot say ------------------------------------------

SKIPS: Final = {
    # inject.SkipReason value -> CEL that is true when the Pod is NOT skipped for it.
    "annotation_disabled": f"object.metadata.?annotations[?{quote(ANNOTATION_PREFIX + 'inject')}]"
    ".orValue('') != 'false'",
    "already_injected": f"!({quote(STATUS_ANNOTATION)} in "
    "object.metadata.?annotations.orValue({}))",
    "host_network": "!object.spec.?hostNetwork.orValue(false)",
    "windows_pod": "object.spec.?os.?name.orValue('') != 'windows'",
}


# --- warnings ---------------------------------------------------------------------------------


def unknown_warning() -> tuple[str, str]:
    """(CEL list of unknown envoy-inject.io/* keys, CEL warning text for them)."""
    known = ", ".join(sorted(overrides.TABLE))
    unknown = (
        f"variables.annotations.filter(k, k.startsWith({quote(ANNOTATION_PREFIX)}) && "
        f"k != {quote(STATUS_ANNOTATION)} && !(k.substring({len(ANNOTATION_PREFIX)}) in "
        f"{json.dumps(sorted(overrides.TABLE))}))"
    )
    text = quote(" is not a known annotation and was ignored; known: " + known)
    return unknown, f"{unknown}.map(k, k + {text}).join('; ')"


def ignored_port_warning(name: str) -> str:
    """CEL: true unless the port override <name> is ignored (no config-map), with a warning."""
    return f"!({given(name)}) || {given('config-map')}"


def ignored_port_text(name: str) -> str:
    return (
        f"{ANNOTATION_PREFIX}{name} was ignored: a port override takes effect only together "
        f"with {ANNOTATION_PREFIX}config-map naming a config that listens there"
    )

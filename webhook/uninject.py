"""The inverse of inject: take out exactly what the status annotation says was put in.

The annotation (render.status) records the containers, init containers and volumes the injector
added; nothing else is touched. Inject creates absent parents (``spec.volumes``,
``metadata.annotations``, a template's ``metadata``) in one op, so a list or map this removal
leaves empty is dropped too: that restores the document as it was written, except for a list or
map the user wrote empty on purpose (it comes back absent; the same Pod to the API server).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from webhook import errors, patch, workloads
from webhook.spec import STATUS_ANNOTATION, WARNED_LABEL

JSONDict = dict[str, Any]


@dataclass(frozen=True)
class Status:
    """The parsed status annotation."""

    version: str
    image: str
    containers: tuple[str, ...]
    init_containers: tuple[str, ...]
    volumes: tuple[str, ...]


def _names(record: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = record.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise errors.StatusMismatch(
            f"{STATUS_ANNOTATION} has {key}={value!r}; expected a list of names"
        )
    return tuple(value)


def parse_status(value: Any) -> Status:
    """The status annotation's JSON, checked; StatusMismatch names what is wrong."""
    try:
        record = json.loads(value) if isinstance(value, str) else None
    except ValueError:
        record = None
    if not isinstance(record, dict):
        raise errors.StatusMismatch(
            f"{STATUS_ANNOTATION} is {value!r}, not the JSON object the injector writes "
            '(like {"containers":["envoy-sidecar"],"volumes":["envoy-config-volume"],...})'
        )
    return Status(
        version=str(record.get("version", "")),
        image=str(record.get("image", "")),
        containers=_names(record, "containers"),
        init_containers=_names(record, "initContainers"),
        volumes=_names(record, "volumes"),
    )


def status_of(pod: Mapping[str, Any]) -> Status | None:
    """The Pod's injection record, or None when it was never injected."""
    meta = pod.get("metadata")
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(annotations, dict) or STATUS_ANNOTATION not in annotations:
        return None
    return parse_status(annotations[STATUS_ANNOTATION])


def _remove_named(spec: JSONDict, key: str, names: tuple[str, ...]) -> None:
    if not names:
        return
    items = spec.get(key)
    items = items if isinstance(items, list) else []
    present = [i.get("name") for i in items if isinstance(i, dict)]
    missing = [n for n in names if present.count(n) != 1]
    if missing:
        raise errors.StatusMismatch(
            f"{STATUS_ANNOTATION} records {key} {', '.join(missing)} but spec.{key} has "
            f"{'none' if not present else 'names ' + ', '.join(map(str, present))}; "
            "it was changed after injection, so remove the sidecar by hand"
        )
    spec[key] = [i for i in items if not (isinstance(i, dict) and i.get("name") in names)]
    if not spec[key]:
        del spec[key]


def _check_mounts(spec: Mapping[str, Any], volumes: tuple[str, ...]) -> None:
    # A container of the user's that mounts the sidecar's volume would break once it is gone.
    for key in ("initContainers", "containers", "ephemeralContainers"):
        items = spec.get(key)
        for container in items if isinstance(items, list) else []:
            mounts = container.get("volumeMounts") if isinstance(container, dict) else None
            for mount in mounts if isinstance(mounts, list) else []:
                if isinstance(mount, dict) and mount.get("name") in volumes:
                    raise errors.StatusMismatch(
                        f"container {container.get('name')!r} mounts volume "
                        f"{mount.get('name')!r}, which the injector added; removing it would "
                        "break the container"
                    )


def strip(pod: JSONDict) -> bool:
    """Remove the recorded sidecar from ``pod`` in place; False when it has no status annotation.

    Raises StatusMismatch, leaving ``pod`` unchanged, when the record disagrees with the spec.
    """
    status = status_of(pod)
    if status is None:
        return False
    spec = pod.get("spec")
    if not isinstance(spec, dict):
        raise errors.StatusMismatch(f"{STATUS_ANNOTATION} is set but the Pod has no spec")
    new_spec = dict(spec)  # shallow: the lists are rebuilt, not edited
    _remove_named(new_spec, "containers", status.containers)
    _remove_named(new_spec, "initContainers", status.init_containers)
    _remove_named(new_spec, "volumes", status.volumes)
    _check_mounts(new_spec, status.volumes)
    spec.clear()
    spec.update(new_spec)
    meta = pod["metadata"]
    del meta["annotations"][STATUS_ANNOTATION]
    if not meta["annotations"]:
        del meta["annotations"]
    labels = meta.get("labels")
    if isinstance(labels, dict) and WARNED_LABEL in labels:  # the injection's, like the record
        del labels[WARNED_LABEL]
        if not labels:
            del meta["labels"]
    if not meta:
        del pod["metadata"]
    return True


def uninject(pod: Mapping[str, Any]) -> JSONDict:
    """A copy of ``pod`` without the recorded sidecar (an equal copy when there is none)."""
    copied: JSONDict = copy.deepcopy(dict(pod))
    strip(copied)
    return copied


def uninject_document(doc: Any) -> tuple[Any, list[str]]:
    """A copy of a YAML document (any kind inject takes) with every pod template uninjected.

    Returns the copy and the JSON pointers of the templates changed. StatusMismatch and
    MalformedObject messages start with the template's pointer.
    """
    copied = copy.deepcopy(doc)
    changed = []
    templates: Iterator[workloads.Template] = workloads.templates(copied)
    for template in templates:
        where = patch.pointer(*template.path) or "/"
        try:
            if strip(template.pod):
                changed.append(where)
        except errors.StatusMismatch as exc:
            raise errors.StatusMismatch(f"{where}: {exc}") from exc
    return copied, changed

"""Where the Pod templates are in the objects `kubectl apply` takes.

The offline CLI injects into each template with the same code the webhook runs on Pods; the
template's location becomes the patch prefix.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, TextIO

import yaml

from webhook import errors

Path = tuple[str | int, ...]

TEMPLATE_PATHS: Final[Mapping[str, Path]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "ReplicationController": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


@dataclass(frozen=True)
class Template:
    path: Path  # from the document's root
    pod: dict[str, Any]  # the Pod or pod template, a live reference into the document
    kind: str  # of the workload holding it
    name: str  # the workload's name, the service cluster's last fallback
    namespace: str


def _get(obj: Any, path: Path) -> Any:
    for token in path:
        if not isinstance(obj, Mapping) or token not in obj:
            return None
        obj = obj[token]
    return obj


def templates(doc: Any, *, path: Path = ()) -> Iterator[Template]:
    """Every pod template in ``doc`` (recursing into v1 Lists). Other kinds yield nothing.

    A workload of a known kind without a template object raises MalformedObject.
    """
    if not isinstance(doc, Mapping):
        return
    kind = doc.get("kind")
    if kind == "List" or (isinstance(kind, str) and kind.endswith("List")):
        items = doc.get("items")
        for index, item in enumerate(items if isinstance(items, list) else []):
            yield from templates(item, path=(*path, "items", index))
        return
    if not isinstance(kind, str) or kind not in TEMPLATE_PATHS:
        return
    relative = TEMPLATE_PATHS[kind]
    pod = doc if not relative else _get(doc, relative)
    if not isinstance(pod, dict):
        where = ".".join(str(t) for t in relative)
        raise errors.MalformedObject(f"{kind} has no {where} object to inject into")
    meta = doc.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    yield Template(
        path=(*path, *relative),
        pod=pod,
        kind=kind,
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or ""),
    )


def describe(index: int, doc: Any) -> str:
    """How messages name a document of a YAML stream: its 1-based position, kind and name."""
    kind = doc.get("kind", "?") if isinstance(doc, dict) else type(doc).__name__
    name = ""
    if isinstance(doc, dict) and isinstance(doc.get("metadata"), dict):
        name = f" {doc['metadata'].get('name', '')}".rstrip()
    return f"document {index} ({kind}{name})"


def load_documents(text: str, err: TextIO) -> list[Any] | None:
    """Every document of a YAML stream; None after telling ``err`` where the YAML is broken."""
    try:
        return list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        print(f"error: invalid YAML{where}: {exc}", file=err)
        return None

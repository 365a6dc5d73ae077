"""RFC 6902 JSON Patch ops built explicitly, with RFC 6901 pointers.

A computed diff (jsonpatch.make_patch) may rewrite a user's container field by field when the
sidecar is prepended; explicit ``add`` ops cannot. The builders here create absent parents in a
single op, never replace an existing member and know nothing of Kubernetes.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping, Sequence
from typing import Any, Literal, NotRequired, TypedDict

import jsonpatch

from webhook import errors

JSON = Any  # parsed JSON: dict, list, str, int, float, bool or None


class PatchOp(TypedDict):
    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str
    value: NotRequired[JSON]


Path = Sequence[str | int]


def escape(token: str) -> str:
    """RFC 6901 §4: '~' must be escaped before '/', or '/' -> '~1' would be re-read as '~' + '1'."""
    if "~" not in token and "/" not in token:
        return token
    return token.replace("~", "~0").replace("/", "~1")


def unescape(token: str) -> str:
    return token.replace("~1", "/").replace("~0", "~")


@functools.lru_cache(maxsize=4096, typed=True)  # the same few paths, for every review
def pointer(*tokens: str | int) -> str:
    """The JSON pointer for a path of object keys and array indices; pointer() is the root."""
    return "".join("/" + escape(str(t)) for t in tokens)


def _walk(doc: JSON, path: Path) -> tuple[int, JSON]:
    """How many leading tokens of ``path`` exist in ``doc``, and the value at the deepest one."""
    node = doc
    for depth, token in enumerate(path):
        in_object = (
            isinstance(node, dict) and isinstance(token, str) and node.get(token) is not None
        )
        in_array = isinstance(node, list) and isinstance(token, int) and 0 <= token < len(node)
        if not (in_object or in_array):
            return depth, node
        node = node[token]
    return len(path), node


def _nest(path: Path, leaf: JSON) -> JSON:
    for token in reversed(path):
        if not isinstance(token, str):
            raise TypeError(f"cannot create an array index {token!r} as a parent")
        leaf = {token: leaf}
    return leaf


def _create(doc: JSON, path: Path, value: JSON) -> PatchOp:
    """One op that puts ``value`` at ``path``, creating every absent parent object on the way."""
    depth, parent = _walk(doc, path[:-1])
    if not isinstance(parent, dict):
        raise errors.MalformedObject(f"{pointer(*path[:depth]) or '/'} is not an object")
    return {
        "op": "add",
        "path": pointer(*path[: depth + 1]),
        "value": _nest(path[depth + 1 :], value),
    }


def put_map_entries(doc: JSON, path: Path, entries: Mapping[str, JSON]) -> list[PatchOp]:
    """Add ``entries`` to the object at ``path``; create the object (and its parents) if absent.

    An entry whose key already exists raises: the caller decides what a clash means.
    """
    depth, node = _walk(doc, path)
    if depth < len(path):
        return [_create(doc, path, dict(entries))] if entries else []
    if not isinstance(node, dict):
        raise errors.MalformedObject(f"{pointer(*path)} is not an object")
    clashes = sorted(k for k in entries if k in node)
    if clashes:
        raise errors.NameClash(f"{pointer(*path)} already has {', '.join(clashes)}")
    return [{"op": "add", "path": pointer(*path, k), "value": v} for k, v in entries.items()]


def add_list_items(
    doc: JSON, path: Path, items: Sequence[JSON], *, at: int | None = None
) -> list[PatchOp]:
    """Insert ``items`` into the array at ``path`` (at index ``at``, default: the end);
    create the array (and its parents) if absent."""
    depth, node = _walk(doc, path)
    if depth < len(path):
        return [_create(doc, path, list(items))] if items else []
    if not isinstance(node, list):
        raise errors.MalformedObject(f"{pointer(*path)} is not an array")
    start = len(node) if at is None else at
    return [
        {"op": "add", "path": pointer(*path, start + i), "value": item}
        for i, item in enumerate(items)
    ]


def apply(doc: JSON, ops: Sequence[PatchOp]) -> JSON:
    """Apply ``ops`` to a deep copy of ``doc`` (RFC 6902 semantics, via jsonpatch)."""
    return jsonpatch.apply_patch(copy.deepcopy(doc), list(ops), in_place=True)

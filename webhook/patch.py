"""RFC 6902 JSON Patch ops built explicitly, with RFC 6901 pointers.

A computed diff (jsonpatch.make_patch) may rewrite a user's container field by field when the
sidecar is prepended; explicit ``add`` ops cannot. The builders here create absent parents in a
single op, never replace an existing member and know nothing of Kubernetes.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, NotRequired, TypedDict

import jsonpatch
import orjson

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
    """How many leading tokens of ``path`` exist in ``doc``, and the value at the deepest one.

    A member that is null counts as absent."""
    node = doc
    for depth, token in enumerate(path):
        if isinstance(node, dict):
            child = node.get(token) if isinstance(token, str) else None
            if child is None:
                return depth, node
        elif isinstance(node, list) and isinstance(token, int) and 0 <= token < len(node):
            child = node[token]
        else:
            return depth, node
        node = child
    return len(path), node


class Slot(NamedTuple):
    """Where new content lands in a document, found once by ``list_slot`` or ``map_slot`` and
    turned into ops by ``fill``. A plain tuple: ops built from the same slots and values are the
    same, so a caller may cache them by slot.

    ``nest`` is None when the array or object at ``pointer`` exists (items are inserted from
    index ``start``, entries added by key); otherwise ``pointer`` is the first absent member,
    created in one op, and ``nest`` the absent members below it that wrap the new content.
    """

    pointer: str
    nest: tuple[str, ...] | None = None
    start: int = 0


def _absent(path: Path, depth: int, parent: JSON) -> Slot:
    """The slot that creates ``path`` below its deepest existing member ``parent``."""
    if not isinstance(parent, dict):
        raise errors.MalformedObject(f"{pointer(*path[:depth]) or '/'} is not an object")
    nest = path[depth + 1 :]
    for token in reversed(nest):
        if not isinstance(token, str):
            raise TypeError(f"cannot create an array index {token!r} as a parent")
    return Slot(pointer(*path[: depth + 1]), tuple(str(t) for t in nest))


def list_slot(doc: JSON, path: Path, *, at: int | None = None) -> Slot:
    """Where items inserted at index ``at`` (default: the end) of the array at ``path`` go."""
    depth, node = _walk(doc, path)
    if depth < len(path):
        return _absent(path, depth, node)
    if not isinstance(node, list):
        raise errors.MalformedObject(f"{pointer(*path)} is not an array")
    return Slot(pointer(*path), None, len(node) if at is None else at)


def map_slot(doc: JSON, path: Path, keys: Iterable[str]) -> Slot:
    """Where entries with ``keys`` added to the object at ``path`` go. A key that already
    exists raises: the caller decides what a clash means."""
    depth, node = _walk(doc, path)
    if depth < len(path):
        return _absent(path, depth, node)
    if not isinstance(node, dict):
        raise errors.MalformedObject(f"{pointer(*path)} is not an object")
    clashes = [k for k in keys if k in node]
    if clashes:
        raise errors.NameClash(f"{pointer(*path)} already has {', '.join(sorted(clashes))}")
    return Slot(pointer(*path))


def fill(slot: Slot, content: Sequence[JSON] | Mapping[str, JSON]) -> list[PatchOp]:
    """The ``add`` ops that put ``content`` (array items, or object entries) at ``slot``."""
    if not content:
        return []
    if slot.nest is not None:
        leaf: JSON = dict(content) if isinstance(content, Mapping) else list(content)
        for token in reversed(slot.nest):
            leaf = {token: leaf}
        return [{"op": "add", "path": slot.pointer, "value": leaf}]
    if isinstance(content, Mapping):
        return [
            {"op": "add", "path": f"{slot.pointer}/{escape(k)}", "value": v}
            for k, v in content.items()
        ]
    return [
        {"op": "add", "path": f"{slot.pointer}/{slot.start + i}", "value": item}
        for i, item in enumerate(content)
    ]


def put_map_entries(doc: JSON, path: Path, entries: Mapping[str, JSON]) -> list[PatchOp]:
    """Add ``entries`` to the object at ``path``; create the object (and its parents) if absent.

    An entry whose key already exists raises: the caller decides what a clash means.
    """
    return fill(map_slot(doc, path, entries), entries)


def add_list_items(
    doc: JSON, path: Path, items: Sequence[JSON], *, at: int | None = None
) -> list[PatchOp]:
    """Insert ``items`` into the array at ``path`` (at index ``at``, default: the end);
    create the array (and its parents) if absent."""
    return fill(list_slot(doc, path, at=at), items)


@dataclass(frozen=True)
class Encoded:
    """A JSON Patch encoded once, as sent, with the number of ops it holds."""

    json: bytes
    count: int

    def ops(self) -> list[PatchOp]:
        """The ops as new objects, which the caller may change."""
        ops: list[PatchOp] = orjson.loads(self.json)
        return ops


def encode(ops: Sequence[PatchOp]) -> Encoded:
    return Encoded(orjson.dumps(list(ops)), len(ops))


NO_OPS: Final = encode([])


def apply(doc: JSON, ops: Sequence[PatchOp]) -> JSON:
    """Apply ``ops`` to a deep copy of ``doc`` (RFC 6902 semantics, via jsonpatch)."""
    return jsonpatch.apply_patch(copy.deepcopy(doc), list(ops), in_place=True)

"""`envoy-injector uninject -f FILE|-`: the offline mirror of `inject -f`.

Documents it does not change are printed exactly as they were read (comments, quoting and
order kept); a changed document is printed the way `inject -f` prints, keys in their order.
"""

from __future__ import annotations

import itertools
import re
from typing import Any, TextIO

import yaml

from webhook import errors, uninject, workloads

# A document separator at the start of a line; a candidate split that is verified by parsing.
_SEPARATOR = re.compile(r"^---(?=[ \t\r\n]|$)", re.MULTILINE)


def _pieces(text: str, docs: list[Any]) -> list[str] | None:
    """The source text of each document, or None when splitting at '---' lines is not exact."""
    starts = [m.start() for m in _SEPARATOR.finditer(text)]
    bounds = [0, *starts, len(text)] if starts[:1] != [0] else [*starts, len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    parsed: list[Any] = []
    try:
        for piece in pieces:
            parsed.append(list(yaml.safe_load_all(piece)))
    except yaml.YAMLError:
        return None
    # A leading comment-only piece parses to no document; keep it attached to the next one.
    merged: list[str] = []
    carry = ""
    for piece, found in zip(pieces, parsed, strict=True):
        if not found:
            carry += piece
            continue
        if len(found) != 1:
            return None
        merged.append(carry + piece)
        carry = ""
    if len(merged) != len(docs) or [yaml.safe_load(p) for p in merged] != docs:
        return None
    if carry:
        merged[-1] += carry
    return merged


def _dump(doc: Any, source: str | None) -> str:
    dumped = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)
    if source is not None and _SEPARATOR.match(source):
        return source.split("\n", 1)[0] + "\n" + dumped  # keep the '---' line as written
    return dumped


def uninject_text(text: str, err: TextIO) -> tuple[str, int]:
    """The input with every recorded sidecar removed, and how many documents failed."""
    docs = workloads.load_documents(text, err)
    if docs is None:
        return "", 1
    pieces = _pieces(text, docs)
    out: list[str] = []
    changed_any = False
    failures = 0
    for index, doc in enumerate(docs, start=1):
        source = pieces[index - 1] if pieces is not None else None
        try:
            new, changed = uninject.uninject_document(doc)
        except (errors.StatusMismatch, errors.MalformedObject) as exc:
            print(f"error: {workloads.describe(index, doc)}: {exc}", file=err)
            failures += 1
            continue
        for where in changed:
            print(f"{workloads.describe(index, doc)} {where}: sidecar removed", file=err)
        changed_any = changed_any or bool(changed)
        if source is not None and not changed:
            out.append(source)
        elif doc is not None:
            out.append(_dump(new, source))
    if failures:
        return "", failures
    if pieces is not None:
        return "".join(out), 0  # each piece but the last ends with the newline before a '---'
    return (text if not changed_any else "---\n".join(out)), 0


def uninject_command(text: str, out: TextIO, err: TextIO) -> int:
    result, failures = uninject_text(text, err)
    if failures:
        return 1
    out.write(result)
    return 0

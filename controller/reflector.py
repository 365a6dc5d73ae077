"""List, then watch, one kind of object by label, keeping a local copy (client-go's Reflector).

Every way a watch ends is survived in a loop, never by crashing the process:

- the server closes the stream (its ``timeoutSeconds``, a restart): watch again from the last
  resourceVersion seen, which bookmarks keep recent even when nothing we watch changes;
- 410 Gone (that version was compacted away, as an HTTP status or an ERROR event): list again,
  and report every key whose object appeared, changed or vanished meanwhile;
- no answer (API server away, network): retry with capped exponential back-off, resuming from
  the last version; when the server is back that either works or yields 410 and a relist.

``on_change(namespace)`` is called (from this thread) for every object added, changed or
deleted; the reconciler only queues the name.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

from kubeapi import client as kubeapi, errors as kerrors

log = logging.getLogger("envoy_injector.controller.watch")

JSONDict = dict[str, Any]
PAGE: Final = 500
MAX_BACKOFF: Final = 30.0


def key(obj: JSONDict) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def scope(obj: JSONDict) -> str:
    """The namespace an object concerns: its own namespace, or its name for a Namespace."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or meta.get("name") or "")


class Backoff:
    def __init__(self, first: float = 0.5, cap: float = MAX_BACKOFF) -> None:
        self.first, self.cap, self.next = first, cap, first

    def __call__(self) -> float:
        delay, self.next = self.next, min(self.next * 2, self.cap)
        return delay * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret

    def reset(self) -> None:
        self.next = self.first


class Reflector:
    def __init__(
        self,
        api: kubeapi.Client,
        url: str,
        *,
        selector: str,
        on_change: Callable[[str], None],
        on_restart: Callable[[str], None] = lambda _reason: None,
        watch_seconds: int = 300,
    ) -> None:
        self._api = api
        self.url = url
        self._selector = selector
        self._on_change = on_change
        self._on_restart = on_restart
        self._watch_seconds = watch_seconds
        self._lock = threading.Lock()
        self._store: dict[str, JSONDict] = {}
        self.resource_version = ""
        self.synced = threading.Event()  # set after the first complete list

    # ---- what the reconciler reads -----------------------------------------------------------

    def items(self) -> list[JSONDict]:
        with self._lock:
            return list(self._store.values())

    def in_scope(self, namespace: str) -> list[JSONDict]:
        with self._lock:
            return [o for o in self._store.values() if scope(o) == namespace]

    def put(self, obj: JSONDict) -> None:
        """Record what a write of ours returned, before its watch event arrives."""
        with self._lock:
            self._store[key(obj)] = obj

    def forget(self, obj_key: str) -> None:
        with self._lock:
            self._store.pop(obj_key, None)

    # ---- the loop ----------------------------------------------------------------------------

    def _pages(self) -> Iterator[JSONDict]:
        params = {"labelSelector": self._selector, "limit": str(PAGE)}
        while True:
            page = self._api.get(self.url, params=params)
            yield page
            cont = (page.get("metadata") or {}).get("continue")
            if not cont:
                return
            params = {**params, "continue": cont}

    def relist(self) -> None:
        items: dict[str, JSONDict] = {}
        rv = ""
        for page in self._pages():
            rv = str((page.get("metadata") or {}).get("resourceVersion", ""))
            for obj in page.get("items") or []:
                items[key(obj)] = obj
        with self._lock:
            old, self._store = self._store, items
            self.resource_version = rv
        changed = {
            k for k in old.keys() | items.keys() if old.get(k) is None or items.get(k) is None
        } | {k for k in items.keys() & old.keys() if items[k] != old[k]}
        for k in sorted(changed):
            self._on_change(scope(items.get(k) or old[k]))
        self.synced.set()
        log.debug("listed", extra={"url": self.url, "items": len(items), "rv": rv})

    def _apply(self, event: JSONDict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        rv = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        if kind == "BOOKMARK":
            self.resource_version = rv or self.resource_version
            return
        with self._lock:
            if kind == "DELETED":
                self._store.pop(key(obj), None)
            else:
                self._store[key(obj)] = obj
            self.resource_version = rv or self.resource_version
        self._on_change(scope(obj))

    def run(self, stop: threading.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                if not self.resource_version:
                    self.relist()
                seconds = int(self._watch_seconds * random.uniform(0.8, 1.0))  # noqa: S311
                stream = self._api.watch(
                    self.url,
                    resource_version=self.resource_version,
                    timeout_seconds=seconds,
                    params={"labelSelector": self._selector},
                )
                for event in stream:
                    self._apply(event)
                    backoff.reset()
                    if stop.is_set():
                        return
                self._on_restart("closed")
            except kerrors.Gone as exc:
                log.info("watch expired, listing again", extra={"url": self.url, "error": str(exc)})
                self.resource_version = ""
                self._on_restart("gone")
            except kerrors.ApiError as exc:
                delay = backoff()
                log.warning(
                    "watch failed, retrying",
                    extra={"url": self.url, "error": str(exc), "retry_in": round(delay, 2)},
                )
                self._on_restart("error")
                stop.wait(delay)
            except Exception:  # a bug of ours must not stop the watch for good
                log.exception("watch loop failed, listing again", extra={"url": self.url})
                self.resource_version = ""
                self._on_restart("bug")
                stop.wait(backoff())

"""The webhook's view of each namespace's LimitRanges and ResourceQuotas, kept by watches.

The API server never sends them with a review, and a Pod's sidecar must fit them (limits.py), so
the webhook lists them once and then follows their changes, one thread per resource. A request
reads the current view from memory and never waits on the API server: until the first lists have
arrived /readyz says not ready, and if a watch breaks the last view stays in use while it is
listed again, which at worst fits a sidecar to a LimitRange a few seconds old.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any, Final

from kubeapi import client as kubeapi, errors as api_errors
from webhook import limits

log = logging.getLogger("envoy_injector.namespaces")

RESOURCES: Final = ("limitranges", "resourcequotas")
# Back-off between failed lists: quick first, then calm, so a restarting API server is not
# hammered by every replica.
_BACKOFF: Final = (1.0, 2.0, 5.0, 10.0)


def _slim(obj: Mapping[str, Any]) -> dict[str, Any]:
    """Only what limits.fit reads: a quota's status changes often and is small; the rest of
    metadata (managedFields) is dropped to keep the view small."""
    meta = obj.get("metadata") or {}
    return {
        "metadata": {"name": meta.get("name", ""), "namespace": meta.get("namespace", "")},
        "spec": obj.get("spec") or {},
        "status": obj.get("status") or {},
    }


class NamespaceLimits:
    """namespace -> limits.Namespace, for every namespace that has a LimitRange or a quota."""

    def __init__(self, api: kubeapi.Client, *, watch_seconds: int = 300) -> None:
        self._api = api
        self._watch_seconds = watch_seconds
        # resource -> namespace -> name -> object; replaced under the lock, read without it.
        self._objects: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
            resource: {} for resource in RESOURCES
        }
        self._view: dict[str, limits.Namespace] = {}
        self._lock = threading.Lock()
        self._synced = {resource: threading.Event() for resource in RESOURCES}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- what requests use --------------------------------------------------------------------

    def get(self, namespace: str) -> limits.Namespace:
        return self._view.get(namespace, limits.EMPTY)

    @property
    def ready(self) -> bool:
        return all(event.is_set() for event in self._synced.values())

    # --- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        for resource in RESOURCES:
            thread = threading.Thread(
                target=self._run, args=(resource,), name=f"watch-{resource}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()

    def wait_synced(self, timeout: float) -> bool:
        return all(event.wait(timeout) for event in self._synced.values())

    # --- the watch loop -----------------------------------------------------------------------

    def _run(self, resource: str) -> None:
        url = kubeapi.path("v1", resource)
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list(resource, url)
                failures = 0
                self._follow(resource, url, version)
            except api_errors.Gone:
                continue  # the version was compacted: list again at once
            except api_errors.ApiError as error:
                delay = _BACKOFF[min(failures, len(_BACKOFF) - 1)]
                failures += 1
                log.warning(
                    "cannot follow %s, retrying in %.0f s: %s",
                    resource,
                    delay,
                    error,
                    extra={"resource": resource},
                )
                self._stop.wait(delay)

    def _list(self, resource: str, url: str) -> str:
        listed = self._api.get(url)
        by_namespace: dict[str, dict[str, dict[str, Any]]] = {}
        for item in listed.get("items") or []:
            slim = _slim(item)
            meta = slim["metadata"]
            by_namespace.setdefault(meta["namespace"], {})[meta["name"]] = slim
        with self._lock:
            self._objects[resource] = by_namespace
            self._rebuild()
        self._synced[resource].set()
        return str((listed.get("metadata") or {}).get("resourceVersion", ""))

    def _follow(self, resource: str, url: str, version: str) -> None:
        while not self._stop.is_set():
            for event in self._api.watch(
                url, resource_version=version, timeout_seconds=self._watch_seconds
            ):
                obj = event.get("object") or {}
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion") or version)
                kind = event.get("type")
                if kind == "BOOKMARK":
                    continue
                namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
                with self._lock:
                    objects = self._objects[resource].setdefault(namespace, {})
                    if kind == "DELETED":
                        objects.pop(name, None)
                    else:
                        objects[name] = _slim(obj)
                    self._rebuild(namespace)

    def _rebuild(self, namespace: str | None = None) -> None:
        """Publish a new view (a fresh dict, so readers never see one half-changed)."""
        names = (
            {namespace}
            if namespace is not None
            else {ns for by_ns in self._objects.values() for ns in by_ns}
        )
        view = dict(self._view) if namespace is not None else {}
        for ns in names:
            ranges = tuple(self._objects["limitranges"].get(ns, {}).values())
            quotas = tuple(self._objects["resourcequotas"].get(ns, {}).values())
            if ranges or quotas:
                view[ns] = limits.Namespace(limit_ranges=ranges, quotas=quotas)
            else:
                view.pop(ns, None)
        self._view = view


def lookup_for(watcher: NamespaceLimits | None) -> Callable[[str], limits.Namespace]:
    """What the review calls per request: the watcher's view, or none when not watching."""
    if watcher is None:
        return lambda _namespace: limits.EMPTY
    return watcher.get

"""The controller's worker: queued namespaces -> ``reconcile.plan_namespace`` -> API writes.

Namespaces are queued by the two watches (labelled namespaces, our own ConfigMaps), by a
periodic full resync and by a changed config file. Only the leader writes; a standby keeps its
watches warm. What happens on each failure of a write:

- create answered 409 AlreadyExists: read the object; ours (another write got there first)
  means nothing to do; not ours means a user's ConfigMap, remembered so the next plan reports
  the conflict (log, a Warning Event in the namespace, a metric) and never writes it;
- update or delete answered 409 (a stale resourceVersion or precondition): read it again and
  plan again;
- 404 on update or delete: gone already; plan again (a create follows if still wanted);
- 403 on create in a namespace being deleted, or any other refusal: logged, retried later;
- no answer (API server away): the namespace is retried with back-off until it answers.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from controller.metrics import Metrics
from controller.reflector import Backoff, Reflector, key
from kubeapi import client as kubeapi, errors as kerrors
from webhook import reconcile
from webhook.reconcile import Action, Conflict, Create, Delete, Target, Update

log = logging.getLogger("envoy_injector.controller")

JSONDict = dict[str, Any]


def _timestamp(dt: datetime.datetime | None = None) -> str:
    return (dt or datetime.datetime.now(datetime.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _created_at(namespace: JSONDict | None) -> float | None:
    stamp = ((namespace or {}).get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return None
    return datetime.datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp()


class Reconciler:
    def __init__(
        self,
        api: kubeapi.Client,
        *,
        target: Target,
        metrics: Metrics,
        identity: str,
        resync_seconds: float = 300.0,
        watch_seconds: int = 300,
    ) -> None:
        self._api = api
        self.target = target
        self._metrics = metrics
        self._identity = identity
        self._resync = resync_seconds
        self._cond = threading.Condition()
        self._dirty: set[str] = set()
        self._later: dict[str, float] = {}  # namespace -> monotonic time of its retry
        self._backoff: dict[str, Backoff] = {}
        self._foreign: dict[tuple[str, str], JSONDict] = {}  # users' ConfigMaps with our name
        self._reported: set[str] = set()  # uids of foreign ConfigMaps already counted
        self._seen: dict[str, float] = {}  # namespace -> wall time we first saw it wanted
        self._started = time.time()
        self.leading = False
        self.heartbeat = time.monotonic()

        def watched(resource: str) -> Callable[[str], None]:
            counter = metrics.watch_restarts
            return lambda reason: counter.labels(resource=resource, reason=reason).inc()

        self.namespaces = Reflector(
            api,
            kubeapi.path("v1", "namespaces"),
            selector=reconcile.NAMESPACE_SELECTOR,
            on_change=self.enqueue,
            on_restart=watched("namespaces"),
            watch_seconds=watch_seconds,
        )
        self.configmaps = Reflector(
            api,
            kubeapi.path("v1", "configmaps"),
            selector=reconcile.MANAGED_SELECTOR,
            on_change=self.enqueue,
            on_restart=watched("configmaps"),
            watch_seconds=watch_seconds,
        )

    # ---- queueing ----------------------------------------------------------------------------

    def enqueue(self, namespace: str) -> None:
        with self._cond:
            self._dirty.add(namespace)
            self._cond.notify()

    def resync(self) -> None:
        """Queue every namespace we know of, and forget what we learnt about users' objects."""
        names = {reconcile.name_of(n) for n in self.namespaces.items()}
        names |= {reconcile.namespace_of(c) for c in self.configmaps.items()}
        with self._cond:
            self._foreign.clear()
            self._dirty |= names
            self._cond.notify()

    def set_target(self, target: Target) -> None:
        self.target = target
        self.resync()

    def set_leading(self, leading: bool) -> None:
        self.leading = leading
        self._metrics.leader.set(1 if leading else 0)
        if leading:
            self.resync()

    def synced(self) -> bool:
        return self.namespaces.synced.is_set() and self.configmaps.synced.is_set()

    # ---- the loop ----------------------------------------------------------------------------

    def _take(self, timeout: float) -> set[str]:
        with self._cond:
            now = time.monotonic()
            due = {ns for ns, at in self._later.items() if at <= now}
            if not self._dirty and not due:
                wait = min([timeout, *(at - now for at in self._later.values())])
                self._cond.wait(max(wait, 0.0))
                now = time.monotonic()
                due = {ns for ns, at in self._later.items() if at <= now}
            for ns in due:
                del self._later[ns]
            taken, self._dirty = self._dirty | due, set()
            return taken

    def run(self, stop: threading.Event, *, tick: Callable[[], None] = lambda: None) -> None:
        next_resync = time.monotonic() + self._resync
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            tick()
            if time.monotonic() >= next_resync:
                next_resync = time.monotonic() + self._resync
                self.resync()
            names = self._take(timeout=1.0)
            if not self.leading or not self.synced():
                with self._cond:
                    self._dirty |= names  # kept for when we lead
                stop.wait(0.2)
                continue
            for ns in sorted(names):
                self.reconcile_namespace(ns)

    def reconcile_namespace(self, ns: str) -> None:
        namespace = next(iter(self.namespaces.in_scope(ns)), None)
        configmaps = self.configmaps.in_scope(ns)
        foreign = [cm for (fns, _), cm in self._foreign.items() if fns == ns]
        actions = reconcile.plan_namespace(ns, namespace, [*configmaps, *foreign], self.target)
        if namespace is not None and reconcile.selected(namespace, self.target.excluded):
            self._seen.setdefault(ns, time.time())
        try:
            for action in actions:
                self._apply(action, namespace)
        except kerrors.ApiError as exc:
            self._metrics.reconciles.labels(result="error").inc()
            delay = self._backoff.setdefault(ns, Backoff())()
            log.warning(
                "could not reconcile the namespace, will retry",
                extra={"namespace": ns, "error": str(exc), "retry_in": round(delay, 2)},
            )
            with self._cond:
                self._later[ns] = time.monotonic() + delay
            return
        self._backoff.pop(ns, None)
        kinds = {a.kind for a in actions}
        result = "in_sync" if not kinds else "conflict" if kinds == {"conflict"} else "changed"
        self._metrics.reconciles.labels(result=result).inc()

    # ---- the writes --------------------------------------------------------------------------

    def _url(self, ns: str, name: str | None = None) -> str:
        return kubeapi.path("v1", "configmaps", namespace=ns, name=name)

    def _apply(self, action: Action, namespace: JSONDict | None) -> None:
        if isinstance(action, Create):
            self._create(action, namespace)
        elif isinstance(action, Update):
            self._write(action.namespace, action.name, "updated", action.why, action.body)
        elif isinstance(action, Delete):
            self._delete(action)
        else:
            self._conflict(action)

    def _create(self, action: Create, namespace: JSONDict | None) -> None:
        ns, name = action.namespace, action.body["metadata"]["name"]
        try:
            created = self._api.create(self._url(ns), action.body)
        except kerrors.Conflict:
            existing = self._api.get(self._url(ns, name))
            if reconcile.owned(existing):
                self.configmaps.put(existing)
            else:
                self._foreign[(ns, name)] = existing
            self.enqueue(ns)
            return
        except (kerrors.Forbidden, kerrors.NotFound) as exc:
            log.info("namespace not writable now", extra={"namespace": ns, "error": str(exc)})
            return
        self.configmaps.put(created)
        self._metrics.writes.labels(action="created").inc()
        start = _created_at(namespace)
        if start is None or start < self._started:
            start = self._seen.get(ns, time.time())
        waited = max(time.time() - start, 0.0)
        self._metrics.wait.observe(waited)
        log.info(
            "configmap created",
            extra={"namespace": ns, "configmap": name, "waited_seconds": round(waited, 3)},
        )

    def _write(self, ns: str, name: str, verb: str, why: str, body: JSONDict) -> None:
        try:
            written = self._api.replace(self._url(ns, name), body)
        except kerrors.Conflict:
            self._reread(ns, name)
            return
        except kerrors.NotFound:
            self.configmaps.forget(f"{ns}/{name}")
            self.enqueue(ns)
            return
        self.configmaps.put(written)
        self._metrics.writes.labels(action=verb).inc()
        log.info("configmap updated", extra={"namespace": ns, "configmap": name, "why": why})

    def _delete(self, action: Delete) -> None:
        ns, name = action.namespace, action.name
        options = {
            "kind": "DeleteOptions",
            "apiVersion": "v1",
            "preconditions": {"uid": action.uid, "resourceVersion": action.resource_version},
        }
        try:
            self._api.request("DELETE", self._url(ns, name), body=options)
        except kerrors.Conflict:
            self._reread(ns, name)
            return
        except kerrors.NotFound:
            pass
        else:
            self._metrics.writes.labels(action="deleted").inc()
            log.info("configmap deleted", extra={"namespace": ns, "configmap": name})
        self.configmaps.forget(f"{ns}/{name}")
        self._seen.pop(ns, None)

    def _reread(self, ns: str, name: str) -> None:
        """409: someone wrote since we read. Read again and plan again."""
        try:
            fresh = self._api.get(self._url(ns, name))
        except kerrors.NotFound:
            self.configmaps.forget(f"{ns}/{name}")
        else:
            if reconcile.owned(fresh):
                self.configmaps.put(fresh)
            else:
                self.configmaps.forget(key(fresh))
                self._foreign[(ns, name)] = fresh
        self.enqueue(ns)

    def _conflict(self, action: Conflict) -> None:
        if action.uid in self._reported:
            return
        body = reconcile.event(action, now=_timestamp(), reporter=self._identity)
        # 409: recorded already, by us before a restart or by the other replica.
        with contextlib.suppress(kerrors.Conflict):
            self._api.create(kubeapi.path("v1", "events", namespace=action.namespace), body)
        self._reported.add(action.uid)
        self._metrics.conflicts.inc()
        log.warning(
            "configmap not managed by envoy-injector, left alone",
            extra={"namespace": action.namespace, "configmap": action.name},
        )

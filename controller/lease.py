"""Leader election on a coordination.k8s.io/v1 Lease, as client-go's leaderelection does it.

Why a leader and not just race-safe writes: every write is race-safe anyway (create fails on an
existing object, update and delete carry the resourceVersion they were computed from), but two
replicas can briefly disagree about the *config* (the kubelet refreshes a mounted ConfigMap on
each node at its own moment, up to a minute apart). Without a leader, each would keep
"repairing" the other's ConfigMaps until both had the new file: a write storm across every
namespace. With a leader, one replica writes and the other stands by, watching, ready to take
over within ``LEASE_SECONDS``.

Expiry is judged by our own clock from the moment we last saw the record change (client-go's
``observedTime``), never by comparing ``renewTime`` with our clock, so clock skew between nodes
cannot make two leaders. Every write of the Lease carries its resourceVersion: of two
candidates racing for an expired Lease, exactly one succeeds.
"""

from __future__ import annotations

import datetime
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from kubeapi import client as kubeapi, errors as kerrors

log = logging.getLogger("envoy_injector.controller.lease")

LEASE_SECONDS: Final = 15  # a standby takes over this long after the leader stopped renewing
RENEW_DEADLINE: Final = 10.0  # the leader stops writing if it could not renew for this long
RETRY_PERIOD: Final = 2.0


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Observed:
    """The last Lease record seen and when (monotonic) it last changed."""

    holder: str = ""
    resource_version: str = ""
    duration: int = LEASE_SECONDS
    changed_at: float = 0.0


def expired(observed: Observed, *, now: float) -> bool:
    """Whether the holder we observed has had its full lease time since we saw it renew."""
    return not observed.holder or now - observed.changed_at >= observed.duration


class Elector:
    def __init__(
        self,
        api: kubeapi.Client,
        *,
        namespace: str,
        name: str,
        identity: str,
        on_change: Callable[[bool], None] = lambda _leading: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api = api
        self._path = kubeapi.path("coordination.k8s.io/v1", "leases", namespace=namespace)
        self._name = name
        self.identity = identity
        self._on_change = on_change
        self._clock = clock
        self._observed = Observed()
        self._last_renew = 0.0
        self.leading = False

    def _lease(self, record: dict[str, Any] | None, *, transitions: int) -> dict[str, Any]:
        now = _now()
        spec = dict((record or {}).get("spec") or {})
        if spec.get("holderIdentity") != self.identity:
            spec["acquireTime"] = now
            spec["leaseTransitions"] = transitions
        spec.update(holderIdentity=self.identity, leaseDurationSeconds=LEASE_SECONDS, renewTime=now)
        meta = dict((record or {}).get("metadata") or {"name": self._name})
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": meta,
            "spec": spec,
        }

    def _observe(self, record: dict[str, Any]) -> None:
        rv = str(record.get("metadata", {}).get("resourceVersion", ""))
        if rv != self._observed.resource_version:
            spec = record.get("spec") or {}
            self._observed = Observed(
                holder=str(spec.get("holderIdentity") or ""),
                resource_version=rv,
                duration=int(spec.get("leaseDurationSeconds") or LEASE_SECONDS),
                changed_at=self._clock(),
            )

    def try_acquire_or_renew(self) -> bool:
        """One attempt; True when we hold the Lease afterwards."""
        url = self._path + "/" + self._name
        try:
            record = self._api.get(url)
        except kerrors.NotFound:
            try:
                self._observe(self._api.create(self._path, self._lease(None, transitions=0)))
            except kerrors.Conflict:
                return False
            return True
        self._observe(record)
        if self._observed.holder != self.identity and not expired(
            self._observed, now=self._clock()
        ):
            return False
        transitions = int((record.get("spec") or {}).get("leaseTransitions") or 0)
        if self._observed.holder != self.identity:
            transitions += 1
        try:
            self._observe(self._api.replace(url, self._lease(record, transitions=transitions)))
        except kerrors.Conflict:
            return False  # someone else wrote it first: they lead
        return True

    def step(self) -> None:
        """Try once and update ``leading``; the loop calls this every RETRY_PERIOD."""
        try:
            held = self.try_acquire_or_renew()
        except kerrors.ApiError as exc:
            log.warning("could not reach the leader lease", extra={"error": str(exc)})
            held = False
            if self.leading and self._clock() - self._last_renew < RENEW_DEADLINE:
                return  # keep leading through a short blip; the lease is still ours
        if held:
            self._last_renew = self._clock()
        if held != self.leading:
            self.leading = held
            log.info(
                "leading" if held else "standing by",
                extra={"identity": self.identity, "lease": self._name},
            )
            self._on_change(held)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.step()
            stop.wait(RETRY_PERIOD)
        self.release()

    def release(self) -> None:
        """On shutdown: hand the Lease back so a standby takes over at once, not after expiry."""
        if not self.leading:
            return
        self.leading = False
        self._on_change(False)
        url = self._path + "/" + self._name
        try:
            record = self._api.get(url)
            if (record.get("spec") or {}).get("holderIdentity") == self.identity:
                record["spec"].update(holderIdentity="", leaseDurationSeconds=1)
                self._api.replace(url, record)
        except kerrors.ApiError as exc:
            log.warning("could not release the leader lease", extra={"error": str(exc)})

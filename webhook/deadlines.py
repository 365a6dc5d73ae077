"""Deadlines for many tasks on one timer, so that each body read has one without a timer of its own.

On uvloop a call_later and its cancel cost about 2 µs, more than the rest of reading a review's
body. Every deadline here is the same length from the moment it is set, so deadlines pass in the
order they were set: one timer, due when the oldest passes, serves them all.
"""

from __future__ import annotations

import asyncio
from typing import Any


class Deadlines:
    """Cancels a watched task ``seconds`` after ``watch``, unless ``finish`` came first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float) -> None:
        self.loop = loop
        self._seconds = seconds
        self._watched: dict[asyncio.Task[Any], float] = {}  # insertion order is deadline order
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None

    def watch(self, task: asyncio.Task[Any]) -> None:
        deadline = self.loop.time() + self._seconds
        self._watched[task] = deadline
        if self._timer is None:
            self._timer = self.loop.call_at(deadline, self._expire)

    def finish(self, task: asyncio.Task[Any]) -> bool:
        """Stop watching ``task``; True when its deadline had passed and it was cancelled."""
        self._watched.pop(task, None)
        if task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _expire(self) -> None:
        self._timer = None
        now = self.loop.time()
        while self._watched:
            task, deadline = next(iter(self._watched.items()))
            if deadline > now:
                self._timer = self.loop.call_at(deadline, self._expire)
                return
            del self._watched[task]
            self._expired.add(task)
            task.cancel()

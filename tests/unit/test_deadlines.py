"""Many deadlines on one timer: each watched task is cancelled once its own time is up."""

from __future__ import annotations

import asyncio

import pytest

from webhook.deadlines import Deadlines


def test_each_task_is_cancelled_at_its_own_deadline_and_a_finished_one_never() -> None:
    async def scenario() -> dict[str, tuple[str, float]]:
        loop = asyncio.get_running_loop()
        deadlines = Deadlines(loop, 0.2)
        outcome: dict[str, tuple[str, float]] = {}

        async def reader(name: str, work: float) -> None:
            task = asyncio.current_task()
            assert task is not None
            deadlines.watch(task)
            started = loop.time()
            try:
                await asyncio.sleep(work)
                outcome[name] = ("finished", loop.time() - started)
            except asyncio.CancelledError:
                outcome[name] = (
                    "expired" if deadlines.finish(task) else "cancelled",
                    loop.time() - started,
                )
            finally:
                deadlines.finish(task)

        first = asyncio.create_task(reader("slow-first", 10))
        await asyncio.sleep(0.1)
        quick = asyncio.create_task(reader("quick", 0.01))
        late = asyncio.create_task(reader("slow-later", 10))
        await asyncio.gather(first, quick, late)
        return outcome

    outcome = asyncio.run(scenario())
    assert outcome["quick"][0] == "finished"
    for name in ("slow-first", "slow-later"):
        state, waited = outcome[name]
        assert state == "expired"
        assert waited == pytest.approx(0.2, abs=0.08)

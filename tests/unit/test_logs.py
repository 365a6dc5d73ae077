"""The decision line's short road writes what the logging path would have written."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from webhook import logs

FIELDS = {"uid": "u-1", "namespace": "shop", "outcome": "injected", "reason": "", "patch_ops": 3}


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    yield logging.getLogger("envoy_injector.admission")
    logs.configure("text", stream=io.StringIO())  # leave a harmless handler behind


def _lines(buffer: io.BytesIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in buffer.getvalue().decode().splitlines()]


def _via_logging(logger: logging.Logger) -> dict[str, object]:
    buffer = io.BytesIO()
    logs.configure("json", stream=io.TextIOWrapper(buffer, write_through=True))
    logger.info("admission injected", extra=FIELDS)
    return _lines(buffer)[0]


def test_the_line_has_the_keys_and_order_of_the_json_formatter(logger: logging.Logger) -> None:
    expected = _via_logging(logger)
    buffer = io.BytesIO()
    logs.configure("json", stream=io.TextIOWrapper(buffer, write_through=True))
    logs.DecisionLog(logger).info("admission injected", dict(FIELDS), None)
    (line,) = _lines(buffer)
    assert list(line) == list(expected)
    assert {k: v for k, v in line.items() if k != "time"} == {
        k: v for k, v in expected.items() if k != "time"
    }
    assert str(line["time"]).endswith("Z")
    assert len(str(line["time"])) == len(str(expected["time"]))


def test_lines_written_in_one_loop_iteration_are_flushed_together(
    logger: logging.Logger,
) -> None:
    buffer = io.BytesIO()
    stream = io.TextIOWrapper(io.BufferedWriter(buffer))
    logs.configure("json", stream=stream)
    decisions = logs.DecisionLog(logger)

    async def burst() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        for i in range(3):
            decisions.info("admission injected", {"uid": f"u-{i}"}, loop)
        before = len(buffer.getvalue())
        await asyncio.sleep(0)
        return before, len(buffer.getvalue())

    before, after = asyncio.run(burst())
    assert before == 0
    assert [line["uid"] for line in _lines(buffer)] == ["u-0", "u-1", "u-2"]
    assert after == len(buffer.getvalue())


class _RecordingFile(io.RawIOBase):
    """An unbuffered byte sink (what sys.stderr.buffer is under PYTHONUNBUFFERED) that keeps
    each write() it receives."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.writes.append(bytes(data))
        return len(data)


def test_an_unbuffered_stream_gets_one_write_per_loop_iteration(logger: logging.Logger) -> None:
    sink = _RecordingFile()
    logs.configure("json", stream=io.TextIOWrapper(sink, write_through=True))  # type: ignore[type-var]
    decisions = logs.DecisionLog(logger)

    async def bursts() -> None:
        loop = asyncio.get_running_loop()
        for burst in range(2):
            for i in range(3):
                decisions.info("admission injected", {"uid": f"u-{burst}-{i}"}, loop)
            await asyncio.sleep(0)

    asyncio.run(bursts())
    assert len(sink.writes) == 2
    uids = [json.loads(line)["uid"] for data in sink.writes for line in data.splitlines()]
    assert uids == [f"u-{burst}-{i}" for burst in range(2) for i in range(3)]


def test_text_format_and_levels_take_the_logging_path(logger: logging.Logger) -> None:
    stream = io.StringIO()
    logs.configure("text", stream=stream)
    logs.DecisionLog(logger).info("admission injected", dict(FIELDS), None)
    assert stream.getvalue().startswith("info    admission injected uid=u-1 namespace=shop")
    stream = io.StringIO()
    logs.configure("json", level="warning", stream=stream)
    logs.DecisionLog(logger).info("admission injected", dict(FIELDS), None)
    assert stream.getvalue() == ""

"""Logging set-up: one JSON object per line (for log pipelines) or plain text (for humans).

Structured fields travel in ``extra=`` and become top-level keys of the JSON line. Decision
lines, one per admission review, take a shorter road to the same handler (``DecisionLog``).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, Final, TextIO

import orjson

_STANDARD: Final = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "color_message"}  # uvicorn adds color_message for its own console
)


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


def _timestamp(created: float, msecs: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(msecs):03d}Z"


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _timestamp(record.created, record.msecs),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            line["traceback"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        text = f"{record.levelname.lower():7} {record.getMessage()}" + (
            f" {extras}" if extras else ""
        )
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def configure(log_format: str, level: str = "info", stream: TextIO | None = None) -> None:
    """Route the injector's and uvicorn's loggers to one handler in the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if log_format == "json" else TextFormatter())
    for name in ("envoy_injector", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False
    # Access logs would duplicate the decision line, which carries more.
    logging.getLogger("uvicorn.access").disabled = True


def _only_handler(logger: logging.Logger) -> logging.Handler | None:
    """The one handler a record of ``logger`` would reach (as Logger.callHandlers walks), if one."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found += current.handlers
        if not current.propagate:
            break
        current = current.parent
    return found[0] if len(found) == 1 else None


class DecisionLog:
    """Writes the one-per-review decision line for ``logger``.

    With the JSON format and the one stream handler ``configure`` installs, the line is the
    same JSON object the handler would write, built without a LogRecord, caller lookup or
    formatter (about 15 µs a line through logging). Lines are collected here and written to the
    stream's byte layer together once the event loop has run the current batch of callbacks:
    under load one write() carries many lines, while a lone line still leaves within the same
    loop iteration. The stream's own buffer cannot be relied on for that: with
    PYTHONUNBUFFERED (set in the image) it has none, and every line would be a system call.
    Any other set-up (text format, other handlers, filters) takes the logging path.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self.logger = logger
        self._second = -1
        self._prefix = ""
        self._pending: list[bytes] = []  # lines not written yet, for the handler below
        self._pending_handler: logging.StreamHandler[TextIO] | None = None

    def _time(self, now: float) -> str:
        second = int(now)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 1000):03d}Z"

    def info(
        self, message: str, fields: dict[str, Any], loop: asyncio.AbstractEventLoop | None
    ) -> None:
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        handler = _only_handler(logger)
        if (
            type(handler) is not logging.StreamHandler
            or type(handler.formatter) is not JSONFormatter
            or handler.filters
            or handler.level > logging.INFO
            or logger.filters
        ):
            logger.info(message, extra=fields)
            return
        line = orjson.dumps(
            {
                "time": self._time(time.time()),
                "level": "info",
                "logger": logger.name,
                "message": message,
                **fields,
            },
            default=str,
            option=orjson.OPT_APPEND_NEWLINE,
        )
        if loop is not None and getattr(handler.stream, "buffer", None) is not None:
            if self._pending_handler is not handler:
                self._flush()
                self._pending_handler = handler
                loop.call_soon(self._flush)
            self._pending.append(line)
            return
        self._write(handler, line)

    def _flush(self) -> None:
        handler, self._pending_handler = self._pending_handler, None
        if handler is not None and self._pending:
            lines = b"".join(self._pending)
            self._pending.clear()
            self._write(handler, lines)

    @staticmethod
    def _write(handler: logging.StreamHandler[TextIO], data: bytes) -> None:
        stream = handler.stream
        raw = getattr(stream, "buffer", None)
        handler.acquire()
        try:
            if raw is None:
                stream.write(data.decode())
                stream.flush()
            else:
                stream.flush()  # what went through the text layer first, in order
                raw.write(data)
                raw.flush()
        finally:
            handler.release()

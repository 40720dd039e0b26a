"""The CLI's logging setup: readable text lines, or one JSON object per line.

``--log-format json`` writes each record as a JSON object on stderr, for log shippers that
parse rather than grep::

    {"time": "2030-01-01T00:00:01.042Z", "level": "INFO", "logger": "arcoflow.runtime",
     "message": "tick heartbeat:2030-01-01T00:01:00Z TRIGGERED: ..."}

with ``exception`` (the formatted traceback) when the record carries one. Text is the default.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Final, Literal, TextIO

__all__ = ["LOG_FORMATS", "JsonFormatter", "LogFormat", "configure_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: Final[tuple[LogFormat, ...]] = ("text", "json")
_TEXT: Final = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO-8601, milliseconds), level, logger,
    message, and exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        data: dict[str, Any] = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False, default=str)


def configure_logging(
    verbosity: int, log_format: LogFormat = "text", stream: TextIO | None = None
) -> None:
    """Log to ``stream`` (stderr): WARNING, INFO with ``verbosity`` 1, DEBUG from 2.

    Like :func:`logging.basicConfig`, it does nothing when the root logger already has
    handlers (an embedding application's, or pytest's), so it never overrides theirs."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT))
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(max(verbosity, 0), 2)]
    logging.basicConfig(level=level, handlers=[handler])

"""Time as arcoflow writes and reads it, in one place: epoch seconds inside, ISO-8601 UTC text
ending in ``Z`` outside (tick ids, run keys, JSON answers, CLI and HTTP arguments).

>>> iso(1_893_456_000)
'2030-01-01T00:00:00Z'
>>> parse_iso("2030-01-01T01:00:00+01:00")
1893456000
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from .errors import InputError
from .values import check_time

__all__ = ["When", "epoch", "iso", "parse_iso"]

#: An instant as the kernel's commands take it: epoch seconds, an aware datetime, or ``None``
#: for the wall clock.
When = int | datetime | None


def epoch(now: When, field: str = "now") -> int:
    """Epoch seconds from an int, an aware datetime, or ``None`` (the wall clock), within
    :data:`~arcoflow.kernel.values.MIN_TIME` .. :data:`~arcoflow.kernel.values.MAX_TIME`."""
    return check_time(int(time.time()) if now is None else now, field)


def iso(at: int) -> str:
    """``2026-11-22T06:30:00Z`` for epoch seconds."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(text: str, field: str = "time", *, naive_is_utc: bool = True) -> int:
    """Epoch seconds from ISO-8601 text (``2026-03-08T07:00:00Z``; offsets allowed), within the
    range every time must lie in (:func:`~arcoflow.kernel.values.check_time`). A time without an
    offset is read as UTC, or refused when ``naive_is_utc`` is false (an HTTP body must say its
    offset). Bad text raises :class:`~arcoflow.kernel.errors.InputError` naming ``field``."""
    try:
        moment = datetime.fromisoformat(text)
    except (TypeError, ValueError):
        raise InputError(
            f"{field}: {text!r:.80} is not an ISO-8601 time such as 2026-03-08T07:00:00Z"
        ) from None
    if moment.tzinfo is None:
        if not naive_is_utc:
            raise InputError(f"{field}: {text!r:.80} needs an offset (Z or +HH:MM)")
        moment = moment.replace(tzinfo=UTC)
    return check_time(moment, field)

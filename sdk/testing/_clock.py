"""A controllable clock for tests: the kernel never reads one, so tests pass ``clock.now``."""

from __future__ import annotations

from datetime import UTC, datetime

from arcoflow.kernel import InputError, iso, parse_duration, parse_iso

__all__ = ["Clock"]

#: Where a :class:`Clock` starts unless told otherwise: a fixed, ordinary instant (a Monday).
DEFAULT_START = 1_893_456_000  # 2030-01-01T00:00:00Z


class Clock:
    """Epoch seconds that move only when told to.

    Call it (or read :attr:`now`) wherever arcoflow takes ``now``; pass it as the ``clock`` of a
    :class:`~arcoflow.sdk.Runtime`.

    >>> clock = Clock("2030-01-01T00:00:00Z")
    >>> clock.advance("5m")
    1893456300
    >>> clock.iso()
    '2030-01-01T00:05:00Z'
    """

    def __init__(self, start: int | str | datetime = DEFAULT_START) -> None:
        self.now = _epoch(start)

    def __call__(self) -> int:
        return self.now

    def advance(self, by: int | str) -> int:
        """Move forward by a duration (``"90s"``, ``"5m"``, ``"6h"``, ``"7d"`` or seconds);
        returns the new time."""
        self.now += parse_duration(by)
        return self.now

    def set(self, to: int | str | datetime) -> int:
        """Jump to an instant (an epoch, an ISO-8601 string or an aware datetime), even backwards:
        tests of clock skew need that."""
        self.now = _epoch(to)
        return self.now

    def datetime(self) -> datetime:
        """The current time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now, UTC)

    def iso(self) -> str:
        """The current time as ``YYYY-MM-DDTHH:MM:SSZ``."""
        return iso(self.now)

    def __repr__(self) -> str:
        return f"Clock({self.iso()!r})"


def _epoch(value: int | str | datetime) -> int:
    if isinstance(value, bool):
        raise InputError(f"time {value!r} must be epoch seconds, ISO-8601 or an aware datetime")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return parse_iso(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InputError(f"{value.isoformat()} has no time zone; pass an aware datetime")
        return int(value.timestamp())
    raise InputError(f"time {value!r} must be epoch seconds, ISO-8601 or an aware datetime")

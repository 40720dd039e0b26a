"""The reference tick enumeration: an oracle for :mod:`arcoflow.kernel.cron`.

Written independently of the kernel and of croniter, and deliberately plain, so that a reader
can check it against the DST rules in DESIGN.md ("Time zones") line by line:

* a tiny five-field cron matcher (``*``, lists, ranges, steps, month and weekday names, the
  ``@hourly``-style aliases, and the classic-cron rule for day-of-month and day-of-week: when
  both are restricted a day matches if *either* does; when either begins with ``*`` both must);
* **absolute mode** (hour field begins with ``*``): walk UTC minute by minute; a minute is a tick
  iff the local wall time at that instant matches. A wall time inside a gap is never shown by
  the clock, so it never fires; a repeated wall time is shown twice, so it fires twice;
* **fixed mode** (any other hour field): enumerate matching *naive* wall times day by day, find
  every UTC instant whose local wall time equals it (zero, one or two), and apply the policy:
  one instant -> that instant; two -> ``dst_fold`` (``first`` / ``second`` / ``both``);
  none -> ``dst_gap`` (``transition``: the first instant after the gap; ``shift``: the wall
  time plus the gap length; ``skip``: a ``run=False`` tick at the transition instant). Then sort
  by instant and keep one tick per instant: one that runs if any does (a skipped 02:00 never
  hides a real 03:00), else the first wall time's.

Cost: absolute mode converts every minute of the window, about 7 ms per day (2.5 s per year);
fixed mode costs about 50 zone conversions per matching wall time, plus up to 2 x 3600 on a gap
day (about 0.2 ms per daily tick). Use windows of days, not years. That slowness is why the
kernel has a fast path and why this module is only an oracle for tests.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from zoneinfo import ZoneInfo

__all__ = ["RefTick", "reference_ticks"]


class RefTick(NamedTuple):
    """One reference tick: the UTC instant (epoch seconds) and whether the policy runs it."""

    at: int
    run: bool


_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]


class _Cron(NamedTuple):
    minutes: frozenset[int]
    hours: frozenset[int]
    doms: frozenset[int]
    months: frozenset[int]
    dows: frozenset[int]  # 0 = Sunday (7 is folded into 0)
    dom_star: bool
    dow_star: bool
    absolute: bool


def _number(text: str, names: list[str], offset: int) -> int:
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + offset
    if not text.isdigit():
        raise ValueError(f"not a number: {text!r}")
    return int(text)


def _field(text: str, lo: int, hi: int, names: list[str], offset: int) -> frozenset[int]:
    """Expand one cron field into the set of values it allows, within [lo, hi]."""
    values: set[int] = set()
    for item in text.split(","):
        part, step = item, 1
        if "/" in item:
            part, step_text = item.split("/")
            step = int(step_text)
            if step < 1:
                raise ValueError(f"bad step in {text!r}")
        if part == "*":
            first, last = lo, hi
        elif "-" in part:
            a, b = part.split("-")
            first, last = _number(a, names, offset), _number(b, names, offset)
        else:
            first = _number(part, names, offset)
            # "5/15" means "from 5 to the end, every 15", as in classic cron.
            last = hi if step != 1 else first
        if not lo <= first <= last <= hi:
            raise ValueError(f"field {text!r} is out of range {lo}-{hi}")
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _parse(cron: str) -> _Cron:
    expr = _ALIASES.get(cron.strip().lower(), cron.strip())
    fields = expr.split()
    if len(fields) != 5:
        raise ValueError(f"expected five fields: {cron!r}")
    minute, hour, dom, month, dow = fields
    dows = _field(dow, 0, 7, _DAYS, 0)
    return _Cron(
        minutes=_field(minute, 0, 59, [], 0),
        hours=_field(hour, 0, 23, [], 0),
        doms=_field(dom, 1, 31, [], 0),
        months=_field(month, 1, 12, _MONTHS, 1),
        dows=frozenset(d % 7 for d in dows),
        dom_star=dom.startswith("*"),
        dow_star=dow.startswith("*"),
        absolute=hour.startswith("*"),
    )


def _day_matches(c: _Cron, day: date) -> bool:
    if day.month not in c.months:
        return False
    dom_ok = day.day in c.doms
    dow_ok = day.isoweekday() % 7 in c.dows
    if c.dom_star or c.dow_star:
        return dom_ok and dow_ok
    return dom_ok or dow_ok


def _matches(c: _Cron, wall: datetime) -> bool:
    return wall.minute in c.minutes and wall.hour in c.hours and _day_matches(c, wall.date())


def _local(tz: ZoneInfo, at: int) -> datetime:
    """The naive local wall time at the UTC instant ``at``."""
    return datetime.fromtimestamp(at, UTC).astimezone(tz).replace(tzinfo=None)


def _offset(tz: ZoneInfo, at: int) -> int:
    off = datetime.fromtimestamp(at, UTC).astimezone(tz).utcoffset()
    assert off is not None
    return int(off.total_seconds())


def _naive_seconds(wall: datetime) -> int:
    """A naive wall time as seconds on a UTC-like line (only differences and equality matter)."""
    return int(wall.replace(tzinfo=UTC).timestamp())


def _instants_of(tz: ZoneInfo, wall: datetime) -> list[int]:
    """Every UTC instant whose local wall time is ``wall``, ascending (zero, one or two)."""
    w = _naive_seconds(wall)
    # The zone's offsets near this wall time: sample every hour for a day either side. No zone
    # keeps an offset for less than an hour, so no offset in play can be missed.
    offsets = {_offset(tz, w + k * 3600) for k in range(-26, 27)}
    return sorted({w - off for off in offsets if _offset(tz, w - off) == off})


def _absolute(c: _Cron, tz: ZoneInfo, start: int, end: int) -> list[RefTick]:
    ticks: list[RefTick] = []
    at = (start // 60 + 1) * 60  # the first whole UTC minute strictly after start
    while at <= end:
        if _matches(c, _local(tz, at)):
            ticks.append(RefTick(at, True))
        at += 60
    return ticks


def _fixed(
    c: _Cron, tz: ZoneInfo, dst_gap: str, dst_fold: str, start: int, end: int
) -> list[RefTick]:
    # Local dates that can hold a tick in (start, end]: a day of margin covers any DST move.
    first_day = _local(tz, start).date() - timedelta(days=1)
    last_day = _local(tz, end).date() + timedelta(days=1)
    found: list[tuple[int, datetime, bool]] = []  # (instant, wall time, run)
    day = first_day
    while day <= last_day:
        if _day_matches(c, day):
            for hour in sorted(c.hours):
                for minute in sorted(c.minutes):
                    wall = datetime(day.year, day.month, day.day, hour, minute)
                    found.extend((at, wall, run) for at, run in _map(tz, wall, dst_gap, dst_fold))
        day += timedelta(days=1)
    # Sort by instant; on equal instants a running tick comes first, then the earlier wall time,
    # and the first is kept.
    found.sort(key=lambda item: (item[0], not item[2], item[1]))
    ticks: list[RefTick] = []
    for at, _wall, run in found:
        if start < at <= end and (not ticks or ticks[-1].at != at):
            ticks.append(RefTick(at, run))
    return ticks


def _map(tz: ZoneInfo, wall: datetime, dst_gap: str, dst_fold: str) -> list[tuple[int, bool]]:
    """The policy's instants for one naive wall time, each with its run flag."""
    instants = _instants_of(tz, wall)
    if len(instants) == 1:
        return [(instants[0], True)]
    if len(instants) == 2:  # the wall time occurs twice (fall back)
        if dst_fold == "first":
            return [(instants[0], True)]
        if dst_fold == "second":
            return [(instants[1], True)]
        if dst_fold == "both":
            return [(instants[0], True), (instants[1], True)]
        raise ValueError(f"unknown dst_fold {dst_fold!r}")
    if instants:
        raise ValueError(f"{wall} maps to {len(instants)} instants in {tz}")
    # The wall time does not exist (spring forward). The offsets either side of the gap:
    w = _naive_seconds(wall)
    before = _offset(tz, w - 86400)
    after = _offset(tz, w + 86400)
    gap = after - before
    if dst_gap == "shift":  # wall time + gap length, read on the clock after the gap
        return [(w + gap - after, True)]
    # The transition: the first instant whose wall time is past ``wall``. Walk second by second
    # from the instant the wall time would have had under the new offset (still before the gap).
    at = w - after
    while _local(tz, at) <= wall:
        at += 1
    if dst_gap == "transition":
        return [(at, True)]
    if dst_gap == "skip":
        return [(at, False)]
    raise ValueError(f"unknown dst_gap {dst_gap!r}")


def reference_ticks(
    cron: str, timezone: str, dst_gap: str, dst_fold: str, start: int, end: int
) -> list[RefTick]:
    """Every tick of ``cron`` in ``timezone`` with ``start < at <= end`` (UTC epoch seconds).

    ``dst_gap`` is ``"transition"``, ``"shift"`` or ``"skip"``; ``dst_fold`` is ``"first"``,
    ``"second"`` or ``"both"``; both apply only when the hour field is fixed.

    >>> [t.at for t in reference_ticks("0 * * * *", "UTC", "transition", "first", 0, 7200)]
    [3600, 7200]
    """
    c = _parse(cron)
    tz = ZoneInfo(timezone)
    if c.absolute:
        return _absolute(c, tz, start, end)
    return _fixed(c, tz, dst_gap, dst_fold, start, end)

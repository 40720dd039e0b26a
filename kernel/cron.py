"""Cron tick math across time zones and DST, without trusting the cron library at transitions.

The walk has two steps, because each step is easy to get right on its own:

1. enumerate matching **naive wall times** with croniter (naive arithmetic has no DST to break);
2. map each wall time to UTC instants (epoch seconds) by the schedule's DST policy.

Instants are the identity of a tick: ints, never aware datetimes (two fall-back instants an
hour apart compare *equal* as aware datetimes in Python).

Two modes, chosen from the hour field:

* **fixed** (hour is a number, list or range: ``30 1 * * *``): the schedule names a wall time.
  A wall time inside a spring-forward gap follows ``dst_gap`` (``transition`` runs at the first
  instant after the gap, ``shift`` keeps the distance, ``skip`` records a skipped tick); a wall
  time that occurs twice on fall-back day follows ``dst_fold`` (``first``, ``second``, ``both``).
* **absolute** (hour begins with ``*``: ``*/15 * * * *``, ``0 */2 * * *``): the schedule follows
  the clock as it runs. A wall time inside a gap does not occur, so it does not fire; a repeated
  wall time fires once per occurrence. No stall, no long gap.

Far from a transition the mapping is the identity shifted by one offset, so the fast path costs
one wall-time step. Near a transition (within :data:`MARGIN`) the slow path walks the wall times
around it and keeps the nearest instant, which handles every policy, including wall times whose
instants are not in wall order (``shift``, ``both``).

Crons written with ``*``, numbers, ranges and steps (hourly, daily, weekly, weekdays, lists;
not names, ``L``, ``W``, ``#``) skip croniter altogether (:class:`_Shape`): the next wall time is
calendar arithmetic on day numbers, and the zone's offset and the span it holds over come from a
per-zone table of transitions (:func:`_span`), so a tick away from a transition costs a few
bisections. Near a transition they take the same slow walk, stepping wall times by the same
arithmetic. :func:`_general_next_tick` and :func:`_general_prev_tick` are the croniter walk
alone, kept so the tests can prove both give the same ticks.
"""

from __future__ import annotations

import re
import threading
from bisect import bisect_left, bisect_right
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Final, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, croniter

from .errors import InvalidCron, UnknownTimezone

__all__ = [
    "MARGIN",
    "CronExpr",
    "DstFold",
    "DstGap",
    "Tick",
    "next_tick",
    "parse_cron",
    "prev_tick",
    "upcoming",
    "zone",
]

#: The largest DST shift the walk allows for. Every transition in the zone database since 1970
#: shifts the clock by at most 2 hours, except calendar-date changes such as Samoa's skipped day
#: in 2011, which only affect schedules that name a wall time on that very day.
MARGIN: Final = 3 * 3600
_WEEK: Final = 7 * 86400
_EPOCH: Final = datetime(1970, 1, 1)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()
_DAY: Final = 86400
#: How far the arithmetic looks for a matching date before croniter takes over (only dates
#: such as 29 February are further apart).
_DAY_SEARCH: Final = 400
#: The zone tables of :func:`_span` come in buckets of ~388 days, each found by probing the
#: offset every 6 hours (transitions are months apart; the walk's own check assumes a week).
_BUCKET: Final = 1 << 25
_PROBE: Final = 6 * 3600
#: The buckets whose tables (a bucket either side) stay inside datetime's years 1 to 9999;
#: instants outside take the croniter walk.
_TABLED: Final = range(
    (int((datetime.min - _EPOCH).total_seconds()) + 2 * _DAY) // _BUCKET + 2,
    (int((datetime.max - _EPOCH).total_seconds()) - 2 * _DAY) // _BUCKET - 2,
)
_PART: Final = r"(?:\*|\d+(?:-\d+)?)(?:/\d+)?"
_PLAIN: Final = re.compile(rf"{_PART}(?:,{_PART})*")
_ALIASES: Final = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


class DstGap(StrEnum):
    """What a fixed wall time does on the day it does not exist (spring forward)."""

    TRANSITION = "transition"  # run at the first instant after the gap (02:30 -> 03:00)
    SHIFT = "shift"  # keep the distance (02:30 -> 03:30)
    SKIP = "skip"  # no run that day; a SKIPPED tick says why


class DstFold(StrEnum):
    """What a fixed wall time does on the day it occurs twice (fall back)."""

    FIRST = "first"
    SECOND = "second"
    BOTH = "both"


class Tick(NamedTuple):
    """One scheduled instant: UTC epoch seconds, the wall time it stands for, and why."""

    at: int
    wall: datetime
    dst: str | None  # a human annotation when DST moved, repeated or skipped the wall time
    run: bool  # False when the policy records the tick as skipped (dst_gap = "skip")


class CronExpr(NamedTuple):
    """A validated five-field cron expression (aliases expanded)."""

    expr: str
    absolute: bool  # hour field begins with "*": follow absolute time through transitions


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``, or :class:`UnknownTimezone`."""
    try:
        return _zone(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError) as exc:
        raise UnknownTimezone(
            f"unknown zone {name!r} (use an IANA name such as 'Europe/London')"
        ) from exc


@lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    if not name or name.startswith(("/", ".")) or ".." in name:
        raise ValueError(name)
    return ZoneInfo(name)


@lru_cache(maxsize=1024)
def parse_cron(text: str) -> CronExpr:
    """Validate ``text``: five fields or an ``@hourly``-style alias, and it must ever fire."""
    expr = _ALIASES.get(text.strip().lower(), text.strip())
    fields = expr.split()
    if len(fields) != 5:
        raise InvalidCron(
            f"cron {text!r} has {len(fields)} fields; expected 5 "
            "(minute hour day-of-month month day-of-week) or an alias such as '@hourly'"
        )
    try:
        it = croniter(expr, datetime(2000, 1, 1), day_or=_day_or(expr))
        it.get_next(datetime)
    except CroniterBadDateError as exc:  # a ValueError too, so it must be caught first
        raise InvalidCron(f"cron {text!r} never fires (no such date)") from exc
    except (CroniterBadCronError, ValueError, KeyError) as exc:
        raise InvalidCron(f"cron {text!r} does not parse: {exc}") from exc
    return CronExpr(expr, fields[1].startswith("*"))


def _day_or(expr: str) -> bool:
    """Classic (Vixie) cron: a day matches if day-of-month *or* day-of-week does when both are
    restricted, and must match both when either field begins with ``*``. croniter's default
    only treats a bare ``*`` as unrestricted, so ``0 0 */2 * 1`` would fire on every odd day
    *or* Monday instead of odd-day Mondays."""
    fields = expr.split()
    return not (fields[2].startswith("*") or fields[4].startswith("*"))


# croniter objects are expensive to build (~0.3 ms) and stateful, so each thread keeps one per
# expression and moves it with set_current.
_local = threading.local()


def _walker(expr: str) -> croniter:
    cache: dict[str, croniter] | None = getattr(_local, "walkers", None)
    if cache is None:
        cache = _local.walkers = {}
    it = cache.get(expr)
    if it is None:
        if len(cache) > 256:
            cache.clear()
        it = cache[expr] = croniter(expr, _EPOCH, day_or=_day_or(expr))
    return it


def _wall_next(expr: str, wall: int) -> int:
    """The first matching naive wall time strictly after ``wall`` (wall seconds)."""
    it = _walker(expr)
    it.set_current(_EPOCH + timedelta(seconds=wall), force=True)
    return _wall_int(it.get_next(datetime))


def _wall_prev(expr: str, wall: int) -> int:
    """The last matching naive wall time strictly before ``wall``."""
    it = _walker(expr)
    it.set_current(_EPOCH + timedelta(seconds=wall), force=True)
    return _wall_int(it.get_prev(datetime))


def _wall_int(dt: datetime) -> int:
    return (dt - _EPOCH) // timedelta(seconds=1)


def _offset(tz: ZoneInfo, at: int) -> int:
    off = datetime.fromtimestamp(at, UTC).astimezone(tz).utcoffset()
    assert off is not None
    return off // timedelta(seconds=1)


def _steady(tz: ZoneInfo, lo: int, hi: int) -> bool:
    """True when the zone's offset is the same over all of [lo, hi] (no transition there)."""
    first = _offset(tz, lo)
    at = lo + _WEEK
    while at < hi:  # transitions are months apart; a weekly probe cannot step over two
        if _offset(tz, at) != first:
            return False
        at += _WEEK
    return _offset(tz, hi) == first


class _Shape(NamedTuple):
    """A cron whose wall times are plain calendar arithmetic: every field written with ``*``,
    numbers, ranges and steps (no names, ``L``, ``W``, ``#`` or ``?``)."""

    expr: str
    times: tuple[int, ...]  # the matching seconds after midnight, ascending
    doms: frozenset[int] | None  # None: the field is "*"
    months: frozenset[int] | None
    dows: frozenset[int] | None  # cron weekdays, 0 = Sunday (7 folded onto 0)
    day_or: bool  # see _day_or

    def matches(self, day: int) -> bool:
        """Whether the naive day ``day`` (days since 1970-01-01) matches the day fields, with
        classic cron's rule (see :func:`_day_or`): either day field when both are restricted."""
        dow = self.dows is None or (day + 4) % 7 in self.dows  # 1970-01-01 was a Thursday
        if self.doms is None and self.months is None:
            return dow
        when = date.fromordinal(_EPOCH_ORDINAL + day)
        if self.months is not None and when.month not in self.months:
            return False
        dom = self.doms is None or when.day in self.doms
        return (dom or dow) if self.day_or else (dom and dow)

    def after(self, wall: int) -> int:
        """The first matching wall time strictly after ``wall`` (as :func:`_wall_next`)."""
        day, second = divmod(wall, _DAY)
        if self.matches(day):
            i = bisect_right(self.times, second)
            if i < len(self.times):
                return day * _DAY + self.times[i]
        for later in range(day + 1, day + _DAY_SEARCH):
            if self.matches(later):
                return later * _DAY + self.times[0]
        return _wall_next(self.expr, wall)  # a rare date (29 February): let croniter find it

    def before(self, wall: int) -> int:
        """The last matching wall time strictly before ``wall`` (as :func:`_wall_prev`)."""
        day, second = divmod(wall, _DAY)
        if self.matches(day):
            i = bisect_left(self.times, second)
            if i:
                return day * _DAY + self.times[i - 1]
        for earlier in range(day - 1, day - _DAY_SEARCH, -1):
            if self.matches(earlier):
                return earlier * _DAY + self.times[-1]
        return _wall_prev(self.expr, wall)


def _values(field: str, lo: int, hi: int) -> frozenset[int] | None:
    """The numbers a field names when written with ``*``, numbers, ranges and steps (``*/15``,
    ``1-5``, ``8-18/2``, lists of these), or None for any other syntax (names, ``L``, ``W``...)."""
    if not _PLAIN.fullmatch(field):
        return None
    found: set[int] = set()
    for part in field.split(","):
        span, _, step = part.partition("/")
        if span == "*":
            a, b = lo, hi
        else:
            first, _, last = span.partition("-")
            a, b = int(first), int(last or first)
            if step and not last:  # "5/15": croniter reads it as 5-59/15
                b = hi
        if not lo <= a <= b <= hi or (step and int(step) < 1):
            return None
        found.update(range(a, b + 1, int(step or 1)))
    return frozenset(found)


@lru_cache(maxsize=1024)
def _shape(expr: str) -> _Shape | None:
    """The arithmetic form of ``expr``, or None for the syntax it does not cover."""
    minute, hour, dom, month, dow = expr.split()
    minutes, hours = _values(minute, 0, 59), _values(hour, 0, 23)
    doms = None if dom == "*" else _values(dom, 1, 31)
    months = None if month == "*" else _values(month, 1, 12)
    dows = None if dow == "*" else _values(dow, 0, 7)
    if (
        minutes is None
        or hours is None
        or (doms is None and dom != "*")
        or (months is None and month != "*")
        or (dows is None and dow != "*")
    ):
        return None
    times = tuple(sorted(h * 3600 + m * 60 for h in hours for m in minutes))
    weekdays = None if dows is None else frozenset(d % 7 for d in dows)
    return _Shape(expr, times, doms, months, weekdays, _day_or(expr))


@lru_cache(maxsize=4096)
def _transitions(tz: ZoneInfo, bucket: int) -> tuple[int, ...]:
    """The instants in (start, end] of the table bucket ``bucket`` at which the zone's offset
    changes (each the first second with the new offset). Offsets are probed every
    :data:`_PROBE` seconds and bisected to the second where they differ."""
    at = bucket * _BUCKET
    end = at + _BUCKET
    found: list[int] = []
    off = _offset(tz, at)
    while at < end:
        probe = min(at + _PROBE, end)
        if (now := _offset(tz, probe)) != off:
            found.append(_gap_end(tz, at, probe))
            off = now
        at = probe
    return tuple(found)


@lru_cache(maxsize=4096)
def _table(tz: ZoneInfo, bucket: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The transitions over the buckets ``bucket - 1`` to ``bucket + 1``, and the offsets
    before, between and after them."""
    changes = sum((_transitions(tz, b) for b in (bucket - 1, bucket, bucket + 1)), ())
    offsets = (_offset(tz, (bucket - 1) * _BUCKET), *(_offset(tz, at) for at in changes))
    return changes, offsets


def _span(tz: ZoneInfo, at: int) -> tuple[int, int, int]:
    """The zone's offset at ``at``, and a span [start, end) around ``at`` over which it holds
    (cut where the table ends, at least one bucket away)."""
    bucket = at // _BUCKET
    changes, offsets = _table(tz, bucket)
    i = bisect_right(changes, at)
    start = changes[i - 1] if i else (bucket - 1) * _BUCKET
    end = changes[i] if i < len(changes) else (bucket + 2) * _BUCKET
    return offsets[i], start, end


def _instants(cron: CronExpr, tz: ZoneInfo, wall: int, gap: DstGap, fold: DstFold) -> list[Tick]:
    """Map one naive wall time to its ticks under the policy."""
    naive = _EPOCH + timedelta(seconds=wall)
    early = int(naive.replace(tzinfo=tz, fold=0).timestamp())
    late = int(naive.replace(tzinfo=tz, fold=1).timestamp())
    if early == late:
        return [Tick(early, naive, None, True)]
    clock = naive.strftime("%H:%M")
    if early < late:  # occurs twice: fall back
        first = Tick(early, naive, f"{clock} occurs twice; first occurrence", True)
        second = Tick(late, naive, f"{clock} occurs twice; second occurrence", True)
        if cron.absolute or fold is DstFold.BOTH:
            return [first, second]
        return [first] if fold is DstFold.FIRST else [second]
    # Does not exist: spring forward. PEP 495 maps fold=0 with the offset before the gap (later
    # instant, the "shift" answer) and fold=1 with the offset after it (an earlier instant).
    if cron.absolute:
        return []
    if gap is DstGap.SHIFT:
        return [Tick(early, naive, f"{clock} does not exist; shifted by the gap", True)]
    at = _gap_end(tz, late, early)
    if gap is DstGap.SKIP:
        return [Tick(at, naive, f"{clock} does not exist; skipped (dst_gap=skip)", False)]
    return [Tick(at, naive, f"{clock} does not exist; run at the end of the gap", True)]


def _gap_end(tz: ZoneInfo, lo: int, hi: int) -> int:
    """The transition instant in (lo, hi]: the first second with the post-gap offset."""
    after = _offset(tz, hi)
    while lo + 1 < hi:
        mid = (lo + hi) // 2
        if _offset(tz, mid) == after:
            hi = mid
        else:
            lo = mid
    return hi


def _before(a: Tick, b: Tick) -> bool:
    """Tick order: by instant; at one instant (two wall times mapped there by the gap policy)
    a tick that runs comes first, so a skipped 02:00 never hides a real 03:00, then the
    earlier wall time."""
    return (a.at, not a.run, a.wall) < (b.at, not b.run, b.wall)


def next_tick(
    cron: CronExpr,
    tz: ZoneInfo,
    after: int,
    gap: DstGap = DstGap.TRANSITION,
    fold: DstFold = DstFold.FIRST,
) -> Tick:
    """The first tick strictly after the instant ``after`` (UTC epoch seconds)."""
    shape = _shape(cron.expr)
    if shape is None or after // _BUCKET not in _TABLED:
        return _general_next_tick(cron, tz, after, gap, fold)
    off, start, end = _span(tz, after)
    wall = shape.after(after + off)
    if start <= after - MARGIN and wall - off + MARGIN < end:
        return Tick(wall - off, _EPOCH + timedelta(seconds=wall), None, True)
    return _walk_next(cron, tz, after, gap, fold, shape.after)


def prev_tick(
    cron: CronExpr,
    tz: ZoneInfo,
    before: int,
    gap: DstGap = DstGap.TRANSITION,
    fold: DstFold = DstFold.FIRST,
) -> Tick:
    """The last tick strictly before the instant ``before``."""
    shape = _shape(cron.expr)
    if shape is None or before // _BUCKET not in _TABLED:
        return _general_prev_tick(cron, tz, before, gap, fold)
    off, start, end = _span(tz, before)
    wall = shape.before(before + off)
    if start <= wall - off - MARGIN and before + MARGIN < end:
        return Tick(wall - off, _EPOCH + timedelta(seconds=wall), None, True)
    return _walk_prev(cron, tz, before, gap, fold, shape.before)


def _general_next_tick(
    cron: CronExpr, tz: ZoneInfo, after: int, gap: DstGap, fold: DstFold
) -> Tick:
    """:func:`next_tick` by the croniter walk alone (every cron; the fast path's reference)."""
    return _walk_next(cron, tz, after, gap, fold, lambda wall: _wall_next(cron.expr, wall))


def _general_prev_tick(
    cron: CronExpr, tz: ZoneInfo, before: int, gap: DstGap, fold: DstFold
) -> Tick:
    """:func:`prev_tick` by the croniter walk alone."""
    return _walk_prev(cron, tz, before, gap, fold, lambda wall: _wall_prev(cron.expr, wall))


def _walk_next(
    cron: CronExpr,
    tz: ZoneInfo,
    after: int,
    gap: DstGap,
    fold: DstFold,
    step: Callable[[int], int],
) -> Tick:
    """The walk of :func:`next_tick`, stepping wall times with ``step`` (as :func:`_wall_next`)."""
    off = _offset(tz, after)
    wall = step(after + off)
    if _steady(tz, after - MARGIN, wall - off + MARGIN):
        return Tick(wall - off, _EPOCH + timedelta(seconds=wall), None, True)
    best: Tick | None = None
    wall = step(after + off - MARGIN - 1)
    while best is None or wall <= best.at + _offset(tz, best.at) + MARGIN:
        for tick in _instants(cron, tz, wall, gap, fold):
            if tick.at > after and (best is None or _before(tick, best)):
                best = tick
        wall = step(wall)
    return best


def _walk_prev(
    cron: CronExpr,
    tz: ZoneInfo,
    before: int,
    gap: DstGap,
    fold: DstFold,
    step: Callable[[int], int],
) -> Tick:
    """The walk of :func:`prev_tick`, stepping wall times with ``step`` (as :func:`_wall_prev`)."""
    off = _offset(tz, before)
    wall = step(before + off)
    if _steady(tz, wall - off - MARGIN, before + MARGIN):
        return Tick(wall - off, _EPOCH + timedelta(seconds=wall), None, True)
    best: Tick | None = None
    wall = step(before + off + MARGIN + 1)
    while best is None or wall >= best.at + _offset(tz, best.at) - MARGIN:
        for tick in _instants(cron, tz, wall, gap, fold):
            if tick.at < before and (
                best is None or tick.at > best.at or (tick.at == best.at and _before(tick, best))
            ):
                best = tick
        wall = step(wall)
    return best


def upcoming(
    cron: CronExpr,
    tz: ZoneInfo,
    after: int,
    count: int,
    gap: DstGap = DstGap.TRANSITION,
    fold: DstFold = DstFold.FIRST,
    until: int | None = None,
) -> list[Tick]:
    """The next ``count`` ticks strictly after ``after``, in order; fewer if the next one
    is later than ``until``."""
    ticks: list[Tick] = []
    for _ in range(count):
        tick = next_tick(cron, tz, after, gap, fold)
        if until is not None and tick.at > until:
            break
        ticks.append(tick)
        after = tick.at
    return ticks

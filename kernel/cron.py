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
one croniter step. Near a transition (within :data:`MARGIN`) the slow path walks the wall times
around it and keeps the nearest instant, which handles every policy, including wall times whose
instants are not in wall order (``shift``, ``both``).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
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
    off = _offset(tz, after)
    wall = _wall_next(cron.expr, after + off)
    if _steady(tz, after - MARGIN, wall - off + MARGIN):
        return Tick(wall - off, _EPOCH + timedelta(seconds=wall), None, True)
    best: Tick | None = None
    wall = _wall_next(cron.expr, after + off - MARGIN - 1)
    while best is None or wall <= best.at + _offset(tz, best.at) + MARGIN:
        for tick in _instants(cron, tz, wall, gap, fold):
            if tick.at > after and (best is None or _before(tick, best)):
                best = tick
        wall = _wall_next(cron.expr, wall)
    return best


def prev_tick(
    cron: CronExpr,
    tz: ZoneInfo,
    before: int,
    gap: DstGap = DstGap.TRANSITION,
    fold: DstFold = DstFold.FIRST,
) -> Tick:
    """The last tick strictly before the instant ``before``."""
    off = _offset(tz, before)
    wall = _wall_prev(cron.expr, before + off)
    if _steady(tz, wall - off - MARGIN, before + MARGIN):
        return Tick(wall - off, _EPOCH + timedelta(seconds=wall), None, True)
    best: Tick | None = None
    wall = _wall_prev(cron.expr, before + off + MARGIN + 1)
    while best is None or wall >= best.at + _offset(tz, best.at) - MARGIN:
        for tick in _instants(cron, tz, wall, gap, fold):
            if tick.at < before and (
                best is None or tick.at > best.at or (tick.at == best.at and _before(tick, best))
            ):
                best = tick
        wall = _wall_prev(cron.expr, wall)
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

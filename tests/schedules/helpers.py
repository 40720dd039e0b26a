"""Shared helpers for the schedule tests: instants, zone transitions, walks, stores, invariants.

Times are UTC epoch seconds, as everywhere in the kernel. ``transitions`` finds a zone's DST
changes by scanning hour by hour and bisecting to the second, without the kernel's help.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache, partial
from typing import Any
from zoneinfo import ZoneInfo

from arcoflow.kernel import (
    Kernel,
    LmdbStore,
    MemoryStore,
    RunTemplate,
    ScheduleDefinition,
    Store,
    TickRow,
)
from arcoflow.kernel.cron import DstFold, DstGap, Tick, next_tick, parse_cron, prev_tick, zone
from arcoflow.kernel.events import RunRequested, TickRecorded

STORE_KINDS = ("memory", "lmdb")
HOUR = 3600
DAY = 86400


def ep(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> int:
    """UTC epoch seconds of a UTC calendar time."""
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp())


def local(at: int, tz: str) -> datetime:
    """The aware local time of the instant ``at`` in ``tz``."""
    return datetime.fromtimestamp(at, ZoneInfo(tz))


def hhmm(at: int, tz: str) -> str:
    return local(at, tz).strftime("%H:%M")


def offset(at: int, tz: str) -> int:
    off = local(at, tz).utcoffset()
    assert off is not None
    return int(off.total_seconds())


def local_midnight(day: date, tz: str) -> int:
    """The first instant of the local day (midnight, or the end of a gap at midnight)."""
    naive = datetime(day.year, day.month, day.day)
    return int(naive.replace(tzinfo=ZoneInfo(tz)).timestamp())


@lru_cache(maxsize=256)
def transitions(tz: str, year: int) -> tuple[int, ...]:
    """Every instant in ``year`` (UTC) where the zone's offset changes: the first second with
    the new offset."""
    out = []
    at, end = ep(year, 1, 1), ep(year + 1, 1, 1)
    while at < end:
        if offset(at, tz) != offset(at + HOUR, tz):
            lo, hi = at, at + HOUR  # offset(lo) differs from offset(hi): bisect to the second
            while lo + 1 < hi:
                mid = (lo + hi) // 2
                if offset(mid, tz) == offset(lo, tz):
                    lo = mid
                else:
                    hi = mid
            out.append(hi)
        at += HOUR
    return tuple(out)


def walk(
    cron: str,
    tz: str,
    start: int,
    end: int,
    gap: DstGap | str = DstGap.TRANSITION,
    fold: DstFold | str = DstFold.FIRST,
    *,
    back: bool = False,
) -> list[Tick]:
    """The kernel's ticks with ``start < at <= end``, oldest first: by repeated ``next_tick``
    from ``start``, or with ``back`` by repeated ``prev_tick`` from ``end + 1``."""
    c, z, how = parse_cron(cron), zone(tz), {"gap": DstGap(gap), "fold": DstFold(fold)}
    if back:
        return _repeat(partial(prev_tick, c, z, **how), end + 1, lambda at: at > start)[::-1]
    return _repeat(partial(next_tick, c, z, **how), start, lambda at: at <= end)


def _repeat(step: Callable[[int], Tick], at: int, inside: Callable[[int], bool]) -> list[Tick]:
    """``step`` applied from ``at`` to each tick it gives, while the ticks stay ``inside``."""
    ticks: list[Tick] = []
    while inside((tick := step(at)).at):
        ticks.append(tick)
        at = tick.at
    return ticks


def schedule(
    sid: str = "hourly", cron: str = "0 * * * *", target: str = "etl", **kw: Any
) -> ScheduleDefinition:
    return ScheduleDefinition(sid, cron, RunTemplate(target), **kw)


def open_store(kind: str, path: str, **options: Any) -> Store:
    if kind == "memory":
        return MemoryStore()
    return LmdbStore(path, **options)


def all_ticks(kernel: Kernel, schedule_id: str) -> list[TickRow]:
    """Every tick of a schedule, oldest first (pages through the newest-first query)."""
    out: list[TickRow] = []
    before: str | None = None
    while True:
        page = kernel.ticks(schedule_id, limit=1000, before=before)
        out += page
        if len(page) < 1000:
            out.reverse()
            return out
        before = page[-1].tick_id


def assert_exactly_once(kernel: Kernel) -> None:
    """The idempotency invariants, read from the log itself (not from rows keyed by identity,
    which could not show a duplicate): each tick id is recorded as a first attempt once and
    triggered at most once; each run key is requested in exactly one batch per tick and has one
    run; every triggered tick's runs exist; and a replay reproduces the state."""
    first_attempts: Counter[str] = Counter()
    triggered: Counter[str] = Counter()
    requested: Counter[str] = Counter()
    for envelope in kernel.log():
        event = envelope.event
        if isinstance(event, TickRecorded):
            if event.attempt == 1:
                first_attempts[event.tick_id] += 1
            if event.status == "TRIGGERED":
                triggered[event.tick_id] += 1
                assert event.run_keys, event
            else:
                assert not event.run_keys, event
        elif isinstance(event, RunRequested):
            requested[event.run_key] += 1
    assert all(n == 1 for n in first_attempts.values()), first_attempts.most_common(3)
    assert all(n == 1 for n in triggered.values()), triggered.most_common(3)
    assert all(n == 1 for n in requested.values()), requested.most_common(3)
    runs = kernel.runs(limit=1000)
    assert sorted(r.run_key for r in runs) == sorted(requested)
    for sid in {s.schedule_id for s in kernel.schedules(include_deleted=True)}:
        for tick in all_ticks(kernel, sid):
            detail = kernel.tick(tick.tick_id)
            assert len(detail.runs) == len(tick.run_keys)
            assert all(run is not None for run in detail.runs)
    check = kernel.verify()
    assert check.ok, check.differences


def days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)

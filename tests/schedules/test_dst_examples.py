"""DST as explicit examples, day by day over 2024-2028, in four zones, for every policy value.

Fixed-time schedules: on every local day the schedule fires exactly as its policy says; on gap
and fold days the expected local wall time is written out by hand (``03:00``, ``03:30``...).
Wildcard- and step-hour schedules follow absolute time through every transition.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from arcoflow.kernel.cron import DstFold, DstGap, Tick
from arcoflow.kernel.decide import tick_id

from .helpers import HOUR, days, hhmm, local, local_midnight, offset, transitions, walk

FIRST_DAY, LAST_DAY = date(2024, 1, 1), date(2028, 12, 31)

# zone, cron, the wall time it names, local time of the tick on a gap day under "transition"
# and under "shift", the number of gap days and of fold days in 2024-2028.
DAILY = [
    ("America/New_York", "30 2 * * *", "02:30", "03:00", "03:30", 5, 0),
    ("America/New_York", "30 1 * * *", "01:30", None, None, 0, 5),
    ("Europe/London", "30 1 * * *", "01:30", "02:00", "02:30", 5, 5),
    ("Australia/Lord_Howe", "15 2 * * *", "02:15", "02:30", "02:45", 5, 0),
    ("Australia/Lord_Howe", "45 1 * * *", "01:45", None, None, 0, 5),
]
# Kathmandu (+05:45) has had no DST since 1986: every policy gives the same daily ticks, which
# test_the_daily_defaults_fire_once_per_local_day and test_kathmandu_ignores_the_policy check.
KATHMANDU = ("Asia/Kathmandu", "30 1 * * *", "01:30", None, None, 0, 0)


def _kind(naive: datetime, tz: str) -> str:
    """``gap``, ``fold`` or ``normal`` for a naive wall time, by PEP 495's two mappings."""
    early = naive.replace(tzinfo=ZoneInfo(tz), fold=0).timestamp()
    late = naive.replace(tzinfo=ZoneInfo(tz), fold=1).timestamp()
    if early == late:
        return "normal"
    return "fold" if early < late else "gap"


@pytest.mark.parametrize("fold", list(DstFold))
@pytest.mark.parametrize("gap", list(DstGap))
@pytest.mark.parametrize(("tz", "cron", "wall", "at_transition", "shifted", "gaps", "folds"), DAILY)
def test_daily_fixed_time_fires_per_policy_on_every_local_day(
    tz: str,
    cron: str,
    wall: str,
    at_transition: str | None,
    shifted: str | None,
    gaps: int,
    folds: int,
    gap: DstGap,
    fold: DstFold,
) -> None:
    start = local_midnight(FIRST_DAY, tz) - 1
    end = local_midnight(LAST_DAY + timedelta(days=1), tz) - 1
    by_day: dict[date, list[Tick]] = defaultdict(list)
    for tick in walk(cron, tz, start, end, gap, fold):
        by_day[local(tick.at, tz).date()].append(tick)
    hour, minute = map(int, wall.split(":"))
    seen = {"normal": 0, "gap": 0, "fold": 0}
    for day in days(FIRST_DAY, LAST_DAY):
        ticks = by_day.pop(day, [])
        kind = _kind(datetime(day.year, day.month, day.day, hour, minute), tz)
        seen[kind] += 1
        where = f"{tz} {cron} on {day} ({kind}, gap={gap}, fold={fold}): {ticks}"
        if kind == "normal":
            assert len(ticks) == 1, where
            assert hhmm(ticks[0].at, tz) == wall and ticks[0].run and ticks[0].dst is None, where
        elif kind == "gap":
            assert len(ticks) == 1, where
            (tick,) = ticks
            assert tick.dst is not None and "does not exist" in tick.dst, where
            if gap is DstGap.SHIFT:
                assert hhmm(tick.at, tz) == shifted and tick.run, where
            else:
                # The first instant after the gap: the offset changed exactly there.
                assert hhmm(tick.at, tz) == at_transition, where
                assert offset(tick.at - 1, tz) < offset(tick.at, tz), where
                assert tick.run is (gap is DstGap.TRANSITION), where
        else:
            expected = 2 if fold is DstFold.BOTH else 1
            assert len(ticks) == expected, where
            assert all(hhmm(t.at, tz) == wall and t.run for t in ticks), where
            offsets = [offset(t.at, tz) for t in ticks]
            if fold is DstFold.FIRST:  # the first occurrence is still on summer time
                assert offsets[0] > offset(ticks[0].at + 2 * HOUR, tz), where
            elif fold is DstFold.SECOND:
                assert offsets[0] < offset(ticks[0].at - 2 * HOUR, tz), where
            else:
                assert offsets[0] > offsets[1], where
            assert all(t.dst is not None and "occurs twice" in t.dst for t in ticks), where
    assert not by_day, f"ticks outside the local days checked: {dict(by_day)}"
    assert seen["gap"] == gaps and seen["fold"] == folds, seen


def test_the_daily_defaults_fire_once_per_local_day() -> None:
    """Defaults (transition, first): one run per local day, every day, gap and fold included."""
    for tz, cron, wall, *_ in [*DAILY, KATHMANDU]:
        start = local_midnight(FIRST_DAY, tz) - 1
        end = local_midnight(LAST_DAY + timedelta(days=1), tz) - 1
        ticks = walk(cron, tz, start, end)
        dates = [local(t.at, tz).date() for t in ticks]
        assert dates == list(days(FIRST_DAY, LAST_DAY)), (tz, cron)
        assert all(t.run for t in ticks)
        if tz == "Asia/Kathmandu":
            assert all(hhmm(t.at, tz) == wall and t.dst is None for t in ticks)
            assert all(t.at % 3600 == 45 * 60 for t in ticks)  # 01:30 +05:45 is 19:45Z


@pytest.mark.parametrize("fold", list(DstFold))
@pytest.mark.parametrize("gap", list(DstGap))
def test_kathmandu_ignores_the_policy(gap: DstGap, fold: DstFold) -> None:
    tz, cron = KATHMANDU[:2]
    start = local_midnight(date(2026, 1, 1), tz) - 1
    end = local_midnight(date(2027, 1, 1), tz) - 1
    assert walk(cron, tz, start, end, gap, fold) == walk(cron, tz, start, end)


ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Kathmandu"]
ABSOLUTE = [("0 * * * *", HOUR), ("0 */2 * * *", 2 * HOUR), ("*/15 * * * *", 900)]


@pytest.mark.parametrize(("cron", "period"), ABSOLUTE)
@pytest.mark.parametrize("tz", ZONES)
def test_wildcard_hours_follow_absolute_time_through_every_transition(
    tz: str, cron: str, period: int
) -> None:
    """Around every transition of 2024-2028: no stall, no gap longer than the period plus the
    shift (unless a matching wall time falls inside the gap and so never shows on the clock),
    no duplicate instant, every tick on a matching wall time, tick ids distinct."""
    minute_step = period // 60 if period < HOUR else 60
    hour_step = max(1, period // HOUR)
    found = [at for year in range(2024, 2029) for at in transitions(tz, year)]
    assert len(found) == (0 if tz == "Asia/Kathmandu" else 10), found
    windows = found or [local_midnight(date(2026, 6, 1), tz)]
    for at in windows:
        shift = abs(offset(at, tz) - offset(at - 1, tz))
        start, end = at - 86400, at + 86400
        ticks = walk(cron, tz, start, end)
        instants = [t.at for t in ticks]
        assert instants == sorted(set(instants)), f"duplicate or unordered ticks near {at}"
        assert instants[0] - start <= period + shift and end - instants[-1] < period + shift
        for a, b in itertools.pairwise(instants):
            if b - a <= period + shift:
                continue
            # Longer only when a matching wall time fell into the gap and so never showed on
            # the clock (Lord Howe's 02:00 under "0 */2": 00:00, then 04:00, 3.5 h later).
            skipped = local(a, tz).replace(tzinfo=None) + timedelta(seconds=period)
            assert _kind(skipped, tz) == "gap", (tz, cron, at, a, b)
            assert b - a <= 2 * period - shift, (tz, cron, at, a, b)
        for t in ticks:
            wall = local(t.at, tz)
            assert wall.minute % minute_step == 0 and wall.hour % hour_step == 0, (tz, cron, wall)
            assert t.run
        ids = [tick_id("s", t.at) for t in ticks]
        assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(
    ("cron", "spring", "fall"),
    [("0 * * * *", 23, 25), ("0 */2 * * *", 11, 12), ("*/15 * * * *", 92, 100)],
)
def test_new_york_transition_days_have_the_expected_tick_counts(
    cron: str, spring: int, fall: int
) -> None:
    """A spring-forward day is 23 hours long and a fall-back day 25: absolute schedules fire
    once per occurrence of a matching wall time, so the counts follow."""
    tz = "America/New_York"
    for day, expected in ((date(2024, 3, 10), spring), (date(2024, 11, 3), fall)):
        start = local_midnight(day, tz) - 1
        end = local_midnight(day + timedelta(days=1), tz) - 1
        ticks = walk(cron, tz, start, end)
        assert len(ticks) == expected, (cron, day)
    # The repeated 01:00 hour of the fall-back day fires twice, an hour apart, with two ids.
    fall_back = walk(
        "0 * * * *",
        tz,
        local_midnight(date(2024, 11, 3), tz),
        local_midnight(date(2024, 11, 3), tz) + 3 * HOUR,
    )
    one_am = [t.at for t in fall_back if hhmm(t.at, tz) == "01:00"]
    assert len(one_am) == 2 and one_am[1] - one_am[0] == HOUR
    assert tick_id("s", one_am[0]) != tick_id("s", one_am[1])


def test_step_hour_does_not_fire_at_the_end_of_the_gap() -> None:
    """``0 */2`` on spring-forward day in New York: 00:00, then 04:00 (02:00 does not exist;
    03:00 does not match). croniter fires at 03:00 here; see test_croniter_transitions."""
    tz = "America/New_York"
    day = local_midnight(date(2024, 3, 10), tz)
    ticks = walk("0 */2 * * *", tz, day - 1, day + 6 * HOUR)
    assert [hhmm(t.at, tz) for t in ticks] == ["00:00", "04:00", "06:00"]
    assert ticks[1].at - ticks[0].at == 3 * HOUR

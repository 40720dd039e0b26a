"""What croniter gets wrong at DST transitions, side by side with the kernel's walk.

These tests pin croniter's behaviour with a zone-aware start (the way most code uses it). If a
croniter release fixes one of them, the test fails on purpose: the wrapping in
``arcoflow.kernel.cron`` may then be simplified, and this file updated.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from arcoflow.kernel.cron import DstFold, DstGap
from croniter import croniter

from .helpers import HOUR, hhmm, walk

NY = ZoneInfo("America/New_York")


def _croniter(expr: str, start: datetime, count: int) -> list[datetime]:
    it = croniter(expr, start)
    return [it.get_next(datetime) for _ in range(count)]


def test_croniter_fires_a_daily_time_twice_on_fall_back_day() -> None:
    fired = _croniter("30 1 * * *", datetime(2024, 11, 2, 12, tzinfo=NY), 3)
    instants = [int(d.timestamp()) for d in fired]
    assert [d.strftime("%m-%d %H:%M") for d in fired] == [
        "11-03 01:30",
        "11-03 01:30",
        "11-04 01:30",
    ]
    assert instants[1] - instants[0] == HOUR  # two runs of a "once a day" job
    # The kernel: once (dst_fold="first"), or as asked.
    start, end = int(datetime(2024, 11, 2, 12, tzinfo=NY).timestamp()), instants[2]
    assert len(walk("30 1 * * *", "America/New_York", start, end)) == 2
    assert len(walk("30 1 * * *", "America/New_York", start, end, fold=DstFold.BOTH)) == 3


def test_croniter_fires_a_step_hour_at_the_end_of_a_gap() -> None:
    """``0 */2``: 03:00 does not match an even hour, yet croniter fires there (then 04:00)."""
    fired = _croniter("0 */2 * * *", datetime(2024, 3, 10, 0, 30, tzinfo=NY), 2)
    assert [d.strftime("%H:%M") for d in fired] == ["03:00", "04:00"]
    assert fired[1].timestamp() - fired[0].timestamp() == HOUR
    start = int(datetime(2024, 3, 10, 0, 30, tzinfo=NY).timestamp())
    ticks = walk("0 */2 * * *", "America/New_York", start, start + 6 * HOUR)
    assert [hhmm(t.at, "America/New_York") for t in ticks] == ["04:00", "06:00"]


def test_croniter_moves_a_nonexistent_time_to_the_end_of_the_gap_only() -> None:
    """croniter has one gap behaviour (02:30 -> 03:00); the kernel offers three."""
    fired = _croniter("30 2 * * *", datetime(2024, 3, 9, 12, tzinfo=NY), 1)
    assert fired[0].strftime("%m-%d %H:%M") == "03-10 03:00"
    start = int(datetime(2024, 3, 9, 12, tzinfo=NY).timestamp())
    end = start + 86400
    tz = "America/New_York"
    assert [hhmm(t.at, tz) for t in walk("30 2 * * *", tz, start, end)] == ["03:00"]
    assert [hhmm(t.at, tz) for t in walk("30 2 * * *", tz, start, end, DstGap.SHIFT)] == ["03:30"]
    skipped = walk("30 2 * * *", tz, start, end, DstGap.SKIP)
    assert [(hhmm(t.at, tz), t.run) for t in skipped] == [("03:00", False)]


def test_aware_datetimes_an_hour_apart_compare_equal() -> None:
    """Why ticks are keyed on UTC epoch integers: Python compares two aware datetimes in the
    same zone by wall time, so the two 01:30s of a fall-back day are 'equal'."""
    first = datetime(2024, 11, 3, 1, 30, tzinfo=NY)
    second = first.replace(fold=1)
    assert first == second
    assert second.timestamp() - first.timestamp() == HOUR


def test_croniter_ors_a_star_step_day_of_month_with_a_day_of_week() -> None:
    """Classic cron ANDs the day fields when one begins with ``*``: ``0 0 */2 * 1`` is odd-day
    Mondays. croniter's default ORs them (every odd day, and every Monday); the kernel passes
    ``day_or`` so that it follows classic cron."""
    fired = _croniter("0 0 */2 * 1", datetime(2024, 1, 1), 3)
    assert [d.strftime("%a %d") for d in fired] == ["Wed 03", "Fri 05", "Sun 07"]
    start = int(datetime(2024, 1, 1, tzinfo=ZoneInfo("UTC")).timestamp())
    ticks = walk("0 0 */2 * 1", "UTC", start, start + 60 * 86400)
    days = [datetime.fromtimestamp(t.at, ZoneInfo("UTC")).strftime("%a %d") for t in ticks]
    assert days == ["Mon 15", "Mon 29", "Mon 05", "Mon 19"]

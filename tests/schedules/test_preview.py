"""``Kernel.preview``: the next ticks with local time, DST annotation, tick id and action, for
a stored schedule or a definition not yet applied, on gap and fold days."""

from __future__ import annotations

import pytest
from arcoflow.kernel import InputError, Kernel, NotFound

from .helpers import HOUR, ep, schedule

NY = "America/New_York"


def _rows(kernel: Kernel, cron: str, start: int, count: int, **kw: str) -> list[tuple[str, ...]]:
    definition = schedule("nightly", cron, timezone=NY, **kw)
    return [
        (p.local_time.strftime("%m-%d %H:%M%z"), p.action, p.dst or "-")
        for p in kernel.preview(definition, count, start)
    ]


def test_gap_day_under_each_policy(kernel: Kernel) -> None:
    start = ep(2024, 3, 9)
    assert _rows(kernel, "30 2 * * *", start, 3) == [
        ("03-09 02:30-0500", "run", "-"),
        ("03-10 03:00-0400", "run", "02:30 does not exist; run at the end of the gap"),
        ("03-11 02:30-0400", "run", "-"),
    ]
    assert _rows(kernel, "30 2 * * *", start, 3, dst_gap="shift")[1] == (
        "03-10 03:30-0400",
        "run",
        "02:30 does not exist; shifted by the gap",
    )
    assert _rows(kernel, "30 2 * * *", start, 3, dst_gap="skip")[1] == (
        "03-10 03:00-0400",
        "skip",
        "02:30 does not exist; skipped (dst_gap=skip)",
    )


def test_fold_day_under_each_policy(kernel: Kernel) -> None:
    start = ep(2024, 11, 2, 12)
    assert _rows(kernel, "30 1 * * *", start, 2) == [
        ("11-03 01:30-0400", "run", "01:30 occurs twice; first occurrence"),
        ("11-04 01:30-0500", "run", "-"),
    ]
    assert _rows(kernel, "30 1 * * *", start, 1, dst_fold="second") == [
        ("11-03 01:30-0500", "run", "01:30 occurs twice; second occurrence"),
    ]
    both = kernel.preview(schedule("nightly", "30 1 * * *", timezone=NY, dst_fold="both"), 2, start)
    assert [p.local_time.strftime("%H:%M%z") for p in both] == ["01:30-0400", "01:30-0500"]
    assert both[1].scheduled_for - both[0].scheduled_for == HOUR
    assert [p.tick_id for p in both] == [
        "nightly:2024-11-03T05:30:00Z",
        "nightly:2024-11-03T06:30:00Z",
    ]


def test_preview_of_a_stored_schedule_starts_at_the_given_instant(kernel: Kernel) -> None:
    kernel.define_schedule(schedule("hourly"), now=0)
    start = ep(2025, 1, 1, 5)
    preview = kernel.preview("hourly", 3, start)
    assert [p.scheduled_for for p in preview] == [start, start + HOUR, start + 2 * HOUR]
    assert preview[0].tick_id == "hourly:2025-01-01T05:00:00Z"
    assert all(p.action == "run" and p.dst is None for p in preview)
    assert preview[0].local_time.utcoffset() is not None
    with pytest.raises(NotFound):
        kernel.preview("nope", 3, start)
    with pytest.raises(InputError):
        kernel.preview("hourly", 0, start)

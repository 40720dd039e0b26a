"""Two wall times can land on one instant on spring-forward day (02:00 moved by the gap policy,
and a real 03:00). One tick per instant, and a tick that runs wins over a skipped one."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from arcoflow.kernel.cron import DstGap, parse_cron, prev_tick, upcoming, zone
from arcoflow.spec.ticks import reference_ticks

NY = zone("America/New_York")
DAY_BEFORE = int(datetime(2026, 3, 7, tzinfo=UTC).timestamp())
SPRING_0300 = int(datetime(2026, 3, 8, 7, 0, tzinfo=UTC).timestamp())  # 03:00 EDT


@pytest.mark.parametrize("gap", list(DstGap))
def test_a_real_three_oclock_is_never_hidden_by_a_moved_two_oclock(gap: DstGap) -> None:
    cron = parse_cron("0 2,3 * * *")
    ticks = upcoming(cron, NY, DAY_BEFORE, 6, gap=gap)
    at_0300 = [t for t in ticks if t.at == SPRING_0300]
    assert len(at_0300) == 1 and at_0300[0].run
    assert len({t.at for t in ticks}) == len(ticks)
    back = prev_tick(cron, NY, SPRING_0300 + 1, gap=gap)
    assert back.at == SPRING_0300 and back.run
    oracle = reference_ticks(
        "0 2,3 * * *", "America/New_York", gap.value, "first", DAY_BEFORE, ticks[-1].at
    )
    assert [(t.at, t.run) for t in ticks] == [(t.at, t.run) for t in oracle]

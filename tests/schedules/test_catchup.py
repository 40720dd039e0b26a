"""Bounded catch-up through the Kernel, on both stores: window, budget, order, the one summary
row per evaluation, the year-down case, monotone progress, disable/enable, creation, versions.

T0 is a Monday midnight UTC; the schedule is hourly unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from arcoflow.kernel import Kernel, TickRow, decide
from arcoflow.kernel.cron import Tick, next_tick, prev_tick
from arcoflow.kernel.events import MissedRange

from .helpers import DAY, HOUR, all_ticks, assert_exactly_once, ep, schedule

T0 = ep(2025, 1, 6)


def _at(ticks: list[TickRow]) -> list[int]:
    return [t.scheduled_for for t in ticks]


def _hours(*hours: int) -> list[int]:
    return [T0 + h * HOUR for h in hours]


def _seq(kernel: Kernel) -> int:
    last = 0
    for envelope in kernel.log():
        last = envelope.seq
    return last


def test_ticks_older_than_the_window_are_missed_in_one_summary(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(catchup_window="3h", max_catchup_ticks=10), now=T0 + 1800)
    now = T0 + 10 * HOUR + 300
    ticks = kernel.evaluate_schedules(now)
    assert _at(ticks) == _hours(8, 9, 10)  # T >= now - 3h
    assert all(t.status == "TRIGGERED" and t.definition_version == 1 for t in ticks)
    (missed,) = kernel.missed("hourly")
    assert missed.evaluated_at == now
    assert missed.ranges == (MissedRange("outside_catchup_window", *_hours(1, 7)),)
    row = kernel.schedule("hourly")
    assert row.last_scheduled_for == T0 + 10 * HOUR
    assert row.next_fire_at == T0 + 11 * HOUR
    assert_exactly_once(kernel)


def test_newest_runs_the_newest_budget_and_summarises_the_rest(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(catchup_window="1d", max_catchup_ticks=2), now=T0 + 1800)
    ticks = kernel.evaluate_schedules(T0 + 10 * HOUR + 300)
    assert _at(ticks) == _hours(9, 10)
    (missed,) = kernel.missed("hourly")
    assert missed.ranges == (MissedRange("over_max_catchup_ticks", *_hours(1, 8)),)
    assert kernel.evaluate_schedules(T0 + 10 * HOUR + 300) == []  # nothing left to do
    assert len(kernel.missed("hourly")) == 1


def test_both_reasons_in_one_evaluation_make_one_row_with_two_ranges(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(catchup_window="3h"), now=T0 + 1800)
    ticks = kernel.evaluate_schedules(T0 + 10 * HOUR + 300)
    assert _at(ticks) == _hours(10)  # max_catchup_ticks defaults to 1: no catch-up
    (missed,) = kernel.missed("hourly")
    assert missed.ranges == (
        MissedRange("outside_catchup_window", *_hours(1, 7)),
        MissedRange("over_max_catchup_ticks", *_hours(8, 9)),
    )


def test_oldest_drains_a_backlog_in_order_over_successive_evaluations(kernel: Kernel) -> None:
    kernel.define_schedule(
        schedule(catchup_window="1d", max_catchup_ticks=3, catchup_order="oldest"),
        now=T0 + 1800,
    )
    now = T0 + 10 * HOUR + 300
    batches = []
    while batch := kernel.evaluate_schedules(now):
        batches.append(_at(batch))
    assert batches == [_hours(1, 2, 3), _hours(4, 5, 6), _hours(7, 8, 9), _hours(10)]
    assert kernel.missed("hourly") == []
    assert kernel.due_schedules(now) == []
    assert_exactly_once(kernel)


def test_oldest_backlog_that_leaves_the_window_is_missed_not_run(kernel: Kernel) -> None:
    kernel.define_schedule(
        schedule(catchup_window="5h", max_catchup_ticks=2, catchup_order="oldest"),
        now=T0 + 1800,
    )
    assert _at(kernel.evaluate_schedules(T0 + 10 * HOUR + 300)) == _hours(6, 7)
    (first,) = kernel.missed("hourly")
    assert first.ranges == (MissedRange("outside_catchup_window", *_hours(1, 5)),)
    # Three hours later 8 is out of the window (T >= now - 5h = 8:05): missed, 9 and 10 run.
    assert _at(kernel.evaluate_schedules(T0 + 13 * HOUR + 300)) == _hours(9, 10)
    latest = kernel.missed("hourly")[0]
    assert latest.ranges == (MissedRange("outside_catchup_window", *_hours(8, 8)),)


def _count_walk(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the kernel's cron steps during evaluations (decide's next_tick / prev_tick)."""
    calls = [0]

    def counting(fn: Callable[..., Tick]) -> Callable[..., Tick]:
        def wrapper(*args: Any, **kw: Any) -> Tick:
            calls[0] += 1
            return fn(*args, **kw)

        return wrapper

    monkeypatch.setattr(decide, "next_tick", counting(next_tick))
    monkeypatch.setattr(decide, "prev_tick", counting(prev_tick))
    return calls


@pytest.mark.parametrize("budget", [1, 5])
def test_a_minutely_schedule_down_for_a_year_costs_its_budget_not_a_year(
    kernel: Kernel, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    """~525,600 missed minutes: one summary row, ``budget`` ticks and runs, and a number of
    cron steps bounded by the budget (not by the minutes missed)."""
    kernel.define_schedule(schedule("minutely", "* * * * *", max_catchup_ticks=budget), now=T0)
    now = T0 + 365 * DAY + 30
    before = _seq(kernel)
    calls = _count_walk(monkeypatch)
    ticks = kernel.evaluate_schedules(now)
    assert calls[0] <= budget + 6, calls
    end = T0 + 365 * DAY
    assert _at(ticks) == [end - 60 * i for i in reversed(range(budget))]
    assert len(kernel.runs(limit=1000)) == budget
    (missed,) = kernel.missed("minutely")
    assert missed.ranges == (
        MissedRange("outside_catchup_window", T0, end - HOUR),
        MissedRange("over_max_catchup_ticks", end - HOUR + 60, end - 60 * budget),
    )
    # The whole evaluation appended: schedule advance, one summary, the ticks and their runs.
    assert _seq(kernel) - before == 2 + 2 * budget
    assert len(all_ticks(kernel, "minutely")) == budget


def test_last_scheduled_for_only_moves_forward(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(catchup_window="1d", max_catchup_ticks=24), now=T0 + 1800)
    assert len(kernel.evaluate_schedules(T0 + 10 * HOUR + 300)) == 10
    row, seq = kernel.schedule("hourly"), _seq(kernel)
    for earlier in (T0 + 5 * HOUR, T0 + 10 * HOUR, T0 + 10 * HOUR + 300, T0):
        assert kernel.evaluate_schedule("hourly", earlier) == []
        assert kernel.evaluate_schedules(earlier) == []
    assert kernel.schedule("hourly") == row and _seq(kernel) == seq
    assert _at(kernel.evaluate_schedules(T0 + 11 * HOUR)) == _hours(11)
    assert kernel.schedule("hourly").last_scheduled_for == T0 + 11 * HOUR


def test_disabled_schedules_do_not_tick_and_re_enabling_never_back_fills(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(catchup_window="1d", max_catchup_ticks=100), now=T0 + 1800)
    assert _at(kernel.evaluate_schedules(T0 + HOUR + 10)) == _hours(1)
    kernel.set_schedule_enabled("hourly", False, now=T0 + HOUR + 100)
    for h in range(2, 21):
        assert kernel.due_schedules(T0 + h * HOUR + 10) == []
        assert kernel.evaluate_schedules(T0 + h * HOUR + 10) == []
        assert kernel.evaluate_schedule("hourly", T0 + h * HOUR + 10) == []
    kernel.set_schedule_enabled("hourly", True, now=T0 + 20 * HOUR + 1800)
    assert kernel.evaluate_schedules(T0 + 20 * HOUR + 1800) == []
    assert _at(kernel.evaluate_schedules(T0 + 21 * HOUR + 10)) == _hours(21)
    assert kernel.missed("hourly") == []  # a disabled period is not "missed"
    assert _at(all_ticks(kernel, "hourly")) == _hours(1, 21)
    assert_exactly_once(kernel)


def test_disabled_by_a_definition_update_then_re_enabled_by_one(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(catchup_window="1d", max_catchup_ticks=100), now=T0 + 1800)
    off = kernel.define_schedule(
        schedule(catchup_window="1d", max_catchup_ticks=100, enabled=False), now=T0 + 2 * HOUR
    )
    assert (off.action, off.definition_version) == ("disabled", 1)
    assert kernel.evaluate_schedules(T0 + 5 * HOUR) == []
    on = kernel.define_schedule(
        schedule(target="etl2", catchup_window="1d", max_catchup_ticks=100), now=T0 + 6 * HOUR + 1
    )
    assert (on.action, on.definition_version) == ("updated", 2)
    ticks = kernel.evaluate_schedules(T0 + 7 * HOUR + 1)
    assert _at(ticks) == _hours(7) and ticks[0].definition_version == 2


def test_a_new_schedule_never_fires_for_instants_before_its_creation(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(catchup_window="7d", max_catchup_ticks=1000), now=T0 + 1800)
    assert kernel.evaluate_schedules(T0 + 1800) == []
    assert kernel.evaluate_schedule("hourly", T0 + 1800) == []
    assert _at(kernel.evaluate_schedules(T0 + HOUR)) == _hours(1)
    assert kernel.missed("hourly") == []
    # Created exactly on a tick instant: that instant is not before creation, so it runs.
    kernel.define_schedule(schedule("on-the-hour", catchup_window="7d"), now=T0 + 5 * HOUR)
    assert _at(kernel.evaluate_schedule("on-the-hour", T0 + 5 * HOUR)) == _hours(5)


def test_a_definition_update_bumps_the_version_that_later_ticks_record(kernel: Kernel) -> None:
    first = kernel.define_schedule(schedule(), now=T0 - 1)
    assert (first.action, first.definition_version) == ("created", 1)
    assert [t.definition_version for t in kernel.evaluate_schedules(T0 + 1)] == [1]
    seq = _seq(kernel)
    same = kernel.define_schedule(schedule(), now=T0 + 2)
    assert (same.action, same.definition_version) == ("unchanged", 1)
    assert _seq(kernel) == seq  # an identical re-apply writes nothing
    updated = kernel.define_schedule(schedule(target="etl-v2"), now=T0 + 3)
    assert (updated.action, updated.definition_version) == ("updated", 2)
    (tick,) = kernel.evaluate_schedules(T0 + HOUR + 1)
    assert tick.definition_version == 2
    (run,) = kernel.tick(tick.tick_id).runs
    assert run.target == "etl-v2"
    again = kernel.define_schedule(schedule(target="etl-v2"), now=T0 + HOUR + 2)
    assert (again.action, again.definition_version) == ("unchanged", 2)
    retimed = kernel.define_schedule(schedule(target="etl-v2", cron="30 * * * *"), now=T0 + 5400)
    assert retimed.definition_version == 3
    # The cron changed: the next tick is 01:30 (after the last one run), under version 3.
    assert kernel.schedule("hourly").next_fire_at == T0 + HOUR + 1800
    (later,) = kernel.evaluate_schedules(T0 + 2 * HOUR)
    assert (later.scheduled_for, later.definition_version) == (T0 + HOUR + 1800, 3)
    assert [t.definition_version for t in all_ticks(kernel, "hourly")] == [1, 2, 3]

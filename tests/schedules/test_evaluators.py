"""Schedule evaluators: skipped and failed ticks never carry a run key or create a run, a
triggered tick creates exactly one run per key, failed ticks are retried under the same tick id
up to ``max_tick_retries``, and DST ``skip`` ticks are SKIPPED with the DST reason."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from arcoflow.kernel import Kernel, RunRequest, TickContext, TickResult

from .helpers import DAY, HOUR, all_ticks, assert_exactly_once, ep, hhmm, schedule

T0 = ep(2025, 1, 6)
SIX = T0 + 6 * HOUR  # the daily tick of "0 6 * * *"


def _daily(**kw: Any) -> Any:
    return schedule("daily", "0 6 * * *", evaluator="check", **kw)


class Boom(RuntimeError):
    pass


def _assert_no_run(kernel: Kernel) -> None:
    assert kernel.runs() == []
    for tick in all_ticks(kernel, "daily"):
        if tick.status != "TRIGGERED":
            assert tick.run_keys == () and kernel.tick(tick.tick_id).runs == ()


def test_a_skip_reason_records_a_skipped_tick_without_a_run(kernel: Kernel) -> None:
    kernel.define_schedule(_daily(), now=T0)
    (tick,) = kernel.evaluate_schedules(SIX + 10, lambda ctx: TickResult(skip_reason="holiday"))
    assert (tick.status, tick.reason, tick.run_keys, tick.final) == ("SKIPPED", "holiday", (), True)
    _assert_no_run(kernel)
    assert_exactly_once(kernel)


def test_an_empty_request_list_records_a_skipped_tick(kernel: Kernel) -> None:
    kernel.define_schedule(_daily(), now=T0)
    (tick,) = kernel.evaluate_schedules(SIX + 10, lambda ctx: TickResult(run_requests=[]))
    assert tick.status == "SKIPPED" and tick.reason == "evaluator returned no run requests"
    _assert_no_run(kernel)


def test_a_triggered_tick_creates_exactly_one_run_for_its_key(kernel: Kernel) -> None:
    contexts: list[TickContext] = []

    def evaluate(ctx: TickContext) -> TickResult:
        contexts.append(ctx)
        return TickResult()

    kernel.define_schedule(_daily(timezone="Europe/Paris"), now=T0)
    paris_six = T0 + 5 * HOUR
    (tick,) = kernel.evaluate_schedules(paris_six + 10, evaluate)
    for now in (paris_six + 10, paris_six + 20, paris_six + HOUR):
        assert kernel.evaluate_schedules(now, evaluate) == []
    assert tick.status == "TRIGGERED" and tick.reason is None
    (run,) = kernel.runs()
    assert tick.run_keys == (run.run_key,) == ("schedule:daily:" + "2025-01-06T05:00:00Z",)
    assert kernel.tick(tick.tick_id).runs == (run,)
    (ctx,) = contexts  # asked once per tick, never again
    assert ctx.tick_id == tick.tick_id and ctx.attempt == 1
    assert ctx.scheduled_for == datetime(2025, 1, 6, 5, tzinfo=UTC)  # 06:00 in Paris
    assert ctx.local_time.hour == 6 and ctx.dst is None
    assert_exactly_once(kernel)


def test_several_run_requests_make_one_run_each(kernel: Kernel) -> None:
    requests = [RunRequest("eu", tags={"region": "eu"}), RunRequest("us", target="etl.us")]
    kernel.define_schedule(_daily(), now=T0)
    (tick,) = kernel.evaluate_schedules(SIX, lambda ctx: TickResult(run_requests=requests))
    assert tick.run_keys == ("schedule:daily:eu", "schedule:daily:us")
    runs = {r.run_key: r for r in kernel.runs()}
    assert set(runs) == set(tick.run_keys)
    assert runs["schedule:daily:us"].target == "etl.us"
    assert runs["schedule:daily:eu"].tags == {"region": "eu"}


def test_failed_ticks_are_retried_under_the_same_id_and_stop_at_the_limit(
    kernel: Kernel,
) -> None:
    attempts: list[tuple[str, int]] = []

    def evaluate(ctx: TickContext) -> TickResult:
        attempts.append((ctx.tick_id, ctx.attempt))
        raise Boom("warehouse is down")

    kernel.define_schedule(_daily(max_tick_retries=2), now=T0)
    statuses = []
    for minutes in (0, 5, 10, 15, 20, 60):
        for tick in kernel.evaluate_schedules(SIX + minutes * 60, evaluate):
            statuses.append((tick.tick_id, tick.status, tick.attempts, tick.final, tick.reason))
    tid = "daily:2025-01-06T06:00:00Z"
    assert attempts == [(tid, 1), (tid, 2), (tid, 3)]  # 1 + max_tick_retries, then final
    reason = "Boom: warehouse is down"
    assert statuses == [
        (tid, "FAILED", 1, False, reason),
        (tid, "FAILED", 2, False, reason),
        (tid, "FAILED", 3, True, reason),
    ]
    row = kernel.schedule("daily")
    assert row.retries == () and row.next_fire_at == SIX + DAY
    assert [t.tick_id for t in all_ticks(kernel, "daily")] == [tid]
    _assert_no_run(kernel)
    assert_exactly_once(kernel)


def test_no_retries_means_the_first_failure_is_final(kernel: Kernel) -> None:
    kernel.define_schedule(_daily(), now=T0)

    def evaluate(ctx: TickContext) -> TickResult:
        raise Boom()

    (tick,) = kernel.evaluate_schedules(SIX, evaluate)
    assert (tick.status, tick.final, tick.reason) == ("FAILED", True, "Boom")
    assert kernel.evaluate_schedules(SIX + 60, evaluate) == []


def test_a_retry_that_succeeds_triggers_one_run_and_does_not_use_the_budget(
    kernel: Kernel,
) -> None:
    failures = {"hourly:2025-01-06T01:00:00Z"}

    def evaluate(ctx: TickContext) -> TickResult:
        if ctx.tick_id in failures:
            failures.discard(ctx.tick_id)
            raise Boom("flaky")
        return TickResult()

    kernel.define_schedule(schedule(evaluator="check", max_tick_retries=3), now=T0 + 1)
    (failed,) = kernel.evaluate_schedules(T0 + HOUR + 10, evaluate)
    assert failed.status == "FAILED" and not failed.final
    # The retry of 01:00 and the new 02:00 tick both run, though max_catchup_ticks is 1.
    ticks = kernel.evaluate_schedules(T0 + 2 * HOUR + 10, evaluate)
    assert [(t.scheduled_for, t.status, t.attempts) for t in ticks] == [
        (T0 + HOUR, "TRIGGERED", 2),
        (T0 + 2 * HOUR, "TRIGGERED", 1),
    ]
    assert len(kernel.runs()) == 2
    assert kernel.schedule("hourly").retries == ()
    assert_exactly_once(kernel)


def test_a_non_tick_result_is_a_failure_with_a_clear_reason(kernel: Kernel) -> None:
    kernel.define_schedule(_daily(), now=T0)
    (tick,) = kernel.evaluate_schedules(SIX, lambda ctx: {"run": True})  # type: ignore[arg-type,return-value]
    assert tick.status == "FAILED"
    assert tick.reason == "evaluator 'check' returned dict, not TickResult"
    _assert_no_run(kernel)


def test_a_named_evaluator_that_is_not_available_fails_the_tick(kernel: Kernel) -> None:
    kernel.define_schedule(_daily(max_tick_retries=1), now=T0)
    (tick,) = kernel.evaluate_schedules(SIX)
    assert tick.status == "FAILED" and tick.reason == "no evaluator 'check' is available"
    (retried,) = kernel.evaluate_schedules(SIX + 60, lambda ctx: TickResult())
    assert (retried.tick_id, retried.status, retried.attempts) == (tick.tick_id, "TRIGGERED", 2)
    assert len(kernel.runs()) == 1


def test_dst_skip_ticks_are_skipped_with_the_dst_reason_and_never_asked(kernel: Kernel) -> None:
    asked: list[str] = []

    def evaluate(ctx: TickContext) -> TickResult:
        asked.append(ctx.tick_id)
        return TickResult()

    tz = "America/New_York"
    kernel.define_schedule(
        schedule(
            "nightly",
            "30 2 * * *",
            evaluator="check",
            timezone=tz,
            dst_gap="skip",
            catchup_window="12h",
        ),
        now=ep(2024, 3, 8),
    )
    ticks = []
    for day in (9, 10, 11):
        ticks += kernel.evaluate_schedules(ep(2024, 3, day, 12), evaluate)
    assert [(hhmm(t.scheduled_for, tz), t.status) for t in ticks] == [
        ("02:30", "TRIGGERED"),
        ("03:00", "SKIPPED"),  # 02:30 does not exist on 2024-03-10: recorded at the gap's end
        ("02:30", "TRIGGERED"),
    ]
    skipped = ticks[1]
    assert skipped.reason is not None and "02:30 does not exist" in skipped.reason
    assert skipped.dst == skipped.reason and skipped.run_keys == ()
    assert skipped.tick_id not in asked and len(asked) == 2
    assert len(kernel.runs()) == 2
    assert_exactly_once(kernel)


def test_a_retried_tick_keeps_its_dst_annotation(kernel: Kernel) -> None:
    """Attempt 2 of a tick that DST moved sees (and records) the same annotation as attempt 1."""
    seen: list[tuple[int, str | None]] = []

    def evaluate(ctx: TickContext) -> TickResult:
        seen.append((ctx.attempt, ctx.dst))
        if ctx.attempt == 1:
            raise Boom("flaky")
        return TickResult()

    tz = "America/New_York"
    kernel.define_schedule(
        schedule("nightly", "30 2 * * *", evaluator="check", timezone=tz, max_tick_retries=1),
        now=ep(2024, 3, 9, 12),
    )
    (failed,) = kernel.evaluate_schedules(ep(2024, 3, 10, 7, 1), evaluate)  # 03:01 EDT
    (retried,) = kernel.evaluate_schedules(ep(2024, 3, 10, 7, 2), evaluate)
    note = "02:30 does not exist; run at the end of the gap"
    assert seen == [(1, note), (2, note)]
    assert (failed.dst, retried.dst, retried.status) == (note, note, "TRIGGERED")
    assert kernel.tick(retried.tick_id).tick.dst == note

"""Boundaries by example, not by luck.

Each rule here was once reached by a planted bug only through the long machines or a lucky seed.
Each test puts one example exactly on the rule's boundary, so the ordinary suite kills the
mutant of the same name in ``arcoflow.spec.mutations`` every time (``python -m
arcoflow.spec.mutations`` runs them under it).
"""

from __future__ import annotations

from typing import Any

import attrs
from arcoflow.kernel import (
    Kernel,
    PollContext,
    PollResult,
    RunRequest,
    RunTemplate,
    TickContext,
    TickResult,
)

from .helpers import poll_sensor, schedule

HOUR = 3600
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, on the hour


def _fail(ctx: TickContext) -> TickResult:
    raise RuntimeError("evaluator down")


def _ok(ctx: TickContext) -> TickResult:
    return TickResult()


# -- schedules -----------------------------------------------------------------------------------


def test_a_schedule_re_created_with_the_clock_behind_its_last_tick(kernel: Kernel) -> None:
    """Mutant ``recreated_from_now``. Re-created after a delete, a schedule resumes after its
    ``last_scheduled_for`` even when ``now`` is earlier (a clock that went back, or a slower
    host): ``next_fire_at`` names the tick it will really fire, not one it already fired."""
    kernel.define_schedule(schedule("hourly"), now=T0)
    (fired,) = kernel.evaluate_schedule("hourly", now=T0 + 3 * HOUR)  # the newest: 03:00
    assert fired.scheduled_for == T0 + 3 * HOUR
    kernel.delete_schedule("hourly", now=T0 + 3 * HOUR)
    kernel.define_schedule(schedule("hourly"), now=T0 + HOUR)  # the clock is behind 03:00
    row = kernel.schedule("hourly")
    assert row.last_scheduled_for == T0 + 3 * HOUR
    assert row.next_fire_at == T0 + 4 * HOUR
    assert kernel.due_schedules(now=T0 + 2 * HOUR) == []  # nothing to evaluate for nothing
    assert kernel.evaluate_schedules(now=T0 + 2 * HOUR) == []
    assert [t.scheduled_for for t in kernel.evaluate_schedules(now=T0 + 4 * HOUR)] == [
        T0 + 4 * HOUR
    ]


def test_a_tick_exactly_catchup_window_old_still_runs(kernel: Kernel) -> None:
    """Mutant ``window_edge_missed``. A tick at T runs while ``now <= T + catchup_window``:
    the window is closed at its old end; one second later the tick is missed."""
    window = 30 * 60
    kernel.define_schedule(schedule("edge", catchup_window=window), now=T0)
    kernel.define_schedule(schedule("late", catchup_window=window), now=T0)
    (tick,) = kernel.evaluate_schedule("edge", now=T0 + window)
    assert (tick.scheduled_for, tick.status) == (T0, "TRIGGERED")
    assert kernel.missed("edge") == []
    assert kernel.evaluate_schedule("late", now=T0 + window + 1) == []
    (missed,) = kernel.missed("late")
    assert [(r.reason, r.first, r.last) for r in missed.ranges] == [
        ("outside_catchup_window", T0, T0)
    ]


def test_a_definition_update_keeps_a_pending_tick_retry_due(kernel: Kernel) -> None:
    """Mutant ``update_forgets_retries``. A definition updated while a failed tick waits for
    its retry keeps the retry, and ``next_fire_at`` still names it: it is due at once."""
    kernel.define_schedule(schedule("hourly", evaluator="check", max_tick_retries=2), now=T0)
    (failed,) = kernel.evaluate_schedules(T0 + 60, _fail)
    assert (failed.status, failed.final) == ("FAILED", False)
    updated = schedule("hourly", target="etl.v2", evaluator="check", max_tick_retries=2)
    kernel.define_schedule(updated, now=T0 + 120)
    row = kernel.schedule("hourly")
    assert [r.scheduled_for for r in row.retries] == [T0] and row.next_fire_at == T0
    assert kernel.due_schedules(now=T0 + 180) == ["hourly"]
    (retried,) = kernel.evaluate_schedules(T0 + 180, _ok)
    assert (retried.tick_id, retried.status, retried.attempts) == (failed.tick_id, "TRIGGERED", 2)
    assert kernel.run_by_key(f"schedule:hourly:{failed.tick_id.partition(':')[2]}").target == (
        "etl.v2"
    )


def test_a_request_config_overrides_the_template_on_shared_keys(kernel: Kernel) -> None:
    """Mutant ``template_config_wins``. A run request's config and tags are merged over the
    template's: on a key both have, the request's value wins (schedules and sensors alike)."""
    template = {"config": {"region": "us", "size": 1}, "tags": {"team": "etl", "tier": "1"}}
    request = RunRequest(config={"region": "eu"}, tags={"tier": "2"})
    want_config, want_tags = {"region": "eu", "size": 1}, {"team": "etl", "tier": "2"}

    def evaluate(ctx: TickContext) -> TickResult:
        return TickResult([request])

    definition = schedule("hourly", evaluator="check")
    kernel.define_schedule(_with_template(definition, **template), now=T0)
    (tick,) = kernel.evaluate_schedules(T0, evaluate)
    (key,) = tick.run_keys
    run = kernel.run_by_key(key)
    assert (run.config, run.tags) == (want_config, want_tags)

    def poll(ctx: PollContext) -> PollResult:
        return PollResult([RunRequest("r1", config=request.config, tags=request.tags)])

    kernel.define_sensor(_with_template(poll_sensor("files"), **template), now=T0)
    row = kernel.poll("files", poll, now=T0)
    (key,) = row.evaluation.run_keys
    run = kernel.run_by_key(key)
    assert (run.config, run.tags) == (want_config, want_tags)


def _with_template(definition: Any, **template: Any) -> Any:
    run = RunTemplate(definition.run.target, **template)
    return attrs.evolve(definition, run=run)


# -- run requests --------------------------------------------------------------------------------


def test_other_tags_under_one_key_are_a_conflict(kernel: Kernel) -> None:
    """Mutant ``tags_out_of_fingerprint``. Tags are part of what a run is: the same key with
    other tags is a conflict (recorded; the run keeps its first tags), not the same run."""
    first = kernel.request_run("k", RunTemplate("etl", tags={"team": "a"}), now=T0)
    again = kernel.request_run("k", RunTemplate("etl", tags={"team": "b"}), now=T0 + 1)
    assert again.run_id == first.run_id and again.tags == {"team": "a"}
    (conflict,) = kernel.conflicts()
    assert conflict.run_key == "manual:k" and conflict.existing_fingerprint == first.fingerprint
    assert conflict.conflicting_fingerprint != first.fingerprint


def test_the_same_requester_key_and_instant_with_other_content(kernel: Kernel) -> None:
    """Mutant ``request_key_without_content``. The same requester asking for the same key at
    the same instant with other content is a conflict, not a duplicate of the first request;
    with the same content it is a duplicate (nothing more recorded)."""
    one = RunTemplate("etl", config={"n": 1})
    first = kernel.request_run("k", one, now=T0, requested_by="alice")
    kernel.request_run("k", one, now=T0, requested_by="alice")
    assert kernel.conflicts() == []
    other = kernel.request_run(
        "k", RunTemplate("etl", config={"n": 2}), now=T0, requested_by="alice"
    )
    assert other.run_id == first.run_id and other.config == {"n": 1}
    (conflict,) = kernel.conflicts()
    assert conflict.run_key == "manual:k" and conflict.requested_by == "alice"


# -- sensors -------------------------------------------------------------------------------------


def test_updating_a_poll_sensor_keeps_when_it_is_due(kernel: Kernel) -> None:
    """Mutant ``update_makes_poll_due``. An update of a running poll sensor keeps its
    ``next_eval_at``: one in backoff stays in backoff, one polled recently is not due yet."""

    def fail(ctx: PollContext) -> PollResult:
        raise TimeoutError("source down")

    def ok(ctx: PollContext) -> PollResult:
        return PollResult(cursor="c1")

    kernel.define_sensor(poll_sensor("backoff", base=100, cap=1000), now=T0)
    kernel.define_sensor(poll_sensor("recent", minimum_interval=300), now=T0)
    assert kernel.poll("backoff", fail, now=T0).evaluation.status == "FAILED"
    assert kernel.poll("recent", ok, now=T0).evaluation.status == "NO_DATA"
    assert kernel.sensor("backoff").next_eval_at == T0 + 100
    assert kernel.sensor("recent").next_eval_at == T0 + 300
    kernel.define_sensor(poll_sensor("backoff", base=100, cap=1000, target="v2"), now=T0 + 10)
    kernel.define_sensor(poll_sensor("recent", minimum_interval=300, target="v2"), now=T0 + 10)
    assert kernel.sensor("backoff").next_eval_at == T0 + 100
    assert kernel.sensor("recent").next_eval_at == T0 + 300
    assert kernel.due_sensors(now=T0 + 10) == []
    assert kernel.due_sensors(now=T0 + 300) == ["backoff", "recent"]


def test_a_poll_without_a_cursor_keeps_the_last_one(kernel: Kernel) -> None:
    """Mutant ``cursor_cleared``. A poll result with ``cursor=None`` means "no new position":
    the sensor keeps its cursor, and the next poll is handed it again."""
    seen: list[Any] = []

    def poll(cursor: str | None) -> Any:
        def connector(ctx: PollContext) -> PollResult:
            seen.append(ctx.cursor)
            return PollResult(cursor=cursor)

        return connector

    kernel.define_sensor(poll_sensor("files"), now=T0)
    kernel.poll("files", poll("c1"), now=T0)
    kernel.poll("files", poll(None), now=T0 + 60)
    kernel.poll("files", poll(None), now=T0 + 120)
    assert seen == [None, "c1", "c1"]
    assert kernel.sensor("files").cursor is not None


def test_stop_and_start_twice_in_one_second_leaves_the_sensor_running(kernel: Kernel) -> None:
    """Mutant ``sensor_toggle_collides``. Each start or stop is its own event, even several
    in one second: stop, start, stop, start at one instant ends started."""
    kernel.define_sensor(poll_sensor("files"), now=T0)
    for running in (False, True, False, True):
        assert kernel.set_sensor_running("files", running, now=T0 + 5).running is running
    row = kernel.sensor("files")
    assert (row.running, row.toggles, row.next_eval_at) == (True, 4, T0 + 5)

"""Every non-run and every change is visible (issue 10, item 2): a run-key dedupe hit says so
on its tick or evaluation, a repeated request says it returned the existing run, and changes
to schedules and sensors are a history served through its own index."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from arcoflow.kernel import (
    InputError,
    Kernel,
    NotFound,
    PollResult,
    RunRequest,
    RunTemplate,
    Store,
    TickResult,
)
from arcoflow.kernel import views as v
from arcoflow.kernel.rows import Table
from arcoflow.kernel.runs import run_id

from .helpers import dump, poll_sensor, push_sensor, schedule

H = 3600


def _shared(ctx: Any) -> TickResult:
    return TickResult(run_requests=[RunRequest("shared")])


# -- dedupe hits -------------------------------------------------------------------------------


def test_a_tick_whose_run_key_already_had_a_run_says_so(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(evaluator="fixed"), now=0)
    [first] = kernel.evaluate_schedules(now=H, evaluate=_shared)
    [second] = kernel.evaluate_schedules(now=2 * H, evaluate=_shared)
    rid = run_id("schedule:hourly:shared")
    # The issue: the second tick was TRIGGERED with reason None, though no run was created.
    assert second.reason == f"run key schedule:hourly:shared already requested: run {rid}"
    assert second.status == "TRIGGERED"  # it asked for a run, and the run exists: I3 holds
    assert (first.status, first.reason, first.deduped) == ("TRIGGERED", None, ())
    assert second.deduped == ("schedule:hourly:shared",)
    shown = v.tick_json(kernel.tick(second.tick_id).tick)
    assert shown["reason"] == second.reason
    assert shown["deduped_run_keys"] == ["schedule:hourly:shared"]
    assert shown["deduped_run_ids"] == [rid]
    assert len(kernel.runs()) == 1
    assert kernel.verify().ok


def test_ticks_of_one_evaluation_see_the_runs_of_the_ticks_before_them(kernel: Kernel) -> None:
    kernel.define_schedule(
        schedule(evaluator="fixed", max_catchup_ticks=3, catchup_window=6 * H), now=0
    )
    ticks = kernel.evaluate_schedules(now=3 * H, evaluate=_shared)
    assert [t.deduped != () for t in ticks] == [False, True, True]
    assert kernel.verify().ok


def test_a_push_evaluation_whose_run_key_already_had_a_run_says_so(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor(), now=0)

    def same_key(message: Any) -> list[RunRequest]:
        return [RunRequest("order-7")]

    first = kernel.ingest("hook", "m1", {"n": 1}, now=1, connector=same_key).evaluation
    second = kernel.ingest("hook", "m2", {"n": 1}, now=2, connector=same_key).evaluation
    rid = run_id("sensor:hook:order-7")
    # The issue: the second evaluation was REQUESTED with reason None, though no run was made.
    assert v.eval_json(second)["reason"] == f"run key {second.evaluation.run_keys[0]} " + (
        f"already requested: run {rid}"
    )
    assert (first.reason, first.deduped) == (None, ())
    assert second.evaluation.status == "REQUESTED"
    assert second.deduped == ("sensor:hook:order-7",)
    assert second.reason == f"run key sensor:hook:order-7 already requested: run {rid}"
    assert kernel.evaluation(second.evaluation.eval_id) == second  # what is stored
    assert v.eval_json(second)["reason"] == second.reason
    assert kernel.sensor("hook").last_reason == second.reason
    assert kernel.verify().ok


def test_a_poll_evaluation_whose_run_key_already_had_a_run_says_so(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor(), now=0)
    answer = PollResult([RunRequest("latest")], cursor="1")
    kernel.poll("files", lambda ctx: answer, now=1)
    again = kernel.poll("files", lambda ctx: PollResult([RunRequest("latest")]), now=40)
    assert again.deduped == ("sensor:files:latest",)
    assert again.reason is not None and "already requested" in again.reason
    assert kernel.verify().ok


def test_a_conflicting_request_is_a_dedupe_hit_too(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(evaluator="fixed"), now=0)

    def changing(ctx: Any) -> TickResult:
        return TickResult(run_requests=[RunRequest("shared", config={"tick": ctx.tick_id})])

    kernel.evaluate_schedules(now=H, evaluate=changing)
    [second] = kernel.evaluate_schedules(now=2 * H, evaluate=changing)
    assert second.deduped == ("schedule:hourly:shared",)
    assert len(kernel.conflicts()) == 1


# -- a repeated request says it returned the existing run --------------------------------------


def test_request_says_whether_the_run_existed(kernel: Kernel) -> None:
    template = RunTemplate("etl")
    first = kernel.request("k", template, now=1)
    again = kernel.request("k", template, now=2)
    exact = kernel.request("k", template, now=2)  # the very same request: one effect
    other = kernel.request("k", RunTemplate("other"), now=3)
    assert (first.existing, first.conflict) == (False, False)
    assert (again.existing, again.conflict) == (True, False)
    assert (exact.existing, exact.conflict) == (True, False)
    assert (other.existing, other.conflict) == (True, True)
    assert first.run == again.run == other.run
    assert v.requested_json(again)["existing"] is True
    assert kernel.request_run("k", template, now=4) == first.run  # the plain form is unchanged


# -- definition history ------------------------------------------------------------------------


def _changes(kernel: Kernel, kind: Any, item: str) -> list[tuple[Any, ...]]:
    return [
        (h.change, h.old_version, h.new_version, h.at) for h in reversed(kernel.history(kind, item))
    ]


def test_every_change_to_a_schedule_is_history(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(), now=10)
    kernel.define_schedule(schedule(), now=11)  # unchanged: no history
    kernel.set_schedule_enabled("hourly", False, now=12)
    kernel.set_schedule_enabled("hourly", True, now=13)
    kernel.define_schedule(schedule(cron="30 * * * *"), now=14)
    kernel.define_schedule(schedule(cron="30 * * * *", enabled=False), now=15)
    kernel.evaluate_schedules(now=H)  # evaluations are not definition history
    kernel.delete_schedule("hourly", now=16)
    kernel.define_schedule(schedule(), now=17)
    assert _changes(kernel, "schedule", "hourly") == [
        ("created", None, 1, 10),
        ("disabled", 1, 1, 12),
        ("enabled", 1, 1, 13),
        ("updated", 1, 2, 14),
        ("disabled", 2, 2, 15),
        ("deleted", 2, 2, 16),
        ("created", 2, 3, 17),
    ]
    assert kernel.verify().ok


def test_every_change_to_a_sensor_is_history(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor(), now=10)
    kernel.set_sensor_running("files", False, now=11)
    kernel.set_sensor_running("files", True, now=12)
    kernel.define_sensor(poll_sensor(minimum_interval=60), now=13)
    kernel.delete_sensor("files", now=14)
    assert _changes(kernel, "sensor", "files") == [
        ("created", None, 1, 10),
        ("stopped", 1, 1, 11),
        ("started", 1, 1, 12),
        ("updated", 1, 2, 13),
        ("deleted", 2, 2, 14),
    ]
    assert kernel.verify().ok


def test_history_is_newest_first_and_pages_by_seq(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(), now=0)
    for i in range(1, 6):
        kernel.set_schedule_enabled("hourly", i % 2 == 0, now=i)
    every = kernel.history("schedule", "hourly")
    assert [h.seq for h in every] == sorted((h.seq for h in every), reverse=True)
    page = kernel.history("schedule", "hourly", limit=2)
    rest = kernel.history("schedule", "hourly", before=page[-1].seq)
    assert page + rest == every
    assert [v.history_json(h)["change"] for h in every][-1] == "created"


def test_history_of_an_unknown_id_or_kind_is_refused(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(), now=0)
    with pytest.raises(NotFound):
        kernel.history("schedule", "nope")
    with pytest.raises(NotFound):
        kernel.history("sensor", "hourly")  # a schedule id is not a sensor id
    with pytest.raises(InputError):
        kernel.history("tick", "hourly")  # type: ignore[arg-type]
    with pytest.raises(InputError):
        kernel.history("schedule", "hourly", limit=0)


def test_history_reads_its_own_rows_never_the_log(kernel: Kernel, store: Store) -> None:
    kernel.define_schedule(schedule(), now=0)
    kernel.define_schedule(schedule("other"), now=0)
    for i in range(1, 50):
        kernel.set_schedule_enabled("other", i % 2 == 0, now=i)
    scanned: list[tuple[Table, int]] = []
    read = store.read

    class Counting:
        def __init__(self, txn: Any) -> None:
            self.txn = txn

        def get(self, table: Table, key: bytes) -> Any:
            return self.txn.get(table, key)

        def scan(self, table: Table, **kw: Any) -> Any:
            for item in self.txn.scan(table, **kw):
                scanned.append((table, 1))
                yield item

    @contextmanager
    def counting_read() -> Iterator[Counting]:
        with read() as txn:
            yield Counting(txn)

    store.read = counting_read  # type: ignore[method-assign]
    try:
        assert len(kernel.history("schedule", "hourly")) == 1
    finally:
        del store.read
    assert {t for t, _ in scanned} == {Table.HISTORY}
    assert len(scanned) == 1  # O(rows of that item): the other schedule's 49 are not read


def test_replay_rebuilds_history_byte_for_byte(kernel: Kernel, store: Store) -> None:
    kernel.define_schedule(schedule(), now=0)
    kernel.define_sensor(poll_sensor(), now=0)
    kernel.set_sensor_running("files", False, now=1)
    kernel.set_cursor("files", "x", expected_version=0, now=2)
    kernel.delete_schedule("hourly", now=3)
    assert dump(store)[Table.HISTORY]
    result = kernel.verify()
    assert result.ok, result.differences

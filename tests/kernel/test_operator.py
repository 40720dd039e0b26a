"""Operator verbs (issue 10, item 3): set or reset a sensor's cursor (CAS, recorded), retry a
run that gave up, backfill a schedule over a range. Each is a command of the pure core, leaves
a state that replays byte for byte, and writes nothing when refused."""

from __future__ import annotations

from typing import Any

import pytest
from arcoflow.kernel import (
    Conflict,
    InputError,
    Kernel,
    NotFound,
    PollResult,
    RunRequest,
    RunTemplate,
    Store,
    decide,
)
from arcoflow.kernel.runs import run_id

from .helpers import dump, poll_sensor, push_sensor, schedule

H = 3600
D = 86400
NY_SPRING = 1710054000  # 2024-03-10T07:00Z: New York springs forward (02:00 EST -> 03:00 EDT)
NY_FALL = 1730613600  # 2024-11-03T06:00Z: New York falls back (02:00 EDT -> 01:00 EST)


def _cursor(kernel: Kernel, sid: str = "files") -> Any:
    row = kernel.sensor(sid)
    return (row.cursor.native() if row.cursor else None, row.state_version)


# -- set and reset a cursor ---------------------------------------------------------------------


def test_set_and_reset_a_cursor_with_cas_and_history(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor(), now=0)
    kernel.poll("files", lambda ctx: PollResult(cursor="a"), now=1)
    assert _cursor(kernel) == ("a", 1)
    kernel.set_cursor("files", "z", expected_version=1, now=2)
    assert _cursor(kernel) == ("z", 2)
    kernel.reset_cursor("files", expected_version=2, now=3)
    assert _cursor(kernel) == (None, 3)
    changes = [
        (h.change, h.cursor_before, h.cursor_after) for h in kernel.history("sensor", "files")
    ]
    assert [(c, b and b.native(), a and a.native()) for c, b, a in changes[:2]] == [
        ("cursor_reset", "z", None),
        ("cursor_set", "a", "z"),
    ]
    seen: list[Any] = []
    kernel.poll("files", lambda ctx: seen.append(ctx.cursor) or PollResult(), now=4)
    assert seen == [None]  # the next poll starts from the reset cursor
    assert kernel.verify().ok


def test_a_stale_expected_version_is_a_conflict_and_writes_nothing(
    kernel: Kernel, store: Store
) -> None:
    kernel.define_sensor(poll_sensor(), now=0)
    kernel.poll("files", lambda ctx: PollResult(cursor="a"), now=1)
    before = dump(store)
    for stale in (0, 2, 99):
        with pytest.raises(Conflict):
            kernel.set_cursor("files", "z", expected_version=stale, now=2)
    assert dump(store) == before


def test_a_poll_in_flight_cannot_land_after_a_cursor_set(kernel: Kernel, store: Store) -> None:
    kernel.define_sensor(poll_sensor(), now=0)
    ticket = kernel.poll_ticket("files")
    kernel.set_cursor("files", "operator", expected_version=0, now=1)
    before = dump(store)
    with pytest.raises(Conflict):
        kernel.record_poll(ticket, PollResult([RunRequest()], cursor="old"), now=2)
    assert dump(store) == before
    assert _cursor(kernel) == ("operator", 1)


def test_the_same_cursor_set_repeated_is_one_set(kernel: Kernel, store: Store) -> None:
    kernel.define_sensor(poll_sensor(), now=0)
    kernel.set_cursor("files", "z", expected_version=0, now=1)
    before = dump(store)
    assert kernel.set_cursor("files", "z", expected_version=0, now=2).state_version == 1
    assert dump(store) == before


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda k: k.set_cursor("hook", "x", expected_version=0), InputError),  # push
        (lambda k: k.set_cursor("nope", "x", expected_version=0), NotFound),
        (lambda k: k.set_cursor("files", "x", expected_version=-1), InputError),
        (lambda k: k.set_cursor("files", "x", expected_version=True), InputError),
        (lambda k: k.set_cursor("files", 5, expected_version=0), InputError),
        (lambda k: k.set_cursor("files", "\ud800", expected_version=0), InputError),
    ],
)
def test_bad_cursor_sets_are_refused_and_write_nothing(
    kernel: Kernel, store: Store, call: Any, error: type[Exception]
) -> None:
    kernel.define_sensor(poll_sensor(), now=0)
    kernel.define_sensor(push_sensor(), now=0)
    before = dump(store)
    with pytest.raises(error):
        call(kernel)
    assert dump(store) == before


# -- retry a run that gave up -------------------------------------------------------------------


def _given_up(kernel: Kernel, attempts: int = 2) -> str:
    rid = kernel.request_run("k", RunTemplate("etl", launcher="mem"), now=0).run_id
    for i in range(attempts):
        kernel.record_launch(rid, error="down", now=i, max_attempts=attempts)
    assert kernel.run(rid).status == "GAVE_UP"
    return rid


def test_retry_sends_a_given_up_run_back_to_the_outbox_with_a_fresh_budget(
    kernel: Kernel,
) -> None:
    rid = _given_up(kernel, attempts=2)
    assert kernel.due_launches(now=100) == []
    row = kernel.retry_run(rid, now=100)
    assert (row.status, row.attempts, row.retries, row.next_attempt_at) == ("REQUESTED", 2, 1, 100)
    assert [r.run_id for r in kernel.due_launches(now=100)] == [rid]
    # A fresh budget: one failure is not the end, two are.
    assert kernel.record_launch(rid, error="down", now=101, max_attempts=2).status == "REQUESTED"
    assert kernel.record_launch(rid, error="down", now=200, max_attempts=2).status == "GAVE_UP"
    assert kernel.retry_run(rid, now=300).retries == 2
    assert kernel.record_launch(rid, external_id="x", now=301).status == "LAUNCHED"
    assert kernel.verify().ok


@pytest.mark.parametrize("status", ["REQUESTED", "LAUNCHED", "SUCCEEDED", "FAILED"])
def test_retry_refuses_a_run_that_did_not_give_up(
    kernel: Kernel, store: Store, status: str
) -> None:
    rid = kernel.request_run("k", RunTemplate("etl", launcher="mem"), now=0).run_id
    if status == "LAUNCHED":
        kernel.record_launch(rid, external_id="x", now=1)
    elif status != "REQUESTED":
        kernel.complete_run(rid, status == "SUCCEEDED", now=1)
    before = dump(store)
    with pytest.raises(InputError, match="only a GAVE_UP run"):
        kernel.retry_run(rid, now=2)
    assert dump(store) == before
    with pytest.raises(NotFound):
        kernel.retry_run(run_id("manual:nope"), now=2)


def test_two_operators_retrying_from_one_read_retry_once(kernel: Kernel, store: Store) -> None:
    rid = _given_up(kernel)
    row = kernel.run(rid)
    batch = decide.retry_run(row, rid, "alice")
    kernel.retry_run(rid, now=10, requested_by="bob")
    before = dump(store)
    assert store.append(batch, 11).duplicate  # alice's read was of the same GAVE_UP run
    assert dump(store) == before
    assert kernel.run(rid).retries == 1


# -- backfill -----------------------------------------------------------------------------------


def test_backfill_requests_one_run_per_tick_in_the_backfill_namespace(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(), now=10 * D)  # created later than the range: no matter
    ticks = kernel.backfill("hourly", 0, 3 * H, now=10 * D)
    assert [t.run_key for t in ticks] == [
        f"backfill:hourly:1970-01-01T0{h}:00:00Z" for h in range(4)
    ]  # both ends inclusive
    assert all(t.run is not None and not t.existing for t in ticks)
    runs = kernel.runs(limit=10)
    assert sorted(r.run_key for r in runs) == sorted(t.run_key for t in ticks if t.run_key)
    assert {r.origin for r in runs} == {"backfill"}
    assert kernel.ticks("hourly") == []  # a backfill is not an evaluation
    assert kernel.verify().ok


def test_backfilling_twice_creates_no_second_run(kernel: Kernel) -> None:
    kernel.define_schedule(schedule(), now=0)
    kernel.backfill("hourly", 0, 2 * H, now=100)
    again = kernel.backfill("hourly", H, 4 * H, now=200)
    assert [t.existing for t in again] == [True, True, False, False]
    assert len(kernel.runs(limit=100)) == 5
    third = kernel.backfill("hourly", 0, 4 * H, now=300)
    assert all(t.existing for t in third)
    assert len(kernel.runs(limit=100)) == 5
    assert kernel.conflicts() == []
    assert kernel.verify().ok


def test_a_backfill_whose_first_run_exists_still_requests_the_others(kernel: Kernel) -> None:
    """Found by the machine: a backfill's first run request was its append's first key, so a
    wider backfill at the same instant was taken for a repeat of the narrow one and dropped."""
    kernel.define_schedule(schedule(), now=0)
    kernel.backfill("hourly", 0, 0, now=100)
    wider = kernel.backfill("hourly", 0, H, now=100)
    assert [(t.existing, t.run is not None) for t in wider] == [(True, True), (False, True)]
    assert len(kernel.runs()) == 2
    repeated = kernel.backfill("hourly", 0, H, now=100)  # the very same backfill: one effect
    assert [t.existing for t in repeated] == [True, True]
    changes = [
        (h.change, h.range_from, h.range_to, h.runs) for h in kernel.history("schedule", "hourly")
    ]
    assert changes == [
        ("backfilled", 0, H, 2),
        ("backfilled", 0, 0, 1),
        ("created", None, None, None),
    ]
    assert kernel.verify().ok


def test_a_dry_run_lists_the_ticks_and_writes_nothing(kernel: Kernel, store: Store) -> None:
    kernel.define_schedule(schedule(), now=0)
    kernel.backfill("hourly", 0, H, now=1)
    before = dump(store)
    preview = kernel.backfill("hourly", 0, 2 * H, dry_run=True, now=2)
    assert dump(store) == before
    assert [(t.existing, t.run is not None) for t in preview] == [
        (True, True),
        (True, True),
        (False, False),
    ]


def test_a_range_over_the_bound_is_refused_saying_how_many(kernel: Kernel, store: Store) -> None:
    kernel.define_schedule(schedule(), now=0)
    before = dump(store)
    with pytest.raises(InputError, match=r"holds 25 ticks.*limit of 24"):
        kernel.backfill("hourly", 0, D, max_runs=24, now=1)
    with pytest.raises(InputError, match="more than 10000 ticks"):
        kernel.backfill("hourly", 0, 3650 * D, now=1)
    with pytest.raises(InputError, match="ends"):
        kernel.backfill("hourly", H, 0, now=1)
    with pytest.raises(InputError, match="max runs"):
        kernel.backfill("hourly", 0, H, max_runs=1001, now=1)
    assert dump(store) == before
    assert len(kernel.backfill("hourly", 0, D, max_runs=25, now=1)) == 25


def test_backfill_of_an_unknown_or_deleted_schedule_is_not_found(kernel: Kernel) -> None:
    with pytest.raises(NotFound):
        kernel.backfill("nope", 0, H, now=1)
    kernel.define_schedule(schedule(), now=0)
    kernel.delete_schedule("hourly", now=1)
    with pytest.raises(NotFound):
        kernel.backfill("hourly", 0, H, now=2)


def test_backfill_follows_the_dst_policy_of_the_schedule(kernel: Kernel) -> None:
    """The same walk as the schedule: a 02:30 that does not exist on spring-forward day is
    skipped (``dst_gap = "skip"``) or moved (``transition``), and a fall-back 01:30 runs once
    (``first``) or twice (``both``)."""
    ny = {"timezone": "America/New_York"}
    kernel.define_schedule(schedule("skip", cron="30 2 * * *", dst_gap="skip", **ny), now=0)
    kernel.define_schedule(schedule("move", cron="30 2 * * *", **ny), now=0)
    kernel.define_schedule(schedule("both", cron="30 1 * * *", dst_fold="both", **ny), now=0)
    spring = [
        (t.action, t.dst is not None)
        for t in kernel.backfill("skip", NY_SPRING - D, NY_SPRING + D, now=1)
    ]
    assert spring == [("run", False), ("skip", True), ("run", False)]
    moved = kernel.backfill("move", NY_SPRING - 2 * H, NY_SPRING + 2 * H, now=1)
    assert [t.scheduled_for for t in moved] == [NY_SPRING]  # 02:30 -> 03:00 EDT
    fall = kernel.backfill("both", NY_FALL - 2 * H, NY_FALL + 2 * H, now=1)
    assert [t.scheduled_for for t in fall] == [NY_FALL - 30 * 60, NY_FALL + 30 * 60]
    assert len({t.run_key for t in fall}) == 2  # two instants, two runs
    assert kernel.verify().ok

"""Retention (issue 16): the declared policy, the dedupe horizon, pruning, and what history
queries say about pruned items. Every test runs on memory, LMDB and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from arcoflow.kernel import (
    Definitions,
    InputError,
    InvalidDefinition,
    Kernel,
    LmdbStore,
    NotFound,
    Pruned,
    RetentionPolicy,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    parse_definitions,
)
from arcoflow.kernel.pruning import plan_prune
from arcoflow.kernel.rows import Table
from arcoflow.kernel.store.base import Store

DAY = 86400
HOUR = 3600


def dump(store: Store) -> dict[Table, list[tuple[bytes, bytes]]]:
    with store.read() as txn:
        return {t: list(txn.scan(t)) for t in Table}


def push_sensor(kernel: Kernel, **retention: object) -> None:
    policy = RetentionPolicy(**retention) if retention else None  # type: ignore[arg-type]
    kernel.define_sensor(
        SensorDefinition("orders", "push", RunTemplate("ship"), retention=policy), now=0
    )


# -- the policy ----------------------------------------------------------------------------------


def test_a_policy_is_declared_in_the_definitions_file_with_overrides() -> None:
    defs = parse_definitions(
        {
            "retention": {"history": "30d", "dedupe_horizon": "7d"},
            "schedule": [
                {
                    "id": "h",
                    "cron": "0 * * * *",
                    "run": {"target": "t"},
                    "retention": {"history": "2d"},
                }
            ],
        }
    )
    assert defs.retention == RetentionPolicy(30 * DAY, 7 * DAY)
    assert defs.schedules[0].retention == RetentionPolicy(history=2 * DAY)


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"history": "0s"}, "history: must be at least one second"),
        ({"history": "3x"}, "history: duration '3x'"),
        ({"dedupe_horizon": -1}, "dedupe_horizon: duration -1 is out of range"),
        ({"dedupe_horizon": True}, "dedupe_horizon: duration True"),
        ({"keep": "1d"}, "unknown field(s) keep"),
        ("30d", "[retention]"),
    ],
)
def test_a_bad_policy_is_a_typed_error_naming_the_field(table: object, message: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        parse_definitions({"retention": table})
    assert message in str(caught.value)


def test_a_bad_policy_through_the_api_writes_nothing(kernel: Kernel) -> None:
    before = dump(kernel.store)
    with pytest.raises(InvalidDefinition, match="history"):
        kernel.set_retention(RetentionPolicy(history="soon"), now=0)
    with pytest.raises(InputError, match="policy: expected a RetentionPolicy"):
        kernel.set_retention("30d", now=0)  # type: ignore[arg-type]
    assert dump(kernel.store) == before


def test_the_store_policy_is_stored_and_applied_once(kernel: Kernel) -> None:
    assert kernel.retention() == RetentionPolicy()  # none set: keep everything
    policy = RetentionPolicy(history="7d")
    kernel.apply(Definitions(retention=policy), now=0)
    seq = sum(1 for _ in kernel.log())
    assert kernel.set_retention(policy, now=5) == policy
    assert sum(1 for _ in kernel.log()) == seq  # the same policy again writes nothing


def test_a_definition_without_a_retention_keeps_its_content_bytes() -> None:
    """Definitions stored before retention existed are not seen as changed on the next apply
    (their content, and so their version, stays)."""
    plain = ScheduleDefinition("h", "0 * * * *", RunTemplate("t"))
    assert b"retention" not in plain.content()
    kept = ScheduleDefinition("h", "0 * * * *", RunTemplate("t"), retention=RetentionPolicy(9))
    assert plain.content() != kept.content()


# -- the dedupe horizon ----------------------------------------------------------------------------


def test_a_message_is_a_duplicate_within_the_horizon_and_new_after_it(kernel: Kernel) -> None:
    """Exact to the second, whether or not a prune ran: the entry carries its horizon."""
    push_sensor(kernel, dedupe_horizon="1h")
    first = kernel.ingest("orders", "m", 1, now=1000)
    assert not first.duplicate
    again = kernel.ingest("orders", "m", 1, now=1000 + HOUR - 1)
    assert again.duplicate
    assert again.evaluation.evaluation.eval_id == first.evaluation.evaluation.eval_id
    late = kernel.ingest("orders", "m", 1, now=1000 + HOUR)
    assert not late.duplicate
    assert late.evaluation.seq > first.evaluation.seq
    # The redelivery is a new message, but its run key is remembered: no second run.
    assert late.evaluation.deduped == ("sensor:orders:m",)
    assert len(kernel.runs()) == 1
    assert kernel.verify().ok


def test_a_message_within_the_horizon_stays_a_duplicate_after_its_history_is_pruned(
    kernel: Kernel,
) -> None:
    push_sensor(kernel, history="1h", dedupe_horizon="1d")
    first = kernel.ingest("orders", "m", 1, now=1000)
    kernel.complete_run(kernel.run_by_key("sensor:orders:m").run_id, True, now=1001)
    assert kernel.prune(now=1000 + 2 * HOUR).rows == 2  # the evaluation and the run
    assert kernel.evaluations("orders") == []
    again = kernel.ingest("orders", "m", 1, now=1000 + 2 * HOUR)
    assert again.duplicate  # answered from the log
    assert again.evaluation.evaluation.eval_id == first.evaluation.evaluation.eval_id
    assert kernel.verify().ok


def test_expired_message_ids_are_pruned_and_a_later_redelivery_survives_the_prune(
    kernel: Kernel,
) -> None:
    push_sensor(kernel, dedupe_horizon="1h")
    kernel.ingest("orders", "m", 1, now=0)
    kernel.ingest("orders", "m", 1, now=2 * HOUR)  # new: the first entry expired
    done = kernel.prune(now=2 * HOUR + 1)
    assert done.keys >= 1
    # The second delivery's key is younger than its horizon: still a duplicate.
    assert kernel.ingest("orders", "m", 1, now=2 * HOUR + 2).duplicate
    assert kernel.verify().ok


def test_without_a_horizon_a_message_id_is_remembered_forever(kernel: Kernel) -> None:
    push_sensor(kernel)
    kernel.ingest("orders", "m", 1, now=0)
    kernel.prune(now=300 * 365 * DAY)
    assert kernel.ingest("orders", "m", 1, now=300 * 365 * DAY).duplicate


# -- pruning ---------------------------------------------------------------------------------------


def hourly(kernel: Kernel, **retention: object) -> None:
    policy = RetentionPolicy(**retention) if retention else None  # type: ignore[arg-type]
    definition = ScheduleDefinition("h", "0 * * * *", RunTemplate("t"), retention=policy)
    kernel.define_schedule(definition, now=0)
    for hour in range(1, 49):
        kernel.evaluate_schedules(now=hour * HOUR)


def test_ticks_older_than_history_are_pruned_and_say_so(kernel: Kernel) -> None:
    hourly(kernel, history="1d")
    kernel.prune(now=49 * HOUR)
    ticks = kernel.ticks("h", limit=100)
    assert [t.scheduled_for for t in ticks][-1] == 25 * HOUR  # 49h - 1d, the oldest kept
    assert kernel.pruned_before("schedule", "h") == 24 * HOUR + 1
    with pytest.raises(Pruned, match="before 1970-01-02T00:00:01Z"):
        kernel.tick("h:1970-01-01T05:00:00Z")
    with pytest.raises(NotFound) as caught:  # a tick that never was: no claim of pruning
        kernel.tick("h:1970-01-03T05:00:00Z")
    assert not isinstance(caught.value, Pruned)
    assert kernel.verify().ok


def test_unfinished_runs_are_never_pruned_and_finished_ones_leave_their_key(
    kernel: Kernel,
) -> None:
    hourly(kernel, history="1d")
    runs = kernel.runs(limit=100)
    done = runs[-1]  # the oldest
    kernel.complete_run(done.run_id, True, now=2 * HOUR)
    kernel.prune(now=100 * DAY)
    kept = {r.run_id for r in kernel.runs(limit=100)}
    assert kept == {r.run_id for r in runs} - {done.run_id}  # every REQUESTED run stays
    with pytest.raises(Pruned, match="its run key stays taken"):
        kernel.run(done.run_id)
    assert kernel.verify().ok


def test_a_pruned_run_key_is_never_run_again(kernel: Kernel) -> None:
    """Exactly once per logical trigger survives pruning: a manual or backfill key requested
    again after its run was pruned makes no second run (the key-to-run index is forever)."""
    kernel.set_retention(RetentionPolicy(history="1d"), now=0)
    run = kernel.request_run("nightly-2026-01-01", RunTemplate("t"), now=0)
    kernel.complete_run(run.run_id, True, now=1)
    assert kernel.prune(now=2 * DAY).rows == 1
    before = dump(kernel.store)[Table.RUNS]
    with pytest.raises(Pruned):
        kernel.request_run("nightly-2026-01-01", RunTemplate("t"), now=3 * DAY)
    assert dump(kernel.store)[Table.RUNS] == before
    # Other content under the pruned key: refused the same way (only the key is kept).
    with pytest.raises(Pruned):
        kernel.request_run("nightly-2026-01-01", RunTemplate("other"), now=3 * DAY)
    assert dump(kernel.store)[Table.RUNS] == before
    assert kernel.verify().ok


def test_two_overlapping_prunes_drop_each_row_once(kernel: Kernel) -> None:
    """Two daemons plan the same prune in different chunks (different events): ``evolve``
    re-checks each row, so the second drops nothing twice and leaves the first's tombstones."""
    kernel.set_retention(RetentionPolicy(history="1d"), now=0)
    for i in range(6):
        run = kernel.request_run(f"k{i}", RunTemplate("t"), now=i)
        kernel.complete_run(run.run_id, True, now=10 + i)
    with kernel.store.read() as txn:
        one = plan_prune(txn, kernel.store.codec, 2 * DAY, 100, 2)
        other = plan_prune(txn, kernel.store.codec, 2 * DAY + 5, 100, 4)
    assert one.rows == other.rows == 6
    for batch in one.batches:
        kernel.store.append(batch, 2 * DAY)
    after_one = dump(kernel.store)
    for batch in other.batches:
        kernel.store.append(batch, 2 * DAY + 5)
    after_both = dump(kernel.store)
    for table in (Table.RUNS, Table.RUN_KEYS, Table.LINKS, Table.FINISHED, Table.RUN_ORDER):
        assert after_both[table] == after_one[table]
    assert after_both[Table.RUNS] == []
    assert len(after_both[Table.RUN_KEYS]) == 6
    assert kernel.verify().ok


def test_a_pass_is_bounded_and_the_next_one_continues(kernel: Kernel) -> None:
    hourly(kernel, history="1h")
    first = kernel.prune(now=100 * DAY, limit=10, chunk=3)
    assert first.rows == 10 and first.events == 4
    total = first.rows
    while (step := kernel.prune(now=100 * DAY, limit=10, chunk=3)).rows:
        total += step.rows
    assert total == 49  # 48 ticks and the summary of the missed 0h tick
    assert kernel.ticks("h") == []
    assert kernel.verify().ok


def test_a_prune_with_nothing_to_do_writes_nothing(kernel: Kernel) -> None:
    hourly(kernel)  # no policy: keep everything
    before = dump(kernel.store)
    assert kernel.prune(now=1000 * DAY) == (0, 0, 0)
    assert dump(kernel.store) == before


def test_each_owner_follows_its_own_override(kernel: Kernel) -> None:
    kernel.set_retention(RetentionPolicy(history="30d"), now=0)
    push_sensor(kernel, history="1h")
    for i in range(5):
        kernel.ingest("orders", f"m{i}", None, now=i)
    hourly(kernel)  # the store's 30 days
    kernel.prune(now=3 * DAY)
    assert kernel.evaluations("orders") == []
    assert len(kernel.ticks("h", limit=100)) == 48
    assert kernel.pruned_before("sensor", "orders") == 5
    assert kernel.pruned_before("schedule", "h") is None


def test_conflicts_and_missed_summaries_are_pruned_with_the_store_history(
    kernel: Kernel,
) -> None:
    kernel.set_retention(RetentionPolicy(history="1d"), now=0)
    kernel.request_run("k", RunTemplate("a"), now=0)
    kernel.request_run("k", RunTemplate("b"), now=1)
    definition = ScheduleDefinition("m", "* * * * *", RunTemplate("t"), catchup_window=60)
    kernel.define_schedule(definition, now=0)
    kernel.evaluate_schedules(now=HOUR)  # a missed summary
    assert kernel.conflicts() and kernel.missed("m")
    kernel.prune(now=3 * DAY)
    assert kernel.conflicts() == [] and kernel.missed("m") == []
    assert kernel.pruned_before("store", "conflicts") == 2
    assert kernel.verify().ok


def test_runs_finished_before_the_index_existed_are_indexed_on_open(tmp_path: Path) -> None:
    """A store an older arcoflow wrote has finished runs but no ``finished`` entries: opening
    it builds them once, so ``verify`` agrees with a replay and retention can prune them."""
    path = str(tmp_path / "store")
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        run = kernel.request_run("k", RunTemplate("t"), now=0)
        kernel.complete_run(run.run_id, True, now=1)
        env = store._env
        with env.env.begin(write=True) as txn:  # as an older arcoflow left it
            txn.drop(env.dbs[Table.FINISHED], delete=False)
            txn.delete(b"upgraded:finished-index", db=env.identity)
        assert not kernel.verify().ok
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        assert kernel.verify().ok
        kernel.set_retention(RetentionPolicy(history="1h"), now=DAY)
        assert kernel.prune(now=DAY).rows == 1

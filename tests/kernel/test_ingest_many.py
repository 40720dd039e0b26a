"""Batched push (issue 14): ``Kernel.ingest_many`` records many messages in one transaction,
each with the outcome ``ingest`` would give it alone. Runs on both backends."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from arcoflow.kernel import (
    Ingested,
    InputError,
    Kernel,
    NotFound,
    PayloadTooLarge,
    Pending,
    Refused,
    RunRequest,
    Store,
)
from arcoflow.kernel.events import SensorDefined, SensorDeleted, SensorToggled
from arcoflow.kernel.rows import Table
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import (
    STORE_KINDS,
    dump,
    examples,
    log_seqs,
    open_store,
    poll_sensor,
    push_sensor,
    scratch_dir,
)
from .test_store import batch_of, run_requested


def test_a_batch_is_one_evaluation_and_one_run_per_message(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    outcomes = kernel.ingest_many("hook", [("a", {"n": 1}), ("b", {"n": 2})], now=5)
    assert [type(o) for o in outcomes] == [Ingested, Ingested]
    assert [o.evaluation.evaluation.message_id for o in outcomes if isinstance(o, Ingested)] == [
        "a",
        "b",
    ]
    assert not any(o.duplicate for o in outcomes if isinstance(o, Ingested))
    assert len(kernel.evaluations("hook")) == 2
    assert {r.run_key for r in kernel.runs()} == {"sensor:hook:a", "sensor:hook:b"}


def test_duplicates_inside_and_across_batches_write_nothing(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    (first,) = kernel.ingest_many("hook", [("a", 1)], now=5)
    assert isinstance(first, Ingested)
    before = dump(kernel.store)
    again = kernel.ingest_many("hook", [("a", 1), ("a", 1)], now=9)
    assert again == [Ingested(first.evaluation, True)] * 2
    assert dump(kernel.store) == before
    inside = kernel.ingest_many("hook", [("b", 1), ("b", 2)], now=9)
    assert isinstance(inside[0], Ingested) and not inside[0].duplicate
    assert inside[1] == Ingested(inside[0].evaluation, True)
    assert len(kernel.evaluations("hook")) == 2


def test_a_bad_message_is_refused_alone(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook", max_payload_bytes=16), now=0)
    outcomes = kernel.ingest_many(
        "hook",
        [("ok", 1), ("", 1), ("big", "x" * 64), ("odd", object()), ("ok2", None), (7, None)],
        now=5,
    )
    kinds = [type(o).__name__ for o in outcomes]
    assert kinds == ["Ingested", "Refused", "Refused", "Refused", "Ingested", "Refused"]
    refused = [o for o in outcomes if isinstance(o, Refused)]
    assert isinstance(refused[1].error, PayloadTooLarge)
    assert all(isinstance(r.error, InputError) for r in refused)
    assert [e.evaluation.message_id for e in kernel.evaluations("hook")] == ["ok2", "ok"]


def test_an_unknown_or_stopped_sensor_refuses_every_message(kernel: Kernel) -> None:
    (gone,) = kernel.ingest_many("nope", [("a", 1)], now=5)
    assert isinstance(gone, Refused) and isinstance(gone.error, NotFound)
    kernel.define_sensor(push_sensor("hook"), now=0)
    kernel.set_sensor_running("hook", False, now=1)
    before = dump(kernel.store)
    outcomes = kernel.ingest_many("hook", [("a", 1), ("b", 2)], now=5)
    assert all(isinstance(o, Refused) and "stopped" in str(o.error) for o in outcomes)
    assert dump(kernel.store) == before


def test_a_batch_is_one_transaction(kernel: Kernel, monkeypatch: pytest.MonkeyPatch) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    calls: list[int] = []
    append_many = kernel.store.append_many

    def counted(batches: Any, at: int) -> Any:
        calls.append(len(batches))
        return append_many(batches, at)

    monkeypatch.setattr(kernel.store, "append_many", counted)
    monkeypatch.setattr(kernel.store, "append", None)  # never one transaction per message
    kernel.ingest_many("hook", [(str(i), i) for i in range(50)], now=5)
    assert calls == [50]


def test_the_connector_is_asked_once_per_message(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook", connector="map"), now=0)
    asked: list[str] = []

    def mapper(message: Any) -> list[RunRequest]:
        asked.append(message.message_id)
        return [RunRequest(f"r-{message.message_id}")]

    kernel.ingest_many("hook", [("a", 1), ("a", 1), ("b", 1)], now=5, connector=mapper)
    kernel.ingest_many("hook", [("a", 1), ("b", 1)], now=6, connector=mapper)
    assert asked == ["a", "b"]


# -- the store port: several batches in one write transaction ------------------------------------


def test_append_many_gives_each_batch_its_own_idempotency_outcome(store: Store) -> None:
    first = store.append(batch_of(2, "a"), at=1)
    results = store.append_many([batch_of(2, "a"), batch_of(3, "b"), batch_of(3, "b")], at=2)
    assert results[0] == first._replace(duplicate=True)
    assert not results[1].duplicate and [e.key for e in results[1].records] == [
        "b/0",
        "b/1",
        "b/2",
    ]
    assert results[2] == results[1]._replace(duplicate=True)  # repeated within the transaction
    assert log_seqs(store) == [1, 2, 3, 4, 5]


def test_append_many_is_all_or_nothing(store: Store) -> None:
    store.append(batch_of(1, "a"), at=1)
    before = dump(store)

    bad = [Pending("c/0", None)]  # type: ignore[arg-type]  # evolve cannot apply it
    with pytest.raises(Exception):  # noqa: B017 - whatever the backend raises
        store.append_many([batch_of(2, "b"), bad], at=2)
    assert dump(store) == before
    with store.read() as txn:
        assert txn.get(Table.IDEM, b"b/0") is None


# -- ingest_many == ingest, one message at a time ------------------------------------------------

_messages = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c", "d", ""]),
        st.one_of(st.integers(0, 3), st.just("x" * 40), st.just(2**70)),
    ),
    max_size=12,
)


@pytest.mark.parametrize("kind", STORE_KINDS)
@settings(max_examples=examples(0.5), suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(chunks=st.lists(_messages, max_size=4))
def test_ingest_many_gives_the_state_of_one_by_one(
    kind: str, chunks: list[list[tuple[str, Any]]]
) -> None:
    with scratch_dir() as a, scratch_dir() as b:
        batched, single = open_store(kind, a), open_store(kind, b)
        try:
            states = []
            for store, by_one in ((batched, False), (single, True)):
                k = Kernel(store)
                k.define_sensor(push_sensor("hook", max_payload_bytes=32), now=0)
                for n, chunk in enumerate(chunks, start=1):
                    if not by_one:
                        outcomes = k.ingest_many("hook", chunk, now=n)
                        assert len(outcomes) == len(chunk)
                        continue
                    for message_id, payload in chunk:
                        with contextlib.suppress(InputError):
                            k.ingest("hook", message_id, payload, now=n)
                states.append(dump(store))
            assert states[0] == states[1]
            assert Kernel(batched).verify().ok
        finally:
            batched.close()
            single.close()


# -- several appends in one transaction write each row once, in its final version ---------------

_steps = st.lists(
    st.one_of(
        st.tuples(st.just("toggle"), st.booleans(), st.integers(0, 10**6)),
        st.tuples(st.just("delete"), st.none(), st.none()),
        st.tuples(st.just("run"), st.sampled_from(["a", "b", "c"]), st.none()),
    ),
    max_size=12,
)


@settings(max_examples=examples(0.3), deadline=None)
@given(steps=_steps)
def test_append_many_writes_the_rows_and_indexes_of_one_at_a_time(
    steps: list[tuple[str, Any, Any]],
) -> None:
    """Batches that move the same row and its index entries again and again (a poll sensor
    started, stopped, rescheduled, deleted; runs requested twice) in one ``append_many``: the
    tables are byte for byte those of appending the batches one at a time, on every store."""
    batches = [[Pending("def", SensorDefined("p", poll_sensor("p"), 1, 0, 100))]]
    for n, (kind, a, b) in enumerate(steps):
        event: Any = (
            SensorToggled("p", a, b if a else None)
            if kind == "toggle"
            else SensorDeleted("p")
            if kind == "delete"
            else run_requested(a)
        )
        batches.append([Pending(f"step/{n}", event)])
    for kind in STORE_KINDS[:2]:  # memory and LMDB: the backends with one writer at a time
        with scratch_dir() as here:
            together, alone = open_store(kind, f"{here}/a"), open_store(kind, f"{here}/b")
            try:
                together.append_many(batches, at=3)
                for batch in batches:
                    alone.append(batch, at=3)
                assert dump(together) == dump(alone)
                assert Kernel(together).verify().ok
            finally:
                together.close()
                alone.close()

"""A push message the kernel refuses is recorded in the sensor's history (issue 14): with
``ingest_many(..., record_refusals=True)`` (what broker sources use), each refusal by a sensor
that exists is a ``REFUSED`` evaluation, in the batch's own transaction, with the reason and a
bounded, printable summary (never raw bytes). It consumes no message id and leaves the
``state_version`` alone. Runs on every backend (the ``kernel`` fixture)."""

from __future__ import annotations

from typing import Any

import pytest
from arcoflow.kernel import (
    Ingested,
    Kernel,
    MemoryStore,
    NotFound,
    PayloadTooLarge,
    Refused,
    SensorRow,
)
from arcoflow.kernel.decide import MAX_REFUSAL_TEXT
from arcoflow.kernel.views import eval_json
from arcoflow.spec.model import Model
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import dump, examples, push_sensor


def _refused(outcome: Ingested | Refused) -> Refused:
    assert isinstance(outcome, Refused), outcome
    return outcome


def _statuses(kernel: Kernel, sensor_id: str = "hook") -> list[tuple[str | None, str]]:
    return [
        (e.evaluation.message_id, e.evaluation.status)
        for e in reversed(kernel.evaluations(sensor_id))
    ]


def test_a_refused_message_is_recorded_with_its_reason(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook", max_payload_bytes=16), now=0)
    outcomes = kernel.ingest_many(
        "hook",
        [("ok", 1), ("big", "x" * 64), ("nojson", None, "the body is not JSON: bad byte")],
        now=5,
        record_refusals=True,
    )
    assert isinstance(outcomes[0], Ingested)
    big, nojson = _refused(outcomes[1]), _refused(outcomes[2])
    assert isinstance(big.error, PayloadTooLarge)
    assert big.evaluation is not None and nojson.evaluation is not None
    assert big.evaluation.evaluation.status == "REFUSED"
    assert "max_payload_bytes" in (big.evaluation.reason or "")
    assert big.evaluation.evaluation.summary == 'payload 66 bytes of JSON: "' + "x" * 64 + '"'
    assert nojson.evaluation.reason == "the body is not JSON: bad byte"
    assert nojson.evaluation.evaluation.summary is None  # no payload to describe
    # In the sensor's history, as the CLI and HTTP show it; no run, no state_version move.
    assert _statuses(kernel) == [("ok", "REQUESTED"), ("big", "REFUSED"), ("nojson", "REFUSED")]
    shown = eval_json(kernel.evaluation(big.evaluation.evaluation.eval_id))
    assert (shown["status"], shown["summary"]) == ("REFUSED", big.evaluation.evaluation.summary)
    assert [r.run_key for r in kernel.runs()] == ["sensor:hook:ok"]
    sensor: SensorRow = kernel.sensor("hook")
    assert (sensor.state_version, sensor.evaluations, sensor.last_status) == (0, 3, "REFUSED")
    assert kernel.verify().ok


def test_a_stopped_sensor_records_each_refusal_once_and_the_id_stays_free(
    kernel: Kernel,
) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    kernel.set_sensor_running("hook", False, now=1)
    (first,) = kernel.ingest_many("hook", [("a", 1)], now=5, record_refusals=True)
    assert "stopped" in str(_refused(first).error)
    before = dump(kernel.store)
    # The broker redelivers it (a crash between commit and reject): one record, not two.
    again = kernel.ingest_many("hook", [("a", 1), ("a", 1)], now=9, record_refusals=True)
    assert [_refused(o).evaluation for o in again] == [_refused(first).evaluation] * 2
    assert dump(kernel.store) == before
    # Started again: the same message is taken (a refusal consumed no id) ...
    kernel.set_sensor_running("hook", True, now=10)
    (taken,) = kernel.ingest_many("hook", [("a", 1)], now=11, record_refusals=True)
    assert isinstance(taken, Ingested) and not taken.duplicate
    # ... and stopped once more, a new message's refusal is a new record.
    kernel.set_sensor_running("hook", False, now=12)
    kernel.ingest_many("hook", [("b", 1)], now=13, record_refusals=True)
    assert _statuses(kernel) == [("a", "REFUSED"), ("a", "REQUESTED"), ("b", "REFUSED")]
    assert kernel.verify().ok


def test_unknown_sensor_writes_nothing_and_a_deleted_one_records(kernel: Kernel) -> None:
    before = dump(kernel.store)
    (gone,) = kernel.ingest_many("nope", [("a", 1)], now=5, record_refusals=True)
    assert isinstance(_refused(gone).error, NotFound) and gone.evaluation is None
    assert dump(kernel.store) == before  # no sensor, no history: the source's log says why
    kernel.define_sensor(push_sensor("hook"), now=0)
    kernel.delete_sensor("hook", now=1)
    (deleted,) = kernel.ingest_many("hook", [("a", 1)], now=5, record_refusals=True)
    assert isinstance(_refused(deleted).error, NotFound)
    assert deleted.evaluation is not None and "deleted" in (deleted.evaluation.reason or "")


def test_without_record_refusals_nothing_is_written_for_a_deleted_sensor(
    kernel: Kernel,
) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    kernel.delete_sensor("hook", now=1)
    before = dump(kernel.store)
    (deleted,) = kernel.ingest_many("hook", [("a", 1)], now=5)
    assert isinstance(_refused(deleted).error, NotFound) and deleted.evaluation is None
    assert dump(kernel.store) == before


@pytest.mark.parametrize(
    ("message_id", "payload"),
    [
        ("\udcff" * 3, 1),  # an id that is not valid Unicode
        ("m" * 5000, 1),  # an id over the limit
        (7, None),  # an id that is not text
        ("s", "\udcff" * 400),  # a payload that is not valid Unicode
        ("o", object()),  # a payload that is not JSON data
        ("d", {"deep": [[[[[["x" * 2000]]]]]]}),
    ],
)
def test_a_refused_message_is_stored_bounded_and_readable(
    kernel: Kernel, message_id: Any, payload: Any
) -> None:
    kernel.define_sensor(push_sensor("hook", max_payload_bytes=512), now=0)
    (out,) = kernel.ingest_many("hook", [(message_id, payload)], now=5, record_refusals=True)
    assert _refused(out).evaluation is not None
    (row,) = kernel.evaluations("hook")  # read back from the store, through its codec
    e = row.evaluation
    assert e.status == "REFUSED" and e.run_keys == ()
    for text in (row.reason, e.summary, e.message_id):
        if text is not None:
            assert len(text) <= MAX_REFUSAL_TEXT
            text.encode()  # valid UTF-8: readable by every client
    assert e.message_id == (message_id if message_id in ("s", "o", "d") else None)
    assert kernel.verify().ok


def test_the_model_agrees_on_what_is_refused_and_recorded(kernel: Kernel) -> None:
    model = Model()
    steps: list[tuple[str, Any]] = [
        ("define", None),
        ("push", [("a", 1), ("big", "x" * 64), ("a", 2), (None, None, "no id"), ("", 1)]),
        ("push", [(None, 1, "no id"), (None, 2, "no id"), (None, 1, "no id"), ("", 1)]),
        ("stop", None),
        ("push", [("c", 1), ("big", 1), ("c", 1)]),
        ("start", None),
        ("push", [("big", 1), ("c", 1)]),
        ("delete", None),
        ("push", [("d", 1)]),
    ]
    for n, (step, messages) in enumerate(steps, start=1):
        if step == "define":
            for side in (kernel, model):
                side.define_sensor(push_sensor("hook", max_payload_bytes=16), now=n)
        elif step in ("stop", "start"):
            kernel.set_sensor_running("hook", step == "start", now=n)
            model.set_sensor_running("hook", step == "start", n)
        elif step == "delete":
            kernel.delete_sensor("hook", now=n)
            model.delete_sensor("hook", n)
        else:
            got = kernel.ingest_many("hook", messages, now=n, record_refusals=True)
            expected = model.ingest_many("hook", messages, n, record_refusals=True)
            assert [_shape(o) for o in got] == [_model_shape(o) for o in expected], step
    assert [(e.eval_id, e.status, e.message_id) for e in model.evaluations] == [
        (r.evaluation.eval_id, r.evaluation.status, r.evaluation.message_id)
        for r in reversed(kernel.evaluations("hook"))
    ]
    assert model.sensors["hook"].evaluations == kernel.sensor("hook").evaluations


def _shape(outcome: Ingested | Refused) -> tuple[str, str | None]:
    if isinstance(outcome, Ingested):
        return ("ingested", outcome.evaluation.evaluation.eval_id)
    return ("refused", outcome.evaluation.evaluation.eval_id if outcome.evaluation else None)


def _model_shape(outcome: Any) -> tuple[str, str | None]:
    first, second = outcome
    if isinstance(second, bool):
        return ("ingested", first.eval_id)
    return ("refused", second.eval_id if second is not None else None)


_ids = st.sampled_from(["a", "b", "", None, 7])
_payloads = st.sampled_from([1, None, "x" * 40, {"k": [1, 2]}])
_problems = st.sampled_from([None, None, "the body is not JSON"])
_steps = st.lists(
    st.one_of(
        st.tuples(st.just("push"), st.lists(st.tuples(_ids, _payloads, _problems), max_size=6)),
        st.tuples(st.sampled_from(["stop", "start", "redefine", "delete"]), st.none()),
    ),
    max_size=8,
)


@settings(max_examples=examples(0.5), deadline=None)
@given(steps=_steps)
def test_refusals_agree_with_the_model_in_any_order(steps: list[tuple[str, Any]]) -> None:
    """Any interleaving of batches (good, refused, repeated, id-less), stops, starts,
    redefinitions and a delete: the kernel and the model record the same evaluations (ids,
    statuses, message ids) and answer each message alike."""
    kernel, model = Kernel(MemoryStore()), Model()
    limit = 16
    for side in (kernel, model):
        side.define_sensor(push_sensor("hook", max_payload_bytes=limit), now=1)
    for n, (step, messages) in enumerate(steps, start=2):
        live = not model.sensors["hook"].deleted
        if step in ("stop", "start") and live:
            kernel.set_sensor_running("hook", step == "start", now=n)
            model.set_sensor_running("hook", step == "start", n)
        elif step == "redefine" and live:
            limit = 48 if limit == 16 else 16
            for side in (kernel, model):
                side.define_sensor(push_sensor("hook", max_payload_bytes=limit), now=n)
        elif step == "delete" and live:
            kernel.delete_sensor("hook", now=n)
            model.delete_sensor("hook", n)
        elif step == "push":
            items = [(m, p) if problem is None else (m, p, problem) for m, p, problem in messages]
            got = kernel.ingest_many("hook", items, now=n, record_refusals=True)
            expected = model.ingest_many("hook", items, n, record_refusals=True)
            assert [_shape(o) for o in got] == [_model_shape(o) for o in expected]
    assert [(e.eval_id, e.status, e.message_id) for e in model.evaluations] == [
        (r.evaluation.eval_id, r.evaluation.status, r.evaluation.message_id)
        for r in reversed(kernel.evaluations("hook", limit=1000))
    ]
    assert kernel.sensor("hook").evaluations == model.sensors["hook"].evaluations
    assert kernel.sensor("hook").state_version == 0
    assert kernel.verify().ok

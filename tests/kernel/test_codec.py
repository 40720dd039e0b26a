"""The codec: every event round-trips; old versions are upcast; bad bytes are typed errors."""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import pytest
from arcoflow.kernel import (
    SCHEMA_VERSION,
    Codec,
    CorruptRecord,
    Envelope,
    FutureSchemaVersion,
    Kernel,
    LmdbStore,
    RunTemplate,
    Store,
    StoreError,
)
from arcoflow.kernel import events as ev
from arcoflow.kernel.rows import ROW_TYPES, ConflictRow, EvalRow, RunRow, SensorRow, Table, u64
from hypothesis import given
from hypothesis import strategies as st

from .helpers import (
    EVENT_STRATEGIES,
    encode,
    epochs,
    event_types,
    events,
    naturals,
    push_sensor,
    raw_put,
    sensor_definitions,
    texts,
)

CODEC = Codec()


def test_every_event_type_has_a_strategy() -> None:
    """A new event type without a strategy would escape the round-trip property."""
    assert set(EVENT_STRATEGIES) == event_types()
    assert len(event_types()) >= 14


@pytest.mark.parametrize("cls", sorted(event_types(), key=str))
@given(data=st.data())
def test_each_event_type_round_trips(cls: type[Any], data: st.DataObject) -> None:
    event = data.draw(EVENT_STRATEGIES[cls])
    seq, at = data.draw(naturals), data.draw(epochs)
    envelope = Envelope(SCHEMA_VERSION, seq, data.draw(texts), at, seq, event)
    decoded = CODEC.decode(CODEC.encode(envelope), f"seq {seq}")
    assert decoded == envelope
    assert type(decoded.event) is cls


@given(event=events, seq=naturals, batch=naturals, key=texts, at=epochs)
def test_envelope_round_trip_keeps_every_field(
    event: Any, seq: int, batch: int, key: str, at: int
) -> None:
    data = CODEC.encode(Envelope(SCHEMA_VERSION, seq, key, at, batch, event))
    head = msgspec.msgpack.decode(data)
    # The stored layout is the documented array, with the explicit tag string, not a class name.
    assert head[:5] == [SCHEMA_VERSION, seq, key, at, batch]
    assert head[5]["type"] == event.__struct_config__.tag
    envelope = CODEC.decode(data, "x")
    assert (envelope.seq, envelope.key, envelope.at, envelope.batch) == (seq, key, at, batch)
    assert envelope.event == event
    # Encoding is deterministic: a replay writes byte-identical records.
    assert CODEC.encode(envelope) == data


@given(row=st.builds(EvalRow, naturals, epochs, EVENT_STRATEGIES[ev.SensorEvaluated]))
def test_eval_rows_round_trip(row: EvalRow) -> None:
    assert CODEC.decode_row(CODEC.encode_row(row), EvalRow, "evals") == row


@given(definition=sensor_definitions(), cursor=st.none() | st.text() | st.binary())
def test_sensor_rows_round_trip(definition: Any, cursor: str | bytes | None) -> None:
    row = SensorRow(
        definition.id,
        definition,
        1,
        True,
        False,
        3,
        None if cursor is None else ev.Cursor.of(cursor, 7),
        2,
        None,
        5,
    )
    back = CODEC.decode_row(CODEC.encode_row(row), SensorRow, "sensors")
    assert back == row
    if cursor is not None:
        assert back.cursor is not None
        assert back.cursor.native() == cursor
        assert type(back.cursor.native()) is type(cursor)


def test_future_schema_version_names_version_and_seq() -> None:
    event = ev.SensorDeleted("s")
    data = CODEC.encode(Envelope(SCHEMA_VERSION + 1, 42, "k", 0, 42, event))
    with pytest.raises(FutureSchemaVersion) as info:
        CODEC.decode(data, "log")
    assert info.value.version == SCHEMA_VERSION + 1
    assert info.value.where == "seq 42"
    message = str(info.value)
    assert f"schema_version {SCHEMA_VERSION + 1}" in message
    assert "seq 42" in message
    assert "upgrade" in message
    assert isinstance(info.value, StoreError)


def test_future_version_is_refused_even_when_the_payload_is_unreadable() -> None:
    """The version is checked before the payload: a newer format may mean anything."""
    data = encode([SCHEMA_VERSION + 5, 9, "k", 0, 9, {"type": "from.the.future", "x": 1}])
    with pytest.raises(FutureSchemaVersion, match="seq 9"):
        CODEC.decode(data, "log")


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"garbage", b"\x96\x01", encode([1, 2, 3]), encode({"seq": 1})],
    ids=["empty", "reserved-byte", "text", "short-array", "three-items", "map"],
)
def test_garbage_is_a_corrupt_record_naming_where(data: bytes) -> None:
    with pytest.raises(CorruptRecord) as info:
        CODEC.decode(data, "seq 17")
    assert info.value.where == "seq 17"
    assert "seq 17" in str(info.value)


def test_unknown_event_tag_names_the_seq_from_the_record() -> None:
    data = encode([SCHEMA_VERSION, 8, "k", 0, 8, {"type": "no.such.event"}])
    with pytest.raises(CorruptRecord, match="seq 8"):
        CODEC.decode(data, "log")


def test_wrong_field_type_is_corrupt() -> None:
    data = encode([SCHEMA_VERSION, 3, "k", 0, 3, {"type": "sensor.deleted", "sensor_id": 5}])
    with pytest.raises(CorruptRecord, match="seq 3"):
        CODEC.decode(data, "log")


@given(event=events, seq=naturals)
def test_every_truncation_is_a_corrupt_record(event: Any, seq: int) -> None:
    data = CODEC.encode(Envelope(SCHEMA_VERSION, seq, "k", 0, seq, event))
    for cut in {0, 1, len(data) // 2, len(data) - 1}:
        with pytest.raises(CorruptRecord) as info:
            CODEC.decode(data[:cut], f"seq {seq}")
        assert info.value.where == f"seq {seq}"


@given(data=st.binary(max_size=64))
def test_arbitrary_bytes_decode_or_raise_a_typed_store_error(data: bytes) -> None:
    """Whatever is on disk, decoding never escapes as an untyped exception."""
    with contextlib.suppress(CorruptRecord, FutureSchemaVersion):
        CODEC.decode(data, "seq 1")


ROW_CLASSES = sorted(set(ROW_TYPES.values()), key=lambda c: c.__name__)


@given(data=st.binary(max_size=48), row_type=st.sampled_from(ROW_CLASSES))
def test_arbitrary_row_bytes_decode_or_raise_corrupt_record(data: bytes, row_type: type) -> None:
    with contextlib.suppress(CorruptRecord):
        CODEC.decode_row(data, row_type, "row")


def test_invalid_utf8_is_a_corrupt_record() -> None:
    bad = encode([SCHEMA_VERSION, 4, "k", 0, 4, {"type": "sensor.deleted", "sensor_id": "s"}])
    bad = bad.replace(b"\xa1s", b"\xa1\x80")  # the sensor id's one byte, now not UTF-8
    with pytest.raises(CorruptRecord, match="seq 4"):
        CODEC.decode(bad, "seq 4")
    with pytest.raises(CorruptRecord, match="seq 5"):
        CODEC.decode(b"\x96\x00\x00\xa4\x00\x00\x00\x80", "seq 5")


def test_rows_that_do_not_decode_are_corrupt_records() -> None:
    with pytest.raises(CorruptRecord, match="runs row"):
        CODEC.decode_row(b"\xc1", RunRow, "runs row")
    with pytest.raises(CorruptRecord):
        CODEC.decode_row(encode({"run_key": 1}), ConflictRow, "conflicts")


# -- upcasting -------------------------------------------------------------------------------
#
# A made-up history of the tick event: v1 called the instant "when" and wrote the status in
# lower case; v2 renamed "when" to "scheduled_for"; v3 (the codec under test) upper-cases the
# status. Each upcaster lifts exactly one version.


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data["scheduled_for"] = data.pop("when")
    data["_steps"] = [*data.get("_steps", []), 1]
    return data


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    data = dict(data)
    data["status"] = data["status"].upper()
    steps = data.pop("_steps", [])
    data["reason"] = f"upcast via {[*steps, 2]}"
    return data


V3 = Codec(version=3, upcasters={1: _v1_to_v2, 2: _v2_to_v3})


def _tick(version: int, seq: int) -> bytes:
    body: dict[str, Any] = {
        "type": "tick.recorded",
        "tick_id": "nightly:2026-01-01T01:30:00Z",
        "schedule_id": "nightly",
        "status": "triggered",
        "definition_version": 2,
        "attempt": 1,
    }
    body["when" if version == 1 else "scheduled_for"] = 1767231000
    return encode([version, seq, f"tick/{seq}", 1767231001, seq, body])


def test_upcasters_lift_v1_through_v2_to_v3() -> None:
    envelope = V3.decode(_tick(1, 5), "log")
    assert envelope.schema_version == 3
    assert (envelope.seq, envelope.key, envelope.at, envelope.batch) == (5, "tick/5", 1767231001, 5)
    assert envelope.event == ev.TickRecorded(
        "nightly:2026-01-01T01:30:00Z",
        "nightly",
        1767231000,
        "TRIGGERED",
        2,
        1,
        reason="upcast via [1, 2]",
    )


def test_a_v2_record_runs_only_the_later_upcaster() -> None:
    event = V3.decode(_tick(2, 6), "log").event
    assert isinstance(event, ev.TickRecorded)
    assert event.reason == "upcast via [2]"
    assert event.status == "TRIGGERED"


def test_a_current_record_is_not_upcast() -> None:
    def boom(_: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("upcaster called for a current record")

    codec = Codec(version=3, upcasters={1: boom, 2: boom})
    event = ev.TickRecorded("t", "s", 1, "SKIPPED", 1, 1)
    data = codec.encode(Envelope(3, 1, "k", 0, 1, event))
    assert codec.decode(data, "log").event == event
    with pytest.raises(FutureSchemaVersion, match="seq 2"):
        codec.decode(codec.encode(Envelope(4, 2, "k", 0, 2, event)), "log")


def test_a_missing_upcaster_is_refused_when_the_codec_is_built() -> None:
    with pytest.raises(ValueError, match=r"\[2\]"):
        Codec(version=3, upcasters={1: _v1_to_v2})


def test_an_upcast_that_yields_a_bad_event_is_a_corrupt_record() -> None:
    codec = Codec(version=2, upcasters={1: lambda data: data})  # forgets to rename "when"
    with pytest.raises(CorruptRecord, match="seq 11"):
        codec.decode(_tick(1, 11), "log")
    with pytest.raises(CorruptRecord, match="seq 12"):
        V3.decode(_tick(0, 12), "log")  # there never was a version 0


# -- corrupt records through the kernel ------------------------------------------------------


def _three_runs(kernel: Kernel) -> None:
    for i in range(3):
        kernel.request_run(f"r{i}", RunTemplate("t"), now=100 + i)


def test_log_raises_on_a_corrupt_record_never_skips_it(kernel: Kernel, store: Store) -> None:
    _three_runs(kernel)
    raw_put(store, Table.LOG, u64(2), b"\xc1 not msgpack")
    seen: list[int] = []
    with pytest.raises(CorruptRecord) as info:
        for envelope in kernel.log():
            seen.append(envelope.seq)
    assert seen in ([], [1])  # read in chunks: the chunk holding seq 2 fails as a whole
    assert info.value.where == "seq 2"


def test_verify_reports_a_corrupt_record(kernel: Kernel, store: Store) -> None:
    _three_runs(kernel)
    raw_put(store, Table.LOG, u64(2), b"\x96\x01\x02")
    result = kernel.verify()
    assert not result.ok
    assert result.events <= 1
    assert any("corrupt record at seq 2" in d for d in result.differences)


def test_verify_reports_a_record_from_the_future(kernel: Kernel, store: Store) -> None:
    _three_runs(kernel)
    newer = Envelope(SCHEMA_VERSION + 1, 3, "future", 0, 3, ev.SensorDeleted("s"))
    raw_put(store, Table.LOG, u64(3), CODEC.encode(newer))
    result = kernel.verify()
    assert not result.ok
    assert result.events <= 2
    assert any("seq 3" in d and "upgrade arcoflow" in d for d in result.differences)


def test_corrupt_row_is_reported_by_queries(kernel: Kernel, store: Store) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    raw_put(store, Table.SENSORS, b"hook", b"\xc1")
    with pytest.raises(CorruptRecord, match="hook"):
        kernel.sensor("hook")
    assert not kernel.verify().ok


def test_lmdb_refuses_a_store_written_by_a_newer_arcoflow(store_dir: str) -> None:
    with LmdbStore(store_dir) as store:
        raw_put(store, Table.META, b"schema_version", u64(SCHEMA_VERSION + 1))
    with pytest.raises(FutureSchemaVersion, match="upgrade"):
        LmdbStore(store_dir)


def test_a_text_cursor_whose_bytes_are_not_utf8_does_not_decode() -> None:
    """A damaged page can leave a text cursor that is not UTF-8: its record must fail to decode
    (and so be named as corrupt), not crash whoever later asks for the cursor's text."""
    stored = msgspec.msgpack.encode(ev.Cursor(b"ok"))
    with pytest.raises(msgspec.ValidationError, match="UTF-8"):
        msgspec.msgpack.decode(stored.replace(b"ok", b"\xba\xbb"), type=ev.Cursor)
    assert msgspec.msgpack.decode(stored, type=ev.Cursor).native() == "ok"

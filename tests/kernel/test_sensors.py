"""Sensors (issue 4 "Must show"): push dedupe, poll CAS, cursors, backoff, start/stop, payload
limits, visible non-runs and deterministic run triggering, on both stores."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import (
    Backoff,
    Conflict,
    InputError,
    Kernel,
    LmdbStore,
    MemoryStore,
    NotFound,
    PayloadTooLarge,
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    RunTemplate,
    SensorDefinition,
    Store,
)
from arcoflow.kernel.decide import backoff_delay
from arcoflow.kernel.events import Cursor
from arcoflow.kernel.rows import Table
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import dump, examples, poll_sensor, push_sensor

# -- push --------------------------------------------------------------------------------------


def test_push_creates_one_evaluation_and_one_run(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    got = kernel.ingest("hook", "m1", {"file": "a.csv"}, now=10)
    assert not got.duplicate
    e = got.evaluation.evaluation
    assert (e.sensor_id, e.kind, e.status, e.message_id) == ("hook", "push", "REQUESTED", "m1")
    assert e.run_keys == ("sensor:hook:m1",)
    run = kernel.run_by_key("sensor:hook:m1")
    assert run.config == {"payload": {"file": "a.csv"}}
    assert run.origin == "sensor:hook"


def test_duplicate_push_is_one_durable_effect_and_returns_the_original(
    kernel: Kernel, store: Store
) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    first = kernel.ingest("hook", "m1", {"n": 1}, now=10)
    kernel.ingest("hook", "m2", {"n": 2}, now=11)
    before = dump(store)
    # Re-delivered later, out of order, even with another payload: nothing new.
    again = kernel.ingest("hook", "m1", {"n": "changed"}, now=500)
    assert again.duplicate
    assert again.evaluation == first.evaluation
    assert dump(store) == before


def test_duplicate_push_that_races_past_the_precheck_is_caught_by_the_store(
    kernel: Kernel, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes may both miss the earlier evaluation; the append's key dedupes them."""
    kernel.define_sensor(push_sensor("hook"), now=0)
    first = kernel.ingest("hook", "m1", None, now=10)
    before = dump(store)
    real = Kernel._delivered
    calls: list[str] = []

    def miss_once(self: Kernel, idem: str, at: int) -> Any:
        calls.append(idem)
        return None if len(calls) == 1 else real(self, idem, at)

    monkeypatch.setattr(Kernel, "_delivered", miss_once)
    again = kernel.ingest("hook", "m1", None, now=20)
    assert calls  # the precheck was asked, and missed
    assert again.duplicate
    assert again.evaluation == first.evaluation
    assert dump(store) == before


def test_push_duplicates_from_threads_are_one_effect(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    results: list[Any] = []

    def deliver() -> None:
        for i in range(20):
            results.append(kernel.ingest("hook", f"m{i % 5}", None, now=10 + i))

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(kernel.evaluations("hook")) == 5
    assert sum(not r.duplicate for r in results) == 5
    assert len(kernel.runs()) == 5
    assert kernel.verify().ok


def test_connector_maps_a_message_to_several_runs_or_none(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)

    def fan_out(message: PushMessage) -> list[RunRequest]:
        return [RunRequest(f"{message.message_id}-{i}") for i in range(message.payload)]

    many = kernel.ingest("hook", "m3", 3, now=1, connector=fan_out)
    assert many.evaluation.evaluation.run_keys == tuple(f"sensor:hook:m3-{i}" for i in range(3))
    none = kernel.ingest("hook", "m0", 0, now=2, connector=fan_out)
    assert none.evaluation.evaluation.status == "NO_DATA"
    assert none.evaluation.evaluation.reason == "no run requests"
    assert len(kernel.runs()) == 3


def test_a_connector_repeating_a_run_key_in_one_message_is_one_run(kernel: Kernel) -> None:
    """Regression: both requests were logged, replay skipped the second, verify failed."""
    kernel.define_sensor(push_sensor("hook"), now=0)

    def twice(message: PushMessage) -> list[RunRequest]:
        return [RunRequest("k", config={"v": 1}), RunRequest("k", config={"v": 2})]

    got = kernel.ingest("hook", "m1", None, now=1, connector=twice)
    assert got.evaluation.evaluation.run_keys == ("sensor:hook:k",)
    assert [r.config for r in kernel.runs()] == [{"v": 1}]
    assert kernel.verify().ok


# -- stopped sensors, payload limits, bad input: nothing written -------------------------------


def test_ingest_into_a_stopped_sensor_raises_and_writes_nothing(
    kernel: Kernel, store: Store
) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    kernel.set_sensor_running("hook", False, now=1)
    before = dump(store)
    with pytest.raises(InputError, match="stopped"):
        kernel.ingest("hook", "m1", None, now=2)
    assert dump(store) == before
    kernel.set_sensor_running("hook", True, now=3)
    assert not kernel.ingest("hook", "m1", None, now=4).duplicate


def test_payload_over_the_limit_raises_and_writes_nothing(kernel: Kernel, store: Store) -> None:
    kernel.define_sensor(push_sensor("hook", max_payload_bytes=12), now=0)
    before = dump(store)
    with pytest.raises(PayloadTooLarge) as info:
        kernel.ingest("hook", "big", "x" * 11, now=1)  # 13 bytes of JSON
    assert "13 bytes" in str(info.value)
    assert "max_payload_bytes" in str(info.value)
    assert isinstance(info.value, InputError)
    assert dump(store) == before
    assert not kernel.ingest("hook", "edge", "x" * 10, now=2).duplicate  # exactly 12: fine


@pytest.mark.parametrize(
    ("sensor", "message_id", "payload", "error"),
    [
        ("hook", "", None, InputError),
        ("hook", "m" * 257, None, InputError),
        ("hook", "m1", object(), InputError),  # not JSON data
        ("nope", "m1", None, NotFound),
        ("Bad Id", "m1", None, InputError),
        ("files", "m1", None, InputError),  # a poll sensor takes no messages
    ],
)
def test_bad_ingest_input_writes_nothing(
    kernel: Kernel, store: Store, sensor: str, message_id: str, payload: Any, error: type
) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    kernel.define_sensor(poll_sensor("files"), now=0)
    before = dump(store)
    with pytest.raises(error):
        kernel.ingest(sensor, message_id, payload, now=1)
    assert dump(store) == before


def test_stopped_poll_sensors_are_not_due_and_started_ones_are_due_at_once(
    kernel: Kernel,
) -> None:
    kernel.define_sensor(poll_sensor("files"), now=100)
    assert kernel.due_sensors(now=99) == []
    assert kernel.due_sensors(now=100) == ["files"]
    kernel.set_sensor_running("files", False, now=150)
    assert kernel.due_sensors(now=10**9) == []
    assert kernel.sensor("files").next_eval_at is None
    kernel.set_sensor_running("files", True, now=200)
    assert kernel.due_sensors(now=199) == []
    assert kernel.due_sensors(now=200) == ["files"]
    assert kernel.sensor("files").running


def test_push_sensors_are_never_due(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    assert kernel.due_sensors(now=10**9) == []


# -- poll CAS ----------------------------------------------------------------------------------

Outcome = PollResult | str


def _connector(outcome: Outcome) -> Any:
    def connector(ctx: PollContext) -> PollResult:
        if isinstance(outcome, str):
            raise TimeoutError(outcome)
        return outcome

    return connector


outcomes = st.one_of(
    st.builds(PollResult, cursor=st.none() | st.text(max_size=8) | st.binary(max_size=8)),
    st.builds(
        PollResult,
        run_requests=st.lists(st.builds(RunRequest, st.sampled_from(["a", "b"])), max_size=2),
    ),
    st.builds(PollResult, skip_reason=st.text(min_size=1, max_size=5)),
    st.text(min_size=1, max_size=5),
)


@settings(max_examples=examples(0.5))
@given(results=st.lists(outcomes, min_size=1, max_size=12))
def test_every_accepted_poll_moves_the_version_by_exactly_one(results: list[Outcome]) -> None:
    kernel = Kernel(MemoryStore())
    kernel.define_sensor(poll_sensor("files"), now=0)
    cursor: Cursor | None = None
    for n, outcome in enumerate(results, start=1):
        row = kernel.poll("files", _connector(outcome), now=n * 1000)
        sensor = kernel.sensor("files")
        assert sensor.state_version == n
        assert row.evaluation.expected_state_version == n - 1
        assert row.evaluation.cursor_before == cursor
        if isinstance(outcome, PollResult) and outcome.cursor is not None:
            cursor = Cursor.of(outcome.cursor)
        assert sensor.cursor == cursor  # None keeps the cursor; FAILED keeps it too
        assert row.evaluation.cursor_after == (
            cursor if isinstance(outcome, PollResult) and outcome.cursor is not None else None
        )
    assert kernel.verify().ok


def test_stale_ticket_is_a_conflict_and_writes_nothing(kernel: Kernel, store: Store) -> None:
    kernel.define_sensor(poll_sensor("files"), now=0)
    ticket = kernel.poll_ticket("files")
    kernel.record_poll(ticket, PollResult(cursor="c1"), now=10)
    before = dump(store)
    late = PollResult([RunRequest("late")], cursor="c-late")
    with pytest.raises(Conflict) as info:
        kernel.record_poll(ticket, late, now=11)
    assert (info.value.expected, info.value.actual) == (0, 1)
    assert dump(store) == before  # no eval row, no run, no idempotency key, no index entry
    with pytest.raises(Conflict):
        kernel.record_poll(ticket, "TimeoutError: too slow", now=12)
    assert dump(store) == before


def test_a_ticket_from_the_future_is_a_conflict_and_writes_nothing(
    kernel: Kernel, store: Store
) -> None:
    kernel.define_sensor(poll_sensor("files"), now=0)
    ticket = kernel.poll_ticket("files")._replace(expected_state_version=5)
    before = dump(store)
    with pytest.raises(Conflict):
        kernel.record_poll(ticket, PollResult([RunRequest("x")], cursor="c"), now=1)
    assert dump(store) == before


def test_re_recording_the_very_same_poll_returns_the_original(kernel: Kernel, store: Store) -> None:
    kernel.define_sensor(poll_sensor("files"), now=0)
    ticket = kernel.poll_ticket("files")
    result = PollResult([RunRequest("r1")], cursor="c1")
    first = kernel.record_poll(ticket, result, now=10)
    before = dump(store)
    assert kernel.record_poll(ticket, result, now=20) == first
    assert dump(store) == before


def test_racing_pollers_in_threads_never_stomp_a_cursor(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor("files", minimum_interval=1), now=0)
    told: dict[str, list[str]] = {"a": [], "b": [], "c": []}
    conflicts: list[str] = []

    def poller(tag: str) -> None:
        for i in range(15):

            def connector(ctx: PollContext, i: int = i) -> PollResult:
                time.sleep(0.0005)  # read, think, write: let the others in between
                return PollResult([RunRequest(f"{tag}{i}")], cursor=f"{tag}-{i}")

            try:
                row = kernel.poll("files", connector, now=100 + i)
            except Conflict:
                conflicts.append(tag)
                continue
            assert row.evaluation.cursor_after is not None
            told[tag].append(str(row.evaluation.cursor_after.native()))

    threads = [threading.Thread(target=poller, args=(tag,)) for tag in told]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for tag, cursors in told.items():
        assert all(c.startswith(f"{tag}-") for c in cursors)  # only ever told of its own
    chain = sorted(kernel.evaluations("files", limit=1000), key=lambda r: r.seq)
    assert len(chain) == sum(map(len, told.values())) == 45 - len(conflicts)
    previous = None
    for version, row in enumerate(chain):
        assert row.evaluation.expected_state_version == version
        assert row.evaluation.cursor_before == previous
        previous = row.evaluation.cursor_after
    assert kernel.sensor("files").cursor == previous
    # Only accepted polls requested runs.
    assert len(kernel.runs(limit=1000)) == len(chain)
    assert kernel.verify().ok


# -- cursors -----------------------------------------------------------------------------------


@settings(max_examples=examples(0.5))
@given(
    values=st.lists(
        st.tuples(st.text(max_size=30) | st.binary(max_size=30), st.integers(1, 2**31)),
        min_size=1,
        max_size=5,
    )
)
def test_text_and_binary_cursors_round_trip_with_their_version(
    values: list[tuple[str | bytes, int]],
) -> None:
    kernel = Kernel(MemoryStore())
    kernel.define_sensor(poll_sensor("files"), now=0)
    seen: list[tuple[Any, Any]] = []

    def connector(value: str | bytes, version: int) -> Any:
        def poll(ctx: PollContext) -> PollResult:
            seen.append((ctx.cursor, ctx.cursor_version))
            return PollResult(cursor=value, cursor_version=version)

        return poll

    for n, (value, version) in enumerate(values):
        row = kernel.poll("files", connector(value, version), now=n * 100)
        assert row.evaluation.cursor_after == Cursor.of(value, version)
    kernel.poll("files", connector(values[-1][0], values[-1][1]), now=10**6)
    expected = [(None, None), *values]  # each poll saw the cursor the previous one returned
    assert [c for c, _ in seen] == [v for v, _ in expected]
    assert all(type(c) is type(v) for (c, _), (v, _) in zip(seen, expected, strict=True))
    assert [ver for _, ver in seen] == [ver for _, ver in expected]
    cursor = kernel.sensor("files").cursor
    assert cursor is not None
    assert (cursor.native(), cursor.version) == values[-1]


def test_cursor_durable_across_many_evaluations_reopen_and_replay(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        kernel.define_sensor(poll_sensor("files", minimum_interval=1), now=0)
        for i in range(150):
            result: PollResult | str = (
                "TimeoutError: timed out after 30s"
                if i % 7 == 3
                else PollResult(cursor=None if i % 5 == 0 else b"pos-%d" % i, cursor_version=2)
            )
            kernel.record_poll(kernel.poll_ticket("files"), result, now=10 * i)
        expected = kernel.sensor("files")
        assert expected.cursor == Cursor.of(b"pos-149", 2)
        assert expected.state_version == 150
        before = dump(store)
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        assert dump(store) == before
        assert kernel.sensor("files") == expected
        scratch = MemoryStore()
        assert kernel.verify(scratch).ok
        assert Kernel(scratch).sensor("files") == expected
        # and it goes on from the same cursor
        _, ctx = kernel.poll_context("files", now=2000)
        assert (ctx.cursor, ctx.cursor_version, ctx.state_version) == (b"pos-149", 2, 150)


# -- backoff -----------------------------------------------------------------------------------


def _schedule_after(kernel: Kernel, sensor_id: str, history: str, start: int = 0) -> list[int]:
    """Poll with a history like ``"FFSF"`` (F: failure, S: success); the delays chosen."""
    delays = []
    now = start
    for step in history:
        result: PollResult | str = "boom" if step == "F" else PollResult()
        row = kernel.record_poll(kernel.poll_ticket(sensor_id), result, now=now)
        assert row.evaluation.next_eval_at is not None
        delays.append(row.evaluation.next_eval_at - now)
        assert kernel.sensor(sensor_id).next_eval_at == row.evaluation.next_eval_at
        now = row.evaluation.next_eval_at
    return delays


def test_backoff_without_jitter_is_exact_and_capped(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor("files", minimum_interval=5, base=10, cap=100), now=0)
    assert _schedule_after(kernel, "files", "FFFFFF") == [10, 20, 40, 80, 100, 100]
    assert kernel.sensor("files").failures == 6


def test_success_resets_failures_and_waits_the_minimum_interval(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor("files", minimum_interval=5, base=10, cap=100), now=0)
    assert _schedule_after(kernel, "files", "FFFSFF") == [10, 20, 40, 5, 10, 20]
    assert kernel.sensor("files").failures == 2
    _schedule_after(kernel, "files", "S", start=10_000)
    assert kernel.sensor("files").failures == 0


def test_the_minimum_interval_bounds_every_delay(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor("files", minimum_interval=60, base=10, cap=100), now=0)
    assert _schedule_after(kernel, "files", "FFSFFFF") == [60, 60, 60, 60, 60, 60, 80]
    kernel.record_poll(kernel.poll_ticket("files"), PollResult(), now=50_000)
    assert kernel.due_sensors(now=50_059) == []
    assert kernel.due_sensors(now=50_060) == ["files"]


def test_the_same_history_gives_the_same_schedule(tmp_path: Path) -> None:
    history = "FFFFSFFFFFFF"
    with LmdbStore(str(tmp_path / "s")) as store:
        schedules = []
        definition = poll_sensor("files", minimum_interval=1, base=10, cap=10_000, jitter=0.5)
        for kernel in (Kernel(MemoryStore()), Kernel(store)):
            kernel.define_sensor(definition, now=0)
            schedules.append(_schedule_after(kernel, "files", history))
    assert schedules[0] == schedules[1]
    # Jitter is there, bounded by the fraction, and never below the exponential base.
    for n, delay in zip([1, 2, 3, 4, None, 1, 2, 3, 4, 5, 6, 7], schedules[0], strict=True):
        if n is not None:
            base = min(10_000, 10 * 2 ** (n - 1))
            assert base <= delay <= min(10_000, base * 1.5)
    assert any(
        delay != min(10_000, 10 * 2 ** (n - 1))
        for n, delay in zip([1, 2, 3, 4], schedules[0], strict=False)
    )


def _delays(sensor_id: str, jitter: float = 1.0) -> list[int]:
    d = poll_sensor(sensor_id, minimum_interval=1, base=100, cap=10**7, jitter=jitter)
    return [backoff_delay(d, n) for n in range(1, 9)]


def test_different_sensors_get_different_jitter() -> None:
    assert _delays("alpha") != _delays("beta")
    first = {_delays(f"s{i}")[0] for i in range(40)}
    assert len(first) > 20  # spread out, not one thundering herd


def test_jitter_does_not_depend_on_the_process_hash_seed() -> None:
    """The same history gives the same schedule in every process (no salted ``hash()``)."""
    code = (
        "from arcoflow.kernel.decide import backoff_delay\n"
        "from arcoflow.kernel import Backoff, RunTemplate, SensorDefinition\n"
        "d = SensorDefinition('alpha', 'poll', RunTemplate('t'), connector='c',"
        " minimum_interval=1, backoff=Backoff(base=100, cap=10**7, jitter=1.0))\n"
        "print([backoff_delay(d, n) for n in range(1, 9)])\n"
    )
    for seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", code],
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == str(_delays("alpha"))


@given(
    base=st.integers(1, 10**6),
    cap=st.integers(1, 10**6),
    jitter=st.floats(0.0, 1.0),
    minimum=st.integers(1, 10**6),
    failures=st.integers(1, 10_000),
    sensor_id=st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True),
)
def test_backoff_bounds(
    base: int, cap: int, jitter: float, minimum: int, failures: int, sensor_id: str
) -> None:
    d = SensorDefinition(
        sensor_id,
        "poll",
        RunTemplate("t"),
        connector="c",
        minimum_interval=minimum,
        backoff=Backoff(base=base, cap=cap, jitter=jitter),
    )
    delay = backoff_delay(d, failures)
    assert delay == backoff_delay(d, failures)
    assert delay >= minimum  # the minimum interval is respected
    assert delay <= max(cap, minimum)  # the cap holds (unless the minimum is larger)
    assert delay >= min(cap, base * 2 ** min(failures - 1, 62))  # jitter only adds


# -- visible non-runs --------------------------------------------------------------------------


def test_every_outcome_that_is_not_a_run_is_visible_with_a_reason(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor("files", minimum_interval=1), now=0)
    kernel.define_sensor(push_sensor("hook"), now=0)

    def raises(ctx: PollContext) -> PollResult:
        raise OSError("disk on fire")

    kernel.poll("files", lambda ctx: PollResult(), now=10)
    kernel.poll("files", lambda ctx: PollResult(skip_reason="maintenance window"), now=20)
    kernel.poll("files", raises, now=30)
    ticket = kernel.poll_ticket("files")
    kernel.record_poll(ticket, "timed out after 30s", now=40)
    kernel.poll("files", lambda ctx: "not a result", now=50)  # type: ignore[arg-type,return-value]
    seen = [
        (r.evaluation.status, r.evaluation.reason, r.evaluation.run_keys)
        for r in kernel.evaluations("files")
    ]
    assert seen == [
        ("FAILED", "connector returned str, not PollResult", ()),
        ("FAILED", "timed out after 30s", ()),
        ("FAILED", "OSError: disk on fire", ()),
        ("SKIPPED", "maintenance window", ()),
        ("NO_DATA", "no new data", ()),
    ]
    sensor = kernel.sensor("files")
    assert (sensor.last_status, sensor.last_reason) == (
        "FAILED",
        "connector returned str, not PollResult",
    )
    assert kernel.runs() == []

    def broken(message: PushMessage) -> list[RunRequest]:
        raise ValueError("bad message")

    kernel.ingest("hook", "m1", None, now=60)
    dup = kernel.ingest("hook", "m1", None, now=61)
    assert dup.duplicate  # the duplicate is visible in the caller's result
    failed = kernel.ingest("hook", "m2", None, now=62, connector=broken)
    assert (failed.evaluation.evaluation.status, failed.evaluation.evaluation.reason) == (
        "FAILED",
        "ValueError: bad message",
    )
    assert [r.evaluation.status for r in kernel.evaluations("hook")] == ["FAILED", "REQUESTED"]
    assert len(kernel.runs()) == 1


# -- runs from sensors -------------------------------------------------------------------------


def test_poll_run_requests_are_deterministic_runs(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor("files", minimum_interval=1), now=0)
    a = kernel.poll("files", lambda ctx: PollResult([RunRequest("f1")], cursor="1"), now=10)
    b = kernel.poll(
        "files", lambda ctx: PollResult([RunRequest("f1"), RunRequest("f2")], cursor="2"), now=20
    )
    assert a.evaluation.run_keys == ("sensor:files:f1",)
    assert b.evaluation.run_keys == ("sensor:files:f1", "sensor:files:f2")
    runs = kernel.runs()
    assert sorted(r.run_key for r in runs) == ["sensor:files:f1", "sensor:files:f2"]
    assert kernel.conflicts() == []
    # The second evaluation is linked to the existing run of f1.
    with kernel.store.read() as txn:
        links = [k for k, _ in txn.scan(Table.LINKS)]
    assert len(links) == 3


def test_a_conflicting_fingerprint_from_a_sensor_is_recorded_not_run(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)

    def same_key(message: PushMessage) -> list[RunRequest]:
        return [RunRequest("daily", config={"from": message.message_id})]

    kernel.ingest("hook", "m1", None, now=1, connector=same_key)
    second = kernel.ingest("hook", "m2", None, now=2, connector=same_key)
    assert second.evaluation.evaluation.run_keys == ("sensor:hook:daily",)
    runs = kernel.runs()
    assert len(runs) == 1
    assert runs[0].config == {"from": "m1"}
    [conflict] = kernel.conflicts()
    assert conflict.run_key == "sensor:hook:daily"
    assert conflict.existing_fingerprint == runs[0].fingerprint
    assert conflict.conflicting_fingerprint != conflict.existing_fingerprint
    assert conflict.requested_by == second.evaluation.evaluation.eval_id
    assert conflict.origin == "sensor:hook"
    assert kernel.verify().ok


def test_eval_ids_are_derived_not_random(tmp_path: Path) -> None:
    ids = []
    for kernel in (Kernel(MemoryStore()), Kernel(MemoryStore())):
        kernel.define_sensor(push_sensor("hook"), now=0)
        kernel.define_sensor(poll_sensor("files"), now=0)
        ids.append(
            (
                kernel.ingest("hook", "m1", None, now=5).evaluation.evaluation.eval_id,
                kernel.poll("files", lambda ctx: PollResult(cursor="c"), now=6).evaluation.eval_id,
            )
        )
    assert ids[0] == ids[1]


def test_evaluations_page_newest_first(kernel: Kernel) -> None:
    kernel.define_sensor(push_sensor("hook"), now=0)
    kernel.define_sensor(push_sensor("other"), now=0)
    for i in range(23):
        kernel.ingest("hook", f"m{i}", None, now=i)
        kernel.ingest("other", f"m{i}", None, now=i)
    pages: list[list[str | None]] = []
    before = None
    while True:
        page = kernel.evaluations("hook", limit=10, before=before)
        if not page:
            break
        pages.append([r.evaluation.message_id for r in page])
        before = page[-1].evaluation.eval_id
    assert [len(p) for p in pages] == [10, 10, 3]
    assert [m for p in pages for m in p] == [f"m{i}" for i in reversed(range(23))]
    other = kernel.evaluations("other", limit=1)[0].evaluation.eval_id
    with pytest.raises(InputError):
        kernel.evaluations("hook", before=other)  # another sensor's evaluation

"""Replay: for arbitrary command sequences the log rebuilds the materialised state byte for byte,
on both stores; and the two stores materialise byte-identical tables. A row changed behind the
kernel's back is reported by ``verify`` and by ``arcoflow verify`` in words a person can read."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from arcoflow.kernel import (
    ArcoflowError,
    Kernel,
    LmdbStore,
    MemoryStore,
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    Store,
    TickContext,
    TickResult,
)
from arcoflow.kernel.decide import PollTicket
from arcoflow.kernel.rows import Table, key
from arcoflow.sdk.cli import main
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st

from .helpers import dump, poll_sensor, push_sensor, raw_delete, raw_put, schedule, scratch_dir

START = 1_700_000_000
SCHEDULE_IDS = ("a", "b")
SENSOR_IDS = ("p", "q", "h")


def _hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def evaluator(ctx: TickContext) -> TickResult:
    """A deterministic evaluator with every kind of answer, chosen by the tick id."""
    choice = _hash(ctx.tick_id) % 6
    if choice == 0:
        raise RuntimeError("evaluator failed")
    if choice == 1:
        return TickResult(skip_reason="nothing to do")
    if choice == 2:  # one key twice with other content: one run, no conflict from itself
        return TickResult([RunRequest("k", config={"v": 1}), RunRequest("k", config={"v": 2})])
    if choice == 3:
        return TickResult(run_requests=[])
    if choice == 4:
        return TickResult([RunRequest("shared", config={"tick": ctx.tick_id})])
    return TickResult()


def push_connector(variant: str) -> Any:
    def connect(message: PushMessage) -> list[RunRequest] | None:
        if variant == "raise":
            raise ValueError("connector failed")
        if variant == "none":
            return []
        if variant == "dup":
            return [RunRequest("k", config={"v": 1}), RunRequest("k", config={"v": 2})]
        if variant == "shared":  # one key for every message: conflicts across messages
            return [RunRequest("shared", config={"m": message.message_id})]
        return None

    return None if variant == "default" else connect


def poll_outcome(variant: str, n: int) -> PollResult | str:
    if variant == "fail":
        return "TimeoutError: timed out"
    if variant == "skip":
        return PollResult(skip_reason="busy")
    if variant == "keep":
        return PollResult([RunRequest(f"r{n % 3}")])  # no cursor: keeps the old one
    if variant == "bytes":
        return PollResult(cursor=bytes([n % 256, 0, 255]), cursor_version=2)
    if variant == "shared":
        return PollResult([RunRequest("shared", config={"n": n})], cursor=f"s{n}")
    return PollResult([RunRequest(f"f{n}")], cursor=f"c{n}")


commands = st.one_of(
    st.tuples(
        st.just("define_schedule"),
        st.sampled_from(SCHEDULE_IDS),
        st.sampled_from(["0 * * * *", "*/20 * * * *", "30 1 * * *", "0 */2 * * *"]),
        st.sampled_from(["UTC", "America/New_York"]),
        st.sampled_from([600, 3600, 6 * 3600]),
        st.integers(1, 3),
        st.sampled_from(["newest", "oldest"]),
        st.booleans(),  # with the evaluator
        st.booleans(),  # enabled
        st.integers(0, 1),  # max_tick_retries
    ),
    st.tuples(st.just("toggle_schedule"), st.sampled_from(SCHEDULE_IDS), st.booleans()),
    st.tuples(st.just("delete_schedule"), st.sampled_from(SCHEDULE_IDS)),
    st.tuples(st.just("evaluate"), st.integers(-7200, 4 * 3600)),
    st.tuples(
        st.just("define_sensor"),
        st.sampled_from(SENSOR_IDS),
        st.sampled_from([10, 60]),
        st.booleans(),
        st.sampled_from(["ingest", "other"]),  # target: a change of content
    ),
    st.tuples(st.just("toggle_sensor"), st.sampled_from(SENSOR_IDS), st.booleans()),
    st.tuples(st.just("delete_sensor"), st.sampled_from(SENSOR_IDS)),
    st.tuples(
        st.just("ingest"),
        st.sampled_from(["h", "h", "h", "p"]),
        st.sampled_from(["m1", "m2", "m3"]),
        st.sampled_from(["default", "raise", "none", "dup", "shared"]),
    ),
    st.tuples(
        st.just("poll"),
        st.sampled_from(SENSOR_IDS[:2]),
        st.sampled_from(["new", "fail", "skip", "keep", "bytes", "shared"]),
        st.booleans(),  # keep the ticket for a stale_poll later
    ),
    st.tuples(st.just("save_ticket"), st.sampled_from(SENSOR_IDS[:2])),
    st.tuples(st.just("stale_poll"), st.sampled_from(["new", "fail", "keep"])),
    st.tuples(st.just("poll_due"), st.sampled_from(["new", "fail"])),
    st.tuples(st.just("manual"), st.sampled_from(["x", "y"]), st.sampled_from(["t1", "t2"])),
    st.tuples(st.just("launch"), st.integers(0, 5), st.booleans()),
    st.tuples(st.just("complete"), st.integers(0, 5), st.booleans()),
)


def sensor_definition(sid: str, interval: int, enabled: bool, target: str) -> SensorDefinition:
    if sid == "h":
        return push_sensor(sid, target=target, enabled=enabled)
    return poll_sensor(
        sid, minimum_interval=interval, base=15, cap=600, jitter=0.3, target=target, enabled=enabled
    )


class Driver:
    """Runs one command on one kernel; the clock and saved tickets are per driver."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.now = START
        self.polls = 0
        self.tickets: list[PollTicket] = []

    def run(self, command: tuple[Any, ...]) -> Any:
        k, name, args = self.kernel, command[0], command[1:]
        self.now += 1
        if name == "define_schedule":
            sid, cron, tz, window, budget, order, with_eval, enabled, retries = args
            definition: ScheduleDefinition = schedule(
                sid,
                cron=cron,
                timezone=tz,
                catchup_window=window,
                max_catchup_ticks=budget,
                catchup_order=order,
                evaluator="ev" if with_eval else None,
                enabled=enabled,
                max_tick_retries=retries,
            )
            return k.define_schedule(definition, now=self.now)
        if name == "toggle_schedule":
            return k.set_schedule_enabled(args[0], args[1], now=self.now)
        if name == "delete_schedule":
            return k.delete_schedule(args[0], now=self.now)
        if name == "evaluate":
            self.now = max(START, self.now + args[0])  # time may also go backwards
            return k.evaluate_schedules(now=self.now, evaluate=evaluator)
        if name == "define_sensor":
            return k.define_sensor(sensor_definition(*args), now=self.now)
        if name == "toggle_sensor":
            return k.set_sensor_running(args[0], args[1], now=self.now)
        if name == "delete_sensor":
            return k.delete_sensor(args[0], now=self.now)
        if name == "ingest":
            sid, message_id, variant = args
            payload = {"m": message_id}
            return k.ingest(sid, message_id, payload, self.now, push_connector(variant))
        if name == "poll":
            self.polls += 1
            outcome = poll_outcome(args[1], self.polls)
            ticket = k.poll_ticket(args[0])
            if args[2]:
                self.tickets.append(ticket)
            return k.record_poll(ticket, outcome, now=self.now)
        if name == "save_ticket":
            self.tickets.append(k.poll_ticket(args[0]))
            return None
        if name == "stale_poll":
            if not self.tickets:
                return None
            self.polls += 1
            return k.record_poll(
                self.tickets.pop(0), poll_outcome(args[0], self.polls), now=self.now
            )
        if name == "poll_due":
            out = []
            for sid in k.due_sensors(now=self.now):
                self.polls += 1
                outcome = poll_outcome(args[0], self.polls)

                def connector(ctx: PollContext, outcome: Any = outcome) -> PollResult:
                    if isinstance(outcome, str):
                        raise TimeoutError(outcome)
                    result: PollResult = outcome
                    return result

                out.append(k.poll(sid, connector, now=self.now))
            return out
        if name == "manual":
            template = RunTemplate(args[1], launcher="subprocess")
            return k.request_run(args[0], template, now=self.now)
        runs = k.runs(limit=1000)
        if not runs:
            return None
        run = runs[args[0] % len(runs)]
        if name == "launch":
            error = None if args[1] else "launcher refused"
            return k.record_launch(run.run_id, external_id="ext", error=error, now=self.now)
        return k.complete_run(run.run_id, args[1], now=self.now)


#: Every sequence starts from a schedule and three sensors, so most commands find their target.
PROLOGUE: list[tuple[Any, ...]] = [
    ("define_schedule", "a", "*/20 * * * *", "UTC", 3600, 2, "oldest", True, True, 1),
    ("define_sensor", "p", 10, True, "ingest"),
    ("define_sensor", "q", 60, True, "ingest"),
    ("define_sensor", "h", 10, True, "ingest"),
]


def run_everywhere(stores: list[Store], sequence: list[tuple[Any, ...]]) -> None:
    drivers = [Driver(Kernel(s)) for s in stores]
    for command in PROLOGUE + sequence:
        note(repr(command))
        outcomes: list[str | None] = []
        for driver, s in zip(drivers, stores, strict=True):
            before = dump(s)
            try:
                driver.run(command)
                outcomes.append(None)
            except ArcoflowError as exc:
                # A rejected command wrote nothing at all.
                assert dump(s) == before, f"{type(exc).__name__} after writing: {exc}"
                outcomes.append(type(exc).__name__)
        assert len(set(outcomes)) == 1, outcomes  # both backends agree on every outcome
        event(f"{command[0]}: {outcomes[0] or 'ok'}")


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(sequence=st.lists(commands, min_size=4, max_size=60))
def test_replay_reproduces_the_state_on_both_stores(sequence: list[tuple[Any, ...]]) -> None:
    with scratch_dir() as path:
        memory = MemoryStore()
        lmdb_store = LmdbStore(path, durable=False)
        try:
            run_everywhere([memory, lmdb_store], sequence)
            for s in (memory, lmdb_store):
                result = Kernel(s).verify()
                assert result.ok, result.differences
            # Two backends, one apply step: byte-identical tables.
            assert dump(memory) == dump(lmdb_store)
            # Replaying into LMDB gives the same bytes as replaying into memory.
            with scratch_dir() as scratch_path:
                scratch = LmdbStore(scratch_path, durable=False)
                try:
                    assert Kernel(memory).verify(scratch).ok
                    assert dump(scratch) == dump(memory)
                finally:
                    scratch.close()
        finally:
            lmdb_store.close()


# -- drift is reported ----------------------------------------------------------------------


def busy(kernel: Kernel) -> None:
    kernel.define_schedule(schedule("nightly", cron="30 1 * * *"), now=START)
    kernel.define_sensor(poll_sensor("files"), now=START)
    kernel.define_sensor(push_sensor("hook"), now=START)
    kernel.evaluate_schedules(now=START + 86400)
    kernel.poll("files", lambda ctx: PollResult([RunRequest("f")], cursor="c1"), now=START + 5)
    kernel.ingest("hook", "m1", None, now=START + 6)


def test_verify_reports_a_changed_row(kernel: Kernel, store: Store) -> None:
    busy(kernel)
    assert kernel.verify().ok
    sensor = kernel.sensor("files")
    drifted = msgspec.structs.replace(sensor, failures=sensor.failures + 3)
    raw_put(store, Table.SENSORS, key("files"), store.codec.encode_row(drifted))
    result = kernel.verify()
    assert not result.ok
    assert result.events == len(list(kernel.log()))
    [difference] = result.differences
    assert "sensors" in difference
    assert "files" in difference
    assert "failures" in difference  # names the field that differs


def test_verify_reports_missing_and_extra_rows(kernel: Kernel, store: Store) -> None:
    busy(kernel)
    raw_delete(store, Table.SENSORS, key("hook"))
    raw_put(store, Table.DUE_SENSORS, b"\x00" * 8 + b"\x00ghost", key("ghost"))
    result = kernel.verify()
    assert not result.ok
    text = "\n".join(result.differences)
    assert "hook" in text
    assert "ghost" in text
    assert len(result.differences) == 2


def test_cli_verify_is_readable_and_exits_non_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "s")
    with LmdbStore(path) as store:
        busy(Kernel(store))
    assert main(["--store", path, "verify"]) == 0
    assert "ok" in capsys.readouterr().out
    with LmdbStore(path) as store:
        row = Kernel(store).sensor("files")
        drifted = msgspec.structs.replace(row, state_version=row.state_version + 1)
        raw_put(store, Table.SENSORS, key("files"), store.codec.encode_row(drifted))
    assert main(["--store", path, "verify"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out
    assert "files" in out
    assert "state_version" in out
    assert main(["--store", path, "--json", "verify"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False
    assert report["events"] > 0
    assert any("state_version" in d for d in report["differences"])

"""The error tree, and kernel commands that refuse bad input: typed errors, nothing written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from arcoflow.kernel import (
    ArcoflowError,
    Conflict,
    CorruptRecord,
    FutureSchemaVersion,
    InputError,
    InvalidCron,
    InvalidDefinition,
    InvalidId,
    Kernel,
    NotFound,
    PayloadTooLarge,
    RunTemplate,
    Store,
    StoreError,
    StoreFull,
    UnknownTimezone,
)

from .helpers import dump, poll_sensor, push_sensor, schedule


@pytest.mark.parametrize(
    ("error", "bases"),
    [
        (InputError, (ArcoflowError, ValueError)),
        (InvalidId, (InputError,)),
        (InvalidCron, (InputError,)),
        (UnknownTimezone, (InputError,)),
        (InvalidDefinition, (InputError,)),
        (PayloadTooLarge, (InputError,)),
        (NotFound, (ArcoflowError, KeyError)),
        (StoreError, (ArcoflowError,)),
        (CorruptRecord, (StoreError,)),
        (FutureSchemaVersion, (StoreError,)),
        (StoreFull, (StoreError,)),
        (Conflict, (ArcoflowError,)),
    ],
)
def test_error_tree(error: type[Exception], bases: tuple[type[Exception], ...]) -> None:
    assert issubclass(error, bases)


def test_families_are_kept_apart() -> None:
    assert not issubclass(StoreError, InputError)
    assert not issubclass(Conflict, (InputError, StoreError))


def test_messages_read_well() -> None:
    assert str(NotFound("no schedule 'x'")) == "no schedule 'x'"  # not KeyError's repr
    conflict = Conflict("sensor 's'", 3, 4)
    assert (conflict.row, conflict.expected, conflict.actual) == ("sensor 's'", 3, 4)
    assert "expected state_version 3, found 4" in str(conflict)
    assert "retry" in str(conflict)
    corrupt = CorruptRecord("seq 9", "truncated")
    assert str(corrupt) == "corrupt record at seq 9: truncated"


Command = Callable[[Kernel], Any]

BAD_COMMANDS: list[tuple[str, Command, type[Exception]]] = [
    ("bad schedule id", lambda k: k.schedule("Nope!"), InvalidId),
    ("missing schedule", lambda k: k.schedule("missing"), NotFound),
    ("toggle missing", lambda k: k.set_schedule_enabled("missing", False, now=5), NotFound),
    ("delete missing", lambda k: k.delete_schedule("missing", now=5), NotFound),
    ("evaluate missing", lambda k: k.evaluate_schedule("missing", now=5), NotFound),
    ("bad sensor id", lambda k: k.sensor("A"), InvalidId),
    ("toggle missing sensor", lambda k: k.set_sensor_running("nope", True, now=5), NotFound),
    ("poll a push sensor", lambda k: k.poll_ticket("hook"), InputError),
    ("change sensor type", lambda k: k.define_sensor(push_sensor("files"), now=5), InputError),
    ("naive datetime", lambda k: k.evaluate_schedules(now=datetime(2026, 1, 1)), InputError),
    ("time as text", lambda k: k.evaluate_schedules(now="noon"), InputError),  # type: ignore[arg-type]
    ("time as bool", lambda k: k.request_run("k", RunTemplate("t"), now=True), InputError),
    ("limit 0", lambda k: k.ticks("hourly", limit=0), InputError),
    ("limit huge", lambda k: k.runs(limit=10**6), InputError),
    ("bad status", lambda k: k.ticks("hourly", status="DONE"), InputError),
    ("bad tick id", lambda k: k.tick("hourly:yesterday"), InputError),
    ("foreign page", lambda k: k.ticks("hourly", before="other:2026-01-01T00:00:00Z"), InputError),
    ("foreign eval page", lambda k: k.evaluations("files", before="nope"), InputError),
    ("missing run", lambda k: k.complete_run("no-such-run", True, now=5), NotFound),
    ("preview count", lambda k: k.preview("hourly", count=0), InputError),
]


@pytest.mark.parametrize(
    ("command", "error"),
    [pytest.param(c, e, id=name) for name, c, e in BAD_COMMANDS],
)
def test_bad_commands_raise_typed_errors_and_write_nothing(
    kernel: Kernel, store: Store, command: Command, error: type[Exception]
) -> None:
    kernel.define_schedule(schedule("hourly"), now=0)
    kernel.define_sensor(poll_sensor("files"), now=0)
    kernel.define_sensor(push_sensor("hook"), now=0)
    before = dump(store)
    with pytest.raises(error) as info:
        command(kernel)
    assert isinstance(info.value, ArcoflowError)
    assert str(info.value)
    assert dump(store) == before


def test_a_finished_run_cannot_finish_otherwise(kernel: Kernel, store: Store) -> None:
    run = kernel.request_run("k", RunTemplate("t"), now=1)
    kernel.complete_run(run.run_id, True, now=2)
    before = dump(store)
    assert kernel.complete_run(run.run_id, True, now=3).status == "SUCCEEDED"  # said twice: fine
    assert dump(store) == before
    with pytest.raises(InputError, match="already finished as SUCCEEDED"):
        kernel.complete_run(run.run_id, False, now=4)
    assert dump(store) == before

"""Issue 9, item 2: the store never commits what it cannot read back.

These tests go around the input boundary on purpose (events built directly, values set behind
the validators) and append through the store itself, so they prove the second line of defence
on its own, on both backends."""

from __future__ import annotations

from typing import Any

import pytest
from arcoflow.kernel import (
    InputError,
    Kernel,
    RunTemplate,
    ScheduleDefinition,
    Store,
    UnstorableValue,
)
from arcoflow.kernel.events import RunRequested, ScheduleDefined, SensorDeleted
from arcoflow.kernel.store.base import Pending

from .helpers import dump


def _definition(**unchecked: Any) -> ScheduleDefinition:
    """A schedule definition holding values its validators would refuse."""
    definition = ScheduleDefinition("a", "0 * * * *", RunTemplate("t"))
    for name, value in unchecked.items():
        object.__setattr__(definition, name, value)
    return definition


def _run(**fields: Any) -> RunRequested:
    values: dict[str, Any] = {
        "run_id": "r",
        "run_key": "manual:k",
        "fingerprint": "f",
        "origin": "manual",
        "requested_by": "api",
        "target": "t",
        "launcher": None,
        "config": {},
        "tags": {},
    }
    return RunRequested(**{**values, **fields})


UNSTORABLE = {
    # enabled = 1 from a TOML file: encoded fine, but the bool field does not decode.
    "bool-holding-int": ScheduleDefined("a", _definition(enabled=1), 1, 0, 0, None),
    # max_catchup_ticks = 1.5 from the Python API.
    "int-holding-float": ScheduleDefined("a", _definition(max_catchup_ticks=1.5), 1, 0, 0, None),
    # A connector's integer of 2**70: msgpack cannot encode it.
    "int-over-64-bits": _run(config={"n": 2**70}),
    # A lone surrogate cannot be UTF-8.
    "lone-surrogate": _run(target="\ud800"),
    # A value a validator refuses (an id), which decoding runs again.
    "invalid-id": ScheduleDefined("a", _definition(id="Not An Id"), 1, 0, 0, None),
}


@pytest.mark.parametrize("event", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_an_append_that_would_not_read_back_is_refused_and_writes_nothing(
    store: Store, event: Any
) -> None:
    store.append([Pending("before", _run(run_id="r0", run_key="manual:k0"))], 0)
    before = dump(store)
    with pytest.raises(UnstorableValue) as info:
        store.append([Pending("bad", event)], 1)
    assert isinstance(info.value, InputError)  # the caller's value is what is wrong
    assert "seq 2" in str(info.value)
    assert dump(store) == before
    assert Kernel(store).verify().ok


@pytest.mark.parametrize("event", UNSTORABLE.values(), ids=UNSTORABLE.keys())
def test_one_unreadable_record_refuses_the_whole_batch(store: Store, event: Any) -> None:
    before = dump(store)
    batch = [Pending("fine", SensorDeleted("x")), Pending("bad", event)]
    with pytest.raises(UnstorableValue):
        store.append(batch, 1)
    assert dump(store) == before
    # The store is still usable, and the key of the refused batch was not consumed.
    store.append([Pending("fine", _run())], 2)
    assert [e.key for e in Kernel(store).log()] == ["fine"]


def test_a_refused_value_can_be_retried_once_fixed(store: Store) -> None:
    with pytest.raises(UnstorableValue):
        store.append([Pending("k", _run(config={"n": 2**64}))], 0)
    store.append([Pending("k", _run(config={"n": 2**63 - 1}))], 0)
    assert Kernel(store).run("r").config == {"n": 2**63 - 1}

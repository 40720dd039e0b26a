"""Run keys: a new key creates a run named by uuid5; the same key and fingerprint links to it; a
different fingerprint is a recorded conflict, never a second run; origins never collide."""

from __future__ import annotations

import uuid

import pytest
from arcoflow.kernel import InputError, Kernel, MemoryStore, RunRequest, RunTemplate, Store
from arcoflow.kernel.events import RunRequested
from arcoflow.kernel.rows import RunLinkRow, Table, key
from arcoflow.kernel.runs import NAMESPACE, derived_id, fingerprint, request_run, run_id, uuid5
from hypothesis import given
from hypothesis import strategies as st

from .helpers import configs, dump, ids, schedule, tags

TEMPLATE = RunTemplate("etl.daily", launcher="subprocess", config={"region": "us"})


def links(store: Store) -> list[RunLinkRow]:
    with store.read() as txn:
        return [store.codec.decode_row(v, RunLinkRow, "links") for _, v in txn.scan(Table.LINKS)]


def test_a_new_key_creates_a_run_named_by_uuid5(kernel: Kernel, store: Store) -> None:
    run = kernel.request_run("2026-01-01", TEMPLATE, now=100, requested_by="alice")
    assert run.run_key == "manual:2026-01-01"
    assert run.run_id == str(uuid.uuid5(NAMESPACE, "run:manual:2026-01-01"))
    assert uuid.UUID(run.run_id).version == 5
    assert (run.status, run.origin, run.requested_by) == ("REQUESTED", "manual", "alice")
    assert (run.target, run.launcher, run.config) == ("etl.daily", "subprocess", {"region": "us"})
    assert run.fingerprint == fingerprint("etl.daily", {"region": "us"}, {})
    assert run.created_at == 100
    assert kernel.due_launches(now=100) == [run]  # in the launch outbox
    assert [lk.requested_by for lk in links(store)] == ["alice"]


def test_same_key_same_fingerprint_links_and_creates_no_run(kernel: Kernel, store: Store) -> None:
    first = kernel.request_run("k", TEMPLATE, now=100, requested_by="alice")
    second = kernel.request_run("k", TEMPLATE, now=200, requested_by="bob")
    assert second == first  # the same run, untouched
    assert kernel.runs() == [first]
    assert kernel.conflicts() == []
    assert [(lk.run_id, lk.requested_by, lk.at) for lk in links(store)] == [
        (first.run_id, "alice", 100),
        (first.run_id, "bob", 200),
    ]
    assert kernel.verify().ok


def test_same_key_other_fingerprint_is_a_conflict_and_still_one_run(kernel: Kernel) -> None:
    first = kernel.request_run("k", TEMPLATE, now=100, requested_by="alice")
    other = RunTemplate("etl.daily", launcher="subprocess", config={"region": "eu"})
    answer = kernel.request_run("k", other, now=200, requested_by="bob")
    assert answer == first  # the caller is told which run the key names
    assert kernel.runs() == [first]
    [conflict] = kernel.conflicts()
    assert conflict.run_key == "manual:k"
    assert conflict.run_id == first.run_id
    assert conflict.existing_fingerprint == first.fingerprint
    assert conflict.conflicting_fingerprint == fingerprint("etl.daily", {"region": "eu"}, {})
    assert conflict.existing_fingerprint != conflict.conflicting_fingerprint
    assert (conflict.requested_by, conflict.origin, conflict.at) == ("bob", "manual", 200)
    assert kernel.verify().ok


def test_the_same_request_twice_by_the_same_requester_at_once_is_one_effect(
    kernel: Kernel, store: Store
) -> None:
    kernel.request_run("k", TEMPLATE, now=100, requested_by="alice")
    before = dump(store)
    kernel.request_run("k", TEMPLATE, now=100, requested_by="alice")
    assert dump(store) == before


def test_manual_keys_never_collide_with_schedule_or_sensor_keys(kernel: Kernel) -> None:
    kernel.define_schedule(schedule("hourly", cron="0 * * * *"), now=0)
    [tick] = kernel.evaluate_schedules(now=3600)
    [scheduled_key] = tick.run_keys
    assert scheduled_key == "schedule:hourly:1970-01-01T01:00:00Z"
    # A manual request spelled exactly like the schedule's key lands in its own namespace.
    manual = kernel.request_run(scheduled_key, TEMPLATE, now=3601)
    assert manual.run_key == f"manual:{scheduled_key}"
    assert manual.run_id != run_id(scheduled_key)
    assert len(kernel.runs()) == 2
    assert kernel.conflicts() == []
    backfill = kernel.request_run(scheduled_key, TEMPLATE, now=3602, origin="backfill")
    assert backfill.run_key.startswith("backfill:")
    assert len(kernel.runs()) == 3


def test_only_manual_and_backfill_origins_are_accepted_by_hand(
    kernel: Kernel, store: Store
) -> None:
    before = dump(store)
    with pytest.raises(InputError, match="origin"):
        kernel.request_run("k", TEMPLATE, now=1, origin="schedule")  # type: ignore[arg-type]
    assert dump(store) == before


origins = st.one_of(
    st.just("manual"),
    st.just("backfill"),
    ids.map(lambda i: f"schedule:{i}"),
    ids.map(lambda i: f"sensor:{i}"),
)


run_keys = st.text(
    st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), min_size=1, max_size=40
)


@given(a=st.tuples(origins, run_keys), b=st.tuples(origins, run_keys))
def test_run_keys_of_different_origins_never_collide(
    a: tuple[str, str], b: tuple[str, str]
) -> None:
    key_a = request_run(a[0], "x", TEMPLATE, RunRequest(a[1]), "d").run_key
    key_b = request_run(b[0], "x", TEMPLATE, RunRequest(b[1]), "d").run_key
    if a[0] != b[0]:
        assert key_a != key_b
        assert run_id(key_a) != run_id(key_b)
    else:
        assert (key_a == key_b) == (a[1] == b[1])


@given(target=st.text(min_size=1, max_size=5), config=configs, tag_map=tags, data=st.data())
def test_fingerprints_are_canonical(
    target: str, config: dict[str, object], tag_map: dict[str, str], data: st.DataObject
) -> None:
    """Key order does not change a fingerprint; content does."""
    shuffled = dict(data.draw(st.permutations(list(config.items()))))
    shuffled_tags = dict(data.draw(st.permutations(list(tag_map.items()))))
    assert fingerprint(target, config, tag_map) == fingerprint(target, shuffled, shuffled_tags)
    assert fingerprint(target, config, tag_map) != fingerprint(target + "x", config, tag_map)
    assert fingerprint(target, config, tag_map) != fingerprint(
        target, {**config, "longer-than-any-drawn-key": 1}, tag_map
    )


def test_run_ids_are_the_same_in_every_store() -> None:
    found = set()
    for _ in range(2):
        kernel = Kernel(MemoryStore())
        found.add(kernel.request_run("k", TEMPLATE, now=5).run_id)
    assert found == {run_id("manual:k")}


def test_run_links_and_conflicts_are_rows_keyed_as_documented(kernel: Kernel, store: Store) -> None:
    run = kernel.request_run("k", TEMPLATE, now=1, requested_by="alice")
    with store.read() as txn:
        assert txn.get(Table.RUNS, key(run.run_id)) is not None
        assert txn.get(Table.LINKS, key(run.run_id, "alice")) is not None
    events = [e.event for e in kernel.log()]
    assert [type(e) for e in events] == [RunRequested]


@given(st.text())
def test_derived_ids_are_the_standard_uuid5(name: str) -> None:
    """Ids are derived without building ``uuid.UUID`` objects (the append's hot path): the
    same text as the standard library's uuid5, for any name."""
    try:
        expected = str(uuid.uuid5(NAMESPACE, name))
    except UnicodeEncodeError:  # a lone surrogate: neither can derive an id from it
        with pytest.raises(UnicodeEncodeError):
            uuid5(name)
        return
    assert uuid5(name) == expected
    assert derived_id(name) == expected
    assert run_id(name) == str(uuid.uuid5(NAMESPACE, "run:" + name))

"""Group commit (issue 13, item 1): appends of several threads share one LMDB write transaction.

Each append in a shared commit keeps the outcome it would have alone: its own idempotency
outcome, its own :class:`Conflict`, its own refusal of bad input, and a failure of one leaves
the others' writes (and the shared transaction) exactly as if it had never been tried. The
tests force a shared commit deterministically: a first writer holds the commit open while the
others queue behind it, one by one in a known order, then all of them commit together.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import Conflict, Kernel, LmdbStore, Pending, UnstorableValue
from arcoflow.kernel.store import group as group_module
from arcoflow.kernel.store.base import Appended
from arcoflow.kernel.store.group import GroupCommit, Request
from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import dump, examples, push_sensor, scratch_dir
from .test_store import batch_of, run_requested, sensor_defined

KIB = 1024
AT = 7

#: One writer's call: a name for the report, and the store call itself.
Call = Callable[[LmdbStore], Any]


def _outcome(call: Call, store: LmdbStore) -> Any:
    """What ``call`` returned, or the type and text of what it raised."""
    try:
        return call(store)
    except Exception as exc:  # compared below, type and message
        return (type(exc).__name__, str(exc))


class Held:
    """A writer that holds the shared commit open until released, so others queue."""

    def __init__(self, store: LmdbStore) -> None:
        self.store = store
        self.entered = threading.Event()
        self.release = threading.Event()
        self.thread = threading.Thread(target=store._write, args=(self._hold,))

    def _hold(self, txn: Any) -> None:
        self.entered.set()
        assert self.release.wait(30)

    def __enter__(self) -> Held:
        self.thread.start()
        assert self.entered.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.thread.join(30)


def shared_commit(store: LmdbStore, calls: Sequence[Call]) -> list[Any]:
    """Run ``calls`` from one thread each, queued in order behind a held commit, so that all
    of them are applied, in that order, by one shared commit. Their outcomes, in order."""
    group = store._env.group
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        outcomes[i] = _outcome(calls[i], store)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with Held(store):
        commits = group.commits
        for i, thread in enumerate(threads):
            thread.start()
            deadline = time.monotonic() + 30
            while group.queued() < i + 1:  # queued behind the held commit, in this order
                assert time.monotonic() < deadline, "a writer never queued"
                time.sleep(0.0005)
    for thread in threads:
        thread.join(30)
    assert group.commits == commits + 2  # the held commit, then one for all of them
    return outcomes


# -- what a call can be ----------------------------------------------------------------------


def good(name: str, n: int) -> Call:
    return lambda store: store.append(batch_of(n, name), AT)


def define(sensor: str, expected: int, tag: str) -> Call:
    """A sensor definition at state version ``expected``: a Conflict unless it is current."""
    event = sensor_defined(sensor, expected, expected + 1)
    pending = Pending(f"def/{sensor}/{expected}/{tag}", event)
    return lambda store: store.append([pending], AT)


def bad(name: str) -> Call:
    """A good event, then one whose bytes would not read back: refused as a whole."""
    fine = Pending(f"{name}/ok", run_requested(f"{name}-ok"))
    event = run_requested(f"{name}-bad")
    wrong = Pending(f"{name}/bad", type(event)(**{**_fields(event), "config": {"n": 2**64}}))
    return lambda store: store.append([fine, wrong], AT)


def many(names: Sequence[str]) -> Call:
    return lambda store: store.append_many([batch_of(2, name) for name in names], AT)


def _fields(event: Any) -> dict[str, Any]:
    return {f: getattr(event, f) for f in event.__struct_fields__}


_name = st.sampled_from(["a", "b", "c", "d"])
_call = st.one_of(
    st.builds(good, _name, st.integers(1, 3)),
    st.builds(define, st.sampled_from(["s", "t"]), st.integers(0, 2), _name),
    st.builds(bad, _name),
    st.builds(many, st.lists(_name, min_size=1, max_size=3)),
)


@pytest.fixture
def store_dir() -> Iterator[str]:
    with scratch_dir() as path:
        yield path


def test_a_conflict_and_bad_input_in_a_shared_commit_fail_alone(store_dir: str) -> None:
    with LmdbStore(f"{store_dir}/group") as store:
        store.append([Pending("def/s/0", sensor_defined("s", 0))], AT)
        got = shared_commit(store, [good("a", 2), define("s", 0, "late"), bad("x"), good("b", 1)])
        assert isinstance(got[0], Appended) and not got[0].duplicate
        assert got[1][0] == Conflict.__name__
        assert got[2][0] == UnstorableValue.__name__
        assert isinstance(got[3], Appended)
        # Dense numbers: the refused calls drew none that stayed.
        assert [e.seq for e in got[0].records + got[3].records] == [2, 3, 4]
        keys = [e.key for e in Kernel(store).log()]
        assert keys == ["def/s/0", "a/0", "a/1", "b/0"]  # nothing of x/ok
        assert Kernel(store).verify().ok


@settings(max_examples=examples(0.3), deadline=None)
@given(calls=st.lists(_call, min_size=1, max_size=8))
def test_a_shared_commit_gives_each_call_its_outcome_alone(calls: list[Call]) -> None:
    """Mixed calls (good, duplicate, conflicting, bad input, several batches at once) in one
    shared commit: each outcome, and the store afterwards, are those of running the calls one
    at a time."""
    with (
        scratch_dir() as here,
        LmdbStore(f"{here}/alone") as alone,
        LmdbStore(f"{here}/group") as group,
    ):
        for store in (alone, group):
            store.append([Pending("def/s/0", sensor_defined("s", 0))], AT)
        expected = [_outcome(call, alone) for call in calls]
        assert shared_commit(group, calls) == expected
        assert dump(group) == dump(alone)
        assert Kernel(group).verify().ok


def test_a_full_map_redoes_the_whole_shared_commit(tmp_path: Path) -> None:
    path = str(tmp_path / "small")
    with LmdbStore(path, map_size=64 * KIB, max_map_size=64 * 1024 * KIB) as store:
        calls = [good(f"n{i}", 40) for i in range(6)]
        got = shared_commit(store, calls)
        assert all(isinstance(g, Appended) and len(g.records) == 40 for g in got)
        assert store.map_size() > 64 * KIB
        assert len(list(Kernel(store).log())) == 240
        assert Kernel(store).verify().ok


def test_concurrent_ingests_share_commits_and_each_is_recorded_once(tmp_path: Path) -> None:
    with LmdbStore(str(tmp_path / "s")) as store:
        kernel = Kernel(store)
        kernel.define_sensor(push_sensor("hook"), now=0)
        threads, each = 16, 12
        seen: dict[str, str] = {}

        def push(t: int) -> None:
            for i in range(each):
                got = kernel.ingest("hook", f"m{t}-{i % (each // 2)}", {"t": t}, now=5)
                seen.setdefault(
                    got.evaluation.evaluation.message_id, got.evaluation.evaluation.eval_id
                )

        workers = [threading.Thread(target=push, args=(t,)) for t in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        evaluations = kernel.evaluations("hook", limit=1000)
        assert len(evaluations) == threads * each // 2  # each distinct message once
        assert {e.evaluation.message_id: e.evaluation.eval_id for e in evaluations} == seen
        assert len(kernel.runs(limit=1000)) == threads * each // 2
        assert kernel.verify().ok


# -- the leader's wait for company (no alternating groups of N-1 and 1) ---------------------


class Recorder:
    """A ``commit`` for :class:`GroupCommit` that records group sizes and takes ``seconds``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.sizes: list[int] = []
        self.called: list[float] = []

    def __call__(self, group: list[Request[Any]]) -> None:
        self.called.append(time.monotonic())
        self.sizes.append(len(group))
        for request in group:
            request.value = request.apply(None)
        time.sleep(self.seconds)


def _together(group: GroupCommit, commit: Recorder, n: int) -> None:
    """``n`` submissions committed as one group (queued behind a held first one)."""
    release = threading.Event()
    holder = threading.Thread(target=group.submit, args=(lambda _: release.wait(30), commit))
    holder.start()
    while not commit.sizes:
        time.sleep(0.001)
    others = [threading.Thread(target=group.submit, args=(lambda _: 1, commit)) for _ in range(n)]
    for thread in others:
        thread.start()
    while group.queued() < n:
        time.sleep(0.001)
    release.set()
    for thread in [holder, *others]:
        thread.join(30)
    assert commit.sizes[-1] == n


def test_after_a_shared_commit_the_next_leader_waits_for_company(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(group_module, "MAX_DELAY", 30.0)
    group, commit = GroupCommit(), Recorder(seconds=2.0)
    _together(group, commit, 2)  # a group of two that took 2 s
    commit.seconds = 0.0
    before = len(commit.sizes)
    first = threading.Thread(target=group.submit, args=(lambda _: 1, commit))
    first.start()
    deadline = time.monotonic() + 10
    while group.queued() < 1 and len(commit.sizes) == before:  # leading, or committed alone
        assert time.monotonic() < deadline
        time.sleep(0.001)
    assert group.submit(lambda _: 2, commit) == 2  # ...which joins its commit
    first.join(30)
    assert commit.sizes[-1] == 2


def test_a_leader_after_a_lone_commit_commits_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(group_module, "MAX_DELAY", 30.0)
    group, commit = GroupCommit(), Recorder(seconds=2.0)
    group.submit(lambda _: 1, commit)  # alone, and slow: 2 s
    start = time.monotonic()
    group.submit(lambda _: 2, commit)
    assert commit.called[-1] - start < 1.0  # no wait for company
    assert commit.sizes == [1, 1]


def test_the_wait_for_company_is_bounded_by_the_last_commit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(group_module, "MAX_DELAY", 30.0)
    group, commit = GroupCommit(), Recorder(seconds=0.3)
    _together(group, commit, 3)  # a group of three that took 0.3 s
    commit.seconds = 0.0
    start = time.monotonic()
    assert group.submit(lambda _: 1, commit) == 1  # nobody comes: alone, after the wait
    waited = commit.called[-1] - start
    assert 0.25 < waited < 5.0
    assert commit.sizes[-1] == 1

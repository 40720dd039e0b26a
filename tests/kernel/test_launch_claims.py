"""Launch claims and the attempt compare-and-set: a runtime claims a due run (who, until when)
in the append that hands it out, so no other runtime launches it meanwhile; a launch outcome
reported with ``expected_attempts`` is accepted only if the run is still where the reporter
read it."""

from __future__ import annotations

from typing import Any

import pytest
from arcoflow.kernel import (
    Conflict,
    InputError,
    Kernel,
    LmdbStore,
    MemoryStore,
    RunTemplate,
    decide,
)
from arcoflow.kernel.events import RunClaimed, RunLaunched
from arcoflow.kernel.store.base import Pending

from .helpers import last_seq

LEASE = 120


def _kernel_with_run(key: str = "job") -> tuple[Kernel, str]:
    kernel = Kernel(MemoryStore())
    run = kernel.request_run(key, RunTemplate("etl", launcher="memory"), now=100)
    return kernel, run.run_id


def test_a_claimed_run_leaves_the_outbox_until_its_lease_ends() -> None:
    kernel, run_id = _kernel_with_run()
    [claimed] = kernel.claim_launches("daemon-a", 100, lease=LEASE)
    assert (claimed.run_id, claimed.claimed_by) == (run_id, "daemon-a")
    assert claimed.next_attempt_at == 100 + LEASE and claimed.attempts == 0
    assert kernel.due_launches(100 + LEASE - 1) == []
    # Another runtime, while the lease is live: nothing to claim, nothing written.
    seq = last_seq(kernel.store)
    assert kernel.claim_launches("daemon-b", 100 + LEASE - 1, lease=LEASE) == []
    assert last_seq(kernel.store) == seq
    # The claimer died: once the lease ends, another runtime may claim the same attempt.
    [again] = kernel.claim_launches("daemon-b", 100 + LEASE, lease=LEASE)
    assert (again.claimed_by, again.attempts) == ("daemon-b", 0)
    assert kernel.verify().ok


def test_claims_take_due_runs_in_outbox_order_up_to_the_limit() -> None:
    kernel = Kernel(MemoryStore())
    ids = [
        kernel.request_run(f"r{i}", RunTemplate("etl", launcher="memory"), now=100 + i).run_id
        for i in range(3)
    ]
    kernel.request_run("by-hand", RunTemplate("etl"), now=100)  # no launcher: never claimed
    assert [r.run_id for r in kernel.claim_launches("a", 101, lease=LEASE, limit=5)] == ids[:2]
    assert [r.run_id for r in kernel.claim_launches("b", 200, lease=LEASE, limit=5)] == ids[2:]


def test_a_claim_from_a_stale_read_is_a_conflict_and_writes_nothing() -> None:
    kernel, run_id = _kernel_with_run()
    stale = kernel.run(run_id)  # both runtimes read the outbox; the other one claims first
    kernel.claim_launches("daemon-a", 100, lease=LEASE)
    seq = last_seq(kernel.store)
    with pytest.raises(Conflict, match="next_attempt_at"):
        kernel.store.append(decide.claim_launches([stale], "daemon-b", 100, LEASE), 100)
    assert last_seq(kernel.store) == seq
    assert kernel.run(run_id).claimed_by == "daemon-a"


def test_racing_claimers_re_read_and_each_run_is_claimed_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = Kernel(MemoryStore())
    for i in range(2):
        kernel.request_run(f"r{i}", RunTemplate("etl", launcher="memory"), now=100)
    append = kernel.store.append
    raced: list[Any] = []

    def other_claims_first(batch: Any, at: int) -> Any:
        if not raced:  # another daemon claims between this one's read and its append
            raced.append(None)
            raced[0] = Kernel(kernel.store).claim_launches("daemon-b", 100, lease=LEASE, limit=1)
        return append(batch, at)

    monkeypatch.setattr(kernel.store, "append", other_claims_first)
    mine = kernel.claim_launches("daemon-a", 100, lease=LEASE, limit=1)
    [[theirs]] = raced
    assert len(mine) == 1 and mine[0].run_id != theirs.run_id
    claims = [e.event for e in kernel.log() if isinstance(e.event, RunClaimed)]
    assert sorted(c.claimer for c in claims) == ["daemon-a", "daemon-b"]


def test_the_claimer_records_its_outcome_and_the_next_attempt_needs_a_new_claim() -> None:
    kernel, run_id = _kernel_with_run()
    [run] = kernel.claim_launches("daemon-a", 100, lease=LEASE)
    failed = kernel.record_launch(
        run_id, error="no capacity", now=105, claimer="daemon-a", expected_attempts=run.attempts
    )
    assert (failed.status, failed.attempts, failed.next_attempt_at) == ("REQUESTED", 1, 115)
    assert kernel.claim_launches("daemon-b", 114, lease=LEASE) == []  # backoff first
    [retry] = kernel.claim_launches("daemon-b", 115, lease=LEASE)
    assert (retry.claimed_by, retry.attempts) == ("daemon-b", 1)
    with pytest.raises(Conflict, match="claimer"):  # daemon-a's claim is over
        kernel.record_launch(
            run_id, external_id="x", now=116, claimer="daemon-a", expected_attempts=1
        )
    done = kernel.record_launch(
        run_id, external_id="x", now=116, claimer="daemon-b", expected_attempts=1
    )
    assert (done.status, done.attempts, done.claimed_by) == ("LAUNCHED", 2, "daemon-b")
    assert kernel.verify().ok


def test_an_outcome_for_an_attempt_another_runtime_recorded_is_a_conflict() -> None:
    """The defect of issue 15: a runtime that read attempts=0 and launched attempt 1 while
    another runtime recorded attempt 1 failed must not have its outcome recorded as attempt 2
    (which would skip the retry's backoff). Nothing is written."""
    kernel, run_id = _kernel_with_run()
    kernel.record_launch(run_id, error="no capacity", now=105, expected_attempts=0)
    seq = last_seq(kernel.store)
    for kw in ({"error": "late failure"}, {"external_id": "late"}):
        with pytest.raises(Conflict, match="expected attempts 0, found 1"):
            kernel.record_launch(run_id, now=106, expected_attempts=0, **kw)
    assert last_seq(kernel.store) == seq
    run = kernel.run(run_id)
    assert (run.attempts, run.next_attempt_at, run.last_error) == (1, 115, "no capacity")


def test_an_outcome_for_a_run_finished_meanwhile_is_a_conflict_with_expected_attempts() -> None:
    kernel, run_id = _kernel_with_run()
    kernel.complete_run(run_id, True, "ran by hand", now=101)
    with pytest.raises(Conflict, match="status"):
        kernel.record_launch(run_id, external_id="x", now=102, expected_attempts=0)
    # Without the compare-and-set (an external reporter) the run is left as it is.
    assert kernel.record_launch(run_id, external_id="x", now=102).status == "SUCCEEDED"


def test_an_outcome_appended_after_the_run_finished_is_refused_by_the_store() -> None:
    """A report read the run REQUESTED, an operator finished it, then the report appends: the
    store's check refuses it (the status never moves back from SUCCEEDED to LAUNCHED)."""
    kernel, run_id = _kernel_with_run()
    stale = kernel.run(run_id)
    kernel.complete_run(run_id, True, now=101)
    with pytest.raises(Conflict):
        kernel.store.append(decide.launched(stale, "x"), 102)
    assert kernel.run(run_id).status == "SUCCEEDED"


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda k: k.claim_launches("", 100, lease=LEASE), "claimer"),
        (lambda k: k.claim_launches("a\ud800", 100, lease=LEASE), "claimer"),
        (lambda k: k.claim_launches("a", 100, lease=0), "lease"),
        (lambda k: k.claim_launches("a", 100, lease=True), "lease"),
        (lambda k: k.claim_launches("a", 100, lease=LEASE, limit=0), "limit"),
        (
            lambda k: k.record_launch(k.runs()[0].run_id, now=1, expected_attempts=-1),
            "expected_attempts",
        ),
        (
            lambda k: k.record_launch(k.runs()[0].run_id, now=1, expected_attempts="0"),
            "expected_attempts",
        ),
    ],
)
def test_bad_claim_and_record_arguments_are_input_errors_and_write_nothing(
    call: Any, match: str
) -> None:
    kernel, _ = _kernel_with_run()
    seq = last_seq(kernel.store)
    with pytest.raises(InputError, match=match):
        call(kernel)
    assert last_seq(kernel.store) == seq


def test_claims_survive_reopen_and_replay(store_dir: str) -> None:
    kernel = Kernel(LmdbStore(store_dir))
    kernel.request_run("job", RunTemplate("etl", launcher="memory"), now=100)
    [run] = kernel.claim_launches("daemon-a", 100, lease=LEASE)
    kernel.store.close()
    kernel = Kernel(LmdbStore(store_dir))
    try:
        again = kernel.run(run.run_id)
        assert (again.claimed_by, again.next_attempt_at) == ("daemon-a", 100 + LEASE)
        assert kernel.verify().ok
    finally:
        kernel.store.close()


def test_a_launch_event_logged_before_the_check_existed_replays_as_it_was() -> None:
    """Old logs may hold a launch outcome appended after the run finished (the race the check
    now refuses): ``checked=False`` events are applied without it, so old stores still verify."""
    kernel, run_id = _kernel_with_run()
    kernel.complete_run(run_id, True, now=101)
    kernel.store.append([Pending(f"launch/{run_id}#1", RunLaunched(run_id, 1, "x"))], 102)
    assert kernel.run(run_id).status == "LAUNCHED"  # as the old kernel recorded it
    assert kernel.verify().ok

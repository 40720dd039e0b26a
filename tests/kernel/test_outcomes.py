"""Typed plugin outcomes (issue 12, item 3): a plugin call answers its value or a frozen
``Failed(reason, kind)``; ``guarded`` is where an exception or a wrong answer becomes one, and
the kernel records a ``Failed`` it receives (from the SDK, or from a callable) as the failure
of its evaluation or tick."""

from __future__ import annotations

from typing import Any

import pytest
from arcoflow.kernel import Failed, FailureKind, Kernel, PollResult, RunRequest
from arcoflow.kernel.outcomes import guarded, run_requests

from .helpers import dump, poll_sensor, push_sensor, schedule

T0 = 1_800_000_000


def _raise() -> Any:
    raise ValueError("boom")


def test_guarded_names_what_happened() -> None:
    assert guarded(PollResult, PollResult, "connector") == PollResult()
    assert guarded(_raise, PollResult, "connector") == Failed("ValueError: boom")
    assert guarded(lambda: 3, PollResult, "connector 'c'") == Failed(
        "connector 'c' returned int, not PollResult", FailureKind.WRONG_TYPE
    )
    timed_out = Failed("no answer", FailureKind.TIMED_OUT)
    assert guarded(lambda: timed_out, PollResult, "connector") is timed_out


def test_guarded_never_swallows_an_interrupt() -> None:
    def interrupted() -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        guarded(interrupted, PollResult, "connector")


def test_run_requests_accepts_only_a_list_of_run_requests() -> None:
    assert run_requests((RunRequest("a"),), "connector") == [RunRequest("a")]
    for bad in ("x", [RunRequest("a"), "b"], {"a": 1}):
        failed = run_requests(bad, "connector")
        assert isinstance(failed, Failed) and failed.kind is FailureKind.WRONG_TYPE
        assert failed.reason.endswith("not a list of RunRequest")


def test_a_failed_answer_is_recorded_as_the_failure(kernel: Kernel) -> None:
    kernel.define_sensor(poll_sensor("files"), now=T0)
    kernel.define_sensor(push_sensor("hook", connector="m"), now=T0)
    kernel.define_schedule(schedule("hourly", evaluator="e"), now=T0)
    timed_out = Failed("connector 'test' did not answer within 1s", FailureKind.TIMED_OUT)
    polled = kernel.poll("files", lambda context: timed_out, now=T0)
    assert (polled.evaluation.status, polled.reason) == ("FAILED", timed_out.reason)
    assert kernel.sensor("files").failures == 1
    busy = Failed("still running", FailureKind.BUSY)
    pushed = kernel.ingest("hook", "m1", None, now=T0, connector=lambda message: busy)
    assert (pushed.evaluation.evaluation.status, pushed.evaluation.reason) == (
        "FAILED",
        "still running",
    )
    (tick,) = kernel.evaluate_schedules(now=T0 + 3600, evaluate=lambda c: Failed("bad"))
    assert (tick.status, tick.reason) == ("FAILED", "bad")
    assert kernel.runs() == []
    assert kernel.verify().ok


def test_record_poll_reads_a_bare_reason_as_failed(kernel: Kernel) -> None:
    """Older callers pass a ``str``: the very same record as ``Failed(reason)``."""
    kernel.define_sensor(poll_sensor("files"), now=T0)
    ticket = kernel.poll_ticket("files")
    typed = kernel.record_poll(ticket, Failed("down"), now=T0)
    before = dump(kernel.store)
    again = kernel.record_poll(ticket, "down", now=T0)
    assert again == typed and dump(kernel.store) == before  # one poll, recorded once

"""Run completion: reported once; a second report with another outcome is refused, also when
two reporters race from the same stale read."""

from __future__ import annotations

from typing import Any

import pytest
from arcoflow.kernel import InputError, Kernel, MemoryStore, RunTemplate


def _launched_run(kernel: Kernel) -> str:
    run = kernel.request_run("job-1", RunTemplate("etl", launcher="memory"), now=10)
    kernel.record_launch(run.run_id, external_id="x", now=11)
    return run.run_id


def test_the_same_report_twice_is_one_completion() -> None:
    kernel = Kernel(MemoryStore())
    run_id = _launched_run(kernel)
    assert kernel.complete_run(run_id, True, now=12).status == "SUCCEEDED"
    assert kernel.complete_run(run_id, True, now=13).status == "SUCCEEDED"
    assert kernel.run(run_id).updated_at == 12


def test_a_different_outcome_after_completion_is_refused() -> None:
    kernel = Kernel(MemoryStore())
    run_id = _launched_run(kernel)
    kernel.complete_run(run_id, True, now=12)
    with pytest.raises(InputError, match="already finished as SUCCEEDED"):
        kernel.complete_run(run_id, False, now=13)


def test_racing_reporters_with_different_outcomes_do_not_both_succeed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kernel = Kernel(MemoryStore())
    run_id = _launched_run(kernel)
    stale = kernel.run(run_id)  # both reporters read the run while it was LAUNCHED
    kernel.complete_run(run_id, True, now=12)
    real_get = kernel._get

    def stale_read(table: Any, row_key: bytes) -> Any:
        monkeypatch.setattr(kernel, "_get", real_get)  # only the decision reads stale
        return stale

    monkeypatch.setattr(kernel, "_get", stale_read)
    with pytest.raises(InputError, match="already finished as SUCCEEDED"):
        kernel.complete_run(run_id, False, now=13)
    assert kernel.run(run_id).status == "SUCCEEDED"

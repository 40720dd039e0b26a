"""Mutation evidence: every bug planted in the kernel is caught by the kernel-vs-model machine.

Reproduce: ``python -m arcoflow.spec.mutations`` (a table of kills, examples and seconds).
"""

from __future__ import annotations

import pytest
from arcoflow.kernel import Kernel, MemoryStore, RunTemplate, ScheduleDefinition
from arcoflow.spec.mutations import MUTANTS, Mutant, hunt


@pytest.mark.parametrize("mutant", MUTANTS, ids=lambda m: m.name)
def test_mutant_is_killed(mutant: Mutant) -> None:
    kill = hunt(mutant, max_examples=300)
    print(f"{mutant.name}: killed after {kill.examples} examples in {kill.seconds:.1f}s")
    assert kill.killed, f"mutant {mutant.name!r} ({mutant.description}) survived"


def test_mutants_are_removed_again() -> None:
    """Planting is temporary: after the block the kernel behaves (catch-up budget holds)."""
    mutant = next(m for m in MUTANTS if m.name == "no_catchup_budget")
    definition = ScheduleDefinition("m", "*/5 * * * *", RunTemplate("t"), max_catchup_ticks=1)

    def fired() -> int:
        kernel = Kernel(MemoryStore())
        kernel.define_schedule(definition, now=0)
        return len(kernel.evaluate_schedules(now=3000))

    with mutant.plant():
        assert fired() > 1
    assert fired() == 1

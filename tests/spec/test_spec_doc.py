"""SPEC.md cannot drift: its links resolve, the tests it names exist, and it names every
invariant, every machine rule and every mutant."""

from __future__ import annotations

import re
from pathlib import Path

from arcoflow.spec import invariants
from arcoflow.spec.machines import KernelMachine
from arcoflow.spec.mutations import MUTANTS
from hypothesis.stateful import RuleBasedStateMachine

SPEC = Path(__file__).resolve().parents[2] / "spec" / "SPEC.md"
TEXT = SPEC.read_text()
# [`file.py::name`](relative/path.py) and [`::name`](relative/path.py)
LINK = re.compile(r"\[`(?P<label>[^`]*)`\]\((?P<target>[^)#]+)\)")


def test_every_link_resolves_and_names_a_real_test() -> None:
    checked = 0
    for m in LINK.finditer(TEXT):
        target = (SPEC.parent / m["target"]).resolve()
        assert target.exists(), f"SPEC.md links to a missing file: {m['target']}"
        if "::" in m["label"]:
            name = m["label"].split("::", 1)[1]
            source = target.read_text()
            assert re.search(
                rf"\b(def|class) {re.escape(name)}\b|^{re.escape(name)} =", source, re.M
            ), f"SPEC.md names {name!r}, which {m['target']} does not define"
            checked += 1
    assert checked > 50


def test_every_invariant_is_in_the_spec() -> None:
    for rule in (*invariants.STATE_INVARIANTS, *invariants.STEP_INVARIANTS):
        assert f"`{rule.__name__}`" in TEXT, f"SPEC.md does not list {rule.__name__}"


def test_every_machine_rule_is_in_the_spec() -> None:
    rules = [
        name
        for name in dir(KernelMachine)
        if hasattr(getattr(KernelMachine, name), "hypothesis_stateful_rule")
    ]
    assert len(rules) > 20
    missing = [r for r in rules if r not in TEXT]
    assert not missing, f"SPEC.md does not mention the machine rules {missing}"
    assert issubclass(KernelMachine, RuleBasedStateMachine)


def test_every_mutant_is_in_the_spec() -> None:
    for mutant in MUTANTS:
        assert f"`{mutant.name}`" in TEXT

"""``arcoflow.spec`` is split by what each module holds (strategies, doubles, comparators,
machines, kits), and every name users imported before the split still imports from where it
was: the package, ``arcoflow.spec.machines`` and ``arcoflow.spec.kits``."""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

import arcoflow.spec
import pytest
from arcoflow.spec import compare, doubles, kits, machines, strategies
from hypothesis.stateful import RuleBasedStateMachine

# What each module published before the split (``__all__``, plus the names tests imported).
BEFORE = {
    "arcoflow.spec": arcoflow.spec.__all__,
    "arcoflow.spec.machines": [
        "CRONS",
        "DST_STARTS",
        "Interposer",
        "KernelMachine",
        "LmdbKernelMachine",
        "SimulatedCrash",
        "ZONES",
        "kernel_machine",
        "kernel_outcome",
        "model_outcome",
        "scaled",
    ],
    "arcoflow.spec.kits": ["PluginKit", "StoreKit"],
}


@pytest.mark.parametrize("module", sorted(BEFORE))
def test_the_names_published_before_the_split_still_import(module: str) -> None:
    loaded = importlib.import_module(module)
    missing = [name for name in BEFORE[module] if not hasattr(loaded, name)]
    assert not missing, f"{module} no longer publishes {missing}"


@pytest.mark.parametrize("module", [compare, doubles, kits, machines, strategies])
def test_each_module_publishes_what_it_defines(module: ModuleType) -> None:
    published = module.__all__
    assert published, f"{module} publishes nothing"
    missing = [name for name in published if not hasattr(module, name)]
    assert not missing, f"{module} lists {missing} in __all__ but does not define them"


def test_the_machines_module_holds_state_machines_only() -> None:
    """Strategies, doubles and comparators live in their own modules: any class defined in
    ``machines`` is a rule-based state machine, bar the one action record it drives."""
    classes = [
        c
        for _, c in inspect.getmembers(machines, inspect.isclass)
        if c.__module__ == machines.__name__
    ]
    others = [c.__name__ for c in classes if not issubclass(c, RuleBasedStateMachine)]
    assert others == ["Op"]

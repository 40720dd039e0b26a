"""arcoflow's formal model: the semantics as an executable reference model, its invariants, and
reusable Hypothesis state machines (conformance kits) for stores and plugins.

* :class:`Model` — the reference model (plain Python data, independent of the kernel's code);
* :mod:`~arcoflow.spec.invariants` — the invariants of ``SPEC.md`` as functions;
* :class:`KernelMachine` — the kernel and the model side by side, every action, every step;
* :class:`RuntimeMachine` — several runtimes (``sdk/runtime.py``) over one store, under the model;
* :class:`StoreKit`, :class:`PluginKit` — run the same machines on your store or plugin;
* :mod:`~arcoflow.spec.strategies`, :mod:`~arcoflow.spec.doubles`,
  :mod:`~arcoflow.spec.compare` — what the machines draw, the deterministic plugins and store
  proxy they use, and how they compare the kernel with the model;
* :func:`explore` — every interleaving of a few concurrent actors;
* :data:`MUTANTS`, :func:`hunt` — planted bugs the machines must catch.

How to build each kit in your own pytest suite (one way: subclass it and set its factory) is
documented in one place: ``docs/plugins.md``, "Conformance kits".

It needs Hypothesis, which a plain install of arcoflow does not bring: install the extra
``pip install 'arcoflow[testing]'``.
"""

import importlib.util

if importlib.util.find_spec("hypothesis") is None:  # say how to fix it, not just what is missing
    raise ImportError(
        "arcoflow.spec (the model and the conformance kits) needs Hypothesis: "
        "pip install 'arcoflow[testing]'",
        name="hypothesis",
    )

from .explore import SCENARIOS, explore
from .invariants import InvariantViolation, check_replay, check_state, check_step
from .kits import PluginKit, StoreKit
from .machines import Interposer, KernelMachine, LmdbKernelMachine, kernel_machine, scaled
from .model import Model, Rejected
from .mutations import MUTANTS, Mutant, hunt
from .observe import Observation, diff, observe_kernel, observe_model
from .runtime_machine import LmdbRuntimeMachine, RuntimeMachine
from .ticks import RefTick, reference_ticks

__all__ = [
    "MUTANTS",
    "SCENARIOS",
    "Interposer",
    "InvariantViolation",
    "KernelMachine",
    "LmdbKernelMachine",
    "LmdbRuntimeMachine",
    "Model",
    "Mutant",
    "Observation",
    "PluginKit",
    "RefTick",
    "Rejected",
    "RuntimeMachine",
    "StoreKit",
    "check_replay",
    "check_state",
    "check_step",
    "diff",
    "explore",
    "hunt",
    "kernel_machine",
    "observe_kernel",
    "observe_model",
    "reference_ticks",
    "scaled",
]

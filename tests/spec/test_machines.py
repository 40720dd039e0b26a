"""The kernel against the reference model: the state machines of ``arcoflow.spec.machines``."""

from __future__ import annotations

from arcoflow.spec.machines import KernelMachine, LmdbKernelMachine, scaled

KernelVsModel = KernelMachine.TestCase
KernelVsModel.settings = scaled(2.0, steps=50)

LmdbKernelVsModel = LmdbKernelMachine.TestCase
LmdbKernelVsModel.settings = scaled(0.75, steps=40)

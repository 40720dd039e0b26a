"""The kernel against the reference model: the state machines of ``arcoflow.spec.machines``."""

from __future__ import annotations

from arcoflow.spec.machines import KernelMachine, LmdbKernelMachine, scaled

KernelVsModel = KernelMachine.TestCase
KernelVsModel.settings = scaled(0.5, steps=40)

LmdbKernelVsModel = LmdbKernelMachine.TestCase
LmdbKernelVsModel.settings = scaled(0.25, steps=30)

"""The kernel against the reference model: the state machines of ``arcoflow.spec.machines``."""

from __future__ import annotations

import postgres_support
from arcoflow.spec.machines import KernelMachine, LmdbKernelMachine, kernel_machine, scaled

KernelVsModel = KernelMachine.TestCase
KernelVsModel.settings = scaled(2.0, steps=50)

LmdbKernelVsModel = LmdbKernelMachine.TestCase
LmdbKernelVsModel.settings = scaled(0.75, steps=40)

PostgresKernelMachine = kernel_machine(
    postgres_support.store_on, postgres_support.reopen, twin=False, name="PostgresKernelMachine"
)
PostgresKernelVsModel = PostgresKernelMachine.TestCase
PostgresKernelVsModel.settings = scaled(0.25, steps=30)

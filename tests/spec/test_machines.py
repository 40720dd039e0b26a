"""The kernel against the reference model: the state machines of ``arcoflow.spec.machines``."""

from __future__ import annotations

import postgres_support
from arcoflow.spec import StoreKit
from arcoflow.spec.machines import KernelMachine, LmdbKernelMachine, scaled

KernelVsModel = KernelMachine.TestCase
KernelVsModel.settings = scaled(2.0, steps=50)

LmdbKernelVsModel = LmdbKernelMachine.TestCase
LmdbKernelVsModel.settings = scaled(0.75, steps=40)


class PostgresKernelMachine(StoreKit):
    """The machine alone on PostgreSQL (``TestPostgresStore`` in test_kits also twins it)."""

    store_factory = staticmethod(postgres_support.store_on)
    twin = False


PostgresKernelVsModel = PostgresKernelMachine.TestCase
PostgresKernelVsModel.settings = scaled(0.25, steps=30)

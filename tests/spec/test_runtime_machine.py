"""The runtime under the model: several runtimes over one store (memory and LMDB), launchers
that fail, hang and succeed, completion checks that page (``arcoflow.spec.runtime_machine``)."""

from __future__ import annotations

from arcoflow.spec import LmdbRuntimeMachine, RuntimeMachine, scaled

TestRuntimeOnMemory = RuntimeMachine.TestCase
TestRuntimeOnMemory.settings = scaled(0.3, steps=25)

TestRuntimeOnLmdb = LmdbRuntimeMachine.TestCase
TestRuntimeOnLmdb.settings = scaled(0.1, steps=25)

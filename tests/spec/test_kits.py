"""The conformance kits, proven on arcoflow's own stores and built-in plugins.

Each class below is what a third party writes for their own store or plugin: a subclass of a
kit from ``arcoflow.spec`` with a line or two of configuration.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from typing import Any

import postgres_support
import pytest
from arcoflow.kernel import LmdbStore, MemoryStore, Store
from arcoflow.plugins import filesystem
from arcoflow.plugins.memory_launcher import MemoryLauncher
from arcoflow.plugins.subprocess_launcher import SubprocessLauncher
from arcoflow.sdk import LaunchError, PollContext, PollResult, RunRequest, hookimpl
from arcoflow.spec import PluginKit, StoreKit, kernel_machine, scaled
from hypothesis.stateful import run_state_machine_as_test

# -- stores --------------------------------------------------------------------------------------


class MemoryStoreConformance(StoreKit):
    store_factory = staticmethod(lambda path: MemoryStore())
    persistent = False


class LmdbStoreConformance(StoreKit):
    store_factory = LmdbStore


class PostgresStoreConformance(StoreKit):
    """One schema per process, emptied for each example (a reopen keeps what it wrote)."""

    store_factory = staticmethod(postgres_support.store_on)


def _case(kit: Any, fraction: float, steps: int) -> Any:
    """The kit's pytest case, with ``scaled(fraction, steps)`` settings."""
    case = kit.TestCase
    case.settings = scaled(fraction, steps=steps)
    return case


TestMemoryStore = _case(MemoryStoreConformance, 0.5, 40)
TestLmdbStore = _case(LmdbStoreConformance, 0.5, 40)
TestPostgresStore = _case(PostgresStoreConformance, 0.25, 30)


# -- plugins -------------------------------------------------------------------------------------


class ReferencePlugins(PluginKit):
    """The kit's own reference connector and launcher: the baseline."""


class FilesystemConnector(PluginKit):
    connector = filesystem

    def connector_config(self) -> dict[str, Any]:
        self.incoming = self.tempdir()
        return {"path": self.incoming, "pattern": "*.csv"}

    def stimulate(self, n: int) -> None:
        # A new file, a rewrite of an old one (a new size: a new run), and a temp file that
        # the pattern ignores.
        with open(os.path.join(self.incoming, f"batch-{n}.csv"), "w") as fh:
            fh.write("x" * n)
        if n > 1:
            with open(os.path.join(self.incoming, "batch-1.csv"), "a") as fh:
                fh.write("more")
        with open(os.path.join(self.incoming, f".batch-{n}.csv.part"), "w") as fh:
            fh.write("partial")


class FilesystemOnLmdb(FilesystemConnector):
    def make_store(self) -> Store:
        self.store_path = self.tempdir()
        return LmdbStore(self.store_path)

    def reopen_store(self, store: Store) -> Store | None:
        store.close()
        return LmdbStore(self.store_path)


class MemoryLauncherKit(PluginKit):
    launcher_factory = MemoryLauncher

    def finish(self, launcher: Any, run_id: str, succeeded: bool) -> None:
        with contextlib.suppress(LaunchError):  # not launched by this launcher (yet)
            launcher.finish(run_id, succeeded)


class SubprocessLauncherKit(PluginKit):
    launcher_factory = SubprocessLauncher

    def launcher_config(self) -> dict[str, Any]:
        return {"command": [shutil.which("true") or "true"]}


TestReferencePlugins = _case(ReferencePlugins, 0.5, 30)
TestFilesystemConnector = _case(FilesystemConnector, 0.5, 30)
TestFilesystemOnLmdb = _case(FilesystemOnLmdb, 0.25, 30)
TestMemoryLauncher = _case(MemoryLauncherKit, 0.5, 30)
TestSubprocessLauncher = _case(SubprocessLauncherKit, 0.25, 25)


# -- what the plugin kit catches -----------------------------------------------------------------


class _Stuck:
    """A connector that hands out the new data but never moves its cursor on."""

    def __init__(self) -> None:
        self.items = 0

    def __call__(self, context: PollContext) -> PollResult:
        return PollResult([RunRequest(f"item-{i}") for i in range(self.items)])


class StuckConnector(PluginKit):
    def make_connector(self) -> Any:
        self.stuck = _Stuck()
        return self.stuck

    def stimulate(self, n: int) -> None:
        self.stuck.items += 1


def test_the_plugin_kit_fails_a_connector_whose_cursor_never_advances() -> None:
    with pytest.raises(AssertionError, match="without advancing its cursor"):
        run_state_machine_as_test(StuckConnector, settings=scaled(1, steps=30))


class _Picky:
    """A connector whose config check refuses everything."""

    @hookimpl
    def arcoflow_poll(self, context: PollContext) -> PollResult:
        return PollResult()

    @hookimpl
    def arcoflow_check_config(self, role: str, config: dict[str, Any]) -> list[str]:
        return ["path is required"]


class PickyConnector(PluginKit):
    connector = _Picky()


def test_the_plugin_kit_runs_the_connectors_config_check_on_its_config() -> None:
    with pytest.raises(AssertionError, match="config check refuses the kit's config"):
        run_state_machine_as_test(PickyConnector, settings=scaled(0.1, steps=5))


def test_importing_the_spec_without_hypothesis_says_which_extra_to_install() -> None:
    code = "import sys; sys.modules['hypothesis'] = None; import arcoflow.spec"
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ImportError: arcoflow.spec (the model and the conformance kits) needs Hypothesis: "
        "pip install 'arcoflow[testing]'"
    )


# -- one way to build a store kit ----------------------------------------------------------------


def _reopen_lmdb(store: Store, path: str) -> Store:
    store.close()
    return LmdbStore(path)


@pytest.mark.parametrize(
    ("factory", "reopen"),
    [(LmdbStore, _reopen_lmdb), (lambda path: MemoryStore(), None)],
    ids=["lmdb", "memory"],
)
def test_kernel_machine_is_deprecated_and_builds_a_store_kit(factory: Any, reopen: Any) -> None:
    """The old factory function says what to use instead and goes through StoreKit, so it runs
    the same checks (compaction included) as the one documented way."""
    with pytest.warns(DeprecationWarning, match=r"subclass arcoflow\.spec\.StoreKit"):
        machine = kernel_machine(factory, reopen, name="OldStyle")
    assert issubclass(machine, StoreKit)
    assert machine.__name__ == "OldStyle"
    assert machine.twin
    assert machine.persistent == (reopen is not None)
    run_state_machine_as_test(machine, settings=scaled(0.05, steps=10, minimum=2))

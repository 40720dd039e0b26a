"""LMDB specifics in one process: map growth, a full store, one environment per path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from arcoflow.kernel import (
    SCHEMA_VERSION,
    FutureSchemaVersion,
    Kernel,
    LmdbStore,
    RunTemplate,
    StoreError,
    StoreFull,
)
from arcoflow.kernel.rows import Table, u64
from arcoflow.kernel.store import lmdb as lmdb_module

from .helpers import dump, log_seqs, raw_put

KIB = 1024
PADDED = RunTemplate("t", config={"pad": "x" * 2000})


def test_a_full_map_grows_and_the_append_is_retried(store_dir: str) -> None:
    with LmdbStore(store_dir, map_size=64 * KIB, max_map_size=64 * 1024 * KIB) as store:
        kernel = Kernel(store)
        count = 0
        while store.map_size() == 64 * KIB:
            kernel.request_run(f"r{count}", PADDED, now=count)
            count += 1
            assert count < 1000, "the map never grew"
        for i in range(count, count + 50):  # and it keeps growing as needed
            kernel.request_run(f"r{i}", PADDED, now=i)
        assert store.map_size() > 128 * KIB
        assert log_seqs(store) == list(range(1, count + 51))
        assert len(kernel.runs(limit=1000)) == count + 50
        assert kernel.verify().ok


def test_store_full_at_the_maximum_writes_nothing(store_dir: str) -> None:
    with LmdbStore(store_dir, map_size=64 * KIB, max_map_size=64 * KIB) as store:
        kernel = Kernel(store)
        before = dump(store)
        with pytest.raises(StoreFull) as info:
            for i in range(100):
                before = dump(store)
                kernel.request_run(f"r{i}", PADDED, now=i)
        assert dump(store) == before
        assert "full" in str(info.value)
        assert "nothing was written" in str(info.value)
        assert isinstance(info.value, StoreError)
        assert store.map_size() == 64 * KIB
        assert kernel.verify().ok  # the store is still readable and consistent
    with LmdbStore(store_dir, map_size=64 * KIB, max_map_size=64 * 1024 * KIB) as store:
        assert dump(store) == before  # reopened with room: nothing half-written
        Kernel(store).request_run("after", PADDED, now=200)
        assert Kernel(store).verify().ok


def test_two_stores_on_one_path_share_one_environment(store_dir: str) -> None:
    first = LmdbStore(store_dir)
    second = LmdbStore(os.path.join(store_dir, ".", ""))  # another spelling of the same path
    try:
        assert first._env is second._env
        Kernel(first).request_run("a", RunTemplate("t"), now=1)
        assert Kernel(second).runs()[0].run_key == "manual:a"
        first.close()
        first.close()  # closing twice is harmless
        # Closing one handle leaves the other working: reads, writes and verify.
        Kernel(second).request_run("b", RunTemplate("t"), now=2)
        assert [r.run_key for r in Kernel(second).runs()] == ["manual:b", "manual:a"]
        assert Kernel(second).verify().ok
        with pytest.raises(StoreError, match="closed"):
            Kernel(first).runs()
    finally:
        first.close()
        second.close()
    assert not any(p == os.path.realpath(store_dir) for _, p in lmdb_module._envs)
    with LmdbStore(store_dir) as again:  # the last close released it; a new one opens
        assert len(Kernel(again).runs()) == 2


def test_a_store_is_usable_as_a_context_manager_and_reopens_with_its_data(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "nested" / "store")  # missing parents are created
    with LmdbStore(path, durable=False) as store:
        Kernel(store).request_run("a", RunTemplate("t"), now=1)
        before = dump(store)
    with LmdbStore(path) as store:
        assert dump(store) == before
        assert before[Table.LOG]


def test_driver_errors_become_store_errors(tmp_path: Path) -> None:
    """A path LMDB cannot open is reported in arcoflow's error tree, not as lmdb.Error."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError):
        LmdbStore(str(blocker / "store"))


def test_a_path_that_is_a_file_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a store")
    with pytest.raises(StoreError, match="cannot open store"):
        LmdbStore(str(blocker))


def test_a_refused_store_releases_its_environment(store_dir: str) -> None:
    with LmdbStore(store_dir) as store:
        raw_put(store, Table.META, b"schema_version", u64(SCHEMA_VERSION + 1))
    with pytest.raises(FutureSchemaVersion):
        LmdbStore(store_dir)
    assert not any(p == os.path.realpath(store_dir) for _, p in lmdb_module._envs)

"""The filesystem connector: new files, changed files, same-timestamp files, restarts."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arcoflow.kernel import (
    EvalRow,
    Kernel,
    LmdbStore,
    PollResult,
    RunTemplate,
    SensorDefinition,
)
from arcoflow.plugins import filesystem
from arcoflow.sdk import Plugins
from arcoflow.sdk.testing import Clock, poll_once, temporary_kernel
from hypothesis import given, settings
from hypothesis import strategies as st

FUTURE_NS = 4_102_444_800 * 10**9  # 2100-01-01: later than any ctime, so stamp == mtime


@pytest.fixture
def plugins() -> Plugins:
    p = Plugins()
    p.register(filesystem, "filesystem")
    return p


@pytest.fixture
def kernel(store_dir: str) -> Iterator[Kernel]:
    store = LmdbStore(store_dir)
    yield Kernel(store)
    store.close()


def _define(kernel: Kernel, folder: Path, **config: Any) -> None:
    kernel.define_sensor(
        SensorDefinition(
            "files",
            "poll",
            RunTemplate("etl.ingest"),
            connector="filesystem",
            config={"path": str(folder), "pattern": "*.csv"} | config,
            minimum_interval=1,
        ),
        now=0,
    )


def _poll(kernel: Kernel, plugins: Plugins, clock: Clock) -> EvalRow:
    row = poll_once(kernel, plugins, "files", clock.advance(1))
    assert row is not None
    return row


def _files(kernel: Kernel, row: EvalRow) -> list[str]:
    return [kernel.run_by_key(k).config["relative_path"] for k in row.evaluation.run_keys]


def _write(path: Path, text: str, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_new_files_give_one_run_each_and_only_once(
    kernel: Kernel, plugins: Plugins, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    _write(folder / "a.csv", "1")
    _write(folder / "b.csv", "22")
    _write(folder / "notes.txt", "not matched")
    _write(folder / ".c.csv", "hidden: still being written")
    _write(folder / "sub" / "d.csv", "not recursive")
    _define(kernel, folder)
    clock = Clock(0)
    first = _poll(kernel, plugins, clock)
    assert first.evaluation.status == "REQUESTED"
    assert sorted(_files(kernel, first)) == ["a.csv", "b.csv"]
    run = kernel.run_by_key(first.evaluation.run_keys[0])
    st = os.stat(folder / run.config["relative_path"])
    assert run.run_key == (
        f"sensor:files:{run.config['relative_path']}@{st.st_mtime_ns}:{st.st_size}"
    )
    assert run.config["path"] == str(folder / run.config["relative_path"])
    assert _poll(kernel, plugins, clock).evaluation.status == "NO_DATA"
    _write(folder / "e.csv", "new")
    assert _files(kernel, _poll(kernel, plugins, clock)) == ["e.csv"]
    assert kernel.sensor("files").cursor is not None
    assert kernel.sensor("files").cursor.version == filesystem.CURSOR_VERSION  # type: ignore[union-attr]


def test_a_changed_file_is_a_new_run(kernel: Kernel, plugins: Plugins, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _write(folder / "a.csv", "v1")
    _write(folder / "b.csv", "stays")
    _define(kernel, folder)
    clock = Clock(0)
    first = _poll(kernel, plugins, clock)
    assert len(first.evaluation.run_keys) == 2
    _write(folder / "a.csv", "version two", FUTURE_NS)
    second = _poll(kernel, plugins, clock)
    assert _files(kernel, second) == ["a.csv"]
    assert second.evaluation.run_keys[0] not in first.evaluation.run_keys
    assert second.evaluation.run_keys[0].endswith(f"@{FUTURE_NS}:11")
    assert len(kernel.runs()) == 3


def test_files_with_the_same_timestamp_are_neither_lost_nor_repeated(
    kernel: Kernel, plugins: Plugins, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    for name in ("c", "a", "b"):
        _write(folder / f"{name}.csv", name, FUTURE_NS)
    _define(kernel, folder, max_files=2)
    clock = Clock(0)
    assert _files(kernel, _poll(kernel, plugins, clock)) == ["a.csv", "b.csv"]  # cut mid-group
    cursor = json.loads(kernel.sensor("files").cursor.native())  # type: ignore[union-attr]
    assert cursor["stamp"] == FUTURE_NS and len(cursor["seen"]) == 2
    assert _files(kernel, _poll(kernel, plugins, clock)) == ["c.csv"]
    assert _poll(kernel, plugins, clock).evaluation.status == "NO_DATA"
    # A late file with exactly the cursor's timestamp is still new.
    _write(folder / "d.csv", "late", FUTURE_NS)
    assert _files(kernel, _poll(kernel, plugins, clock)) == ["d.csv"]
    assert _poll(kernel, plugins, clock).evaluation.status == "NO_DATA"
    assert len(kernel.runs()) == 4


def test_a_file_moved_in_with_an_old_mtime_is_seen(
    kernel: Kernel, plugins: Plugins, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    _write(folder / "a.csv", "first")
    _define(kernel, folder)
    clock = Clock(0)
    assert _files(kernel, _poll(kernel, plugins, clock)) == ["a.csv"]
    staged = _write(tmp_path / "staging" / "old.csv", "made last year", 1_700_000_000 * 10**9)
    staged.rename(folder / "old.csv")  # `mv` keeps the mtime; the rename sets the ctime
    assert _files(kernel, _poll(kernel, plugins, clock)) == ["old.csv"]


def test_the_cursor_survives_a_restart(plugins: Plugins, store_dir: str, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    for i in range(5):
        _write(folder / f"f{i}.csv", str(i))
    clock = Clock(0)
    store = LmdbStore(store_dir)
    kernel = Kernel(store)
    _define(kernel, folder, max_files=3)
    assert len(_poll(kernel, plugins, clock).evaluation.run_keys) == 3
    store.close()  # the daemon stops; a new one starts with fresh plugins
    store = LmdbStore(store_dir)
    kernel = Kernel(store)
    fresh = Plugins()
    fresh.register(filesystem, "filesystem")
    assert len(_poll(kernel, fresh, clock).evaluation.run_keys) == 2
    assert _poll(kernel, fresh, clock).evaluation.status == "NO_DATA"
    _write(folder / "new.csv", "after restart")
    assert _files(kernel, _poll(kernel, fresh, clock)) == ["new.csv"]
    assert len(kernel.runs()) == 6 and kernel.verify().ok
    store.close()


def test_recursive_patterns_and_paths(kernel: Kernel, plugins: Plugins, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _write(folder / "top.csv", "t")
    _write(folder / "2030" / "01" / "deep.csv", "d")
    _write(folder / "2030" / "skip.txt", "s")
    _write(folder / ".hidden" / "secret.csv", "h")
    _define(kernel, folder, recursive=True)
    clock = Clock(0)
    assert sorted(_files(kernel, _poll(kernel, plugins, clock))) == [
        "2030/01/deep.csv",
        "top.csv",
    ]
    _define(kernel, folder, pattern="2030/*/*.csv", recursive=True)  # redefined: a new pattern
    _write(folder / "2030" / "02" / "feb.csv", "f")
    _write(folder / "late.csv", "top level: does not match 2030/*/*.csv")
    assert _files(kernel, _poll(kernel, plugins, clock)) == ["2030/02/feb.csv"]


def test_min_age_waits_for_files_to_settle(
    kernel: Kernel, plugins: Plugins, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    _write(folder / "settled.csv", "old", 1_700_000_000 * 10**9)
    _define(kernel, folder, min_age="1h")
    clock = Clock(0)
    # Its mtime is old, but its ctime is now (just written): it has not settled for an hour.
    assert _poll(kernel, plugins, clock).evaluation.status == "NO_DATA"
    _define(kernel, folder, min_age=0)
    assert _files(kernel, _poll(kernel, plugins, clock)) == ["settled.csv"]


@pytest.mark.parametrize(
    ("config", "reason"),
    [
        ({"path": "/nonexistent/arcoflow"}, "is not a directory"),
        ({"max_files": 0}, "max_files must be 1-100000"),
        ({"recursive": "yes"}, "recursive must be true or false"),
        ({"colour": "blue"}, "unknown config key(s) colour"),
        ({"min_age": "soon"}, "min_age"),
    ],
)
def test_bad_config_fails_the_evaluation_with_a_reason(
    kernel: Kernel, plugins: Plugins, tmp_path: Path, config: dict[str, Any], reason: str
) -> None:
    _define(kernel, tmp_path, **config)
    row = _poll(kernel, plugins, Clock(0))
    assert row.evaluation.status == "FAILED"
    assert reason in (row.evaluation.reason or "")
    assert (row.evaluation.reason or "").startswith("ConnectorError: filesystem: ")


def test_a_cursor_from_a_newer_connector_is_refused(
    kernel: Kernel, plugins: Plugins, tmp_path: Path
) -> None:
    _define(kernel, tmp_path)
    ticket, _ = kernel.poll_context("files", 0)
    kernel.record_poll(ticket, PollResult(cursor="{}", cursor_version=99), now=0)
    row = _poll(kernel, plugins, Clock(0))
    assert row.evaluation.status == "FAILED"
    assert "format version 99" in (row.evaluation.reason or "")


# -- property: with timestamps that never go backwards, no file version is lost or repeated ---

_STEP = st.one_of(
    st.tuples(st.just("write"), st.integers(0, 4), st.integers(0, 2)),  # file, stamp step
    st.tuples(st.just("poll"), st.integers(1, 3), st.just(0)),  # max_files
)


@settings(deadline=None)
@given(steps=st.lists(_STEP, min_size=1, max_size=25))
def test_no_file_version_is_lost_or_repeated(steps: list[tuple[str, int, int]]) -> None:
    plugins = Plugins()
    plugins.register(filesystem, "filesystem")
    folder = Path(tempfile.mkdtemp(prefix="arcoflow-fs-"))
    try:
        with temporary_kernel("memory") as kernel:
            stamp, size, clock = FUTURE_NS, 0, Clock(0)
            current: dict[str, tuple[int, int]] = {}  # name -> (mtime_ns, size) on disk
            emitted: list[tuple[str, int, int]] = []

            def poll(max_files: int) -> EvalRow:
                _define(kernel, folder, max_files=max_files)
                row = _poll(kernel, plugins, clock)
                assert row.evaluation.status in ("REQUESTED", "NO_DATA"), row.evaluation.reason
                for key in row.evaluation.run_keys:
                    config = kernel.run_by_key(key).config
                    version = (config["relative_path"], config["mtime_ns"], config["size"])
                    assert current[version[0]] == version[1:]  # what is on disk now
                    emitted.append(version)
                return row

            for action, a, b in steps:
                if action == "write":
                    stamp += b * 1000  # 0: the same timestamp tick as the last write
                    size += 1  # every version has its own size
                    _write(folder / f"f{a}.csv", "x" * size, stamp)
                    current[f"f{a}.csv"] = (stamp, size)
                else:
                    poll(a)
            while poll(1000).evaluation.status != "NO_DATA":
                pass
            assert len(emitted) == len(set(emitted))  # nothing twice
            for name, version in current.items():  # every file's last version was seen
                assert (name, *version) in emitted
    finally:
        shutil.rmtree(folder, ignore_errors=True)

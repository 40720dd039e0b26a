"""Shrinking an LMDB store's file (``arcoflow compact``'s last step): the compacting copy is
swapped in only when no process has the store open; otherwise ``StoreBusy`` and the file is
untouched. The state survives the swap byte for byte."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from arcoflow.kernel import Kernel, LmdbStore, RunTemplate, SensorDefinition, StoreBusy
from arcoflow.kernel.store.files import DATA_FILE
from arcoflow.kernel.store.reclaim import reclaim
from arcoflow.sdk.cli import main

from .helpers import dump

HOLD = (
    "from arcoflow.kernel import LmdbStore; import sys, time; s = LmdbStore(sys.argv[1]); "
    "print('open', flush=True); time.sleep(60)"
)


def _filled(path: str, messages: int = 3000) -> None:
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        kernel.define_sensor(SensorDefinition("hook", "push", RunTemplate("t")), now=0)
        kernel.ingest_many("hook", [(f"m{i}", {"pad": "x" * 300}) for i in range(messages)], now=1)
        assert kernel.compact(before=10).verification.ok


def _holder(path: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, path], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "open"
    return proc


def test_reclaim_shrinks_the_file_and_keeps_every_row(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    _filled(path)
    with LmdbStore(path) as store:
        before = dump(store)
    sizes = reclaim(path)
    assert sizes.after < sizes.before
    assert os.path.getsize(os.path.join(path, DATA_FILE)) == sizes.after
    with LmdbStore(path) as store:
        assert dump(store) == before
        assert Kernel(store).verify().ok
        Kernel(store).ingest("hook", "after", None, now=20)  # and it takes writes again
    assert not [n for n in os.listdir(path) if n.startswith(".reclaim-")]


def test_another_process_holding_the_store_is_refused_and_nothing_changes(
    tmp_path: Path,
) -> None:
    path = str(tmp_path / "s")
    _filled(path)
    data = os.path.join(path, DATA_FILE)
    inode, content = os.stat(data).st_ino, Path(data).read_bytes()
    holder = _holder(path)
    try:
        with pytest.raises(StoreBusy, match="open in another process"):
            reclaim(path)
    finally:
        holder.kill()
        holder.wait()
    assert os.stat(data).st_ino == inode and Path(data).read_bytes() == content
    assert reclaim(path).after < len(content)  # once it is gone, the swap goes ahead


def test_this_process_holding_the_store_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "s")
    _filled(path, 10)
    with LmdbStore(path), pytest.raises(StoreBusy, match="open in this process"):
        reclaim(path)


def test_cli_compact_refuses_while_another_process_holds_the_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(tmp_path / "s")
    _filled(path, 10)
    with LmdbStore(path) as store:
        Kernel(store).ingest("hook", "late", None, now=100)
    holder = _holder(path)
    try:
        code = main(["--store", path, "compact", "--keep", "0", "--now", "2026-01-01T00:00:00Z"])
    finally:
        holder.kill()
        holder.wait()
    err = capsys.readouterr().err
    assert code == 1
    assert "open in another process" in err and "Traceback" not in err
    # It says what happened: the log was compacted (was: "nothing was changed", untrue).
    assert "nothing was changed" not in err and err.count("\n") == 1
    assert "the log was compacted (snapshot at seq" in err and "not shrunk" in err
    with LmdbStore(path) as store:  # the log compaction itself was done, and verifies
        assert Kernel(store).verify().ok
    assert main(["--store", path, "compact", "--keep", "0"]) == 0
    assert "data file" in capsys.readouterr().out

"""Damaged store files are named, never crashed on (issue 9, item 4).

A truncated data file is refused before LMDB maps it (mapping it ended every command with
SIGBUS); a data file that disappeared, was emptied or belongs to another store is refused by
the store identity beside it (it was taken for a new, empty store); every driver or decode
error on a damaged record is a ``StoreError`` with a message; ``readonly=True`` never creates.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import threading
from pathlib import Path

import lmdb
import pytest
from arcoflow.kernel import (
    CorruptRecord,
    DamagedStore,
    InputError,
    Kernel,
    LmdbStore,
    RunTemplate,
    StoreError,
    StoreNotFound,
)
from arcoflow.kernel.rows import Table, from_u64, key, u64
from arcoflow.kernel.store import files, pages
from arcoflow.kernel.store import lmdb as lmdb_module

from .helpers import dump, raw_delete, raw_put

ARCOFLOW = [sys.executable, "-m", "arcoflow.sdk.cli"]
WORKER = str(Path(__file__).with_name("_damage_worker.py"))
PAGE = 4096
DATA_FILE = "data.mdb"  # LMDB's
ID_FILE = "arcoflow-store.id"  # the store identity beside it
PADDED = RunTemplate("t", config={"pad": "x" * 1500})


def populated(path: str, runs: int = 60) -> None:
    """A store of a few dozen pages."""
    with LmdbStore(path) as store:
        kernel = Kernel(store)
        for i in range(runs):
            kernel.request_run(f"k{i}", PADDED)


def arcoflow(store: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ARCOFLOW, "--store", store, *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 1 with one ``arcoflow: error:`` line naming the problem; no traceback, no signal."""
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert done.stderr.startswith("arcoflow: error: "), done.stderr
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


# -- truncated -------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_pages", [2, 5, "all but one"])
def test_a_truncated_data_file_is_refused_before_it_is_mapped(
    store_dir: str, keep_pages: int | str
) -> None:
    populated(store_dir)
    data = os.path.join(store_dir, DATA_FILE)
    size = os.path.getsize(data)
    os.truncate(data, size - PAGE if keep_pages == "all but one" else int(keep_pages) * PAGE)
    with pytest.raises(DamagedStore, match="truncated") as refused:
        LmdbStore(store_dir)
    assert "restore the store directory from a backup" in str(refused.value)
    assert not any(p == os.path.realpath(store_dir) for _, p in lmdb_module._envs)


def test_the_cli_names_a_truncated_data_file_instead_of_dying_of_sigbus(store_dir: str) -> None:
    """Before: every command ended with SIGBUS (exit 135 in a shell), without a word."""
    populated(store_dir)
    os.truncate(os.path.join(store_dir, DATA_FILE), 5 * PAGE)
    for argv in (["runs"], ["--json", "runs"], ["verify"], ["schedules"]):
        assert_refused(arcoflow(store_dir, *argv), "truncated", "backup")


def test_a_data_file_shorter_than_its_meta_pages_is_refused(store_dir: str) -> None:
    populated(store_dir, runs=1)
    os.truncate(os.path.join(store_dir, DATA_FILE), PAGE + 100)
    with pytest.raises(DamagedStore, match="two meta pages"):
        LmdbStore(store_dir)


def test_a_meta_page_naming_pages_the_file_lacks_is_refused(store_dir: str) -> None:
    """The newest meta page decides: its ``mm_last_pg`` bent past the end of the file."""
    populated(store_dir, runs=3)
    data = os.path.join(store_dir, DATA_FILE)
    with open(data, "r+b") as f:
        metas = []
        for page in (0, 1):
            f.seek(page * PAGE + 136)
            last_page, txnid = (
                int.from_bytes(f.read(8), "little"),
                int.from_bytes(f.read(8), "little"),
            )
            metas.append((txnid, page, last_page))
        _, newest, last_page = max(metas)
        f.seek(newest * PAGE + 136)
        f.write((last_page + 1000).to_bytes(8, "little"))
    with pytest.raises(DamagedStore, match="truncated"):
        LmdbStore(store_dir)


def test_a_data_file_that_is_no_lmdb_file_is_refused(store_dir: str) -> None:
    populated(store_dir, runs=1)
    with open(os.path.join(store_dir, DATA_FILE), "r+b") as f:
        f.write(b"\0" * 64)
    with pytest.raises(DamagedStore, match="meta page"):
        LmdbStore(store_dir)


def test_a_live_store_always_passes_the_size_check(store_dir: str) -> None:
    """Growing the file (new pages, then a meta page pointing at them) never trips the check."""
    with LmdbStore(store_dir) as writer:
        kernel = Kernel(writer)
        for i in range(40):
            kernel.request_run(f"k{i}", PADDED)
            files.check_data_file(writer.path, files.read_stamp(writer.path))


# -- disappeared, emptied, replaced ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "emptied"])
def test_a_store_whose_data_file_is_gone_is_not_taken_for_a_new_one(
    store_dir: str, how: str
) -> None:
    populated(store_dir, runs=3)
    data = os.path.join(store_dir, DATA_FILE)
    if how == "deleted":
        os.remove(data)
    else:
        os.truncate(data, 0)
    with pytest.raises(DamagedStore, match="its data is gone") as refused:
        LmdbStore(store_dir)
    assert "backup" in str(refused.value) and "delete it" in str(refused.value)
    assert os.path.exists(data) == (how == "emptied")  # nothing was created in its place
    if how == "emptied":
        assert os.path.getsize(data) == 0


def test_verify_on_a_store_whose_data_was_deleted_is_an_error_not_an_empty_history(
    store_dir: str,
) -> None:
    """Before: ``verify`` said "ok: replaying 0 events" (and every query an empty history)."""
    populated(store_dir, runs=3)
    os.remove(os.path.join(store_dir, DATA_FILE))
    done = arcoflow(store_dir, "verify")
    assert_refused(done, "data is gone")
    assert "replaying 0 events" not in done.stdout
    assert_refused(arcoflow(store_dir, "--json", "runs"), "data is gone")


def test_a_data_file_of_another_store_is_refused(tmp_path: Path) -> None:
    mine, other = str(tmp_path / "mine"), str(tmp_path / "other")
    populated(mine, runs=2)
    populated(other, runs=5)
    shutil.copy(os.path.join(other, DATA_FILE), os.path.join(mine, DATA_FILE))
    with pytest.raises(DamagedStore, match="was replaced"):
        LmdbStore(mine)


def test_the_identity_is_written_once_and_survives_reopening(store_dir: str) -> None:
    with LmdbStore(store_dir) as store:
        first = store.store_id
    stamp = json.loads(Path(store_dir, ID_FILE).read_text())
    assert stamp["store_id"] == first and stamp["created_at"].endswith("Z")
    with LmdbStore(store_dir) as store:
        assert store.store_id == first
    os.remove(os.path.join(store_dir, ID_FILE))  # lost beside the data: the data restores it
    with LmdbStore(store_dir) as store:
        assert store.store_id == first
    assert json.loads(Path(store_dir, ID_FILE).read_text())["store_id"] == first


def test_the_identity_is_no_part_of_the_state_verify_compares(store_dir: str) -> None:
    with LmdbStore(store_dir) as store, LmdbStore(str(Path(store_dir).parent / "scratch")) as s:
        kernel = Kernel(store)
        kernel.request_run("k", PADDED)
        result = kernel.verify(s)
        assert result.ok, result.differences
        assert store.store_id != s.store_id


def test_a_store_made_before_identities_is_given_one(store_dir: str) -> None:
    populated(store_dir, runs=2)
    env = lmdb.open(store_dir, max_dbs=32)
    with env.begin(write=True) as txn:
        txn.delete(b"store_id", db=env.open_db(b"identity", txn=txn))
    env.close()
    os.remove(os.path.join(store_dir, ID_FILE))
    with LmdbStore(store_dir, readonly=True) as store:  # read-only: adopts nothing
        assert store.store_id is None
    assert not os.path.exists(os.path.join(store_dir, ID_FILE))
    with LmdbStore(store_dir) as store:
        assert store.store_id is not None
        assert len(Kernel(store).runs()) == 2
    assert json.loads(Path(store_dir, ID_FILE).read_text())["store_id"] == store.store_id


def test_processes_creating_one_store_at_once_agree_on_its_identity(store_dir: str) -> None:
    code = (
        "import sys; from arcoflow.kernel import LmdbStore; print(LmdbStore(sys.argv[1]).store_id)"
    )
    workers = [
        subprocess.Popen([sys.executable, "-c", code, store_dir], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    ids = {w.communicate(timeout=60)[0].strip() for w in workers}
    assert all(w.returncode == 0 for w in workers)
    assert len(ids) == 1
    assert json.loads(Path(store_dir, ID_FILE).read_text())["store_id"] == ids.pop()


def test_an_unreadable_identity_file_is_named(store_dir: str) -> None:
    populated(store_dir, runs=1)
    Path(store_dir, ID_FILE).write_text("{not json")
    with pytest.raises(DamagedStore, match=ID_FILE):
        LmdbStore(store_dir)


# -- read-only open --------------------------------------------------------------------------------


def test_a_read_only_open_of_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(StoreNotFound, match="no store at") as refused:
        LmdbStore(str(missing), readonly=True)
    assert isinstance(refused.value, InputError)  # you named a store that is not there
    assert not missing.exists()
    missing.mkdir()
    with pytest.raises(StoreNotFound):
        LmdbStore(str(missing), readonly=True)
    assert list(missing.iterdir()) == []


def test_a_read_only_store_reads_and_refuses_writes(store_dir: str) -> None:
    populated(store_dir, runs=2)
    before = Path(store_dir, DATA_FILE).read_bytes()
    with LmdbStore(store_dir, readonly=True) as store:
        kernel = Kernel(store)
        assert len(kernel.runs()) == 2
        with pytest.raises(StoreError, match="read-only"):
            kernel.request_run("k-new", PADDED)
    assert Path(store_dir, DATA_FILE).read_bytes() == before


def test_read_only_and_read_write_handles_share_one_environment(store_dir: str) -> None:
    """One environment per path per process, whichever kind of handle opened it first."""
    populated(store_dir, runs=1)
    reader = LmdbStore(store_dir, readonly=True)
    writer = LmdbStore(store_dir)
    assert reader._env is writer._env
    Kernel(writer).request_run("k-new", PADDED)
    assert len(Kernel(reader).runs()) == 2  # sees the writer's commit at once
    reader.close()
    Kernel(writer).request_run("k-newer", PADDED)  # closing the reader kept the writer's env
    writer.close()
    assert not any(p == os.path.realpath(store_dir) for _, p in lmdb_module._envs)


# -- damaged records -------------------------------------------------------------------------------


def test_an_index_entry_without_its_row_is_a_corrupt_record(store_dir: str) -> None:
    """Before: ``runs`` ended in ``AttributeError: 'NoneType' object has no attribute``."""
    with LmdbStore(store_dir) as store:
        kernel = Kernel(store)
        row = kernel.request_run("k", RunTemplate("t", launcher="memory"))
        assert kernel.due_launches()
        raw_delete(store, Table.RUNS, key(row.run_id))
        for query in (kernel.runs, lambda: kernel.runs(status="REQUESTED"), kernel.due_launches):
            with pytest.raises(CorruptRecord, match="no runs row"):
                query()
    assert_refused(arcoflow(store_dir, "runs"), "corrupt record")


def test_a_stored_key_that_is_not_utf8_is_a_corrupt_record(store_dir: str) -> None:
    with LmdbStore(store_dir) as store:
        raw_put(store, Table.DUE_SCHEDULES, u64(0) + b"\x00\xff\xfe", b"")
        with pytest.raises(CorruptRecord, match="not UTF-8"):
            Kernel(store).due_schedules(now=10)


def test_a_driver_error_inside_a_read_is_a_damaged_store(store_dir: str) -> None:
    with LmdbStore(store_dir) as store:

        def corrupted() -> None:
            with store.read():
                raise lmdb.CorruptedError("mdb_cursor_get: MDB_CORRUPTED")

        with pytest.raises(DamagedStore, match=r"damaged.*backup"):
            corrupted()
        assert dump(store)  # the handle still reads


def test_bit_flips_in_a_real_store_end_in_an_answer_or_a_message(tmp_path: Path) -> None:
    """24 damaged copies (12 bits flipped in stored keys, values and meta pages; seeded) x
    every read-only command and the HTTP GET routes: each outcome is a success, one
    ``arcoflow: error:`` line (exit 1, or 2 for an item a damaged key hides) or a JSON 404/500.
    Before: ``runs`` ended in a traceback on several of these copies."""
    done = subprocess.run(
        [sys.executable, WORKER, str(tmp_path), "24", "12"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])  # no signal, no crash
    report = json.loads(done.stdout)
    assert report["problems"] == []
    # verify notices the damage (a flip may land in a stale page that no tree reaches)
    assert report["verify_refused"] >= report["copies"] // 2
    print(f"{report['commands']} commands on {report['copies']} damaged copies: all answered")


# -- pointers LMDB follows in place ---------------------------------------------------------------


def _pages_of(path: str, flag: int) -> list[int]:
    data = Path(path, DATA_FILE).read_bytes()
    return [
        n
        for n in range(2, len(data) // PAGE)
        if int.from_bytes(data[n * PAGE + 10 : n * PAGE + 12], "little") & 0x07 == flag
    ]


def _poke(path: str, offset: int, value: bytes) -> None:
    with open(os.path.join(path, DATA_FILE), "r+b") as f:
        f.seek(offset)
        f.write(value)


def test_a_branch_pointing_past_the_file_is_refused_when_pages_are_checked(
    store_dir: str,
) -> None:
    populated(store_dir, runs=200)
    data = Path(store_dir, DATA_FILE).read_bytes()
    branches = _pages_of(store_dir, 0x01)  # live ones and stale copies alike: bend them all
    assert branches
    for branch in branches:
        (offset,) = struct.unpack_from("<H", data, branch * PAGE + 16)  # the first node
        _poke(store_dir, branch * PAGE + offset, (60_000).to_bytes(2, "little"))  # its pgno
    with pytest.raises(DamagedStore, match="outside the file's pages"):
        LmdbStore(store_dir, check_pages=True)
    assert not any(p == os.path.realpath(store_dir) for _, p in lmdb_module._envs)


@pytest.mark.parametrize(
    ("where", "value", "says"),
    [
        (16, (0xFFF0).to_bytes(2, "little"), "lies outside the page"),  # the first node offset
        (12, (0xFFFF).to_bytes(2, "little"), "damaged header"),  # mp_lower
        (10, (0x0008).to_bytes(2, "little"), "neither a branch nor a leaf"),  # mp_flags
    ],
)
def test_a_damaged_leaf_page_is_refused_when_pages_are_checked(
    store_dir: str, where: int, value: bytes, says: str
) -> None:
    populated(store_dir, runs=20)
    for leaf in _pages_of(store_dir, 0x02):  # live ones and stale copies alike
        _poke(store_dir, leaf * PAGE + where, value)
    with pytest.raises(DamagedStore, match=says):
        LmdbStore(store_dir, check_pages=True)


def test_verify_names_a_node_past_the_end_of_the_file_instead_of_dying(store_dir: str) -> None:
    """A node offset bent 64 KiB forward, on the last pages: LMDB would read past the end of
    the file (SIGBUS). ``verify`` walks the pages first and says which one is damaged."""
    populated(store_dir, runs=20)
    for leaf in _pages_of(store_dir, 0x02):
        _poke(store_dir, leaf * PAGE + 16, (0xFFF0).to_bytes(2, "little"))
    done = arcoflow(store_dir, "verify")
    assert_refused(done, "lies outside the page", "backup")


def test_checking_pages_while_another_thread_commits_finds_nothing(store_dir: str) -> None:
    """A walk overlapping a commit is walked again: no false alarm on a live store."""
    populated(store_dir, runs=5)
    with LmdbStore(store_dir) as writer:
        kernel = Kernel(writer)
        done = threading.Event()

        def write() -> None:
            for i in range(150):
                kernel.request_run(f"busy{i}", PADDED)
            done.set()

        thread = threading.Thread(target=write)
        thread.start()
        walks = 0
        while not done.is_set():
            assert pages.page_problem(os.path.join(store_dir, DATA_FILE)) is None
            walks += 1
        thread.join()
    assert walks > 0
    with LmdbStore(store_dir, check_pages=True) as store:
        assert len(Kernel(store).runs(limit=1000)) == 155


def test_an_open_that_checks_pages_survives_bit_flips_anywhere(tmp_path: Path) -> None:
    """40 copies with 8 bits flipped anywhere, page headers and pointers included (without the
    check, LMDB can die of SIGBUS on such a copy): refused, or verified, never a signal."""
    done = subprocess.run(
        [sys.executable, WORKER, str(tmp_path), "40", "8", "anywhere"],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    report = json.loads(done.stdout)
    assert report["problems"] == []
    assert report["refused"] + report["mismatch"] + report["ok"] == report["copies"]
    print(f"anywhere: {report}")


@pytest.mark.parametrize("size", [0, 3, 7, 9, 15])
def test_a_stored_number_of_the_wrong_length_is_a_corrupt_record(size: int) -> None:
    """Every stored sequence number, instant and counter is read by ``from_u64``: a damaged one
    (a bit flip in a length byte; seen as ``struct.error`` from a verify of a flipped copy) is a
    CorruptRecord the CLI prints in one line, not a traceback."""
    with pytest.raises(CorruptRecord, match=f"{size} bytes, not 8"):
        from_u64(b"\x01" * size)

"""The durability promise, checked where it rests (README, "Durability").

``LmdbStore(path)`` is fully durable: LMDB flushes the data pages, then the meta page, at every
commit: two device flushes per commit. ``durable=False`` skips the meta flush: one. Nothing else
in the suite would notice a store that silently stopped flushing, so this module asserts the
flags LMDB is opened with in every mode, and counts the flushes of real commits with ``strace``.

LMDB (on Linux) flushes data pages with ``fdatasync`` and writes a durable meta page through a
second descriptor opened with ``O_DSYNC`` (the write returns once the device has it); without
``metasync`` the meta page goes through the ordinary descriptor, flushed by the next commit.
Both kinds are device flushes, and both are counted.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from arcoflow.kernel import LmdbStore, StoreError

README = Path(__file__).parents[2] / "README.md"

#: The flags each mode must open LMDB with (``lmdb.Environment.flags()``).
FLAGS: dict[str, dict[str, bool]] = {
    "durable": {"sync": True, "metasync": True, "map_async": False, "writemap": False},
    "durable=False": {"sync": True, "metasync": False, "map_async": False, "writemap": False},
}
#: Device flushes per commit, as the README documents them.
FLUSHES = {"durable": 2, "durable=False": 1}


def _open(path: str, mode: str) -> LmdbStore:
    return LmdbStore(path) if mode == "durable" else LmdbStore(path, durable=False)


def _flags(store: LmdbStore) -> dict[str, bool]:
    flags: dict[str, bool] = store._env.env.flags()
    return {name: flags[name] for name in FLAGS["durable"]}


@pytest.mark.parametrize("mode", FLAGS)
def test_each_mode_opens_lmdb_with_its_flags(tmp_path: Path, mode: str) -> None:
    store = _open(str(tmp_path / "store"), mode)
    try:
        assert _flags(store) == FLAGS[mode]
    finally:
        store.close()


def test_a_durable_handle_never_shares_a_non_durable_environment(tmp_path: Path) -> None:
    """One LMDB environment serves every handle on a path in a process: a durable handle
    opened while a ``durable=False`` one is open would silently not flush its meta pages."""
    path = str(tmp_path / "store")
    fast = LmdbStore(path, durable=False)
    try:
        with pytest.raises(StoreError, match="durable=False"):
            LmdbStore(path)
        weaker = LmdbStore(path, durable=False)  # the same promise: shared
        weaker.close()
    finally:
        fast.close()
    durable = LmdbStore(path)
    try:
        relaxed = LmdbStore(path, durable=False)  # asks for less than it gets: shared
        assert _flags(relaxed) == FLAGS["durable"]
        relaxed.close()
    finally:
        durable.close()


def test_the_readme_states_the_flush_counts() -> None:
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert "two device flushes per commit" in text
    assert "durable=False)` skips the meta flush (one flush per commit)" in text


# -- counting the flushes --------------------------------------------------------------------

COMMITS = 8
CHILD = textwrap.dedent(
    """
    import os, sys
    from arcoflow.kernel import Kernel, LmdbStore, RunTemplate
    durable = sys.argv[2] == "durable"
    store = LmdbStore(sys.argv[1]) if durable else LmdbStore(sys.argv[1], durable=False)
    kernel = Kernel(store)
    kernel.request_run("warm-up", RunTemplate("t"), now=1)
    os.write(1, b"BEGIN\\n")
    for i in range(int(sys.argv[3])):
        kernel.request_run(f"k{i}", RunTemplate("t"), now=2 + i)  # one append: one commit
    os.write(1, b"END\\n")
    store.close()
    """
)
_SYSCALL = re.compile(r"^(?:\d+ +)?(\w+)\((.*)\) += (-?\d+)")
_FLUSHES = {"fsync", "fdatasync", "msync", "sync_file_range"}
_WRITES = {"write", "pwrite64", "pwritev", "pwritev2", "writev"}


def count_flushes(trace: str) -> int:
    """Device flushes between the child's BEGIN and END markers in an ``strace`` log: flush
    calls, and writes through a descriptor opened with ``O_DSYNC`` or ``O_SYNC``."""
    synced: set[str] = set()
    counting, flushes = False, 0
    for line in trace.splitlines():
        match = _SYSCALL.match(line)
        if match is None:
            continue
        call, args, result = match.groups()
        if call == "openat" and re.search(r"\bO_D?SYNC\b", args):
            synced.add(result)
        elif call in _WRITES and args.startswith("1, "):
            if '"BEGIN' in args:
                counting = True
            elif '"END' in args:
                return flushes
        elif (counting and call in _FLUSHES) or (
            counting and call in _WRITES and args.split(",", 1)[0] in synced
        ):
            flushes += 1
    raise AssertionError("the trace has no BEGIN/END markers")


def _strace() -> str:
    strace = shutil.which("strace")
    if strace is None:
        pytest.skip("strace is not installed (apt-get install strace); the flags test still ran")
    probe = subprocess.run(
        [strace, "-o", "/dev/null", "true"], capture_output=True, text=True, check=False
    )
    if probe.returncode != 0:
        pytest.skip(f"strace cannot trace here: {probe.stderr.strip()[:200]}")
    return strace


@pytest.mark.slow
@pytest.mark.parametrize("mode", FLUSHES)
def test_a_commit_makes_the_documented_number_of_device_flushes(tmp_path: Path, mode: str) -> None:
    strace = _strace()
    log = tmp_path / "strace.log"
    calls = "openat,fsync,fdatasync,msync,sync_file_range,write,pwrite64,pwritev,pwritev2,writev"
    command = [strace, "-f", "-qq", "-e", f"trace={calls}", "-o", str(log), sys.executable]
    args = ["-c", CHILD, str(tmp_path / "store"), mode, str(COMMITS)]
    child = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, check=False
    )
    assert child.returncode == 0, child.stderr
    assert child.stdout == "BEGIN\nEND\n"
    assert count_flushes(log.read_text()) == FLUSHES[mode] * COMMITS


def test_flushes_are_counted_from_the_trace() -> None:
    """The counter itself, on a trace of one durable commit (as strace writes it)."""
    trace = textwrap.dedent(
        """\
        7 openat(AT_FDCWD, "/s/data.mdb", O_RDWR|O_CREAT, 0644) = 4
        7 openat(AT_FDCWD, "/s/data.mdb", O_WRONLY|O_DSYNC|O_CLOEXEC) = 5
        7 fdatasync(4)                      = 0
        7 write(1, "BEGIN\\n", 6)            = 6
        7 pwrite64(4, "\\2\\0\\0"..., 4096, 8192) = 4096
        7 fdatasync(4)                      = 0
        7 pwrite64(5, "\\0\\0\\240"..., 120, 4128) = 120
        7 write(1, "END\\n", 4)              = 4
        7 fdatasync(4)                      = 0
        """
    )
    assert count_flushes(trace) == 2
    assert count_flushes(trace.replace("O_WRONLY|O_DSYNC|O_CLOEXEC", "O_WRONLY")) == 1

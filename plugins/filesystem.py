"""The ``filesystem`` poll connector: one run per new or changed file under a directory.

Sensor config::

    [[sensor]]
    id = "incoming-files"
    type = "poll"
    connector = "filesystem"
    config = { path = "./incoming", pattern = "*.csv", recursive = false, max_files = 1000 }
    run = { target = "etl.ingest", launcher = "subprocess" }

* ``path`` (required): the directory, relative to the daemon's working directory or absolute;
* ``pattern``: a glob matched against file names (default ``*``); with ``/`` in it, against the
  path relative to ``path``. Like a shell glob, ``*`` does not match names starting with ``.``
  (so ``.part`` files being written are ignored) unless the pattern starts with ``.``;
* ``recursive``: also look in subdirectories (default false; symlinked directories are not
  followed);
* ``max_files``: at most this many files per poll (default 1000); the rest come next poll;
* ``min_age``: ignore files changed less than this long ago (a duration, default ``"0s"``),
  so a file still being written is picked up once it has settled.

Each run request has ``run_key`` ``<relative path>@<mtime_ns>:<size>`` — a file that changes
is a new run, the same file seen again is the same run — and config ``path`` (absolute),
``relative_path``, ``size`` and ``mtime_ns``.

How new files are found: each file's *change stamp* is ``max(mtime, ctime)`` in nanoseconds.
ctime is included because the OS sets it on every write *and rename*: a file moved into the
directory with ``mv`` or copied with ``cp -p`` keeps an old mtime but gets a fresh ctime, so it
is still seen. The cursor (format version 1, JSON) holds the highest stamp handed out and the
files (by a short hash of their relative path and size) handed out at exactly that stamp, so
files that share a timestamp — coarse file-system clocks, or a poll that stopped at
``max_files`` in the middle of a group — are neither lost nor repeated, and a file rewritten
within one timestamp tick (a new size) is new. Files are handed out oldest stamp first.

Limits, stated: a file whose stamp goes *backwards* below the cursor (a clock set back) is not
seen until it changes again; a rewrite that keeps both the timestamp and the size is not seen;
deleting files produces nothing; a file still being written when
polled gives one run now and another once it changes (use ``min_age`` or write-then-rename).
"""

from __future__ import annotations

import fnmatch
import hashlib
import heapq
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from typing import Any, Final, NamedTuple

from arcoflow.sdk import (
    ConnectorError,
    PollContext,
    PollResult,
    RunRequest,
    hookimpl,
    parse_duration,
)

__all__ = ["CURSOR_VERSION", "arcoflow_check_config", "arcoflow_poll"]

#: The cursor format this connector writes (and the newest it reads).
CURSOR_VERSION: Final = 1
_MAX_FILES_LIMIT: Final = 100_000
_MAX_KEY_PATH: Final = 400  # run keys are at most 512 characters

log = logging.getLogger("arcoflow.plugins.filesystem")


class _File(NamedTuple):
    stamp: int  # max(mtime_ns, ctime_ns): when the file last changed or moved
    relative: str
    path: str
    mtime_ns: int
    size: int


class _Cursor(NamedTuple):
    stamp: int
    seen: frozenset[str]  # hashes of (relative path, size) handed out at exactly ``stamp``


class _Config(NamedTuple):
    root: str
    pattern: str
    recursive: bool
    max_files: int
    min_age_ns: int


@hookimpl
def arcoflow_poll(context: PollContext) -> PollResult:
    """New or changed files since the cursor, oldest first, at most ``max_files``."""
    config = _config(context.sensor.config)
    cursor = _read_cursor(context.cursor, context.cursor_version)
    settled_before = time.time_ns() - config.min_age_ns if config.min_age_ns else None
    fresh = (
        f
        for f in _files(config)
        if _is_new(f, cursor) and (settled_before is None or f.stamp <= settled_before)
    )
    batch = heapq.nsmallest(config.max_files, fresh)  # bounded memory, oldest first
    if not batch:
        return PollResult()  # nothing new: the cursor stays
    top = batch[-1].stamp
    seen = {_hash(f) for f in batch if f.stamp == top}
    if top == cursor.stamp:
        seen |= cursor.seen
    return PollResult(
        run_requests=[_request(f) for f in batch],
        cursor=json.dumps({"stamp": top, "seen": sorted(seen)}, separators=(",", ":")),
        cursor_version=CURSOR_VERSION,
    )


@hookimpl
def arcoflow_check_config(role: str, config: dict[str, Any]) -> list[str]:
    """The shape of a sensor's config, at ``apply``. Whether ``path`` is a directory is left
    to each poll: the directory may well be created after the definitions are applied."""
    if role != "connector":
        return []
    try:
        _parse(config)
    except ConnectorError as exc:
        return [str(exc).removeprefix("filesystem: ")]
    return []


def _config(raw: dict[str, Any]) -> _Config:
    config = _parse(raw)
    if not os.path.isdir(config.root):
        raise ConnectorError(f"filesystem: {raw['path']!r} is not a directory (config.path)")
    return config


def _parse(raw: dict[str, Any]) -> _Config:
    """The settings in ``raw``, checked for shape only (no file-system access)."""
    unknown = set(raw) - {"path", "pattern", "recursive", "max_files", "min_age"}
    if unknown:
        raise ConnectorError(f"filesystem: unknown config key(s) {', '.join(sorted(unknown))}")
    path = raw.get("path")
    if not isinstance(path, str) or not path:
        raise ConnectorError("filesystem: config.path (the directory to watch) is required")
    pattern = raw.get("pattern", "*")
    if not isinstance(pattern, str) or not pattern:
        raise ConnectorError("filesystem: config.pattern must be a non-empty glob such as '*.csv'")
    recursive = raw.get("recursive", False)
    if not isinstance(recursive, bool):
        raise ConnectorError("filesystem: config.recursive must be true or false")
    max_files = raw.get("max_files", 1000)
    if isinstance(max_files, bool) or not isinstance(max_files, int):
        raise ConnectorError("filesystem: config.max_files must be an integer")
    if not 1 <= max_files <= _MAX_FILES_LIMIT:
        raise ConnectorError(f"filesystem: config.max_files must be 1-{_MAX_FILES_LIMIT}")
    try:
        min_age = parse_duration(raw.get("min_age", 0))
    except ValueError as exc:
        raise ConnectorError(f"filesystem: config.min_age: {exc}") from None
    return _Config(os.path.abspath(path), pattern, recursive, max_files, min_age * 10**9)


def _read_cursor(raw: str | bytes | None, version: int | None) -> _Cursor:
    if raw is None:
        return _Cursor(-1, frozenset())
    if version is not None and version > CURSOR_VERSION:
        raise ConnectorError(
            f"filesystem: the cursor has format version {version}, newer than this connector "
            f"reads ({CURSOR_VERSION}); upgrade arcoflow"
        )
    try:
        data = json.loads(raw)
        stamp, seen = data["stamp"], data["seen"]
        if not isinstance(stamp, int) or not all(isinstance(s, str) for s in seen):
            raise TypeError("bad field types")
    except (ValueError, TypeError, KeyError) as exc:
        raise ConnectorError(f"filesystem: unreadable cursor {raw!r}: {exc}") from None
    return _Cursor(stamp, frozenset(seen))


def _files(config: _Config) -> Iterator[_File]:
    by_path = "/" in config.pattern
    hidden_ok = config.pattern.startswith(".") or config.pattern.startswith("*/.")
    for directory, subdirs, names in os.walk(config.root, followlinks=False):
        if not config.recursive:
            subdirs.clear()
        else:
            subdirs[:] = sorted(d for d in subdirs if hidden_ok or not d.startswith("."))
        for name in names:
            if name.startswith(".") and not hidden_ok:
                continue
            path = os.path.join(directory, name)
            relative = os.path.relpath(path, config.root).replace(os.sep, "/")
            if not fnmatch.fnmatchcase(relative if by_path else name, config.pattern):
                continue
            if not _printable(relative):
                log.warning("filesystem: skipping %r: its name is not valid UTF-8", path)
                continue
            try:
                st = os.stat(path)
            except OSError:  # vanished between listing and stat: gone, nothing to run
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            yield _File(
                max(st.st_mtime_ns, st.st_ctime_ns), relative, path, st.st_mtime_ns, st.st_size
            )


def _printable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes (surrogateescape) cannot go into JSON
        return False
    return True


def _is_new(f: _File, cursor: _Cursor) -> bool:
    if f.stamp != cursor.stamp:
        return f.stamp > cursor.stamp
    return _hash(f) not in cursor.seen


def _hash(f: _File) -> str:
    # The size is part of it: a file rewritten within one timestamp tick is still new.
    return hashlib.sha256(f"{f.relative}\x00{f.size}".encode()).hexdigest()[:16]


def _request(f: _File) -> RunRequest:
    name = f.relative
    if len(name) > _MAX_KEY_PATH:  # keep the key within the kernel's limit, still unique
        name = f"{name[:64]}...{hashlib.sha256(name.encode()).hexdigest()[:32]}"
    return RunRequest(
        run_key=f"{name}@{f.mtime_ns}:{f.size}",
        config={
            "path": f.path,
            "relative_path": f.relative,
            "size": f.size,
            "mtime_ns": f.mtime_ns,
        },
    )

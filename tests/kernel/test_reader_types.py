"""The row readers are typed: mypy --strict knows each table's row type at the call site, with
no annotation there (the old ``_row``/``_get``/``_scan`` returned ``Any``)."""

from __future__ import annotations

from pathlib import Path

import pytest

api = pytest.importorskip("mypy.api")

ROOT = Path(__file__).resolve().parents[2]

SAMPLE = """
from typing import assert_type

from arcoflow.kernel.reader import RUNS, SENSORS, TICKS, Reader, evaluation_by_id, require
from arcoflow.kernel.rows import EvalRow, RunRow, SensorRow, Table, TickRow


def reads(rows: Reader) -> None:
    assert_type(rows.get(RUNS, b"k"), RunRow | None)
    assert_type(require(rows.get(SENSORS, b"k"), "sensor"), SensorRow)
    assert_type(list(rows.scan(TICKS)), list[TickRow])
    assert_type(list(rows.follow(Table.OUTBOX, RUNS)), list[RunRow])
    assert_type(rows.indexed(Table.RUN_ORDER, RUNS, b"k"), RunRow)
    assert_type(evaluation_by_id(rows, "e"), EvalRow | None)
    rows.get(RUNS, b"k").status  # error: the row may be None
"""


def test_mypy_knows_each_tables_row_type(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shim = tmp_path / "shim" / "arcoflow"
    shim.mkdir(parents=True)
    for package in ("kernel", "sdk", "plugins", "spec"):
        (shim / package).symlink_to(ROOT / package)
    monkeypatch.setenv("MYPYPATH", str(shim.parent))  # the folders' installed names
    sample = tmp_path / "sample.py"
    sample.write_text(SAMPLE)
    out, err, status = api.run(
        [
            "--strict",
            "--namespace-packages",
            "--explicit-package-bases",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(sample),
        ]
    )
    lines = [line for line in out.splitlines() if line.startswith(str(sample))]
    # Exactly one error, the deliberate one: every assert_type above holds.
    assert status == 1 and len(lines) == 1, out + err
    assert "union-attr" in lines[0] and ":15:" in lines[0], out

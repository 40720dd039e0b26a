"""The arrows point one way: plugins -> sdk -> kernel. The spec drives the kernel, and its plugin
conformance kit drives plugins through the SDK exactly as the runtime does.

A plugin must be writable against ``arcoflow.sdk`` alone, and the pure core must never learn
about its shells. This test reads every module's imports and fails on an arrow that points back.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALLOWED = {
    "kernel": {"kernel"},
    "sdk": {"sdk", "kernel"},
    "plugins": {"plugins", "sdk"},
    "spec": {"spec", "kernel", "sdk"},
}


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        found |= {n.split(".")[1] for n in names if n.startswith("arcoflow.") and "." in n}
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    wrong = {
        f"{path.relative_to(ROOT)} imports arcoflow.{target}"
        for path in (ROOT / package).rglob("*.py")
        for target in _imports(path) - ALLOWED[package]
    }
    assert not wrong, sorted(wrong)


def test_the_core_does_no_io() -> None:
    """decide and evolve are pure: no clock, no randomness, no files, no store."""
    for name in ("decide.py", "evolve.py", "events.py", "rows.py"):
        source = (ROOT / "kernel" / name).read_text()
        for banned in (
            "import time",
            "import random",
            "import os",
            "open(",
            "datetime.now",
            "time.time",
            "uuid4",
            "import lmdb",
        ):
            assert banned not in source, f"kernel/{name} uses {banned!r}"

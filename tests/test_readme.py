"""The README's examples are executable documentation: each ```python block must run."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_python_examples() -> None:
    assert BLOCKS, "the README lost its runnable examples"


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(BLOCKS[index], f"README.md block {index + 1}", "exec"), {"__name__": "readme"})


def test_quick_start_is_two_commands() -> None:
    section = README.read_text().split("## Quick start", 1)[1].split("\n## ", 1)[0]
    first = re.search(r"```sh\n(.*?)```", section, flags=re.S)
    assert first is not None
    commands = [line for line in first.group(1).splitlines() if line.strip()]
    assert len(commands) == 2
    assert " run --config examples/arcoflow.toml" in commands[0]
    assert commands[1].endswith("python -m pytest")


DOCS = README.parent / "docs"


def _runs(text: str, size: int) -> set[tuple[str, ...]]:
    """Every ``size`` consecutive non-blank lines of ``text``, stripped."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return {tuple(lines[i : i + size]) for i in range(len(lines) - size + 1)}


@pytest.mark.parametrize("guide", sorted(p.name for p in DOCS.glob("*.md")))
def test_the_readme_copies_no_guide(guide: str) -> None:
    """Issue 12 item 7: a guide lives in ``docs/`` only. Before, about 150 README lines
    repeated ``docs/plugins.md`` (and edits reached one copy but not the other)."""
    shared = _runs(README.read_text(), 4) & _runs((DOCS / guide).read_text(), 4)
    assert not shared, f"README repeats docs/{guide}: {sorted(shared)[0]}"


def test_every_command_is_in_the_operating_guide() -> None:
    from arcoflow.sdk.cli import build_parser  # noqa: PLC0415 (only this test needs the CLI)

    guide = (DOCS / "operating.md").read_text()
    commands = build_parser()[2].handlers
    missing = [name for name in sorted(commands) if f"`{name}" not in guide]
    assert not missing, f"docs/operating.md does not document {missing}"

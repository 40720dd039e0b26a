"""The boundary fuzz harness reports how many inputs it tried (the closing note of issue 9
quotes the figure)."""

from __future__ import annotations

import pytest

from .tally import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY:
        counts = ", ".join(f"{TALLY[kind]} {kind}" for kind in sorted(TALLY))
        total = sum(TALLY.values())
        terminalreporter.write_line(f"boundary fuzz: {total} inputs tried ({counts})")

"""Fixtures for the benchmarks, and the ratio table printed at the end of the session.

Run with ``pytest benchmarks/ --benchmark-only``. Absolute times depend on the machine (its
disk above all); what the benchmarks claim are *ratios* against a baseline measured in the same
run, printed in a table at the end and stored in each benchmark's ``extra_info``.
"""

from __future__ import annotations

from typing import Any

import pytest
from _bench import RATIOS, Ratios


@pytest.fixture
def ratios(benchmark: Any) -> Ratios:
    return Ratios(benchmark)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RATIOS:
        return
    terminalreporter.write_sep("=", "arcoflow benchmark ratios (same-run baselines)")
    width = max(len(r.name) for r in RATIOS)
    for r in RATIOS:
        terminalreporter.write_line(f"{r.name:<{width}}  {r.value:9.3f}  {r.detail}")

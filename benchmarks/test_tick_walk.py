"""The tick walk: ``next_tick`` far from a transition (fast path: one croniter step plus an
offset check), near one (slow path: the wall times around it, mapped by policy), and croniter's
own ``get_next`` on a naive datetime as the baseline."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from _bench import Ratios, best_of
from arcoflow.kernel.cron import next_tick, parse_cron, zone
from croniter import croniter

NY = zone("America/New_York")
HOURLY = parse_cron("0 * * * *")
SUMMER = 1_750_000_000  # 2025-06-15, months from any transition
BEFORE_SPRING = 1_741_500_000  # 2025-03-09T06:00:00Z, one hour before New York springs forward


def test_next_tick_fast_vs_slow_path_vs_croniter(benchmark: Any, ratios: Ratios) -> None:
    benchmark.pedantic(
        lambda: next_tick(HOURLY, NY, SUMMER), rounds=50, iterations=100, warmup_rounds=1
    )
    fast = float(benchmark.stats.stats.min)
    slow = best_of(lambda: next_tick(HOURLY, NY, BEFORE_SPRING), number=20, repeat=20)
    it = croniter("0 * * * *", datetime(2025, 6, 15))
    start = datetime(2025, 6, 15, 12, 30)

    def bare() -> object:
        it.set_current(start, force=True)
        return it.get_next(datetime)

    raw = best_of(bare, number=100, repeat=50)
    ratios.record(
        "next_tick fast path / croniter get_next",
        fast / raw,
        f"{fast * 1e6:.1f} us vs {raw * 1e6:.1f} us",
    )
    ratios.record(
        "next_tick slow path / fast path", slow / fast, f"{slow * 1e6:.1f} us near a transition"
    )

"""How many inputs the boundary fuzz harness tried, by outcome ("refused", "accepted")."""

from __future__ import annotations

from collections import Counter

TALLY: Counter[str] = Counter()

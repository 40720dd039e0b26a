"""Which history rows are old enough to be pruned: the one rule the prune planner
(:mod:`arcoflow.kernel.pruning`) and ``evolve`` share."""

from __future__ import annotations

from typing import Any

from .rows import FINISHED, ConflictRow, EvalRow, MissedRow, RunRow, TickRow

__all__ = ["instant_of", "prunable"]


def prunable(row: Any, before: int) -> bool:
    """Whether a history row may go under a cutoff of ``before``: older than it and, for a
    tick, final; for a run, finished."""
    match row:
        case TickRow():
            return row.final and row.scheduled_for < before
        case EvalRow() | MissedRow():
            return row.evaluated_at < before
        case ConflictRow():
            return row.at < before
        case RunRow():
            return row.status in FINISHED and row.updated_at < before
        case _:
            return False


def instant_of(row: Any) -> int:
    """The instant a history row is aged by (what its owner's pruned-before mark follows)."""
    match row:
        case TickRow():
            return row.scheduled_for
        case EvalRow() | MissedRow():
            return row.evaluated_at
        case ConflictRow():
            return row.at
        case RunRow():
            return row.updated_at
        case _:
            raise TypeError(row)

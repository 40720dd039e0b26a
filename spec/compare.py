"""Comparators: what a kernel call and the same call on the model returned, brought to one
shape so that the machines can require them equal (outcomes, changes, ingestions, run
requests, whole logs)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from arcoflow.kernel import (
    Change,
    Conflict,
    Ingested,
    InputError,
    Kernel,
    NotFound,
    PayloadTooLarge,
    Requested,
)

from .model import MEval, Rejected

__all__ = [
    "Outcome",
    "change_of",
    "ingested_of",
    "kernel_outcome",
    "log_of",
    "model_outcome",
    "requested_of",
]


# -- outcomes: an answer or the kind of error ---------------------------------------


Outcome = tuple[str, Any]


def kernel_outcome(call: Callable[[], Any]) -> Outcome:
    """``("ok", value)`` or ``("error", kind)`` for a kernel call."""
    try:
        return ("ok", call())
    except PayloadTooLarge:
        return ("error", "payload_too_large")
    except NotFound:
        return ("error", "not_found")
    except InputError:
        return ("error", "input")
    except Conflict:
        return ("error", "conflict")


def model_outcome(call: Callable[[], Any]) -> Outcome:
    try:
        return ("ok", call())
    except Rejected as exc:
        return ("error", exc.kind)


def requested_of(result: Requested | tuple[Any, bool, bool]) -> tuple[str, bool, bool]:
    if isinstance(result, Requested):
        return (result.run.run_id, result.existing, result.conflict)
    return (result[0].run_id, result[1], result[2])


def change_of(change: Change) -> tuple[str, int]:
    return (change.action, change.definition_version)


def ingested_of(result: Ingested | tuple[MEval, bool]) -> tuple[str, bool]:
    if isinstance(result, Ingested):
        return (result.evaluation.evaluation.eval_id, result.duplicate)
    return (result[0].eval_id, result[1])


def log_of(kernel: Kernel) -> list[tuple[int, str, int, int, Any]]:
    return [(e.seq, e.key, e.at, e.batch, e.event) for e in kernel.log()]

"""Retention: how long history and idempotency keys are kept, and which rows a prune may drop.

A :class:`RetentionPolicy` is declared store-wide (``[retention]`` in a definitions file,
:meth:`~arcoflow.kernel.Kernel.set_retention`) and overridden per schedule or per sensor (their
``retention`` field). An unset value means *forever*: nothing is pruned until a policy says so.

* ``history``: ticks, evaluations, finished runs, run-key conflicts and missed-tick summaries
  older than this are pruned (runs that are not finished never are).
* ``dedupe_horizon``: how long an idempotency key (a push message id above all) is remembered.
  A redelivery within the horizon is a duplicate; after it, a new message.

Which rows a prune may drop is :mod:`arcoflow.kernel.expiry`'s; how a pass finds them,
:mod:`arcoflow.kernel.pruning`'s.
"""

from __future__ import annotations

from typing import Any

import attrs

from .errors import InputError, InvalidDefinition
from .values import parse_duration_upto

__all__ = ["RetentionPolicy", "effective", "retention_of"]

_MAX_RETENTION = 100 * 366 * 86400  # a century: far beyond any store's lifetime


def _seconds(value: Any, field: str) -> int | None:
    if value is None:
        return None
    try:
        seconds = parse_duration_upto(value, _MAX_RETENTION)
    except InputError as exc:
        raise InvalidDefinition(f"{field}: {exc}") from None
    if seconds < 1:
        raise InvalidDefinition(f"{field}: must be at least one second (leave it out: forever)")
    return seconds


def _history(value: Any) -> int | None:
    return _seconds(value, "history")


def _dedupe_horizon(value: Any) -> int | None:
    return _seconds(value, "dedupe_horizon")


@attrs.frozen
class RetentionPolicy:
    """How long history (``history``) and idempotency keys (``dedupe_horizon``) are kept, in
    seconds; ``None`` keeps them forever. TOML takes ``"30d"``-style durations.

    >>> RetentionPolicy(history="7d").history
    604800
    """

    history: int | None = attrs.field(default=None, converter=_history)
    dedupe_horizon: int | None = attrs.field(default=None, converter=_dedupe_horizon)


def effective(override: RetentionPolicy | None, default: RetentionPolicy | None) -> RetentionPolicy:
    """The policy in force for one schedule or sensor: each value its own override, else the
    store-wide one."""
    base = default or RetentionPolicy()
    if override is None:
        return base
    return RetentionPolicy(
        override.history if override.history is not None else base.history,
        override.dedupe_horizon if override.dedupe_horizon is not None else base.dedupe_horizon,
    )


def retention_of(definition: Any) -> RetentionPolicy | None:
    """A schedule's or sensor's override (definitions stored before retention had none)."""
    policy: RetentionPolicy | None = getattr(definition, "retention", None)
    return policy

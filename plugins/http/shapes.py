"""The shapes of the HTTP API beyond the rows: answers that wrap rows, problems, and the
request bodies. (The rows themselves are :mod:`arcoflow.kernel.views`.) Each is a msgspec
Struct: answers are encoded from them, request bodies decoded into them (unknown fields
refused), and the OpenAPI document gives their JSON Schema.
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

import msgspec
from arcoflow.sdk import views

__all__ = [
    "BackfillBody",
    "Backfilled",
    "ClaimBody",
    "Claimed",
    "CompleteBody",
    "CursorBody",
    "Daemon",
    "Health",
    "LaunchBody",
    "MessageBody",
    "Page",
    "Problem",
    "Pushed",
    "ResetCursorBody",
    "Sources",
]

_V = TypeVar("_V", bound=msgspec.Struct)


# -- answers ----------------------------------------------------------------------------------


class Problem(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """An error (RFC 9457 problem details, ``application/problem+json``). ``title`` is the
    kind (``NotFound``, ``InvalidCursor``...), ``detail`` says what to fix."""

    type: str
    title: str
    status: int
    detail: str


class Page(msgspec.Struct, Generic[_V], frozen=True, forbid_unknown_fields=True):
    """One page of a listing. ``next`` is the URL of the next page (also in the ``Link``
    header), ``next_cursor`` its opaque cursor; both are null on the last page."""

    items: list[_V]
    next_cursor: str | None
    next: str | None


class Pushed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A push message's evaluation; ``duplicate``: a re-delivery, answered with the original."""

    evaluation: views.EvalView
    duplicate: bool


class Backfilled(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    items: list[views.BackfillView]


class Claimed(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The runs a launcher claimed: launch each, then report it (``POST /runs/{id}/launch``)."""

    items: list[views.RunView]


class Daemon(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    last_cycle_at: views.Instant
    age_seconds: float
    interval_seconds: float
    cycles: int
    host: str
    pid: int


class Health(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The store is readable; when a daemon on it last completed a cycle (null: none ran)."""

    status: Literal["ok"]
    daemon: Daemon | None


class Sources(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """The broker sources' state the daemon last wrote (``arcoflow sources``)."""

    sources: list[dict[str, Any]]


# -- request bodies -----------------------------------------------------------------------------


class _Body(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    pass


class CursorBody(_Body, frozen=True):
    """``POST /sensors/{id}/cursor``: a compare-and-set of the cursor (409 if it moved)."""

    cursor: str | None
    expected_version: int
    cursor_version: int = 1


class ResetCursorBody(_Body, frozen=True):
    """``POST /sensors/{id}/cursor/reset``: the next poll starts from the beginning."""

    expected_version: int


class BackfillBody(_Body, frozen=True):
    """``POST /schedules/{id}/backfill``: request the ticks of a range (ISO-8601 with offset)."""

    from_: str = msgspec.field(name="from")
    to: str
    max_runs: int = 100
    dry_run: bool = False


class ClaimBody(_Body, frozen=True):
    """``POST /launches/claim``: claim due runs for ``claimer`` until ``lease`` seconds pass."""

    claimer: str
    lease: int
    limit: int = 100


class LaunchBody(_Body, frozen=True):
    """``POST /runs/{id}/launch``: one launch attempt, its ``external_id`` or its ``error``.
    With ``expected_attempts`` (and ``claimer``, for a claimed run) it is a compare-and-set:
    409 if the run moved meanwhile."""

    external_id: str | None = None
    error: str | None = None
    claimer: str | None = None
    expected_attempts: int | None = None
    max_attempts: int = 5


class CompleteBody(_Body, frozen=True):
    """``POST /runs/{id}/complete``: the run finished."""

    succeeded: bool
    detail: str | None = None


#: Any JSON value: a push message's body (an envelope or the payload itself).
class MessageBody(msgspec.Struct, frozen=True):
    """A push message: ``{"message_id": ..., "payload": ...}`` (an envelope), or any other
    JSON value, which is the payload itself (the id then comes from a header)."""

    message_id: str | None = None
    payload: Any = None

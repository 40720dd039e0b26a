"""Observable state: one plain shape that both a kernel and the model can be read into.

The kernel is read **only through its public query API** (``schedules``, ``ticks``,
``missed``, ``sensors``, ``evaluations``, ``runs``, ``conflicts`` and the ``due_*`` indexes),
never through its tables, so a comparison says what a user would see. :func:`diff` names the
first differences in words, for Hypothesis' failure report.

Two things are deliberately not compared (SPEC "What the model leaves out"): the text of a DST
annotation (``TickRow.dst``; the model knows only *that* a tick was skipped by ``dst_gap =
"skip"``), and log sequence numbers (the model has no log; order is compared instead).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from functools import partial
from typing import Any, Literal, NamedTuple, TypeVar

from arcoflow.kernel import Kernel
from arcoflow.kernel.definitions import ScheduleDefinition, SensorDefinition
from arcoflow.kernel.events import Cursor
from arcoflow.kernel.rows import Table, run_id_of_slot

from .model import DST_SKIP, MCursor, Model

__all__ = [
    "ConflictObs",
    "EvalObs",
    "HistoryObs",
    "MissedObs",
    "Observation",
    "RunObs",
    "ScheduleObs",
    "SensorObs",
    "TickObs",
    "diff",
    "observe_kernel",
    "observe_model",
]

CursorObs = tuple[str | bytes, int] | None


class ScheduleObs(NamedTuple):
    schedule_id: str
    definition: ScheduleDefinition
    definition_version: int
    enabled: bool
    deleted: bool
    state_version: int
    eligible_from: int
    last_scheduled_for: int | None
    next_fire_at: int | None
    retries: tuple[tuple[int, int], ...]
    updated_at: int


class TickObs(NamedTuple):
    tick_id: str
    schedule_id: str
    scheduled_for: int
    status: str
    definition_version: int
    attempts: int
    reason: str | None
    run_keys: tuple[str, ...]
    final: bool
    evaluated_at: int
    deduped: tuple[str, ...]


class MissedObs(NamedTuple):
    schedule_id: str
    evaluated_at: int
    ranges: tuple[tuple[str, int, int], ...]


class SensorObs(NamedTuple):
    sensor_id: str
    definition: SensorDefinition
    definition_version: int
    running: bool
    deleted: bool
    state_version: int
    cursor: CursorObs
    failures: int
    next_eval_at: int | None
    updated_at: int
    evaluations: int
    last_eval_at: int | None
    last_status: str | None
    last_reason: str | None


class EvalObs(NamedTuple):
    eval_id: str
    sensor_id: str
    kind: str
    status: str
    reason: str | None
    message_id: str | None
    expected_state_version: int | None
    cursor_before: CursorObs
    cursor_after: CursorObs
    run_keys: tuple[str, ...]
    failures: int
    next_eval_at: int | None
    evaluated_at: int
    deduped: tuple[str, ...]


class RunObs(NamedTuple):
    run_id: str
    run_key: str
    fingerprint: str
    origin: str
    requested_by: str
    target: str
    launcher: str | None
    config: dict[str, Any]
    tags: dict[str, str]
    status: str
    created_at: int
    updated_at: int
    attempts: int
    next_attempt_at: int | None
    external_id: str | None
    last_error: str | None
    detail: str | None
    claimed_by: str | None
    retries: int


class ConflictObs(NamedTuple):
    run_key: str
    run_id: str
    existing_fingerprint: str
    conflicting_fingerprint: str
    requested_by: str
    origin: str
    at: int


class HistoryObs(NamedTuple):
    """One change to a schedule or sensor (the kernel's ``seq`` is left out: order is kept)."""

    kind: str
    id: str
    at: int
    change: str
    old_version: int | None
    new_version: int
    expected_state_version: int | None
    cursor_before: CursorObs
    cursor_after: CursorObs
    requested_by: str | None
    range_from: int | None
    range_to: int | None
    runs: int | None


_Obs = TypeVar("_Obs", bound=tuple[Any, ...])
_T = TypeVar("_T")


def _project(cls: type[_Obs], row: object, **given: Any) -> _Obs:
    """The fields of ``cls`` read by name from a kernel row or a model record alike (the two
    sides name them the same); ``given`` supplies the ones a side holds differently."""
    fields = cls._fields  # type: ignore[attr-defined]
    return cls(*(given[n] if n in given else getattr(row, n) for n in fields))


@dataclass(frozen=True)
class Observation:
    """Everything a user can see, at ``now``. Lists are oldest first."""

    now: int
    schedules: dict[str, ScheduleObs]
    ticks: dict[str, tuple[TickObs, ...]]
    missed: dict[str, tuple[MissedObs, ...]]
    sensors: dict[str, SensorObs]
    evaluations: dict[str, tuple[EvalObs, ...]]
    runs: tuple[RunObs, ...]
    conflicts: tuple[ConflictObs, ...]
    due_schedules: tuple[str, ...]
    due_sensors: tuple[str, ...]
    due_launches: tuple[str, ...]
    #: Changes by command, per (kind, id), oldest first.
    history: dict[tuple[str, str], tuple[HistoryObs, ...]]
    #: Retention: where each history was cut off ((kind, id) -> the instant before which it
    #: may be gone), and the ids of pruned runs (their keys stay taken).
    pruned_before: dict[tuple[str, str], int] = field(default_factory=dict)
    pruned_runs: frozenset[str] = frozenset()


def _cursor(c: Cursor | MCursor | None) -> CursorObs:
    if c is None:
        return None
    if isinstance(c, MCursor):
        return (c.value, c.version)
    return (c.native(), c.version)


def _reason(status: str, reason: str | None) -> str | None:
    # The kernel says in prose why dst_gap=skip skipped a tick; the model only knows that it did.
    if status == "SKIPPED" and reason is not None and DST_SKIP in reason:
        return DST_SKIP
    return reason


_PAGE = 1000


def _every_page(fetch: Callable[..., Sequence[_T]], key: Callable[[_T], object]) -> list[_T]:
    """Every row of a listing the kernel pages newest first: ``fetch(limit=, before=)`` gives
    one page of rows older than ``before`` (``None``: the newest); ``key`` names a row for the
    next ``before``."""
    rows: list[_T] = []
    before: object = None
    while True:
        page = fetch(limit=_PAGE, before=before)
        rows += page
        if len(page) < _PAGE:
            return rows
        before = key(page[-1])


def observe_kernel(kernel: Kernel, now: int) -> Observation:
    """Read ``kernel`` through its query API (paging through every list)."""
    schedules = {
        r.schedule_id: _project(
            ScheduleObs, r, retries=tuple((x.scheduled_for, x.attempts) for x in r.retries)
        )
        for r in kernel.schedules(include_deleted=True)
    }
    ticks: dict[str, tuple[TickObs, ...]] = {}
    missed: dict[str, tuple[MissedObs, ...]] = {}
    for sid in schedules:
        rows = _every_page(partial(kernel.ticks, sid), lambda t: t.tick_id)
        if rows:
            ticks[sid] = tuple(
                _project(
                    TickObs,
                    t,
                    reason=_reason(t.status, t.reason),
                    run_keys=tuple(t.run_keys),
                    deduped=tuple(t.deduped),
                )
                for t in reversed(rows)
            )
        summaries = kernel.missed(sid, limit=_PAGE)
        if summaries:
            missed[sid] = tuple(
                MissedObs(
                    m.schedule_id,
                    m.evaluated_at,
                    tuple((x.reason, x.first, x.last) for x in m.ranges),
                )
                for m in reversed(summaries)
            )
    sensors = {
        s.sensor_id: _project(SensorObs, s, cursor=_cursor(s.cursor))
        for s in kernel.sensors(include_deleted=True)
    }
    evaluations: dict[str, tuple[EvalObs, ...]] = {}
    for sid in sensors:
        evals = _every_page(
            partial(kernel.evaluations, sid),
            lambda e: e.evaluation.eval_id,
        )
        if evals:
            evaluations[sid] = tuple(
                EvalObs(
                    e.evaluation.eval_id,
                    e.evaluation.sensor_id,
                    e.evaluation.kind,
                    e.evaluation.status,
                    e.reason,
                    e.evaluation.message_id,
                    e.evaluation.expected_state_version,
                    _cursor(e.evaluation.cursor_before),
                    _cursor(e.evaluation.cursor_after),
                    tuple(e.evaluation.run_keys),
                    e.evaluation.failures,
                    e.evaluation.next_eval_at,
                    e.evaluated_at,
                    tuple(e.deduped),
                )
                for e in reversed(evals)
            )
    runs = _every_page(kernel.runs, lambda r: r.run_id)
    conflicts = _every_page(kernel.conflicts, lambda c: c.seq)
    return Observation(
        now=now,
        schedules=schedules,
        ticks=ticks,
        missed=missed,
        sensors=sensors,
        evaluations=evaluations,
        runs=tuple(_project(RunObs, r) for r in reversed(runs)),
        conflicts=tuple(_project(ConflictObs, c) for c in reversed(conflicts)),
        due_schedules=tuple(kernel.due_schedules(now)),
        due_sensors=tuple(kernel.due_sensors(now)),
        due_launches=tuple(r.run_id for r in kernel.due_launches(now, limit=1000)),
        history=_kernel_history(kernel, list(schedules), list(sensors)),
        pruned_before=_kernel_pruned(kernel, list(schedules), list(sensors)),
        pruned_runs=_kernel_pruned_runs(kernel),
    )


def _kernel_pruned(
    kernel: Kernel, schedules: list[str], sensors: list[str]
) -> dict[tuple[str, str], int]:
    owners = [("schedule", i) for i in schedules] + [("sensor", i) for i in sensors]
    owners += [("store", "runs"), ("store", "conflicts")]
    out = {}
    for kind, item in owners:
        before = kernel.pruned_before(kind, item)
        if before is not None:
            out[(kind, item)] = before
    return out


def _kernel_pruned_runs(kernel: Kernel) -> frozenset[str]:
    # No query lists pruned runs (each answers Pruned on its own): read the key index.
    with kernel.store.read() as txn:
        return frozenset(run_id_of_slot(k) for k, _ in txn.scan(Table.RUN_KEYS))


def _kernel_history(
    kernel: Kernel, schedules: list[str], sensors: list[str]
) -> dict[tuple[str, str], tuple[HistoryObs, ...]]:
    out: dict[tuple[str, str], tuple[HistoryObs, ...]] = {}
    kinds: list[tuple[Literal["schedule", "sensor"], list[str]]] = [
        ("schedule", schedules),
        ("sensor", sensors),
    ]
    for kind, ids in kinds:
        for item in ids:
            rows = _every_page(
                partial(kernel.history, kind, item),
                lambda h: h.seq,
            )
            if rows:
                out[(kind, item)] = tuple(
                    _project(
                        HistoryObs,
                        h,
                        cursor_before=_cursor(h.cursor_before),
                        cursor_after=_cursor(h.cursor_after),
                    )
                    for h in reversed(rows)
                )
    return out


def observe_model(model: Model, now: int) -> Observation:
    """The model's state in the same shape."""
    return Observation(
        now=now,
        schedules={
            sid: _project(ScheduleObs, s, schedule_id=sid, retries=tuple(s.retries))
            for sid, s in sorted(model.schedules.items())
        },
        ticks={
            sid: tuple(_project(TickObs, t) for _, t in sorted(by_at.items()))
            for sid, by_at in sorted(model.ticks.items())
            if by_at
        },
        missed={
            sid: tuple(MissedObs(m.schedule_id, m.evaluated_at, m.ranges) for m in rows)
            for sid, rows in sorted(model.missed.items())
            if rows
        },
        sensors={
            sid: _project(SensorObs, s, sensor_id=sid, cursor=_cursor(s.cursor))
            for sid, s in sorted(model.sensors.items())
        },
        evaluations={
            sid: evals
            for sid in sorted(model.sensors)
            if (
                evals := tuple(
                    EvalObs(
                        e.eval_id,
                        e.sensor_id,
                        e.kind,
                        e.status,
                        e.shown_reason,
                        e.message_id,
                        e.expected_state_version,
                        _cursor(e.cursor_before),
                        _cursor(e.cursor_after),
                        e.run_keys,
                        e.failures,
                        e.next_eval_at,
                        e.evaluated_at,
                        e.deduped,
                    )
                    for e in model.evaluations
                    if e.sensor_id == sid
                )
            )
        },
        runs=tuple(_project(RunObs, r) for r in model.runs.values()),
        conflicts=tuple(_project(ConflictObs, c) for c in model.conflicts),
        due_schedules=tuple(model.due_schedules(now)),
        due_sensors=tuple(model.due_sensors(now)),
        due_launches=tuple(r.run_id for r in model.due_launches(now, limit=1000)),
        history={
            key: tuple(
                _project(
                    HistoryObs,
                    h,
                    cursor_before=_cursor(h.cursor_before),
                    cursor_after=_cursor(h.cursor_after),
                )
                for h in rows
            )
            for key, rows in sorted(model.history.items())
            if rows
        },
        pruned_before=dict(model.pruned_before),
        pruned_runs=frozenset(model.pruned_runs),
    )


def _diff_items(where: str, left: Any, right: Any, out: list[str]) -> None:
    if left == right:
        return
    if isinstance(left, dict) and isinstance(right, dict):
        for k in sorted(set(left) | set(right), key=str):
            if k not in left:
                out.append(f"{where}[{k!r}]: only in the second: {right[k]!r}")
            elif k not in right:
                out.append(f"{where}[{k!r}]: only in the first: {left[k]!r}")
            else:
                _diff_items(f"{where}[{k!r}]", left[k], right[k], out)
        return
    if isinstance(left, tuple) and hasattr(left, "_fields") and type(left) is type(right):
        for name, a, b in zip(left._fields, left, right, strict=True):
            if a != b:
                out.append(f"{where}.{name}: {a!r} != {b!r}")
        return
    if isinstance(left, tuple) and isinstance(right, tuple):
        if len(left) != len(right):
            out.append(f"{where}: {len(left)} items != {len(right)} items")
        for i, (a, b) in enumerate(zip(left, right, strict=False)):
            _diff_items(f"{where}[{i}]", a, b, out)
        if len(left) != len(right):
            extra = left[len(right) :] or right[len(left) :]
            out.append(f"{where}: extra {extra!r}")
        return
    out.append(f"{where}: {left!r} != {right!r}")


def diff(first: Observation, second: Observation, limit: int = 12) -> list[str]:
    """The differences between two observations, in words (at most ``limit``)."""
    out: list[str] = []
    for f in fields(Observation):
        _diff_items(f.name, getattr(first, f.name), getattr(second, f.name), out)
    return out[:limit]

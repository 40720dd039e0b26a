"""The invariants of SPEC.md as functions over an :class:`~arcoflow.spec.observe.Observation`.

Each function checks one rule and raises :class:`InvariantViolation` (an ``AssertionError``)
naming what broke. They take observations, not kernels, so the same checks run on the kernel
(``observe_kernel``), on the model (``observe_model``) and on any store or plugin under test.

* **State invariants** (:data:`STATE_INVARIANTS`, :func:`check_state`) hold in every reachable
  state.
* **Step invariants** (:data:`STEP_INVARIANTS`, :func:`check_step`) relate the state before and
  after one action: history is append-only, ``last_scheduled_for`` only moves forward, the
  catch-up budget and window bound each evaluation, a cursor moves only with an accepted poll.
* Kernel-only checks (replay reproduces the state, reopening changes nothing) need a kernel:
  :func:`check_replay`, :func:`check_reopen`.

>>> from arcoflow.spec.model import Model
>>> from arcoflow.spec.observe import observe_model
>>> check_state(observe_model(Model(), 0))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from arcoflow.kernel import Kernel, Store
from arcoflow.kernel.rebuild import NOT_STATE, Rebuilt
from arcoflow.kernel.rows import Table, from_u64
from arcoflow.kernel.snapshot import load

from .model import iso, run_id, tick_id
from .observe import EvalObs, HistoryObs, Observation, TickObs, diff

__all__ = [
    "STATE_INVARIANTS",
    "STEP_INVARIANTS",
    "InvariantViolation",
    "check_compaction",
    "check_reopen",
    "check_replay",
    "check_state",
    "check_step",
    "conflicts_keep_one_run",
    "cursor_only_through_accepted_polls",
    "due_indexes_match_rows",
    "evaluation_runs_exist",
    "evaluations_bounded_by_catchup",
    "history_is_append_only",
    "last_scheduled_for_only_forward",
    "missed_ranges_hold_no_ticks",
    "no_ticks_while_disabled",
    "one_evaluation_per_push_message",
    "one_run_per_run_key",
    "one_tick_per_tick_id",
    "poll_versions_step_by_one",
    "run_lifecycle_is_coherent",
    "run_status_moves_forward",
    "ticks_link_runs_by_status",
    "ticks_not_after_last_scheduled_for",
]


class InvariantViolation(AssertionError):
    """An invariant of SPEC.md does not hold."""


def _fail(rule: str, detail: str) -> None:
    raise InvariantViolation(f"{rule}: {detail}")


# -- state invariants ----------------------------------------------------------------------------


def one_tick_per_tick_id(obs: Observation) -> None:
    """Tick identity is (schedule id, UTC instant): ids are unique and spell that identity."""
    for sid, ticks in obs.ticks.items():
        seen = Counter(t.tick_id for t in ticks)
        dupes = [k for k, n in seen.items() if n > 1]
        if dupes:
            _fail("one tick per tick id", f"{dupes} recorded more than once")
        for t in ticks:
            if t.schedule_id != sid or t.tick_id != tick_id(sid, t.scheduled_for):
                _fail("tick id", f"{t.tick_id!r} is not {sid}:{iso(t.scheduled_for)}")


def one_run_per_run_key(obs: Observation) -> None:
    """At most one run per run key, and its id is derived from the key (uuid5)."""
    keys = Counter(r.run_key for r in obs.runs)
    dupes = [k for k, n in keys.items() if n > 1]
    if dupes:
        _fail("one run per run key", f"{dupes} have several runs")
    for r in obs.runs:
        if r.run_id != run_id(r.run_key):
            _fail("run id", f"run {r.run_id} of key {r.run_key!r} is not uuid5 of the key")
        if not r.run_key.startswith(r.origin + ":"):
            _fail("run key namespace", f"{r.run_key!r} is not in origin {r.origin!r}")


def ticks_link_runs_by_status(obs: Observation) -> None:
    """Every TRIGGERED tick names at least one run key and each has exactly one run;
    SKIPPED and FAILED ticks carry no run key."""
    runs = {r.run_key for r in obs.runs}
    for ticks in obs.ticks.values():
        for t in ticks:
            if t.status == "TRIGGERED":
                if not t.run_keys:
                    _fail("triggered tick has a run", f"{t.tick_id} has no run key")
                missing = [k for k in t.run_keys if k not in runs and not _pruned(obs, k)]
                if missing:
                    _fail("triggered tick has a run", f"{t.tick_id}: no run for {missing}")
            elif t.run_keys:
                _fail("skipped/failed ticks have no run", f"{t.tick_id} ({t.status}) has keys")


def _pruned(obs: Observation, run_key: str) -> bool:
    """The run of ``run_key`` was pruned by retention (its key stays taken)."""
    return run_id(run_key) in obs.pruned_runs


def ticks_not_after_last_scheduled_for(obs: Observation) -> None:
    """Every recorded tick is at or before its schedule's ``last_scheduled_for``."""
    for sid, ticks in obs.ticks.items():
        s = obs.schedules.get(sid)
        last = s.last_scheduled_for if s else None
        for t in ticks:
            if last is None or t.scheduled_for > last:
                _fail("ticks <= last_scheduled_for", f"{t.tick_id} is after {last}")


def missed_ranges_hold_no_ticks(obs: Observation) -> None:
    """A tick summarised as missed is never recorded, and a summary names a real range."""
    for sid, summaries in obs.missed.items():
        ticks = obs.ticks.get(sid, ())
        for m in summaries:
            if not m.ranges:
                _fail("missed summary", f"{sid} at {m.evaluated_at} has no range")
            for reason, first, last in m.ranges:
                if first > last or first > m.evaluated_at:
                    _fail("missed range", f"{sid}: {reason} {first}..{last}")
                inside = [t.tick_id for t in ticks if first <= t.scheduled_for <= last]
                if inside:
                    _fail("missed ticks never run", f"{inside} inside {reason} {first}..{last}")


def one_evaluation_per_push_message(obs: Observation) -> None:
    """A push ``message_id`` has at most one evaluation that took it (``REFUSED`` records of a
    message the kernel would not take consume no id); evaluation ids are unique."""
    ids = Counter(e.eval_id for evals in obs.evaluations.values() for e in evals)
    dupes = [k for k, n in ids.items() if n > 1]
    if dupes:
        _fail("unique evaluation ids", f"{dupes}")
    for sid, evals in obs.evaluations.items():
        messages = Counter(
            e.message_id for e in evals if e.kind == "push" and e.status != "REFUSED"
        )
        repeated = [k for k, n in messages.items() if n > 1]
        if repeated:
            _fail("one evaluation per push message", f"sensor {sid}: {repeated}")


def _cursor_sets(obs: Observation, sensor_id: str) -> list[HistoryObs]:
    """An operator's cursor sets and resets of a sensor, oldest first."""
    return [h for h in obs.history.get(("sensor", sensor_id), ()) if h.change in _CURSOR_CHANGES]


_CURSOR_CHANGES: Final = ("cursor_set", "cursor_reset")


def poll_versions_step_by_one(obs: Observation) -> None:
    """Accepted polls and cursor sets carry expected versions 0, 1, 2, ... (one per version;
    polls in order), and the sensor's ``state_version`` is their number: each raised it by
    exactly one."""
    for sid, s in obs.sensors.items():
        polls = [e for e in obs.evaluations.get(sid, ()) if e.kind == "poll"]
        versions = [e.expected_state_version for e in polls]
        if versions != sorted(v for v in versions if v is not None):
            _fail("polls accepted in version order", f"{sid}: {versions}")
        sets = [h.expected_state_version for h in _cursor_sets(obs, sid)]
        every = sorted(v for v in versions + sets if v is not None)
        if ("sensor", sid) in obs.pruned_before:  # older polls pruned: what is left, in order
            if len(set(every)) != len(every) or (every and s.state_version <= every[-1]):
                _fail("poll accepted only at the expected version", f"{sid}: {every}")
            continue
        if every != list(range(len(polls) + len(sets))):
            _fail("poll accepted only at the expected version", f"{sid}: {versions} {sets}")
        if s.state_version != len(every):
            _fail("state_version +1 per accepted poll", f"{sid}: {s.state_version} vs {every}")


def cursor_only_through_accepted_polls(obs: Observation) -> None:
    """Each poll starts from the cursor the previous accepted polls (and cursor sets, in
    version order) left; ``None`` after a poll keeps the cursor, a reset clears it; the
    sensor's cursor is where they left it."""
    for sid, s in obs.sensors.items():
        steps: list[tuple[int, Any]] = []
        for e in obs.evaluations.get(sid, ()):
            if e.kind != "poll":
                if e.cursor_before is not None or e.cursor_after is not None:
                    _fail("push has no cursor", f"{e.eval_id}")
                continue
            if e.status == "FAILED" and e.cursor_after is not None:
                _fail("failed poll keeps the cursor", f"{e.eval_id}")
            steps.append((e.expected_state_version or 0, e))
        steps += [(h.expected_state_version or 0, h) for h in _cursor_sets(obs, sid)]
        steps.sort(key=lambda x: x[0])
        cursor = None
        if ("sensor", sid) in obs.pruned_before:
            # Older polls were pruned: the chain is checked from the oldest poll left.
            first = next((v for v, step in steps if isinstance(step, EvalObs)), None)
            steps = [(v, step) for v, step in steps if first is not None and v >= first]
            cursor = steps[0][1].cursor_before if steps else s.cursor
        for _, step in steps:
            if step.cursor_before != cursor:
                _fail("cursor chain", f"{sid}: {step} began at {step.cursor_before!r}")
            if isinstance(step, HistoryObs) or step.cursor_after is not None:
                cursor = step.cursor_after
        if s.cursor != cursor:
            _fail("cursor only through accepted polls", f"{sid}: {s.cursor!r} != {cursor!r}")


def evaluation_runs_exist(obs: Observation) -> None:
    """A REQUESTED evaluation's run keys each have a run; other evaluations request none."""
    runs = {r.run_key for r in obs.runs}
    for evals in obs.evaluations.values():
        for e in evals:
            if e.status == "REQUESTED":
                if not e.run_keys or any(k not in runs and not _pruned(obs, k) for k in e.run_keys):
                    _fail("evaluation runs exist", f"{e.eval_id}: {e.run_keys}")
            elif e.run_keys:
                _fail("only REQUESTED evaluations request runs", f"{e.eval_id} ({e.status})")


def conflicts_keep_one_run(obs: Observation) -> None:
    """A run key requested with another fingerprint is a conflict record, never a second run:
    the run keeps the first fingerprint."""
    runs = {r.run_key: r for r in obs.runs}
    for c in obs.conflicts:
        r = runs.get(c.run_key)
        if r is None:
            if not _pruned(obs, c.run_key):
                _fail("conflict keeps one run", f"{c.run_key!r} has no run")
            continue
        if r.fingerprint != c.existing_fingerprint or c.conflicting_fingerprint == r.fingerprint:
            _fail("conflict fingerprints", f"{c.run_key!r}: {c} vs run {r.fingerprint}")


def run_lifecycle_is_coherent(obs: Observation) -> None:
    """A REQUESTED run with a launcher always has a next attempt (it waits in the outbox);
    launched, given-up and finished runs have none; a launched run was attempted. (A run
    without a launcher is never in the outbox, but an external system may still report
    launch attempts for it.)"""
    for r in obs.runs:
        waiting = r.status == "REQUESTED" and r.launcher is not None
        if (waiting and r.next_attempt_at is None) or (
            r.status != "REQUESTED" and r.next_attempt_at is not None
        ):
            _fail("outbox", f"{r.run_id} {r.status} next_attempt_at={r.next_attempt_at}")
        if r.status in ("LAUNCHED", "GAVE_UP") and r.attempts < 1:
            _fail("launch attempts", f"{r.run_id} {r.status} after {r.attempts} attempts")


def due_indexes_match_rows(obs: Observation) -> None:
    """The due indexes list exactly the rows whose next time has come, in time order."""
    schedules = sorted(
        (s.next_fire_at, sid)
        for sid, s in obs.schedules.items()
        if s.enabled and not s.deleted and s.next_fire_at is not None and s.next_fire_at <= obs.now
    )
    if tuple(sid for _, sid in schedules) != obs.due_schedules:
        _fail("due schedules index", f"{obs.due_schedules} != {schedules}")
    sensors = sorted(
        (s.next_eval_at, sid)
        for sid, s in obs.sensors.items()
        if s.running
        and not s.deleted
        and s.definition.type == "poll"
        and s.next_eval_at is not None
        and s.next_eval_at <= obs.now
    )
    if tuple(sid for _, sid in sensors) != obs.due_sensors:
        _fail("due sensors index", f"{obs.due_sensors} != {sensors}")
    launches = sorted(
        (r.next_attempt_at, r.run_id)
        for r in obs.runs
        if r.status == "REQUESTED"
        and r.launcher is not None
        and r.next_attempt_at is not None
        and r.next_attempt_at <= obs.now
    )
    if tuple(rid for _, rid in launches) != obs.due_launches:
        _fail("launch outbox index", f"{obs.due_launches} != {launches}")


STATE_INVARIANTS: Final[tuple[Callable[[Observation], None], ...]] = (
    one_tick_per_tick_id,
    one_run_per_run_key,
    ticks_link_runs_by_status,
    ticks_not_after_last_scheduled_for,
    missed_ranges_hold_no_ticks,
    one_evaluation_per_push_message,
    poll_versions_step_by_one,
    cursor_only_through_accepted_polls,
    evaluation_runs_exist,
    conflicts_keep_one_run,
    run_lifecycle_is_coherent,
    due_indexes_match_rows,
)


def check_state(obs: Observation) -> None:
    """Every state invariant."""
    for rule in STATE_INVARIANTS:
        rule(obs)


# -- step invariants -----------------------------------------------------------------------------


def _new_ticks(before: Observation, after: Observation) -> dict[str, list[TickObs]]:
    out: dict[str, list[TickObs]] = {}
    for sid, ticks in after.ticks.items():
        old = set(before.ticks.get(sid, ()))
        fresh = [t for t in ticks if t not in old]
        if fresh:
            out[sid] = fresh
    return out


def history_is_append_only(before: Observation, after: Observation) -> None:
    """Nothing recorded is ever lost, except what retention prunes: ticks stay (only a FAILED
    tick awaiting retry is rewritten by its retry), evaluations, runs, conflicts and missed
    summaries stay. A record goes only when its owner's history then says it was cut off
    after it (``pruned_before``), a tick only when final, a run only when finished (its key
    then stays taken)."""
    cut = after.pruned_before

    def gone(kind: str, owner: str, instant: int) -> bool:
        return instant < cut.get((kind, owner), 0)

    for sid, ticks in before.ticks.items():
        now = {t.tick_id: t for t in after.ticks.get(sid, ())}
        for t in ticks:
            later = now.get(t.tick_id)
            if later is None:
                if not (t.final and gone("schedule", sid, t.scheduled_for)):
                    _fail("ticks stay", f"{t.tick_id} vanished")
            elif later != t and (t.status != "FAILED" or t.final or later.attempts <= t.attempts):
                _fail("recorded ticks are final", f"{t} became {later}")
    for sid, evals in before.evaluations.items():
        kept = _kept(evals, after.evaluations.get(sid, ()))
        if any(not gone("sensor", sid, e.evaluated_at) for e in evals[: len(evals) - len(kept)]):
            _fail("evaluations stay", f"sensor {sid}")
    for sid, summaries in before.missed.items():
        kept_missed = _kept(summaries, after.missed.get(sid, ()))
        dropped = summaries[: len(summaries) - len(kept_missed)]
        if any(not gone("schedule", sid, m.evaluated_at) for m in dropped):
            _fail("missed summaries stay", f"schedule {sid}")
    kept_conflicts = _kept(before.conflicts, after.conflicts)
    dropped_conflicts = before.conflicts[: len(before.conflicts) - len(kept_conflicts)]
    if any(not gone("store", "conflicts", c.at) for c in dropped_conflicts):
        _fail("conflicts stay", "a conflict record changed or vanished")
    later_runs = {r.run_id for r in after.runs}
    for r in before.runs:
        if r.run_id not in later_runs and not (
            r.status in ("SUCCEEDED", "FAILED") and r.run_id in after.pruned_runs
        ):
            _fail("runs stay", f"run {r.run_id} ({r.status}) vanished")
    keys = [r.run_key for r in after.runs]
    still = [r.run_key for r in before.runs if r.run_id in later_runs]
    if keys[: len(still)] != still:
        _fail("runs stay", "a run was reordered")
    for item, changes in before.history.items():
        if after.history.get(item, ())[: len(changes)] != changes:
            _fail("definition history stays", f"{item}")


def _kept(before: tuple[Any, ...], after: tuple[Any, ...]) -> tuple[Any, ...]:
    """The longest suffix of ``before`` that ``after`` starts with: what a prune of the oldest
    records left (anything else changed is reported by the callers)."""
    for start in range(len(before) + 1):
        rest = before[start:]
        if after[: len(rest)] == rest:
            return rest
    return ()


_FORWARD: Final = {
    "REQUESTED": {"REQUESTED", "LAUNCHED", "GAVE_UP", "SUCCEEDED", "FAILED"},
    "LAUNCHED": {"LAUNCHED", "SUCCEEDED", "FAILED"},
    "GAVE_UP": {"GAVE_UP", "SUCCEEDED", "FAILED", "REQUESTED"},  # REQUESTED: a retry
    "SUCCEEDED": {"SUCCEEDED"},
    "FAILED": {"FAILED"},
}


def run_status_moves_forward(before: Observation, after: Observation) -> None:
    """A run's identity and content never change; its status only moves forward (but an
    operator may retry a GAVE_UP run: back to REQUESTED, counted in ``retries``)."""
    later = {r.run_id: r for r in after.runs}
    for r in before.runs:
        n = later.get(r.run_id)
        if n is None:
            continue  # reported by history_is_append_only
        if (n.run_key, n.fingerprint, n.origin, n.target, n.config, n.tags) != (
            r.run_key,
            r.fingerprint,
            r.origin,
            r.target,
            r.config,
            r.tags,
        ):
            _fail("run content is stable", f"{r.run_id} changed")
        if n.status not in _FORWARD[r.status]:
            _fail("run status moves forward", f"{r.run_id}: {r.status} -> {n.status}")
        if r.status == "GAVE_UP" and n.status == "REQUESTED" and n.retries != r.retries + 1:
            _fail("a GAVE_UP run is requested again only by a retry", f"{r.run_id}")
        if n.attempts < r.attempts:
            _fail("launch attempts only grow", f"{r.run_id}")


def last_scheduled_for_only_forward(before: Observation, after: Observation) -> None:
    """``last_scheduled_for`` never moves backward (not on update, delete or re-create)."""
    for sid, s in before.schedules.items():
        n = after.schedules.get(sid)
        old, new = s.last_scheduled_for, n.last_scheduled_for if n else None
        if old is not None and (new is None or new < old):
            _fail("last_scheduled_for only moves forward", f"{sid}: {old} -> {new}")


def no_ticks_while_disabled(before: Observation, after: Observation) -> None:
    """A schedule that was disabled (or deleted) before and after a step gained no ticks."""
    for sid, fresh in _new_ticks(before, after).items():
        s0, s1 = before.schedules.get(sid), after.schedules.get(sid)
        off0 = s0 is None or not s0.enabled or s0.deleted
        off1 = s1 is None or not s1.enabled or s1.deleted
        if off0 and off1:
            _fail("no ticks while disabled", f"{sid} gained {[t.tick_id for t in fresh]}")


def evaluations_bounded_by_catchup(
    before: Observation, after: Observation, evaluations: dict[str, int] | None = None
) -> None:
    """Per evaluation, the fresh (first-attempt) ticks number at most ``max_catchup_ticks``,
    none is older than ``catchup_window`` or newer than the evaluation, and none is before
    ``eligible_from`` (creation or re-enabling: no back-fill). ``evaluations`` says how many
    evaluations of each schedule the step made (default one). Ticks recorded under a
    definition version that the same step replaced are not judged by the new definition."""
    for sid, fresh in _new_ticks(before, after).items():
        s = after.schedules.get(sid)
        if s is None:
            continue
        d = s.definition
        first = [
            t for t in fresh if t.attempts == 1 and t.definition_version == s.definition_version
        ]
        n = (evaluations or {}).get(sid, 1)
        for at, count in Counter(t.evaluated_at for t in first).items():
            if count > n * d.max_catchup_ticks:
                _fail("max_catchup_ticks", f"{sid}: {count} fresh ticks at {iso(at)}")
        s0 = before.schedules.get(sid)
        floor = min(s.eligible_from, s0.eligible_from) if s0 else s.eligible_from
        for t in first:
            if not t.evaluated_at - d.catchup_window <= t.scheduled_for <= t.evaluated_at:
                _fail("catchup_window", f"{t.tick_id} evaluated at {iso(t.evaluated_at)}")
            if t.scheduled_for < floor:
                _fail("no back-fill", f"{t.tick_id} is before eligible_from {iso(floor)}")


def cursor_changes_only_with_a_poll(before: Observation, after: Observation) -> None:
    """A sensor's cursor and ``state_version`` change only through new accepted polls and
    cursor sets: the version rises by exactly their number."""
    for sid, s in after.sensors.items():
        s0 = before.sensors.get(sid)
        old_evals = before.evaluations.get(sid, ())
        new: list[Any] = [
            e for e in after.evaluations.get(sid, ())[len(old_evals) :] if e.kind == "poll"
        ]
        new += _cursor_sets(after, sid)[len(_cursor_sets(before, sid)) :]
        v0 = s0.state_version if s0 else 0
        if s.state_version != v0 + len(new):
            _fail("state_version +1 per accepted poll", f"{sid}: {v0} -> {s.state_version}")
        c0 = s0.cursor if s0 else None
        if s.cursor != c0 and not any(e.cursor_after == s.cursor for e in new):
            _fail("cursor only through accepted polls", f"{sid}: {c0!r} -> {s.cursor!r}")


STEP_INVARIANTS: Final[tuple[Callable[[Observation, Observation], None], ...]] = (
    history_is_append_only,
    run_status_moves_forward,
    last_scheduled_for_only_forward,
    no_ticks_while_disabled,
    evaluations_bounded_by_catchup,
    cursor_changes_only_with_a_poll,
)


def check_step(
    before: Observation, after: Observation, evaluations: dict[str, int] | None = None
) -> None:
    """Every step invariant, for one action (``evaluations``: see
    :func:`evaluations_bounded_by_catchup`)."""
    for rule in STEP_INVARIANTS:
        if rule is evaluations_bounded_by_catchup:
            evaluations_bounded_by_catchup(before, after, evaluations)
        else:
            rule(before, after)


# -- kernel-only checks --------------------------------------------------------------------------


def check_replay(kernel: Kernel) -> None:
    """Replaying the log from empty state reproduces the materialised state byte for byte."""
    result = kernel.verify()
    if not result.ok:
        _fail("replay reproduces the state", "; ".join(result.differences[:5]))


def check_compaction(kernel: Kernel, whole: Store, before: int) -> None:
    """Log compaction of ``kernel``'s store at ``before`` keeps the meaning of the log: the
    compaction verifies, ``verify`` passes from the snapshot, the log left is the tail of the
    log of ``whole`` (a store that was never compacted and holds the same log), and the
    snapshot plus that tail rebuild exactly the state a replay of the whole log rebuilds."""
    result = kernel.compact(before=before)
    if not result.verification.ok:
        _fail("compaction verifies first", "; ".join(result.verification.differences[:5]))
    check_replay(kernel)
    with kernel.store.read() as txn, whole.read() as full:
        seq, rebuilt = load(txn, kernel.store.codec)
        tail = list(txn.scan(Table.LOG))
        whole_log = list(full.scan(Table.LOG))
        replayed = Rebuilt(whole.codec)
        replayed.replay(whole_log)
    if tail != [item for item in whole_log if from_u64(item[0]) > seq]:
        _fail("compaction drops only the log up to its snapshot", f"snapshot at seq {seq}")
    rebuilt.replay(tail)
    rebuilt.finish(rebuilt.events or seq)
    replayed.finish(replayed.events)
    for table in Table:
        if table not in NOT_STATE and list(rebuilt.items(table)) != list(replayed.items(table)):
            _fail("snapshot + remaining log = the whole log", f"table {table.value} differs")


def check_reopen(before: Observation, after: Observation) -> None:
    """Reopening (or a crash and recovery) changes nothing a user can see."""
    differences = diff(before, after)
    if differences:
        _fail("reopening changes nothing", "; ".join(differences))

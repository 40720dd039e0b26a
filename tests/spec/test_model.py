"""The model's building blocks against the documented rules (and, where the rule is shared,
against the kernel: the model re-derives ids and formulas from SPEC.md, and these tests check
that both derivations agree)."""

from __future__ import annotations

import ast
import doctest
from pathlib import Path
from typing import Any

import arcoflow.spec.invariants
import arcoflow.spec.model
from arcoflow.kernel import Backoff, RunTemplate, ScheduleDefinition, SensorDefinition
from arcoflow.kernel import decide as kernel_decide
from arcoflow.kernel import runs as kernel_runs
from arcoflow.kernel.cron import next_tick, parse_cron, prev_tick, zone
from arcoflow.kernel.events import Cursor
from arcoflow.kernel.rows import SensorRow
from arcoflow.spec.machines import CRONS, ZONES
from arcoflow.spec.model import (
    MCursor,
    Model,
    _Walk,
    backoff_delay,
    derived_id,
    fingerprint,
    poll_key,
    run_id,
    tick_id,
)
from arcoflow.spec.ticks import reference_ticks
from hypothesis import given
from hypothesis import strategies as st

KEYS = st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def test_doctests() -> None:
    for module in (arcoflow.spec.model, arcoflow.spec.invariants):
        assert doctest.testmod(module).failed == 0


@given(KEYS)
def test_run_ids_are_uuid5_of_the_run_key(key: str) -> None:
    assert run_id(key) == kernel_runs.run_id(key)
    assert derived_id(key) == kernel_runs.derived_id(key)


@given(st.text(min_size=1, max_size=10), st.dictionaries(st.text(max_size=5), JSON, max_size=3))
def test_fingerprints_are_sha256_of_sorted_json(target: str, config: dict[str, Any]) -> None:
    tags = {"team": "data"}
    assert fingerprint(target, config, tags) == kernel_runs.fingerprint(target, config, tags)


@given(st.integers(0, 4_000_000_000))
def test_tick_ids_are_schedule_and_utc_instant(at: int) -> None:
    assert tick_id("nightly", at) == kernel_decide.tick_id("nightly", at)


@given(
    st.integers(0, 50),
    st.none() | st.tuples(st.text(max_size=5) | st.binary(max_size=5), st.integers(1, 3)),
)
def test_poll_evaluation_ids_derive_from_epoch_and_cursor(version: int, raw: Any) -> None:
    mine = None if raw is None else MCursor(raw[0], raw[1])
    theirs = None if raw is None else Cursor.of(raw[0], raw[1])
    ticket = kernel_decide.PollTicket("inbox", version, theirs)
    sensor = SensorDefinition("inbox", "poll", RunTemplate("t"), connector="c")
    row = SensorRow("inbox", sensor, 1, True, False, version, theirs, 0, None, 0)
    batch = kernel_decide.record_poll(row, ticket, "boom", 100)
    assert batch[0].key == poll_key("inbox", version, mine)
    assert batch[0].event.eval_id == derived_id(poll_key("inbox", version, mine))  # type: ignore[union-attr]


@given(
    st.integers(1, 600),
    st.integers(1, 7200),
    st.sampled_from((0.0, 0.1, 0.5, 1.0)),
    st.integers(1, 300),
    st.integers(1, 70),
)
def test_backoff_formula(base: int, cap: int, jitter: float, minimum: int, failures: int) -> None:
    d = SensorDefinition(
        "s",
        "poll",
        RunTemplate("t"),
        connector="c",
        minimum_interval=minimum,
        backoff=Backoff(base=base, cap=cap, jitter=jitter),
    )
    delay = backoff_delay(d, failures)
    assert delay == kernel_decide.backoff_delay(d, failures)
    assert delay >= minimum  # never below the minimum interval
    assert delay <= max(cap, minimum)


@given(
    st.sampled_from(CRONS),
    st.sampled_from(ZONES),
    st.integers(1_700_000_000, 1_800_000_000),
    st.integers(60, 5 * 86400),
)
def test_the_lazy_walk_is_the_naive_walk(cron: str, tz: str, start: int, length: int) -> None:
    """The model asks for ticks a window at a time; that is exact."""
    d = ScheduleDefinition("w", cron, RunTemplate("t"), timezone=tz)
    walk = _Walk(d)
    everything = reference_ticks(cron, tz, "transition", "first", start, start + length)
    first = walk.first_after(start, limit=start + length)
    assert first == (everything[0] if everything else None)
    last = walk.last_before(start + length + 1, floor=start)
    assert last == (everything[-1] if everything else None)


@given(st.sampled_from(CRONS), st.sampled_from(ZONES), st.integers(1_700_000_000, 1_800_000_000))
def test_the_kernels_bounded_walk_agrees_with_the_naive_one(cron: str, tz: str, at: int) -> None:
    d = ScheduleDefinition("w", cron, RunTemplate("t"), timezone=tz)
    walk = _Walk(d)
    nxt = next_tick(parse_cron(cron), zone(tz), at)
    assert (walk.first_after(at) or (None,))[0] == nxt.at
    prv = prev_tick(parse_cron(cron), zone(tz), at)
    assert (walk.last_before(at, floor=at - 40 * 86400) or (None,))[0] == prv.at


def test_a_year_down_costs_one_window() -> None:
    """A minutely schedule not evaluated for a year: one tick, and one summary naming the
    year outside the window and the hour over the budget (the model never walks the year: it
    asks the naive walk for the window and for the ends of the missed range)."""
    m = Model()
    m.define_schedule(ScheduleDefinition("m", "* * * * *", RunTemplate("t")), now=0)
    ticks = m.evaluate_schedules(now=366 * 86400)
    assert [t.scheduled_for for t in ticks] == [366 * 86400]
    (summary,) = m.missed["m"]
    now = 366 * 86400
    assert summary.ranges == (
        ("outside_catchup_window", 0, now - 3660),
        ("over_max_catchup_ticks", now - 3600, now - 60),
    )


def test_the_model_shares_no_code_with_the_kernel() -> None:
    """An oracle that shares code with the implementation shares its bugs: the model may take
    the kernel's input value types (definitions) and nothing else from it."""
    imported: set[str] = set()
    for name in ("model.py", "ticks.py"):
        tree = ast.parse((Path(arcoflow.spec.model.__file__).parent / name).read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
    kernel = {m for m in imported if m.startswith("arcoflow")}
    assert kernel <= {"arcoflow.kernel.definitions"}, kernel

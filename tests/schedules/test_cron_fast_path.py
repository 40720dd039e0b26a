"""The arithmetic fast path of the tick walk returns exactly what the croniter walk returns.

``next_tick`` and ``prev_tick`` compute the common cron shapes (hourly, daily, weekly, weekdays,
lists, ranges and steps) with calendar arithmetic and a per-zone table of transitions;
``_general_next_tick`` and ``_general_prev_tick`` are the croniter walk alone. The properties
compare the two from arbitrary instants (1901-2100, so historical changes of standard offset
are in reach) and from instants next to a transition, for every DST policy and a range of zones.
"""

from __future__ import annotations

from datetime import datetime

import pytest
from arcoflow.kernel.cron import (
    _BUCKET,
    DstFold,
    DstGap,
    _general_next_tick,
    _general_prev_tick,
    _shape,
    _span,
    _wall_next,
    _wall_prev,
    next_tick,
    parse_cron,
    prev_tick,
    zone,
)
from arcoflow.kernel.errors import InvalidCron
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from .helpers import DAY, HOUR, ep, offset, transitions

ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # 30-minute DST
    "Australia/Adelaide",  # +09:30 / +10:30, southern hemisphere
    "Asia/Kathmandu",  # +05:30 until 1986, then +05:45
    "America/Sao_Paulo",  # southern hemisphere, DST at midnight until 2019
    "Pacific/Auckland",
    "Europe/Moscow",  # standard offset changed in 2011 and 2014
    "Pacific/Apia",  # skipped 30 December 2011
    "America/Santiago",  # transitions at 24:00
    "Antarctica/Troll",  # a two-hour shift
    "UTC",
]

# The common shapes the fast path takes, and a few it hands to croniter (names, L, W, #).
COMMON = [
    "0 * * * *",
    "30 2 * * *",
    "0 9 * * 1",
    "30 9 * * 1-5",
    "0 9,17 * * *",
    "15,45 1-3 * * *",
    "*/15 * * * *",
    "0 */2 * * *",
    "30 1 1,15 * *",
    "0 0 1 * 1",
    "0 2 */2 * 0",
    "45 2 * 3,10,11 0",
    "0 3 29 2 *",
    "59 23 31 * *",
    "5/20 2 * * 5-7",
    "0 2 * * mon-fri",
    "0 2 L * *",
    "@daily",
    "@weekly",
]
minutes = st.sampled_from(["0", "30", "59", "0,30", "5-10", "*/20", "15/30", "*"])
hours = st.sampled_from(["0", "1", "2", "3", "23", "1,2", "9,17", "1-3", "*", "*/2", "0-23/5"])
doms = st.sampled_from(["*"] * 6 + ["1", "15", "31", "1,15", "28-31", "*/2", "29"])
months = st.sampled_from(["*"] * 6 + ["2", "3", "10,11", "9-12", "*/2", "jan"])
dows = st.sampled_from(["*"] * 6 + ["0", "1", "1-5", "6,0", "7", "5-7", "*/2", "1-7/2", "sat"])
crons = st.one_of(
    st.sampled_from(COMMON),
    st.builds(lambda *f: " ".join(f), minutes, hours, doms, months, dows),
)
gaps = st.sampled_from(list(DstGap))
folds = st.sampled_from(list(DstFold))

# Transitions: New York springs forward and falls back, London, Lord Howe's 30-minute shift.
NY_SPRING = ep(2025, 3, 9, 7)
NY_FALL = ep(2025, 11, 2, 6)
LONDON_SPRING = ep(2025, 3, 30, 1)
LORD_HOWE_FALL = ep(2025, 4, 5, 15)


@st.composite
def instants(draw: st.DrawFn, tz: str) -> int:
    """Any instant in 1901-2100, or one within a few days of one of the zone's transitions."""
    year = draw(st.integers(1901, 2100))
    found = transitions(tz, year)
    if found and draw(st.booleans()):
        return draw(st.sampled_from(found)) + draw(st.integers(-3 * DAY, 3 * DAY))
    return draw(st.integers(ep(year, 1, 1), ep(year + 1, 1, 1) - 1))


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, int, DstGap, DstFold]:
    tz = draw(st.sampled_from(ZONES))
    text = draw(crons)
    try:
        parse_cron(text)
    except InvalidCron:
        assume(False)
    return tz, text, draw(instants(tz)), draw(gaps), draw(folds)


def _agree(tz: str, text: str, at: int, gap: DstGap, fold: DstFold) -> None:
    cron, z = parse_cron(text), zone(tz)
    case = f"{text!r} in {tz} at {at}, {gap}/{fold}"
    assert next_tick(cron, z, at, gap, fold) == _general_next_tick(cron, z, at, gap, fold), case
    assert prev_tick(cron, z, at, gap, fold) == _general_prev_tick(cron, z, at, gap, fold), case


@given(cases())
@settings(max_examples=max(200, settings.default.max_examples), deadline=None)
@example(("America/New_York", "30 2 * * *", NY_SPRING, DstGap.TRANSITION, DstFold.FIRST))
@example(("America/New_York", "30 2 * * *", NY_SPRING - 1, DstGap.SHIFT, DstFold.FIRST))
@example(("America/New_York", "30 2 * * *", NY_SPRING + 1, DstGap.SKIP, DstFold.FIRST))
@example(("America/New_York", "30 1 * * *", NY_FALL, DstGap.TRANSITION, DstFold.SECOND))
@example(("America/New_York", "30 1 * * 0", NY_FALL - HOUR, DstGap.TRANSITION, DstFold.BOTH))
@example(("America/New_York", "30 9 * * 1-5", NY_FALL - DAY, DstGap.SKIP, DstFold.BOTH))
@example(("America/New_York", "0 * * * *", NY_FALL + 1, DstGap.TRANSITION, DstFold.FIRST))
@example(("Europe/London", "30 1 * * *", LONDON_SPRING, DstGap.SHIFT, DstFold.SECOND))
@example(("Europe/London", "0 1,2 * * *", LONDON_SPRING - 1, DstGap.SKIP, DstFold.BOTH))
@example(("Australia/Lord_Howe", "45 1 * * *", LORD_HOWE_FALL, DstGap.SHIFT, DstFold.BOTH))
@example(("Australia/Lord_Howe", "15 1 * * *", LORD_HOWE_FALL - 1, DstGap.SKIP, DstFold.SECOND))
@example(("Pacific/Apia", "0 12 * * *", ep(2011, 12, 30, 10), DstGap.SKIP, DstFold.FIRST))
@example(("Europe/Moscow", "0 2 * * *", ep(2014, 10, 25, 22), DstGap.TRANSITION, DstFold.BOTH))
@example(("UTC", "0 0 * * *", 54 * _BUCKET, DstGap.TRANSITION, DstFold.FIRST))
@example(("America/New_York", "0 9 * * 1", 54 * _BUCKET + 1, DstGap.SHIFT, DstFold.SECOND))
def test_the_fast_path_returns_what_the_croniter_walk_returns(
    case: tuple[str, str, int, DstGap, DstFold],
) -> None:
    _agree(*case)


@given(st.sampled_from(ZONES), st.sampled_from(COMMON), gaps, folds, st.data())
@settings(deadline=None)
def test_walks_next_to_every_transition_agree(
    tz: str, text: str, gap: DstGap, fold: DstFold, data: st.DataObject
) -> None:
    """Instants placed within a few hours of a recent transition, where the slow walk runs."""
    found = [t for year in (2011, 2014, 2024, 2025) for t in transitions(tz, year)]
    assume(found)
    at = data.draw(st.sampled_from(found)) + data.draw(st.integers(-4 * HOUR, 4 * HOUR))
    _agree(tz, text, at, gap, fold)


@given(crons, st.integers(-70 * 365 * DAY, 130 * 365 * DAY))
@settings(max_examples=max(200, settings.default.max_examples), deadline=None)
@example("0 3 29 2 *", ep(2097, 3, 1) - ep(1970, 1, 1))  # the next 29 February is in 2104
@example("30 9 * * 1-5", 0)
def test_the_arithmetic_steps_match_croniter(text: str, wall: int) -> None:
    """The naive wall-time steps alone, from any wall second (croniter walks at the minute)."""
    try:
        expr = parse_cron(text).expr
    except InvalidCron:
        assume(False)
    shape = _shape(expr)
    assume(shape is not None)
    assert shape is not None
    assert shape.after(wall) == _wall_next(expr, wall)
    assert shape.before(wall) == _wall_prev(expr, wall)


@pytest.mark.parametrize(
    "at",
    [
        int((datetime(1, 1, 3) - datetime(1970, 1, 1)).total_seconds()),
        int((datetime(9998, 6, 1) - datetime(1970, 1, 1)).total_seconds()),
        int((datetime(9999, 12, 30) - datetime(1970, 1, 1)).total_seconds()),
    ],
)
def test_instants_beyond_the_zone_tables_take_the_croniter_walk(at: int) -> None:
    """Tables reach a bucket (~388 days) either side; near the ends of datetime's range they
    cannot, and the croniter walk answers (the fast path used to raise there)."""
    _agree("America/New_York", "30 2 * * *", at, DstGap.TRANSITION, DstFold.FIRST)


@pytest.mark.parametrize(
    "text", ["0 * * * *", "30 2 * * *", "0 9 * * 1", "30 9 * * 1-5", "0 9,17 * * *", "@daily"]
)
def test_the_common_shapes_take_the_fast_path(text: str) -> None:
    assert _shape(parse_cron(text).expr) is not None


@pytest.mark.parametrize("text", ["0 2 * * mon-fri", "0 2 L * *", "0 2 * * 5#2", "0 2 ? * 1"])
def test_other_syntax_takes_the_croniter_walk(text: str) -> None:
    try:
        expr = parse_cron(text).expr
    except InvalidCron:
        pytest.skip("croniter rejects it")
    assert _shape(expr) is None


@given(st.sampled_from(ZONES), st.integers(ep(1901, 1, 1), ep(2100, 1, 1)))
@settings(deadline=None)
@example("America/New_York", NY_SPRING)
@example("America/New_York", NY_SPRING - 1)
@example("UTC", 54 * _BUCKET)
def test_the_zone_table_gives_the_offset_and_a_span_it_holds_over(tz: str, at: int) -> None:
    """The span is bounded by transitions (or by the table's edge, a bucket boundary), and the
    offset holds over it (probed every 6 hours, the same as the table's probe, shifted)."""
    off, start, end = _span(zone(tz), at)
    assert start <= at < end
    assert off == offset(at, tz) == offset(start, tz) == offset(end - 1, tz)
    assert start % _BUCKET == 0 or offset(start - 1, tz) != off
    assert end % _BUCKET == 0 or offset(end, tz) != off
    assert all(offset(t, tz) == off for t in range(start + 3 * HOUR, end, 6 * HOUR))

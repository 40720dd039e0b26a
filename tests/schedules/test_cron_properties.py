"""The kernel's tick walk agrees exactly with the reference oracle, over random zones, crons,
policies and dates, with half of the windows placed on a DST transition.

The oracle (:func:`arcoflow.spec.ticks.reference_ticks`) shares no code with the kernel or
croniter: its own cron matcher, a minute-by-minute walk for absolute schedules, and the DST
policy applied to naive wall times from first principles.

Years run 2016-2030 so that zones which dropped DST (America/Sao_Paulo in 2019, Asia/Tehran in
2022, Pacific/Apia in 2021) still show their last transitions.
"""

from __future__ import annotations

from arcoflow.kernel.cron import DstFold, DstGap, next_tick, parse_cron, prev_tick, upcoming, zone
from arcoflow.kernel.errors import InvalidCron
from arcoflow.spec.ticks import RefTick, reference_ticks
from hypothesis import assume, given, note
from hypothesis import strategies as st

from .helpers import DAY, ep, transitions, walk

ZONES = [
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",  # 30-minute shift
    "Asia/Kathmandu",  # +05:45, no DST
    "Europe/Berlin",
    "America/Sao_Paulo",  # DST until 2019, starting at midnight
    "Pacific/Chatham",  # +12:45 / +13:45
    "America/St_Johns",  # -03:30 / -02:30
    "Asia/Tehran",  # DST until 2022, at midnight
    "America/Santiago",  # transitions at 24:00
    "Antarctica/Troll",  # a two-hour shift
    "Pacific/Apia",  # DST until 2021
    "UTC",
]
WINDOW = 3 * DAY

minutes = st.sampled_from(["0", "30", "15", "45", "59", "*/15", "*/20", "0,30", "5-10", "*/30"])
fixed_hours = st.one_of(
    st.integers(0, 23).map(str),
    st.lists(st.integers(0, 23), min_size=2, max_size=3, unique=True).map(
        lambda hs: ",".join(map(str, sorted(hs)))
    ),
    st.tuples(st.integers(0, 22), st.integers(1, 4)).map(
        lambda t: f"{t[0]}-{min(23, t[0] + t[1])}"
    ),
    st.sampled_from(["1-23/2", "0-23/3", "2-4/2"]),
)
wild_hours = st.sampled_from(["*", "*/2", "*/3", "*/6"])
doms = st.sampled_from(["*"] * 8 + ["1", "15", "*/2", "1-15", "28-31", "1,15"])
months = st.sampled_from(["*"] * 8 + ["3", "10,11", "mar", "4", "9-12", "*/2"])
dows = st.sampled_from(["*"] * 8 + ["1-5", "0", "sun", "*/2", "6,0", "mon-fri", "7"])
aliases = st.sampled_from(["@hourly", "@daily", "@weekly", "@monthly", "@midnight"])


@st.composite
def crons(draw: st.DrawFn) -> str:
    if draw(st.integers(0, 9)) == 0:
        return draw(aliases)
    hour = draw(st.one_of(fixed_hours, wild_hours))
    return f"{draw(minutes)} {hour} {draw(doms)} {draw(months)} {draw(dows)}"


@st.composite
def starts(draw: st.DrawFn, tz: str) -> int:
    """A random instant in 2016-2030, or one within a window's reach of a transition."""
    year = draw(st.integers(2016, 2030))
    found = transitions(tz, year)
    near = draw(st.booleans())
    if found and near:
        return draw(st.sampled_from(found)) - draw(st.integers(0, WINDOW))
    return draw(st.integers(ep(year, 1, 1), ep(year + 1, 1, 1) - 1))


@st.composite
def cases(draw: st.DrawFn) -> tuple[str, str, DstGap, DstFold, int]:
    tz = draw(st.sampled_from(ZONES))
    cron = draw(crons())
    try:
        parse_cron(cron)
    except InvalidCron:
        assume(False)
    return tz, cron, draw(st.sampled_from(DstGap)), draw(st.sampled_from(DstFold)), draw(starts(tz))


@given(cases())
def test_walks_agree_with_the_reference(case: tuple[str, str, DstGap, DstFold, int]) -> None:
    """next_tick, prev_tick and upcoming give exactly the oracle's instants, run flags and
    order; so tick ids (schedule id + instant) agree too."""
    tz, cron, gap, fold, start = case
    end = start + WINDOW
    expected = reference_ticks(cron, tz, gap.value, fold.value, start, end)
    note(f"reference: {expected}")
    forward = [RefTick(t.at, t.run) for t in walk(cron, tz, start, end, gap, fold)]
    assert forward == expected
    backward = [RefTick(t.at, t.run) for t in walk(cron, tz, start, end, gap, fold, back=True)]
    assert backward == expected
    ahead = upcoming(parse_cron(cron), zone(tz), start, len(expected) + 1, gap, fold)
    assert [RefTick(t.at, t.run) for t in ahead[:-1]] == expected
    assert ahead[-1].at > end


@given(cases(), st.integers(0, WINDOW))
def test_prev_of_next_round_trips(case: tuple[str, str, DstGap, DstFold, int], into: int) -> None:
    """For any instant a: prev(next(a)) <= a < next(a), and next(prev(next(a))) == next(a)."""
    tz, cron, gap, fold, start = case
    c, z, a = parse_cron(cron), zone(tz), start + into
    after = next_tick(c, z, a, gap, fold)
    before = prev_tick(c, z, after.at, gap, fold)
    assert before.at <= a < after.at
    assert next_tick(c, z, before.at, gap, fold) == after
    assert prev_tick(c, z, next_tick(c, z, after.at, gap, fold).at, gap, fold) == after

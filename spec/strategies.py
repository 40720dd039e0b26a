"""What the state machines draw: Hypothesis strategies for definitions and payloads, the fixed
sets they sample (ids, zones with and without DST, cron expressions, clock jumps), and
:func:`scaled`, the settings that size a machine test for the loaded profile."""

from __future__ import annotations

from typing import Any, Final

from arcoflow.kernel import (
    Backoff,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
)
from hypothesis import settings
from hypothesis import strategies as st

__all__ = [
    "BACK",
    "CRONS",
    "DST_STARTS",
    "JUMPS",
    "MESSAGE_IDS",
    "PAYLOADS",
    "RUN_KEYS",
    "SCHEDULE_IDS",
    "SENSOR_IDS",
    "STARTS",
    "START_ZONES",
    "ZONES",
    "D",
    "H",
    "scaled",
    "schedule_definitions",
    "sensor_definitions",
    "templates",
]


def scaled(fraction: float = 1.0, steps: int = 40, minimum: int = 5) -> settings:
    """Settings for a machine test: a ``fraction`` of the loaded profile's ``max_examples``
    (``ci``: quick, ``thorough``: far more), ``steps`` steps per example."""
    base = settings.default
    assert base is not None
    return settings(
        base,
        max_examples=max(minimum, int(base.max_examples * fraction)),
        stateful_step_count=steps,
    )


# -- what the machine draws ----------------------------------------------------------------------

H: Final = 3600
D: Final = 86400

#: Instants a few hours before DST transitions (and one ordinary instant): gap and fold days
#: in New York, London and Lord Howe (a 30-minute shift), and Kathmandu (+05:45, no DST).
DST_STARTS: Final = (
    1710043200,  # 2024-03-10T04:00Z, three hours before New York springs forward
    1730606400,  # 2024-11-03T04:00Z, two hours before New York falls back
    1711836000,  # 2024-03-30T22:00Z, three hours before London springs forward
    1729980000,  # 2024-10-26T22:00Z, three hours before London falls back
    1712401200,  # 2024-04-06T11:00Z, four hours before Lord Howe falls back (30 min)
    1728133200,  # 2024-10-05T13:00Z, 2.5 hours before Lord Howe springs forward (30 min)
    1893456000,  # 2030-01-01T00:00Z
)
#: Each start instant with the zone whose transition it precedes, and that transition.
START_ZONES: Final = (
    (DST_STARTS[0], "America/New_York", 1710054000),  # 02:00 EST -> 03:00 EDT
    (DST_STARTS[1], "America/New_York", 1730613600),  # 02:00 EDT -> 01:00 EST
    (DST_STARTS[2], "Europe/London", 1711846800),  # 01:00 GMT -> 02:00 BST
    (DST_STARTS[3], "Europe/London", 1729990800),  # 02:00 BST -> 01:00 GMT
    (DST_STARTS[4], "Australia/Lord_Howe", 1712415600),  # 02:00 -> 01:30
    (DST_STARTS[5], "Australia/Lord_Howe", 1728142200),  # 02:00 -> 02:30
    (DST_STARTS[6], "Asia/Kathmandu", DST_STARTS[6] + 6 * H),  # no DST: an ordinary instant
)
#: One start per example, shared: schedule definitions favour the zone whose transition is near.
STARTS: Final = st.shared(st.sampled_from(START_ZONES), key="arcoflow.spec.start")
ZONES: Final = (
    "UTC",
    "America/New_York",
    "Europe/London",
    "Australia/Lord_Howe",
    "Asia/Kathmandu",
)
CRONS: Final = (
    "0 * * * *",
    "*/30 * * * *",
    "0 */2 * * *",
    "30 1 * * *",
    "30 2 * * *",
    "0 2 * * *",
    "15 1,2 * * *",
    "45 0-3 * * *",
    "*/20 * * * *",
)
#: Clock moves: seconds to months forward, and backward.
JUMPS: Final = (1, 30, 60, 900, 1800, H, 2 * H, 3 * H, 6 * H, D, 7 * D, 45 * D, 100 * D)
BACK: Final = (-60, -H, -D)

SCHEDULE_IDS: Final = ("alpha", "beta", "gamma")
SENSOR_IDS: Final = ("inbox", "queue", "files")
MESSAGE_IDS: Final = ("m1", "m2", "m3", "m4", "\ud800")  # the last: not valid Unicode
RUN_KEYS: Final = ("backfill-1", "rerun", "nightly")


def templates() -> st.SearchStrategy[RunTemplate]:
    return st.builds(
        RunTemplate,
        target=st.sampled_from(("etl", "report")),
        launcher=st.sampled_from((None, "mem")),
        config=st.sampled_from(({}, {"region": "us"}, {"region": "eu", "n": 2})),
        tags=st.sampled_from(({}, {"team": "data"})),
    )


def schedule_definitions() -> st.SearchStrategy[ScheduleDefinition]:
    return st.builds(
        ScheduleDefinition,
        id=st.sampled_from(SCHEDULE_IDS),
        cron=st.sampled_from(CRONS),
        run=templates(),
        timezone=st.one_of(STARTS.map(lambda start: start[1]), st.sampled_from(ZONES)),
        catchup_window=st.sampled_from((60, 900, H, 6 * H, D)),
        max_catchup_ticks=st.integers(1, 4),
        catchup_order=st.sampled_from(("newest", "oldest")),
        dst_gap=st.sampled_from(("transition", "shift", "skip")),
        dst_fold=st.sampled_from(("first", "second", "both")),
        max_tick_retries=st.integers(0, 2),
        evaluator=st.sampled_from((None, "plug")),
        enabled=st.booleans() | st.just(True),
    )


def sensor_definitions() -> st.SearchStrategy[SensorDefinition]:
    def build(kind: str, **kw: Any) -> SensorDefinition:
        connector = "conn" if kind == "poll" else kw.pop("push_connector")
        kw.pop("push_connector", None)
        return SensorDefinition(type=kind, connector=connector, **kw)  # type: ignore[arg-type]

    return st.builds(
        build,
        kind=st.sampled_from(("poll", "push")),
        id=st.sampled_from(SENSOR_IDS),
        run=templates(),
        push_connector=st.sampled_from((None, "mapper")),
        minimum_interval=st.sampled_from((1, 30, 300)),
        backoff=st.builds(
            Backoff,
            base=st.sampled_from((5, 30)),
            cap=st.sampled_from((60, 3600)),
            jitter=st.sampled_from((0.0, 0.1, 0.5)),
        ),
        max_payload_bytes=st.sampled_from((64, 65536)),
        enabled=st.booleans() | st.just(True),
    )


PAYLOADS: Final = st.one_of(
    st.none(),
    st.integers(0, 3),
    st.text(alphabet="ab é", max_size=4),
    st.just({"file": "x" * 80}),  # over a 64-byte limit
    st.just(2**70),  # JSON, but not storable (the log's integers have 64 bits)
)

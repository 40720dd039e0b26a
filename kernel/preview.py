"""A schedule's coming ticks, worked out from its definition alone (no store)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NamedTuple

from .cron import parse_cron, upcoming, zone
from .decide import tick_id
from .definitions import ScheduleDefinition, checked
from .times import When, epoch
from .values import MAX_TIME, check_int

__all__ = ["PreviewTick", "preview"]


class PreviewTick(NamedTuple):
    scheduled_for: int
    local_time: datetime
    tick_id: str
    dst: str | None
    action: Literal["run", "skip"]


def preview(
    definition: ScheduleDefinition, count: int = 10, start: When = None
) -> list[PreviewTick]:
    """The next ``count`` ticks of ``definition`` from ``start`` on (fewer at the end of the
    supported time range); needs no store."""
    checked(definition, ScheduleDefinition, "definition")
    check_int(count, "count", 1, 10_000)
    tz = zone(definition.timezone)
    ticks = upcoming(
        parse_cron(definition.cron),
        tz,
        epoch(start, "start") - 1,
        count,
        definition.dst_gap,
        definition.dst_fold,
        until=MAX_TIME,  # the end of the time range (a later tick could not be formatted)
    )
    return [
        PreviewTick(
            t.at,
            datetime.fromtimestamp(t.at, tz),
            tick_id(definition.id, t.at),
            t.dst,
            "run" if t.run else "skip",
        )
        for t in ticks
    ]

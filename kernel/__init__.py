"""arcoflow's kernel: a pure decide/evolve core over versioned events, its stores and facade.

>>> from arcoflow.kernel import Kernel, MemoryStore
>>> Kernel(MemoryStore()).schedules()
[]
"""

from . import values, views
from .codec import SCHEMA_VERSION, Codec, Envelope
from .cron import DstFold, DstGap
from .definitions import (
    Backoff,
    Definitions,
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    TickContext,
    TickResult,
    load_definitions,
    parse_definitions,
    parse_duration,
)
from .errors import (
    ArcoflowError,
    Conflict,
    CorruptRecord,
    FutureSchemaVersion,
    InputError,
    InvalidCron,
    InvalidDefinition,
    InvalidId,
    NotFound,
    PayloadTooLarge,
    StoreError,
    StoreFull,
    UnknownTimezone,
    UnstorableValue,
)
from .kernel import Change, Ingested, Kernel, PreviewTick, TickDetail, Verification
from .rows import ConflictRow, EvalRow, MissedRow, RunRow, ScheduleRow, SensorRow, TickRow
from .store.base import Pending, Store
from .store.lmdb import LmdbStore
from .store.memory import MemoryStore

__all__ = [
    "SCHEMA_VERSION",
    "ArcoflowError",
    "Backoff",
    "Change",
    "Codec",
    "Conflict",
    "ConflictRow",
    "CorruptRecord",
    "Definitions",
    "DstFold",
    "DstGap",
    "Envelope",
    "EvalRow",
    "FutureSchemaVersion",
    "Ingested",
    "InputError",
    "InvalidCron",
    "InvalidDefinition",
    "InvalidId",
    "Kernel",
    "LmdbStore",
    "MemoryStore",
    "MissedRow",
    "NotFound",
    "PayloadTooLarge",
    "Pending",
    "PollContext",
    "PollResult",
    "PreviewTick",
    "PushMessage",
    "RunRequest",
    "RunRow",
    "RunTemplate",
    "ScheduleDefinition",
    "ScheduleRow",
    "SensorDefinition",
    "SensorRow",
    "Store",
    "StoreError",
    "StoreFull",
    "TickContext",
    "TickDetail",
    "TickResult",
    "TickRow",
    "UnknownTimezone",
    "UnstorableValue",
    "Verification",
    "load_definitions",
    "parse_definitions",
    "parse_duration",
    "values",
    "views",
]

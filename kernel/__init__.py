"""arcoflow's kernel: a pure decide/evolve core over versioned events, its stores and facade.

>>> from arcoflow.kernel import Kernel, MemoryStore
>>> Kernel(MemoryStore()).schedules()
[]
"""

from . import views
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
    DamagedStore,
    FutureSchemaVersion,
    InputError,
    InvalidCron,
    InvalidDefinition,
    InvalidId,
    NotFound,
    PayloadTooLarge,
    StoreError,
    StoreFull,
    StoreNotFound,
    UnknownTimezone,
    UnstorableValue,
)
from .kernel import (
    BackfillTick,
    Change,
    Ingested,
    Kernel,
    PreviewTick,
    Requested,
    TickDetail,
    Verification,
)
from .rows import (
    ConflictRow,
    EvalRow,
    HistoryRow,
    MissedRow,
    RunRow,
    ScheduleRow,
    SensorRow,
    TickRow,
)
from .runs import validate_run_id
from .store.base import Pending, Store
from .store.lmdb import LmdbStore
from .store.memory import MemoryStore

__all__ = [
    "SCHEMA_VERSION",
    "ArcoflowError",
    "BackfillTick",
    "Backoff",
    "Change",
    "Codec",
    "Conflict",
    "ConflictRow",
    "CorruptRecord",
    "DamagedStore",
    "Definitions",
    "DstFold",
    "DstGap",
    "Envelope",
    "EvalRow",
    "FutureSchemaVersion",
    "HistoryRow",
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
    "Requested",
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
    "StoreNotFound",
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
    "validate_run_id",
    "views",
]

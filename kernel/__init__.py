"""arcoflow's kernel: a pure decide/evolve core over versioned events, its stores and facade.

>>> from arcoflow.kernel import Kernel, MemoryStore
>>> Kernel(MemoryStore()).schedules()
[]
"""

from . import values, views
from .codec import SCHEMA_VERSION, Codec, Envelope
from .compact import Compaction
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
    SourceDefinition,
    TickContext,
    TickResult,
    load_definitions,
    parse_definitions,
    parse_duration,
)
from .errors import (
    ArcoflowError,
    Compacted,
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
    StoreBusy,
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
    PushItem,
    Refused,
    Requested,
    TickDetail,
)
from .outcomes import Failed, FailureKind
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
from .verify import Verification

__all__ = [
    "SCHEMA_VERSION",
    "ArcoflowError",
    "BackfillTick",
    "Backoff",
    "Change",
    "Codec",
    "Compacted",
    "Compaction",
    "Conflict",
    "ConflictRow",
    "CorruptRecord",
    "DamagedStore",
    "Definitions",
    "DstFold",
    "DstGap",
    "Envelope",
    "EvalRow",
    "Failed",
    "FailureKind",
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
    "PushItem",
    "PushMessage",
    "Refused",
    "Requested",
    "RunRequest",
    "RunRow",
    "RunTemplate",
    "ScheduleDefinition",
    "ScheduleRow",
    "SensorDefinition",
    "SensorRow",
    "SourceDefinition",
    "Store",
    "StoreBusy",
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
    "values",
    "views",
]

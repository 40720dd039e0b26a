"""What plugin authors and embedders touch: hooks, plugin values, plugins and the runtime.

A plugin imports only this package::

    from arcoflow.sdk import PollResult, RunRequest, hookimpl

    @hookimpl
    def arcoflow_poll(context):
        return PollResult([RunRequest("2030-01-01")], cursor="2030-01-01")

and registers under the ``arcoflow`` entry-point group (see ``docs/plugins.md``). Embedders
build :class:`Plugins` (``Plugins.discover()`` or ``Plugins()`` + ``register``) and drive a
kernel with :class:`Runtime`.
"""

from arcoflow.kernel import (
    DEFAULT_PAGE,
    MAX_PAGE,
    RUN_STATUSES,
    TICK_STATUSES,
    ArcoflowError,
    Conflict,
    Failed,
    FailureKind,
    InputError,
    InvalidId,
    Kernel,
    NotFound,
    PayloadTooLarge,
    PollContext,
    PollResult,
    PushMessage,
    RunRequest,
    RunStatus,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    SourceDefinition,
    TickContext,
    TickResult,
    check_limit,
    iso,
    parse_duration,
    parse_iso,
    validate_run_id,
    views,
)
from arcoflow.kernel.views import JSON

from . import metrics
from .errors import ERROR_KINDS, ErrorKind, error_kind
from .heartbeat import read_heartbeat, store_heartbeat
from .hookspecs import hookimpl
from .plugins import (
    PluginBusy,
    PluginError,
    PluginGarbage,
    PluginInfo,
    PluginLoadError,
    PluginMissing,
    PluginProblem,
    Plugins,
    PluginTimeout,
)
from .runtime import LAUNCH_TIMEOUT_KEY, MAX_ATTEMPTS_KEY, CycleReport, Failure, Runtime
from .sources import (
    Delivery,
    Sink,
    Source,
    SourceRunner,
    SourceState,
    config_value,
    decode_body,
    id_from_payload,
    read_status,
    status_row,
    store_status,
)
from .types import (
    CommandHandler,
    ConnectorError,
    Launch,
    Launched,
    LaunchError,
    Register,
    RunState,
    StoreUse,
    Subparsers,
)

__all__ = [
    "DEFAULT_PAGE",
    "ERROR_KINDS",
    "JSON",
    "LAUNCH_TIMEOUT_KEY",
    "MAX_ATTEMPTS_KEY",
    "MAX_PAGE",
    "RUN_STATUSES",
    "TICK_STATUSES",
    "ArcoflowError",
    "CommandHandler",
    "Conflict",
    "ConnectorError",
    "CycleReport",
    "Delivery",
    "ErrorKind",
    "Failed",
    "Failure",
    "FailureKind",
    "InputError",
    "InvalidId",
    "Kernel",
    "Launch",
    "LaunchError",
    "Launched",
    "NotFound",
    "PayloadTooLarge",
    "PluginBusy",
    "PluginError",
    "PluginGarbage",
    "PluginInfo",
    "PluginLoadError",
    "PluginMissing",
    "PluginProblem",
    "PluginTimeout",
    "Plugins",
    "PollContext",
    "PollResult",
    "PushMessage",
    "Register",
    "RunRequest",
    "RunState",
    "RunStatus",
    "RunTemplate",
    "Runtime",
    "ScheduleDefinition",
    "SensorDefinition",
    "Sink",
    "Source",
    "SourceDefinition",
    "SourceRunner",
    "SourceState",
    "StoreUse",
    "Subparsers",
    "TickContext",
    "TickResult",
    "check_limit",
    "config_value",
    "decode_body",
    "error_kind",
    "hookimpl",
    "id_from_payload",
    "iso",
    "metrics",
    "parse_duration",
    "parse_iso",
    "read_heartbeat",
    "read_status",
    "status_row",
    "store_heartbeat",
    "store_status",
    "validate_run_id",
    "views",
]

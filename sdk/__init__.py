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
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    SourceDefinition,
    TickContext,
    TickResult,
    parse_duration,
    validate_run_id,
    views,
)
from arcoflow.kernel.rows import RunStatus

from .errors import ERROR_KINDS, ErrorKind, error_kind
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
from .runtime import CycleReport, Failure, Runtime
from .sources import Delivery, Sink, Source, SourceRunner, SourceState
from .types import ConnectorError, Launch, Launched, LaunchError, RunState

__all__ = [
    "ERROR_KINDS",
    "ArcoflowError",
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
    "TickContext",
    "TickResult",
    "error_kind",
    "hookimpl",
    "parse_duration",
    "validate_run_id",
    "views",
]

"""pool_launcher: runs `module:function` targets in a thread pool, config as keyword args."""

import importlib
from concurrent.futures import Future, ThreadPoolExecutor

from arcoflow.sdk import Launch, Launched, LaunchError, RunState, hookimpl

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pool-launcher")
_runs: dict[str, Future[object]] = {}  # run_id -> the call started for it


@hookimpl
def arcoflow_launch(launch: Launch) -> Launched:
    if launch.run_id not in _runs:  # run_id is the idempotency token: start once
        module, _, name = launch.target.partition(":")
        try:
            function = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as exc:
            raise LaunchError(f"cannot load {launch.target!r}: {exc}") from exc
        _runs[launch.run_id] = _pool.submit(function, **launch.config)
    return Launched(external_id=launch.run_id)


@hookimpl
def arcoflow_run_state(launch: Launch) -> RunState | None:
    future = _runs.get(launch.run_id)
    if future is None or not future.done():
        return None  # still running (or started by another process)
    error = future.exception()
    if error is not None:
        return RunState("failed", f"{type(error).__name__}: {error}")
    return RunState("succeeded")

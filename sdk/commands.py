"""The runtime's CLI commands: ``run`` (the daemon) and ``plugins``.

``arcoflow run`` prints one line per thing that happens, as it happens: its kind, then what::

    change      schedule heartbeat created (v1)
    tick        heartbeat:2030-01-01T00:01:00Z TRIGGERED -> schedule:heartbeat:2030-01-01T00:01:00Z
    evaluation  incoming-files REQUESTED -> sensor:incoming-files:a.csv@1700000000000000000:42
    launch      6f1c1f0e-... schedule:heartbeat:2030-01-01T00:01:00Z LAUNCHED via subprocess (4242)
    completion  6f1c1f0e-... schedule:heartbeat:2030-01-01T00:01:00Z SUCCEEDED
    conflict    incoming-files: another daemon recorded this poll first
    error       KIND SUBJECT: TypeName: message   (an unexpected error; that item is skipped)

With ``--json`` each line is instead one JSON object with an ``event`` field (JSON lines), and
``run --once --json`` prints a single JSON document with a list per kind (``changes``,
``ticks``, ``evaluations``, ``launches``, ``completions``, ``conflicts``, ``failures``).
``run --once`` exits 1 when its cycle recorded failures (a failed tick, poll or launch), so
a cron job running it notices. ``run --metrics-port N`` serves Prometheus metrics on
``http://127.0.0.1:N/metrics`` (``--metrics-host`` to listen elsewhere; needs
``arcoflow[metrics]``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import attrs
from arcoflow.kernel import Change, EvalRow, InputError, RunRow, TickRow, parse_duration
from arcoflow.kernel import views as v
from arcoflow.kernel.store import is_postgres_url

from .daemon import run_daemon
from .metrics import process_metrics
from .plugins import Plugins
from .runtime import Failure
from .types import Register, Subparsers

__all__ = ["add_runtime_commands", "cmd_plugins", "cmd_run"]


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port must be 1-65535, got {text!r}")
    return int(text)


def add_runtime_commands(
    subparsers: Subparsers,
    register: Register,
) -> None:
    """Add ``run`` and ``plugins`` to the ``arcoflow`` CLI."""
    text = (
        "the daemon: apply --config, then cycles of evaluate schedules, poll sensors, launch "
        "runs, until SIGINT/SIGTERM (which finish the cycle in flight)"
    )
    p = subparsers.add_parser("run", help=text, description=text)
    p.add_argument("--config", metavar="FILE", help="definitions file to apply first (TOML)")
    p.add_argument("--once", action="store_true", help="run one cycle and exit")
    p.add_argument(
        "--interval",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between cycles (default 5)",
    )
    p.add_argument(
        "--for",
        dest="duration",
        metavar="DURATION",
        help="stop after this long (e.g. 70s, 10m)",
    )
    p.add_argument(
        "--metrics-port",
        type=_port,
        metavar="PORT",
        help="serve Prometheus metrics on this port (needs arcoflow[metrics])",
    )
    p.add_argument(
        "--metrics-host", default="127.0.0.1", help="address for --metrics-port (127.0.0.1)"
    )
    register("run", cmd_run, store="write")
    text = "installed plugins and the hooks each implements"
    subparsers.add_parser("plugins", help=text, description=text)
    register("plugins", cmd_plugins, store="none")


def cmd_run(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    """``arcoflow run``: the daemon, printing what happens."""
    duration = float(parse_duration(args.duration)) if args.duration else None
    printer = _Printer(bool(ctx.get("json")), collect=bool(args.once and ctx.get("json")))
    metrics = stop_metrics = None
    if args.metrics_port is not None:
        try:
            metrics = process_metrics()
        except ImportError as exc:  # the extra is not installed: say which
            raise InputError(f"--metrics-port: {exc}") from None
        try:
            stop_metrics = metrics.serve(args.metrics_port, args.metrics_host)
        except OSError as exc:
            where = f"{args.metrics_host}:{args.metrics_port}"
            print(f"arcoflow: error: cannot serve metrics on {where}: {exc}", file=sys.stderr)
            return 1
    store_path = ctx.get("store_path")
    try:
        code = run_daemon(
            ctx["kernel"],
            ctx["plugins"],
            args.config,
            args.interval,
            args.once,
            duration=duration,
            listener=printer,
            metrics=metrics,
            # A directory store keeps the heartbeat beside it; PostgreSQL in its schema.
            heartbeat_dir=store_path
            if isinstance(store_path, str) and not is_postgres_url(store_path)
            else None,
        )
    finally:
        if stop_metrics is not None:
            stop_metrics()
    printer.finish()
    return code


def cmd_plugins(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    """``arcoflow plugins``: each plugin, its hooks and where it comes from."""
    plugins: Plugins = ctx["plugins"]
    as_json = bool(ctx.get("json"))
    rows: list[dict[str, Any]] = [
        {
            "name": info.name,
            "hooks": list(info.hooks) if as_json else _hooks(info.hooks),
            "source": info.source,
            "status": "loaded",
            "error": None,
        }
        for info in plugins.describe()
    ]
    rows += [
        {
            "name": p.name,
            "hooks": [] if as_json else "-",
            "source": p.source,
            "status": "error",
            "error": p.error,
        }
        for p in plugins.problems()
    ]
    rows.sort(key=lambda r: r["name"])
    ctx["out"](rows, "plugin")
    return 0


def _hooks(hooks: tuple[str, ...]) -> str:
    return ", ".join(h.removeprefix("arcoflow_") for h in hooks) or "-"


class _Printer:
    """The ``run`` command's listener: a line per event, JSON lines, or one document."""

    def __init__(self, as_json: bool, collect: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.collect = collect
        self.stream = stream or sys.stdout
        self.document: dict[str, list[Any]] = {
            "changes": [],
            "ticks": [],
            "evaluations": [],
            "launches": [],
            "completions": [],
            "conflicts": [],
            "failures": [],
        }

    def __call__(self, kind: str, item: Any) -> None:
        data, text = _render(kind, item)
        if self.collect:
            self.document[_PLURAL[kind]].append(data)
            return
        if self.as_json:
            line = json.dumps({"event": kind} | data, ensure_ascii=False)
        else:
            line = f"{kind:<11} {text}"
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:  # `arcoflow run | head`: the daemon still runs correctly
            self.collect = False
            self.as_json = False
            self.stream = _Null()

    def finish(self) -> None:
        if self.collect:
            self.stream.write(json.dumps(self.document, indent=2, ensure_ascii=False) + "\n")
            self.stream.flush()


class _Null:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


_PLURAL = {
    "change": "changes",
    "tick": "ticks",
    "evaluation": "evaluations",
    "launch": "launches",
    "completion": "completions",
    "conflict": "conflicts",
    "error": "failures",
}


def _render(kind: str, item: Any) -> tuple[dict[str, Any], str]:
    """The JSON data and the text line for one event."""
    if isinstance(item, Change):
        return (
            item._asdict(),
            f"{item.kind} {item.id} {item.action} (v{item.definition_version})",
        )
    if isinstance(item, TickRow):
        detail = " ".join(item.run_keys) if item.status == "TRIGGERED" else item.reason or ""
        return v.tick_json(item), f"{item.tick_id} {item.status} -> {detail}"
    if isinstance(item, EvalRow):
        e = item.evaluation
        detail = " ".join(e.run_keys) if e.run_keys else e.reason or ""
        return v.eval_json(item), f"{e.sensor_id} {e.status} -> {detail}"
    if isinstance(item, RunRow):
        if kind == "completion":
            text = f"{item.run_id} {item.run_key} {item.status}"
            return v.run_json(item), text + (f": {item.detail}" if item.detail else "")
        if item.status == "LAUNCHED":
            extra = f" ({item.external_id})" if item.external_id else ""
            text = f"LAUNCHED via {item.launcher}{extra}"
        elif item.status == "GAVE_UP":
            text = f"GAVE_UP after {item.attempts} attempts: {item.last_error}"
        else:
            text = f"attempt {item.attempts} failed, retry later: {item.last_error}"
        return v.run_json(item), f"{item.run_id} {item.run_key} {text}"
    if isinstance(item, Failure):
        return attrs.asdict(item), f"{item.kind} {item.subject}: {item.reason}"
    if kind == "conflict":
        return {"sensor_id": item}, f"{item}: another daemon recorded this poll first"
    return {"item": repr(item)}, repr(item)

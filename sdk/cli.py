"""The ``arcoflow`` command line.

Every query takes ``--json`` and then prints exactly one JSON document on stdout (a list for
list queries, an object for one item); otherwise a readable table. Exit codes: 0 success,
1 a failed operation (a verify mismatch, a lost race, a store error), 2 bad input or usage.
Errors go to stderr as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn, TextIO

from arcoflow.kernel import (
    ArcoflowError,
    Conflict,
    InputError,
    Kernel,
    LmdbStore,
    NotFound,
    RunTemplate,
    load_definitions,
)
from arcoflow.kernel import views as v
from arcoflow.kernel.kernel import preview
from arcoflow.kernel.values import check_json, check_time

from .commands import add_runtime_commands
from .plugins import Plugins
from .runtime import Runtime

__all__ = ["main"]

Handler = Callable[[argparse.Namespace, Mapping[str, Any]], int]
JSON = dict[str, Any]

#: Columns of the human-readable table of each kind of row.
_COLUMNS: Mapping[str, Sequence[str]] = {
    "schedule": (
        "schedule_id",
        "enabled",
        "cron",
        "timezone",
        "definition_version",
        "last_scheduled_for",
        "next_fire_at",
    ),
    "tick": ("tick_id", "status", "definition_version", "run_key", "reason"),
    "missed": ("evaluated_at", "ranges"),
    "sensor": (
        "sensor_id",
        "type",
        "status",
        "cursor",
        "state_version",
        "failures",
        "next_eval_at",
    ),
    "evaluation": ("eval_id", "status", "cursor_before", "cursor_after", "run_keys", "reason"),
    "run": ("run_id", "run_key", "status", "origin", "attempts", "external_id"),
    "conflict": ("run_key", "existing_fingerprint", "conflicting_fingerprint", "requested_by"),
    "preview": ("scheduled_for", "local_time", "action", "dst", "tick_id"),
    "change": ("kind", "id", "action", "definition_version"),
}


class _Parser(argparse.ArgumentParser):
    """argparse that exits 2 with one line on stderr (its default too, made explicit)."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"arcoflow: error: {message}\n")


class Output:
    """Prints results as one JSON document (``--json``) or a table."""

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout

    def __call__(self, data: JSON | list[JSON], kind: str) -> None:
        if self.as_json:
            self.stream.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        elif isinstance(data, list):
            self.stream.write(_table(data, _COLUMNS.get(kind)) + "\n")
        else:
            width = max((len(k) for k in data), default=0)
            for name, value in data.items():
                self.stream.write(f"{name:<{width}}  {_cell(value)}\n")

    def line(self, text: str) -> None:
        """A plain progress line (suppressed under ``--json``, where stdout is the document)."""
        if not self.as_json:
            self.stream.write(text + "\n")
            self.stream.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False) if value else "-"
    return str(value)


def _table(rows: list[JSON], columns: Sequence[str] | None) -> str:
    if not rows:
        return "(none)"
    cols = list(columns or rows[0].keys())
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += [
        "  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() for row in cells
    ]
    return "\n".join(lines)


def parse_time(text: str, what: str = "time") -> int:
    """Epoch seconds from ISO-8601 (``2026-03-08T07:00:00Z``, offsets allowed; naive = UTC),
    within the range every time must lie in (:func:`arcoflow.kernel.values.check_time`)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not an ISO-8601 time such as 2026-03-08T07:00:00Z") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return check_time(moment, what)


def _json_arg(text: str | None, what: str) -> Any:
    """The JSON value of an argument, held to the kernel's JSON rules (no NaN, 64-bit ints)."""
    if text is None:
        return None
    try:
        value = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError; too many digits; too deep
        raise InputError(f"{what} is not valid JSON: {exc}") from None
    return check_json(value, what)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


# -- handlers ----------------------------------------------------------------------------------


def _kernel(ctx: Mapping[str, Any]) -> Kernel:
    kernel: Kernel = ctx["kernel"]
    return kernel


def cmd_apply(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    changes = _kernel(ctx).apply(load_definitions(args.file))
    ctx["out"]([v.change_json(c) for c in changes], "change")
    return 0


def cmd_schedules(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).schedules(include_deleted=args.all)
    ctx["out"]([v.schedule_json(r) for r in rows], "schedule")
    return 0


def _lifecycle(kind: str, on: str, args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    """``schedule|sensor show|delete|<on>|<off> ID``: one shape for both kinds of definition."""
    kernel = _kernel(ctx)
    show = getattr(kernel, kind)  # Kernel.schedule / Kernel.sensor
    if args.action == "delete":
        getattr(kernel, f"delete_{kind}")(args.id)
    elif args.action != "show":
        toggle = kernel.set_schedule_enabled if kind == "schedule" else kernel.set_sensor_running
        toggle(args.id, args.action == on)
    present = v.schedule_json if kind == "schedule" else v.sensor_json
    ctx["out"](present(show(args.id)), kind)
    return 0


def cmd_schedule(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    return _lifecycle("schedule", "enable", args, ctx)


def cmd_ticks(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).ticks(
        args.schedule_id, status=args.status, limit=args.limit, before=args.before
    )
    ctx["out"]([v.tick_json(r) for r in rows], "tick")
    return 0


def cmd_tick(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    ctx["out"](v.tick_detail_json(_kernel(ctx).tick(args.tick_id)), "tick")
    return 0


def cmd_missed(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).missed(args.schedule_id, limit=args.limit)
    ctx["out"]([v.missed_json(r) for r in rows], "missed")
    return 0


def cmd_evaluate(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    """One evaluation cycle at ``--now``: due schedules, then due poll sensors (no launches)."""
    now = parse_time(args.now, "--now") if args.now else None
    report = Runtime(_kernel(ctx), ctx["plugins"]).evaluate(now)
    out: Output = ctx["out"]
    data = report.to_json()
    if out.as_json:
        out(data, "report")
        return 0
    for name, kind in (("ticks", "tick"), ("evaluations", "evaluation"), ("failures", "")):
        if data[name]:
            out.line(f"{name}:")
            out(data[name], kind)
    out.line(f"at {data['now']}: {report.summary()}")
    return 0


def cmd_preview(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    start = parse_time(args.start, "--from") if args.start else None
    if args.file:
        defs = {s.id: s for s in load_definitions(args.file).schedules}
        if args.schedule_id not in defs:
            raise NotFound(f"{args.file} declares no schedule {args.schedule_id!r}")
        ticks = preview(defs[args.schedule_id], count=args.count, start=start)  # no store needed
    else:
        ticks = _kernel(ctx).preview(args.schedule_id, count=args.count, start=start)
    ctx["out"]([v.preview_json(t) for t in ticks], "preview")
    return 0


def cmd_sensors(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).sensors(include_deleted=args.all)
    ctx["out"]([v.sensor_json(r) for r in rows], "sensor")
    return 0


def cmd_sensor(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    return _lifecycle("sensor", "start", args, ctx)


def cmd_evals(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).evaluations(args.sensor_id, limit=args.limit, before=args.before)
    ctx["out"]([v.eval_json(r) for r in rows], "evaluation")
    return 0


def cmd_push(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    kernel = _kernel(ctx)
    payload = _json_arg(args.payload, "--payload")
    mapper = ctx["plugins"].push_mapper(kernel.sensor(args.sensor_id).definition)
    result = kernel.ingest(args.sensor_id, args.message_id, payload, connector=mapper)
    ctx["out"](
        {"duplicate": result.duplicate, "evaluation": v.eval_json(result.evaluation)}, "push"
    )
    return 0


def cmd_runs(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    kernel = _kernel(ctx)
    if args.run_id:
        ctx["out"](v.run_json(kernel.run(args.run_id)), "run")
        return 0
    rows = kernel.runs(limit=args.limit, before=args.before, status=args.status)
    ctx["out"]([v.run_json(r) for r in rows], "run")
    return 0


def cmd_request(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    config = _json_arg(args.config, "--config") or {}
    tags = _json_arg(args.tags, "--tags") or {}
    template = RunTemplate(args.target, launcher=args.launcher, config=config, tags=tags)
    row = _kernel(ctx).request_run(args.run_key, template, origin=args.origin)
    ctx["out"](v.run_json(row), "run")
    return 0


def cmd_complete(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    row = _kernel(ctx).complete_run(args.run_id, args.status == "succeeded", args.detail)
    ctx["out"](v.run_json(row), "run")
    return 0


def cmd_conflicts(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).conflicts(limit=args.limit)
    ctx["out"]([v.conflict_json(r) for r in rows], "conflict")
    return 0


def cmd_verify(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    with tempfile.TemporaryDirectory(prefix="arcoflow-verify-") as scratch:
        replay = LmdbStore(scratch, durable=False)
        try:
            result = _kernel(ctx).verify(replay)
        finally:
            replay.close()
    report = {"ok": result.ok, "events": result.events, "differences": list(result.differences)}
    if ctx["json"]:
        ctx["out"](report, "verify")
    elif result.ok:
        ctx["out"].line(f"ok: replaying {result.events} events reproduces the state exactly")
    else:
        ctx["out"].line(f"MISMATCH after replaying {result.events} events:")
        for difference in result.differences:
            ctx["out"].line(f"  {difference}")
    return 0 if result.ok else 1


# -- parser ------------------------------------------------------------------------------------


def _limit_args(p: argparse.ArgumentParser, before: str) -> None:
    p.add_argument("--limit", type=int, default=50, help="at most N rows (1-1000, default 50)")
    p.add_argument("--before", metavar=before, help=f"page: rows older than this {before}")


def build_parser() -> tuple[_Parser, Any, dict[str, Handler]]:
    parser = _Parser(
        prog="arcoflow",
        description="Cron schedules and event sensors "
        "turned into run requests exactly once, durably.",
    )
    parser.add_argument(
        "--store",
        metavar="DIR",
        default=os.environ.get("ARCOFLOW_STORE", ".arcoflow"),
        help="the LMDB store directory (default: $ARCOFLOW_STORE or ./.arcoflow)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log ticks, evaluations and launches (-vv: debug)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    handlers: dict[str, Handler] = {}

    def add(name: str, handler: Handler, help_: str) -> argparse.ArgumentParser:
        handlers[name] = handler
        return sub.add_parser(name, help=help_, description=help_)

    p = add("apply", cmd_apply, "upsert the schedules and sensors a TOML file declares")
    p.add_argument("file")
    p = add("schedules", cmd_schedules, "list schedules with their state")
    p.add_argument("--all", action="store_true", help="include deleted schedules")
    p = add("schedule", cmd_schedule, "show, enable, disable or delete a schedule")
    p.add_argument("action", choices=("show", "enable", "disable", "delete"))
    p.add_argument("id")
    p = add("ticks", cmd_ticks, "a schedule's ticks, newest first")
    p.add_argument("schedule_id")
    p.add_argument("--status", choices=("TRIGGERED", "SKIPPED", "FAILED"))
    _limit_args(p, "TICK_ID")
    p = add("tick", cmd_tick, "one tick with its run key, run id and the run's status")
    p.add_argument("tick_id")
    p = add("missed", cmd_missed, "summaries of ticks dropped by catch-up limits")
    p.add_argument("schedule_id")
    p.add_argument("--limit", type=int, default=50)
    p = add("evaluate", cmd_evaluate, "one evaluation cycle: due schedules and poll sensors")
    p.add_argument("--now", metavar="ISO-8601", help="evaluate at this instant (default: now)")
    p = add("preview", cmd_preview, "the next ticks of a schedule, with DST annotations")
    p.add_argument("schedule_id")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--from", dest="start", metavar="ISO-8601", help="start (default: now)")
    p.add_argument("--file", metavar="FILE.toml", help="preview a definition not yet applied")
    p = add("sensors", cmd_sensors, "list sensors with cursor, version, failures, next eval")
    p.add_argument("--all", action="store_true", help="include deleted sensors")
    p = add("sensor", cmd_sensor, "show, start, stop or delete a sensor")
    p.add_argument("action", choices=("show", "start", "stop", "delete"))
    p.add_argument("id")
    p = add("evals", cmd_evals, "a sensor's evaluations, newest first")
    p.add_argument("sensor_id")
    _limit_args(p, "EVAL_ID")
    p = add("push", cmd_push, "ingest one message into a push sensor")
    p.add_argument("sensor_id")
    p.add_argument("--message-id", required=True)
    p.add_argument("--payload", metavar="JSON")
    p = add("runs", cmd_runs, "runs, newest first (or one run by id)")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--status", choices=("REQUESTED", "LAUNCHED", "SUCCEEDED", "FAILED", "GAVE_UP"))
    _limit_args(p, "RUN_ID")
    p = add("request", cmd_request, "request a run by hand (key namespace 'manual:')")
    p.add_argument("run_key")
    p.add_argument("--target", required=True)
    p.add_argument("--launcher")
    p.add_argument("--config", metavar="JSON")
    p.add_argument("--tags", metavar="JSON")
    p.add_argument("--origin", choices=("manual", "backfill"), default="manual")
    p = add("complete", cmd_complete, "report that a run finished")
    p.add_argument("run_id")
    p.add_argument("status", choices=("succeeded", "failed"))
    p.add_argument("--detail")
    p = add("conflicts", cmd_conflicts, "run-key conflicts: same key, different request")
    p.add_argument("--limit", type=int, default=50)
    add("verify", cmd_verify, "replay the log and compare with the stored state")
    return parser, sub, handlers


def _plugin_commands(sub: Any, handlers: dict[str, Handler]) -> Any:
    """Load plugins and let them (and the runtime) add their commands."""
    plugins = Plugins.discover()

    def register(name: str, handler: Handler) -> None:
        handlers[name] = handler

    add_runtime_commands(sub, register)
    plugins.add_commands(sub, register)
    return plugins


@contextmanager
def _store(path: str) -> Iterator[LmdbStore]:
    store = LmdbStore(path)
    try:
        yield store
    finally:
        store.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser, sub, handlers = build_parser()
    try:
        plugins = _plugin_commands(sub, handlers)
        args = parser.parse_args(argv)
        logging.basicConfig(
            level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            stream=sys.stderr,
        )
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        out = Output(args.json)
        if args.command == "preview" and args.file:
            return handlers["preview"](args, {"out": out, "json": args.json})
        with _store(args.store) as store:
            ctx = {
                "kernel": Kernel(store),
                "plugins": plugins,
                "store_path": args.store,
                "json": args.json,
                "out": out,
            }
            return handlers[args.command](args, ctx)
    except (InputError, NotFound) as exc:
        print(f"arcoflow: error: {exc}", file=sys.stderr)
        return 2
    except (Conflict, ArcoflowError) as exc:
        print(f"arcoflow: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())

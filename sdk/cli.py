"""The ``arcoflow`` command line.

Every query takes ``--json`` and then prints exactly one JSON document on stdout (a list for
list queries, an object for one item); otherwise a readable table. The global options
(``--store``, ``--json``, ``-v``, ``--log-format``) go before or after the command. Exit
codes: 0 success, 1 a failed operation (a verify mismatch, a lost race, a store error), 2 bad
input, an unknown id or usage (the one mapping of :mod:`arcoflow.sdk.errors`, shared with the
HTTP API). Errors go to stderr as one line, never a traceback.

``--store`` (or ``ARCOFLOW_STORE``) names an LMDB directory or a PostgreSQL database
(``postgresql://user@host/db?schema=NAME``), for every command. Commands that only read never
create a store: ``arcoflow --store TYPO schedules`` exits 2 with ``no store at TYPO``, and a
database without the schema with ``no arcoflow store at ...``. Commands that write
(``apply``, ``run``, ``request``...) create it on first use. A server that cannot be reached
or refuses the login exits 1 (``StoreUnavailable``), a URL that does not parse exits 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any, Final, NoReturn, TextIO, TypeVar

from arcoflow.kernel import (
    RUN_STATUSES,
    TICK_STATUSES,
    Definitions,
    InputError,
    Kernel,
    LmdbStore,
    NotFound,
    RunTemplate,
    ScheduleDefinition,
    SensorDefinition,
    Store,
    StoreBusy,
    StoreNotFound,
    iso,
    load_definitions,
    parse_duration,
    parse_iso,
    preview,
    validate_run_id,
)
from arcoflow.kernel import views as v
from arcoflow.kernel.store import (
    DATA_FILE,
    ID_FILE,
    holds_data,
    is_postgres_url,
    open_store,
    reclaim,
)
from arcoflow.kernel.values import check_json
from arcoflow.kernel.views import JSON

from .arguments import add_limit
from .commands import add_runtime_commands
from .errors import error_kind
from .logs import LOG_FORMATS, configure_logging
from .operate import add_operator_commands
from .plugins import Plugins
from .progress import Progress
from .runtime import Runtime
from .sources import add_source_commands
from .stdout import document_stdout
from .types import CommandHandler, StoreUse

__all__ = ["StoreUse", "UsageError", "main"]

_R = TypeVar("_R")
_LOCK_FILE: Final = "lock.mdb"  # LMDB's lock file, beside DATA_FILE

#: The LMDB data file whose presence tells an existing store from a typo.
#: Definitions per ``Kernel.apply`` call of ``arcoflow apply`` (progress shows between them).
_APPLY_CHUNK: Final = 100


#: Columns of the human-readable table of each kind of row.
def _columns(kind: str) -> Sequence[str] | None:
    """The table columns of a shape: its view's fields, less those it hides (one schema per
    shape: :data:`arcoflow.kernel.views.VIEWS`); None (every key) for a shape with no view."""
    view = v.VIEWS.get(kind)
    return None if view is None else v.columns(view)


class UsageError(InputError):
    """The command line does not parse (an unknown option, a value of the wrong kind)."""


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are the CLI's other errors: one line on stderr and exit 2,
    returned by :func:`main` (not argparse's usage block and ``SystemExit``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see: {self.prog} --help)")


class Output:
    """Prints results as one JSON document (``--json``) or a table."""

    def __init__(self, as_json: bool, stream: TextIO | None = None) -> None:
        self.as_json = as_json
        self.stream = stream or sys.stdout

    def __call__(self, data: JSON | list[JSON], kind: str) -> None:
        if self.as_json:
            self.stream.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        elif isinstance(data, list):
            self.stream.write(_table(data, _columns(kind)) + "\n")
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


def _list(
    ctx: Mapping[str, Any],
    rows: Iterable[_R],
    as_json: Callable[[_R], JSON],
    kind: str,
    pruned: tuple[Kernel, str, str] | None = None,
) -> int:
    """Print ``rows`` (one JSON list with ``--json``, else a table of the view's columns);
    ``pruned``: the kernel, kind and id whose history retention may have cut (a note says so)."""
    ctx["out"]([as_json(r) for r in rows], kind)
    if pruned is not None:
        _pruned_note(*pruned)
    return 0


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
    definitions = load_definitions(args.file)
    ctx["plugins"].require_definitions(definitions, args.file)
    changes = apply_with_progress(_kernel(ctx), definitions, Progress("apply", "definitions"))
    return _list(ctx, changes, v.change_json, "change")


def apply_with_progress(kernel: Kernel, definitions: Definitions, progress: Progress) -> list[Any]:
    """``kernel.apply(definitions)`` in chunks at one instant, reporting ``(done, total)``
    after each chunk: the same changes, visible while a large file is applied."""
    items = [*definitions.schedules, *definitions.sensors]
    now = int(datetime.now(UTC).timestamp())
    if definitions.retention is not None:
        kernel.set_retention(definitions.retention, now)
    changes: list[Any] = []
    for start in range(0, len(items), _APPLY_CHUNK):
        chunk = items[start : start + _APPLY_CHUNK]
        part = Definitions(
            [d for d in chunk if isinstance(d, ScheduleDefinition)],
            [d for d in chunk if isinstance(d, SensorDefinition)],
        )
        changes += kernel.apply(part, now=now)
        progress(len(changes), len(items))
    progress.finish(len(changes), len(items))
    return changes


def cmd_schedules(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).schedules(include_deleted=args.all)
    return _list(ctx, rows, v.schedule_json, "schedule")


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
    _kernel(ctx).schedule(args.schedule_id)  # an unknown schedule is an error, not []
    rows = _kernel(ctx).ticks(
        args.schedule_id, status=args.status, limit=args.limit, before=args.before
    )
    return _list(
        ctx, rows, v.tick_json, "tick", pruned=(_kernel(ctx), "schedule", args.schedule_id)
    )


def _pruned_note(kernel: Kernel, kind: str, item_id: str) -> None:
    """Say on stderr where retention cut a history off: a list that stops there is not
    everything that happened (stdout stays one JSON document)."""
    before = kernel.pruned_before(kind, item_id)
    if before is not None:
        print(
            f"arcoflow: note: the history of {kind} {item_id!r} before {iso(before)} was "
            "pruned (retention)",
            file=sys.stderr,
        )


def cmd_tick(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    ctx["out"](v.tick_detail_json(_kernel(ctx).tick(args.tick_id)), "tick")
    return 0


def cmd_missed(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    _kernel(ctx).schedule(args.schedule_id)
    rows = _kernel(ctx).missed(args.schedule_id, limit=args.limit)
    return _list(
        ctx, rows, v.missed_json, "missed", pruned=(_kernel(ctx), "schedule", args.schedule_id)
    )


def cmd_evaluate(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    """One evaluation cycle at ``--now``: due schedules, then due poll sensors (no launches)."""
    now = parse_iso(args.now, "--now") if args.now else None
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
    start = parse_iso(args.start, "--from") if args.start else None
    if args.file:
        defs = {s.id: s for s in load_definitions(args.file).schedules}
        if args.schedule_id not in defs:
            raise NotFound(f"{args.file} declares no schedule {args.schedule_id!r}")
        ticks = preview(defs[args.schedule_id], count=args.count, start=start)  # no store needed
    else:
        ticks = _kernel(ctx).preview(args.schedule_id, count=args.count, start=start)
    return _list(ctx, ticks, v.preview_json, "preview")


def cmd_sensors(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).sensors(include_deleted=args.all)
    return _list(ctx, rows, v.sensor_json, "sensor")


def cmd_sensor(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    return _lifecycle("sensor", "start", args, ctx)


def cmd_evals(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    _kernel(ctx).sensor(args.sensor_id)
    rows = _kernel(ctx).evaluations(args.sensor_id, limit=args.limit, before=args.before)
    return _list(
        ctx, rows, v.eval_json, "evaluation", pruned=(_kernel(ctx), "sensor", args.sensor_id)
    )


def cmd_push(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    kernel = _kernel(ctx)
    payload = _json_arg(args.payload, "--payload")
    mapper = ctx["plugins"].push_mapper(kernel.sensor(args.sensor_id).definition)
    now = parse_iso(args.now, "--now") if args.now else None
    result = kernel.ingest(args.sensor_id, args.message_id, payload, now, connector=mapper)
    ctx["out"](
        {"duplicate": result.duplicate, "evaluation": v.eval_json(result.evaluation)}, "push"
    )
    return 0


def cmd_runs(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    kernel = _kernel(ctx)
    if args.run_id:
        given = [f for f, value in (("--status", args.status), ("--before", args.before)) if value]
        if given:  # a filter on one run would be ignored, and its status shown as a match
            raise UsageError(f"{' and '.join(given)} filter the list; not with a RUN_ID")
        ctx["out"](v.run_json(kernel.run(validate_run_id(args.run_id))), "run")
        return 0
    rows = kernel.runs(limit=args.limit, before=args.before, status=args.status)
    return _list(ctx, rows, v.run_json, "run", pruned=(kernel, "store", "runs"))


def cmd_request(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    config = _json_arg(args.config, "--config") or {}
    tags = _json_arg(args.tags, "--tags") or {}
    template = RunTemplate(args.target, launcher=args.launcher, config=config, tags=tags)
    requested = _kernel(ctx).request(args.run_key, template, origin=args.origin)
    ctx["out"](v.requested_json(requested), "run")
    if requested.existing:  # a dedupe hit: say so, never silently
        differs = (
            " with other content (target, config or tags); recorded as a conflict"
            if requested.conflict
            else ""
        )
        print(
            f"arcoflow: run key {requested.run.run_key} already had a run{differs}: returned it",
            file=sys.stderr,
        )
    return 0


def cmd_complete(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    row = _kernel(ctx).complete_run(args.run_id, args.status == "succeeded", args.detail)
    ctx["out"](v.run_json(row), "run")
    return 0


def cmd_conflicts(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).conflicts(limit=args.limit)
    return _list(
        ctx, rows, v.conflict_json, "conflict", pruned=(_kernel(ctx), "store", "conflicts")
    )


def cmd_compact(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    """Log compaction (a snapshot of the state, the log before ``now - keep`` dropped), then,
    on LMDB, the data file replaced by a compacting copy (file space given back)."""
    now = parse_iso(args.now, "--now") if args.now else int(time.time())
    keep = parse_duration(args.keep)
    if ctx.get("new_store"):  # a mistyped path: nothing to compact (and none is left behind)
        raise StoreNotFound(f"no store at {ctx['store_path']}")
    kernel = _kernel(ctx)
    result = kernel.compact(before=max(now - keep, 0))
    verification = result.verification
    report: dict[str, Any] = {
        "ok": verification.ok,
        "snapshot_seq": result.seq,
        "dropped": result.dropped,
        "snapshot_rows": result.rows,
        "differences": list(verification.differences),
    }
    if verification.ok and isinstance(kernel.store, LmdbStore) and not args.no_reclaim:
        kernel.store.close()  # the swap needs the store to itself, this process included
        try:
            sizes = reclaim(kernel.store.path)
        except StoreBusy as exc:  # reclaim's "nothing was changed" is not true of the log
            raise StoreBusy(
                f"the log was compacted (snapshot at seq {result.seq}, {result.dropped} records"
                f" dropped) but the data file was not shrunk: {str(exc).partition('; ')[0]}"
            ) from exc
        report["file_bytes_before"], report["file_bytes_after"] = sizes
    if ctx["json"]:
        ctx["out"](report, "compact")
    elif not verification.ok:
        ctx["out"].line("NOT COMPACTED: the store does not verify, nothing was changed:")
        for difference in verification.differences:
            ctx["out"].line(f"  {difference}")
    else:
        ctx["out"].line(
            f"ok: snapshot at seq {result.seq}, {result.dropped} log records dropped"
            + (
                f"; data file {report['file_bytes_before']:,} -> {report['file_bytes_after']:,}"
                " bytes"
                if "file_bytes_after" in report
                else ""
            )
        )
    return 0 if verification.ok else 1


def cmd_verify(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    progress = Progress("verify", "events replayed")
    seen = [0]  # the log's length, as the replay last reported it

    def report_progress(done: int, total: int) -> None:
        seen[0] = total
        progress(done, total)

    result = _kernel(ctx).verify(progress=report_progress)
    progress.finish(result.events, seen[0])
    report = {
        "ok": result.ok,
        "events": result.events,
        "snapshot_seq": result.snapshot,
        "differences": list(result.differences),
    }
    if ctx["json"]:
        ctx["out"](report, "verify")
    elif result.ok:
        since = f" after the snapshot at seq {result.snapshot}" if result.snapshot else ""
        ctx["out"].line(f"ok: replaying {result.events} events{since} reproduces the state exactly")
    else:
        ctx["out"].line(f"MISMATCH after replaying {result.events} events:")
        for difference in result.differences:
            ctx["out"].line(f"  {difference}")
    return 0 if result.ok else 1


# -- parser ------------------------------------------------------------------------------------


def _limit_args(p: argparse.ArgumentParser, before: str) -> None:
    add_limit(p)
    p.add_argument("--before", metavar=before, help=f"page: rows older than this {before}")


def _version() -> str:
    try:
        return importlib.metadata.version("arcoflow")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree, not installed
        return "unknown (not installed)"


def _global_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """The options every command takes, before or after its name.

    On the top-level parser they carry the defaults; on each command's parser their default is
    ``SUPPRESS``, so the command's parse sets them only when given there, and a value given
    after the command wins over one given before it. An option a plugin's command already
    defines itself is left to the plugin."""

    def default(value: Any) -> Any:
        return value if top else argparse.SUPPRESS

    options: list[tuple[tuple[str, ...], dict[str, Any]]] = [
        (
            ("--store",),
            {
                "metavar": "DIR|URL",
                "default": default(os.environ.get("ARCOFLOW_STORE", ".arcoflow")),
                "help": "the LMDB store directory, or a postgresql:// URL (?schema=NAME "
                "for a schema other than arcoflow) (default: $ARCOFLOW_STORE or ./.arcoflow)",
            },
        ),
        (("--json",), {"action": "store_true", "default": default(False), "help": "print JSON"}),
        (
            ("-v", "--verbose"),
            {
                "action": "count",
                "default": default(0),
                "help": "log ticks, evaluations and launches (-vv: debug)",
            },
        ),
        (
            ("--log-format",),
            {
                "choices": LOG_FORMATS,
                "default": default("text"),
                "help": "log lines as text (default) or one JSON object per line",
            },
        ),
    ]
    for flags, settings in options:
        try:
            parser.add_argument(*flags, **settings)
        except argparse.ArgumentError:  # the plugin's command has its own option of that name
            continue


class _Commands:
    """The command table: each command's handler and what it does with the store."""

    def __init__(self) -> None:
        self.handlers: dict[str, CommandHandler] = {}
        self.store_use: dict[str, StoreUse | Callable[[argparse.Namespace], StoreUse]] = {}

    def register(
        self,
        name: str,
        handler: CommandHandler,
        store: StoreUse | Callable[[argparse.Namespace], StoreUse] = "write",
    ) -> None:
        """Register ``handler`` for the command ``name``; ``store`` says whether it needs no
        store, only reads one (which must then exist) or writes (the default, which creates
        it), or computes that from the parsed arguments."""
        self.handlers[name] = handler
        self.store_use[name] = store

    def use(self, args: argparse.Namespace) -> StoreUse:
        use = self.store_use[args.command]
        return use(args) if callable(use) else use


def _show_reads(args: argparse.Namespace) -> StoreUse:
    return "read" if args.action == "show" else "write"


def build_parser() -> tuple[_Parser, Any, _Commands]:
    parser = _Parser(
        prog="arcoflow",
        description="Cron schedules and event sensors "
        "turned into run requests exactly once, durably.",
    )
    parser.add_argument("--version", action="version", version=f"arcoflow {_version()}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands = _Commands()

    def add(
        name: str,
        handler: CommandHandler,
        help_: str,
        store: StoreUse | Callable[[argparse.Namespace], StoreUse],
    ) -> argparse.ArgumentParser:
        commands.register(name, handler, store)
        return sub.add_parser(name, help=help_, description=help_)

    p = add("apply", cmd_apply, "upsert the schedules and sensors a TOML file declares", "write")
    p.add_argument("file")

    def definitions(
        kind: str, listing: CommandHandler, text: str, one: CommandHandler, verbs: tuple[str, ...]
    ) -> None:
        """``KINDs`` (the list) and ``KIND VERB ID`` (show and the lifecycle verbs)."""
        p = add(f"{kind}s", listing, text, "read")
        p.add_argument("--all", action="store_true", help=f"include deleted {kind}s")
        actions = ("show", *verbs, "delete")
        p = add(kind, one, f"{', '.join(actions[:-1])} or delete a {kind}", _show_reads)
        p.add_argument("action", choices=actions)
        p.add_argument("id")

    definitions(
        "schedule",
        cmd_schedules,
        "list schedules with their state",
        cmd_schedule,
        ("enable", "disable"),
    )
    p = add("ticks", cmd_ticks, "a schedule's ticks, newest first", "read")
    p.add_argument("schedule_id")
    p.add_argument("--status", choices=TICK_STATUSES)
    _limit_args(p, "TICK_ID")
    p = add("tick", cmd_tick, "one tick with its run key, run id and the run's status", "read")
    p.add_argument("tick_id")
    p = add("missed", cmd_missed, "summaries of ticks dropped by catch-up limits", "read")
    p.add_argument("schedule_id")
    add_limit(p)
    p = add(
        "evaluate", cmd_evaluate, "one evaluation cycle: due schedules and poll sensors", "write"
    )
    p.add_argument("--now", metavar="ISO-8601", help="evaluate at this instant (default: now)")
    p = add(
        "preview",
        cmd_preview,
        "the next ticks of a schedule, with DST annotations",
        lambda a: "none" if a.file else "read",
    )
    p.add_argument("schedule_id")
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--from", dest="start", metavar="ISO-8601", help="start (default: now)")
    p.add_argument("--file", metavar="FILE.toml", help="preview a definition not yet applied")
    text = "list sensors with cursor, version, failures, next eval"
    definitions("sensor", cmd_sensors, text, cmd_sensor, ("start", "stop"))
    p = add("evals", cmd_evals, "a sensor's evaluations, newest first", "read")
    p.add_argument("sensor_id")
    _limit_args(p, "EVAL_ID")
    p = add("push", cmd_push, "ingest one message into a push sensor", "write")
    p.add_argument("sensor_id")
    p.add_argument("--message-id", required=True)
    p.add_argument("--payload", metavar="JSON")
    p.add_argument("--now", metavar="ISO-8601", help="record it at this instant (default: now)")
    p = add("runs", cmd_runs, "runs, newest first (or one run by id)", "read")
    p.add_argument("run_id", nargs="?")
    p.add_argument("--status", choices=RUN_STATUSES)
    _limit_args(p, "RUN_ID")
    p = add("request", cmd_request, "request a run by hand (key namespace 'manual:')", "write")
    p.add_argument("run_key")
    p.add_argument("--target", required=True)
    p.add_argument("--launcher")
    p.add_argument("--config", metavar="JSON")
    p.add_argument("--tags", metavar="JSON")
    p.add_argument("--origin", choices=("manual", "backfill"), default="manual")
    p = add("complete", cmd_complete, "report that a run finished", "write")
    p.add_argument("run_id")
    p.add_argument("status", choices=("succeeded", "failed"))
    p.add_argument("--detail")
    p = add("conflicts", cmd_conflicts, "run-key conflicts: same key, different request", "read")
    add_limit(p)
    add("verify", cmd_verify, "replay the log and compare with the stored state", "read")
    p = add(
        "compact", cmd_compact, "snapshot the state, drop the old log, shrink the file", "write"
    )
    p.add_argument(
        "--keep",
        default="1d",
        metavar="DURATION",
        help="keep the log of this last period, for redeliveries (default 1d)",
    )
    p.add_argument("--now", metavar="ISO-8601", help="the present instant (default: now)")
    p.add_argument(
        "--no-reclaim", action="store_true", help="LMDB: leave the data file's size as it is"
    )
    return parser, sub, commands


def _plugin_commands(sub: Any, commands: _Commands) -> Plugins:
    """Load plugins and let them (and the runtime) add their commands."""
    plugins = Plugins.discover()
    add_runtime_commands(sub, commands.register)
    add_operator_commands(sub, commands.register)
    add_source_commands(sub, commands.register)
    plugins.add_commands(sub, commands.register)
    return plugins


def _share_global_options(sub: Any) -> None:
    """Give every command the global options, whoever added it (built-in, runtime, plugin):
    called once all commands are registered, just before parsing."""
    for parser in {id(p): p for p in sub.choices.values()}.values():
        _global_options(parser, top=False)


def _open_store(spec: str, create: bool, check_pages: bool = False) -> Store:
    """The store ``spec`` names: an LMDB directory, or a ``postgresql://`` URL
    (:func:`~arcoflow.kernel.store.open_store`). ``create=False`` (a command that only
    reads): the store must already exist, else :class:`~arcoflow.kernel.StoreNotFound`, and
    nothing is created. ``check_pages``: walk every page of an LMDB file before mapping it
    (see :class:`LmdbStore`; a PostgreSQL server checks its own pages)."""
    if is_postgres_url(spec):
        return open_store(spec, create=create)
    if os.path.exists(spec) and not os.path.isdir(spec):  # LMDB would say "File exists"
        raise StoreNotFound(f"no store at {spec}: it is a file, not a store directory")
    try:
        return open_store(spec, create=create, check_pages=check_pages)
    except StoreNotFound as exc:  # the store names its real path; the user knows what they typed
        raise StoreNotFound(f"no store at {spec}") from exc


@contextmanager
def _store(path: str, create: bool, check_pages: bool = False) -> Iterator[Store]:
    """The store ``path`` names, for one command. A command that fails on an LMDB store it just
    created, before anything reached its log (bad input, an unknown id: every id is unknown
    to a new store), leaves no store behind: "nothing written" includes the directory."""
    made = _new_store_files(path) if create and not is_postgres_url(path) else None
    store = _open_store(path, create, check_pages)
    try:
        yield store
    except BaseException:
        if made is not None and next(Kernel(store).log(), None) is None:
            store.close()
            _remove_new_store(path, made)
        raise
    finally:
        store.close()


def _new_store_files(path: str) -> list[str] | None:
    """What opening ``path`` for writing will create, the directory last if it does not exist
    yet (``None``: a store, or what is left of one, is already there)."""
    if holds_data(path) or os.path.lexists(os.path.join(path, ID_FILE)):
        return None
    made = [os.path.join(path, name) for name in (DATA_FILE, _LOCK_FILE, ID_FILE)]
    return made if os.path.lexists(path) else [*made, path]


def _remove_new_store(path: str, made: list[str]) -> None:
    for name in made:
        with suppress(OSError):  # best effort: the command's own error is what matters
            if name == path:
                os.rmdir(name)
            else:
                os.remove(name)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser, sub, commands = build_parser()
    try:
        plugins = _plugin_commands(sub, commands)
        _share_global_options(sub)
        args = parser.parse_args(argv)
        configure_logging(args.verbose, args.log_format)
        if args.command is None:
            parser.print_help(sys.stderr)
            return 2
        with document_stdout() as stdout:  # plugins and subprocesses print to stderr
            out = Output(args.json, stdout)
            ctx: dict[str, Any] = {
                "plugins": plugins,
                "store_path": args.store,
                "json": args.json,
                "out": out,
            }
            use = commands.use(args)
            handler = commands.handlers[args.command]
            if use == "none":
                return handler(args, ctx)
            # verify walks every page first: a damaged one must be reported, not crash it
            check_pages = args.command == "verify"
            fresh = use == "write" and not holds_data(args.store)
            with _store(args.store, use == "write", check_pages) as store:
                return handler(args, ctx | {"kernel": Kernel(store), "new_store": fresh})
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:
        kind = error_kind(exc)
        if kind is None:
            raise
        print(f"arcoflow: error: {exc}", file=sys.stderr)
        return kind.exit_code


if __name__ == "__main__":
    sys.exit(main())

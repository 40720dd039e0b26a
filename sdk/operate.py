"""The operator's CLI commands: what changed, and the verbs that change things by hand.

``history schedule|sensor ID``
    what commands did to a schedule or sensor, newest first: created, updated (old and new
    definition version), enabled/disabled, started/stopped, deleted, cursor set/reset.
``set-cursor SENSOR_ID --cursor TEXT --expected-version N``, ``reset-cursor SENSOR_ID ...``
    move a poll sensor's cursor by hand, at the ``state_version`` you read (``arcoflow sensor
    show``): if a poll or another operator moved it since, the command is refused (exit 1).
``backfill SCHEDULE_ID --from ISO --to ISO [--max-runs N] [--dry-run]``
    a run for every tick of the range (both ends inclusive), keyed
    ``backfill:<schedule>:<instant>``: backfilling twice creates no second run.
``retry RUN_ID``
    send a ``GAVE_UP`` run back to the launch outbox with a fresh budget of attempts.
``prune [--now ISO] [--limit N]``
    drop what the retention policy (``[retention]``, per-definition ``retention``) says is old:
    ticks, evaluations, finished runs, conflicts, missed summaries past ``history``, message ids
    past ``dedupe_horizon``; in small logged transactions, so ``verify`` still passes.

Each prints one JSON document with ``--json``, else a table.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from arcoflow.kernel import Kernel, parse_iso
from arcoflow.kernel import views as v
from arcoflow.kernel.views import JSON

from .arguments import add_limit
from .types import CommandHandler, Register, StoreUse, Subparsers

__all__ = ["add_operator_commands"]


def add_operator_commands(
    subparsers: Subparsers,
    register: Register,
) -> None:
    """Add ``history``, ``set-cursor``, ``reset-cursor``, ``backfill``, ``retry`` and
    ``prune``."""

    def add(
        name: str, handler: CommandHandler, text: str, store: StoreUse = "write"
    ) -> argparse.ArgumentParser:
        register(name, handler, store)
        parser: argparse.ArgumentParser = subparsers.add_parser(name, help=text, description=text)
        return parser

    p = add("history", cmd_history, "changes made to a schedule or sensor, newest first", "read")
    p.add_argument("kind", choices=("schedule", "sensor"))
    p.add_argument("id")
    add_limit(p)
    p.add_argument("--before", type=int, metavar="SEQ", help="page: changes older than this seq")
    text = "set a poll sensor's cursor, at the state_version you read (compare-and-set)"
    p = add("set-cursor", cmd_set_cursor, text)
    p.add_argument("sensor_id")
    p.add_argument("--cursor", required=True, metavar="TEXT", help="the new cursor (text)")
    _expected(p)
    p.add_argument(
        "--cursor-version", type=int, default=1, metavar="N", help="cursor format (default 1)"
    )
    text = "reset a poll sensor's cursor: its next poll starts from nothing"
    p = add("reset-cursor", cmd_reset_cursor, text)
    p.add_argument("sensor_id")
    _expected(p)
    text = "request a run for every tick of a schedule in a time range (both ends inclusive)"
    p = add("backfill", cmd_backfill, text)
    p.add_argument("schedule_id")
    p.add_argument("--from", dest="start", required=True, metavar="ISO-8601")
    p.add_argument("--to", dest="end", required=True, metavar="ISO-8601")
    p.add_argument(
        "--max-runs",
        type=int,
        default=100,
        metavar="N",
        help="refuse a range with more ticks than this (default 100, at most 1000)",
    )
    p.add_argument("--dry-run", action="store_true", help="list the ticks; request nothing")
    p = add("retry", cmd_retry, "send a GAVE_UP run back to the launch outbox")
    p.add_argument("run_id")
    text = "drop history and message ids older than the retention policy keeps"
    p = add("prune", cmd_prune, text)
    p.add_argument("--now", metavar="ISO-8601", help="prune as of this instant (default: now)")
    p.add_argument(
        "--limit",
        type=int,
        default=100_000,
        metavar="N",
        help="drop at most about N items in this pass (default 100000)",
    )


def _expected(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--expected-version",
        type=int,
        required=True,
        metavar="N",
        help="the sensor's state_version as you read it (arcoflow sensor show ID)",
    )


def _kernel(ctx: Mapping[str, Any]) -> Kernel:
    kernel: Kernel = ctx["kernel"]
    return kernel


def _rows(ctx: Mapping[str, Any], rows: list[JSON], kind: str) -> None:
    """A list: every field as JSON, the view's columns as a table (``views.columns``)."""
    ctx["out"](rows, kind)


def cmd_history(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    rows = _kernel(ctx).history(args.kind, args.id, limit=args.limit, before=args.before)
    _rows(ctx, [v.history_json(r) for r in rows], "history")
    return 0


def cmd_set_cursor(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    row = _kernel(ctx).set_cursor(
        args.sensor_id,
        args.cursor,
        expected_version=args.expected_version,
        cursor_version=args.cursor_version,
        requested_by="cli",
    )
    ctx["out"](v.sensor_json(row), "sensor")
    return 0


def cmd_reset_cursor(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    row = _kernel(ctx).reset_cursor(
        args.sensor_id, expected_version=args.expected_version, requested_by="cli"
    )
    ctx["out"](v.sensor_json(row), "sensor")
    return 0


def cmd_backfill(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:

    ticks = _kernel(ctx).backfill(
        args.schedule_id,
        parse_iso(args.start, "--from"),
        parse_iso(args.end, "--to"),
        dry_run=args.dry_run,
        max_runs=args.max_runs,
        requested_by="cli",
    )
    rows = [v.backfill_json(t) for t in ticks]
    _rows(ctx, rows, "backfill")
    new = sum(1 for t in ticks if t.run is not None and not t.existing)
    if args.dry_run:
        ctx["out"].line(f"dry run: {len(ticks)} ticks, nothing requested")
    else:
        ctx["out"].line(f"{new} new runs, {sum(t.existing for t in ticks)} existed already")
    return 0


def cmd_retry(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    ctx["out"](v.run_json(_kernel(ctx).retry_run(args.run_id, requested_by="cli")), "run")
    return 0


def cmd_prune(args: argparse.Namespace, ctx: Mapping[str, Any]) -> int:
    now = parse_iso(args.now, "--now") if args.now else None
    done = _kernel(ctx).prune(now, limit=args.limit)
    report = {"events": done.events, "rows": done.rows, "keys": done.keys}
    if ctx["json"]:
        ctx["out"](report, "prune")
    else:
        ctx["out"].line(
            f"pruned {done.rows} history rows and {done.keys} expired message ids "
            f"in {done.events} transactions"
        )
    return 0

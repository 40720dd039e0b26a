"""Command-line options that several commands share, written once."""

from __future__ import annotations

import argparse

from arcoflow.kernel import DEFAULT_PAGE, MAX_PAGE

__all__ = ["add_limit"]


def add_limit(parser: argparse.ArgumentParser) -> None:
    """``--limit N``: the page size of a history query (the kernel checks its range)."""
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_PAGE,
        help=f"at most N rows (1-{MAX_PAGE}, default {DEFAULT_PAGE})",
    )

"""argparse value types and option groups shared by the command line's parsers (a bad value is a usage error, exit 2)."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value

    return parse


def non_negative(text: str) -> float:
    """An argparse type: a finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def add_window_options(g) -> None:
    """The market window options every data-reading command takes (``--start``, ``--end``,
    ``--freq``, ``--venue``, ``--funding-gaps``), on an argparse parser or argument group."""
    g.add_argument("--start", default=None, help="first bar (UTC), e.g. 2024-01-01")
    g.add_argument("--end", default=None, help="end (UTC, exclusive), e.g. 2025-01-01")
    g.add_argument("--freq", default=None, help="bar length: 1h (default), 4h, 1d, ...")
    g.add_argument("--venue", default=None, help="venue of the catalog's series (default: binance)")
    g.add_argument(
        "--funding-gaps",
        choices=("error", "no_trade", "zero"),
        default=None,
        help="settlements missing inside a symbol's funding span: error (default), no_trade (hold no position "
        "through the hole) or zero (count them as zero; flagged funding_gap_zero)",
    )

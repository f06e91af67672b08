"""argparse value types and option groups shared by the command line's parsers (a bad value is a usage error, exit 2),
and :func:`fee_rate`, the value of ``--fee`` (a bad one is a :class:`~data.errors.ConfigError`, exit 2 too)."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from decimal import Decimal

from data.errors import ConfigError


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


_RATE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*(bps|bp|%)?\s*", re.IGNORECASE)


def fee_rate(text: str, flag: str = "--fee") -> float:
    """A fee rate written with its unit, ``4bps`` (``4 bps``, ``4bp``) or ``0.04%``, as a fraction
    of notional (0.0004). A bare number is refused with a :class:`~data.errors.ConfigError` (exit
    code 2) naming what it probably meant: ``--fee 4: say 4bps or 0.04% (a fraction would be
    0.0004)``; so is a negative or malformed value."""
    m = _RATE.fullmatch(text)
    if m is None:
        sign = " (a taker fee is >= 0)" if text.strip().startswith("-") else ""
        raise ConfigError(f"{flag} {text}: expected a fee with its unit, e.g. 4bps or 0.04%{sign}")
    number, unit = Decimal(m.group(1)), (m.group(2) or "").lower()
    if unit:
        return float(number / (Decimal(100) if unit == "%" else Decimal(10_000)))
    x = m.group(1)

    def g(d: Decimal) -> str:
        return f"{float(d):g}"

    if number >= 1 or number == 0:  # most likely bps
        meant = f"say {x}bps or {g(number / 100)}% (a fraction would be {g(number / 10_000)})"
    elif number >= Decimal("0.01"):  # most likely percent
        meant = f"say {x}% or {g(number * 100)}bps if percent is meant (a fraction would be {g(number / 100)})"
    else:  # most likely a fraction
        meant = f"say {g(number * 10_000)}bps or {g(number * 100)}% if {x} is a fraction"
    raise ConfigError(f"{flag} {text.strip()}: {meant}")

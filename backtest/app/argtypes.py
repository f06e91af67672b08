"""argparse value types and option groups shared by the command line's parsers (a bad value is a usage error, exit 2),
:func:`fee_rate`, the value of ``--fee`` (a bad one is a :class:`~data.errors.ConfigError`, exit 2 too), and
:func:`engine_number`, the value of an engine setting's own flag (``--slippage-bps``), which remembers the flag so
that a refused setting is named by the flag the user typed (:func:`flag_of`, :func:`name_by_flag`)."""

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


class FlagFloat(float):
    """A number read from a command-line flag; ``flag`` is the flag's text (``--slippage-bps``)."""

    flag: str = ""


class FlagInt(int):
    """A whole number read from a command-line flag; ``flag`` is the flag's text (``--delay``)."""

    flag: str = ""


def engine_number(flag: str, kind: type = float) -> Callable[[str], float]:
    """An argparse type for the flag ``flag`` of an engine setting: a number (``kind`` float or
    int) that remembers its flag (:func:`flag_of`), so that the run config can name the flag when
    the setting is refused (:func:`name_by_flag`). The range is checked there, with the config's
    rules; only a value that is no number is a usage error here."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            whole = "whole " if kind is int else ""
            raise argparse.ArgumentTypeError(f"expected a {whole}number, got {text!r}") from None
        out = FlagInt(value) if kind is int else FlagFloat(value)
        out.flag = flag
        return out

    parse.__name__ = kind.__name__
    return parse


def number_list(flag: str) -> Callable[[str], list[float]]:
    """An argparse type for a flag that takes one number or a grid of them, comma-separated
    (``--entry 0.05,0.1``): a list of :func:`engine_number` values (each remembers ``flag``),
    without repeats, in the order given."""
    one = engine_number(flag)

    def parse(text: str) -> list[float]:
        items = [t.strip() for t in text.split(",")]
        if not text.strip() or any(not t for t in items):
            raise argparse.ArgumentTypeError(f"expected a number or numbers separated by commas, got {text!r}")
        values = [one(t) for t in items]
        return list({float(v): v for v in values}.values())

    parse.__name__ = "numbers"
    return parse


def flag_of(value: object) -> str | None:
    """The flag a value of :func:`engine_number` was read from; None for any other value (a
    config file's, a ``--set``'s)."""
    return (value.flag or None) if isinstance(value, (FlagFloat, FlagInt)) else None


def plain(value: object) -> object:
    """``value`` without its flag (a plain float or int; anything else as it is)."""
    if isinstance(value, FlagInt):
        return int(value)
    if isinstance(value, FlagFloat):
        return float(value)
    return value


def name_by_flag(exc: ConfigError, flags: dict[str, str], values: dict) -> ConfigError:
    """``exc`` (an engine setting refused by :class:`backtest.config.BacktestConfig`, whose
    messages start with the setting's name) named by the flag it came from: ``slippage_bps=1e+06
    is beyond ...`` for ``--slippage-bps 1000000`` becomes ``--slippage-bps 1e+06 (slippage_bps):
    beyond ...``. ``flags``: setting -> flag, for the settings given by their own flag;
    ``values``: the settings. A setting from a config file or ``--set`` keeps its message (the
    user typed its name)."""
    text = str(exc)
    m = re.match(r"(\w+)(=\S+)?\s+(is\s+)?", text)
    if m is None or m.group(1) not in flags:
        return exc
    key = m.group(1)
    value = values.get(key)
    shown = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
    return ConfigError(f"{flags[key]} {shown} ({key}): {text[m.end() :]}")


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

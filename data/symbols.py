"""Canonical symbols and contract multipliers.

The catalog stores each series under the exchange's own symbol. Some perpetuals are quoted
per 1,000 (or 1,000,000) coins: Binance's ``1000PEPEUSDT`` perp prices 1,000 PEPE while the
spot pair ``PEPEUSDT`` prices one. :func:`split_multiplier` finds the multiplier so the loader
can put both legs in the same unit (quote per one coin).
"""

from __future__ import annotations

import re

from data.errors import ConfigError

QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD")
_MULT_RE = re.compile(r"^(1000000|1000)([A-Z][A-Z0-9]*)$")


def split_multiplier(base: str) -> tuple[str, int]:
    """``"1000PEPE"`` -> ``("PEPE", 1000)``; ``"BTC"`` -> ``("BTC", 1)``."""
    m = _MULT_RE.match(base)
    if m:
        return m.group(2), int(m.group(1))
    return base, 1


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"BTCUSDT"`` -> ``("BTC", "USDT")``. Raises :class:`~data.errors.ConfigError` (a
    ``ValueError``) naming the symbol for an unknown quote."""
    for quote in QUOTES:
        if isinstance(symbol, str) and symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ConfigError(f"cannot split {symbol!r} into base and quote (known quotes: {', '.join(QUOTES)})")


def perp_candidates(symbol: str) -> list[tuple[str, int]]:
    """Perp symbols that may hold ``symbol``'s perpetual, with their contract multiplier.

    ``"PEPEUSDT"`` -> ``[("PEPEUSDT", 1), ("1000PEPEUSDT", 1000), ("1000000PEPEUSDT", 1000000)]``;
    ``"1000PEPEUSDT"`` -> ``[("1000PEPEUSDT", 1000)]``.
    """
    base, quote = split_symbol(symbol)
    coin, mult = split_multiplier(base)
    if mult != 1:
        return [(symbol, mult)]
    return [(symbol, 1), (f"1000{coin}{quote}", 1000), (f"1000000{coin}{quote}", 1_000_000)]


def spot_symbol(symbol: str) -> str:
    """The spot pair of a (possibly multiplied) perp symbol: ``"1000PEPEUSDT"`` -> ``"PEPEUSDT"``."""
    base, quote = split_symbol(symbol)
    return split_multiplier(base)[0] + quote

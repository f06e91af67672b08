"""Canonical symbols and contract multipliers.

The catalog stores each series under the exchange's own symbol, in upper-case letters and
digits (``BTCUSDT``; Hyperliquid's USDC-quoted ``BTCUSDC``). A symbol is ``BASE + QUOTE``, the
quote one of :data:`QUOTES` (:func:`split_symbol`).

Multiplier prefixes
-------------------
Some perpetuals are quoted per 1,000 (or 1,000,000 ...) coins: Binance's ``1000PEPEUSDT`` perp
prices 1,000 PEPE while the spot pair ``PEPEUSDT`` prices one, ``1MBABYDOGEUSDT`` prices a million
BABYDOGE, and Hyperliquid writes thousands with a lower-case ``k`` (``kPEPE``, ``kSHIB``; stored as
``1000PEPEUSDC``, see :func:`canonical_symbol`, since catalog symbols are upper-case). The loader
divides such a perp's prices by the multiplier so both legs are in quote per one coin.

A number in front of a name is not always a multiplier: ``1000SATS`` is a token of its own
(Binance lists a ``1000SATSUSDT`` spot pair, and its perp ``1000SATSUSDT`` prices one 1000SATS
token: multiplier 1). The rule:

    A prefix is a contract multiplier only when
    (a) the multiplier reading is consistent: a known prefix (:data:`MULTIPLIER_PREFIXES`:
        ``1000`` ... ``10000000``, ``1M``, Hyperliquid's lower-case ``k``) directly followed by
        a coin name that starts with a letter (``1000PEPE`` -> PEPE x 1,000; ``10000LADYS`` ->
        LADYS x 10,000; never ``1INCH`` or ``10001X``), and
    (b) the source has no spot pair under the full name: the spot symbols known from the same
        file set or catalog venue (``spots``) do not include it. With a ``1000SATSUSDT`` spot
        present, ``1000SATSUSDT`` is the token 1000SATS (multiplier 1), and ``SATSUSDT`` does
        not look for its perp under ``1000SATSUSDT``.

Every function taking ``spots`` applies (b) when it is given (a collection of spot symbols,
e.g. a freqtrade directory's spot files or a catalog venue's ``kind=spot`` series) and falls
back to (a) alone when it is ``None``: pass it wherever a file set or catalog is at hand, since
without it a ``1000SATS`` perp reads as SATS x 1,000.
"""

from __future__ import annotations

import re
from collections.abc import Collection

from data.errors import ConfigError

__all__ = [
    "QUOTES",
    "MULTIPLIER_PREFIXES",
    "canonical_symbol",
    "split_symbol",
    "split_multiplier",
    "coin_of",
    "contract_multiplier",
    "spot_symbol",
    "perp_candidates",
]

QUOTES = ("USDT", "USDC", "BUSD", "FDUSD", "USD")

#: Contract-multiplier prefixes, in the order :func:`perp_candidates` tries them. ``k`` is
#: Hyperliquid's (lower-case: ``kPEPE``); :func:`canonical_symbol` writes it as ``1000``.
MULTIPLIER_PREFIXES: tuple[tuple[str, int], ...] = (
    ("1000", 1_000),
    ("1000000", 1_000_000),
    ("1M", 1_000_000),
    ("10000", 10_000),
    ("100000", 100_000),
    ("10000000", 10_000_000),
)
_MULT_RE = re.compile(r"^(?:(?P<zeros>10{3,7})|(?P<m>1M)|(?P<k>k))(?P<coin>[A-Z][A-Z0-9]*)$")
_HL_THOUSANDS_RE = re.compile(r"^k(?=[A-Z])")


def canonical_symbol(name: str) -> str:
    """The catalog's spelling of a symbol written the exchange's, ccxt's or freqtrade's way.

    Separators and a settle suffix go, letters are upper-cased, and Hyperliquid's lower-case
    thousands prefix becomes ``1000`` (catalog symbols are upper-case, where ``KPEPE`` would
    read as a coin of its own): ``"BTC/USDT:USDT"`` -> ``"BTCUSDT"``, ``"btc_usdt"`` ->
    ``"BTCUSDT"``, ``"kPEPE/USDC:USDC"`` -> ``"1000PEPEUSDC"``, ``"kSHIB_USDC"`` ->
    ``"1000SHIBUSDC"``.
    """
    s = re.sub(r"[^A-Za-z0-9]", "", str(name).strip().split(":")[0])
    return _HL_THOUSANDS_RE.sub("1000", s).upper()


def split_multiplier(base: str) -> tuple[str, int]:
    """The multiplier reading of a base (rule (a) of the module docstring; no spot context).

    ``"1000PEPE"`` -> ``("PEPE", 1000)``; ``"1MBABYDOGE"`` -> ``("BABYDOGE", 1000000)``;
    ``"kPEPE"`` -> ``("PEPE", 1000)``; ``"BTC"`` -> ``("BTC", 1)``; ``"1INCH"`` -> ``("1INCH", 1)``.
    Whether the reading holds depends on the spot pairs the source has: see
    :func:`contract_multiplier`.
    """
    m = _MULT_RE.match(base)
    if m is None:
        return base, 1
    if m.group("zeros"):
        mult = int(m.group("zeros"))
    else:
        mult = 1_000_000 if m.group("m") else 1_000
    return m.group("coin"), mult


def split_symbol(symbol: str) -> tuple[str, str]:
    """``"BTCUSDT"`` -> ``("BTC", "USDT")``; ``"BTCUSDC"`` -> ``("BTC", "USDC")``. Raises
    :class:`~data.errors.ConfigError` (a ``ValueError``) naming the symbol for an unknown quote."""
    for quote in QUOTES:
        if isinstance(symbol, str) and symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    raise ConfigError(f"cannot split {symbol!r} into base and quote (known quotes: {', '.join(QUOTES)})")


def coin_of(symbol: str) -> str:
    """The coin of a market symbol, whatever its quote and thousands prefix: ``"BTCUSDT"`` and
    ``"BTCUSDC"`` -> ``"BTC"``; ``"1000PEPEUSDT"`` and ``"kPEPEUSDC"`` -> ``"PEPE"`` (a symbol without
    a known quote is returned as it is)."""
    try:
        base = split_symbol(symbol)[0]
    except ConfigError:
        return symbol
    return split_multiplier(base)[0]


def _is_token(symbol: str, spots: Collection[str] | None) -> bool:
    """Rule (b): the source has a spot pair under the full name, so no prefix is a multiplier."""
    return spots is not None and symbol in spots


def contract_multiplier(symbol: str, spots: Collection[str] | None = None) -> int:
    """Coins per price unit of the perp ``symbol``: ``"1000PEPEUSDT"`` -> 1000, ``"BTCUSDT"`` -> 1.

    ``"1000SATSUSDT"`` is 1 when ``spots`` holds ``"1000SATSUSDT"`` (the token 1000SATS) and
    1000 otherwise (see the module docstring for the rule).
    """
    base, _ = split_symbol(symbol)
    return 1 if _is_token(symbol, spots) else split_multiplier(base)[1]


def perp_candidates(symbol: str, spots: Collection[str] | None = None) -> list[tuple[str, int]]:
    """Perp symbols that may hold ``symbol``'s perpetual, with their contract multiplier.

    ``"PEPEUSDT"`` -> ``[("PEPEUSDT", 1), ("1000PEPEUSDT", 1000), ("1000000PEPEUSDT", 1000000),
    ("1MPEPEUSDT", 1000000), ...]`` (every prefix of :data:`MULTIPLIER_PREFIXES`);
    ``"1000PEPEUSDT"`` -> ``[("1000PEPEUSDT", 1000)]``. With ``spots`` (the source's spot
    symbols): ``"1000SATSUSDT"`` with a ``1000SATSUSDT`` spot -> ``[("1000SATSUSDT", 1)]``, and a
    multiplied name that is itself a spot token is no candidate (``"SATSUSDT"`` does not look
    under ``1000SATSUSDT``).
    """
    base, quote = split_symbol(symbol)
    coin, mult = split_multiplier(base)
    if mult != 1 and not _is_token(symbol, spots):
        return [(symbol, mult)]
    out = [(symbol, 1)]
    if base[:1].isalpha() and base[:1].isupper():  # prefixes stand before a letter-led name only
        for prefix, m in MULTIPLIER_PREFIXES:
            cand = f"{prefix}{base}{quote}"
            if not _is_token(cand, spots):
                out.append((cand, m))
    return out


def spot_symbol(symbol: str, spots: Collection[str] | None = None) -> str:
    """The spot pair of a (possibly multiplied) perp symbol: ``"1000PEPEUSDT"`` -> ``"PEPEUSDT"``.

    ``"1000SATSUSDT"`` -> ``"1000SATSUSDT"`` when ``spots`` holds it (the token 1000SATS),
    ``"SATSUSDT"`` without that context (see the module docstring for the rule).
    """
    base, quote = split_symbol(symbol)
    if _is_token(symbol, spots):
        return symbol
    return split_multiplier(base)[0] + quote

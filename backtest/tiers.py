"""Maintenance-margin brackets (leverage tiers) as NumPy arrays for the kernels.

The ccxt format (``exchange.fetch_leverage_tiers()``, and ``../shared/data/binance_leverage_tiers.json``)
maps a unified perp symbol (``"BTC/USDT:USDT"``) to a list of brackets with ``minNotional``,
``maxNotional`` (quote), ``maintenanceMarginRate`` (fraction), ``maxLeverage`` and
``info.cum`` (the maintenance amount, quote). The maintenance margin of a position of
notional ``n = |q| * mark`` is ``n * mmr - cum`` of the bracket with ``minNotional <= n < maxNotional``.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import ConfigError, DataError, did_you_mean


@dataclass(frozen=True, eq=False)
class TierTable:
    """Brackets for ``N`` symbols, padded to ``K`` brackets.

    Attributes
    ----------
    min_notional, max_notional : ndarray (N, K)
        Bracket bounds, quote. Padding rows have ``min = max = inf``.
    mmr : ndarray (N, K)
        Maintenance margin rate, fraction of notional.
    cum : ndarray (N, K)
        Maintenance amount, quote.
    max_leverage : ndarray (N, K)
        Maximum leverage of the bracket.
    n_tiers : ndarray (N,) int64
        Number of real brackets per symbol.
    """

    min_notional: np.ndarray
    max_notional: np.ndarray
    mmr: np.ndarray
    cum: np.ndarray
    max_leverage: np.ndarray
    n_tiers: np.ndarray

    @classmethod
    def flat(cls, n_symbols: int, rate: float) -> TierTable:
        """One bracket ``[0, inf)`` at ``rate`` with cum 0 for every symbol."""
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ConfigError(f"maintenance margin rate must be in [0, 1), got {rate}")
        shape = (n_symbols, 1)
        return cls(
            np.zeros(shape),
            np.full(shape, np.inf),
            np.full(shape, float(rate)),
            np.zeros(shape),
            np.full(shape, np.inf),
            np.ones(n_symbols, np.int64),
        )

    @classmethod
    def from_brackets(cls, brackets: list[list[dict]]) -> TierTable:
        """From one ccxt bracket list per symbol (already selected and ordered)."""
        n = len(brackets)
        k = max((len(b) for b in brackets), default=1)
        lo = np.full((n, k), np.inf)
        hi = np.full((n, k), np.inf)
        mmr = np.zeros((n, k))
        cum = np.zeros((n, k))
        lev = np.ones((n, k))
        for i, rows in enumerate(brackets):
            rows = sorted(rows, key=lambda r: float(r["minNotional"]))
            for j, r in enumerate(rows):
                lo[i, j] = float(r["minNotional"])
                hi[i, j] = float(r["maxNotional"]) if r.get("maxNotional") is not None else np.inf
                mmr[i, j] = float(r["maintenanceMarginRate"])
                info = r.get("info") or {}
                cum[i, j] = float(info.get("cum", r.get("cum", 0.0)) or 0.0)
                lev[i, j] = float(r.get("maxLeverage") or np.inf)
            if rows:
                hi[i, len(rows) - 1] = np.inf  # beyond the last cap the last bracket still applies
        return cls(lo, hi, mmr, cum, lev, np.array([max(len(b), 1) for b in brackets], np.int64))


def ccxt_symbol(perp_symbol: str, quote: str = "USDT") -> str:
    """``"BTCUSDT"`` -> ``"BTC/USDT:USDT"`` (the key in a ccxt tiers file)."""
    if "/" in perp_symbol:
        return perp_symbol
    if not isinstance(perp_symbol, str) or not perp_symbol.endswith(quote):
        raise ConfigError(f"cannot map perp symbol {perp_symbol!r} to a ccxt symbol (quote {quote})")
    return f"{perp_symbol[: -len(quote)]}/{quote}:{quote}"


def load_tiers(path: str | Path, perp_symbols: list[str] | tuple[str, ...]) -> TierTable:
    """Load the brackets of ``perp_symbols`` (exchange names, e.g. ``"1000PEPEUSDT"``) from a ccxt file.

    Notional is quote value, so the brackets do not depend on the contract multiplier.

    Raises
    ------
    DataError
        If the file is unreadable or a symbol has no brackets.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read leverage tiers {path}: {exc}") from None
    if not isinstance(data, dict):
        raise DataError(
            f"{path}: expected a JSON object of ccxt leverage tiers ({{'BTC/USDT:USDT': [...]}}), got {type(data).__name__}"
        )
    out = []
    for sym in perp_symbols:
        key = ccxt_symbol(sym)
        if key not in data or not data[key]:
            raise DataError(
                f"{path}: no leverage tiers for {key!r} (symbol {sym}){did_you_mean(key, data)}; "
                "set maintenance_margin_rate for a flat rate instead"
            )
        try:
            TierTable.from_brackets([data[key]])  # each symbol's brackets checked on their own, named
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            what = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise DataError(
                f"{path}: leverage tiers of {key!r} are malformed ({what}); each bracket needs minNotional, "
                "maxNotional and maintenanceMarginRate numbers"
            ) from None
        out.append(data[key])
    return TierTable.from_brackets(out)

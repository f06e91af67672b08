"""Maintenance-margin brackets (leverage tiers) as NumPy arrays for the kernels.

The ccxt format (``exchange.fetch_leverage_tiers()``, and ``../shared/data/binance_leverage_tiers.json``)
maps a unified perp symbol (``"BTC/USDT:USDT"``) to a list of brackets with ``minNotional``,
``maxNotional`` (quote), ``maintenanceMarginRate`` (fraction), ``maxLeverage`` and
``info.cum`` (the maintenance amount, quote). The maintenance margin of a position of
notional ``n = |q| * mark`` is ``n * mmr - cum`` of the bracket with ``minNotional <= n < maxNotional``.

Each bracket's ``maxLeverage`` is kept (:attr:`TierTable.bracket_leverage`): the top bracket (the
smallest notionals) allows the highest leverage, which is the symbol's maximum
(:meth:`TierTable.max_leverage`); :meth:`TierTable.check_leverage` refuses a higher leverage.
A flat table (a single maintenance rate, no file) sets no limit.
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
    bracket_leverage : ndarray (N, K)
        The bracket's ``maxLeverage``; ``inf`` where the file gives none, and for padding and
        flat tables (no limit).
    n_tiers : ndarray (N,) int64
        Number of real brackets per symbol.
    source : str
        The tiers file the brackets come from (``""`` for flat or hand-made tables), named by
        :meth:`check_leverage`'s error.
    origin : str
        What ``source`` is: ``"tiers file"`` (a ccxt tiers file, default) or ``"venue rules"``
        (a venue's flat rate and maximum leverage per symbol, ``data/venues/<venue>.toml``).
    """

    min_notional: np.ndarray
    max_notional: np.ndarray
    mmr: np.ndarray
    cum: np.ndarray
    bracket_leverage: np.ndarray
    n_tiers: np.ndarray
    source: str = ""
    origin: str = "tiers file"

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
    def from_brackets(cls, brackets: list[list[dict]], source: str = "", origin: str = "tiers file") -> TierTable:
        """From one ccxt bracket list per symbol (already selected and ordered); ``source`` names the
        file (``origin``: what it is, see the class).

        Raises ``KeyError``/``TypeError``/``ValueError`` on a malformed bracket (``load_tiers`` names it).
        """
        n = len(brackets)
        k = max((len(b) for b in brackets), default=1)
        lo = np.full((n, k), np.inf)
        hi = np.full((n, k), np.inf)
        mmr = np.zeros((n, k))
        cum = np.zeros((n, k))
        lev = np.full((n, k), np.inf)
        for i, rows in enumerate(brackets):
            rows = sorted(rows, key=lambda r: float(r["minNotional"]))
            for j, r in enumerate(rows):
                lo[i, j] = float(r["minNotional"])
                hi[i, j] = float(r["maxNotional"]) if r.get("maxNotional") is not None else np.inf
                mmr[i, j] = float(r["maintenanceMarginRate"])
                info = r.get("info") or {}
                cum[i, j] = float(info.get("cum", r.get("cum", 0.0)) or 0.0)
                lev[i, j] = _bracket_leverage(r.get("maxLeverage"))
            if rows:
                hi[i, len(rows) - 1] = np.inf  # beyond the last cap the last bracket still applies
        return cls(lo, hi, mmr, cum, lev, np.array([max(len(b), 1) for b in brackets], np.int64), source, origin)

    def max_leverage(self, n: int) -> float:
        """The highest leverage symbol ``n`` allows: its top bracket's ``maxLeverage`` (``inf``: no limit).

        The top bracket is the one of the smallest notionals; the maximum is taken over all the
        symbol's brackets, so the answer does not depend on how the file orders them.
        """
        return float(np.max(self.bracket_leverage[n, : max(int(self.n_tiers[n]), 1)]))

    def max_leverages(self) -> np.ndarray:
        """:meth:`max_leverage` of every symbol, ``(N,)``."""
        return np.array([self.max_leverage(n) for n in range(len(self.n_tiers))], dtype=float)

    def check_leverage(
        self,
        leverage: float | np.ndarray,
        symbols: list[str] | tuple[str, ...],
        column_symbol: np.ndarray | None = None,
        name: str = "perp_leverage",
    ) -> None:
        """Refuse a leverage above a symbol's maximum (:meth:`max_leverage`).

        Parameters
        ----------
        leverage : float or array
            One leverage for every symbol, or per symbol (last axis ``N``), or per column (last
            axis ``C``, e.g. a ``(T, C)`` flexible parameter) when ``column_symbol`` is given.
        symbols : sequence of str
            The ``N`` symbols' names, for the message (e.g. ``market.perp_symbols``).
        column_symbol : ndarray (C,) of int, optional
            The symbol of each column.
        name : str
            The setting's name, for the message.

        Raises
        ------
        ConfigError
            ``perp_leverage 150 is above BTCUSDT's maximum 125 (top bracket of tiers file X)``, for
            the first offending symbol (and column). A flat table never raises.
        """
        limits = self.max_leverages()
        if len(symbols) != len(limits):
            raise ConfigError(f"check_leverage: {len(symbols)} symbol names for {len(limits)} symbols")
        if np.isinf(limits).all():
            return
        lev = np.asarray(leverage, dtype=float)
        sym = None if column_symbol is None else np.asarray(column_symbol, dtype=np.int64).reshape(-1)
        cap = limits if sym is None else limits[sym]
        try:
            lev, cap = np.broadcast_arrays(lev, cap)
        except ValueError:
            raise ConfigError(
                f"{name} has shape {np.shape(leverage)}, expected a number or one value per "
                + ("symbol" if sym is None else "column")
                + f" ({len(cap)})"
            ) from None
        bad = lev > cap * (1.0 + 1e-12)  # NaN compares False: no leverage, nothing to refuse
        if not bad.any():
            return
        at = tuple(int(i) for i in np.argwhere(bad)[0])
        last = at[-1]
        n = last if sym is None else int(sym[last])
        where = "" if sym is None else f" in column {last}"
        if not self.source:
            src = "top bracket of its leverage tiers"
        elif self.origin == "tiers file":
            src = f"top bracket of tiers file {self.source}"
        else:
            src = f"{self.origin} {self.source}"
        raise ConfigError(f"{name} {lev[at]:g}{where} is above {symbols[n]}'s maximum {cap[at]:g} ({src})")


def _bracket_leverage(value: object) -> float:
    """A bracket's ``maxLeverage`` as a float: ``inf`` when absent or 0 (no limit, as before), else > 0."""
    if value is None:
        return np.inf
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise DataError(f"maxLeverage must be a number, got {value!r}")
    lev = float(value)
    if lev == 0:
        return np.inf
    if not lev > 0:
        raise DataError(f"maxLeverage must be > 0, got {value!r}")
    return lev


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
                "maxNotional and maintenanceMarginRate numbers (maxLeverage, when given, a number >= 0)"
            ) from None
        out.append(data[key])
    return TierTable.from_brackets(out, source=str(path))

"""The aligned, immutable market the engine and strategies read.

A :class:`Market` holds, for ``T`` bars and ``N`` symbols, C-contiguous ``float64`` arrays of
shape ``(T, N)`` (time along axis 0, one column per symbol) on one common UTC bar index.
Arrays are read-only: nothing downstream can change the data a run saw.

Funding convention (the one rule to remember)
---------------------------------------------
Bar ``i`` spans ``[t_i, t_i + bar)``. ``funding_rate[i]`` is the sum of the rates of the
settlements with time in ``(t_i, t_i + bar]``, i.e. those that settle *during* bar ``i`` up to
and including the instant the bar closes. They are therefore known at bar ``i``'s close, and
they are paid to the position held during bar ``i`` (fills happen at bar opens, so a fill at
the open of bar ``i+1`` comes just after a settlement at that instant and does not receive
it). On hourly data the settlement at 08:00 sits in the 07:00 bar. ``funding_value[i]`` is
``sum(mark_k * rate_k)`` over the same settlements, where ``mark_k`` is the mark price at the
settlement instant (the open of the mark bar stamped at ``t_k``): a position of perp size
``q`` coins receives ``-q * funding_value[i]`` quote in bar ``i``. ``funding_time_ms[i]`` is
the instant of the last of those settlements (08:00:00 for the 07:00 hourly bar), so events
can be stamped when they happen rather than at the bar.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd

from data.errors import ConfigError, DataError, UnknownNameError, did_you_mean
from data.units import to_timestamp

#: The (T, N) float arrays every market has, in the order they are documented.
PRICE_FIELDS = (
    "spot_open",
    "spot_high",
    "spot_low",
    "spot_close",
    "spot_volume",
    "perp_open",
    "perp_high",
    "perp_low",
    "perp_close",
    "perp_volume",
    "mark_open",
    "mark_high",
    "mark_low",
    "mark_close",
)
FUNDING_FIELDS = ("funding_rate", "funding_value", "funding_interval_hours")
#: ``Market.funding_time_ms`` where no settlement was summed into the bar (NaT as a datetime64).
NO_FUNDING_TIME = np.iinfo(np.int64).min


def _frozen(a: np.ndarray, dtype: type, name: str, shape: tuple[int, int]) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=dtype)
    if a.shape != shape:
        raise DataError(f"Market.{name} has shape {a.shape}, expected {shape} (bars x symbols)")
    if a.flags.writeable:
        a = a.copy() if a.base is not None else a
        a.flags.writeable = False
    return a


def _fit(x, dtype: type, shape: tuple[int, int], name: str) -> np.ndarray:
    """``x`` as a read-only (T, N) view of ``dtype``; ``ConfigError`` naming ``name`` if it does not fit."""
    try:
        return np.broadcast_to(np.asarray(x, dtype=dtype), shape)
    except (ValueError, TypeError) as exc:
        got = np.shape(x) if not isinstance(x, str) else "text"
        raise ConfigError(
            f"Market.from_arrays: {name} of shape {got} does not fit {shape} (bars x symbols) ({exc})"
        ) from None


@dataclass(frozen=True, eq=False)
class Market:
    """Aligned market data for ``N`` symbols over ``T`` bars.

    Attributes
    ----------
    index : pandas.DatetimeIndex
        Bar open times, UTC, strictly increasing, evenly spaced by ``freq``.
    symbols : tuple of str
        Canonical symbols (spot pair names, e.g. ``"BTCUSDT"``, ``"PEPEUSDT"``), one per column.
    freq : str
        Bar length label (``"1h"``, ``"4h"``, ``"1d"``, ``"1m"``).
    spot_open, spot_high, spot_low, spot_close : ndarray (T, N)
        Spot trade prices, quote per coin.
    spot_volume : ndarray (T, N)
        Spot volume in coins.
    perp_open, perp_high, perp_low, perp_close : ndarray (T, N)
        Perpetual last-trade prices, quote per coin (contract multipliers already divided out).
    perp_volume : ndarray (T, N)
        Perpetual volume in coins.
    mark_open, mark_high, mark_low, mark_close : ndarray (T, N)
        Perpetual mark prices, quote per coin; where the catalog has no mark data they are the
        perp last prices and ``mark_fallback`` says so.
    funding_rate : ndarray (T, N)
        Sum of funding rates (fraction per settlement interval) settled in ``(t_i, t_i + bar]``;
        0 where none.
    funding_value : ndarray (T, N)
        ``sum(mark_k * rate_k)`` over the same settlements, quote per coin of perp held; a perp
        position of ``q`` coins receives ``-q * funding_value``.
    funding_count : ndarray (T, N) int32
        Number of settlements summed into the bar.
    funding_interval_hours : ndarray (T, N)
        Interval of the last settlement in the bar, hours; NaN where there is none.
    valid : ndarray (T, N) bool
        True where every price of the bar is real data (not filled, inside the symbol's
        coverage). The engine never trades a symbol on an invalid bar.
    filled : ndarray (T, N) bool
        True where the gap policy forward-filled the bar (prices flat at the last close).
    mark_fallback : ndarray (T, N) bool
        True where mark prices are the perp last prices because mark data is missing.
    multiplier : ndarray (N,) int64
        Contract multiplier of the exchange's perp symbol (1000 for ``1000PEPEUSDT``).
    perp_symbols : tuple of str
        The exchange's perp symbol per column (``"1000PEPEUSDT"``).
    borrow_hourly_rate : ndarray (T, N) or None
        Margin borrow rate of the base coin, fraction per hour, if the catalog has it.
    funding_time_ms : ndarray (T, N) int64 or None
        Instant of the last settlement summed into the bar, milliseconds since the epoch (UTC),
        in ``(t_i, t_i + bar]``; :data:`NO_FUNDING_TIME` where there is none. ``None`` when the
        instants are not known (markets built from arrays): read the bar's close.
    tradable : ndarray (T, N) bool
        True where a position in the symbol may be held over the bar: inside the symbol's
        *tradable span* (every series it needs exists: spot, perp, mark or its announced
        fallback, and funding, so the funding a position earns over the bar is known) and
        outside funding holes under ``funding_gaps="no_trade"``. The engine holds no position
        over a bar that is not tradable (it closes at the open of the first such bar, see
        :mod:`backtest.engine`). Default (markets built from arrays): every bar.
    data_flags : tuple of str
        Data facts a result must carry (e.g. ``"funding_gap_zero"`` when settlements missing
        inside a span were counted as zero on request; ``"perp_only"`` for a market loaded with
        ``spot=False``, whose spot arrays are NaN: only cross-venue spread hedges,
        :func:`backtest.spread.run_spread`, use it); the engine copies them into its flags.
    """

    index: pd.DatetimeIndex
    symbols: tuple[str, ...]
    freq: str
    spot_open: np.ndarray
    spot_high: np.ndarray
    spot_low: np.ndarray
    spot_close: np.ndarray
    spot_volume: np.ndarray
    perp_open: np.ndarray
    perp_high: np.ndarray
    perp_low: np.ndarray
    perp_close: np.ndarray
    perp_volume: np.ndarray
    mark_open: np.ndarray
    mark_high: np.ndarray
    mark_low: np.ndarray
    mark_close: np.ndarray
    funding_rate: np.ndarray
    funding_value: np.ndarray
    funding_count: np.ndarray
    funding_interval_hours: np.ndarray
    valid: np.ndarray
    filled: np.ndarray
    mark_fallback: np.ndarray
    multiplier: np.ndarray
    perp_symbols: tuple[str, ...]
    borrow_hourly_rate: np.ndarray | None = None
    venue: str = "binance"
    notes: tuple[str, ...] = field(default=())
    funding_time_ms: np.ndarray | None = None
    tradable: np.ndarray = None  # type: ignore[assignment]  # None: every bar (made an array in __post_init__)
    data_flags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        try:
            index = pd.DatetimeIndex(self.index)
        except (ValueError, TypeError) as exc:
            raise DataError(f"Market.index must be a UTC DatetimeIndex of bar open times ({exc})") from None
        if index.tz is None or str(index.tz) != "UTC":
            raise DataError("Market.index must be a UTC DatetimeIndex")
        if len(index) > 1 and not (np.diff(index.asi8) > 0).all():
            raise DataError("Market.index must be strictly increasing")
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "perp_symbols", tuple(self.perp_symbols))
        if len(set(self.symbols)) != len(self.symbols):
            raise DataError(f"Market.symbols has duplicates: {self.symbols}")
        shape = (len(index), len(self.symbols))
        for name in PRICE_FIELDS + FUNDING_FIELDS:
            object.__setattr__(self, name, _frozen(getattr(self, name), np.float64, name, shape))
        object.__setattr__(self, "funding_count", _frozen(self.funding_count, np.int32, "funding_count", shape))
        for name in ("valid", "filled", "mark_fallback"):
            object.__setattr__(self, name, _frozen(getattr(self, name), np.bool_, name, shape))
        tradable = np.ones(shape, dtype=bool) if self.tradable is None else self.tradable
        object.__setattr__(self, "tradable", _frozen(tradable, np.bool_, "tradable", shape))
        object.__setattr__(self, "data_flags", tuple(self.data_flags))
        mult = np.ascontiguousarray(self.multiplier, dtype=np.int64).reshape(-1)
        if mult.shape != (shape[1],):
            raise DataError(f"Market.multiplier has shape {mult.shape}, expected ({shape[1]},)")
        mult.flags.writeable = False
        object.__setattr__(self, "multiplier", mult)
        if self.borrow_hourly_rate is not None:
            object.__setattr__(
                self, "borrow_hourly_rate", _frozen(self.borrow_hourly_rate, np.float64, "borrow_hourly_rate", shape)
            )
        if self.funding_time_ms is not None:
            ft = _frozen(self.funding_time_ms, np.int64, "funding_time_ms", shape)
            bad = (ft != NO_FUNDING_TIME) != (self.funding_count > 0)
            if bad.any():
                i, j = (int(x[0]) for x in np.nonzero(bad))
                has = "a settlement time" if ft[i, j] != NO_FUNDING_TIME else "no settlement time"
                raise DataError(
                    f"Market.funding_time_ms has {has} at bar {index[i]} of {self.symbols[j]} where funding_count "
                    f"is {int(self.funding_count[i, j])} (NO_FUNDING_TIME marks the bars without a settlement)"
                )
            object.__setattr__(self, "funding_time_ms", ft)

    # ----------------------------------------------------------------- shape
    @property
    def n_bars(self) -> int:
        return len(self.index)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_bars, self.n_symbols)

    @functools.cached_property
    def mark_fallback_symbols(self) -> np.ndarray:
        """(N,) bool: symbols with at least one bar whose mark prices fall back to perp last prices."""
        out = np.asarray(self.mark_fallback.any(axis=0))
        out.flags.writeable = False
        return out

    @property
    def funding_mask(self) -> np.ndarray:
        """True on bars into which at least one funding settlement was summed."""
        return self.funding_count > 0

    @property
    def basis(self) -> np.ndarray:
        """Perp close / spot close - 1 (fraction), shape (T, N)."""
        return self.perp_close / self.spot_close - 1.0

    # ----------------------------------------------------------------- views
    def frame(self, name: str) -> pd.DataFrame:
        """One field as a DataFrame (bars x symbols), e.g. ``market.frame("funding_rate")``."""
        values = getattr(self, name, None) if isinstance(name, str) else None
        if not isinstance(values, np.ndarray) or values.shape != self.shape:
            known = [f.name for f in fields(self) if isinstance(getattr(self, f.name), np.ndarray)]
            known = [n for n in known if getattr(self, n).shape == self.shape]
            raise UnknownNameError(
                f"{name!r} is not a (bars x symbols) field of Market{did_you_mean(name, known)}; "
                f"fields: {', '.join(known)}"
            )
        return pd.DataFrame(values, index=self.index, columns=pd.Index(self.symbols, name="symbol"))

    def select(self, symbols: list[str] | tuple[str, ...] | None = None, start=None, end=None) -> Market:
        """A sub-market: some symbols and/or the bars in ``[start, end)``."""
        cols = np.arange(self.n_symbols)
        if symbols is not None:
            if isinstance(symbols, str):
                symbols = [symbols]
            missing = [s for s in symbols if s not in self.symbols]
            if missing:
                hints = ", ".join(f"{s!r}{did_you_mean(s, self.symbols)}" for s in missing)
                raise UnknownNameError(f"symbols not in market: {hints}; available: {', '.join(self.symbols)}")
            cols = np.array([self.symbols.index(s) for s in symbols], dtype=np.int64)
        # the index is sorted: the bars in [start, end) are one slice (a view, not a copy)
        lo = 0 if start is None else int(self.index.searchsorted(to_timestamp(start, "start"), side="left"))
        hi = self.n_bars if end is None else int(self.index.searchsorted(to_timestamp(end, "end"), side="left"))
        rows = slice(lo, max(lo, hi))
        every = symbols is None
        kwargs: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) and v.ndim == 2:
                kwargs[f.name] = v[rows] if every else v[rows][:, cols]
            elif f.name in ("symbols", "perp_symbols"):
                kwargs[f.name] = tuple(v[c] for c in cols)
            elif f.name == "multiplier":
                kwargs[f.name] = v[cols]
            elif f.name == "index":
                kwargs[f.name] = v[rows]
            else:
                kwargs[f.name] = v
        return Market(**kwargs)

    def __repr__(self) -> str:
        span = f"{self.index[0]} .. {self.index[-1]}" if self.n_bars else "empty"
        return f"Market({self.n_bars} bars x {self.n_symbols} symbols, freq={self.freq}, {span}, symbols={list(self.symbols)})"

    @classmethod
    def from_arrays(
        cls,
        index,
        symbols,
        *,
        freq: str = "1h",
        spot: dict[str, np.ndarray] | np.ndarray,
        perp: dict[str, np.ndarray] | np.ndarray,
        mark: dict[str, np.ndarray] | np.ndarray | None = None,
        funding_rate: np.ndarray | None = None,
        funding_value: np.ndarray | None = None,
        funding_interval_hours: float | np.ndarray = 8.0,
        funding_mask: np.ndarray | None = None,
        borrow_hourly_rate: np.ndarray | None = None,
        volume: float = 1e12,
    ) -> Market:
        """Build a market from plain arrays (tests, research, synthetic data).

        ``spot``/``perp``/``mark`` are either dicts with ``open, high, low, close`` (and
        optionally ``volume``) arrays of shape (T, N), or a single (T, N) array used for all
        four prices (flat bars). ``mark`` defaults to ``perp``. ``funding_mask`` marks the bars
        with a settlement (default: where ``funding_rate != 0``). ``funding_rate`` is the rate
        settled during each bar (see the module docstring); ``funding_value`` defaults to
        ``funding_rate * mark_open`` of the next bar (the mark at the bar's close instant),
        falling back to the bar's mark close on the last bar.
        """
        try:
            index = pd.DatetimeIndex(index)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"Market.from_arrays: index must be bar open times ({exc})") from None
        if index.tz is None:
            index = index.tz_localize("UTC")
        symbols = (symbols,) if isinstance(symbols, str) else tuple(symbols)
        shape = (len(index), len(symbols))

        def ohlcv(x, name):
            if isinstance(x, dict):
                if "open" not in x:
                    raise ConfigError(f"Market.from_arrays: {name} needs an 'open' array (keys given: {list(x)})")
                o = np.asarray(x["open"], dtype=float)
                return (
                    o,
                    np.asarray(x.get("high", o), float),
                    np.asarray(x.get("low", o), float),
                    np.asarray(x.get("close", o), float),
                    np.asarray(x.get("volume", np.full(shape, volume)), float),
                )
            a = _fit(x, float, shape, name)
            return a, a, a, a, np.full(shape, volume)

        so, sh, sl, sc, sv = ohlcv(spot, "spot")
        po, ph, pl, pc_, pv = ohlcv(perp, "perp")
        mo, mh, ml, mc, _ = ohlcv(mark if mark is not None else perp, "mark")
        rate = np.zeros(shape) if funding_rate is None else _fit(funding_rate, float, shape, "funding_rate")
        if funding_value is None:
            mark_at_close = np.vstack([mo[1:], mc[-1:]]) if shape[0] else mc
            funding_value = rate * mark_at_close
        mask = (rate != 0) if funding_mask is None else _fit(funding_mask, bool, shape, "funding_mask")
        count = mask.astype(np.int32)
        hours = np.where(count > 0, _fit(funding_interval_hours, float, shape, "funding_interval_hours"), np.nan)
        ok = np.isfinite(so) & np.isfinite(po) & np.isfinite(mo)
        return cls(
            index=index,
            symbols=symbols,
            freq=freq,
            spot_open=so,
            spot_high=sh,
            spot_low=sl,
            spot_close=sc,
            spot_volume=sv,
            perp_open=po,
            perp_high=ph,
            perp_low=pl,
            perp_close=pc_,
            perp_volume=pv,
            mark_open=mo,
            mark_high=mh,
            mark_low=ml,
            mark_close=mc,
            funding_rate=rate,
            funding_value=_fit(funding_value, float, shape, "funding_value"),
            funding_count=count,
            funding_interval_hours=hours,
            valid=ok,
            filled=np.zeros(shape, bool),
            mark_fallback=np.zeros(shape, bool),
            multiplier=np.ones(len(symbols), np.int64),
            perp_symbols=symbols,
            borrow_hourly_rate=borrow_hourly_rate,
        )

"""Synthetic markets: the demo dataset, scale-out catalogs and the tests' random markets.

:func:`write_demo_catalog` writes one year of hourly spot, perp, mark and funding data for
three made-up-but-plausible symbols into a catalog, through the same validated, atomic path
as real ingestion:

* ``DEMOAUSDT``: a BTC-like coin; funding mostly at the 0.01%/8h baseline with bull-market
  spikes.
* ``DEMOBUSDT``: an alt whose funding turns persistently negative for months while the
  price holds (the regime the user's notes ask about), settling every 4h.
* ``DEMOCUSDT``: a coin that rallies about 90% in two days mid-year, the move that liquidates
  an over-levered short perp.

Prices follow a geometric random walk; the perp trades at a mean-reverting basis over spot
that drives the funding rate through the exchange formula (premium + clamped interest,
capped). Same seed, same bytes.

:func:`write_synthetic_catalog` writes any number of symbols and days of the same kind of
data for the scale-out sweeps and benchmarks. :func:`random_market`, :func:`random_targets`
and :func:`write_tiers` build the tests' random markets, targets and leverage tiers in memory.

The generators share their pieces: one geometric random walk (:func:`_random_walk`), one
rule for OHLC bars around a close path (:func:`_ohlc`) and one funding rule from a mean
premium (:func:`_funding_rate`). What differs (the premium process, volumes, the basis
noise) is each generator's own, so that every one of them keeps drawing the same numbers
for the same seed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from data.catalog import Catalog, PartitionKey
from data.market import Market
from data.schema import Kind, timeframe_minutes
from data.units import to_ms

DEMO_SYMBOLS = ("DEMOAUSDT", "DEMOBUSDT", "DEMOCUSDT")
DEMO_START = "2024-01-01"
DEMO_HOURS = 365 * 24


# --------------------------------------------------------------------------- shared pieces
def _random_walk(
    rng: np.random.Generator,
    price0: float,
    vol: float,
    shape: int | tuple[int, ...],
    rally: tuple[int, int, float] | None = None,
) -> np.ndarray:
    """A geometric random walk from ``price0`` along axis 0: log returns drawn N(0, ``vol``).

    ``rally = (at, length, total)`` adds a move of ``total`` (0.9 = +90%) spread evenly over
    bars ``at .. at + length - 1``.
    """
    ret = rng.normal(0.0, vol, shape)
    if rally is not None:
        at, length, total = rally
        ret[at : at + length] += np.log1p(total) / length
    return price0 * np.exp(np.cumsum(ret, axis=0))


def _previous_close(close: np.ndarray) -> np.ndarray:
    """Opens that continue the previous bar's close (the first bar opens at its close)."""
    return np.concatenate([close[:1], close[:-1]])


def _ohlc(rng: np.random.Generator, open_: np.ndarray, close: np.ndarray, wick: float) -> dict[str, np.ndarray]:
    """Bars around open and close: high and low reach out by |N(0, ``wick``)| (relative)."""
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, wick, open_.shape)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, wick, open_.shape)))
    return {"open": open_, "high": high, "low": low, "close": close}


def _funding_rate(premium: np.ndarray | float, interval_h: int, cap: float) -> np.ndarray:
    """The exchange rule: rate = P + clamp(I - P, -0.05%, 0.05%), capped at +-``cap``, rounded to 1e-8.

    ``P`` is the mean premium of the funding interval, ``I`` the interest of 0.01% per 8 hours.
    """
    interest = 0.0001 * interval_h / 8
    rate = premium + np.clip(interest - premium, -0.0005, 0.0005)
    return np.round(np.clip(rate, -cap, cap), 8)


# --------------------------------------------------------------------------- the demo dataset
def _symbol(
    rng: np.random.Generator,
    n: int,
    price0: float,
    vol_h: float,
    premium_path: np.ndarray,
    rally: tuple[int, int, float] | None = None,
) -> dict[str, np.ndarray]:
    spot_close = _random_walk(rng, price0, vol_h, n, rally)
    noise = rng.normal(0.0, 0.0002, n)
    basis = premium_path + noise
    perp_close = spot_close * (1 + basis)
    mark_close = spot_close * (1 + premium_path)
    out = {}
    for leg, close in (("spot", spot_close), ("perp", perp_close), ("mark", mark_close)):
        for k, v in _ohlc(rng, _previous_close(close), close, vol_h * 0.5).items():
            out[f"{leg}_{k}"] = v
    out["spot_volume"] = rng.lognormal(np.log(5e6 / price0), 0.5, n)
    out["perp_volume"] = out["spot_volume"] * 4
    out["premium"] = premium_path
    return out


def _ou(rng: np.random.Generator, n: int, mean: np.ndarray, speed: float, sigma: float) -> np.ndarray:
    x = np.empty(n)
    x[0] = mean[0]
    shocks = rng.normal(0.0, sigma, n)
    for i in range(1, n):
        x[i] = x[i - 1] + speed * (mean[i] - x[i - 1]) + shocks[i]
    return x


def _funding(
    premium: np.ndarray, times: pd.DatetimeIndex, interval_h: int, cap: float
) -> tuple[np.ndarray, np.ndarray]:
    """Settlements every ``interval_h`` hours from the mean premium of the hours before (:func:`_funding_rate`),
    as positions in ``times`` extended by one bar: a settlement at the data's end (the last bar's
    close, position ``len(times)``) is in the data, as an exchange's history holds it."""
    hours = np.append(times.hour.to_numpy(), (times[-1] + pd.Timedelta(hours=1)).hour)
    settle = np.flatnonzero((hours % interval_h == 0) & (np.arange(len(times) + 1) >= interval_h))
    p_mean = np.array([premium[i - interval_h : i].mean() for i in settle], dtype=float)
    return settle, _funding_rate(p_mean, interval_h, cap)


def demo_frames(seed: int = 7) -> dict[str, dict[str, pd.DataFrame]]:
    """The demo data as DataFrames: ``{symbol: {"spot"|"perp"|"mark"|"funding": frame}}``."""
    rng = np.random.default_rng(seed)
    n = DEMO_HOURS
    times = pd.date_range(DEMO_START, periods=n, freq="1h", tz="UTC")
    t = np.arange(n) / n
    specs = {
        # symbol: (price0, hourly vol, mean premium path, funding interval h, cap, rally)
        "DEMOAUSDT": (42_000.0, 0.006, 0.00015 + 0.0006 * (np.sin(2 * np.pi * t * 2) > 0.6), 8, 0.003, None),
        "DEMOBUSDT": (6.0, 0.009, np.where((t > 0.3) & (t < 0.8), -0.00065, 0.0002), 4, 0.02, None),
        "DEMOCUSDT": (0.5, 0.010, np.where((t > 0.5) & (t < 0.56), 0.0015, 0.0001), 8, 0.02, (int(n * 0.52), 48, 0.9)),
    }
    out: dict[str, dict[str, pd.DataFrame]] = {}
    for sym, (p0, vol, mean_prem, interval, cap, rally) in specs.items():
        premium = _ou(rng, n, np.asarray(mean_prem, float), 0.05, 0.00015)
        d = _symbol(rng, n, p0, vol, premium, rally)
        frames = {}
        for leg in ("spot", "perp", "mark"):
            f = pd.DataFrame({"time": times, **{k: d[f"{leg}_{k}"] for k in ("open", "high", "low", "close")}})
            if leg != "mark":
                f["volume"] = d[f"{leg}_volume"]
            frames[leg] = f
        settle, rates = _funding(premium, times, interval, cap)
        frames["funding"] = pd.DataFrame(
            {
                "time": times.append(pd.DatetimeIndex([times[-1] + pd.Timedelta(hours=1)]))[settle],
                "rate": rates,
                "interval_hours": float(interval),
                "mark_price": np.nan,
            }
        )
        out[sym] = frames
    return out


def write_demo_catalog(root: str | Path, seed: int = 7, venue: str = "binance") -> Catalog:
    """Write the demo dataset into the catalog at ``root`` (idempotent) and return it."""
    catalog = Catalog(root)
    kinds = {"spot": Kind.SPOT, "perp": Kind.PERP, "mark": Kind.MARK, "funding": Kind.FUNDING}
    with catalog.transaction():  # all or nothing: an interrupted demo setup leaves no half catalog
        for sym, frames in demo_frames(seed).items():
            for leg, frame in frames.items():
                kind = kinds[leg]
                key = PartitionKey(venue, kind, sym, "1h" if kind.is_bar else None)
                table = pa.Table.from_pandas(frame, preserve_index=False)
                catalog.write(key, table, source=f"demo:{sym}:{leg}")
    return catalog


# --------------------------------------------------------------------------- scale-out catalogs
def synthetic_symbols(n: int) -> list[str]:
    """``["SYN000USDT", "SYN001USDT", ...]``."""
    return [f"SYN{k:03d}USDT" for k in range(n)]


def write_synthetic_catalog(
    root: str | os.PathLike,
    n_symbols: int,
    n_days: float,
    *,
    start: str = "2024-01-01",
    timeframe: str = "1m",
    seed: int = 0,
    venue: str = "binance",
    funding_hours: int = 8,
    symbols: Iterable[str] | None = None,
) -> Catalog:
    """Write ``n_symbols`` x ``n_days`` of synthetic spot/perp/mark bars plus funding into a catalog.

    Prices are a geometric random walk per symbol, the perp at a slowly mean-reverting
    premium over spot, funding every ``funding_hours`` from that premium (premium + clamped
    interest, capped at +-0.3%) so funding regimes come and go and threshold strategies trade.
    Written through :meth:`Catalog.write` (validated, atomic). Same seed, same data.
    ``symbols`` overrides the names (default :func:`synthetic_symbols`).
    """
    catalog = Catalog(root)
    step_min = timeframe_minutes(timeframe)
    n = int(round(n_days * 24 * 60 / step_min))
    start_ms = to_ms(start)
    assert start_ms is not None  # a str start is never None
    t_ms = start_ms + np.arange(n, dtype=np.int64) * step_min * 60_000
    per_hour = 60 // step_min if step_min <= 60 else 1
    names = list(symbols) if symbols is not None else synthetic_symbols(n_symbols)
    for k, sym in enumerate(names):
        rng = np.random.default_rng([seed, k])
        vol = 0.0008 * np.sqrt(step_min) * (0.5 + rng.random())
        close = _random_walk(rng, 10.0 + 990.0 * rng.random(), vol, n)
        # premium: AR(1) around a regime mean (negative, baseline, high funding)
        n_reg = max(1, int(n / (per_hour * 24 * 3)) + 1)  # a new funding regime every 3 days
        regimes = rng.choice([-0.0010, 0.0001, 0.0004, 0.0010], size=n_reg)
        mean = np.repeat(regimes, -(-n // n_reg))[:n]
        shocks = rng.normal(0.0, 0.00003, n)
        prem = np.empty(n)
        phi = 1.0 - 1.0 / (per_hour * 6)
        acc = mean[0]
        for i in range(0, n, 4096):  # blockwise AR(1) with numpy: exact enough for synthetic data
            j = min(n, i + 4096)
            powers = phi ** np.arange(1, j - i + 1)
            drive = (1 - phi) * mean[i:j] + shocks[i:j]
            prem[i:j] = powers * acc + np.convolve(drive, phi ** np.arange(j - i))[: j - i]
            acc = prem[j - 1]
        frames = {}
        for leg, c in (
            ("spot", close),
            ("perp", close * (1 + prem + rng.normal(0, 0.00005, n))),
            ("mark", close * (1 + prem)),
        ):
            cols: dict[str, Any] = {
                "time": pa.array(t_ms, pa.timestamp("ms", tz="UTC")),
                **_ohlc(rng, _previous_close(c), c, vol * 0.5),
            }
            if leg != "mark":
                cols["volume"] = rng.lognormal(np.log(2e4 / c.mean()), 0.5, n)
            frames[leg] = pa.table(cols)
        # funding settlements every funding_hours from the mean premium of the interval
        hour_ms = 3_600_000
        first = (t_ms[0] // (funding_hours * hour_ms) + 1) * funding_hours * hour_ms
        settle = np.arange(first, t_ms[-1] + step_min * 60_000 + 1, funding_hours * hour_ms)
        idx = np.searchsorted(t_ms, settle)
        csum = np.concatenate([[0.0], np.cumsum(prem)])
        lo_i = np.maximum(0, idx - funding_hours * per_hour)
        p_mean = (csum[idx] - csum[lo_i]) / np.maximum(1, idx - lo_i)
        rate = _funding_rate(p_mean, funding_hours, 0.003)
        frames["funding"] = pa.table(
            {
                "time": pa.array(settle, pa.timestamp("ms", tz="UTC")),
                "rate": rate,
                "interval_hours": np.full(len(settle), float(funding_hours)),
                "mark_price": pa.nulls(len(settle), pa.float64()),
            }
        )
        kinds = {"spot": Kind.SPOT, "perp": Kind.PERP, "mark": Kind.MARK, "funding": Kind.FUNDING}
        for leg, table in frames.items():
            key = PartitionKey(venue, kinds[leg], sym, timeframe if kinds[leg].is_bar else None)
            catalog.write(key, table, source=f"synthetic:{sym}:{leg}")
    return catalog


# --------------------------------------------------------------------------- the tests' random data
def random_market(
    rng: np.random.Generator,
    T: int,
    N: int,
    *,
    vol: float = 0.01,
    wick: float = 0.02,
    invalid_frac: float = 0.0,
    funding_every: int = 8,
    start: str = "2024-01-01",
    freq: str = "1h",
) -> Market:
    """A random :class:`Market` of ``T`` bars x ``N`` symbols (``S0USDT``, ``S1USDT``, ...), hourly
    unless ``freq`` says otherwise (the draws do not depend on it).

    Spot is a geometric random walk from 100 (hourly log-return sd ``vol``), the perp at a
    random basis of sd 0.2% over spot, the mark near the perp with wicks of sd ``wick`` (wide
    wicks trigger liquidations). A fraction ``invalid_frac`` of the (bar, symbol) cells has
    NaN prices (missing bars); a random funding rate N(0.01%, 0.05%) settles every
    ``funding_every`` bars. Draws from ``rng`` in a fixed order: same state, same market.
    """
    idx = pd.date_range(start, periods=T, freq=freq, tz="UTC")
    spot_c = _random_walk(rng, 100.0, vol, (T, N))
    spot_o = np.vstack([spot_c[:1] * (1 + rng.normal(0, vol, (1, N))), spot_c[:-1]])

    def bars(o: np.ndarray, c: np.ndarray, w: float) -> dict[str, np.ndarray]:
        return {**_ohlc(rng, o, c, w), "volume": rng.uniform(50, 500, o.shape)}

    basis = rng.normal(0, 0.002, (T, N))
    perp_c = spot_c * (1 + basis)
    perp_o = spot_o * (1 + rng.normal(0, 0.002, (T, N)))
    mark_c = perp_c * (1 + rng.normal(0, 0.0005, (T, N)))
    mark_o = perp_o * (1 + rng.normal(0, 0.0005, (T, N)))
    spot, perp, mark = bars(spot_o, spot_c, vol), bars(perp_o, perp_c, vol), bars(mark_o, mark_c, wick)
    if invalid_frac > 0:
        bad = rng.random((T, N)) < invalid_frac
        for d in (spot, perp, mark):
            for k in ("open", "high", "low", "close"):
                d[k] = np.where(bad, np.nan, d[k])
    rate = np.where((np.arange(T) % funding_every == funding_every - 1)[:, None], rng.normal(1e-4, 5e-4, (T, N)), 0.0)
    symbols = [f"S{k}USDT" for k in range(N)]
    return Market.from_arrays(idx, symbols, spot=spot, perp=perp, mark=mark, funding_rate=rate)


class TargetParts(NamedTuple):
    """The fields of a ``backtest.targets.Targets``, in its constructor's order: ``Targets(*parts)``.

    The data layer does not import the engine, so :func:`random_targets` returns the parts.
    """

    values: np.ndarray
    column_symbol: np.ndarray
    group: np.ndarray
    columns: pd.DataFrame
    weights: np.ndarray | None


def random_targets(
    market: Market, rng: np.random.Generator, n_cols: int, n_groups: int, p_change: float
) -> TargetParts:
    """Random targets for ``n_cols`` columns in up to ``n_groups`` portfolios on ``market``.

    Every column starts with a position (-1, 0.5 or 1) and changes it on a fraction
    ``p_change`` of the bars (to -1, -0.5, 0, 0.3 or 1; NaN = keep elsewhere); each column
    trades a random symbol. In 30% of the draws the columns get random capital weights.
    """
    T = market.n_bars
    vals = rng.choice([-1.0, -0.5, 0.0, 0.3, 1.0], size=(T, n_cols))
    vals = np.where(rng.random((T, n_cols)) < p_change, vals, np.nan)
    vals[0] = rng.choice([-1.0, 1.0, 0.5], n_cols)
    col_symbol = rng.integers(0, market.n_symbols, n_cols)
    group = rng.integers(0, n_groups, n_cols)
    table = pd.DataFrame(
        {
            "strategy": ["rand"] * n_cols,
            "symbol": [market.symbols[k] for k in col_symbol],
            "group": group,
            "k": np.arange(n_cols),
        }
    )
    weights = rng.uniform(0.2, 1.0, (T, n_cols)) if rng.random() < 0.3 else None
    return TargetParts(vals, col_symbol, group, table, weights)


# three brackets with continuous maintenance (cum_k = cum_{k-1} + lo_k * (mmr_k - mmr_{k-1}))
TEST_TIER_BRACKETS: list[dict[str, Any]] = [
    {"minNotional": 0.0, "maxNotional": 1000.0, "maintenanceMarginRate": 0.01, "maxLeverage": 50, "info": {"cum": "0"}},
    {
        "minNotional": 1000.0,
        "maxNotional": 5000.0,
        "maintenanceMarginRate": 0.02,
        "maxLeverage": 25,
        "info": {"cum": "10"},
    },
    {
        "minNotional": 5000.0,
        "maxNotional": 1e12,
        "maintenanceMarginRate": 0.05,
        "maxLeverage": 10,
        "info": {"cum": "160"},
    },
]


def write_tiers(path: str | os.PathLike, symbols: Iterable[str]) -> str:
    """Write a ccxt-format leverage-tiers file giving every ``XXXUSDT`` symbol :data:`TEST_TIER_BRACKETS`.

    Returns the path as a string (for ``BacktestConfig(tiers_path=...)``).
    """
    data = {f"{s[:-4]}/USDT:USDT": TEST_TIER_BRACKETS for s in symbols}
    Path(path).write_text(json.dumps(data))
    return str(path)


def benchmark_market(n_bars: int, n_symbols: int, freq: str, seed: int = 0) -> Market:
    """The engine benchmarks' market (``backtest.app.bench``): random-walk spot, perp and mark
    bars of ``n_symbols`` symbols (perp 2 bps over spot) with a funding settlement every 8 hours."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n_bars, freq=freq, tz="UTC")
    step = pd.Timedelta(freq) / pd.Timedelta(hours=1)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.0005 * np.sqrt(step * 60), (n_bars, n_symbols)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]])
    hi, lo = np.maximum(open_, close) * 1.0005, np.minimum(open_, close) * 0.9995
    perp = {"open": open_ * 1.0002, "high": hi * 1.0002, "low": lo * 1.0002, "close": close * 1.0002}
    spot = {"open": open_, "high": hi, "low": lo, "close": close}
    every = max(int(round(8 / step)), 1)
    rate = np.where((np.arange(n_bars) % every == every - 1)[:, None], rng.normal(1e-4, 2e-4, (n_bars, n_symbols)), 0.0)
    return Market.from_arrays(
        idx, [f"S{k}USDT" for k in range(n_symbols)], freq=freq, spot=spot, perp=perp, funding_rate=rate
    )

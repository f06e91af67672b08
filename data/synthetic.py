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
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from data.catalog import Catalog, PartitionKey
from data.schema import Kind, timeframe_minutes
from data.units import to_ms

DEMO_SYMBOLS = ("DEMOAUSDT", "DEMOBUSDT", "DEMOCUSDT")
DEMO_START = "2024-01-01"
DEMO_HOURS = 365 * 24


def _bars(close: np.ndarray, rng: np.random.Generator, vol_h: float) -> dict[str, np.ndarray]:
    open_ = np.concatenate([[close[0]], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, vol_h * 0.5, size=(2, close.size)))
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    return {"open": open_, "high": high, "low": low, "close": close}


def _symbol(
    rng: np.random.Generator,
    n: int,
    price0: float,
    vol_h: float,
    premium_path: np.ndarray,
    rally: tuple[int, int, float] | None = None,
) -> dict[str, np.ndarray]:
    ret = rng.normal(0.0, vol_h, n)
    if rally is not None:
        at, length, total = rally
        ret[at : at + length] += np.log1p(total) / length
    spot_close = price0 * np.exp(np.cumsum(ret))
    noise = rng.normal(0.0, 0.0002, n)
    basis = premium_path + noise
    perp_close = spot_close * (1 + basis)
    mark_close = spot_close * (1 + premium_path)
    out = {}
    for leg, close in (("spot", spot_close), ("perp", perp_close), ("mark", mark_close)):
        for k, v in _bars(close, rng, vol_h).items():
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
    """Settlements every ``interval_h`` hours: rate = P + clamp(I - P, -0.05%, 0.05%), capped."""
    hours = times.hour.to_numpy()
    settle = np.flatnonzero((hours % interval_h == 0) & (np.arange(len(times)) >= interval_h))
    interest = 0.0001 * interval_h / 8
    rates = np.empty(settle.size)
    for j, i in enumerate(settle):
        p = premium[i - interval_h : i].mean()
        r = p + np.clip(interest - p, -0.0005, 0.0005)
        rates[j] = np.clip(r, -cap, cap)
    return settle, np.round(rates, 8)


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
                "time": times[settle],
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
    t_ms = to_ms(start) + np.arange(n, dtype=np.int64) * step_min * 60_000
    per_hour = 60 // step_min if step_min <= 60 else 1
    names = list(symbols) if symbols is not None else synthetic_symbols(n_symbols)
    for k, sym in enumerate(names):
        rng = np.random.default_rng([seed, k])
        vol = 0.0008 * np.sqrt(step_min) * (0.5 + rng.random())
        close = (10.0 + 990.0 * rng.random()) * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
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
            o = np.concatenate([[c[0]], c[:-1]])
            wig = np.abs(rng.normal(0.0, vol * 0.5, (2, n)))
            cols = {
                "time": pa.array(t_ms, pa.timestamp("ms", tz="UTC")),
                "open": o,
                "high": np.maximum(o, c) * (1 + wig[0]),
                "low": np.minimum(o, c) * (1 - wig[1]),
                "close": c,
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
        interest = 0.0001 * funding_hours / 8
        rate = np.round(np.clip(p_mean + np.clip(interest - p_mean, -0.0005, 0.0005), -0.003, 0.003), 8)
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

"""A deterministic synthetic market for the demo and for tests.

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

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .catalog import Catalog, PartitionKey
from .schema import Kind

DEMO_SYMBOLS = ("DEMOAUSDT", "DEMOBUSDT", "DEMOCUSDT")
DEMO_START = "2024-01-01"
DEMO_HOURS = 365 * 24


def _bars(close: np.ndarray, rng: np.random.Generator, vol_h: float) -> dict[str, np.ndarray]:
    open_ = np.concatenate([[close[0]], close[:-1]])
    wiggle = np.abs(rng.normal(0.0, vol_h * 0.5, size=(2, close.size)))
    high = np.maximum(open_, close) * (1 + wiggle[0])
    low = np.minimum(open_, close) * (1 - wiggle[1])
    return {"open": open_, "high": high, "low": low, "close": close}


def _symbol(rng: np.random.Generator, n: int, price0: float, vol_h: float, premium_path: np.ndarray,
            rally: tuple[int, int, float] | None = None) -> dict[str, np.ndarray]:
    ret = rng.normal(0.0, vol_h, n)
    if rally is not None:
        at, length, total = rally
        ret[at:at + length] += np.log1p(total) / length
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


def _funding(premium: np.ndarray, times: pd.DatetimeIndex, interval_h: int, cap: float) -> tuple[np.ndarray, np.ndarray]:
    """Settlements every ``interval_h`` hours: rate = P + clamp(I - P, -0.05%, 0.05%), capped."""
    hours = times.hour.to_numpy()
    settle = np.flatnonzero((hours % interval_h == 0) & (np.arange(len(times)) >= interval_h))
    interest = 0.0001 * interval_h / 8
    rates = np.empty(settle.size)
    for j, i in enumerate(settle):
        p = premium[i - interval_h:i].mean()
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
        frames["funding"] = pd.DataFrame({
            "time": times[settle], "rate": rates, "interval_hours": float(interval),
            "mark_price": np.nan,
        })
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

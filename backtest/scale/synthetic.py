"""Synthetic spot/perp/mark bars and funding, for benchmarks and tests of scale-out sweeps."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable

import numpy as np

from .catalog_access import _ms

if TYPE_CHECKING:
    from ..catalog import Catalog


def synthetic_symbols(n: int) -> list[str]:
    """``["SYN000USDT", "SYN001USDT", ...]``."""
    return [f"SYN{k:03d}USDT" for k in range(n)]


def write_synthetic_catalog(root: str | os.PathLike, n_symbols: int, n_days: float, *, start: str = "2024-01-01",
                            timeframe: str = "1m", seed: int = 0, venue: str = "binance",
                            funding_hours: int = 8, symbols: Iterable[str] | None = None) -> "Catalog":
    """Write ``n_symbols`` x ``n_days`` of synthetic spot/perp/mark bars plus funding into a catalog.

    Prices are a geometric random walk per symbol, the perp at a slowly mean-reverting
    premium over spot, funding every ``funding_hours`` from that premium (premium + clamped
    interest, capped at +-0.3%) so funding regimes come and go and threshold strategies trade.
    Written through :meth:`Catalog.write` (validated, atomic). Same seed, same data.
    ``symbols`` overrides the names (default :func:`synthetic_symbols`).
    """
    import pyarrow as pa

    from ..catalog import Catalog, PartitionKey
    from ..schema import Kind, timeframe_minutes

    catalog = Catalog(root)
    step_min = timeframe_minutes(timeframe)
    n = int(round(n_days * 24 * 60 / step_min))
    t_ms = _ms(start) + np.arange(n, dtype=np.int64) * step_min * 60_000
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
        for leg, c in (("spot", close), ("perp", close * (1 + prem + rng.normal(0, 0.00005, n))), ("mark", close * (1 + prem))):
            o = np.concatenate([[c[0]], c[:-1]])
            wig = np.abs(rng.normal(0.0, vol * 0.5, (2, n)))
            cols = {"time": pa.array(t_ms, pa.timestamp("ms", tz="UTC")), "open": o,
                    "high": np.maximum(o, c) * (1 + wig[0]), "low": np.minimum(o, c) * (1 - wig[1]), "close": c}
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
        frames["funding"] = pa.table({"time": pa.array(settle, pa.timestamp("ms", tz="UTC")), "rate": rate,
                                      "interval_hours": np.full(len(settle), float(funding_hours)),
                                      "mark_price": pa.nulls(len(settle), pa.float64())})
        kinds = {"spot": Kind.SPOT, "perp": Kind.PERP, "mark": Kind.MARK, "funding": Kind.FUNDING}
        for leg, table in frames.items():
            key = PartitionKey(venue, kinds[leg], sym, timeframe if kinds[leg].is_bar else None)
            catalog.write(key, table, source=f"synthetic:{sym}:{leg}")
    return catalog

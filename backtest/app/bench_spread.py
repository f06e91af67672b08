"""Benchmark: a cross-venue spread grid against a single-venue carry grid of the same size.

``python -m backtest.app.bench_spread [--bars 8760] [--columns 1000] [--repeat 3]``

Both grids run on the same synthetic hourly random walk (one coin; leg B's prices 0.05% above
leg A's, different funding on each venue), one column per leverage repeated to ``--columns``, a
target that switches between +1, 0 and -1 every 500 bars, and equity kept per bar
(``outputs=("equity",)`` for the spread run, ``full=False`` for the carry run, which keeps equity
and group equity), whole calls timed (the result's frames and events included). The single-venue
run uses whatever kernel ``run_backtest`` picks for it (the structure-of-arrays kernel here).

Cases: leverage 1-3 (no liquidation in either grid) with each engine's rebalancing off (the same
36,000 fills in both: the machinery against the machinery) and with its defaults (the spread's
collateral rebalances against the carry's 10% notional band); leverage 1-10 with the defaults,
where the spread's collateral rebalances at 10x (every 3% move) trade several times the carry's
fills; and the last in cross margin, portfolios of ten columns (the single venue's general kernel
with its cross account; the spread's cross driver, one thread, an account per venue). Times are the best of ``--repeat`` runs after a warm-up. The last line is JSON with, per
case, both rates in bar-columns per second, both fill counts and ``spread_over_single`` (seconds
of the spread grid / seconds of the carry grid; the issue's goal: at most 2).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig, SpreadConfig
from backtest.engine import run_backtest
from backtest.spread import run_spread
from data.market import Market


def markets(n_bars: int, seed: int = 7) -> tuple[Market, Market, Market]:
    """(carry market, leg A, leg B) over ``n_bars`` hourly bars of one coin."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC")
    p = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, (n_bars, 1)), axis=0))
    fa = np.zeros((n_bars, 1))
    fb = np.zeros((n_bars, 1))
    fa[7::8] = 0.0001
    fb[:] = rng.normal(2e-5, 1e-5, (n_bars, 1))
    carry = Market.from_arrays(idx, ["BTCUSDT"], spot=p, perp=p * 1.0005, funding_rate=fa)
    a = Market.from_arrays(idx, ["BTCUSDT"], spot=p, perp=p, funding_rate=fa)
    b = Market.from_arrays(idx, ["BTCUSDT"], spot=p * 1.0005, perp=p * 1.0005, funding_rate=fb)
    return carry, a, b


def targets(n_bars: int, n_cols: int) -> np.ndarray:
    x = np.full((n_bars, n_cols), np.nan)
    for k, i in enumerate(range(0, n_bars, 500)):
        x[i] = (1.0, 0.0, -1.0)[k % 3]
    return x


def _best(fn, repeat: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bars", type=int, default=8760)
    ap.add_argument("--columns", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    carry, a, b = markets(args.bars)
    x = targets(args.bars, args.columns)
    lev = np.tile(np.arange(1.0, 11.0), -(-args.columns // 10))[: args.columns]
    from backtest.targets import Targets

    cols = np.arange(args.columns, dtype=np.int64)
    tg = Targets(x, np.zeros(args.columns, np.int64), cols, pd.DataFrame({"symbol": "BTCUSDT", "group": cols}))
    work = args.bars * args.columns
    out: dict = {"bars": args.bars, "columns": args.columns}
    # 1. each engine's default policies (the spread's collateral rebalances, the carry's notional
    #    band); 2. the same grids with those policies off: entries, exits and liquidations only
    low = np.tile(np.arange(1.0, 4.0), -(-args.columns // 3))[: args.columns]
    off = (BacktestConfig(rebalance_notional_band=None), SpreadConfig(venue_rebalance_band=None))
    cases = {
        "leverage_1_3_rebalancing_off": (*off, low),
        "leverage_1_3_defaults": (BacktestConfig(), SpreadConfig(), low),
        "leverage_1_10_defaults": (BacktestConfig(), SpreadConfig(), lev),
        "cross_portfolios_of_10_leverage_1_10": (BacktestConfig(margin_mode="cross"), SpreadConfig(), lev),
    }
    # cross margin: portfolios of ten columns (the single venue's cross account, the spread's
    # account per venue)
    grouped = Targets(x, tg.column_symbol, cols // 10, tg.columns.assign(group=cols // 10))
    for name, (cfg, scfg, lev) in cases.items():
        tg = grouped if cfg.margin_mode == "cross" else tg
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            one = lambda: run_backtest(carry, tg, cfg, column_params={"perp_leverage": lev}, full=False)  # noqa: E731
            two = lambda: run_spread(a, b, tg, cfg, scfg, column_params={"perp_leverage": lev}, outputs=("equity",))  # noqa: E731
            single, spread = _best(one, args.repeat), _best(two, args.repeat)
            fills = (int((one().events["kind"] == "fill").sum()), int((two().events["kind"] == "fill").sum()))
        out[name] = {
            "single_venue_bar_columns_per_s": work / single,
            "spread_bar_columns_per_s": work / spread,
            "single_venue_fills": fills[0],
            "spread_fills": fills[1],
            "spread_over_single": spread / single,
        }
        print(
            f"{name}: single-venue carry grid {single:.3f} s ({work / single / 1e6:.1f} M bar-columns/s, "
            f"{fills[0]:,} fills); cross-venue spread grid {spread:.3f} s ({work / spread / 1e6:.1f} M bar-columns/s, "
            f"{fills[1]:,} fills); spread / single {spread / single:.2f}x"
        )
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

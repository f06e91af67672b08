"""Engine benchmark (issue 3, "Speed"): ``python -m backtest.app.bench``.

Measures, in one process after a warm-up run of everything (numba kernels loaded from the
on-disk cache):

1. one symbol-year of synthetic 1-minute bars (525,600) for one configuration, against
   ``vectorbt.Portfolio.from_orders`` with two cash-sharing columns (spot, perp) on the same
   bars and fills (``call_seq="auto"``; its order records are checked equal to the engine's
   fills before anything is timed), plus ``pf.value()`` (vectorbt models less: no funding, borrow, margin or
   liquidation). The engine is timed with ``full=False`` ("lean": equity and portfolio
   equity per bar, final component totals and positions, every fill, transfer and
   liquidation; what ``from_orders`` + ``value()`` give, an equity curve and the order
   records, so this is the like-for-like figure) and with ``full=True`` (every per-bar
   output: equity, 7 components, positions, margin ratio, distance to liquidation; 12
   series vectorbt does not compute in that call);
2. throughput in bar-columns per second of ``run_backtest`` on a 1,000-column grid
   (1,000 portfolios of one symbol each, hourly bars for a year) on one core with
   ``full=False`` (the documented grid mode), also with ``full=True`` and with
   ``outputs=("group_equity",)`` (portfolio equity per bar, fills/transfers/liquidations only);
3. the ratio of the single-configuration engine time (full and lean) to one NumPy pass (a sum)
   over the same input arrays (the memory-bandwidth floor);
4. the same grid with ``parallel=True`` (numba ``prange`` over chunks of portfolios, all
   cores): speed-up over the serial run, after checking the results are bit-identical;
5. the engine (lean) against a hand-written numba loop of the same long carry on one column
   (:mod:`backtest.app.bench_reference`; its equity and fills checked equal to the engine's
   first): ``engine_over_hand_loop`` (whole ``run_backtest`` calls) and
   ``kernel_over_hand_loop`` (its simulation kernel alone, ``BacktestResult.kernel_seconds``:
   issue 17's goal, 1.5 or less, is about the kernel);
6. lean throughput on one core for grids of 1,000, 10,000 and 100,000 columns of 1,000 hourly
   bars (``--scaling-columns``, ``--scaling-bars``): ``bar_columns_per_second_by_columns``,
   the goal being flat (two rounds over the sizes, the best of each size kept);
7. cold start: a new Python process importing the package and running a small backtest.

Timings are the best of several runs (the machine may be shared): the four single-symbol
timings in ``3 * --repeat`` interleaved rounds, each grid variant ``--repeat`` times. The
whole ``run_backtest`` call is timed (input checks, kernel, wrapping in pandas), not the
kernel alone. Runs after the first reuse the memory of dropped results (``backtest.buffers``),
as a sweep or a research session running backtest after backtest does.
The last printed line is one JSON object with ``speedup_vs_vectorbt`` (lean, see 1.),
``bar_columns_per_second`` (grid, ``full=False``), ``ratio_to_numpy_floor`` (full outputs),
``cold_start_seconds``, and the companions ``speedup_vs_vectorbt_full``,
``ratio_to_numpy_floor_lean``, ``bar_columns_per_second_full``,
``bar_columns_per_second_group_equity``, ``parallel_speedup`` and ``threads``. The text lines
name the simulation kernels used (``soa``, ``fast`` or ``general``, see ``run_backtest(kernel=...)``).
Options: ``--bars`` (default 525600), ``--grid-columns`` (1000), ``--grid-bars`` (8760),
``--repeat`` (5).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd

from data.synthetic import benchmark_market

COLD_START = (
    "import numpy as np, pandas as pd\n"
    "from backtest import run_backtest, BacktestConfig\n"
    "from data.market import Market\n"
    "idx = pd.date_range('2024-01-01', periods=1000, freq='h', tz='UTC')\n"
    "p = np.full((1000, 1), 100.0)\n"
    "run_backtest(Market.from_arrays(idx, ['BTCUSDT'], spot=p, perp=p), 1.0, BacktestConfig())\n"
)


def _best(fn, repeat: int) -> float:
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def check_vectorbt_fills(pf, bar: np.ndarray, leg: np.ndarray, fills: pd.DataFrame) -> None:
    """AssertionError unless vectorbt filled exactly the engine's orders: same bar, leg
    (column 0 spot, 1 perp), size, price and fee (relative 1e-12), before anything is timed."""
    o = pf.orders.records
    got = np.column_stack([o["idx"], o["col"], o["size"], o["price"], o["fees"]])
    want = np.column_stack([bar, leg, np.abs(fills.qty), fills.price, fills.fee])
    got, want = got[np.lexsort((got[:, 1], got[:, 0]))], want[np.lexsort((want[:, 1], want[:, 0]))]
    if got.shape != want.shape:
        raise AssertionError(f"vectorbt filled {len(got)} orders, the engine {len(want)}")
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    if not (rel <= 1e-12).all():
        k = int(np.argmax(rel.max(axis=1)))
        raise AssertionError(f"vectorbt's fill {k} (bar, leg, size, price, fee) {got[k]} != the engine's {want[k]}")


def bench_single(n_bars: int, repeat: int) -> dict:
    """Engine (full and lean) against vectorbt on one symbol-year, and the NumPy floor.

    The four are timed in interleaved rounds (engine full, engine lean, vectorbt, NumPy pass;
    ``3 * repeat`` rounds, best of each), so a slow spell of a shared machine hits all of them.
    """
    import vectorbt as vbt

    from backtest.config import BacktestConfig
    from backtest.engine import run_backtest

    m = benchmark_market(n_bars, 1, "1min")
    rng = np.random.default_rng(1)
    tg = np.where(rng.random((n_bars, 1)) < 1 / 2000, rng.choice([-1.0, 0.0, 0.5, 1.0], (n_bars, 1)), np.nan)
    tg[0] = 1.0
    cfg = BacktestConfig(perp_leverage=3, slippage_bps=1.0, maintenance_margin_rate=0.005)
    res = run_backtest(m, tg, cfg)
    fills = res.events[res.events.kind == "fill"]
    kernel = res.kernel
    bar = m.index.get_indexer(fills.time)
    leg = (fills.leg == "perp").to_numpy().astype(int)
    size = np.full((n_bars, 2), np.nan)
    price = np.full((n_bars, 2), np.nan)
    size[bar, leg] = fills.qty.to_numpy()
    price[bar, leg] = fills.price.to_numpy()
    close = np.column_stack([m.spot_close[:, 0], m.mark_close[:, 0]])
    kw = dict(
        close=close,
        size=size,
        price=price,
        fees=np.array([0.001, 0.0005]),
        size_type="amount",
        direction="both",
        init_cash=cfg.initial_capital_quote,
        cash_sharing=True,
        group_by=True,
        # sells before buys within a bar: in the default order vectorbt fills the spot buy
        # before the perp's short sale and silently shrinks it to the cash left (a third less)
        call_seq="auto",
        freq="1min",
    )
    del res
    check_vectorbt_fills(vbt.Portfolio.from_orders(**kw), bar, leg, fills)

    def run_vbt():
        pf = vbt.Portfolio.from_orders(**kw)
        pf.value()  # the equity curve, as the engine produces it

    inputs = [
        m.spot_open,
        m.perp_open,
        m.valid,
        m.spot_close,
        m.spot_volume,
        m.perp_volume,
        m.mark_open,
        m.mark_high,
        m.mark_low,
        m.mark_close,
        m.funding_value,
        m.funding_rate,
        tg,
    ]

    def numpy_pass():
        for a in inputs:
            a.sum()

    runs = {
        "engine_s": lambda: run_backtest(m, tg, cfg),
        "engine_lean_s": lambda: run_backtest(m, tg, cfg, full=False),
        "vectorbt_s": run_vbt,
        "numpy_s": numpy_pass,
    }
    for fn in runs.values():  # warm-up
        fn()
    best = {k: np.inf for k in runs}
    for _ in range(3 * repeat):
        for k, fn in runs.items():
            best[k] = min(best[k], _best(fn, 1))
    return {"bars": n_bars, "n_fills": len(fills), "kernel": kernel, **best}


def grid_inputs(m, n_cols: int):
    """The benchmark grid on ``m``'s one symbol: ``n_cols`` one-column portfolios whose targets
    change on 1% of the bars (carry, reverse carry or flat), leverage 1 to 10 over the columns.
    Returns (targets, column_params, config)."""
    from backtest.config import BacktestConfig
    from backtest.targets import Targets

    n_bars = m.n_bars
    rng = np.random.default_rng(3)
    vals = np.where(rng.random((n_bars, n_cols)) < 0.01, rng.choice([-1.0, 0.0, 1.0], (n_bars, n_cols)), np.nan)
    vals[0] = 1.0
    cols = pd.DataFrame(
        {"strategy": "bench", "symbol": m.symbols[0], "group": np.arange(n_cols), "k": np.arange(n_cols)}
    )
    tg = Targets(vals, np.zeros(n_cols, np.int64), np.arange(n_cols), cols)
    return tg, {"perp_leverage": np.linspace(1, 10, n_cols)}, BacktestConfig(maintenance_margin_rate=0.005)


def bench_grid(n_cols: int, n_bars: int, repeat: int) -> dict:
    import numba

    from backtest.engine import run_backtest

    m = benchmark_market(n_bars, 1, "1h", seed=2)
    tg, params, cfg = grid_inputs(m, n_cols)

    def timed(**kw):
        run_backtest(m, tg, cfg, column_params=params, **kw)
        return _best(lambda: run_backtest(m, tg, cfg, column_params=params, **kw), repeat)

    t = timed(full=False)
    t_full = timed(full=True)
    t_geq = timed(outputs=("group_equity",))
    serial = run_backtest(m, tg, cfg, column_params=params, full=True)
    par = run_backtest(m, tg, cfg, column_params=params, full=True, parallel=True)
    identical = all(
        np.array_equal(getattr(serial, k).to_numpy(), getattr(par, k).to_numpy(), equal_nan=True)
        for k in ("equity", "group_equity", "spot_qty", "perp_qty", "margin_ratio", "distance_to_liquidation")
    )
    identical = (
        identical
        and np.array_equal(serial.records, par.records, equal_nan=True)
        and all(
            np.array_equal(serial.components[k].to_numpy(), par.components[k].to_numpy()) for k in serial.components
        )
    )
    if not identical:
        raise AssertionError("parallel run differs from the serial run")
    kernel = serial.kernel
    del serial, par
    lean = run_backtest(m, tg, cfg, column_params=params, full=False)
    lean_par = run_backtest(m, tg, cfg, column_params=params, full=False, parallel=True)
    if not (
        np.array_equal(lean.equity.to_numpy(), lean_par.equity.to_numpy(), equal_nan=True)
        and np.array_equal(lean.records, lean_par.records, equal_nan=True)
    ):
        raise AssertionError("lean parallel run differs from the lean serial run")
    kernel_lean = lean.kernel
    del lean, lean_par
    t_par = timed(full=False, parallel=True)
    # the lean grid's kernel (soa where it applies) against the one-column fast kernel, same run
    t_fast, t_par_fast = timed(full=False, kernel="fast"), timed(full=False, kernel="fast", parallel=True)
    bc = n_cols * n_bars
    return {
        "columns": n_cols,
        "bars": n_bars,
        "seconds": t,
        "bar_columns_per_second": bc / t,
        "seconds_full": t_full,
        "bar_columns_per_second_full": bc / t_full,
        "seconds_group_equity": t_geq,
        "bar_columns_per_second_group_equity": bc / t_geq,
        "seconds_parallel": t_par,
        "parallel_speedup": t / t_par,
        "threads": numba.get_num_threads(),
        "kernel": kernel,
        "kernel_lean": kernel_lean,
        "lean_over_fast_kernel": t_fast / t,
        "lean_over_fast_kernel_parallel": t_par_fast / t_par,
    }


def bench_columns(counts: tuple[int, ...], n_bars: int, repeat: int, passes: int = 2) -> dict[int, float]:
    """Lean (``full=False``) bar-columns per second on one core for grids of ``counts`` columns
    of ``n_bars`` hourly bars (:func:`grid_inputs`): flat is the goal. The sizes are timed in
    ``passes`` rounds (each a warm-up and the best of ``repeat`` runs per size), the best of the
    rounds kept: a machine whose speed drifts over a minute hits every size alike."""
    m = benchmark_market(n_bars, 1, "1h", seed=2)
    grids = {n_cols: grid_inputs(m, n_cols) for n_cols in counts}
    best = dict.fromkeys(counts, np.inf)
    for _ in range(passes):
        for n_cols in counts:
            tg, params, cfg = grids[n_cols]
            best[n_cols] = min(best[n_cols], _lean_grid_seconds(m, tg, params, cfg, repeat))
    return {n_cols: n_cols * n_bars / best[n_cols] for n_cols in counts}


def _lean_grid_seconds(m, tg, params, cfg, repeat: int) -> float:
    """Best seconds of a lean ``run_backtest`` of a :func:`grid_inputs` grid on ``m``, after a warm-up run."""
    from backtest.engine import run_backtest

    run_backtest(m, tg, cfg, column_params=params, full=False)
    return _best(lambda: run_backtest(m, tg, cfg, column_params=params, full=False), repeat)


def cold_start() -> float:
    subprocess.run([sys.executable, "-c", COLD_START], check=True)  # make sure the cache is warm
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", COLD_START], check=True)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m backtest.app.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=525_600)
    ap.add_argument("--grid-columns", type=int, default=1000)
    ap.add_argument("--grid-bars", type=int, default=8760)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument(
        "--scaling-columns",
        type=int,
        nargs="+",
        default=[1_000, 10_000, 100_000],
        help="grid sizes of the scaling line",
    )
    ap.add_argument("--scaling-bars", type=int, default=1_000, help="hourly bars of the scaling grids")
    args = ap.parse_args(argv)
    single = bench_single(args.bars, args.repeat)
    print(
        f"single: {single['bars']:,} 1-minute bars, {single['n_fills']} fills: engine full {single['engine_s'] * 1e3:.1f} ms "
        f"(lean {single['engine_lean_s'] * 1e3:.1f} ms), vectorbt from_orders {single['vectorbt_s'] * 1e3:.1f} ms, "
        f"numpy pass {single['numpy_s'] * 1e3:.2f} ms ({single['kernel']} kernel)"
    )
    grid = bench_grid(args.grid_columns, args.grid_bars, args.repeat)
    print(
        f"grid: {grid['columns']} columns x {grid['bars']:,} bars, one core: full=False {grid['seconds'] * 1e3:.1f} ms "
        f"= {grid['bar_columns_per_second'] / 1e6:.1f} M bar-columns/s; full=True {grid['seconds_full'] * 1e3:.1f} ms "
        f"= {grid['bar_columns_per_second_full'] / 1e6:.1f} M/s; outputs=('group_equity',) "
        f"{grid['seconds_group_equity'] * 1e3:.1f} ms = {grid['bar_columns_per_second_group_equity'] / 1e6:.1f} M/s"
    )
    print(
        f"grid kernels: full=True {grid['kernel']}, full=False {grid['kernel_lean']} "
        f"({grid['lean_over_fast_kernel']:.2f}x the fast kernel on one core, "
        f"{grid['lean_over_fast_kernel_parallel']:.2f}x with parallel=True)"
    )
    print(
        f"grid, parallel=True ({grid['threads']} threads, full=False): {grid['seconds_parallel'] * 1e3:.1f} ms, "
        f"speed-up {grid['parallel_speedup']:.2f}x over one core (results bit-identical)"
    )
    from backtest.app.bench_reference import benchmark_inputs, check_reference, time_reference

    ref_inputs = benchmark_inputs(args.bars)
    check_reference(*ref_inputs)  # the loop computes the engine's equity and fills, or this raises
    ref = time_reference(*ref_inputs, repeat=3 * args.repeat)
    print(
        f"hand-written numba loop of the same carry (one column, {args.bars:,} bars, long carry only; equity and "
        f"fills checked equal): {ref['reference_s'] * 1e3:.2f} ms; engine lean {ref['engine_s'] * 1e3:.2f} ms = "
        f"{ref['engine_over_reference']:.2f}x the loop; its kernel alone {ref['kernel_s'] * 1e3:.2f} ms = "
        f"{ref['kernel_over_reference']:.2f}x"
    )
    scaling = bench_columns(tuple(args.scaling_columns), args.scaling_bars, max(1, args.repeat // 2))
    print(
        f"lean grid over {args.scaling_bars:,} hourly bars, one core: "
        + ", ".join(f"{c:,} columns {v / 1e6:.1f} M/s" for c, v in scaling.items())
    )
    cold = cold_start()
    print(f"cold start (new process, imports + first run): {cold:.2f} s")
    out = {
        "speedup_vs_vectorbt": round(single["vectorbt_s"] / single["engine_lean_s"], 2),
        "bar_columns_per_second": round(grid["bar_columns_per_second"]),
        "ratio_to_numpy_floor": round(single["engine_s"] / single["numpy_s"], 2),
        "cold_start_seconds": round(cold, 3),
        "speedup_vs_vectorbt_full": round(single["vectorbt_s"] / single["engine_s"], 2),
        "ratio_to_numpy_floor_lean": round(single["engine_lean_s"] / single["numpy_s"], 2),
        "bar_columns_per_second_full": round(grid["bar_columns_per_second_full"]),
        "bar_columns_per_second_group_equity": round(grid["bar_columns_per_second_group_equity"]),
        "parallel_speedup": round(grid["parallel_speedup"], 2),
        "threads": grid["threads"],
        "lean_over_fast_kernel": round(grid["lean_over_fast_kernel"], 2),
        "lean_over_fast_kernel_parallel": round(grid["lean_over_fast_kernel_parallel"], 2),
        "engine_over_hand_loop": round(ref["engine_over_reference"], 2),
        "kernel_over_hand_loop": round(ref["kernel_over_reference"], 2),
        "bar_columns_per_second_by_columns": {str(c): round(v) for c, v in scaling.items()},
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

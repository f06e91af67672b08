"""Scale-out sweeps (issue 6): chunking, memory plans, process pool and fsspec catalogs give the
same numbers as one engine call over the whole grid with one portfolio per (symbol, params)."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pandas as pd
import pytest

from backtest.app import runs as app
from backtest.app.scale import (
    BYTES_PER_COLUMN_BAR,
    add_scale_options,
    parse_bytes,
    plan_sweep,
    run_scaled_sweep_command,
    run_sweep,
    sweep_window,
    synthetic_symbols,
    task_bytes,
    wants_scale,
    write_synthetic_catalog,
)
from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from data.errors import ConfigError
from data.loader import DataWarning, load_market
from reports.keys import COMPONENT_KEYS, SUMMARY_KEYS
from reports.metrics import column_stats


def sweep_per_symbol(*args, **kw):
    """:func:`run_sweep` with every (symbol, parameter set) its own portfolio (``per_symbol``)."""
    return run_sweep(*args, per_symbol=True, **kw)


SYMBOLS = synthetic_symbols(3) + ["LATEUSDT"]
GRID = {"entry_annualized": [0.05, 0.15], "exit_annualized": [-0.05, 0.02]}
SIGN_GRID = {"entry_annualized": [0.0, 0.1]}
CONFIG = BacktestConfig(initial_capital_quote=5_000.0, perp_leverage=3.0, slippage_bps=1.0)
COMPONENTS = tuple(COMPONENT_KEYS)  # the *_pnl summary keys


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """3 symbols x 6 days of 1-minute bars, plus one symbol that starts 2 days later and ends earlier."""
    root = tmp_path_factory.mktemp("scale") / "catalog"
    write_synthetic_catalog(root, 3, 6, seed=3)
    write_synthetic_catalog(root, 1, 3, start="2024-01-03", seed=4, symbols=["LATEUSDT"])
    return str(root)


def reference(catalog, strategy, grid, symbols=SYMBOLS):
    """One load of every symbol, one strategy call over the grid, one engine call (full outputs)."""
    from strategies import run_strategy

    start, end = sweep_window(catalog, symbols, "1m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        market = load_market(catalog, symbols, start=start, end=end, freq="1m")
    targets = run_strategy(strategy, market, grid).per_symbol()
    return market, targets, run_backtest(market, targets, CONFIG)


@pytest.fixture(scope="module")
def ref(catalog):
    return reference(catalog, "funding_threshold", GRID)


@pytest.fixture(scope="module")
def serial(catalog):
    return sweep_per_symbol(catalog, SYMBOLS, "funding_threshold", GRID, CONFIG, freq="1m")


def assert_same_as_reference(res, ref):
    market, targets, result = ref
    s = res.summary
    assert list(s["symbol"]) == list(targets.columns["symbol"])
    assert list(s["param_id"]) == list(targets.columns["param_id"])
    np.testing.assert_array_equal(s["final_equity"].to_numpy(), result.equity.iloc[-1].to_numpy())
    for key in COMPONENTS:
        np.testing.assert_array_equal(s[key].to_numpy(), result.components[COMPONENT_KEYS[key]].iloc[-1].to_numpy())
    days = market.index.floor("1D").asi8
    last = np.flatnonzero(np.r_[days[1:] != days[:-1], True])
    np.testing.assert_array_equal(res.equity.to_numpy(), result.equity.to_numpy()[last])
    assert (res.equity.index == market.index[last]).all()


def test_window_is_union_of_coverage(catalog):
    start, end = sweep_window(catalog, SYMBOLS, "1m")
    assert start == "2024-01-01T00:00:00+00:00" and end == "2024-01-07T00:00:00+00:00"
    assert sweep_window(catalog, ["LATEUSDT"], "1h") == (
        "2024-01-03T00:00:00+00:00",
        "2024-01-06T00:00:00+00:00",
    )
    # the window load_market takes without bounds
    for syms, freq in ((SYMBOLS, "1m"), (["LATEUSDT"], "1h")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = load_market(catalog, syms, freq=freq)
        step = m.index[1] - m.index[0]
        assert sweep_window(catalog, syms, freq) == (m.index[0].isoformat(), (m.index[-1] + step).isoformat())
    assert sweep_window(catalog, SYMBOLS, "1m", start="2024-01-02", end="2024-01-04") == (
        "2024-01-02T00:00:00+00:00",
        "2024-01-04T00:00:00+00:00",
    )


def test_minute_loader_on_synthetic_catalog(catalog):
    m = load_market(catalog, synthetic_symbols(2), freq="1m")
    assert m.n_bars == 6 * 1440 and m.valid.all()
    assert (m.funding_count.sum(axis=0) == 6 * 3).all()  # every 8 h; the last settles at the last bar's close
    h = load_market(catalog, synthetic_symbols(2), freq="1h")
    np.testing.assert_array_equal(h.funding_rate.sum(axis=0), m.funding_rate.sum(axis=0))
    np.testing.assert_array_equal(h.spot_close, m.spot_close[59::60])


def test_serial_sweep_equals_single_engine_call(serial, ref):
    assert serial.plan.n_tasks == 1
    assert len(serial.summary) == 4 * len(SYMBOLS)
    assert serial.summary["n_trades"].sum() > 0
    assert_same_as_reference(serial, ref)


def test_figures_match_column_stats(serial, ref):
    market, targets, result = ref
    full = column_stats(result)
    assert serial.summary["worst_margin_ratio"].notna().any()  # margin figures in scale-out too
    for key in SUMMARY_KEYS:
        np.testing.assert_allclose(
            serial.summary[key].to_numpy(float),
            full[key].to_numpy(float),
            rtol=1e-12,
            atol=1e-12,
            equal_nan=True,
            err_msg=key,
        )


@pytest.mark.parametrize("symbol_chunk,param_chunk,budget", [(1, 1, None), (3, 3, None), (2, 4, "12MB"), (1, 2, "8MB")])
def test_chunked_sweeps_are_identical(catalog, ref, serial, symbol_chunk, param_chunk, budget):
    res = sweep_per_symbol(
        catalog,
        SYMBOLS,
        "funding_threshold",
        GRID,
        CONFIG,
        freq="1m",
        symbol_chunk=symbol_chunk,
        param_chunk=param_chunk,
        max_memory_bytes=budget,
    )
    assert res.plan.symbol_chunk == symbol_chunk and res.plan.param_chunk == param_chunk
    if budget:
        assert res.plan.task_bytes <= parse_bytes(budget)
        assert res.plan.engine_batch < symbol_chunk * param_chunk  # the budget split the engine calls
    assert_same_as_reference(res, ref)
    pd.testing.assert_frame_equal(res.summary, serial.summary)


def test_reverse_carry_and_borrow_chunk_invariant(catalog):
    market, targets, result = reference(catalog, "funding_sign", SIGN_GRID)
    res = sweep_per_symbol(
        catalog, SYMBOLS, "funding_sign", SIGN_GRID, CONFIG, freq="1m", symbol_chunk=1, param_chunk=1
    )
    assert (res.summary["borrow_pnl"] < 0).any()
    assert_same_as_reference(res, (market, targets, result))
    full = column_stats(result)
    np.testing.assert_array_equal(res.summary["time_in_market"].to_numpy(), full["time_in_market"].to_numpy())


def test_process_pool_equals_serial(catalog, serial):
    res = sweep_per_symbol(catalog, SYMBOLS, "funding_threshold", GRID, CONFIG, freq="1m", workers=2, symbol_chunk=2)
    assert res.meta["mode"] == "processes[2]"
    assert len({t["pid"] for t in res.meta["tasks"]}) >= 1
    pd.testing.assert_frame_equal(res.summary, serial.summary)
    pd.testing.assert_frame_equal(res.equity, serial.equity)


def test_fsspec_catalog_url(catalog, serial, tmp_path, monkeypatch):
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    fs.put(catalog, "/carry-test-catalog", recursive=True)
    monkeypatch.setenv("CARRY_CACHE", str(tmp_path / "cache"))
    res = sweep_per_symbol(
        "memory://carry-test-catalog", SYMBOLS, "funding_threshold", GRID, CONFIG, freq="1m", symbol_chunk=2
    )
    pd.testing.assert_frame_equal(res.summary, serial.summary)
    staged = sorted(p.name for p in (tmp_path / "cache").rglob("*.parquet"))
    assert len(staged) == len(SYMBOLS) * 4  # spot, perp, mark, funding of the task's symbols only
    assert res.meta["tasks"][0]["stage_seconds"] > 0


def test_plan_respects_budget():
    n = 525_600
    plan = plan_sweep(n, 100, 100, budget_per_task=parse_bytes("4GB"), min_tasks=4)
    assert plan.task_bytes <= 4e9 and plan.engine_batch >= 1
    assert plan.param_chunk == 100  # every parameter set in one task: each symbol is loaded once
    assert task_bytes(n, plan.symbol_chunk, plan.engine_batch + plan.symbol_chunk) > 4e9  # as wide as it fits
    assert plan.n_tasks == -(-100 // plan.symbol_chunk)
    with pytest.raises(ConfigError, match="too small"):  # time chunks not allowed
        plan_sweep(n, 10, 10, symbol_chunk=5, budget_per_task=5 * n * BYTES_PER_COLUMN_BAR, time_chunk_bars=0)
    cut = plan_sweep(n, 10, 10, symbol_chunk=5, budget_per_task=5 * n * BYTES_PER_COLUMN_BAR)  # cuts time instead
    assert 0 < cut.time_chunk_bars < n and cut.task_bytes <= 5 * n * BYTES_PER_COLUMN_BAR
    assert plan_sweep(100, 7, 3).engine_batch == 21


def test_parse_bytes():
    assert parse_bytes("4GB") == 4 * 10**9 and parse_bytes("512MiB") == 512 * 2**20 and parse_bytes(1e6) == 10**6
    with pytest.raises(ConfigError):
        parse_bytes("lots")


def shared_reference(catalog, strategy, grid, freq):
    """One load, one strategy call, one engine call with full outputs: a parameter set's
    symbols share the capital (what ``carry sweep`` computes in one process)."""
    from strategies import run_strategy

    start, end = sweep_window(catalog, SYMBOLS, freq)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        market = load_market(catalog, SYMBOLS, start=start, end=end, freq=freq)
    targets = run_strategy(strategy, market, grid)
    return market, targets, run_backtest(market, targets, CONFIG)


def assert_close_frames(got: pd.DataFrame, want: pd.DataFrame, keys=SUMMARY_KEYS) -> None:
    for key in keys:
        np.testing.assert_allclose(
            got[key].to_numpy(float), want[key].to_numpy(float), rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=key
        )


SHARED_CASES = {
    "threshold_1m": ("funding_threshold", GRID, "1m", {"time_chunk": "1D", "warmup": "3D", "workers": 2}),
    "rotation_1h": ("rotation", {"top_k": [1, 2], "rebalance_hours": [24]}, "1h", {"time_chunk": "2D", "warmup": "2D"}),
}


@pytest.mark.parametrize("name", list(SHARED_CASES))
def test_shared_capital_sweep_equals_one_run(catalog, name):
    """The memory-bounded path with portfolios of all symbols sharing capital (the default), in
    time chunks and on 2 processes: the figures per portfolio and per column, the sampled equity,
    the daily components and the fills equal one in-process run's."""
    from reports.metrics import stats_frame

    strategy, grid, freq, kw = SHARED_CASES[name]
    market, targets, result = shared_reference(catalog, strategy, grid, freq)
    res = run_sweep(catalog, SYMBOLS, strategy, grid, CONFIG, freq=freq, **kw)
    n_sets = len(res.portfolios)
    assert res.plan.symbol_chunk == len(SYMBOLS) and res.plan.time_chunk_bars > 0
    assert res.meta["per_symbol"] is False and len(res.summary) == n_sets * len(SYMBOLS)
    assert list(res.summary["column"]) == list(range(len(res.summary)))
    assert list(res.summary["symbol"]) == list(targets.columns["symbol"])
    assert list(res.summary["portfolio"]) == list(targets.columns["group"])
    want_p, want_c = stats_frame(result), column_stats(result)
    assert want_p["n_trades"].sum() > 0
    assert_close_frames(res.portfolios, want_p.reset_index(drop=True))
    assert_close_frames(res.summary, want_c)
    np.testing.assert_allclose(res.summary["initial_capital"], CONFIG.initial_capital_quote / len(SYMBOLS))
    days = market.index.floor("1D").asi8
    last = np.flatnonzero(np.r_[days[1:] != days[:-1], True])
    np.testing.assert_allclose(res.group_equity.to_numpy(), result.group_equity.to_numpy()[last], rtol=1e-12)
    np.testing.assert_allclose(res.equity.to_numpy(), result.equity.to_numpy()[last], rtol=1e-12)
    for key, name_ in COMPONENT_KEYS.items():
        per_day = result.components[name_].groupby(market.index.floor("1D")).last().diff()
        per_day.iloc[0] = result.components[name_].groupby(market.index.floor("1D")).last().iloc[0]
        np.testing.assert_allclose(res.components[key].to_numpy(), per_day.to_numpy(), rtol=1e-9, atol=1e-9)
    want_ev = result.events[result.events["kind"].isin(["fill", "transfer", "liquidation", "stop", "skip"])]
    got_ev = res.events
    assert len(got_ev) == len(want_ev) > 0
    for c in ("bar", "column", "kind", "leg"):
        assert list(got_ev[c]) == list(want_ev[c]), c
    np.testing.assert_allclose(got_ev["cash"].to_numpy(), want_ev["cash"].to_numpy(), rtol=1e-9, atol=1e-9)
    assert list(got_ev["portfolio"]) == list(want_ev["group"])
    cov = res.coverage["symbols"]
    assert cov[SYMBOLS[0]]["bars"] == int(market.tradable[:, 0].sum())
    assert cov[SYMBOLS[0]]["settlements_used"] == int(market.funding_count[market.tradable[:, 0], 0].sum())


def test_shared_capital_time_chunks_extend_the_stale_symbols(catalog):
    """A hysteresis held for good (an exit no signal reaches) in portfolios of all symbols cut
    into 1-day chunks: the symbols whose warm-up does not reproduce the previous chunk's targets
    get more history, alone, and every figure still equals one run's."""
    from reports.metrics import stats_frame

    grid = {"entry_annualized": [0.1, 0.2, 0.3, 0.5], "exit_annualized": [-1.0], "window_settlements": [3]}
    market, targets, result = shared_reference(catalog, "funding_threshold", grid, "1m")
    res = run_sweep(catalog, SYMBOLS, "funding_threshold", grid, CONFIG, freq="1m", time_chunk="1D")
    assert sum(t["warmups_extended_alone"] for t in res.meta["tasks"]) > 0
    assert result.events["kind"].eq("fill").sum() > 0
    assert_close_frames(res.portfolios, stats_frame(result).reset_index(drop=True))
    assert_close_frames(res.summary, column_stats(result))


def test_symbol_chunks_need_per_symbol(catalog):
    with pytest.raises(ConfigError, match="--per-symbol"):
        run_sweep(catalog, SYMBOLS, "funding_threshold", GRID, CONFIG, freq="1m", symbol_chunk=1)


def run_command(catalog, out, flags, freq, per_symbol=False):
    """``carry sweep`` with scale-out ``flags`` on a two-set funding_threshold grid."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    add_scale_options(parser)
    args = parser.parse_args(["--out", str(out), *flags])
    assert wants_scale(args)
    args.quiet, args.overwrite, args.rank_by = True, False, "sharpe"
    spec = app.StrategySpec("funding_threshold", {"entry_annualized": [0.05, 0.15], "exit_annualized": 0.0})
    cfg = app.build_run_config(
        data_overrides={"catalog": catalog, "symbols": ",".join(SYMBOLS), "freq": freq},
        engine_overrides=CONFIG.to_dict(),
        strategies=[spec],
        per_symbol=per_symbol or None,
    )
    return run_scaled_sweep_command(args, cfg)


RUN_FILES = ["components.parquet", "config.toml", "equity.parquet", "events.parquet", "report.html", "summary.json"]


@pytest.mark.parametrize("per_symbol", [False, True])
def test_command_writes_outputs(catalog, tmp_path, capsys, per_symbol):
    out = tmp_path / "run"
    flags = ["--max-memory", "1GB"] + (["--symbol-chunk", "2"] if per_symbol else [])
    assert run_command(catalog, out, flags, "1h", per_symbol) == 0
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES  # the files of a run in one process
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["lean"]) == {
        "equity.parquet",
        "components.parquet",
        "events.parquet",
        "report.html",
        "trades.parquet",
    }
    assert summary["components_granularity"] == "day" and summary["scale"]["per_symbol"] is per_symbol
    assert len(summary["columns"]) == 2 * len(SYMBOLS)
    assert len(summary["portfolios"]) == (2 * len(SYMBOLS) if per_symbol else 2)
    assert summary["plan"]["symbol_chunk"] == (2 if per_symbol else len(SYMBOLS))
    label = summary["portfolios"][0]["portfolio"]
    assert label.startswith("funding_threshold[entry_annualized=") and label.endswith(f":{SYMBOLS[0]}") is per_symbol
    equity = pd.read_parquet(out / "equity.parquet")
    assert equity.shape == (6, len(summary["portfolios"]) + 2 * len(SYMBOLS))
    assert list(equity.columns[: len(summary["portfolios"])]) == [
        f"portfolio:{p['portfolio']}" for p in summary["portfolios"]
    ]
    printed = capsys.readouterr().out
    assert "bar-columns/s" in printed and label in printed


# --------------------------------------------------------------------------- time chunks
_COIN = np.random.default_rng(0)


def coin_flips(market, params):
    """Targets that differ from call to call: no amount of history reproduces them."""
    return _COIN.choice([0.0, 1.0], market.shape)


def assert_figures_equal(res, serial):
    for key in serial.summary.columns:
        a, b = serial.summary[key], res.summary[key]
        if a.dtype.kind == "f":  # Sharpe and Sortino merge chunk variances: equal to rounding
            np.testing.assert_allclose(b.to_numpy(), a.to_numpy(), rtol=1e-12, atol=0, equal_nan=True, err_msg=key)
        else:
            assert a.equals(b), key


@pytest.mark.parametrize("time_chunk,symbol_chunk", [("1D", None), ("2D", 1), (1000, 2)])
def test_time_chunked_sweep_equals_one_pass(catalog, ref, serial, time_chunk, symbol_chunk):
    res = sweep_per_symbol(
        catalog, SYMBOLS, "funding_threshold", GRID, CONFIG, freq="1m", time_chunk=time_chunk, symbol_chunk=symbol_chunk
    )
    bars = {"1D": 1440, "2D": 2880}.get(time_chunk, time_chunk)
    assert res.plan.time_chunk_bars == bars and res.plan.warmup_bars == int(1.25 * 72 * 60) + 64
    assert {t["time_chunks"] for t in res.meta["tasks"]} == {-(-6 * 1440 // bars)}
    assert_same_as_reference(res, ref)  # final equity, components and sampled equity: exactly
    assert_figures_equal(res, serial)


def test_time_chunked_reverse_carry_equals_one_pass(catalog):
    market, targets, result = reference(catalog, "funding_sign", SIGN_GRID)
    whole = sweep_per_symbol(catalog, SYMBOLS, "funding_sign", SIGN_GRID, CONFIG, freq="1m")
    res = sweep_per_symbol(
        catalog, SYMBOLS, "funding_sign", SIGN_GRID, CONFIG, freq="1m", time_chunk="1D", symbol_chunk=2
    )
    assert (res.summary["borrow_pnl"] < 0).any()
    assert_same_as_reference(res, (market, targets, result))
    assert_figures_equal(res, whole)


def test_memory_budget_cuts_time(catalog, serial):
    plan = plan_sweep(525_600, 100, 100, budget_per_task=parse_bytes("300MB"), warmup_bars=5_464)
    assert 0 < plan.time_chunk_bars < 525_600 and plan.task_bytes <= 300e6 and plan.warmup_bars == 5_464
    assert plan_sweep(525_600, 100, 100, budget_per_task=parse_bytes("4GB")).time_chunk_bars == 0
    with pytest.raises(ConfigError, match="too few"):
        plan_sweep(525_600, 1, 1, budget_per_task=parse_bytes("2MB"), warmup_bars=5_000)
    res = sweep_per_symbol(
        catalog, SYMBOLS, "funding_threshold", GRID, CONFIG, freq="1m", max_memory_bytes="8MB", warmup="4D"
    )
    assert 0 < res.plan.time_chunk_bars < 6 * 1440 and res.plan.task_bytes <= 8e6
    assert max(t["time_chunks"] for t in res.meta["tasks"]) > 1
    assert_figures_equal(res, serial)
    pd.testing.assert_frame_equal(res.equity, serial.equity)


def test_time_chunks_refuse_a_short_warmup(catalog):
    with pytest.raises(ConfigError, match="shorter than strategy 'funding_threshold''s lookback of 72 hours"):
        sweep_per_symbol(catalog, SYMBOLS, "funding_threshold", GRID, CONFIG, freq="1m", time_chunk="1D", warmup="1D")
    with pytest.raises(ConfigError, match="even with all the history from the window start"):
        sweep_per_symbol(catalog, SYMBOLS[:1], coin_flips, None, CONFIG, freq="1m", time_chunk="1D", warmup=200)
    with pytest.raises(ConfigError, match="time_chunk"):
        sweep_per_symbol(catalog, SYMBOLS[:1], "always_carry", None, CONFIG, freq="1m", time_chunk="soon")


def test_command_time_chunk_option(catalog, tmp_path):
    assert run_command(catalog, tmp_path / "run", ["--time-chunk", "2D", "--warmup", "4D"], "1m") == 0
    plan = json.loads((tmp_path / "run" / "summary.json").read_text())["plan"]
    assert plan["time_chunk_bars"] == 2 * 1440 and plan["warmup_bars"] == 4 * 1440


def test_time_chunks_extend_the_warmup_until_the_targets_agree(catalog):
    """Hysteresis with an exit no signal reaches: a position entered once is held for good, a
    state older than any warm-up. Where a chunk's warm-up does not reproduce it, the batch
    gets more history (up to the window start) and the results equal one pass."""
    grid = {"entry_annualized": [0.1, 0.2, 0.3, 0.5], "exit_annualized": [-1.0], "window_settlements": [3]}
    whole = sweep_per_symbol(catalog, SYMBOLS, "funding_threshold", grid, CONFIG, freq="1m")
    res = sweep_per_symbol(catalog, SYMBOLS, "funding_threshold", grid, CONFIG, freq="1m", time_chunk="1D")
    assert res.plan.warmup_bars == int(1.25 * 24 * 60) + 64
    assert sum(t["warmups_extended"] for t in res.meta["tasks"]) > 0
    assert whole.summary["n_trades"].sum() > 0
    assert_figures_equal(res, whole)
    pd.testing.assert_frame_equal(res.equity, whole.equity)
    with pytest.raises(ConfigError, match="does not fit the memory budget"):  # history the budget cannot hold
        sweep_per_symbol(
            catalog,
            SYMBOLS,
            "funding_threshold",
            grid,
            CONFIG,
            freq="1m",
            time_chunk="1D",
            max_memory_bytes="4MB",
            symbol_chunk=1,
        )

"""The structure-of-arrays kernel (:mod:`backtest.kernels.soa`) equals the fast one, bit for bit.

Random lean grids of one-column isolated portfolios on one symbol (carry, reverse carry and flat
targets; liquidations of the perp and of the borrowed spot leg's margin account, every
after-liquidation policy, funding, borrow, delays 0/1/2, invalid bars, rebalancing schedules and
bands, delta bands, weights, per-column parameters, tiers, lots and order minimums) go through ``kernel="fast"`` and
``kernel="soa"``: every output, the events and the final engine state must be identical (which
implies the 1e-12 relative agreement asked for). Also: the benchmark grid, several tiles of
portfolios in one call (events merged back into bar order), resumed runs, and where
``kernel="auto"`` picks it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backtest import engine
from backtest.app.bench import grid_inputs
from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from backtest.kernels import soa
from backtest.targets import Targets
from data.errors import ConfigError
from data.synthetic import benchmark_market, random_market
from tests.reference_engine import assert_identical
from tests.test_engine_fast import random_isolated_config, single_column_targets
from tests.test_engine_reference import write_markets
from tests.test_engine_resume import random_cuts, run_chunked

LEAN_OUTPUTS = [None, ("equity",), ("group_equity",), ()]


def one_symbol(tg, market, rng):
    """``tg`` with every column on one (random) symbol of ``market``, portfolios in column order."""
    sym = int(rng.integers(0, market.n_symbols))
    n = tg.values.shape[1]
    cols = tg.columns.assign(symbol=market.symbols[sym], group=np.arange(n))
    return Targets(tg.values, np.full(n, sym, np.int64), np.arange(n), cols, tg.weights)


def random_case(seed, tmp_path):
    rng = np.random.default_rng(5000 + seed)
    T = int(rng.integers(2, 400)) if seed % 5 else int(rng.integers(600, 1600))  # (several time chunks)
    m = random_market(
        rng,
        T,
        int(rng.integers(1, 3)),
        vol=float(rng.choice([0.01, 0.03, 0.06])),
        wick=float(rng.choice([0.02, 0.06, 0.15])),
        invalid_frac=float(rng.choice([0.0, 0.05, 0.2])),
        funding_every=int(rng.integers(1, 9)),
    )
    n_cols = int(rng.choice([1, 3, 17, 70, 150]))
    tg = single_column_targets(
        m, rng, n_cols, p_change=float(rng.choice([0.01, 0.1, 0.4])), weights=rng.random() < 0.3, in_order=True
    )
    tg = one_symbol(tg, m, rng)
    cfg = random_isolated_config(rng, seed, m, tmp_path, delay_period=7)
    if seed % 3 == 1:  # lots and order minimums (the rebalancing check's test of them)
        lot, min_notional = [(0.01, 5.0), (0.1, 200.0)][(seed // 3) % 2]
        path = tmp_path / f"markets{seed}.json"
        write_markets(path, m.symbols, lot, min_notional)
        cfg = dataclasses.replace(cfg, markets_path=str(path))
    params = {}
    k = rng.integers(0, 4)
    if k == 1:
        params["perp_leverage"] = rng.choice([1.0, 3.0, 20.0, 50.0], n_cols)
    elif k == 2:  # per-bar parameters the soa kernel reads only in the general part
        params["slippage_bps"] = rng.uniform(0.0, 3.0, (m.n_bars, 1))
        params["clearance_fee_rate"] = rng.uniform(0.0, 0.02, (m.n_bars, n_cols))
        params["borrow_annual_rate"] = rng.uniform(0.0, 1.0, n_cols)
    elif k == 3:
        params["perp_leverage"] = rng.uniform(1.0, 30.0, n_cols)
        params["clearance_fee_rate"] = rng.uniform(0.0, 0.02, n_cols)
        params["rebalance_delta_band"] = rng.choice([0.0, 0.01, np.inf], n_cols)
        params["rebalance_notional_band"] = rng.choice([0.0, 0.02, np.inf], n_cols)
        params["rebalance_every_hours"] = rng.choice([1.0, 6.0, np.inf], n_cols)
    return m, tg, cfg, params


N_SEEDS = 60


@pytest.mark.parametrize("seed", range(N_SEEDS))
def test_soa_kernel_equals_fast(tmp_path, seed):
    m, tg, cfg, params = random_case(seed, tmp_path)
    outputs = LEAN_OUTPUTS[seed % len(LEAN_OUTPUTS)]
    kw = {"full": False} if outputs is None else {"outputs": outputs}
    a = run_backtest(m, tg, cfg, column_params=params, kernel="fast", **kw)
    b = run_backtest(m, tg, cfg, column_params=params, kernel="soa", **kw)
    assert a.kernel == "fast" and b.kernel == "soa"
    assert_identical(a, b)


def test_soa_cases_cover_every_event_kind(tmp_path):
    kinds = set()
    spot_liq = 0
    for seed in range(0, N_SEEDS, 3):
        m, tg, cfg, params = random_case(seed, tmp_path)
        ev = run_backtest(m, tg, cfg, column_params=params, full=False, kernel="soa").events
        kinds |= set(ev["kind"])
        spot_liq += int(((ev["kind"] == "liquidation") & (ev["leg"] == "spot")).sum())
    assert kinds >= {"fill", "transfer", "liquidation", "stop"}  # (a stop: the seeds compared above)
    assert spot_liq > 0


def test_soa_kernel_on_the_benchmark_grid():
    m = benchmark_market(600, 1, "1h", seed=2)
    tg, params, cfg = grid_inputs(m, 300)
    a = run_backtest(m, tg, cfg, column_params=params, full=False, kernel="fast")
    b = run_backtest(m, tg, cfg, column_params=params, full=False)
    assert b.kernel == "soa"  # what kernel="auto" picks for such a grid
    assert_identical(a, b)
    assert (b.events["kind"] == "fill").sum() > 100


def test_soa_kernel_several_tiles(monkeypatch):
    """More portfolios than a tile in one call: the tiles' events merged back into bar order."""
    m = benchmark_market(40, 1, "1h", seed=3)
    tg, params, cfg = grid_inputs(m, soa.TILE + 300)
    monkeypatch.setattr(engine, "FAST_BLOCK_GROUPS", 10**9)
    a = run_backtest(m, tg, cfg, column_params=params, full=False, kernel="fast")
    b = run_backtest(m, tg, cfg, column_params=params, full=False, kernel="soa")
    assert_identical(a, b)
    monkeypatch.setattr(engine, "_record_capacity", lambda *args, **kw: 3)  # short buffer: rerun
    assert_identical(a, run_backtest(m, tg, cfg, column_params=params, full=False, kernel="soa"))


@pytest.mark.parametrize("seed", range(0, N_SEEDS, 6))
def test_soa_kernel_resumes(tmp_path, seed):
    m, tg, cfg, params = random_case(seed, tmp_path)
    params = {k: v for k, v in params.items() if not (np.ndim(v) == 2 and np.shape(v)[0] > 1)}
    whole = run_backtest(m, tg, cfg, column_params=params, full=False, kernel="fast")
    cuts = random_cuts(np.random.default_rng(seed), m.n_bars, 3)
    assert_identical(whole, run_chunked(m, tg, cfg, cuts, column_params=params, full=False, kernel="soa"))


def test_soa_kernel_short_event_buffer(tmp_path, monkeypatch):
    m, tg, cfg, params = random_case(4, tmp_path)
    a = run_backtest(m, tg, cfg, column_params=params, full=False, kernel="fast")
    monkeypatch.setattr(engine, "_record_capacity", lambda *args, **kw: 3)
    b = run_backtest(m, tg, cfg, column_params=params, full=False, kernel="soa")
    assert len(b.records) > 3
    assert_identical(a, b)


def test_soa_kernel_choice(tmp_path):
    rng = np.random.default_rng(3)
    m = random_market(rng, 50, 2)
    small = one_symbol(single_column_targets(m, rng, 3, p_change=0.1, weights=False, in_order=True), m, rng)
    big = one_symbol(
        single_column_targets(m, rng, engine.SOA_MIN_GROUPS, p_change=0.1, weights=False, in_order=True), m, rng
    )
    cfg = BacktestConfig()
    assert run_backtest(m, small, cfg, full=False).kernel == "fast"  # too few portfolios
    assert run_backtest(m, big, cfg, full=False).kernel == "soa"
    assert run_backtest(m, big, cfg).kernel == "fast"  # full outputs
    threads = run_backtest(m, big, cfg, full=False, parallel=2)  # chunks of portfolios on threads
    assert threads.kernel == "soa"
    assert_identical(threads, run_backtest(m, big, cfg, full=False, kernel="fast"))
    assert run_backtest(m, big, cfg, full=False, kernel="fast").kernel == "fast"
    assert run_backtest(m, small, cfg, full=False, kernel="soa").kernel == "soa"
    mixed = single_column_targets(m, rng, 80, p_change=0.1, weights=False, in_order=True)
    if len(set(mixed.column_symbol)) > 1:  # several symbols: not the soa kernel's
        assert run_backtest(m, mixed, cfg, full=False).kernel == "fast"
    shuffled = single_column_targets(m, rng, 80, p_change=0.1, weights=False)  # portfolios out of column order
    assert run_backtest(m, shuffled, cfg, full=False).kernel == "fast"
    per_bar = {"rebalance_notional_band": np.full((m.n_bars, 1), 0.1)}
    assert run_backtest(m, big, cfg, column_params=per_bar, full=False).kernel == "fast"
    with pytest.raises(ConfigError):
        run_backtest(m, big, cfg, kernel="soa")  # full outputs
    with pytest.raises(ConfigError):
        run_backtest(m, big, BacktestConfig(margin_mode="cross"), full=False, kernel="soa")

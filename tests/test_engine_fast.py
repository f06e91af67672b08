"""The specialised one-column isolated kernel (:mod:`backtest.kernels.fast`) equals the general one.

Random single-column isolated portfolios (liquidations of the perp and of the borrowed spot
leg's margin account, funding, borrow, delays 0/1/2, invalid bars, every after-liquidation
policy and cool-down, rebalancing schedules and bands, delta bands, weights, per-bar parameters,
tiers, output subsets, parallel runs) go through ``kernel="general"`` and ``kernel="fast"``;
every output and the events table must be identical (bit for bit, which implies the 1e-12
relative agreement asked for).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.engine import OUTPUTS, run_backtest
from backtest.targets import Targets
from data.errors import ConfigError
from data.market import Market
from data.synthetic import random_market, write_tiers
from tests.reference_engine import assert_identical


def single_column_targets(market, rng, n_cols, p_change, weights, in_order=False):
    """One column per portfolio; groups in another order than the columns unless ``in_order``
    (then the engine serves portfolio equity from the column equity, see run_backtest)."""
    T = market.n_bars
    vals = rng.choice([-1.0, -0.5, 0.0, 0.3, 1.0], size=(T, n_cols))
    vals = np.where(rng.random((T, n_cols)) < p_change, vals, np.nan)
    vals[0] = rng.choice([-1.0, 1.0, 0.5, np.nan], n_cols)
    col_symbol = rng.integers(0, market.n_symbols, n_cols)
    group = (np.arange(n_cols) if in_order else rng.permutation(n_cols)) * 3 + 7
    table = pd.DataFrame(
        {
            "strategy": ["rand"] * n_cols,
            "symbol": [market.symbols[k] for k in col_symbol],
            "group": group,
            "k": np.arange(n_cols),
        }
    )
    w = None
    if weights:
        w = rng.uniform(0.2, 1.0, (T, n_cols))
        w[rng.random((T, n_cols)) < 0.05] = 0.0
    return Targets(vals, col_symbol, group, table, w)


def random_isolated_config(rng, seed, market, tmp_path, delay_period=9):
    """A random isolated-margin config of the fast kernel's scope for case ``seed``: every
    desk rule, fee, slippage and after-liquidation policy in turn, tiers on even seeds (a file
    in ``tmp_path``), the execution delay changing every ``delay_period`` seeds."""
    tiers = seed % 2 == 0
    return BacktestConfig(
        perp_leverage=float(rng.choice([1.0, 2.0, 10.0, 25.0, 50.0])),
        margin_mode="isolated",
        slippage_bps=float(rng.choice([0.0, 1.0, 5.0])),
        volume_participation_coefficient=float(rng.choice([0.0, 0.01])),
        rebalance_delta_band=[None, 0.02, 0.0][seed % 3],
        after_liquidation=["close_spot", "hold_spot", "reenter", "close_and_reenter"][(seed // 3) % 4],
        reentry_cooldown_hours=float(rng.choice([0.0, 3.0, 24.0])),
        rebalance_every_hours=[24.0, None, None, 4.0][seed % 4],
        rebalance_notional_band=[0.1, None, 0.05, None][seed % 4],
        spot_margin_liquidation_level=float(rng.choice([1.1, 1.5, 1.9])),
        execution_delay_bars=[1, 0, 2][(seed // delay_period) % 3],
        allow_same_bar_execution=True,
        order_type=["taker", "maker"][seed % 2],
        tiers_path=write_tiers(tmp_path / f"tiers{seed}.json", market.symbols) if tiers else None,
        maintenance_margin_rate=None if tiers else float(rng.choice([0.005, 0.01, 0.05])),
        clearance_fee_rate=float(rng.choice([0.0, 0.01])),
        borrow_annual_rate=float(rng.choice([0.0, 0.3])),
    )


def random_case(seed, tmp_path):
    rng = np.random.default_rng(1000 + seed)
    T = int(rng.integers(2, 400)) if seed % 7 else int(rng.integers(600, 1600))  # (several time chunks)
    m = random_market(
        rng,
        T,
        int(rng.integers(1, 4)),
        vol=float(rng.choice([0.01, 0.03, 0.06])),
        wick=float(rng.choice([0.02, 0.06, 0.15])),
        invalid_frac=float(rng.choice([0.0, 0.05, 0.2])),
        funding_every=int(rng.integers(1, 9)),
    )
    n_cols = int(rng.integers(1, 40))
    tg = single_column_targets(
        m,
        rng,
        n_cols,
        p_change=float(rng.choice([0.01, 0.1, 0.4])),
        weights=rng.random() < 0.3,
        in_order=(seed // 2) % 2 == 1,
    )
    cfg = random_isolated_config(rng, seed, m, tmp_path)
    params = {}
    k = rng.integers(0, 4)
    if k == 1:
        params["perp_leverage"] = rng.choice([1.0, 3.0, 20.0, 50.0], n_cols)
    elif k == 2:
        params["borrow_annual_rate"] = rng.uniform(0.0, 1.0, (m.n_bars, n_cols))
        params["slippage_bps"] = rng.uniform(0.0, 3.0, (m.n_bars, 1))
    elif k == 3:
        params["perp_leverage"] = rng.uniform(1.0, 30.0, (m.n_bars, n_cols))
        params["clearance_fee_rate"] = rng.uniform(0.0, 0.02, n_cols)
        params["rebalance_delta_band"] = rng.choice([0.0, 0.01, np.inf], n_cols)
        params["rebalance_notional_band"] = rng.choice([0.0, 0.02, np.inf], n_cols)
        params["rebalance_every_hours"] = rng.choice([1.0, 6.0, np.inf], n_cols)
    return m, tg, cfg, params


N_SEEDS = 81


@pytest.mark.parametrize("seed", range(N_SEEDS))
def test_fast_kernel_equals_general(tmp_path, seed):
    m, tg, cfg, params = random_case(seed, tmp_path)
    a = run_backtest(m, tg, cfg, column_params=params, kernel="general")
    b = run_backtest(m, tg, cfg, column_params=params)
    assert a.kernel == "general" and b.kernel == "fast"
    assert_identical(a, b)


def test_fast_cases_cover_every_event_kind(tmp_path):
    liq = 0
    spot_liq = 0
    kinds = set()
    for seed in range(0, N_SEEDS, 4):
        m, tg, cfg, params = random_case(seed, tmp_path)
        ev = run_backtest(m, tg, cfg, column_params=params).events
        kinds |= set(ev["kind"])
        liq += int((ev["kind"] == "liquidation").sum())
        spot_liq += int(((ev["kind"] == "liquidation") & (ev["leg"] == "spot")).sum())
    assert kinds >= {"fill", "funding", "borrow", "transfer", "liquidation"}
    assert liq > 0
    assert spot_liq > 0


@pytest.mark.parametrize("seed", range(0, N_SEEDS, 5))
@pytest.mark.parametrize(
    "outputs",
    [("equity",), ("group_equity",), ("group_equity", "events"), ("margin",), ("components", "positions"), ()],
)
def test_fast_kernel_output_subsets(tmp_path, seed, outputs):
    m, tg, cfg, params = random_case(seed, tmp_path)
    a = run_backtest(m, tg, cfg, column_params=params, outputs=outputs, kernel="general")
    b = run_backtest(m, tg, cfg, column_params=params, outputs=outputs, kernel="fast")
    assert_identical(a, b)


@pytest.mark.parametrize("seed", range(0, N_SEEDS, 3))
@pytest.mark.parametrize("parallel", [True, 3])
def test_fast_kernel_parallel(tmp_path, seed, parallel):
    m, tg, cfg, params = random_case(seed, tmp_path)
    a = run_backtest(m, tg, cfg, column_params=params, kernel="general")
    b = run_backtest(m, tg, cfg, column_params=params, parallel=parallel)
    c = run_backtest(m, tg, cfg, column_params=params, full=False, parallel=parallel)
    d = run_backtest(m, tg, cfg, column_params=params, full=False, kernel="general")
    assert b.kernel == "fast"
    assert_identical(a, b)
    assert_identical(c, d)


def test_fast_kernel_long_chunks(tmp_path):
    """Many columns over several time chunks (events re-sorted by bar across columns)."""
    rng = np.random.default_rng(7)
    m = random_market(rng, 1500, 2, vol=0.02, wick=0.08, invalid_frac=0.03, funding_every=4)
    tg = single_column_targets(m, rng, 25, p_change=0.02, weights=False)
    cfg = BacktestConfig(
        perp_leverage=20.0,
        maintenance_margin_rate=0.01,
        borrow_annual_rate=0.3,
        after_liquidation="reenter",
        clearance_fee_rate=0.01,
    )
    for full in (True, False):
        a = run_backtest(m, tg, cfg, full=full, kernel="general")
        b = run_backtest(m, tg, cfg, full=full)
        assert_identical(a, b)
    assert (b.events["kind"] == "liquidation").any()


def test_kernel_choice(tmp_path):
    rng = np.random.default_rng(3)
    m = random_market(rng, 50, 2)
    tg = single_column_targets(m, rng, 3, p_change=0.1, weights=False)
    assert run_backtest(m, tg, BacktestConfig()).kernel == "fast"
    assert run_backtest(m, tg, BacktestConfig(margin_mode="cross")).kernel == "general"
    assert run_backtest(m, tg, BacktestConfig(topup_margin_ratio=0.5)).kernel == "general"
    multi = Targets(tg.values, tg.column_symbol, np.zeros(3, np.int64), tg.columns.assign(group=0))
    assert run_backtest(m, multi, BacktestConfig()).kernel == "general"
    with pytest.raises(ConfigError):
        run_backtest(m, multi, BacktestConfig(), kernel="fast")
    with pytest.raises(ConfigError):
        run_backtest(m, tg, BacktestConfig(), kernel="nope")
    assert set(OUTPUTS) >= {"events"}


@pytest.mark.parametrize("parallel", [False, 3])
def test_fast_kernel_reruns_when_the_event_buffer_is_short(tmp_path, monkeypatch, parallel):
    from backtest import engine

    m, tg, cfg, params = random_case(5, tmp_path)
    a = run_backtest(m, tg, cfg, column_params=params, kernel="general")
    monkeypatch.setattr(engine, "_record_capacity", lambda *args, **kw: 3)
    b = run_backtest(m, tg, cfg, column_params=params, parallel=parallel)
    assert b.kernel == "fast" and len(b.records) > 3
    assert_identical(a, b)


@pytest.mark.parametrize("full", [False, True])
def test_fast_group_equity_equals_general_one_column_grid(tmp_path, full):
    """One-column portfolios, groups not in column order: group equity identical bit for bit."""
    rng = np.random.default_rng(11)
    m = random_market(rng, 600, 2, vol=0.03, wick=0.06, invalid_frac=0.05, funding_every=3)
    tg = single_column_targets(m, rng, 30, p_change=0.05, weights=False)
    assert not np.all(np.diff(tg.group) > 0)
    cfg = BacktestConfig(perp_leverage=10.0, maintenance_margin_rate=0.01, borrow_annual_rate=0.2)
    a = run_backtest(m, tg, cfg, full=full, kernel="general")
    b = run_backtest(m, tg, cfg, full=full)
    assert b.kernel == "fast"
    assert list(b.group_equity.columns) == sorted(tg.group)
    assert np.array_equal(a.group_equity.to_numpy(), b.group_equity.to_numpy())
    assert_identical(a, b)


@pytest.mark.parametrize("full", [False, True])
def test_one_column_portfolio_equity_is_the_column_equity(tmp_path, full):
    """Portfolios of one column in column order share the column equity array; the kernel's own
    sum (cash + legs + futures wallet, used when the groups come in another order) agrees to 1e-12."""
    rng = np.random.default_rng(12)
    m = random_market(rng, 800, 2, vol=0.03, wick=0.08, invalid_frac=0.05, funding_every=3)
    tg = single_column_targets(m, rng, 20, p_change=0.05, weights=False, in_order=True)
    cfg = BacktestConfig(perp_leverage=10.0, maintenance_margin_rate=0.01, borrow_annual_rate=0.2)
    res = run_backtest(m, tg, cfg, full=full)
    eq, geq = res.equity.to_numpy(), res.group_equity.to_numpy()
    assert np.shares_memory(eq, geq) and np.array_equal(eq, geq)
    shuffled = tg.columns.assign(group=tg.group[::-1].copy())
    other = run_backtest(
        m, Targets(tg.values, tg.column_symbol, shuffled["group"].to_numpy(), shuffled), cfg, full=full
    )
    summed = other.group_equity[list(tg.group[::-1])].to_numpy()
    assert not np.shares_memory(other.equity.to_numpy(), other.group_equity.to_numpy())
    np.testing.assert_array_equal(other.equity.to_numpy(), eq)
    np.testing.assert_allclose(summed, geq, rtol=1e-12, atol=1e-9)
    assert (res.events["kind"] == "liquidation").any() or (res.events["kind"] == "fill").sum() > 20
    only = run_backtest(m, tg, cfg, outputs=("group_equity",))
    np.testing.assert_array_equal(only.group_equity.to_numpy(), geq)
    assert only.equity.shape[0] == 1  # not asked for: the last bar only
    np.testing.assert_array_equal(only.equity.to_numpy(), eq[-1:])


@pytest.mark.parametrize("outputs", [("equity",), ("group_equity",), ("group_equity", "events")])
def test_quiet_bars_stop_liquidation_and_rebalance(outputs):
    """The fast kernel's loop of quiet bars (``fast.quiet_bars_nb``, lean outputs) hands a bar
    whose funding takes the equity to zero back to the kernel (its stop), stops at a bar that may
    liquidate and at a rebalance due, exactly as the general kernel does; a reverse carry (a
    borrowed spot leg: the kernel's own loop, hourly borrow interest) has its margin account
    called beside them."""
    T = 400
    idx = pd.date_range("2024-01-01", periods=T, freq="h", tz="UTC")
    t = np.arange(T, dtype=float)
    spot = 100.0 * (1.0 + 0.002 * t)  # a 2x rise over the run: rebalances at the notional band
    rate = np.zeros((T, 3))
    rate[8::8] = 0.0001
    rate[300, 1] = -3.0  # column 1: one settlement that takes the whole equity (the stop at zero)
    px = np.column_stack([spot, spot, spot])
    high = px.copy()
    high[200, 0] *= 1.3  # column 0: a wick of the mark through the 5x short's liquidation price
    mark = {"open": px, "high": high, "low": px, "close": px}
    spot_high = px.copy()
    spot_high[250, 2] *= 1.6  # column 2 (reverse carry): a spot wick that calls its margin account
    spot_px = {"open": px, "high": spot_high, "low": px, "close": px}
    syms = ["AAAUSDT", "BBBUSDT", "CCCUSDT"]
    m = Market.from_arrays(idx, syms, spot=spot_px, perp=px, mark=mark, funding_rate=rate)
    vals = np.full((T, 3), np.nan)
    vals[0] = [1.0, 1.0, -1.0]
    table = pd.DataFrame({"strategy": ["hold"] * 3, "symbol": syms, "group": [0, 1, 2]})
    tg = Targets(vals, np.arange(3), np.arange(3), table)
    cfg = BacktestConfig(perp_leverage=5.0, rebalance_notional_band=0.05, borrow_annual_rate=0.2)
    a = run_backtest(m, tg, cfg, outputs=outputs, kernel="general")
    b = run_backtest(m, tg, cfg, outputs=outputs, kernel="fast")
    assert_identical(a, b)
    full = run_backtest(m, tg, cfg).events
    assert (full["kind"] == "stop").sum() == 1
    liq = full[full["kind"] == "liquidation"]
    assert sorted(zip(liq["symbol"], liq["leg"])) == [("AAAUSDT", "perp"), ("CCCUSDT", "spot")]
    assert (full[full["kind"] == "fill"]["bar"] > idx[1]).any()  # rebalances after the entry
    assert (full["kind"] == "borrow").sum() > 200

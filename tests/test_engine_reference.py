"""Kernel vs the plain-Python reference on random markets and targets (hypothesis), and the
accounting identity (README: "Accounting") at every bar."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from backtest.result import COMPONENTS
from backtest.targets import Targets
from data import synthetic
from data.synthetic import random_market, write_tiers
from tests.reference_engine import assert_identical, run_reference

CAPITAL = 10_000.0


def assert_close(a, b, what, scale=CAPITAL, rel=1e-9):
    a = np.asarray(a, float)
    b = np.asarray(b, float)
    both_nan = np.isnan(a) & np.isnan(b)
    same_inf = np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b))
    bad = ~(both_nan | same_inf) & ~(np.abs(a - b) <= rel * np.maximum(scale, np.maximum(np.abs(a), np.abs(b))))
    assert not bad.any(), (
        f"{what}: first mismatch at {np.argwhere(bad)[0]}: kernel {a[bad][0]!r} vs reference {b[bad][0]!r}"
    )


def check_identity(res, rel=1e-9):
    """group equity - initial capital == sum of the components of the group's columns, every bar."""
    total = sum(res.components[k].to_numpy() for k in COMPONENTS)
    for g in res.group_ids:
        cols = res.group_columns(g)
        lhs = res.group_equity[g].to_numpy() - res.config.initial_capital_quote
        rhs = total[:, cols].sum(axis=1)
        gross = np.abs(res.spot_qty.iloc[:, cols].to_numpy()).sum(axis=1) * 200 + CAPITAL
        assert np.all(np.abs(lhs - rhs) <= rel * gross), f"identity broken in group {g}: max {np.abs(lhs - rhs).max()}"
        # column equities add up to the wallet-based portfolio equity
        assert np.allclose(
            res.equity.iloc[:, cols].sum(axis=1).to_numpy(), res.group_equity[g].to_numpy(), rtol=1e-9, atol=1e-6
        )


def grid_targets(market, rng, n_cols, n_groups, p_change) -> Targets:
    """Random targets on ``market`` (:func:`data.synthetic.random_targets`, as Targets)."""
    return Targets(*synthetic.random_targets(market, rng, n_cols, n_groups, p_change))


def compare(market, targets, cfg, column_params=None):
    res = run_backtest(market, targets, cfg, column_params=column_params)
    if res.kernel == "fast":  # both kernels: the general one gives the same result, bit for bit
        assert_identical(res, run_backtest(market, targets, cfg, column_params=column_params, kernel="general"))
    ref = run_reference(market, targets, cfg, column_params=column_params)
    assert_close(res.group_equity.to_numpy(), ref["group_equity"], "group equity")
    for k in COMPONENTS:
        assert_close(res.components[k].to_numpy(), ref["comps"][k], k)
    assert_close(res.spot_qty.to_numpy(), ref["spot"], "spot qty", scale=1.0)
    assert_close(res.perp_qty.to_numpy(), ref["perp"], "perp qty", scale=1.0)
    assert_close(res.margin_ratio.to_numpy(), ref["margin_ratio"], "margin ratio", scale=1e-3, rel=1e-7)
    kinds = res.events["kind"].value_counts().to_dict()
    ref_kinds = pd.Series([e[2] for e in ref["events"]]).value_counts().to_dict() if ref["events"] else {}
    assert kinds == ref_kinds
    check_identity(res)
    # a liquidated column shows a margin ratio of at least 1 (at the adverse extreme of its bar)
    liq = res.events[res.events["kind"] == "liquidation"]
    worst = np.fmax.reduce(res.margin_ratio.to_numpy(), axis=0)
    for c in set(liq["column"]):
        assert worst[c] >= 1.0 - 1e-9, f"column {c} was liquidated with a worst margin ratio of {worst[c]}"
    return res


def write_markets(path, symbols, lot, min_notional):
    """A ccxt markets file (``load_markets()`` JSON) for ``symbols``: spot and linear swap of each,
    lot ``lot`` coins (TICK_SIZE precision) and minimum notional ``min_notional`` quote."""
    import json

    markets = {}
    for s in symbols:
        base = s.removesuffix("USDT")
        common = {
            "id": s,
            "base": base,
            "quote": "USDT",
            "precision": {"amount": lot, "price": 0.01},
            "limits": {"amount": {"min": lot}, "cost": {"min": min_notional}},
        }
        markets[f"{base}/USDT"] = {**common, "symbol": f"{base}/USDT", "type": "spot", "spot": True}
        markets[f"{base}/USDT:USDT"] = {
            **common,
            "symbol": f"{base}/USDT:USDT",
            "type": "swap",
            "swap": True,
            "linear": True,
            "contractSize": 1.0,
        }
    path.write_text(json.dumps(markets))
    return str(path)


CASES = dict(
    seed=st.integers(0, 2**32 - 1),
    T=st.integers(5, 60),
    N=st.integers(1, 3),
    n_cols=st.integers(1, 4),
    n_groups=st.integers(1, 2),
    leverage=st.sampled_from([0.5, 1.0, 3.0, 10.0, 25.0]),
    mode=st.sampled_from(["isolated", "cross", "portfolio"]),
    haircut=st.sampled_from([0.0, 0.05, 0.3]),
    delay=st.sampled_from([0, 1, 2]),
    slippage_bps=st.sampled_from([0.0, 3.0]),
    impact=st.sampled_from([0.0, 0.02]),
    after=st.sampled_from(["close_spot", "hold_spot", "reenter", "close_and_reenter"]),
    cooldown=st.sampled_from([0.0, 2.0, 24.0]),
    rebalance=st.sampled_from([(None, None), (None, 0.1), (4.0, None), (24.0, 0.05), (None, 0.0)]),
    spot_level=st.sampled_from([1.1, 1.6, 1.95]),
    freq=st.sampled_from(["1h", "1h", "15min", "4h"]),
    limits=st.sampled_from([None, (0.01, 5.0), (0.1, 200.0)]),
    topup=st.sampled_from([None, 0.2, 0.5]),
    topup_delay=st.integers(0, 2),
    band=st.sampled_from([None, 0.0, 0.05]),
    tiers=st.booleans(),
    invalid=st.sampled_from([0.0, 0.1]),
    order_type=st.sampled_from(["taker", "maker"]),
)


@settings(
    max_examples=int(os.environ.get("CARRY_HYPOTHESIS_EXAMPLES", 200)),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(**CASES)
def test_kernel_matches_reference(
    tmp_path_factory,
    seed,
    T,
    N,
    n_cols,
    n_groups,
    leverage,
    mode,
    haircut,
    delay,
    slippage_bps,
    impact,
    after,
    topup,
    topup_delay,
    band,
    tiers,
    invalid,
    order_type,
    cooldown,
    rebalance,
    spot_level,
    freq,
    limits,
):
    rng = np.random.default_rng(seed)
    market = random_market(
        rng, T, N, vol=0.02, wick=0.05, invalid_frac=invalid, funding_every=int(rng.integers(1, 9)), freq=freq
    )
    targets = grid_targets(market, rng, n_cols, n_groups, p_change=0.2)
    tiers_path = write_tiers(tmp_path_factory.mktemp("t") / "tiers.json", market.symbols) if tiers else None
    markets_path = (
        write_markets(tmp_path_factory.mktemp("m") / "markets.json", market.symbols, *limits) if limits else None
    )
    cfg = BacktestConfig(
        initial_capital_quote=CAPITAL,
        perp_leverage=leverage,
        margin_mode=mode,
        execution_delay_bars=delay,
        allow_same_bar_execution=delay == 0,
        slippage_bps=slippage_bps,
        volume_participation_coefficient=impact,
        after_liquidation=after,
        reentry_cooldown_hours=cooldown,
        rebalance_every_hours=rebalance[0],
        rebalance_notional_band=rebalance[1],
        spot_margin_liquidation_level=spot_level,
        markets_path=markets_path,
        topup_margin_ratio=None if mode == "portfolio" else topup,
        topup_delay_bars=topup_delay,
        rebalance_delta_band=band,
        tiers_path=tiers_path,
        maintenance_margin_rate=None if tiers else 0.01,
        clearance_fee_rate=0.01,
        order_type=order_type,
        borrow_annual_rate=0.2,
        spot_collateral_haircut=haircut,
    )
    compare(market, targets, cfg)


def test_portfolio_margin_liquidations_match_reference(tmp_path):
    """Portfolio margin with wide wicks and high leverage: liquidations happen, and every one
    matches the reference loop (time, price, size). Haircuts of 70-90% (low-grade collateral)
    make the hedged books liquidatable by the 25% wicks."""
    liquidations = 0
    for seed in range(40):
        rng = np.random.default_rng(500 + seed)
        market = random_market(rng, 60, 2, vol=0.03, wick=0.25, funding_every=4)
        targets = grid_targets(market, rng, 3, 2, p_change=0.15)
        cfg = BacktestConfig(
            initial_capital_quote=CAPITAL,
            perp_leverage=float(rng.choice([5.0, 20.0])),
            margin_mode="portfolio",
            spot_collateral_haircut=float(rng.choice([0.7, 0.9])),
            maintenance_margin_rate=0.02,
            clearance_fee_rate=0.01,
            after_liquidation=["close_spot", "hold_spot", "reenter"][seed % 3],
        )
        res = compare(market, targets, cfg)
        ref = run_reference(market, targets, cfg)
        got = res.events[res.events.kind == "liquidation"][["column", "qty", "price"]].to_numpy(float)
        want = np.array([(e[1], e[4], e[5]) for e in ref["events"] if e[2] == "liquidation"], dtype=float).reshape(
            -1, 3
        )
        np.testing.assert_allclose(got, want, rtol=1e-9)
        liquidations += len(got)
    assert liquidations > 0


@pytest.mark.slow
@settings(max_examples=3000, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(**CASES)
def test_kernel_matches_reference_many(tmp_path_factory, **case):
    """The same comparison on many more random cases (``pytest -m slow``)."""
    test_kernel_matches_reference.hypothesis.inner_test(tmp_path_factory, **case)


@pytest.mark.seed(7)
def test_per_bar_column_params_match_reference(rng, random_market_factory, random_targets):
    market = random_market_factory(50, 2, vol=0.02, wick=0.05)
    targets = random_targets(market, 3, 1, p_change=0.3)
    T, C = targets.values.shape
    params = {
        "perp_leverage": np.array([1.0, 5.0, 20.0]),
        "spot_taker_fee_rate": rng.uniform(0, 0.002, (T, C)),
        "slippage_bps": np.array([0.0, 1.0, 5.0]),
        "borrow_annual_rate": rng.uniform(0, 0.5, (T, 1)),
        "clearance_fee_rate": 0.02,
        "rebalance_notional_band": np.array([0.0, 0.05, np.inf]),
        "rebalance_every_hours": np.array([np.inf, 6.0, 3.0]),
    }
    compare(market, targets, BacktestConfig(initial_capital_quote=CAPITAL, maintenance_margin_rate=0.01), params)


@pytest.mark.seed(3)
def test_market_borrow_series_matches_reference(rng, random_market_factory):
    m = random_market_factory(40, 1)
    rate = rng.uniform(0, 1e-4, m.shape)
    rate[5:9] = np.nan
    from dataclasses import replace

    m = replace(m, borrow_hourly_rate=rate)
    targets = Targets.from_array(m, np.where(np.arange(40)[:, None] % 10 == 0, -1.0, np.nan))
    cfg = BacktestConfig(borrow_rate_source="market")
    res = compare(m, targets, cfg)
    assert res.pnl("borrow").iloc[-1, 0] < 0

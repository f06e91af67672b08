"""The quiet-bar fast path of the kernel (one-column isolated portfolios: no open revaluation,
liquidation pre-check level) against the plain-Python reference, on long quiet stretches with
rare orders, rare funding settlements and liquidations."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.config import BacktestConfig
from backtest.targets import Targets
from data.synthetic import random_market
from tests.test_engine_reference import CAPITAL, compare


def sparse_targets(market, rng, n_cols, p_change):
    T = market.n_bars
    vals = rng.choice([-1.0, -0.5, 0.0, 0.3, 1.0], size=(T, n_cols))
    vals = np.where(rng.random((T, n_cols)) < p_change, vals, np.nan)
    vals[0] = rng.choice([-1.0, 1.0, 0.5], n_cols)
    col_symbol = rng.integers(0, market.n_symbols, n_cols)
    table = pd.DataFrame(
        {
            "strategy": ["quiet"] * n_cols,
            "symbol": [market.symbols[k] for k in col_symbol],
            "group": np.arange(n_cols),
            "k": np.arange(n_cols),
        }
    )
    return Targets(vals, col_symbol, np.arange(n_cols), table)


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    leverage=st.sampled_from([0.5, 2.0, 10.0, 25.0, 50.0]),
    delay=st.sampled_from([0, 1, 2]),
    invalid=st.sampled_from([0.0, 0.05]),
    funding_every=st.sampled_from([8, 60, 480]),
    after=st.sampled_from(["close_spot", "hold_spot", "reenter"]),
    topup=st.sampled_from([None, 0.8]),
)
def test_quiet_stretches_match_reference(seed, leverage, delay, invalid, funding_every, after, topup):
    rng = np.random.default_rng(seed)
    market = random_market(rng, 600, 2, vol=0.01, wick=0.01, invalid_frac=invalid, funding_every=funding_every)
    targets = sparse_targets(market, rng, 3, p_change=0.005)
    cfg = BacktestConfig(
        initial_capital_quote=CAPITAL,
        perp_leverage=leverage,
        margin_mode="isolated",
        execution_delay_bars=delay,
        allow_same_bar_execution=delay == 0,
        slippage_bps=1.0,
        after_liquidation=after,
        topup_margin_ratio=topup,
        maintenance_margin_rate=0.01,
        clearance_fee_rate=0.01,
        borrow_annual_rate=0.2,
    )
    compare(market, targets, cfg)


def test_quiet_stretch_with_liquidation_matches_reference():
    """A high-leverage carry held through a long drift: liquidated on a quiet bar, then closed."""
    rng = np.random.default_rng(11)
    market = random_market(rng, 2000, 1, vol=0.01, wick=0.01, funding_every=480)
    vals = np.full((2000, 1), np.nan)
    vals[0] = 1.0
    vals[1500] = -1.0
    targets = Targets.from_array(market, vals)
    cfg = BacktestConfig(
        initial_capital_quote=CAPITAL,
        perp_leverage=50.0,
        maintenance_margin_rate=0.01,
        clearance_fee_rate=0.01,
        borrow_annual_rate=0.2,
    )
    res = compare(market, targets, cfg)
    assert (res.events.kind == "liquidation").any()

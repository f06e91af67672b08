"""Grid columns (symbols x parameter sets in one kernel call) equal single runs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from backtest.result import COMPONENTS
from backtest.targets import Targets
from data.errors import ConfigError


@pytest.mark.seed(21)
@pytest.mark.parametrize("mode", ["isolated", "cross", "portfolio"])
def test_grid_equals_single_runs(mode, rng, random_market_factory):
    T, N = 200, 2
    m = random_market_factory(T, N, vol=0.02, wick=0.04, invalid_frac=0.03)
    base = np.where(rng.random((T, N)) < 0.08, rng.choice([-1.0, 0.0, 0.5, 1.0], (T, N)), np.nan)
    base[0] = 1.0
    grid = [
        {"perp_leverage": 2.0, "slippage_bps": 0.0},
        {"perp_leverage": 8.0, "slippage_bps": 3.0},
        {"perp_leverage": 20.0, "slippage_bps": 1.0},
    ]
    cfg = BacktestConfig(
        margin_mode=mode, maintenance_margin_rate=0.01, topup_margin_ratio=None if mode == "portfolio" else 0.4
    )
    parts = [Targets.from_array(m, base, strategy=f"p{k}") for k in range(len(grid))]
    tg = Targets.concat(parts)  # 3 portfolios x 2 symbols
    per_col = {name: np.repeat([g[name] for g in grid], N) for name in grid[0]}
    res = run_backtest(m, tg, cfg, column_params=per_col)
    assert res.equity.shape == (T, 3 * N) and res.group_equity.shape == (T, 3)
    for k, g in enumerate(grid):
        single = run_backtest(m, base, cfg.replace(**g))
        np.testing.assert_allclose(
            res.group_equity.iloc[:, k].to_numpy(), single.group_equity.iloc[:, 0].to_numpy(), rtol=1e-12
        )
        for comp in COMPONENTS:
            np.testing.assert_allclose(
                res.components[comp].iloc[:, k * N : (k + 1) * N].to_numpy(),
                single.components[comp].to_numpy(),
                rtol=1e-12,
                atol=1e-9,
            )
        np.testing.assert_array_equal(res.perp_qty.iloc[:, k * N : (k + 1) * N].to_numpy(), single.perp_qty.to_numpy())
    assert len(res.events) == sum(len(run_backtest(m, base, cfg.replace(**g)).events) for g in grid)


@pytest.mark.seed(2)
def test_flexible_params_accept_scalar_column_and_time_shapes(random_market_factory):
    m = random_market_factory(50, 2)
    tg = Targets.from_array(m, np.where(np.arange(50)[:, None] % 7 == 0, 1.0, np.nan))
    a = run_backtest(m, tg, BacktestConfig(spot_taker_fee_rate=0.002))
    b = run_backtest(m, tg, BacktestConfig(), column_params={"spot_taker_fee_rate": np.full(2, 0.002)})
    c = run_backtest(m, tg, BacktestConfig(), column_params={"spot_taker_fee_rate": np.full((50, 2), 0.002)})
    for r in (b, c):
        np.testing.assert_array_equal(a.group_equity.to_numpy(), r.group_equity.to_numpy())
    with pytest.raises(ConfigError, match="did you mean 'perp_leverage'"):
        run_backtest(m, tg, BacktestConfig(), column_params={"perp_leverge": 2.0})
    with pytest.raises(ConfigError, match="3 values for 2 columns"):
        run_backtest(m, tg, BacktestConfig(), column_params={"perp_leverage": [1.0, 2.0, 3.0]})


@pytest.mark.seed(4)
def test_targets_inputs_array_frame_and_strategy_agree(random_market_factory):
    m = random_market_factory(40, 2)
    arr = np.where(np.arange(40)[:, None] % 9 == 0, 0.5, np.nan) * np.ones((1, 2))
    frame = pd.DataFrame(arr, index=m.index, columns=list(m.symbols))
    r1 = run_backtest(m, arr)
    r2 = run_backtest(m, frame)
    r3 = run_backtest(m, lambda market: Targets.from_array(market, arr))
    for r in (r2, r3):
        np.testing.assert_array_equal(r1.group_equity.to_numpy(), r.group_equity.to_numpy())

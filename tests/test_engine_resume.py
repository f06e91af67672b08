"""Time chunks: a run resumed from the previous run's state continues it exactly.

Random markets, grids and configs (cross and isolated margin, top-ups with delays, delays
0/1/2, weights, delta bands, invalid bars, liquidations, every after-liquidation policy, both
kernels, parallel runs, lean outputs) are run once over every bar and again as consecutive
chunks (some a single bar, shorter than the execution delay), each started from the last
one's ``result.state``; :meth:`BacktestResult.chain` of the chunks must equal the single run
bit for bit: every output and every event.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backtest.config import BacktestConfig
from backtest.engine import LEAN_OUTPUTS, run_backtest
from backtest.result import BacktestResult
from backtest.state import EngineState
from data.errors import ConfigError
from data.synthetic import random_market, write_tiers
from tests.reference_engine import assert_identical
from tests.test_engine_fast import random_case
from tests.test_engine_reference import grid_targets


def run_chunked(market, targets, cfg, cuts, **kw):
    """Run ``[0, cuts[0]), [cuts[0], cuts[1]), ...`` one after the other, each resumed."""
    bounds = [0, *cuts, market.n_bars]
    parts, state = [], None
    for a, b in zip(bounds[:-1], bounds[1:]):
        m = market.select(start=market.index[a], end=market.index[b] if b < market.n_bars else None)
        res = run_backtest(m, targets.bars(a, b), cfg, resume=state, **kw)
        parts.append(res)
        state = res.state
    return BacktestResult.chain(parts)


def random_cuts(rng, T, k):
    """``k`` distinct cut positions in 1 .. T-1, with single-bar chunks now and then."""
    if T < 2:
        return []
    cuts = set(int(c) for c in rng.integers(1, T, k))
    if rng.random() < 0.5:  # a one-bar chunk (shorter than a delay of 2)
        c = int(rng.integers(1, T))
        cuts |= {c, c + 1} if c + 1 < T else {c}
    return sorted(cuts)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["isolated", "cross", "portfolio"]),
    delay=st.sampled_from([0, 1, 2]),
    topup=st.sampled_from([None, 0.3]),
    topup_delay=st.integers(0, 2),
    after=st.sampled_from(["close_spot", "hold_spot", "reenter", "close_and_reenter"]),
    band=st.sampled_from([None, 0.02]),
    rebalance=st.sampled_from([(None, None), (None, 0.05), (6.0, None)]),
    cooldown=st.sampled_from([0.0, 3.0, 24.0]),
    tiers=st.booleans(),
    n_cuts=st.integers(1, 4),
    lean=st.booleans(),
)
def test_chunked_run_equals_one_run(
    tmp_path_factory, seed, mode, delay, topup, topup_delay, after, band, rebalance, cooldown, tiers, n_cuts, lean
):
    rng = np.random.default_rng(seed)
    T = int(rng.integers(3, 120))
    market = random_market(
        rng,
        T,
        int(rng.integers(1, 3)),
        vol=0.03,
        wick=0.08,
        invalid_frac=float(rng.choice([0.0, 0.1])),
        funding_every=int(rng.integers(1, 9)),
    )
    targets = grid_targets(market, rng, int(rng.integers(1, 5)), int(rng.integers(1, 3)), p_change=0.2)
    cfg = BacktestConfig(
        perp_leverage=float(rng.choice([2.0, 10.0, 25.0])),
        margin_mode=mode,
        execution_delay_bars=delay,
        allow_same_bar_execution=delay == 0,
        slippage_bps=1.0,
        volume_participation_coefficient=0.02,
        after_liquidation=after,
        reentry_cooldown_hours=cooldown,
        rebalance_every_hours=rebalance[0],
        rebalance_notional_band=rebalance[1],
        spot_margin_liquidation_level=1.6,
        topup_margin_ratio=None if mode == "portfolio" else topup,
        topup_delay_bars=topup_delay,
        rebalance_delta_band=band,
        tiers_path=write_tiers(tmp_path_factory.mktemp("t") / "tiers.json", market.symbols) if tiers else None,
        maintenance_margin_rate=None if tiers else 0.01,
        clearance_fee_rate=0.01,
        borrow_annual_rate=0.2,
    )
    kw = {"outputs": LEAN_OUTPUTS} if lean else {}
    whole = run_backtest(market, targets, cfg, **kw)
    chained = run_chunked(market, targets, cfg, random_cuts(rng, T, n_cuts), **kw)
    assert_identical(whole, chained)
    np.testing.assert_array_equal(whole.state.columns, chained.state.columns)
    np.testing.assert_array_equal(whole.state.groups, chained.state.groups)
    assert chained.state.bars == T


@pytest.mark.parametrize("seed", range(0, 81, 4))
def test_chunked_fast_kernel_equals_one_run(tmp_path, seed):
    """The one-column isolated kernel (and its parallel form) resumes exactly too."""
    m, tg, cfg, params = random_case(seed, tmp_path)
    if any(np.ndim(v) == 2 and np.shape(v)[0] > 1 for v in params.values()):
        params = {k: v for k, v in params.items() if not (np.ndim(v) == 2 and np.shape(v)[0] > 1)}
    rng = np.random.default_rng(seed)
    whole = run_backtest(m, tg, cfg, column_params=params)
    assert whole.kernel == "fast"
    cuts = random_cuts(rng, m.n_bars, 3)
    assert_identical(whole, run_chunked(m, tg, cfg, cuts, column_params=params))
    assert_identical(whole, run_chunked(m, tg, cfg, cuts, column_params=params, parallel=2))
    assert_identical(whole, run_chunked(m, tg, cfg, cuts, column_params=params, kernel="general"))


def test_state_records_where_the_run_stopped(tmp_path):
    rng = np.random.default_rng(3)
    m = random_market(rng, 50, 2)
    res = run_backtest(m, 1.0, BacktestConfig(execution_delay_bars=2))
    st_ = res.state
    assert isinstance(st_, EngineState)
    assert st_.bars == 50 and st_.next_time == m.index[-1] + (m.index[1] - m.index[0])
    assert st_.target_tail.shape == (2, 2)  # the last two targets are still to be executed
    assert st_.symbols == m.symbols
    assert not st_.columns.flags.writeable
    # the spot and perp quantities of the state are the last bar's positions
    np.testing.assert_array_equal(st_.columns[:, 0], res.spot_qty.to_numpy()[-1])
    np.testing.assert_array_equal(st_.columns[:, 1], res.perp_qty.to_numpy()[-1])


def test_resume_refuses_what_does_not_continue_the_state():
    rng = np.random.default_rng(4)
    m = random_market(rng, 40, 2)
    cfg = BacktestConfig()
    first = run_backtest(m.select(end=m.index[20]), 1.0, cfg)
    rest = m.select(start=m.index[20])
    run_backtest(rest, 1.0, cfg, resume=first.state)  # the right continuation works
    with pytest.raises(ConfigError, match="without gap or overlap"):
        run_backtest(m.select(start=m.index[21]), 1.0, cfg, resume=first.state)
    with pytest.raises(ConfigError, match="without gap or overlap"):
        run_backtest(m.select(start=m.index[19]), 1.0, cfg, resume=first.state)
    with pytest.raises(ConfigError, match="config"):
        run_backtest(rest, 1.0, cfg.replace(perp_leverage=3.0), resume=first.state)
    with pytest.raises(ConfigError, match="symbols"):
        run_backtest(rest.select(symbols=[m.symbols[0]]), 1.0, cfg, resume=first.state)
    with pytest.raises(ConfigError, match="columns"):
        one_col = run_backtest(m.select(symbols=[m.symbols[0]], end=m.index[20]), 1.0, cfg)
        tg = grid_targets(rest.select(symbols=[m.symbols[0]]), rng, 2, 1, 0.1)
        run_backtest(rest.select(symbols=[m.symbols[0]]), tg, cfg, resume=one_col.state)
    with pytest.raises(ConfigError, match="EngineState"):
        run_backtest(rest, 1.0, cfg, resume={"bars": 20})
    with pytest.raises(ValueError, match="consecutive"):
        BacktestResult.chain([first, run_backtest(rest, 1.0, cfg)])

"""Parallel runs (``parallel=``) and output selection (``outputs=``) change nothing.

* ``run_backtest(..., parallel=True | k)`` runs chunks of portfolios in numba threads; every
  output and the events table must be bit-identical to the serial run.
* ``run_backtest(..., outputs=...)`` keeps only some per-bar outputs; the kept ones must be
  bit-identical to a full run, the others hold the full run's last row, and without
  ``"events"`` the events are the full run's minus funding and borrow rows.
"""

from __future__ import annotations

import numpy as np
import pytest

from backtest import engine
from backtest.config import BacktestConfig
from backtest.engine import OUTPUTS, run_backtest
from backtest.result import COMPONENTS
from backtest.targets import Targets
from data.errors import ConfigError
from data.synthetic import random_market, write_tiers
from reports.metrics import stats
from tests.reference_engine import assert_identical
from tests.test_engine_reference import grid_targets


def random_case(seed, tmp_path, n_cols=12, n_groups=5, T=150):
    rng = np.random.default_rng(seed)
    m = random_market(rng, T, 3, vol=0.03, wick=0.06, invalid_frac=0.05, funding_every=int(rng.integers(1, 9)))
    tg = grid_targets(m, rng, n_cols, n_groups, p_change=0.1)
    tiers = seed % 2 == 0
    cfg = BacktestConfig(
        perp_leverage=float(rng.choice([2.0, 10.0, 25.0])),
        margin_mode=["isolated", "cross", "portfolio"][seed % 3],
        slippage_bps=1.0,
        volume_participation_coefficient=0.01,
        topup_margin_ratio=[None, 0.3][seed % 2] if seed % 3 != 2 else None,
        rebalance_delta_band=[None, 0.02][(seed // 2) % 2],
        after_liquidation=["close_spot", "hold_spot", "reenter"][seed % 3],
        tiers_path=write_tiers(tmp_path / f"tiers{seed}.json", m.symbols) if tiers else None,
        maintenance_margin_rate=None if tiers else 0.01,
        clearance_fee_rate=0.01,
        borrow_annual_rate=0.3,
    )
    params = {"perp_leverage": rng.choice([1.0, 3.0, 20.0, 50.0], n_cols)}
    return m, tg, cfg, params


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("parallel", [True, 2, 3, 64])
def test_parallel_is_bit_identical_to_serial(tmp_path, seed, parallel):
    m, tg, cfg, params = random_case(seed, tmp_path)
    serial = run_backtest(m, tg, cfg, column_params=params)
    par = run_backtest(m, tg, cfg, column_params=params, parallel=parallel)
    assert len(serial.records) > 0
    assert_identical(serial, par)
    lean_s = run_backtest(m, tg, cfg, column_params=params, full=False)
    lean_p = run_backtest(m, tg, cfg, column_params=params, full=False, parallel=parallel)
    assert_identical(lean_s, lean_p)


def test_parallel_reruns_when_the_event_buffer_is_short(tmp_path, monkeypatch):
    m, tg, cfg, params = random_case(5, tmp_path)
    serial = run_backtest(m, tg, cfg, column_params=params)
    monkeypatch.setattr(engine, "_record_capacity", lambda *a, **k: 1)
    assert_identical(serial, run_backtest(m, tg, cfg, column_params=params))
    assert_identical(serial, run_backtest(m, tg, cfg, column_params=params, parallel=3))


def test_single_portfolio_parallel_runs_serially(tmp_path):
    m, tg, cfg, params = random_case(3, tmp_path, n_groups=1)
    assert_identical(
        run_backtest(m, tg, cfg, column_params=params), run_backtest(m, tg, cfg, column_params=params, parallel=True)
    )


@pytest.mark.parametrize(
    "outputs",
    [
        (),
        ("equity",),
        ("group_equity",),
        ("components",),
        ("positions",),
        ("margin",),
        ("events",),
        ("equity", "group_equity", "events"),
        ("margin", "components", "group_equity"),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 3])
def test_outputs_subset_matches_full_run(tmp_path, seed, outputs):
    m, tg, cfg, params = random_case(seed, tmp_path)
    full = run_backtest(m, tg, cfg, column_params=params)
    part = run_backtest(m, tg, cfg, column_params=params, outputs=outputs, parallel=seed == 1)
    assert part.outputs == tuple(outputs) and part.full == (set(outputs) >= set(OUTPUTS))
    frames = {
        "equity": ["equity"],
        "group_equity": ["group_equity"],
        "positions": ["spot_qty", "perp_qty"],
        "margin": ["margin_ratio", "distance_to_liquidation"],
    }
    for out, names in frames.items():
        for name in names:
            a, b = getattr(full, name), getattr(part, name)
            if out in outputs:
                assert np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True), name
            elif out == "margin":
                assert b.shape[0] == 1 and np.isnan(b.to_numpy()).all()
            else:
                assert b.shape[0] == 1 and b.index[0] == m.index[-1], name
                assert np.array_equal(a.to_numpy()[-1:], b.to_numpy(), equal_nan=True), name
    for k in COMPONENTS:
        a, b = full.components[k].to_numpy(), part.components[k].to_numpy()
        assert np.array_equal(a if "components" in outputs else a[-1:], b), k
    if "events" in outputs:
        assert np.array_equal(np.asarray(full.records), np.asarray(part.records), equal_nan=True)
    else:
        keep = ~full.events["kind"].isin(["funding", "borrow"]).to_numpy()
        assert np.array_equal(np.asarray(full.records)[keep], np.asarray(part.records), equal_nan=True)


def test_full_false_is_the_lean_outputs(tmp_path):
    m, tg, cfg, params = random_case(2, tmp_path)
    assert_identical(
        run_backtest(m, tg, cfg, column_params=params, full=False),
        run_backtest(m, tg, cfg, column_params=params, outputs=engine.LEAN_OUTPUTS),
    )


def test_unknown_output_is_refused(tmp_path):
    m, tg, cfg, params = random_case(0, tmp_path)
    with pytest.raises(ConfigError, match="unknown outputs"):
        run_backtest(m, tg, cfg, outputs=("equity", "sharpe"))


def test_stats_need_group_equity_per_bar(tmp_path):
    m, tg, cfg, params = random_case(4, tmp_path, n_groups=1)
    with pytest.raises(ValueError, match="group equity per bar"):
        stats(run_backtest(m, tg, cfg, outputs=("equity",)))
    st = stats(run_backtest(m, tg, cfg, outputs=("group_equity",)))
    assert st == pytest.approx(stats(run_backtest(m, tg, cfg, full=False)), nan_ok=True)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("block", [1, 3, 7])
def test_fast_kernel_in_blocks_of_portfolios_is_bit_identical_to_one_pass(tmp_path, seed, block, monkeypatch):
    """A grid of one-column portfolios runs in blocks of ``FAST_BLOCK_GROUPS`` (each over every
    bar), its events merged back into bar order: the same outputs, events and final state as one
    pass over every portfolio, serial and parallel."""
    rng = np.random.default_rng(100 + seed)
    m = random_market(rng, 200, 3, vol=0.03, wick=0.06, invalid_frac=0.05, funding_every=int(rng.integers(1, 9)))
    tg = grid_targets(m, rng, 20, 5, p_change=0.1)
    one_each = np.arange(20)  # one column per portfolio: the fast kernel
    tg = Targets(tg.values, tg.column_symbol, one_each, tg.columns.assign(group=one_each))
    cfg = BacktestConfig(perp_leverage=5.0, slippage_bps=1.0, maintenance_margin_rate=0.02, borrow_annual_rate=0.3)
    params = {"perp_leverage": rng.choice([1.0, 3.0, 20.0, 50.0], 20)}
    one = run_backtest(m, tg, cfg, column_params=params)
    assert one.kernel == "fast" and len(one.records) > 0
    for kw in ({}, {"parallel": 2}, {"full": False}):
        monkeypatch.setattr(engine, "FAST_BLOCK_GROUPS", 10**9)
        base = run_backtest(m, tg, cfg, column_params=params, **kw)
        monkeypatch.setattr(engine, "FAST_BLOCK_GROUPS", block)
        blocks = run_backtest(m, tg, cfg, column_params=params, **kw)
        assert_identical(base, blocks)
        np.testing.assert_array_equal(base.state.columns, blocks.state.columns)

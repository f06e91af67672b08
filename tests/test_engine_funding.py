"""Funding sign and size, borrow, and timing without look-ahead (README: "Funding: who pays whom", "Time: no look-ahead")."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from backtest.result import COMPONENTS
from data.market import Market

NO_COSTS = dict(
    spot_taker_fee_rate=0.0,
    perp_taker_fee_rate=0.0,
    slippage_bps=0.0,
    maintenance_margin_rate=0.0,
    borrow_annual_rate=0.0,
)


def flat_market(T=48, price=100.0, seed=0):
    """Constant spot/perp prices, a wandering mark, settlements every 8 bars with known values."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=T, freq="h", tz="UTC")
    spot = np.full((T, 1), price)
    mark = price * (1 + rng.normal(0, 0.01, (T, 1)))
    rate = np.where((np.arange(T) % 8 == 7)[:, None], rng.normal(1e-4, 3e-4, (T, 1)), 0.0)
    value = rate * price * (1 + rng.normal(0, 0.01, (T, 1)))  # mark at each settlement instant
    return Market.from_arrays(idx, ["BTCUSDT"], spot=spot, perp=spot, mark=mark, funding_rate=rate, funding_value=value)


@pytest.mark.parametrize("leverage", [1.0, 3.0])
def test_carry_receives_exactly_sum_q_mark_rate(leverage):
    m = flat_market()
    res = run_backtest(m, 1.0, BacktestConfig(perp_leverage=leverage, **NO_COSTS))
    q = res.spot_qty.iloc[-1, 0]
    assert q == pytest.approx(10_000 * leverage / (leverage + 1) / 100.0, rel=1e-12)
    assert res.perp_qty.iloc[-1, 0] == pytest.approx(-q, rel=1e-15)
    # target decided at bar 0's close, filled at bar 1's open: settlements of bars 1.. are received
    expected = np.cumsum(np.r_[0.0, q * m.funding_value[1:, 0]])
    assert np.allclose(res.pnl("funding").iloc[:, 0].to_numpy(), expected, rtol=1e-12, atol=1e-12)
    ev = res.events[res.events.kind == "funding"]
    assert len(ev) == int((m.funding_count[1:, 0] > 0).sum())
    assert np.allclose(ev["cash"].to_numpy(), q * m.funding_value[m.funding_count[:, 0] > 0, 0][-len(ev) :], rtol=1e-12)
    # positive rates pay the short perp: the sign follows the rate, not a convention of the user
    pos = ev["rate"] > 0
    assert (ev.loc[pos, "cash"] > 0).all() and (ev.loc[~pos, "cash"] < 0).all()


def test_reverse_carry_gets_minus_funding_minus_borrow():
    m = flat_market()
    cfg = BacktestConfig(**{**NO_COSTS, "borrow_annual_rate": 0.1})
    carry = run_backtest(m, 1.0, cfg)
    rev = run_backtest(m, -1.0, cfg)
    q = carry.spot_qty.iloc[-1, 0]
    assert rev.spot_qty.iloc[-1, 0] == pytest.approx(-q, rel=1e-12)
    assert rev.pnl("funding").iloc[-1, 0] == pytest.approx(-carry.pnl("funding").iloc[-1, 0], rel=1e-12)
    # borrow: simple hourly interest on the borrowed coins' value, 47 bars held of 1 hour
    expected_borrow = -q * 100.0 * 0.1 / (365 * 24) * (m.n_bars - 1)
    assert rev.pnl("borrow").iloc[-1, 0] == pytest.approx(expected_borrow, rel=1e-12)
    assert carry.pnl("borrow").iloc[-1, 0] == 0.0
    total = rev.group_equity[0].iloc[-1] - 10_000
    basis = rev.pnl("basis").iloc[-1, 0]  # the mark wanders around the flat perp price: mark-to-market only
    assert total == pytest.approx(-carry.pnl("funding").iloc[-1, 0] + expected_borrow + basis, rel=1e-9, abs=1e-9)


def test_opened_after_settlement_misses_it_closed_before_forfeits():
    T = 24
    idx = pd.date_range("2024-01-01", periods=T, freq="h", tz="UTC")
    rate = np.zeros((T, 1))
    rate[[3, 7, 11], 0] = 0.001  # settle at the closes of bars 3, 7, 11 (= opens of 4, 8, 12)
    m = Market.from_arrays(
        idx, ["BTCUSDT"], spot=np.full((T, 1), 100.0), perp=np.full((T, 1), 100.0), funding_rate=rate
    )
    tg = np.full((T, 1), np.nan)
    tg[3] = 1.0  # decided at bar 3's close = the 04:00 settlement instant; filled at bar 4's open, just after it
    tg[10] = 0.0  # decided at bar 10's close, filled at bar 11's open: before the settlement at bar 11's close
    res = run_backtest(m, tg, BacktestConfig(**NO_COSTS))
    ev = res.events[res.events.kind == "funding"]
    assert list(ev["bar"]) == [idx[7]]  # only the settlement of bar 7 (08:00) is paid to this position
    assert list(ev["time"]) == [idx[8]]  # stamped at the settlement instant, the bar's close
    q = 5_000 / 100.0
    assert ev["cash"].iloc[0] == pytest.approx(q * 100.0 * 0.001, rel=1e-12)
    # held over the boundary: a position closed at bar 12's open still receives bar 11's settlement
    tg2 = tg.copy()
    tg2[10] = np.nan
    tg2[11] = 0.0
    res2 = run_backtest(m, tg2, BacktestConfig(**NO_COSTS))
    assert list(res2.events[res2.events.kind == "funding"]["bar"]) == [idx[7], idx[11]]


@pytest.mark.seed(11)
@pytest.mark.parametrize("delay,mode", [(1, "isolated"), (2, "cross"), (0, "isolated")])
def test_changing_inputs_after_t_changes_nothing_at_or_before_t(delay, mode, rng, random_market_factory):
    T, t = 80, 40
    a = random_market_factory(T, 2, vol=0.02, wick=0.03, invalid_frac=0.05)
    targets = np.where(rng.random((T, 2)) < 0.2, rng.choice([-1.0, 0.0, 0.5, 1.0], (T, 2)), np.nan)
    targets[0] = 1.0

    def perturb(x):
        y = np.array(x, dtype=float, copy=True)
        y[t + 1 :] *= rng.uniform(0.8, 1.25, y[t + 1 :].shape)
        return y

    def ohlc(prefix):
        return {k: perturb(getattr(a, f"{prefix}_{k}")) for k in ("open", "high", "low", "close")} | {
            "volume": perturb(getattr(a, f"{prefix}_volume")) if prefix != "mark" else a.perp_volume
        }

    b = Market.from_arrays(
        a.index,
        a.symbols,
        spot=ohlc("spot"),
        perp=ohlc("perp"),
        mark=ohlc("mark"),
        funding_rate=perturb(a.funding_rate),
        funding_value=np.vstack([a.funding_value[: t + 1], perturb(a.funding_value)[t + 1 :]]),
    )
    tb = targets.copy()
    tb[t + 1 :] = rng.choice([-1.0, 0.0, 1.0], tb[t + 1 :].shape)
    cfg = BacktestConfig(
        perp_leverage=5,
        margin_mode=mode,
        execution_delay_bars=delay,
        allow_same_bar_execution=delay == 0,
        slippage_bps=2,
        volume_participation_coefficient=0.01,
        maintenance_margin_rate=0.02,
        topup_margin_ratio=0.3,
    )
    ra, rb = run_backtest(a, targets, cfg), run_backtest(b, tb, cfg)
    for k in COMPONENTS:
        assert np.array_equal(
            ra.components[k].to_numpy()[: t + 1], rb.components[k].to_numpy()[: t + 1], equal_nan=True
        ), k
    assert np.array_equal(ra.group_equity.to_numpy()[: t + 1], rb.group_equity.to_numpy()[: t + 1])
    assert np.array_equal(ra.spot_qty.to_numpy()[: t + 1], rb.spot_qty.to_numpy()[: t + 1])
    ea, eb = ra.events, rb.events
    cut = a.index[t]
    pa, pb = ea[ea.bar <= cut].reset_index(drop=True), eb[eb.bar <= cut].reset_index(drop=True)
    pd.testing.assert_frame_equal(pa, pb)
    # and the change after t does matter (the test is not vacuous)
    assert not np.array_equal(ra.group_equity.to_numpy()[t + 1 :], rb.group_equity.to_numpy()[t + 1 :])

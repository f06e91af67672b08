"""Hand-computed liquidations (README: "Margin and liquidation"): isolated closed form with one and several brackets,
gaps, the long side, cross margin, the clearance fee and the after-liquidation policy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from backtest.targets import Targets
from data.market import Market
from reports.metrics import stats
from tests.conftest import shared_data_path

ZERO = dict(spot_taker_fee_rate=0.0, perp_taker_fee_rate=0.0, slippage_bps=0.0, borrow_annual_rate=0.0)
#: The liquidation rules alone: positions float with the price (no rebalancing; the default
#: re-entry after 24 hours falls beyond these 12 bars; tests/test_engine_desk.py covers both).
ZERO = dict(ZERO, rebalance_every_hours=None, rebalance_notional_band=None)
T = 12


def market(high=None, low=None, mark_open=None, n=1, price=100.0, symbols=None):
    """Flat prices at ``price``; mark extremes per bar given as {bar: value} (per symbol column)."""
    idx = pd.date_range("2024-01-01", periods=T, freq="h", tz="UTC")
    flat = np.full((T, n), price)
    mh, ml, mo = flat.copy(), flat.copy(), flat.copy()
    for arr, spec in ((mh, high), (ml, low), (mo, mark_open)):
        for (bar, col), v in (spec or {}).items():
            arr[bar, col] = v
    mh = np.maximum(mh, mo)
    ml = np.minimum(ml, mo)
    syms = symbols or [f"S{k}USDT" for k in range(n)]
    return Market.from_arrays(idx, syms, spot=flat, perp=flat, mark={"open": mo, "high": mh, "low": ml, "close": flat})


def liq_events(res):
    return res.events[res.events.kind == "liquidation"].reset_index(drop=True)


def test_isolated_short_liquidates_on_first_bar_crossing_at_closed_form_price():
    lp = 11_000 / 100.5  # 1000 + (-100)(LP - 100) = 100 * LP * 0.005
    m = market(high={(3, 0): lp - 0.01, (5, 0): 110.0, (7, 0): 130.0})
    cfg = BacktestConfig(
        initial_capital_quote=11_000, perp_leverage=10, maintenance_margin_rate=0.005, clearance_fee_rate=0.01, **ZERO
    )
    res = run_backtest(m, 1.0, cfg)
    ev = liq_events(res)
    assert len(ev) == 1 and ev.time[0] == m.index[5]
    assert ev.price[0] == pytest.approx(lp, rel=1e-12)
    assert ev.qty[0] == pytest.approx(100.0, rel=1e-12)
    # the clearance fee (1% of the notional) is floored at the margin left at the liquidation
    # price: the maintenance margin, 0.5% of the notional
    assert ev.fee[0] == pytest.approx(0.005 * 100 * lp, rel=1e-12)
    assert res.pnl("liquidation").iloc[5, 0] == pytest.approx(-0.005 * 100 * lp, rel=1e-12)
    assert res.pnl("perp_price").iloc[-1, 0] == pytest.approx(-100 * (lp - 100), rel=1e-12)
    # distance to liquidation at a calm bar close (mark 100) points at the same price
    assert 100 * (1 + res.distance_to_liquidation.iloc[2, 0]) == pytest.approx(lp, rel=1e-12)
    assert res.margin_ratio.iloc[2, 0] == pytest.approx(100 * 100 * 0.005 / 1000, rel=1e-12)
    # the margin balance at the liquidation price equals the maintenance margin
    assert 1000 - 100 * (lp - 100) == pytest.approx(100 * lp * 0.005, rel=1e-12)
    # default policy: the unhedged spot leg is closed at the next bar's open
    fills = res.events[(res.events.kind == "fill") & (res.events.time == m.index[6])]
    assert list(fills.leg) == ["spot"] and fills.qty.iloc[0] == pytest.approx(-100.0)
    assert res.spot_qty.iloc[6:, 0].eq(0).all() and res.perp_qty.iloc[5:, 0].eq(0).all()
    assert stats(res)["n_liquidations"] == 1


def test_hold_spot_policy_keeps_the_unhedged_leg():
    m = market(high={(5, 0): 110.0})
    cfg = BacktestConfig(
        initial_capital_quote=11_000,
        perp_leverage=10,
        maintenance_margin_rate=0.005,
        after_liquidation="hold_spot",
        **ZERO,
    )
    res = run_backtest(m, 1.0, cfg)
    assert res.spot_qty.iloc[-1, 0] == pytest.approx(100.0) and res.perp_qty.iloc[-1, 0] == 0.0


def test_gap_through_the_level_liquidates_at_the_mark_open():
    m = market(mark_open={(5, 0): 112.0})
    cfg = BacktestConfig(initial_capital_quote=11_000, perp_leverage=10, maintenance_margin_rate=0.005, **ZERO)
    ev = liq_events(run_backtest(m, 1.0, cfg))
    assert ev.time[0] == m.index[5] and ev.price[0] == pytest.approx(112.0)


def test_isolated_long_of_reverse_carry_liquidates_at_mark_low():
    lp = (100 * 100 - 1000) / (100 * (1 - 0.005))  # q EP - WB = q LP (1 - mmr), cum 0
    m = market(low={(4, 0): lp + 0.01, (6, 0): 80.0})
    cfg = BacktestConfig(initial_capital_quote=11_000, perp_leverage=10, maintenance_margin_rate=0.005, **ZERO)
    res = run_backtest(m, -1.0, cfg)
    ev = liq_events(res)
    assert len(ev) == 1 and ev.time[0] == m.index[6] and ev.price[0] == pytest.approx(lp, rel=1e-12)
    assert ev.qty[0] == pytest.approx(-100.0)


@pytest.mark.parametrize("notional,bracket", [(598_000.0, 3), (700_000.0, 3), (30_000.0, 1)])
def test_binance_btc_brackets_closed_form(notional, bracket):
    """Real BTCUSDT brackets: 0.4% <50k (cum 0), 0.5% <600k (cum 50), 0.65% <3M (cum 950).

    598k at entry is bracket 2, but the liquidation notional lands in bracket 3: the root must be
    taken in the bracket that holds it."""
    tiers = shared_data_path("binance_leverage_tiers.json")
    lev = 50.0
    mmr, cum = {1: (0.004, 0.0), 2: (0.005, 50.0), 3: (0.0065, 950.0)}[bracket]
    q = notional / 100.0
    wallet = notional / lev
    lp = (notional + wallet + cum) / (q * (1 + mmr))  # wallet + (-q)(LP - 100) = q LP mmr - cum
    m = market(high={(5, 0): lp * 1.01}, symbols=["BTCUSDT"])
    cfg = BacktestConfig(
        initial_capital_quote=notional * (lev + 1) / lev, perp_leverage=lev, tiers_path=str(tiers), **ZERO
    )
    ev = liq_events(run_backtest(m, 1.0, cfg))
    assert len(ev) == 1 and ev.time[0] == m.index[5]
    assert ev.price[0] == pytest.approx(lp, rel=1e-12)
    if bracket == 3 and notional < 600_000:  # the other bracket's formula gives a different (wrong) price
        wrong = (notional + wallet + 50.0) / (q * 1.005)
        assert abs(wrong - lp) > 1e-4


def test_cross_margin_shares_the_wallet():
    """Two shorts in one portfolio; A's mark spikes, B's stays at 100.

    Cross: 2000 + (-100)(mA - 100) = 0.5 mA + 50 -> mA = 11950 / 100.5, both closed there (B at 100).
    Isolated: A alone at 11000 / 100.5, B survives."""
    m = market(high={(5, 0): 125.0}, n=2)
    base = dict(
        initial_capital_quote=22_000, perp_leverage=10, maintenance_margin_rate=0.005, clearance_fee_rate=0.0, **ZERO
    )
    cross = run_backtest(m, 1.0, BacktestConfig(margin_mode="cross", **base))
    ev = liq_events(cross)
    assert list(ev.column) == [0, 1] and (ev.time == m.index[5]).all()
    assert ev.price[0] == pytest.approx(11_950 / 100.5, rel=1e-12)
    assert ev.price[1] == pytest.approx(100.0, rel=1e-12)
    iso = run_backtest(m, 1.0, BacktestConfig(margin_mode="isolated", **base))
    ev = liq_events(iso)
    assert list(ev.column) == [0] and ev.price[0] == pytest.approx(11_000 / 100.5, rel=1e-12)
    assert iso.perp_qty.iloc[-1, 1] == pytest.approx(-100.0)


def test_topup_moves_quote_to_the_futures_wallet_and_avoids_liquidation():
    """Half the capital stays in the spot wallet (target 0.5): top-ups fund the perp margin."""
    idx = pd.date_range("2024-01-01", periods=T, freq="h", tz="UTC")
    path = np.array([100, 100, 100, 104, 106, 107, 108, 108.5, 108.5, 108.5, 108.5, 108.5])[:, None]
    px = np.hstack([path, np.full((T, 1), 100.0)])
    m = Market.from_arrays(idx, ["S0USDT", "S1USDT"], spot=px, perp=px)
    tg = Targets(
        np.tile([0.5, 0.0], (T, 1)),
        np.array([0, 1]),
        np.array([0, 0]),
        pd.DataFrame({"strategy": ["x", "x"], "symbol": ["S0USDT", "S1USDT"], "group": [0, 0]}),
        weights=np.tile([1.0, 1.0], (T, 1)),
    )
    base = dict(initial_capital_quote=22_000, perp_leverage=10, maintenance_margin_rate=0.05, **ZERO)
    no = run_backtest(m, tg, BacktestConfig(**base))
    yes = run_backtest(m, tg, BacktestConfig(topup_margin_ratio=0.6, **base))
    assert len(liq_events(no)) == 1
    assert len(liq_events(yes)) == 0
    tr = yes.events[(yes.events.kind == "transfer") & (yes.events.time > idx[1])]
    assert len(tr) >= 1 and (tr.cash > 0).all()
    assert np.nanmax(yes.margin_ratio.iloc[:, 0]) < 1.0


def test_reenter_policy_rehedges_at_the_next_bar_with_sparse_targets():
    m = market(high={(5, 0): 110.0})
    tg = np.full((T, 1), np.nan)
    tg[0] = 1.0  # a single decision, NaN (keep) afterwards
    cfg = BacktestConfig(
        initial_capital_quote=11_000,
        perp_leverage=10,
        maintenance_margin_rate=0.005,
        after_liquidation="reenter",
        **ZERO,
    )
    res = run_backtest(m, tg, cfg)
    assert len(liq_events(res)) == 1
    fills = res.events[(res.events.kind == "fill") & (res.events.time == m.index[6])]
    assert "perp" in set(fills.leg)
    assert res.perp_qty.iloc[6, 0] < 0 and res.perp_qty.iloc[6, 0] == pytest.approx(-res.spot_qty.iloc[6, 0])


# --------------------------------------------------------------------------- portfolio margin
PM = dict(initial_capital_quote=10_000, perp_leverage=1, maintenance_margin_rate=0.01, clearance_fee_rate=0.0, **ZERO)


@pytest.mark.parametrize("side", [1.0, -1.0])
def test_portfolio_margin_counts_spot_as_collateral(side):
    """Capital 10,000 at 1x: 50 coins of spot (long for carry, borrowed for reverse) and the
    opposite 50 perp coins with 5,000 in the futures wallet; flat mmr 1%, haircut 5%.

    Cross: the futures wallet alone, 5,000 - 50 (m - 100) = 0.01 * 50 m, so a rise to
    m = 10,000 / 50.5 = 198.02 liquidates the short perp of the carry.
    Portfolio: wallet + cash + perp PnL + spot at 95% (long) or 105% (short), moving with the
    mark: 10,000 - 50 m h = 0.01 * 50 m, so m = 200 / (h + mmr) = 3,333.33 for both sides.
    """
    cross_lp = 10_000 / 50.5
    pm_lp = 200 / 0.06
    m = market(high={(5, 0): 250.0, (7, 0): 4_000.0}, low={(5, 0): 40.0})
    res_pm = run_backtest(m, side, BacktestConfig(margin_mode="portfolio", spot_collateral_haircut=0.05, **PM))
    ev = liq_events(res_pm)
    assert len(ev) == 1 and ev.time[0] == m.index[7]  # the 250 rise (and 40 dip) of bar 5 is absorbed
    assert ev.price[0] == pytest.approx(pm_lp, rel=1e-9)
    assert ev.qty[0] == pytest.approx(-side * -50.0, rel=1e-12)
    # at a calm close (all prices 100): balance 10,000 - 50 * 100 * 5%, maintenance 50
    assert res_pm.margin_ratio.iloc[2, 0] == pytest.approx(50 / 9_750, rel=1e-12)
    # the distance to liquidation points at the same price: den = |-5,000 + 4,750| + 50 = 300
    assert 100 * (1 + res_pm.distance_to_liquidation.iloc[2, 0]) == pytest.approx(pm_lp, rel=1e-12)
    assert res_pm.spot_qty.iloc[8:, 0].eq(0).all()  # close_spot policy after the liquidation
    if side > 0:
        ev_cross = liq_events(run_backtest(m, side, BacktestConfig(margin_mode="cross", **PM)))
        assert ev_cross.time[0] == m.index[5] and ev_cross.price[0] == pytest.approx(cross_lp, rel=1e-9)


def test_portfolio_margin_without_haircut():
    """h = 0: the hedged book's balance stays 10,000 whatever the price; the carry's short perp
    maintenance 0.5 m reaches it only at m = 20,000; the reverse carry's long perp needs less
    maintenance as the price falls, so no move liquidates it."""
    m = market(high={(5, 0): 10_000.0}, low={(6, 0): 1.0})
    carry = run_backtest(m, 1.0, BacktestConfig(margin_mode="portfolio", spot_collateral_haircut=0.0, **PM))
    assert liq_events(carry).empty
    assert 100 * (1 + carry.distance_to_liquidation.iloc[3, 0]) == pytest.approx(20_000, rel=1e-12)
    reverse = run_backtest(m, -1.0, BacktestConfig(margin_mode="portfolio", spot_collateral_haircut=0.0, **PM))
    assert liq_events(reverse).empty
    assert np.isinf(reverse.distance_to_liquidation.iloc[3, 0])
    assert liq_events(
        run_backtest(
            market(high={(5, 0): 20_001.0}),
            1.0,
            BacktestConfig(margin_mode="portfolio", spot_collateral_haircut=0.0, **PM),
        )
    ).price[0] == pytest.approx(20_000, rel=1e-9)

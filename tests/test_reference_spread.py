"""The plain-Python reference of the cross-venue spread hedge (tests/reference_spread.py) on
hand-computed cases: funding and fees, a liquidation and the after-liquidation policy, a
collateral rebalance with a delayed transfer, the mirror of a reversed target, and the
equity identity on random markets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backtest.tiers import TierTable
from data.market import Market
from tests.reference_spread import COMPONENTS, POLICIES, run_reference_spread

CAPITAL = 1000.0


def _index(T):
    return pd.date_range("2024-01-01", periods=T, freq="h", tz="UTC")


def _market(prices, funding_rate=None, volume=1e12):
    """A one-symbol market on ``prices``: a (T,) array of flat bars, or a dict of (T,) arrays
    open/high/low/close (the mark is the perp; spot = perp)."""
    if isinstance(prices, dict):
        T = len(prices["open"])
        perp = {k: np.asarray(v, float).reshape(T, 1) for k, v in prices.items()}
    else:
        T = len(prices)
        perp = np.asarray(prices, float).reshape(T, 1)
    rate = None if funding_rate is None else np.asarray(funding_rate, float).reshape(T, 1)
    return Market.from_arrays(_index(T), ["BTC"], spot=perp, perp=perp, funding_rate=rate, volume=volume)


def _settings(**kw):
    s = dict(
        capital=CAPITAL,
        leverage=2.0,
        fee_a=0.0004,
        fee_b=0.0005,
        slippage_bps=0.0,
        impact=0.0,
        clearance=0.015,
        lag=1,
        transfer_delay_bars=3,
        transfer_fee=1.0,
        band=math.inf,
        after_liquidation="close_and_reenter",
        cooldown_bars=5,
        tiers_a=TierTable.flat(1, 0.01),
        tiers_b=TierTable.flat(1, 0.01),
    )
    s.update(kw)
    return s


def _hold(T, x=1.0):
    """Target ``x`` from row 0, then NaN (keep)."""
    t = np.full((T, 1), np.nan)
    t[0, 0] = x
    return t


def _run(a, b, targets, **kw):
    return run_reference_spread(a, b, targets, np.array([0] * targets.shape[1]), _settings(**kw))


def _of(res, kind, leg=None):
    return [e for e in res["events"] if e[2] == kind and (leg is None or e[3] == leg)]


def _assert_identity(res):
    total = sum(res["components"][k] for k in COMPONENTS)
    np.testing.assert_allclose(res["equity"] - CAPITAL, total, rtol=0, atol=1e-9 * CAPITAL)


# --------------------------------------------------------------------------- (1) funding and fees
def test_flat_prices_funding_on_b_and_fees_by_hand():
    T = 25
    rate_b = np.zeros(T)
    rate_b[[7, 15, 23]] = 0.0001  # 8-hourly settlements on venue B, none on A
    a = _market(np.full(T, 100.0), volume=1e4)
    b = _market(np.full(T, 100.0), rate_b, volume=1e4)
    res = _run(a, b, _hold(T), slippage_bps=1.0, impact=0.5, band=0.1, tiers_a=TierTable.flat(1, 0.005))

    # bar 1 (row 0 + lag 1): E = 1000, N = 1000 * 1 * 2 / 2 = 1000 quote per leg, 10 coins
    sl = 1e-4 + 0.5 * 10 / 1e4
    fills = _of(res, "fill")
    assert [(e[0], e[3], e[4]) for e in fills] == [(1, "A", 10.0), (1, "B", -10.0)]
    pa, pb = 100 * (1 + sl), 100 * (1 - sl)
    fee_a, fee_b = 10 * pa * 0.0004, 10 * pb * 0.0005
    assert fills[0][5] == pytest.approx(pa, rel=1e-14) and fills[1][5] == pytest.approx(pb, rel=1e-14)
    assert fills[0][6] == pytest.approx(-fee_a, rel=1e-12) and fills[0][7] == pytest.approx(fee_a, rel=1e-12)
    assert fills[1][6] == pytest.approx(-fee_b, rel=1e-12) and fills[1][7] == pytest.approx(fee_b, rel=1e-12)
    np.testing.assert_array_equal(res["s"][1:, 0], 10.0)
    np.testing.assert_array_equal(res["q"][1:, 0], -10.0)
    assert res["s"][0, 0] == 0 and math.isnan(res["mr_a"][0, 0])

    # funding: the short on B receives 10 coins * 0.0001 * 100 at each settlement; A pays nothing
    fund = _of(res, "funding")
    assert [(e[0], e[3]) for e in fund] == [(7, "B"), (15, "B"), (23, "B")]
    for e in fund:
        assert e[4] == -10.0 and e[5] == pytest.approx(100.0) and e[6] == pytest.approx(0.1, rel=1e-12)
    comp = {k: v[:, 0] for k, v in res["components"].items()}
    assert comp["funding"][-1] == pytest.approx(0.3, rel=1e-12)
    assert comp["funding"][7] == pytest.approx(0.1, rel=1e-12) and comp["funding"][6] == 0
    assert comp["fees"][-1] == pytest.approx(-(fee_a + fee_b), rel=1e-12)
    assert comp["slippage"][-1] == pytest.approx(-2 * 10 * 100 * sl, rel=1e-12)
    for k in ("borrow", "spot_price", "perp_price", "liquidation", "unhedged"):
        np.testing.assert_array_equal(comp[k], 0.0)
    assert res["equity"][-1, 0] == pytest.approx(CAPITAL + 0.3 - fee_a - fee_b - 2 * 10 * 100 * sl, rel=1e-13)
    # margin ratios at the close: maintenance / margin balance of each isolated leg
    mb_a = 500 - fee_a + 10 * (100 - pa)
    mb_b = 500 - fee_b - 10 * (100 - pb) + 0.3
    assert res["mr_a"][-1, 0] == pytest.approx(1000 * 0.005 / mb_a, rel=1e-12)
    assert res["mr_b"][-1, 0] == pytest.approx(1000 * 0.01 / mb_b, rel=1e-12)
    assert not _of(res, "transfer") and not _of(res, "liquidation")  # inside the band
    _assert_identity(res)


@pytest.mark.parametrize("lag, bar, price", [(0, 1, 101.0), (1, 1, 101.0), (2, 2, 102.0)])
def test_timing_lag(lag, bar, price):
    """Row 0 executes at bar max(lag, 1): lag 0 at bar 0's close, else at the bar's open."""
    T = 6
    o = 100.0 + np.arange(T)
    px = {"open": o, "high": o + 1, "low": o, "close": o + 1}  # close_j = open_{j+1}
    res = _run(_market(px), _market(px), _hold(T), lag=lag)
    fills = _of(res, "fill")
    assert [(e[0], e[3]) for e in fills] == [(bar, "A"), (bar, "B")]
    assert fills[0][5] == price and fills[0][4] == pytest.approx(CAPITAL / price)
    _assert_identity(res)


# --------------------------------------------------------------------------- (2) liquidation
def _doubling(T=30):
    """Flat at 100 up to bar 2's open, then +5 per bar to 200 (bar 22's open), flat after."""
    o = np.clip(100.0 + 5.0 * (np.arange(T + 1) - 2), 100.0, 200.0)
    return {"open": o[:-1], "high": np.maximum(o[:-1], o[1:]), "low": np.minimum(o[:-1], o[1:]), "close": o[1:]}


def test_short_leg_liquidation_fee_floor_close_and_reenter():
    px = _doubling()
    # band 0.95: nothing is due before the liquidation (mb_B >= 49.5 > 5% of the mean, about 25)
    res = _run(_market(px), _market(px), _hold(30), cooldown_bars=5, band=0.95)
    c = {k: v[:, 0] for k, v in res["components"].items()}
    # bar 1: 10 coins at 100 on both venues (E = 1000, N = 1000 = room: not capped); wallet B = 500 - fee
    bal_b = 500 - 10 * 100 * 0.0005
    # isolated short: bal + q (lp - entry) = |q| lp mmr  ->  lp = (bal + Q entry) / (Q (1 + mmr))
    lp = (bal_b + 10 * 100) / (10 * 1.01)
    assert 145 < lp < 150  # inside bar 11 (open 145, high 150): no gap
    liq = _of(res, "liquidation")
    assert len(liq) == 1
    assert liq[0][:5] == (11, 0, "liquidation", "B", 10.0)
    assert liq[0][5] == pytest.approx(lp, rel=1e-13)
    # the wallet left at lp is the maintenance, 10 * lp * 1%: the clearance fee (1.5%) is floored there
    assert liq[0][7] == pytest.approx(10 * lp * 0.01, rel=1e-12) and 10 * lp * 0.015 > liq[0][7]
    assert liq[0][6] == pytest.approx(-10 * lp + 1000 - liq[0][7], rel=1e-12)  # realized - fee, no cover
    assert c["liquidation"][11] == pytest.approx(-10 * lp * 0.01, rel=1e-12)
    # prices: hedged moves to bar 10's close (145) on both legs, B to lp hedged, then A unhedged to 150
    assert c["spot_price"][10] == pytest.approx(450) and c["perp_price"][10] == pytest.approx(-450)
    assert c["perp_price"][11] == pytest.approx(-10 * (lp - 100), rel=1e-12)
    assert c["spot_price"][11] == pytest.approx(450) and c["unhedged"][11] == pytest.approx(50)
    assert res["q"][11, 0] == 0 and res["s"][11, 0] == 10 and math.isnan(res["mr_b"][11, 0])

    # close_and_reenter: leg A closed at the next open (bar 12, 150), re-entry at bar 11 + 5
    fills = _of(res, "fill")
    assert (fills[2][0], fills[2][3], fills[2][4], fills[2][5]) == (12, "A", -10.0, 150.0)
    assert fills[2][6] == pytest.approx(10 * 50 - 10 * 150 * 0.0004, rel=1e-12)
    assert res["s"][12:20, 0].tolist() == [0.0] * 8 and res["q"][12:20, 0].tolist() == [0.0] * 8
    E = 500 - 0.4 + 500 - 0.6  # wallet A after the round trip (999), wallet B empty (the fee took the rest)
    assert res["equity"][15, 0] == pytest.approx(E, rel=1e-12)
    # bar 16 (open 170): the re-entry sizes N = 999 * 1 * 2 / 2 but at most L * min(mb_A, mb_B) = 0:
    # capped to nothing, no fill (before the amendment: a short on an empty wallet, liquidated at once
    # with an insurance cover); the collateral check runs on the flat legs (capped): 0 < 5% of 499.5
    assert res["equity"][16, 0] == pytest.approx(E, rel=1e-12)
    # bar 17 (open 175): the rebalance sends half the gap, 499.5, from A (flat: free = its wallet) to B;
    # it arrives less the fee at bar 17 + 3, and the column re-sizes there
    tr = _of(res, "transfer")
    assert len(tr) == 2
    dep, arr = tr
    assert dep[:4] == (17, 0, "transfer", "A") and dep[6] == pytest.approx(-E / 2, rel=1e-12) and dep[7] == 1.0
    assert arr[:4] == (20, 0, "transfer", "B") and arr[6] == pytest.approx(E / 2 - 1, rel=1e-12) and arr[7] == 0.0
    np.testing.assert_allclose(res["in_flight"][17:20, 0], E / 2 - 1, rtol=1e-12)
    assert res["in_flight"][16, 0] == 0 and (res["in_flight"][20:, 0] == 0).all()
    np.testing.assert_allclose(res["equity"][17:20, 0], E - 1, rtol=1e-12)
    # bar 20 (open 190): arrival first (mb_A = 499.5, mb_B = 498.5), then the re-entry to the last
    # target: N = 998 * 2 / 2 = 998, room = 2 * 498.5 = 997 (capped again, inside the band: no more)
    n_coins = (E / 2 - 1) * 2 / 190
    assert [(e[0], e[3]) for e in fills[3:]] == [(20, "A"), (20, "B")]
    assert fills[3][4] == pytest.approx(n_coins, rel=1e-12) and fills[4][4] == pytest.approx(-n_coins, rel=1e-12)
    assert fills[3][5] == 190.0 and fills[4][5] == 190.0
    fee_a20, fee_b20 = 997 * 0.0004, 997 * 0.0005
    assert fills[3][7] == pytest.approx(fee_a20, rel=1e-12) and fills[4][7] == pytest.approx(fee_b20, rel=1e-12)
    np.testing.assert_allclose(res["s"][20:, 0], n_coins, rtol=1e-12)
    np.testing.assert_allclose(res["q"][20:, 0], -n_coins, rtol=1e-12)
    # no second liquidation, no insurance cover: the liquidation component is the first fee only
    np.testing.assert_allclose(c["liquidation"][11:], -10 * lp * 0.01, rtol=1e-12)
    # prices stop at 200 from bar 22: hedged legs, the equity moves only by the fees after the transfer
    assert res["equity"][-1, 0] == pytest.approx(E - 1 - fee_a20 - fee_b20, rel=1e-12)
    mb_b = E / 2 - 1 - fee_b20 - n_coins * (200 - 190)
    assert res["mr_b"][-1, 0] == pytest.approx(n_coins * 200 * 0.01 / mb_b, rel=1e-12)
    _assert_identity(res)


@pytest.mark.parametrize("policy", POLICIES)
def test_after_liquidation_policies(policy):
    """With an infinite band the column never rebalances: after the liquidation, wallet B is
    empty and every re-entry is capped to nothing."""
    px = _doubling()
    res = _run(_market(px), _market(px), _hold(30), cooldown_bars=5, after_liquidation=policy)
    fills = [(e[0], e[3]) for e in _of(res, "fill")]
    assert fills[:2] == [(1, "A"), (1, "B")] and _of(res, "liquidation")[0][0] == 11
    assert len(_of(res, "liquidation")) == 1 and not _of(res, "transfer")
    if policy in ("close_and_reenter", "close_spot"):  # closed at the next open, then flat
        assert fills[2:] == [(12, "A")] and (res["s"][12:] == 0).all()
    elif policy == "hold_spot":  # leg A kept, unhedged
        assert fills[2:] == [] and (res["s"][11:] == 10).all()
    else:  # reenter at the next open: sized to min(N, L * min(mb_A, mb_B)) = 0, i.e. A closed
        assert fills[2:] == [(12, "A")] and (res["s"][12:] == 0).all()
    assert (res["q"][11:] == 0).all()
    _assert_identity(res)


# --------------------------------------------------------------------------- (3) collateral rebalance
def _step(T, before, after, at):
    p = np.full(T, before)
    p[at:] = after
    return p


def test_collateral_rebalance_restrike_and_delayed_transfer():
    T = 14
    px = _step(T, 100.0, 112.0, 5)
    res = _run(_market(px), _market(px), _hold(T), fee_a=0.0002, fee_b=0.0002, band=0.2)
    c = {k: v[:, 0] for k, v in res["components"].items()}
    # bar 5's close: mb_A = 500 - 0.2 + 120, mb_B = 500 - 0.2 - 120; 379.8 < 0.8 * 499.8: due
    # bar 6's open: both legs back to the target's size on E = 999.6 (999.6 / 112 coins), then
    # need 120 > free = the resize's realized 12.9 - its fee with a profit on A: re-strike
    s_new = 999.6 / 112
    fr = (10 - s_new) * 112 * 0.0002  # the resize fee of each leg
    fs = s_new * 112 * 0.0002  # each re-strike fill's fee
    fills = _of(res, "fill")
    got = [(e[0], e[3], e[4], e[5]) for e in fills[2:]]
    want = [(6, "A", s_new - 10, 112.0), (6, "B", 10 - s_new, 112.0), (6, "A", -s_new, 112.0), (6, "A", s_new, 112.0)]
    assert [g[:2] for g in got] == [w[:2] for w in want]
    np.testing.assert_allclose([g[2:] for g in got], [w[2:] for w in want], rtol=1e-12)
    assert fills[2][6] == pytest.approx((10 - s_new) * 12 - fr, rel=1e-12)  # realized - fee
    assert fills[4][6] == pytest.approx(s_new * 12 - fs, rel=1e-12) and fills[5][6] == pytest.approx(-fs, rel=1e-12)
    free = 120 - fr - 2 * fs  # all of A's profit realized, its initial margin back to 999.6 / 2
    tr = _of(res, "transfer")
    assert len(tr) == 2
    dep, arr = tr
    assert dep[:4] == (6, 0, "transfer", "A") and math.isnan(dep[4]) and math.isnan(dep[5])
    assert dep[6] == pytest.approx(-free, rel=1e-12) and dep[7] == 1.0
    assert arr[:4] == (9, 0, "transfer", "B") and arr[6] == pytest.approx(free - 1.0, rel=1e-12) and arr[7] == 0.0
    np.testing.assert_allclose(res["in_flight"][6:9, 0], free - 1.0, rtol=1e-12)
    assert res["in_flight"][5, 0] == 0 and (res["in_flight"][9:, 0] == 0).all()
    # the fee in fees; the equity moves only by it and the fills' fees (flat prices after bar 5)
    assert c["fees"][6] - c["fees"][5] == pytest.approx(-1.0 - 2 * fr - 2 * fs, rel=1e-12)
    np.testing.assert_allclose(np.diff(res["equity"][6:, 0]), 0.0, atol=1e-12)
    assert res["equity"][6, 0] - res["equity"][5, 0] == pytest.approx(-1.0 - 2 * fr - 2 * fs, rel=1e-12)
    # after the arrival the margin balances are inside the band: nothing more
    assert res["mr_b"][9, 0] == pytest.approx(s_new * 112 * 0.01 / (379.8 - fr + free - 1.0), rel=1e-12)
    _assert_identity(res)


def test_collateral_rebalance_without_restrike_and_immediate_arrival():
    T = 10
    px = _step(T, 100.0, 130.0, 4)
    res = _run(_market(px), _market(px), _hold(T, 0.5), fee_a=0.0002, fee_b=0.0002, band=0.2, transfer_delay_bars=0)
    # x = 0.5: 5 coins; bar 4's close: mb_A = 649.9, mb_B = 349.9: due; bar 5: both legs to
    # 499.9 / 130 coins (the resize realizes 30 per coin sold on A), then need 150 <= free
    s_new = 499.9 / 130
    fr = (5 - s_new) * 130 * 0.0002
    assert len(_of(res, "fill")) == 4  # the entry and the resize, no re-strike
    assert 499.9 + (5 - s_new) * 30 - fr - s_new * 130 / 2 >= 150
    dep, arr = _of(res, "transfer")
    assert dep[:4] == (5, 0, "transfer", "A") and dep[6] == pytest.approx(-150.0, rel=1e-12)
    assert arr[:4] == (5, 0, "transfer", "B") and arr[6] == pytest.approx(149.0, rel=1e-12)
    assert res["events"].index(arr) == res["events"].index(dep) + 1
    assert (res["in_flight"] == 0).all()
    assert res["equity"][5, 0] - res["equity"][4, 0] == pytest.approx(-1.0 - 2 * fr, rel=1e-12)
    assert res["components"]["fees"][5, 0] == pytest.approx(-0.1 - 0.1 - 2 * fr - 1.0, rel=1e-12)
    _assert_identity(res)


def test_no_transfer_when_amount_below_fee():
    T = 10
    px = _step(T, 100.0, 112.0, 4)
    # free at bar 5 after the resize and the re-strike is 120 (no trading fees): a 150-quote
    # transfer fee leaves nothing worth sending
    res = _run(_market(px), _market(px), _hold(T), fee_a=0.0, fee_b=0.0, band=0.2, transfer_fee=150.0)
    assert not _of(res, "transfer") and len(_of(res, "fill")) == 6  # the resize and re-strike still happen
    _assert_identity(res)


# --------------------------------------------------------------------------- (4) mirror
def test_reverse_target_mirrors_on_mirrored_funding():
    T = 60
    rng = np.random.default_rng(4)
    o = 100 * np.exp(np.cumsum(rng.normal(0, 0.004, T + 1)))
    px = {"open": o[:-1], "high": np.maximum(o[:-1], o[1:]) * 1.001, "low": np.minimum(o[:-1], o[1:]) * 0.999}
    px["close"] = o[1:]
    rate = np.where(np.arange(T) % 8 == 7, 0.0003, 0.0)
    zero = np.zeros(T)
    targets = np.full((T, 2), np.nan)
    targets[0], targets[20], targets[40] = (1.0, 0.5), (0.5, 1.0), (0.0, 1.0)
    kw = dict(fee_a=0.0005, fee_b=0.0005, slippage_bps=2.0, band=0.05, transfer_delay_bars=2, leverage=3.0)
    up = _run(_market(px, zero), _market(px, rate), targets, **kw)
    down = _run(_market(px, rate), _market(px, zero), -targets, **kw)
    for k in ("funding", "fees", "slippage", "liquidation", "unhedged"):
        np.testing.assert_allclose(down["components"][k], up["components"][k], rtol=1e-10, atol=1e-9)
    np.testing.assert_allclose(down["components"]["spot_price"], up["components"]["perp_price"], atol=1e-9)
    np.testing.assert_allclose(down["components"]["perp_price"], up["components"]["spot_price"], atol=1e-9)
    np.testing.assert_allclose(down["equity"], up["equity"], rtol=1e-12)
    np.testing.assert_allclose(down["s"], up["q"], rtol=1e-12)
    np.testing.assert_allclose(down["q"], up["s"], rtol=1e-12)
    np.testing.assert_allclose(down["mr_a"], up["mr_b"], rtol=1e-10)
    np.testing.assert_allclose(down["in_flight"], up["in_flight"], rtol=1e-12)
    assert up["components"]["funding"][-1, 0] > 0 and _of(up, "transfer")  # funding and a rebalance happened
    flip = {"A": "B", "B": "A"}
    ev_up = sorted((e[0], e[1], e[2], flip[e[3]]) for e in up["events"])
    assert sorted(e[:4] for e in down["events"]) == ev_up


# --------------------------------------------------------------------------- (5) random markets
def _random_leg(rng, base, T, N, invalid):
    o = base * np.exp(np.cumsum(rng.normal(0, 0.02, (T + 1, N)), axis=0))
    opn, close = o[:-1], o[1:]
    high = np.maximum(opn, close) * np.exp(np.abs(rng.normal(0, 0.01, (T, N))))
    low = np.minimum(opn, close) * np.exp(-np.abs(rng.normal(0, 0.01, (T, N))))
    # volumes keep the impact small (it is not capped: a huge order could sell below 0); some are 0 (no term)
    volume = np.where(rng.random((T, N)) < 0.05, 0.0, rng.uniform(1e4, 1e5, (T, N)))
    px = {"open": opn, "high": high, "low": low, "close": close, "volume": volume}
    for k in ("open", "high", "low", "close"):
        px[k] = np.where(invalid, np.nan, px[k])
    rate = np.where(np.arange(T)[:, None] % 8 == 7, rng.normal(0.0001, 0.0005, (T, N)), 0.0)
    return Market.from_arrays(_index(T), ["X", "Y"], spot=px, perp=px, funding_rate=rate)


@pytest.mark.parametrize(
    "seed, lag, delay, policy",
    [(1, 0, 0, "close_and_reenter"), (2, 1, 3, "close_spot"), (3, 2, 1, "hold_spot"), (4, 1, 2, "reenter")],
)
def test_identity_on_random_markets(seed, lag, delay, policy):
    rng = np.random.default_rng(seed)
    T, N, C = 300, 2, 4
    base = rng.uniform(10, 1000, N)
    invalid_a = rng.random((T, N)) < 0.03
    invalid_b = rng.random((T, N)) < 0.03
    a = _random_leg(rng, base, T, N, invalid_a)
    b = _random_leg(rng, base * 1.001, T, N, invalid_b)
    choices = np.array([-1, -0.5, 0, 0.5, 1, np.nan])
    targets = choices[rng.integers(0, len(choices), (T, C))]
    targets[rng.random((T, C)) < 0.85] = np.nan
    settings = _settings(
        leverage=10.0,  # 8 left seed 1 without a liquidation once re-entries are capped by the wallets
        slippage_bps=2.0,
        impact=0.1,
        lag=lag,
        transfer_delay_bars=delay,
        band=0.2,
        after_liquidation=policy,
        cooldown_bars=3,
        tiers_a=TierTable.flat(N, 0.02),
        tiers_b=TierTable.flat(N, 0.03),
    )
    res = run_reference_spread(a, b, targets, np.array([0, 1, 1, 0]), settings)
    _assert_identity(res)
    assert np.isfinite(res["equity"]).all()
    assert (res["in_flight"] >= 0).all()
    assert (np.isnan(res["mr_a"]) == (res["s"] == 0)).all() and (np.isnan(res["mr_b"]) == (res["q"] == 0)).all()
    kinds = {e[2] for e in res["events"]}
    assert {"fill", "funding", "transfer", "liquidation"} <= kinds
    for e in res["events"]:
        assert len(e) == 9 and e[3] in ("A", "B") and e[7] >= 0 and e[8] == 0  # (one venue per leg)
        assert e[2] != "fill" or e[5] > 0

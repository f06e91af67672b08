"""Cross margin per venue: the columns of a portfolio share each venue's margin account.

The kernel (``backtest.kernels.spread.spread_cross_nb``) against the plain-Python reference on
random markets, a liquidation worked by hand, one-column portfolios equal to isolated margin,
and the refusals.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig, SpreadConfig
from backtest.spread import run_spread
from backtest.targets import Targets
from data.errors import ConfigError
from data.market import Market
from tests.reference_spread import run_reference_spread
from tests.test_spread_engine import (
    CAPITAL,
    COLUMN_SYMBOL,
    T,
    _compare_events,
    _markets,
    _quote_rates,
    _setup,
    _two_bracket_tiers,
    assert_arrays_equal_reference,
    assert_chain_equals,
    case_config,
)

GROUPS = np.array([0, 0, 1, 1])  # two portfolios of two coins each (BTC and ETH)


def _targets(a, x, groups=GROUPS):
    cols = pd.DataFrame({"symbol": [a.symbols[n] for n in COLUMN_SYMBOL], "group": groups})
    return Targets(x, COLUMN_SYMBOL, np.asarray(groups), cols)


# (seed, bar hours, lag, after_liquidation, transfer delay in bars, transfer fee, band, cooldown
#  hours, maintenance, leverage)
CASES = [
    (11, 1, 1, "close_and_reenter", 1, 1.0, 0.3, 3.0, 0.02, 12.0),
    (12, 1, 0, "close_spot", 0, 0.5, None, 2.0, "tiers", 15.0),
    (13, 2, 2, "hold_spot", 2, 2.0, 0.2, 6.0, 0.01, 20.0),
    (14, 1, 1, "reenter", 3, 0.0, 0.1, 1.0, "venue", 10.0),
]


def _cross_case(case, tmp_path):
    """A random case (``tests/test_spread_engine.py``'s, at leverage ``case[9]``) in cross margin:
    markets, targets, config, spread and the reference's settings."""
    a, b, x, config, spread, settings = _setup(case[:9], tmp_path)
    config = config.replace(perp_leverage=case[9], margin_mode="cross")
    return a, b, x, config, spread, {**settings, "leverage": case[9], "cross": True, "groups": GROUPS}


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c[0]}-{c[3]}-{c[8]}-x{c[9]:g}" for c in CASES])
def test_cross_portfolios_match_the_reference(case, tmp_path):
    a, b, x, config, spread, settings = _cross_case(case, tmp_path)
    ref = run_reference_spread(a, b, x, COLUMN_SYMBOL, settings)
    res = run_spread(a, b, _targets(a, x), config, spread)
    assert_arrays_equal_reference(res, ref)
    _compare_events(res, ref, a, b)
    # the identity per column (its ledger) and per portfolio, at every bar
    total = sum(res.components[k] for k in res.components)
    np.testing.assert_allclose(res.equity - CAPITAL, total, rtol=0, atol=1e-9 * CAPITAL)
    port = res.portfolio_equity()
    assert list(port.columns) == [0, 1]
    np.testing.assert_allclose(port[0], res.equity[0] + res.equity[1], rtol=1e-15)
    # not vacuous: accounts were liquidated, and a column's loss was shared with the other coin
    ev = ref["events"]
    assert sum(e[2] == "liquidation" for e in ev) > 0
    shares = [e for e in ev if e[2] == "transfer" and math.isnan(e[4]) and e[0] > 0 and not _is_departure(e, ev)]
    assert shares, "no account's loss was shared"


@pytest.mark.parametrize("variant", ["quote rate B", "quote rate A", "spot leg A", "borrowed spot leg A"])
def test_cross_portfolios_with_quote_rates_and_spot_legs_match_the_reference(variant, tmp_path):
    """A venue valued at a quote rate (its account's amounts in its own quote), a spot leg A (only
    venue B's perps share an account) and a borrowed spot leg A (its own margin call, then venue
    B's account): the kernel equals the reference."""
    import dataclasses

    # (spot legs: the case without collateral moves, so that venue B's account is liquidated)
    a, b, x, config, spread, settings = _cross_case(CASES[0 if variant.startswith("quote") else 1], tmp_path)
    kw = {}
    if variant.startswith("quote rate"):
        leg = variant[-1]
        rates = _quote_rates(a.index, 5)
        kw["quote_rates"] = {leg: rates}
        settings["rates_" + leg.lower()] = (rates["open"].to_numpy(), rates["close"].to_numpy())
    else:
        x = -np.abs(x) if variant.startswith("borrowed") else np.abs(x)
        spread = dataclasses.replace(spread, leg_a="spot")
        settings["leg_a"] = "spot"
        if variant.startswith("borrowed"):
            config = config.replace(borrow_annual_rate=0.5, spot_margin_liquidation_level=1.9)
            settings.update(borrow_h=0.5 / 8760, spot_level=1.9, spot_liq_fee=config.spot_liquidation_fee_rate)
    ref = run_reference_spread(a, b, x, COLUMN_SYMBOL, settings)
    res = run_spread(a, b, _targets(a, x), config, spread, **kw)
    assert_arrays_equal_reference(res, ref)
    _compare_events(res, ref, a, b)
    liq = [e for e in ref["events"] if e[2] == "liquidation"]
    assert any(e[3] == "B" for e in liq)
    if variant.startswith("quote"):
        assert (res.totals["quote_fx"].abs() > 1e-3).all()
    if variant.startswith("borrowed"):
        assert any(e[3] == "A" for e in liq) and (res.totals.borrow < 0).all()


@pytest.mark.parametrize("cross_leg", ["A", "B"])
def test_one_venue_in_cross_margin_the_other_isolated_matches_the_reference(cross_leg, tmp_path):
    """``SpreadConfig(margin_a=..., margin_b=...)``: one venue's account shared by the portfolio's
    columns, the other venue's legs isolated (checked after the account, in the bar's second
    half): the kernel equals the reference, and both kinds of liquidation happen."""
    import dataclasses

    a, b, x, config, spread, settings = _cross_case(CASES[0], tmp_path)
    iso = "b" if cross_leg == "A" else "a"
    spread = dataclasses.replace(spread, **{f"margin_{iso}": "isolated"})
    ref = run_reference_spread(a, b, x, COLUMN_SYMBOL, {**settings, "cross_legs": (cross_leg,)})
    res = run_spread(a, b, _targets(a, x), config, spread)
    assert_arrays_equal_reference(res, ref)
    _compare_events(res, ref, a, b)
    liq = [e for e in ref["events"] if e[2] == "liquidation"]
    assert {e[3] for e in liq} == {"A", "B"}
    assert any(f"cross margin on leg {cross_leg}'s venue" in n for n in res.notes)


def test_resumed_chunks_of_a_cross_run_equal_one_run_bit_for_bit(tmp_path):
    a, b, x, config, spread, _settings = _cross_case(CASES[0], tmp_path)
    whole = run_spread(a, b, _targets(a, x), config, spread)
    parts, state = [], None
    for lo, hi in ((0, 97), (97, 211), (211, T)):
        sa = a.select(start=a.index[lo], end=a.index[hi - 1] + pd.Timedelta(hours=1))
        sb = b.select(start=b.index[lo], end=b.index[hi - 1] + pd.Timedelta(hours=1))
        res = run_spread(sa, sb, _targets(sa, x[lo:hi]), config, spread, resume=state)
        parts.append(res)
        state = res.state
    assert_chain_equals(parts, whole)
    assert (whole.events.kind == "liquidation").any()


def _is_departure(e, ev):
    """A collateral transfer's departure or arrival (not a share of a liquidated account): the
    same bar and column hold no liquidation event."""
    return not any(f[0] == e[0] and f[2] == "liquidation" for f in ev)


def test_one_column_portfolios_in_cross_margin_equal_isolated_margin(tmp_path):
    """With one perp per venue account, cross and isolated margin are the same account: the runs
    agree (the liquidation point found by bisection, the isolated one in closed form)."""
    a, b, x = _markets(21, 1)
    base = case_config(1, "close_and_reenter", 3.0, None).to_dict()
    spread = SpreadConfig(
        venue_rebalance_band=0.2, fee_a_rate=0.0004, fee_b_rate=0.0005, tiers_dir=_two_bracket_tiers(tmp_path)
    )
    runs = {}
    for mode in ("isolated", "cross"):
        cfg = BacktestConfig(**{**base, "perp_leverage": 15.0, "margin_mode": mode})
        runs[mode] = run_spread(a, b, _targets(a, x, np.arange(4)), cfg, spread)
    iso, cro = runs["isolated"], runs["cross"]
    assert (iso.totals["liquidations"] > 0).all()
    np.testing.assert_allclose(cro.equity, iso.equity, rtol=0, atol=1e-9 * CAPITAL)
    for k in iso.components:
        np.testing.assert_allclose(cro.components[k], iso.components[k], rtol=0, atol=1e-9 * CAPITAL)
    for leg in "AB":
        np.testing.assert_allclose(cro.margin_ratio[leg], iso.margin_ratio[leg], rtol=1e-9)
    pd.testing.assert_series_equal(cro.totals["liquidations"], iso.totals["liquidations"])


def _hand_market(x_high_b):
    """Two coins at 100 on two venues over four hourly bars; coin X's mark on venue B reaches
    ``x_high_b[j]`` inside bar ``j`` (and closes at 100); no funding."""
    T = 4
    index = pd.date_range("2025-01-01", periods=T, freq="1h", tz="UTC")
    flat = np.full((T, 2), 100.0)
    legs = []
    for highs in (np.full(T, 100.0), np.asarray(x_high_b, float)):
        high = flat.copy()
        high[:, 0] = highs
        px = {"open": flat, "high": high, "low": flat, "close": flat, "volume": np.full((T, 2), 1e6)}
        legs.append(
            Market.from_arrays(index, ["XUSDT", "YUSDT"], freq="1h", spot=px, perp=px, funding_rate=np.zeros((T, 2)))
        )
    return legs


HAND = dict(
    initial_capital_quote=1000.0,
    perp_leverage=10.0,
    maintenance_margin_rate=0.01,
    clearance_fee_rate=0.005,
    slippage_bps=0.0,
    volume_participation_coefficient=0.0,
)
HAND_SPREAD = SpreadConfig(fee_a_rate=0.0, fee_b_rate=0.0, venue_rebalance_band=None)


def test_a_cross_account_liquidation_worked_by_hand():
    """Coins X and Y, long venue A's perp and short venue B's, 10x, 1,000 per coin: each leg 5,000
    (50 coins at 100) on a 500 wallet. X rallies on venue B to 112 in bar 2, then 125 in bar 3.

    Isolated, X's short on B is liquidated where ``500 - 50 (p - 100) = 0.01 * 50 p``:
    p = 5500 / 50.5 = 108.9109 (bar 2). In cross margin venue B's account holds both wallets
    (1,000) and Y's maintenance too: ``1000 - 50 (p - 100) = 0.5 p + 50`` at p = 5950 / 50.5 =
    117.8218, so it survives bar 2 and goes in bar 3 (at 71.29% of the path to 125): X's short
    closes at 117.8218 (realized -891.09, fee 0.005 * 50 * p = 29.455), Y's at 100 (fee 25); the
    account keeps 0.25 p + 25 = 54.455, Y's wallet gives X's -420.545 back to zero."""
    a, b = _hand_market([100, 100, 112, 125])
    x = np.ones((4, 2))
    p_iso, p_cross = 5500 / 50.5, 5950 / 50.5
    cfg = BacktestConfig(**HAND, margin_mode="isolated")
    iso = run_spread(a, b, x, cfg, HAND_SPREAD)
    liq = iso.events[iso.events["kind"] == "liquidation"]
    assert list(liq["column"]) == [0] and liq["time"].iloc[0] == a.index[2]
    assert liq["price"].iloc[0] == pytest.approx(p_iso, rel=1e-12)

    cro = run_spread(a, b, x, BacktestConfig(**HAND, margin_mode="cross"), HAND_SPREAD)
    ev = cro.events
    liq = ev[ev["kind"] == "liquidation"]
    assert list(liq["column"]) == [0, 1] and (liq["time"] == a.index[3]).all() and (liq["leg"] == "B").all()
    assert liq["price"].tolist() == pytest.approx([p_cross, 100.0], rel=1e-12)
    assert liq["fee"].tolist() == pytest.approx([0.005 * 50 * p_cross, 25.0], rel=1e-12)
    share = ev[(ev["kind"] == "transfer") & (ev["time"] == a.index[3])]
    owed = -(500 - 50 * (p_cross - 100) - 0.005 * 50 * p_cross)
    assert owed == pytest.approx(420.545, abs=1e-3)
    assert share["column"].tolist() == [0, 1]
    assert share["cash"].tolist() == pytest.approx([owed, -owed], rel=1e-12)
    # after the bar: venue B's account holds 0.25 p + 25 (all of it Y's); the A legs are still open
    # (closed at the next open by the after-liquidation policy), worth their 500 wallets each
    eq = cro.equity.iloc[3]
    assert eq.sum() == pytest.approx(1000 + 0.25 * p_cross + 25, rel=1e-12)
    assert eq[0] == pytest.approx(500.0, rel=1e-12)
    comp = cro.components["liquidation"].iloc[3]
    assert comp[0] == pytest.approx(-0.005 * 50 * p_cross + owed, rel=1e-12)
    assert comp[1] == pytest.approx(-25.0 - owed, rel=1e-12)
    # the account's margin ratio at bar 2's close: maintenance 100 over 1,000 (every price back at 100)
    assert cro.margin_ratio["B"].iloc[2].tolist() == pytest.approx([0.1, 0.1], rel=1e-12)
    assert np.isnan(cro.margin_ratio["B"].iloc[3]).all()


def test_cross_margin_refusals():
    a, b = _hand_market([100, 100, 100, 100])
    x = np.ones((4, 2))
    with pytest.raises(ConfigError, match="portfolio"):
        run_spread(a, b, x, BacktestConfig(margin_mode="portfolio"), HAND_SPREAD)
    with pytest.raises(ConfigError, match="a spot leg A has no futures account"):
        SpreadConfig(leg_a="spot", margin_a="cross")
    with pytest.raises(ConfigError, match="margin_b"):
        SpreadConfig(margin_b="portfolio")
    with pytest.raises(ConfigError, match="cannot switch venues"):
        run_spread(
            [a, b],
            [b, a],
            x,
            BacktestConfig(margin_mode="cross"),
            HAND_SPREAD,
            venues=(np.zeros((4, 2)), np.zeros((4, 2))),
        )
    tg = Targets(x, np.array([0, 1]), np.array([0, 0]), pd.DataFrame({"symbol": ["XUSDT", "YUSDT"], "group": [0, 0]}))
    with pytest.raises(ConfigError, match="one column per portfolio"):
        run_spread(a, b, tg, BacktestConfig(), HAND_SPREAD)


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c[0]}-{c[3]}" for c in CASES])
def test_lean_outputs_are_the_same_run_as_full_outputs(case, tmp_path):
    """The driver runs chunks of bars whole and checks the accounts afterwards, redoing a chunk up
    to a bar where one may be breached (the reference checks it with full outputs, margin ratios
    from the columns' notes included): without the margin ratio or the amount in flight it is
    the same run, bit for bit."""
    a, b, x, config, spread, _settings = _cross_case(case, tmp_path)
    full = run_spread(a, b, _targets(a, x), config, spread)
    lean = run_spread(a, b, _targets(a, x), config, spread, outputs=("equity", "components", "positions", "events"))
    pd.testing.assert_frame_equal(lean.equity, full.equity, check_exact=True)
    for k in full.components:
        pd.testing.assert_frame_equal(lean.components[k], full.components[k], check_exact=True)
    for leg in "AB":
        pd.testing.assert_frame_equal(lean.positions[leg], full.positions[leg], check_exact=True)
    pd.testing.assert_frame_equal(lean.events, full.events, check_exact=True)
    pd.testing.assert_frame_equal(lean.totals, full.totals, check_exact=True)
    assert (full.events.kind == "liquidation").sum() > 0

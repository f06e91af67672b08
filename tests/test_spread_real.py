"""Cross-venue spread backtests on the real Binance, Bybit, Hyperliquid and OKX files (issue 16's acceptance).

For BTC and ETH, every pair of Binance, Bybit and Hyperliquid over 2024-09-04..2025-07-26 and of
Binance, Bybit and OKX over 2025-10-06..2026-01-09, :func:`backtest.spread.run_spread` holds a
funding-spread trade (:func:`strategies.funding_spread.funding_spread`) and a hedge held
throughout; then

* each leg's funding, settlement by settlement, equals an independent recomputation from the raw
  freqtrade files (:mod:`tests.raw_funding`: position x price at the settlement x rate) to 1e-9;
* the identity ``equity - initial = sum of the components`` holds at every bar;
* a liquidation of the Binance leg is checked by hand with Binance's tiers file, read here
  with ``json`` (not carry's loader).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig, SpreadConfig
from backtest.spread import run_spread
from backtest.targets import Targets
from data.loader import DataWarning
from data.venue_pair import load_venue_pair
from strategies.funding_spread import FundingSpreadParams, funding_spread
from tests.conftest import shared_data_path
from tests.raw_funding import expected_funding, raw_settlements
from tests.test_venue_pair import QUOTE, venues_catalog  # noqa: F401  (the session catalog fixture)

pytestmark = pytest.mark.shared_data

H = pd.Timedelta(hours=1)
WINDOWS = {
    "2024-09-04": ("2025-07-26", ("binance", "bybit", "hyperliquid")),
    "2025-10-06": ("2026-01-09", ("binance", "bybit", "okx")),
}
CASES = [
    (start, end, a, b)
    for start, (end, venues) in WINDOWS.items()
    for k, a in enumerate(venues)
    for b in venues[k + 1 :]
]


def _pair(catalog, coins, a, b, start, end):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_venue_pair(catalog, coins, a, b, start, end)


def _funding_as_raw(got: pd.Series, venue: str, coin: str, pos: pd.Series) -> int:
    """``got`` (funding cash per bar, quote) equals the raw files' settlements of ``venue`` for
    ``coin`` on the coins ``pos`` held at each bar (position x price x rate), to 1e-9; returns
    the number of bars checked."""
    want = expected_funding(raw_settlements(shared_data_path(venue), coin, QUOTE[venue]), pos)
    want = want[np.isfinite(want.to_numpy()) & (want.to_numpy() != 0)]
    want = want.groupby(want.index.ceil("h") - H).sum()
    assert got.index.equals(pd.DatetimeIndex(want.index)), f"{venue} {coin}: settlement bars differ"
    np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-9, atol=0, err_msg=f"{venue} {coin}")
    return len(got)


def _run(pair, x: np.ndarray, column_symbol: np.ndarray, config: BacktestConfig, spread: SpreadConfig):
    cols = np.arange(len(column_symbol), dtype=np.int64)
    names = pd.DataFrame({"symbol": [pair.leg_a.symbols[n] for n in column_symbol], "group": cols})
    tg = Targets(x, np.asarray(column_symbol, np.int64), cols, names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_spread(pair.leg_a, pair.leg_b, tg, config, spread)


@pytest.mark.parametrize(("start", "end", "a", "b"), CASES, ids=[f"{c[2]}-{c[3]}-{c[0][:7]}" for c in CASES])
def test_funding_spread_backtest_each_leg_as_the_raw_files(venues_catalog, start, end, a, b):  # noqa: F811
    pair = _pair(venues_catalog, "BTC,ETH", a, b, start, end)
    T, N = pair.leg_a.shape
    fee_a = fee_b = 0.0005
    strat = funding_spread(pair.leg_a, pair.leg_b, FundingSpreadParams(entry_annualized=0.02), fee_a, fee_b)
    held = np.ones((T, N))  # (a row executing where a leg is not tradable is 0: hold 1 on every row)
    x = np.concatenate([strat, held], axis=1)  # columns: strategy BTC, ETH; held BTC, ETH
    sym = np.array([0, 1, 0, 1])
    res = _run(pair, x, sym, BacktestConfig(perp_leverage=2), SpreadConfig(tiers_dir=str(shared_data_path())))
    # the identity at every bar
    comps = sum(res.components.values())
    np.testing.assert_allclose((res.equity - res.initial_capital).to_numpy(), comps.to_numpy(), rtol=0, atol=1e-9 * 1e4)
    assert (res.totals.funding_a + res.totals.funding_b - res.totals.funding).abs().max() < 1e-9
    # each leg's funding, settlement by settlement, against the raw files
    ev = res.events[res.events.kind == "funding"]
    checked = 0
    for c, n in enumerate(sym):
        coin = pair.coins[n]
        for leg, venue in (("A", a), ("B", b)):
            got = ev[(ev.column == c) & (ev.leg == leg)].groupby("time").cash.sum()
            checked += _funding_as_raw(got, venue, coin, res.positions[leg][c])
    assert checked > 1000
    # the held hedge is open through the window (it closes where a leg stops being tradable)
    assert ((res.positions["A"][[2, 3]] > 0).mean() > 0.9).all()


@pytest.mark.parametrize("start", list(WINDOWS), ids=[w[:7] for w in WINDOWS])
def test_one_hedge_switching_among_three_venues_funding_as_the_raw_files(venues_catalog, start):  # noqa: F811
    """funding_spread over three venues as one hedge per coin whose legs move between venues
    (``run_spread(..., venues=...)``): on each venue, each leg's funding equals the raw files'
    for the coins it held there, the identity holds at every bar, and switches moved collateral."""
    import strategies

    end, venues = WINDOWS[start]
    pairs = [_pair(venues_catalog, "BTC,ETH", venues[0], v, start, end) for v in venues[1:]]
    perps = [pairs[0].leg_a, pairs[0].leg_b, pairs[1].leg_b]
    params = FundingSpreadParams(entry_annualized=0.02, min_hold_hours=24.0, switch_annualized=0.02)
    picked = strategies.funding_spread_pairs(perps, params, [0.0005] * 3)
    x, va, vb = strategies.venue_schedule(picked)
    cols = np.arange(2)
    tg = Targets(x, cols, cols, pd.DataFrame({"symbol": perps[0].symbols, "group": cols}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = BacktestConfig(perp_leverage=2)
        res = run_spread(perps, perps, tg, cfg, SpreadConfig(tiers_dir=str(shared_data_path())), venues=(va, vb))
    comps = sum(res.components.values())
    np.testing.assert_allclose((res.equity - res.initial_capital).to_numpy(), comps.to_numpy(), rtol=0, atol=1e-9 * 1e4)
    ev = res.events
    fund = ev[ev.kind == "funding"]
    checked = 0
    for c, coin in enumerate(pairs[0].coins):
        for v, venue in enumerate(venues):
            # the coins held on this venue per bar: each leg's position where that leg is on it
            pos = sum(res.positions[leg][c].where(res.venues[leg][c] == v, 0.0) for leg in "AB")
            got = fund[(fund.column == c) & (fund.venue == venue)].groupby("time").cash.sum()
            checked += _funding_as_raw(got, venue, coin, pos)
    assert checked > 100
    moves = ev[(ev.kind == "transfer") & (ev.cash < 0)]
    assert len(moves) > 0
    switched = (res.venues["A"].diff().abs().sum() + res.venues["B"].diff().abs().sum()).sum()
    assert switched > 0


def test_a_liquidation_of_the_binance_leg_by_hand_with_its_tiers(venues_catalog):  # noqa: F811
    """Long Binance, short Bybit at 20x with no collateral moves from 2024-09-04: BTC's dip of
    early September liquidates the Binance leg at the price where its isolated margin balance meets
    the maintenance margin of Binance's bracket for that notional (tiers file read by hand)."""
    pair = _pair(venues_catalog, "BTC", "binance", "bybit", "2024-09-04", "2025-07-26")
    T = pair.leg_a.n_bars
    x = np.full((T, 1), np.nan)
    x[0] = 1.0
    capital = 100_000.0
    cfg = BacktestConfig(initial_capital_quote=capital, perp_leverage=20, after_liquidation="close_spot")
    res = _run(pair, x, np.array([0]), cfg, SpreadConfig(venue_rebalance_band=None, tiers_dir=str(shared_data_path())))
    ev = res.events
    liq = ev[ev.kind == "liquidation"]
    assert len(liq) == 1 and liq.iloc[0].leg == "A" and liq.iloc[0].venue == "binance"
    first = liq.iloc[0]
    before = ev[(ev.leg == "A") & (ev.time < first.time) & (ev.kind.isin(["fill", "funding"]))]
    fills = before[before.kind == "fill"]
    assert len(fills) == 1  # one entry: the cost basis is its coins x its price
    q, entry = float(fills.qty.iloc[0]), float(fills.price.iloc[0])
    assert q > 0 and q * entry > 500_000  # a notional past Binance's first brackets
    # the wallet at the liquidation bar: half the capital, less the entry's fee, plus the funding
    # so far (this bar's funding comes after the liquidation check)
    wallet = capital / 2 + float(before.cash.sum())
    tiers = json.loads(shared_data_path("binance_leverage_tiers.json").read_text())["BTC/USDT:USDT"]
    # long: wallet + q P - q entry = q P mmr - cum  =>  P = (q entry - wallet - cum) / (q (1 - mmr))
    prices = []
    for t in tiers:
        mmr, cum = float(t["maintenanceMarginRate"]), float(t["info"]["cum"])
        p = (q * entry - wallet - cum) / (q * (1 - mmr))
        if float(t["minNotional"]) <= q * p < float(t["maxNotional"]):
            prices.append((p, mmr, cum))
    assert len(prices) == 1
    p, mmr, cum = prices[0]
    assert cum > 0  # a bracket with a maintenance amount: the tiers matter
    j = pair.leg_a.index.get_loc(first.time)
    mark_open, mark_low = pair.leg_a.mark_open[j, 0], pair.leg_a.mark_low[j, 0]
    want = max(min(p, mark_open), mark_low)  # on the bar's path (the open on a gap)
    assert first.price == pytest.approx(want, rel=1e-12)
    assert first.qty == pytest.approx(-q, rel=1e-15)
    # the clearance fee on the notional, floored at the margin left
    realized = q * first.price - q * entry
    fee = min(cfg.clearance_fee_rate * q * first.price, max(wallet + realized, 0.0))
    assert first.fee == pytest.approx(fee, rel=1e-12, abs=1e-9)
    # the Bybit leg is closed at the next open (close_spot: no re-entry)
    after = ev[(ev.leg == "B") & (ev.kind == "fill") & (ev.time > first.time)]
    assert after.time.iloc[0] == first.time + H and after.qty.iloc[0] == pytest.approx(q)
    assert res.positions["A"][0].iloc[-1] == 0.0 and res.positions["B"][0].iloc[-1] == 0.0
    assert res.totals.liquidations[0] == 1


def test_binance_spot_against_the_bybit_perp(venues_catalog):  # noqa: F811
    """A cash-and-carry across venues: BTC and ETH spot bought on Binance, the perp shorted on
    Bybit, 2024-09-04..2025-07-26 at 2x: the perp leg's funding equals the raw files', the spot
    leg pays none, the identity holds at every bar, and the spot venue starts with L / (L + 1)
    of the capital."""
    pair = _pair_spot(venues_catalog)
    assert "perp_only" not in pair.leg_a.data_flags and "perp_only" in pair.leg_b.data_flags
    x = np.ones((pair.leg_a.n_bars, 2))
    res = _run(pair, x, np.array([0, 1]), BacktestConfig(perp_leverage=2), SpreadConfig(leg_a="spot"))
    comps = sum(res.components.values())
    np.testing.assert_allclose((res.equity - res.initial_capital).to_numpy(), comps.to_numpy(), rtol=0, atol=1e-5)
    assert (res.totals.funding_a == 0).all() and (res.totals.funding_b > 0).all()
    assert list(res.columns.leg_a) == ["spot", "spot"] and list(res.columns.symbol_a) == ["BTCUSDT", "ETHUSDT"]
    ev = res.events
    first = ev[(ev.kind == "fill") & (ev.leg == "A")].groupby("column").first()
    # the first spot buy: the spot venue's share, 2/3 of the capital, plus Binance's spot fee
    # (its cash dips below zero by the fee, as the single-venue engine's spot wallet does)
    np.testing.assert_allclose(-first.cash, 10_000 * 2 / 3 * (1 + res.columns.fee_a.to_numpy()), rtol=1e-12)
    assert (res.columns.fee_a == 0.001).all()
    fund = ev[ev.kind == "funding"]
    assert set(fund.leg) == {"B"}
    for c, coin in enumerate(pair.coins):
        _funding_as_raw(fund[fund.column == c].groupby("time").cash.sum(), "bybit", coin, res.positions["B"][c])


def _pair_spot(catalog):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_venue_pair(catalog, "BTC,ETH", "binance", "bybit", "2024-09-04", "2025-07-26", leg_a="spot")


def test_a_venue_that_stops_publishing_closes_the_hedge_at_its_last_price(venues_catalog):  # noqa: F811
    """Hyperliquid's files end on 2025-07-26 while Binance's go on: over a window past that end,
    both legs close at the open of Hyperliquid's last priced bar (its last price), the column
    stays flat with a constant equity after it, and nothing is NaN."""
    pair = _pair(venues_catalog, "BTC", "binance", "hyperliquid", "2025-06-01", "2025-09-01")
    hl = pair.leg_b
    last = int(np.flatnonzero(hl.valid[:, 0])[-1])
    assert last < hl.n_bars - 24 * 30 and not hl.tradable[last:, 0].any()
    res = _run(pair, np.ones((hl.n_bars, 1)), np.array([0]), BacktestConfig(perp_leverage=2), SpreadConfig())
    pos_a, pos_b = res.positions["A"][0].to_numpy(), res.positions["B"][0].to_numpy()
    assert pos_a[last - 1] > 0 and pos_b[last - 1] < 0
    assert (pos_a[last:] == 0).all() and (pos_b[last:] == 0).all()
    closes = res.events[(res.events.kind == "fill") & (res.events.time == hl.index[last])]
    assert sorted(closes.leg) == ["A", "B"]
    assert closes[closes.leg == "B"].price.iloc[0] == hl.perp_open[last, 0]  # its last price, no slippage set
    eq = res.equity[0].to_numpy()
    assert np.isfinite(eq).all() and (eq[last:] == eq[last]).all()


def test_the_report_parts_of_a_trade_add_up_to_its_equity(venues_catalog):  # noqa: F811
    """reports.spread_run.trade_components splits each leg's funding and the transfer fees out
    of the engine's components: the parts still sum to equity - capital at every bar."""
    from reports.spread_run import trade_components

    pair = _pair(venues_catalog, "BTC,ETH", "binance", "hyperliquid", "2024-09-04", "2025-07-26")
    res = _run(pair, np.ones((pair.leg_a.n_bars, 2)), np.array([0, 1]), BacktestConfig(perp_leverage=3), SpreadConfig())
    parts, ratio = trade_components(res, ["BTC", "ETH"])
    for c, label in enumerate(["BTC", "ETH"]):
        total = parts[label].sum(axis=1).to_numpy()
        np.testing.assert_allclose(total, res.equity[c].to_numpy() - res.initial_capital, rtol=0, atol=1e-6)
        assert parts[label]["transfer fees"].iloc[-1] == pytest.approx(res.totals.transfer_fees[c], rel=1e-12)
        assert parts[label]["funding A"].iloc[-1] == pytest.approx(res.totals.funding_a[c], rel=1e-12)
    assert ratio.shape == (pair.leg_a.n_bars, 2) and (ratio.max() < 1).all()


def test_each_fill_pays_the_fee_in_force_on_its_venue(venues_catalog):  # noqa: F811
    """Hyperliquid's perp taker fee rose from 0.035% to 0.045% on 2025-05-05 03:00 UTC
    (``data/venues/hyperliquid.toml``): every fill of a run across that date pays its venue's
    schedule at its bar (fee = |qty| x price x rate), for a pair and for a hedge whose legs
    switch venues, and the run's note names the change."""
    import strategies
    from data.venues import venue_rules

    change = pd.Timestamp("2025-05-05 03:00", tz="UTC")
    start, end = "2025-03-01", "2025-07-26"
    pair = _pair(venues_catalog, "BTC,ETH", "binance", "hyperliquid", start, end)
    bybit = _pair(venues_catalog, "BTC,ETH", "binance", "bybit", start, end).leg_b
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = BacktestConfig(perp_leverage=5)  # (rebalances often: fills on both sides of the change)
        held = run_spread(pair.leg_a, pair.leg_b, 1.0, cfg, SpreadConfig())
        perps = [pair.leg_a, bybit, pair.leg_b]
        picked = strategies.funding_spread_pairs(perps, FundingSpreadParams(entry_annualized=0.02), [0.0005] * 3)
        x, va, vb = strategies.venue_schedule(picked)
        cols = np.arange(2)
        tg = Targets(x, cols, cols, pd.DataFrame({"symbol": perps[0].symbols, "group": cols}))
        moving = run_spread(perps, perps, tg, cfg, SpreadConfig(), venues=(va, vb))
    assert any("then 0.00045 from 2025-05-05 03:00" in n for n in held.notes)
    for res in (held, moving):
        fills = res.events[res.events.kind == "fill"]
        want = np.array([venue_rules(v).fees_at(t).perp_taker_fee_rate for v, t in zip(fills.venue, fills.time)])
        got = fills.fee.to_numpy() / (fills.qty.abs() * fills.price).to_numpy()
        np.testing.assert_allclose(got, want, rtol=1e-9)
        hl = fills[fills.venue == "hyperliquid"]
        assert (hl.time < change).any() and (hl.time >= change).any()


def _maintenance_by_hand(tiers: list[dict], notional: float) -> float:
    """The maintenance margin of ``notional`` (quote) in a ccxt tiers list, read by hand."""
    for t in tiers:
        if float(t["minNotional"]) <= notional < float(t["maxNotional"]):
            return notional * float(t["maintenanceMarginRate"]) - float(t["info"]["cum"])
    raise AssertionError(f"no bracket holds {notional}")


def test_a_cross_account_of_btc_and_eth_liquidated_by_hand_with_its_tiers(venues_catalog):  # noqa: F811
    """BTC and ETH long on Binance, short on Bybit, 20x, no collateral moves, from 2024-09-04: in
    isolated margin each coin's Binance leg goes on its own; in cross margin the two legs share
    Binance's account and go together, both at the same fraction of their bar's path from the mark
    open to the low, where the account's margin balance (both wallets, from the events, plus both
    unrealized losses) equals the sum of the maintenance margins of Binance's brackets for their
    notionals (tiers file read by hand). Funding still equals the raw files', and the identity
    holds per coin and for the portfolio at every bar."""
    pair = _pair(venues_catalog, "BTC,ETH", "binance", "bybit", "2024-09-04", "2025-07-26")
    T = pair.leg_a.n_bars
    x = np.full((T, 2), np.nan)
    x[0] = 1.0
    capital = 100_000.0
    spread = SpreadConfig(venue_rebalance_band=None, tiers_dir=str(shared_data_path()))
    runs = {}
    for mode in ("isolated", "cross"):
        cfg = BacktestConfig(
            initial_capital_quote=capital, perp_leverage=20, after_liquidation="close_spot", margin_mode=mode
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runs[mode] = run_spread(pair.leg_a, pair.leg_b, x, cfg, spread)
    iso, res = runs["isolated"], runs["cross"]
    assert list(res.columns.group) == [0, 0] and list(iso.columns.group) == [0, 1]
    ev = res.events
    liq = ev[ev.kind == "liquidation"]
    assert list(liq.column) == [0, 1] and (liq.leg == "A").all() and liq.time.nunique() == 1
    when = liq.time.iloc[0]
    iso_liq = iso.events[iso.events.kind == "liquidation"].groupby("column").time.first()
    assert (iso_liq != when).any()  # alone, the coins' legs went at other bars
    j = pair.leg_a.index.get_loc(when)
    tiers = json.loads(shared_data_path("binance_leverage_tiers.json").read_text())
    mb = mm = 0.0
    lams = []
    for c, coin in enumerate(pair.coins):
        before = ev[(ev.column == c) & (ev.leg == "A") & (ev.time < when) & ev.kind.isin(["fill", "funding"])]
        fills = before[before.kind == "fill"]
        assert len(fills) == 1
        q, entry = float(fills.qty.iloc[0]), float(fills.price.iloc[0])
        p = float(liq[liq.column == c].price.iloc[0])
        mo, lo = pair.leg_a.mark_open[j, c], pair.leg_a.mark_low[j, c]
        lams.append((mo - p) / (mo - lo))
        mb += capital / 2 + float(before.cash.sum()) + q * (p - entry)
        mm += _maintenance_by_hand(tiers[f"{coin}/USDT:USDT"], q * p)
    assert 0 < lams[0] <= 1 and lams[1] == pytest.approx(lams[0], rel=1e-9)  # one point of both paths
    assert mb == pytest.approx(mm, rel=1e-9)
    # funding per leg as the raw files', the identity per coin and for the portfolio
    fund = ev[ev.kind == "funding"]
    for c, coin in enumerate(pair.coins):
        for leg, venue in (("A", "binance"), ("B", "bybit")):
            got = fund[(fund.column == c) & (fund.leg == leg)].groupby("time").cash.sum()
            _funding_as_raw(got, venue, coin, res.positions[leg][c])
    comps = sum(res.components.values())
    np.testing.assert_allclose((res.equity - capital).to_numpy(), comps.to_numpy(), rtol=0, atol=1e-9 * capital)
    port = res.portfolio_equity()[0]
    np.testing.assert_allclose(port - 2 * capital, comps.sum(axis=1), rtol=0, atol=2e-9 * capital)

"""Spread hedges whose legs switch venues (``run_spread(..., venues=...)``): the kernel against the
plain-Python reference on random markets of three venues, the transfers of a switch, and the
refusals."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig, SpreadConfig
from backtest.spread import COMPONENTS, run_spread, venue_fee, venue_tiers
from data.errors import ConfigError
from tests.reference_spread import run_reference_spread
from tests.test_spread_engine import (
    CAPITAL,
    COLUMN_SYMBOL,
    LEVERAGE,
    N,
    T,
    _leg,
    _quote_rates,
    _targets,
    assert_arrays_equal_reference,
    assert_chain_equals,
    case_config,
    reference_settings,
)

VENUES = ("binance", "bybit", "okx")


def _venue_markets(seed, hours=1):
    """Three venues' random perps of the same coins (funding of different means and intervals)."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(10, 1000, N)
    out = []
    for v, (drift, every) in enumerate(((0.0001, 8), (-0.0002, 4), (0.0003, 1))):
        m = _leg(rng, base * (1 + 0.001 * v), hours, rng.random((T, N)) < 0.02, drift, every)
        out.append(dataclasses.replace(m, venue=VENUES[v]))
    return out, rng


def _schedule(rng, C, perps=True):
    """Per column: a pair of venues held for 20-60 rows at a time, targets in {-1, -0.5, 0, 0.5,
    1} or NaN (keep; the venues then NaN too, as are some rows' venues: stay)."""
    x = np.full((T, C), np.nan)
    va, vb = np.full((T, C), np.nan), np.full((T, C), np.nan)
    for c in range(C):
        i = 0
        while i < T:
            k = int(rng.integers(20, 60))
            if perps:
                a, b = rng.choice(3, 2, replace=False)
            else:
                a, b = 0, int(rng.integers(0, 3))
            x[i, c] = rng.choice([-1.0, -0.5, 0.5, 1.0, 0.0]) if perps else rng.choice([0.5, 1.0, 0.0])
            va[i : i + k, c], vb[i : i + k, c] = a, b
            x[i + 1 : i + k, c] = np.where(rng.random(len(x[i + 1 : i + k, c])) < 0.1, x[i, c], np.nan)
            i += k
    va[rng.random(va.shape) < 0.2] = np.nan
    return x, va, vb


def _settings(markets, config, spread, delay, fee_t, band, spot=False):
    fees_a = [venue_fee(m, config.order_type, config, "spot" if spot else "perp")[0] for m in markets[0]]
    fees_b = [venue_fee(m, config.order_type, config)[0] for m in markets[1]]
    tiers = [[venue_tiers(m, config, spread)[0] for m in legs] for legs in markets]
    cooldown = math.ceil(config.reentry_cooldown_hours)
    settings = reference_settings(config, delay, fee_t, band, (fees_a, fees_b), tiers, cooldown)
    return dict(settings, leg_a="spot" if spot else "perp")


def _reference(legs_a, legs_b, x, va, vb, settings):
    parts = []
    for c in range(x.shape[1]):
        own = dict(settings, leverage=LEVERAGE[c], venues=(va[:, [c]], vb[:, [c]]))
        r = run_reference_spread(legs_a, legs_b, x[:, [c]], COLUMN_SYMBOL[[c]], own)
        r["events"] = [(e[0], c, *e[2:]) for e in r["events"]]
        parts.append(r)
    out = {k: np.hstack([p[k] for p in parts]) for k in ("equity", "s", "q", "mr_a", "mr_b", "in_flight")}
    out["components"] = {k: np.hstack([p["components"][k] for p in parts]) for k in COMPONENTS}
    out["events"] = sorted((e for p in parts for e in p["events"]), key=lambda e: (e[0], e[1]))
    return out


def _compare(res, ref, legs_a, legs_b, index):
    atol = 1e-9 * CAPITAL
    assert_arrays_equal_reference(res, ref)
    ev = res.events
    assert len(ev) == len(ref["events"]), (ev["kind"].value_counts().to_dict(), len(ref["events"]))
    bars = index.get_indexer(ev["time"])
    for k, (row, e) in enumerate(zip(ev.itertuples(index=False), ref["events"], strict=True)):
        where = f"event {k} {e}"
        venue = (legs_a if e[3] == "A" else legs_b)[e[8]].venue
        assert (int(bars[k]), int(row.column), row.kind, row.leg, row.venue) == (*e[:4], venue), f"{where}: {row}"
        for got, want in ((row.qty, e[4]), (row.price, e[5])):
            assert (math.isnan(got) and math.isnan(want)) or abs(got - want) <= 1e-9 * abs(want), where
        assert abs(row.cash - e[6]) <= atol and abs(row.fee - e[7]) <= atol, f"{where}: {row}"


# (seed, execution delay, transfer delay in bars, transfer fee, band, after_liquidation)
CASES = [
    (11, 1, 2, 1.0, 0.2, "close_and_reenter"),
    (12, 0, 0, 0.5, 0.3, "reenter"),
    (13, 2, 3, 2.0, None, "close_spot"),
    (14, 1, 1, 0.0, 0.1, "hold_spot"),
]


def _config(lag, policy):
    return case_config(lag, policy, 3.0, 0.02)


def _random_case(case):
    """One of :data:`CASES`: three venues' markets, a random schedule of targets and venues for
    every column, the config and the spread settings."""
    seed, lag, delay, fee_t, band, policy = case
    perps, rng = _venue_markets(seed)
    x, va, vb = _schedule(rng, len(COLUMN_SYMBOL))
    spread = SpreadConfig(venue_transfer_delay_hours=delay, venue_transfer_fee_quote=fee_t, venue_rebalance_band=band)
    return perps, x, va, vb, _config(lag, policy), spread


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c[0]}-lag{c[1]}-delay{c[2]}" for c in CASES])
def test_switching_venues_matches_the_reference(case):
    seed, _lag, delay, fee_t, band, _policy = case
    perps, x, va, vb, config, spread = _random_case(case)
    res = run_spread(
        perps, perps, _targets(perps[0], x), config, spread, column_params={"perp_leverage": LEVERAGE}, venues=(va, vb)
    )
    settings = _settings((perps, perps), config, spread, delay, fee_t, band)
    assert len(set(settings["fee_a"])) > 1  # each venue its own fee
    ref = _reference(perps, perps, x, va, vb, settings)
    _compare(res, ref, perps, perps, perps[0].index)
    # the identity at every bar, and switches that moved collateral between the venues
    total = sum(res.components[k] for k in COMPONENTS)
    np.testing.assert_allclose(res.equity - CAPITAL, total, rtol=0, atol=1e-9 * CAPITAL)
    ev = res.events
    moves = ev[(ev.kind == "transfer") & (ev.cash < 0)]
    assert len(moves) > 10 and moves.venue.nunique() == 3, moves.venue.value_counts()
    assert set(ev[ev.kind == "funding"].venue) == set(VENUES)


def test_a_switch_that_closes_both_legs_matches_the_reference():
    """``switch_keeps_leg=False``: at a switch both legs close (the one that keeps its venue too)
    and reopen on arrival; the kernel equals the reference, and no leg is open while collateral
    is in flight for a switch."""
    perps, rng = _venue_markets(15)
    C = len(COLUMN_SYMBOL)
    x, va, vb = _schedule(rng, C)
    config = _config(1, "close_and_reenter")
    spread = SpreadConfig(venue_transfer_delay_hours=3, venue_rebalance_band=None, switch_keeps_leg=False)
    kw = {"column_params": {"perp_leverage": LEVERAGE}, "venues": (va, vb)}
    res = run_spread(perps, perps, _targets(perps[0], x), config, spread, **kw)
    settings = dict(_settings((perps, perps), config, spread, 3, 1.0, None), switch_keeps_leg=False)
    _compare(res, _reference(perps, perps, x, va, vb, settings), perps, perps, perps[0].index)
    flying = res.in_flight.to_numpy() != 0  # (no rebalances: only switches send)
    assert flying.sum() > 20
    assert (res.positions["A"].to_numpy()[flying] == 0).all() and (res.positions["B"].to_numpy()[flying] == 0).all()
    kept = run_spread(
        perps, perps, _targets(perps[0], x), config, dataclasses.replace(spread, switch_keeps_leg=True), **kw
    )
    assert (kept.positions["A"].to_numpy()[flying] != 0).any()  # the default keeps a leg open meanwhile
    more = res.totals.trading_fees - kept.totals.trading_fees  # (costs: negative)
    assert (more <= 1e-9).all() and (more < 0).any()  # two more fills where a leg was kept


def test_a_spot_leg_keeps_its_coins_while_the_perp_moves_venue():
    """best_venue_carry's shape: spot on venue A throughout, the short perp on whichever venue;
    a move of the perp sells no spot (same side), sends the perp venue's wallet to the new one
    and opens the perp there when it arrives (the spot unhedged meanwhile)."""
    perps, rng = _venue_markets(21)
    spot = dataclasses.replace(perps[0], venue="binance")
    C = len(COLUMN_SYMBOL)
    x, va, vb = _schedule(rng, C, perps=False)
    config = _config(1, "close_and_reenter")
    spread = SpreadConfig(leg_a="spot", venue_transfer_delay_hours=2, venue_rebalance_band=0.3)
    res = run_spread(
        [spot], perps, _targets(spot, x), config, spread, column_params={"perp_leverage": LEVERAGE}, venues=(0.0, vb)
    )
    settings = _settings(([spot], perps), config, spread, 2, 1.0, 0.3, spot=True)
    ref = _reference([spot], perps, x, np.zeros_like(va), vb, settings)
    _compare(res, ref, [spot], perps, spot.index)
    ev = res.events
    moves = ev[(ev.kind == "transfer") & (ev.cash < 0) & (ev.leg == "B")]
    assert len(moves) > 5
    # at a move, leg B closes on the venue left and no spot is sold at that bar
    for _, m in moves.head(5).iterrows():
        at = ev[(ev.time == m.time) & (ev.column == m.column) & (ev.kind == "fill")]
        assert (at.leg == "B").all() and (at.venue == m.venue).all()


def test_a_switch_by_hand():
    """Two venues' flat markets, a 1-hour transfer: long A / short B on venues (0, 1), then the
    same trade on (0, 2) at row 10: venue 1's leg closes at bar 11's open, its wallet (500: flat
    prices, no fees) leaves for venue 2 with a fee of 1 and arrives (499) at bar 12, where both
    legs size to the target on the equity (999), at most what each venue margins (2 x 499):
    leg A, open throughout, sells 0.02 and leg B opens 9.98 coins short on venue 2."""
    index = pd.date_range("2024-01-01", periods=30, freq="1h", tz="UTC")
    px = np.full((30, 1), 100.0)
    markets = [dataclasses.replace(_flat_market(index, px), venue=v) for v in ("binance", "bybit", "okx")]
    x = np.full((30, 1), np.nan)
    x[0] = 1.0
    va = np.zeros((30, 1))
    vb = np.full((30, 1), 1.0)
    vb[10:] = 2.0
    x[10] = 1.0
    config = BacktestConfig(initial_capital_quote=1000.0, perp_leverage=2.0, slippage_bps=0.0)
    spread = SpreadConfig(venue_transfer_delay_hours=1, venue_transfer_fee_quote=1.0, fee_a_rate=0.0, fee_b_rate=0.0)
    res = run_spread(markets, markets, x, config, spread, venues=(va, vb))
    ev = res.events
    fills = ev[ev.kind == "fill"]
    assert list(zip(fills.time.dt.hour, fills.leg, fills.venue, fills.qty.round(12))) == [
        (1, "A", "binance", 10.0),
        (1, "B", "bybit", -10.0),
        (11, "B", "bybit", 10.0),
        (12, "A", "binance", -0.02),
        (12, "B", "okx", -9.98),
    ]
    tr = ev[ev.kind == "transfer"]
    assert list(zip(tr.time.dt.hour, tr.venue, tr.cash, tr.fee)) == [
        (11, "bybit", -500.0, 1.0),
        (12, "okx", 499.0, 0.0),
    ]
    assert res.in_flight.iloc[11, 0] == 499.0 and res.in_flight.iloc[12, 0] == 0.0
    np.testing.assert_allclose(res.equity.iloc[-1, 0], 999.0)
    assert res.positions["A"].iloc[11, 0] == 10.0 and res.positions["B"].iloc[11, 0] == 0.0
    assert res.columns.last_venue_b[0] == "okx" and res.totals.transfers[0] == 1


def _flat_market(index, px):
    from data.market import Market

    return Market.from_arrays(index, ["BTCUSDT"], spot=px, perp=px, funding_rate=np.zeros_like(px))


@pytest.mark.parametrize("lag", [0, 1, 2])
def test_resumed_chunks_of_a_switching_run_equal_one_run_bit_for_bit(lag):
    """Three consecutive chunks of a three-venue run, each resumed from the state before (venues
    of the rows decided and not executed yet included), equal one run over all the bars."""
    perps, rng = _venue_markets(41)
    C = len(COLUMN_SYMBOL)
    x, va, vb = _schedule(rng, C)
    cfg = _config(lag, "close_and_reenter")
    spread = SpreadConfig(venue_transfer_delay_hours=2, venue_transfer_fee_quote=0.5, venue_rebalance_band=0.1)
    kw = {"column_params": {"perp_leverage": LEVERAGE}}
    whole = run_spread(perps, perps, _targets(perps[0], x), cfg, spread, venues=(va, vb), **kw)
    parts, state = [], None
    for lo, hi in ((0, 97), (97, 211), (211, T)):
        legs = [m.select(start=m.index[lo], end=m.index[hi - 1] + pd.Timedelta(hours=1)) for m in perps]
        tg = _targets(legs[0], x[lo:hi])
        res = run_spread(legs, legs, tg, cfg, spread, venues=(va[lo:hi], vb[lo:hi]), resume=state, **kw)
        parts.append(res)
        state = res.state
    assert_chain_equals(parts, whole)
    assert set(whole.venues) == {"A", "B"}
    moves = whole.events[(whole.events.kind == "transfer") & (whole.events.cash < 0)]
    assert len(moves) > 10
    with pytest.raises(ConfigError, match="settings"):  # a state continues its own venues only
        legs = [m.select(start=m.index[97]) for m in perps]
        run_spread(
            legs[:2],
            legs[:2],
            _targets(legs[0], x[97:]),
            cfg,
            spread,
            venues=(va[97:] % 2, vb[97:] % 2),
            resume=parts[0].state,
            **kw,
        )


def test_switching_refusals():
    perps, rng = _venue_markets(31)
    tg, va, vb = _schedule(rng, N)  # (one column per coin)
    with pytest.raises(ConfigError, match="need venues"):
        run_spread(perps, perps, tg)
    with pytest.raises(ConfigError, match="no venue index"):
        run_spread(perps, perps, tg, venues=(np.full_like(tg, 3.0), vb))
    with pytest.raises(ConfigError, match=r"one rate frame \(or None\) per venue of leg B \(binance, bybit, okx\)"):
        rates = pd.DataFrame({"open": 1.0, "close": 1.0}, index=perps[0].index)
        run_spread(perps, perps, tg, venues=(va, vb), quote_rates={"B": rates})
    with pytest.raises(ConfigError, match=r"quote_rates\['A'\]\[2\] \(okx\).close must be a finite rate"):
        bad = pd.DataFrame({"open": 1.0, "close": 0.0}, index=perps[0].index)
        run_spread(perps, perps, tg, venues=(va, vb), quote_rates={"A": [None, None, bad]})
    with pytest.raises(ConfigError, match="cannot vary per column"):
        run_spread(perps, perps, tg, venues=(va, vb), column_params={"fee_a_rate": [0.001]})


# --------------------------------------------------------------------------- quote rates per venue
def _venue_rates(index, seed):
    """Leg A's third venue (okx) and leg B's second (bybit) quoted in USDC at random rate series;
    the other venues at 1. Returns (quote_rates for run_spread, the reference's rates_a/rates_b)."""
    ra, rb = _quote_rates(index, seed), _quote_rates(index, seed + 1)
    kernel = {"A": [None, None, ra], "B": [None, rb, None]}

    def stacked(frames):
        return tuple(
            np.column_stack([np.ones(len(index)) if f is None else f[k].to_numpy() for f in frames])
            for k in ("open", "close")
        )

    return kernel, {"rates_a": stacked(kernel["A"]), "rates_b": stacked(kernel["B"])}


@pytest.mark.parametrize("case", CASES[:2], ids=[f"seed{c[0]}-lag{c[1]}-delay{c[2]}" for c in CASES[:2]])
def test_switching_venues_with_quote_rates_match_the_reference(case):
    """Venues quoted in another currency, each at its own rate series, while the legs move
    between them: a wallet sent leaves at the rate of the venue left and is credited at the new
    venue's; each venue's funding, fees and margin count at its rate; the kernel equals the
    reference, the identity holds at every bar, and the quote revaluation is booked."""
    seed, _lag, delay, fee_t, band, _policy = case
    perps, x, va, vb, config, spread = _random_case(case)
    rates, ref_rates = _venue_rates(perps[0].index, seed)
    kw = {"column_params": {"perp_leverage": LEVERAGE}, "venues": (va, vb)}
    res = run_spread(perps, perps, _targets(perps[0], x), config, spread, quote_rates=rates, **kw)
    settings = dict(_settings((perps, perps), config, spread, delay, fee_t, band), **ref_rates)
    ref = _reference(perps, perps, x, va, vb, settings)
    _compare(res, ref, perps, perps, perps[0].index)
    total = sum(res.components[k] for k in COMPONENTS)
    np.testing.assert_allclose(res.equity - CAPITAL, total, rtol=0, atol=1e-9 * CAPITAL)
    assert "quote_rate" in res.flags and "usdc_usdt_parity" not in res.flags
    assert (res.totals["quote_fx"].abs() > 1e-6).any()
    # legs sat on the rated venues, and collateral moved to and from them
    on = (res.venues["A"].to_numpy() == 2) | (res.venues["B"].to_numpy() == 1)
    assert on.mean() > 0.2
    ev = res.events
    moves = ev[(ev.kind == "transfer") & (ev.cash < 0)]
    assert {("A", "okx"), ("B", "bybit")} <= set(zip(moves.leg, moves.venue))
    # at rate 1 everywhere: the unconverted run's figures (to rounding)
    flat = {leg: [None if f is None else f.assign(open=1.0, close=1.0) for f in fs] for leg, fs in rates.items()}
    one = run_spread(perps, perps, _targets(perps[0], x), config, spread, quote_rates=flat, **kw)
    plain = run_spread(perps, perps, _targets(perps[0], x), config, spread, **kw)
    np.testing.assert_allclose(one.equity.to_numpy(), plain.equity.to_numpy(), rtol=0, atol=1e-9 * CAPITAL)


def test_resumed_chunks_of_a_switching_run_with_quote_rates_equal_one_run_bit_for_bit():
    perps, rng = _venue_markets(43)
    C = len(COLUMN_SYMBOL)
    x, va, vb = _schedule(rng, C)
    cfg = _config(1, "close_and_reenter")
    spread = SpreadConfig(venue_transfer_delay_hours=2, venue_transfer_fee_quote=0.5, venue_rebalance_band=0.1)
    rates, _ref = _venue_rates(perps[0].index, 43)
    kw = {"column_params": {"perp_leverage": LEVERAGE}}
    whole = run_spread(perps, perps, _targets(perps[0], x), cfg, spread, venues=(va, vb), quote_rates=rates, **kw)
    parts, state = [], None
    for lo, hi in ((0, 97), (97, 211), (211, T)):
        legs = [m.select(start=m.index[lo], end=m.index[hi - 1] + pd.Timedelta(hours=1)) for m in perps]
        tg = _targets(legs[0], x[lo:hi])
        part_rates = {leg: [None if f is None else f[lo:hi] for f in fs] for leg, fs in rates.items()}
        res = run_spread(
            legs, legs, tg, cfg, spread, venues=(va[lo:hi], vb[lo:hi]), quote_rates=part_rates, resume=state, **kw
        )
        parts.append(res)
        state = res.state
    assert_chain_equals(parts, whole)
    assert (whole.totals["quote_fx"].abs() > 1e-6).any()

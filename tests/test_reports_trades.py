"""Round trips (``reports.trades``): where trips start and end, their PnL by component, and the
identity that makes them trustworthy: a trip's components sum to its total, and the trips of a
column plus its flat bars sum to the column's final components."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest import run_backtest
from backtest.config import BacktestConfig
from backtest.targets import Targets
from data import synthetic
from data.errors import ConfigError
from reports.trades import TRIP_COLUMNS, TRIP_COMPONENTS, flat_pnl, round_trips, trip_bounds

COMPONENTS = list(TRIP_COMPONENTS)


def _targets(values: np.ndarray, symbols: list[int], groups: list[int]) -> Targets:
    table = pd.DataFrame(
        {
            "strategy": ["hand"] * len(symbols),
            "symbol": [f"S{s}USDT" for s in symbols],
            "group": groups,
            "k": np.arange(len(symbols)),
        }
    )
    return Targets(values, np.array(symbols), np.array(groups), table)


def _final(result, key: str) -> np.ndarray:
    return sum(result.components[name].to_numpy()[-1] for name in TRIP_COMPONENTS[key])


def test_trips_of_a_hand_made_position():
    """Carry from bar 10, flat at bar 20, reverse carry from bar 30, a flip to carry at bar 40
    held to the end (targets act one bar later: the default execution delay)."""
    rng = np.random.default_rng(1)
    market = synthetic.random_market(rng, 60, 1, wick=0.0)
    v = np.full((60, 1), np.nan)
    v[0], v[9], v[19], v[29], v[39] = 0.0, 1.0, 0.0, -1.0, 1.0
    targets = _targets(v, [0], [0])
    result = run_backtest(market, targets, BacktestConfig(borrow_annual_rate=0.10, slippage_bps=2.0))
    trips = round_trips(result, targets)
    assert list(trips.columns) == list(TRIP_COLUMNS)
    idx = market.index
    assert trips["side"].tolist() == ["carry", "reverse carry", "carry"]
    assert trips["exit"].tolist() == ["exit", "flip", "end"]
    assert trips["entry_time"].tolist() == [idx[10], idx[30], idx[40]]
    assert trips["exit_time"].tolist() == [idx[20], idx[40], idx[59] + pd.Timedelta(hours=1)]
    assert trips["holding_hours"].tolist() == [10.0, 10.0, 20.0]
    assert (trips["portfolio"] == "hand").all() and (trips["symbol"] == "S0USDT").all()
    assert (trips["column"] == 0).all() and (trips["liquidations"] == 0).all()
    # the reverse carry pays borrow interest, the carries none; every trip pays fees and slippage
    assert trips["borrow_pnl"].tolist()[1] < 0 and trips["borrow_pnl"].tolist()[0] == 0
    assert (trips["fee_pnl"] < 0).all() and (trips["slippage_pnl"] < 0).all()
    # entry notional: the spot coins held after the entry fill x that fill's price (events)
    ev = result.events
    for trip in trips.itertuples():
        fills = ev[(ev["kind"] == "fill") & (ev["leg"] == "spot") & (ev["bar"] == trip.entry_time)]
        held = abs(result.spot_qty.iloc[idx.get_loc(trip.entry_time), 0])
        price = (fills["qty"].abs() * fills["price"]).sum() / fills["qty"].abs().sum()
        assert trip.entry_notional == pytest.approx(held * price, rel=1e-12)
    # a trip's PnL: cumulative components from the bar before the entry to the exit bar
    # (the flip's bar belongs to the next trip)
    fund = result.components["funding"].iloc[:, 0].to_numpy()
    assert trips["funding_pnl"].tolist() == pytest.approx(
        [fund[20] - fund[9], fund[39] - fund[29], fund[59] - fund[39]]
    )
    assert np.allclose(trips[COMPONENTS].sum(axis=1), trips["total_pnl"], rtol=1e-12, atol=1e-9)
    for key in COMPONENTS:
        assert trips[key].sum() + flat_pnl(result)[key].iloc[0] == pytest.approx(_final(result, key)[0], abs=1e-9)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_trips_and_flat_bars_sum_to_the_final_components(seed):
    """Random positions over several portfolios, with liquidations (wide wicks, 5x): every
    trip's components sum to its total, and per column the trips plus the flat bars give the
    final components; every liquidation lies in a trip; nothing is booked while flat."""
    rng = np.random.default_rng(seed)
    market = synthetic.random_market(rng, 1500, 3, wick=0.06)
    targets = Targets(*synthetic.random_targets(market, rng, 8, 3, 0.01))
    result = run_backtest(market, targets, BacktestConfig(perp_leverage=5, borrow_annual_rate=0.05, slippage_bps=1))
    trips = round_trips(result, targets)
    assert len(trips) > 20 and set(trips["exit"]) <= {"exit", "flip", "end"}
    scale = result.config.initial_capital_quote
    assert np.allclose(trips[COMPONENTS].sum(axis=1), trips["total_pnl"], rtol=1e-12, atol=1e-9 * scale)
    flat = flat_pnl(result)
    per_column = trips.groupby("column")[COMPONENTS].sum().reindex(range(8), fill_value=0.0)
    for key in COMPONENTS:
        np.testing.assert_allclose(
            per_column[key].to_numpy() + flat[key].to_numpy(), _final(result, key), rtol=1e-9, atol=1e-9 * scale
        )
        np.testing.assert_allclose(flat[key].to_numpy(), 0.0, atol=1e-9 * scale)
    ev = result.events
    n_liq = int(((ev["kind"] == "liquidation") & (ev["column"] >= 0)).sum())
    assert trips["liquidations"].sum() == n_liq
    if seed == 0:
        assert n_liq > 0  # the case is exercised
    # trips of a column never overlap, and are ordered by column then time
    for _, t in trips.groupby("column"):
        assert (t["entry_time"].to_numpy()[1:] >= t["exit_time"].to_numpy()[:-1]).all()
    assert trips["column"].is_monotonic_increasing
    # a subset of columns gives those columns' trips
    some = round_trips(result, targets, columns=[2, 5])
    pd.testing.assert_frame_equal(
        some.reset_index(drop=True), trips[trips["column"].isin([2, 5])].reset_index(drop=True)
    )


def _reference_bounds(side: np.ndarray) -> list[tuple]:
    """Trips found bar by bar (a plain loop), as (column, side, first, last, kind)."""
    T, C = side.shape
    out = []
    for c in range(C):
        t = 0
        while t < T:
            if side[t, c] == 0:
                t += 1
                continue
            first, s = t, side[t, c]
            while t + 1 < T and side[t + 1, c] == s:
                t += 1
            kind = 2 if t == T - 1 else (0 if side[t + 1, c] == 0 else 1)
            out.append((c, int(s), first, t, kind))
            t += 1
    return out


def test_trip_bounds_match_a_bar_by_bar_loop():
    rng = np.random.default_rng(5)
    side = np.cumsum(rng.random((400, 6)) < 0.05, axis=0) % 3 - 1  # runs of -1, 0, +1
    side[:, 5] = np.where(rng.random(400) < 0.3, -side[:, 5], side[:, 5])  # short runs and flips
    side = side.astype(np.int8)
    b = trip_bounds(side)
    got = list(zip(b["column"], b["side"], b["first"], b["last"], b["kind"]))
    assert [tuple(int(x) for x in g) for g in got] == _reference_bounds(side)
    assert (b["pnl_end"] == np.where(b["kind"] == 1, b["last"], b["exit_bar"])).all()
    # a long 1-minute-sized array: a few array passes, no per-trip Python
    big = np.repeat(side, 1250, axis=0)  # 500,000 bars
    assert len(trip_bounds(big)["first"]) == len(b["first"])


def test_lean_results_have_no_trips():
    rng = np.random.default_rng(2)
    market = synthetic.random_market(rng, 100, 1)
    targets = Targets(*synthetic.random_targets(market, rng, 2, 1, 0.05))
    lean = run_backtest(market, targets, BacktestConfig(), full=False)
    with pytest.raises(ConfigError, match="per-bar positions"):
        round_trips(lean, targets)

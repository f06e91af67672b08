"""Monthly and yearly returns by component (``reports.periods``) and the benchmarks of a
market (``reports.benchmarks``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest import run_backtest
from backtest.config import BacktestConfig
from backtest.targets import Targets
from data import synthetic
from data.errors import ConfigError, UnknownNameError
from data.units import HOURS_PER_YEAR
from reports.benchmarks import BENCHMARK_COLUMNS, benchmarks
from reports.frames import portfolio_labels
from reports.periods import PERIOD_COLUMNS, period_ends, period_returns
from reports.trades import TRIP_COMPONENTS

COMPONENTS = list(TRIP_COMPONENTS)


@pytest.fixture(scope="module")
def run():
    """Hourly bars from 2024-11-20 10:00 to 2025-02-03: a short first month, a year boundary."""
    rng = np.random.default_rng(11)
    market = synthetic.random_market(rng, 1800, 3, wick=0.05, start="2024-11-20 10:00")
    targets = Targets(*synthetic.random_targets(market, rng, 6, 3, 0.01))
    result = run_backtest(market, targets, BacktestConfig(perp_leverage=4, borrow_annual_rate=0.05))
    return market, targets, result


def test_period_ends_and_labels():
    idx = pd.date_range("2024-12-31 22:00", periods=6, freq="1h", tz="UTC")
    ends, labels = period_ends(idx, "month")
    assert ends.tolist() == [1, 5] and labels == ["2024-12", "2025-01"]
    ends, labels = period_ends(idx, "year")
    assert ends.tolist() == [1, 5] and labels == ["2024", "2025"]
    with pytest.raises(UnknownNameError, match="did you mean 'month'"):
        period_ends(idx, "mnth")


def test_monthly_returns_chain_and_components_sum(run):
    market, targets, result = run
    monthly = period_returns(result, targets, "month")
    assert list(monthly.columns) == list(PERIOD_COLUMNS)
    labels = portfolio_labels(targets)
    init = result.config.initial_capital_quote
    for pos, g in enumerate(result.group_ids):
        m = monthly[monthly["portfolio"] == labels[int(g)]]
        assert m["period"].tolist() == ["2024-11", "2024-12", "2025-01", "2025-02"]
        eq = result.group_equity.iloc[:, pos]
        # the start of a month is the end of the one before; the first starts at the capital
        assert m["start_equity"].iloc[0] == init
        np.testing.assert_array_equal(m["start_equity"].to_numpy()[1:], m["end_equity"].to_numpy()[:-1])
        assert m["end_equity"].iloc[-1] == eq.iloc[-1]
        assert m["end_equity"].iloc[0] == eq[eq.index < "2024-12-01"].iloc[-1]
        # returns chain to the total return; the components sum to each month's equity change
        assert np.prod(1 + m["return"].to_numpy()) - 1 == pytest.approx(eq.iloc[-1] / init - 1, rel=1e-9)
        np.testing.assert_allclose(m[COMPONENTS].sum(axis=1), m["total_pnl"], rtol=1e-9, atol=1e-9 * init)
        # and the months' components sum to the portfolio's final components
        cols = result.group_columns(g)
        for key in COMPONENTS:
            final = sum(result.components[name].iloc[-1, cols].sum() for name in TRIP_COMPONENTS[key])
            assert m[key].sum() == pytest.approx(final, rel=1e-9, abs=1e-9 * init)


def test_yearly_is_the_sum_of_its_months(run):
    _, targets, result = run
    monthly = period_returns(result, targets, "month")
    yearly = period_returns(result, targets, "year")
    assert sorted(set(yearly["period"])) == ["2024", "2025"]
    by_year = monthly.assign(year=monthly["period"].str[:4]).groupby(["portfolio", "year"], sort=False)
    summed = by_year[[*COMPONENTS, "total_pnl"]].sum().reset_index()
    merged = yearly.merge(summed, left_on=["portfolio", "period"], right_on=["portfolio", "year"], suffixes=("", "_m"))
    assert len(merged) == len(yearly) == 2 * len(result.group_ids)
    for key in [*COMPONENTS, "total_pnl"]:
        np.testing.assert_allclose(merged[key], merged[f"{key}_m"], rtol=1e-9, atol=1e-6)


def test_lean_results_have_no_periods(run):
    market, targets, _ = run
    lean = run_backtest(market, targets, BacktestConfig(), full=False)
    with pytest.raises(ConfigError, match="lean"):
        period_returns(lean, targets)


def test_benchmarks_from_the_market(run):
    market, _, _ = run
    bench = benchmarks(market, 10_000.0)
    assert list(bench.columns) == list(BENCHMARK_COLUMNS) and list(bench.index) == list(market.symbols)
    for j, sym in enumerate(market.symbols):
        row = bench.loc[sym]
        ok = market.tradable[:, j]
        first, last = np.flatnonzero(ok)[[0, -1]]
        assert row["spot_return"] == pytest.approx(market.spot_close[last, j] / market.spot_open[first, j] - 1)
        assert row["spot_pnl"] == pytest.approx(10_000.0 * row["spot_return"])
        # a short perp of q coins receives q x mark x rate at every settlement (README "Funding: who pays whom")
        q = 10_000.0 / market.spot_open[first, j]
        assert row["hedge_funding_pnl"] == pytest.approx(q * market.funding_value[ok, j].sum())
        assert row["hedge_funding_return"] == pytest.approx(row["hedge_funding_pnl"] / 10_000.0)
        hours = (last - first + 1) * 1.0
        assert row["hedge_funding_annualized"] == pytest.approx(row["hedge_funding_return"] * HOURS_PER_YEAR / hours)
        assert row["settlements"] == market.funding_count[ok, j].sum() > 0

"""BacktestResult.plot(kind=...) and the notebook display (reports/plots.py): every kind draws
what the result holds (the figures' numbers are the result's numbers), asks for a portfolio
where one is drawn, and says which output a lean run lacks; the engine never loads plotly."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from backtest import BacktestConfig, load_market, run_backtest
from data.errors import ConfigError
from reports.frames import portfolio_labels
from reports.plots import KINDS
from strategies import run_strategy

SYMBOLS = ["DEMOAUSDT", "DEMOBUSDT"]


@pytest.fixture(scope="module")
def runs(demo_catalog):
    market = load_market(demo_catalog.root, SYMBOLS, freq="1h")
    grid = run_strategy("funding_threshold", market, {"entry_annualized": [0.05, 0.2], "exit_annualized": 0.02})
    one = run_strategy("always_carry", market, {})
    cfg = BacktestConfig(perp_leverage=2)
    return run_backtest(market, grid, cfg), run_backtest(market, one, cfg), cfg


def _last_y(trace) -> float:
    return float(np.asarray(trace.y, dtype=float)[-1])


def test_equity_draws_each_portfolios_wallet_equity(runs):
    grid, _, _ = runs
    fig = grid.plot("equity")
    labels = list(portfolio_labels(grid.column_table).values())
    assert [t.name for t in fig.data] == labels
    for trace, g in zip(fig.data, grid.group_ids):
        assert _last_y(trace) == pytest.approx(grid.group_equity[g].iloc[-1], rel=1e-12)
    one = grid.plot("equity", portfolio=labels[1])
    assert [t.name for t in one.data] == [labels[1]]


def test_components_sum_to_the_equity_change(runs):
    _, single, cfg = runs
    fig = single.plot("components")
    total = next(t for t in fig.data if t.name == "total")
    change = single.group_equity.iloc[-1, 0] - cfg.initial_capital_quote
    assert _last_y(total) == pytest.approx(change, abs=1e-6)
    bars = [t for t in fig.data if t.type == "bar"]
    assert {t.name for t in bars} >= {"funding", "fees", "basis"}
    assert sum(_last_y(t) for t in bars) == pytest.approx(change, abs=1e-6)


def test_funding_basis_are_the_results_components(runs):
    grid, _, _ = runs
    fig = grid.plot("funding_basis")
    n = len(grid.group_ids)
    funding, basis = fig.data[:n], fig.data[n:]
    for k, g in enumerate(grid.group_ids):
        cols = grid.group_columns(g)
        f = grid.components["funding"].iloc[-1, cols].sum()
        b = (grid.components["spot_price"].iloc[-1, cols] + grid.components["perp_price"].iloc[-1, cols]).sum()
        assert _last_y(funding[k]) == pytest.approx(f, abs=1e-9)
        assert _last_y(basis[k]) == pytest.approx(b, abs=1e-9)


def test_margin_draws_the_highest_ratio_of_the_portfolio(runs):
    _, single, _ = runs
    fig = single.plot("margin")
    ratio = np.asarray(fig.data[0].y, dtype=float)
    assert np.nanmax(ratio) == pytest.approx(np.nanmax(single.margin_ratio.to_numpy()), rel=1e-6)


def test_one_portfolio_kinds_ask_which_and_bad_names_are_named(runs):
    grid, _, _ = runs
    with pytest.raises(ConfigError, match="2 portfolios: pass portfolio="):
        grid.plot("components")
    assert grid.plot("components", portfolio=int(grid.group_ids[1])).layout.title.text.endswith(
        portfolio_labels(grid.column_table)[int(grid.group_ids[1])]
    )
    with pytest.raises(ConfigError, match="no portfolio 'nope'"):
        grid.plot("margin", portfolio="nope")
    with pytest.raises(ConfigError, match="unknown plot kind 'equty'.*equity"):
        grid.plot("equty")


def test_a_lean_run_names_the_output_a_plot_needs(demo_catalog):
    market = load_market(demo_catalog.root, SYMBOLS[:1], freq="1h")
    lean = run_backtest(market, run_strategy("always_carry", market, {}), BacktestConfig(), full=False)
    assert len(lean.plot("equity").data) == 1  # group equity is kept per bar in lean runs
    for kind, output in (("components", "components"), ("margin", "margin"), ("funding_basis", "components")):
        with pytest.raises(ConfigError, match=f"needs '{output}' per bar"):
            lean.plot(kind)


def test_notebook_display_is_the_summary_table(runs):
    grid, _, _ = runs
    page = grid._repr_html_()
    assert "BacktestResult" in page and "2 portfolio(s)" in page
    for label in portfolio_labels(grid.column_table).values():
        assert label in page
    assert "Sharpe" in page
    assert repr(grid).startswith("BacktestResult(2 portfolios, 4 columns")


def test_every_kind_is_drawn(runs):
    _, single, _ = runs
    for kind in KINDS:
        assert len(single.plot(kind).data) >= 1


def test_the_engine_never_loads_plotly():
    code = "import backtest, strategies, sys; assert 'plotly' not in sys.modules, 'plotly loaded'"
    subprocess.run([sys.executable, "-c", code], check=True)

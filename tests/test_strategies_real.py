"""Every strategy on the real shared data, in one engine call; the negative-funding regime."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from backtest import BacktestConfig, load_market, run_backtest
from backtest.targets import Targets
from data.catalog import Catalog
from data.loader import DataWarning
from reports.metrics import stats_frame
from strategies import available_strategies, run_strategy
from tests.conftest import shared_data_path

pytestmark = pytest.mark.shared_data

MAJORS = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "ADAUSDT", "LTCUSDT"]
NEGATIVE = ["XTZUSDT", "DOTUSDT", "BCHUSDT"]
ALTS = ["AVAXUSDT", "BCHUSDT", "DOGEUSDT", "DOTUSDT", "LINKUSDT", "NEARUSDT", "TRXUSDT", "XLMUSDT", "XTZUSDT"]
GRIDS = {
    "always_carry": None,
    "always_reverse": None,
    "funding_threshold": {"entry_annualized": [0.05, 0.10], "exit_annualized": 0.02},
    "funding_sign": {"entry_annualized": [0.05, 0.10]},
    "basis_aware": {"entry_z": [1.0, 2.0]},
    "rotation": {"top_k": [1, 2]},
}


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from data.ingest.freqtrade import ingest_freqtrade

    source = shared_data_path("binance")
    cat = Catalog(tmp_path_factory.mktemp("real") / "catalog")
    ingest_freqtrade(source, cat, symbols=MAJORS + ALTS)
    return cat


def _market(cat, symbols, start, end):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_market(cat, symbols, start=start, end=end)


def _identity(result):
    comps = sum(c.to_numpy() for c in result.components.values())
    for g in result.group_ids:
        cols = result.group_columns(g)
        lhs = result.group_equity[g].to_numpy() - result.config.initial_capital_quote
        np.testing.assert_allclose(lhs, comps[:, cols].sum(axis=1), rtol=1e-9, atol=1e-6)


def test_every_strategy_and_grid_in_one_engine_call_on_majors(catalog):
    assert set(GRIDS) == set(available_strategies()), "a new strategy needs a grid here"
    market = _market(catalog, MAJORS, "2020-01-01", "2026-05-01")
    parts = [run_strategy(name, market, grid) for name, grid in GRIDS.items()]
    targets = Targets.concat(parts)
    result = run_backtest(market, targets, BacktestConfig(perp_leverage=2))  # one call, every column
    n_sets = sum(1 if g is None else len(next(v for v in g.values() if isinstance(v, list))) for g in GRIDS.values())
    assert targets.n_columns == n_sets * len(MAJORS) and len(result.group_ids) == n_sets
    assert np.isfinite(result.group_equity.to_numpy()).all()
    _identity(result)
    stats = stats_frame(result)
    carry, reverse = stats.iloc[0], stats.iloc[1]
    # every carry-side strategy ends solvent; a never-resized reverse carry through the 2020-21
    # bull market pays funding and borrow on a notional that grew with the price (ETH x30)
    assert (stats.drop(index=stats.index[1])["final_equity"] > 0).all()
    # 2020-2026 funding on the majors was mostly positive: the carry collects, the mirror pays
    assert carry["funding_pnl"] > 0 > reverse["funding_pnl"]
    assert reverse["borrow_pnl"] < 0 and carry["borrow_pnl"] == 0
    # fees are paid by every strategy that trades
    assert (stats["fee_pnl"] <= 0).all() and (stats["n_trades"] > 0).all()


def test_negative_funding_regime_carry_pays_and_funding_sign_collects(catalog):
    market = _market(catalog, NEGATIVE, "2025-05-01", "2026-05-01")
    assert (market.funding_rate.sum(axis=0) < 0).all()
    targets = Targets.concat(
        [run_strategy("always_carry", market), run_strategy("funding_sign", market, {"entry_annualized": 0.10})]
    )
    result = run_backtest(market, targets, BacktestConfig(perp_leverage=2, borrow_annual_rate=0.05))
    _identity(result)
    funding = result.pnl("funding").iloc[-1].to_numpy()
    borrow = result.pnl("borrow").iloc[-1].to_numpy()
    n = len(NEGATIVE)
    carry_funding, sign_funding, sign_borrow = funding[:n], funding[n:], borrow[n:]
    assert (carry_funding < 0).all(), "buy spot / short perp pays funding when rates are negative"
    assert (sign_funding + sign_borrow > 0).all(), "the reverse side collects, net of borrow"
    ev = result.events
    reverse_funding = ev[(ev["kind"] == "funding") & (ev["group"] == result.group_ids[1]) & (ev["qty"] > 0)]
    assert reverse_funding["cash"].sum() > 0  # long perp positions received funding


def test_every_strategy_on_the_2025_alts_in_one_engine_call(catalog):
    market = _market(catalog, ALTS, "2025-05-01", "2026-05-01")
    targets = Targets.concat([run_strategy(name, market, grid) for name, grid in GRIDS.items()])
    with pytest.warns(UserWarning, match="mark prices are missing"):  # DOGE's hourly marks start 2026-04
        result = run_backtest(market, targets, BacktestConfig(perp_leverage=2))
    assert np.isfinite(result.group_equity.to_numpy()).all()
    _identity(result)
    stats = stats_frame(result)
    assert (stats["final_equity"] > 0).all() and (stats["n_trades"] > 0).all()
    # the negative-funding names: the carry pays funding on each of them
    funding = result.pnl("funding").iloc[-1]
    carry_cols = targets.columns.index[
        (targets.columns["strategy"] == "always_carry") & targets.columns["symbol"].isin(NEGATIVE)
    ]
    assert (funding.iloc[carry_cols] < 0).all()

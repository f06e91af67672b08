"""The desk position rules over whole real histories (README: "Holding a position like a desk").

Binance BTCUSDT and ETHUSDT, 1h bars, from ../shared/data: a carry held from 2020-01-08 to
2024-03-12 (BTC 8,000 -> 71,000 with the 2020-21 rally, the 2022 crash) at leverage 1 and 3
is never liquidated under daily rebalancing and stays within its band; margin top-ups keep the
hedge neutral; a reverse carry through the 2020-21 rally never shows an equity below zero, and
with rebalancing off its borrowed leg's margin account is liquidated.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from backtest import BacktestConfig, load_market, run_backtest
from data.catalog import Catalog
from data.loader import DataWarning
from reports.metrics import stats
from tests.conftest import shared_data_path

pytestmark = pytest.mark.shared_data

BAND = 0.10


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    from data.ingest.freqtrade import ingest_freqtrade

    cat = Catalog(tmp_path_factory.mktemp("desk") / "catalog")
    ingest_freqtrade(shared_data_path("binance"), cat, symbols=["BTCUSDT", "ETHUSDT"])
    return cat


def _market(cat, symbol, start, end):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_market(cat, [symbol], start=start, end=end)


def _liquidations(res):
    ev = res.events
    return ev[ev["kind"] == "liquidation"]


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
@pytest.mark.parametrize("leverage", [1.0, 3.0])
def test_carry_with_daily_rebalancing_is_never_liquidated_and_holds_its_band(catalog, symbol, leverage):
    m = _market(catalog, symbol, "2020-01-08", "2024-03-12")
    assert m.spot_close[-1, 0] / m.spot_close[:, 0].min() > 3  # the history holds a rally
    cfg = BacktestConfig(perp_leverage=leverage, rebalance_every_hours=24.0, rebalance_notional_band=BAND)
    res = run_backtest(m, 1.0, cfg)
    assert _liquidations(res).empty
    s = res.spot_qty.iloc[:, 0].to_numpy()
    q = res.perp_qty.iloc[:, 0].to_numpy()
    held = s != 0
    assert held[1:].all()  # in the market from the first fill to the end
    np.testing.assert_array_equal(s + q, 0.0)  # every trade kept the hedge neutral
    # the spot notional against the target (equity x L / (L + 1)) at every close: beyond the band
    # only on the bar that detects it, back at the target at the next open
    target = res.group_equity.iloc[:, 0].to_numpy() * leverage / (leverage + 1)
    drift = np.abs(s * m.spot_close[:, 0] - target) / target
    beyond = np.flatnonzero(held & (drift > BAND))
    fills = res.events[(res.events["kind"] == "fill") & (res.events["leg"] == "spot")]
    fill_bars = set(m.index.get_indexer(fills["time"]))
    assert all(j + 1 in fill_bars for j in beyond if j + 1 < m.n_bars)
    # daily: a rebalance at the first bar of (nearly) every UTC day
    days = m.index[sorted(fill_bars)].normalize().unique()
    assert len(days) > 0.95 * (m.index[-1] - m.index[0]).days
    figures = stats(res)
    assert figures["worst_margin_ratio"] < 0.1  # the margin never came near the maintenance level


def test_topups_keep_the_legs_netting_to_zero_without_rebalancing(catalog):
    m = _market(catalog, "BTCUSDT", "2020-01-08", "2024-03-12")
    cfg = BacktestConfig(
        perp_leverage=2.0, topup_margin_ratio=0.05, rebalance_every_hours=None, rebalance_notional_band=None
    )
    res = run_backtest(m, 1.0, cfg)
    transfers = res.events[res.events["kind"] == "transfer"]
    assert len(transfers) > 3  # the top-ups fired (the entry is one transfer)
    assert _liquidations(res).empty
    np.testing.assert_array_equal(res.spot_qty.iloc[:, 0].to_numpy() + res.perp_qty.iloc[:, 0].to_numpy(), 0.0)
    # a top-up shrinks both legs by the same coins
    spot_sales = res.events[(res.events["kind"] == "fill") & (res.events["leg"] == "spot")].iloc[1:]
    perp_buys = res.events[(res.events["kind"] == "fill") & (res.events["leg"] == "perp")].iloc[1:]
    np.testing.assert_array_equal(spot_sales["qty"].to_numpy(), -perp_buys["qty"].to_numpy())
    assert (spot_sales["qty"] < 0).all()


def test_a_late_topup_threshold_warns(catalog):
    m = _market(catalog, "BTCUSDT", "2020-01-08", "2021-01-08")
    with pytest.warns(UserWarning, match="topup_margin_ratio=0.5 fires within"):
        res = run_backtest(m, 1.0, BacktestConfig(perp_leverage=2.0, topup_margin_ratio=0.5))
    assert "topup_too_late" in res.flags


@pytest.mark.parametrize("rebalancing", [True, False])
def test_reverse_carry_equity_never_below_zero(catalog, rebalancing):
    m = _market(catalog, "BTCUSDT", "2020-01-01", "2021-12-31")
    off = {} if rebalancing else dict(rebalance_every_hours=None, rebalance_notional_band=None)
    res = run_backtest(m, -1.0, BacktestConfig(**off))
    equity = res.group_equity.iloc[:, 0].to_numpy()
    assert (equity >= 0).all()
    liq = _liquidations(res)
    figures = stats(res)
    if not rebalancing:
        # BTC x4.7 in 2020-21: the borrowed leg's margin account reaches its 1.1 level
        assert (liq["leg"] == "spot").any()
    if len(liq):
        assert figures["worst_margin_ratio"] >= 1.0
        # after each liquidation the unhedged perp is closed at the next open, re-entry a day later
        j = m.index.get_loc(liq["time"].iloc[0])
        fills = res.events[(res.events["kind"] == "fill") & (res.events["time"] > liq["time"].iloc[0])]
        assert fills["time"].iloc[0] == m.index[j + 1] and list(fills[fills["time"] == m.index[j + 1]]["leg"]) == [
            "perp"
        ]
        assert fills["time"].iloc[1] >= m.index[j] + np.timedelta64(24, "h")


@pytest.mark.parametrize("symbol", ["BTCUSDT", "ETHUSDT"])
@pytest.mark.parametrize(
    "settings",
    [
        {"perp_leverage": 3.0},
        {"perp_leverage": 10.0, "rebalance_notional_band": None, "after_liquidation": "reenter"},
        {"perp_leverage": 2.0, "rebalance_every_hours": 24.0},
    ],
)
def test_lean_fast_kernel_equals_the_general_kernel_over_the_whole_history(catalog, symbol, settings):
    """The fast kernel's quiet-bars loop (``fast.quiet_bars_nb``: lean outputs) over 2020-2024:
    the 2020-21 rally, the 2022 crash; carries that rebalance, one liquidated and re-entered at
    10x, and a reverse carry half the time (``funding_sign``-like targets): bit for bit the
    general kernel's equity, events and final state."""
    from tests.reference_engine import assert_identical

    m = _market(catalog, symbol, "2020-01-08", "2024-03-12")
    rng = np.random.default_rng(7)
    targets = np.full((m.n_bars, 1), np.nan)
    targets[0] = 1.0
    flips = np.sort(rng.choice(np.arange(24, m.n_bars), 40, replace=False))
    targets[flips, 0] = np.resize([-1.0, 1.0, 0.0, 0.5], len(flips))
    cfg = BacktestConfig(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for outputs in (("equity",), ("group_equity",)):
            fast = run_backtest(m, targets, cfg, outputs=outputs, kernel="fast")
            general = run_backtest(m, targets, cfg, outputs=outputs, kernel="general")
            assert_identical(general, fast)
    if settings["perp_leverage"] == 10.0:
        assert not _liquidations(fast).empty


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"rebalance_delta_band": 0.02, "after_liquidation": "reenter"},
        {"rebalance_every_hours": 24.0, "after_liquidation": "close_and_reenter"},
    ],
)
def test_lean_soa_kernel_equals_the_fast_kernel_over_the_whole_history(catalog, settings):
    """The structure-of-arrays kernel's vectorized quiet bars (``backtest.kernels.soa``) over BTC
    2020-2024 (the rally, the 2022 crash): a lean grid of 80 one-column portfolios at leverage 1
    to 30 (carries, reverse carries, flat; several liquidated) equals the fast kernel bit for
    bit: equity, events and final state."""
    from backtest.targets import Targets
    from tests.reference_engine import assert_identical

    m = _market(catalog, "BTCUSDT", "2020-01-08", "2024-03-12")
    n = 80
    rng = np.random.default_rng(11)
    vals = np.where(rng.random((m.n_bars, n)) < 0.002, rng.choice([-1.0, 0.0, 0.5, 1.0], (m.n_bars, n)), np.nan)
    vals[0] = 1.0
    cols = pd.DataFrame({"strategy": "grid", "symbol": "BTCUSDT", "group": np.arange(n)})
    tg = Targets(vals, np.zeros(n, np.int64), np.arange(n), cols)
    params = {"perp_leverage": np.linspace(1.0, 30.0, n)}
    cfg = BacktestConfig(**settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        soa_run = run_backtest(m, tg, cfg, column_params=params, full=False)
        fast_run = run_backtest(m, tg, cfg, column_params=params, full=False, kernel="fast")
    assert soa_run.kernel == "soa"
    assert_identical(fast_run, soa_run)
    assert not _liquidations(soa_run).empty

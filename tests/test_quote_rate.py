"""A venue quoted in USDC valued at the catalog's USDC/USDT rate (issue 16): the real Binance and
Hyperliquid BTC files, plus a USDCUSDT spot series written into the catalog (the shared data holds
none; a synthetic wobble of a few tenths of a percent, with a hole).

* :func:`data.venue_pair.load_venue_pair` finds the series, puts it on the pair's bars (a hole
  held at the last close, said in the note) and flags ``quote_rate`` instead of ``usdc_usdt_parity``;
* in :func:`backtest.spread.run_spread` Hyperliquid's funding, settlement by settlement, equals
  the raw files' ``position x price x rate`` times the USDC/USDT close of that bar (to 1e-9),
  Binance's stays as the raw files say, the identity holds at every bar in USDT, and the
  revaluation of the Hyperliquid wallet (``quote_fx``) is what moves the equity apart from the
  run that takes USDC 1:1;
* ``carry spread`` prints and writes it; ``--quote-rate parity`` takes 1:1; a series that starts
  after the window or is no rate is refused.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from backtest.config import BacktestConfig, SpreadConfig
from backtest.spread import run_spread
from data.catalog import Catalog, PartitionKey
from data.errors import DataError
from data.loader import DataWarning, load_quote_rate
from data.venue_pair import PARITY_FLAG, RATE_FLAG, load_venue_pair
from tests.conftest import shared_data_path
from tests.raw_funding import expected_funding, raw_settlements
from tests.test_cli_refusals import carry
from tests.test_venue_pair import venues_catalog  # noqa: F401  (the session catalog fixture)

pytestmark = pytest.mark.shared_data

H = pd.Timedelta(hours=1)
WINDOW = ("2024-09-04", "2025-01-04")
HOLE = pd.Timestamp("2024-10-01 05:00", tz="UTC")  # 5 bars without a rate from here


def _rate_table(times: pd.DatetimeIndex, close: np.ndarray) -> pa.Table:
    opn = np.r_[close[0], close[:-1]] * 1.0001  # (a small jump from each close to the next open)
    return pa.table(
        {
            "time": pa.array(times.as_unit("ms").asi8, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "open": opn,
            "high": np.maximum(opn, close) * 1.0002,
            "low": np.minimum(opn, close) * 0.9998,
            "close": close,
            "volume": np.full(len(times), 1e6),
        }
    )


def _usdc_close(times: pd.DatetimeIndex) -> np.ndarray:
    """USDT per USDC: 0.9995 +- 0.2% over ~3 weeks."""
    hours = (times - pd.Timestamp("2024-08-01", tz="UTC")) / H
    return 0.9995 + 0.002 * np.sin(2 * np.pi * hours / 500.0)


@pytest.fixture(scope="module")
def rate_catalog(tmp_path_factory) -> Catalog:
    from data.ingest.freqtrade import ingest_freqtrade

    cat = Catalog(tmp_path_factory.mktemp("quote_rate") / "catalog")
    ingest_freqtrade(shared_data_path("binance"), cat, venue="binance", symbols=["BTCUSDT"])
    ingest_freqtrade(shared_data_path("hyperliquid"), cat, venue="hyperliquid", symbols=["BTCUSDC"])
    ingest_freqtrade(shared_data_path("bybit"), cat, venue="bybit", symbols=["BTCUSDT"])
    times = pd.date_range("2024-08-01", "2025-08-01", freq="1h", tz="UTC", inclusive="left")
    keep = ~((times >= HOLE) & (times < HOLE + 5 * H))
    cat.write(PartitionKey("binance", "spot", "USDCUSDT", "1h"), _rate_table(times[keep], _usdc_close(times[keep])))
    return cat


def _pair(catalog, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_venue_pair(catalog, "BTC", "binance", "hyperliquid", *WINDOW, **kw)


def _hold(pair):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_spread(
            pair.leg_a,
            pair.leg_b,
            1.0,
            BacktestConfig(perp_leverage=3),
            SpreadConfig(venue_rebalance_band=0.05),
            quote_rates=pair.quote_rates,
        )


def test_the_pair_finds_the_catalogs_rate_and_holds_it_over_a_hole(rate_catalog):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        pair = load_venue_pair(rate_catalog, "BTC", "binance", "hyperliquid", *WINDOW)
    assert RATE_FLAG in pair.flags and PARITY_FLAG not in pair.flags and pair.account_currency == "USDT"
    rate = pair.quote_rates["B"]
    assert list(pair.quote_rates) == ["B"] and rate.index.equals(pair.index)
    want = pd.Series(_usdc_close(pair.index), index=pair.index)
    hole = (pair.index >= HOLE) & (pair.index < HOLE + 5 * H)
    np.testing.assert_array_equal(rate["close"][~hole], want[~hole])
    held = want[pair.index < HOLE].iloc[-1]
    assert (rate["close"][hole] == held).all() and (rate["open"][hole] == held).all()
    said = " ".join(str(w.message) for w in caught)
    assert "USDCUSDT rate from binance's spot bars (1h)" in said and "5 bar(s) without one held" in said
    parity = _pair(rate_catalog, quote_rate="parity")
    assert PARITY_FLAG in parity.flags and not parity.quote_rates


def test_usdc_funding_counts_at_the_rate_and_the_identity_holds(rate_catalog):
    pair = _pair(rate_catalog)
    res = _hold(pair)
    # the identity in USDT at every bar
    comps = sum(res.components.values())
    np.testing.assert_allclose((res.equity - res.initial_capital).to_numpy(), comps.to_numpy(), rtol=0, atol=1e-7)
    rate = pair.quote_rates["B"]["close"]
    ev = res.events[res.events.kind == "funding"]
    for leg, venue, quote, factor in (
        ("A", "binance", "USDT", None),
        ("B", "hyperliquid", "USDC", rate),
    ):
        want = expected_funding(raw_settlements(shared_data_path(venue), "BTC", quote), res.positions[leg][0])
        want = want[np.isfinite(want.to_numpy()) & (want.to_numpy() != 0)]
        want = want.groupby(want.index.ceil("h") - H).sum()
        if factor is not None:  # USDC at that bar's close rate (funding is booked after the close's rate)
            want = want * factor.reindex(want.index).to_numpy()
        got = ev[ev.leg == leg].groupby("time").cash.sum()
        assert got.index.equals(pd.DatetimeIndex(want.index)) and len(got) > 300, venue
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-9, atol=0, err_msg=venue)
    assert res.totals.funding_b[0] == pytest.approx(ev[ev.leg == "B"].cash.sum(), rel=1e-12)
    # what valuing the Hyperliquid wallet at the rate changed against taking USDC 1:1
    fx = res.totals.quote_fx[0]
    parity = _hold(_pair(rate_catalog, quote_rate="parity"))
    assert parity.totals.quote_fx[0] == 0.0 and abs(fx) > 0.5
    assert "quote_rate" in res.flags and "usdc_usdt_parity" in parity.flags
    # the funding differs by the rate (a few tenths of a percent), the rest by the revaluation
    assert res.totals.funding_b[0] != parity.totals.funding_b[0]
    assert abs(res.totals.funding_b[0] / parity.totals.funding_b[0] - 1) < 0.003
    assert (res.events.kind == "transfer").any()  # (transfers between the USDT and USDC wallets too)


def test_carry_spread_prints_and_writes_the_quote_fx(rate_catalog, tmp_path):
    base = ["spread", "--data", rate_catalog.root, "--venues", "binance,hyperliquid", "--symbols", "BTC"]
    base += ["--start", WINDOW[0], "--end", WINDOW[1], "--strategy", "hold"]
    r = carry(*base, "--out", tmp_path / "auto")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "auto" / "spread.json").read_text())
    row = summary["rows"][0]
    assert "quote_rate" in summary["flags"] and abs(row["quote_fx"]) > 0.5
    assert "quote fx" in r.stdout and "USDCUSDT rate from binance" in r.stderr
    parts = ("funding_a", "funding_b", "trading_fees", "transfer_fees", "slippage", "basis", "quote_fx", "liquidation")
    assert sum(row[k] for k in parts) == pytest.approx(row["net"], abs=1e-6)
    r = carry(*base, "--quote-rate", "parity", "--out", tmp_path / "parity")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "parity" / "spread.json").read_text())
    assert "usdc_usdt_parity" in summary["flags"] and summary["rows"][0]["quote_fx"] == 0.0
    assert "quote fx" not in r.stdout and "quote_rate='parity'" in r.stderr


def test_a_strategy_picking_among_venues_values_its_hedge_at_the_rate(rate_catalog, tmp_path):
    """``funding_spread`` over three venues: its own row (one hedge whose legs move between the
    venues) values Hyperliquid's USDC wallet at the catalog's rate, as the pairs' rows do; with
    ``--quote-rate parity`` it takes 1:1."""
    base = ["spread", "--data", rate_catalog.root, "--venues", "binance,bybit,hyperliquid", "--symbols", "BTC"]
    base += ["--start", WINDOW[0], "--end", WINDOW[1]]
    parts = ("funding_a", "funding_b", "trading_fees", "transfer_fees", "slippage", "basis", "quote_fx", "liquidation")
    widest = {}
    for mode in ("auto", "parity"):
        r = carry(*base, "--quote-rate", mode, "--out", tmp_path / mode)
        assert r.returncode == 0, r.stderr
        summary = json.loads((tmp_path / mode / "spread.json").read_text())
        (row,) = [w for w in summary["rows"] if w["venue_a"] == "widest"]
        assert sum(row[k] for k in parts) == pytest.approx(row["net"], abs=1e-6)
        widest[mode] = row
        assert ("quote_rate" in summary["flags"]) == (mode == "auto")
    assert abs(widest["auto"]["quote_fx"]) > 0.01 and widest["parity"]["quote_fx"] == 0.0
    assert widest["auto"]["funding_b"] != widest["parity"]["funding_b"]


def test_without_a_series_the_quotes_are_taken_one_to_one_and_said_so(venues_catalog):  # noqa: F811
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        pair = load_venue_pair(venues_catalog, "BTC", "binance", "hyperliquid", *WINDOW)
    assert PARITY_FLAG in pair.flags and not pair.quote_rates
    assert any(
        "fetch one, e.g. carry data fetch ccxt --exchange okx --symbols USDCUSDT --kinds spot" in str(w.message)
        for w in caught
    )


def test_a_rate_that_starts_late_or_is_no_rate_is_refused(tmp_path):
    cat = Catalog(tmp_path / "catalog")
    times = pd.date_range("2024-01-02", periods=48, freq="1h", tz="UTC")
    close = np.full(48, 1.0002)
    close[30] = 65_000.0  # a BTC price where the rate should be
    cat.write(PartitionKey("binance", "spot", "USDCUSDT", "1h"), _rate_table(times, close))
    early = pd.date_range("2024-01-01 12:00", periods=24, freq="1h", tz="UTC")
    with pytest.raises(DataError, match=r"starts at 2024-01-02 00:00, after the window's first bar"):
        load_quote_rate(cat, "USDCUSDT", early, ["binance"])
    with pytest.raises(DataError, match=r"bar 2024-01-03 06:00:00\+00:00 .* not a rate between two stablecoins"):
        load_quote_rate(cat, "USDCUSDT", times, ["binance"])
    rates, venue, note = load_quote_rate(cat, "USDCUSDT", times[:24], ["okx", "binance"])
    assert venue == "binance" and (rates["close"] == 1.0002).all() and "held" not in note
    assert load_quote_rate(cat, "USDCUSDT", times, ["okx"]) is None

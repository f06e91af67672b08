"""load_market on the real Binance data in ../shared/data (skipped where it is absent)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from data.catalog import Catalog
from data.errors import DataError
from data.loader import DataWarning, load_market
from tests.conftest import shared_data_path

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def real_catalog(tmp_path_factory):
    from data.ingest.freqtrade import ingest_freqtrade

    source = shared_data_path("binance")
    catalog = Catalog(tmp_path_factory.mktemp("real") / "catalog")
    ingest_freqtrade(source, catalog, symbols=["BTCUSDT", "XTZUSDT", "DOGEUSDT"])
    return catalog


def _load(catalog, symbols, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_market(catalog, symbols, **kw)


def _raw(name: str) -> pd.DataFrame:
    df = pd.read_feather(shared_data_path("binance", "futures", name))
    df["date"] = pd.to_datetime(df["date"], utc=True).dt.floor("min")
    return df


def test_btc_funding_count_and_sum(real_catalog):
    m = _load(real_catalog, ["BTCUSDT"], start="2019-09-01", end="2026-06-01")
    assert int(m.funding_count.sum()) == 7323
    assert m.funding_rate.sum() == pytest.approx(0.79395571, abs=1e-9)
    assert set(np.unique(m.funding_interval_hours[~np.isnan(m.funding_interval_hours)])) == {8.0}


def test_btc_funding_value_matches_an_independent_computation(real_catalog):
    """sum(mark_t * r_t) from the raw files: mark = open of the 1h mark bar at t, else perp open."""
    m = _load(real_catalog, ["BTCUSDT"], start="2019-09-01", end="2026-06-01")
    f = _raw("BTC_USDT_USDT-1h-funding_rate.feather")[["date", "open"]].rename(columns={"open": "rate"})
    mark = _raw("BTC_USDT_USDT-1h-mark.feather").set_index("date")["open"]
    perp = _raw("BTC_USDT_USDT-1h-futures.feather").set_index("date")["open"]
    price = f["date"].map(mark).fillna(f["date"].map(perp))
    assert price.notna().all()
    expected = float((price * f["rate"]).sum())
    assert m.funding_value.sum() == pytest.approx(expected, rel=1e-12)
    # and per bar: the settlement at t sits in the bar that closes at t
    bar = m.index.get_indexer(f["date"] - pd.Timedelta("1h"))
    assert (bar >= 0).all()
    np.testing.assert_allclose(m.funding_value[bar, 0], (price * f["rate"]).to_numpy(), rtol=1e-12)


def test_xtz_interval_changes(real_catalog):
    m = _load(real_catalog, ["XTZUSDT"])
    h = m.funding_interval_hours[:, 0]
    ok = ~np.isnan(h)
    seq = pd.Series(h[ok])
    changes = seq[seq.diff() != 0].tolist()
    # the shared data settles 8h, then hourly after hitting the cap on 2025-07-20, then 4h
    assert changes == [8.0, 1.0, 4.0]
    assert m.funding_rate.sum() == pytest.approx(-0.1293, abs=5e-4)
    # an 8h settlement per 8 bars, then one per bar: counts follow the interval
    assert int(m.funding_count.sum()) == int(ok.sum())


def test_resampling_real_data_keeps_every_settlement(real_catalog):
    m1 = _load(real_catalog, ["BTCUSDT", "XTZUSDT"], start="2025-05-01", end="2026-05-01")
    for freq in ("4h", "1d"):
        m = _load(real_catalog, ["BTCUSDT", "XTZUSDT"], start="2025-05-01", end="2026-05-01", freq=freq)
        np.testing.assert_array_equal(m.funding_count.sum(0), m1.funding_count.sum(0))
        np.testing.assert_allclose(m.funding_rate.sum(0), m1.funding_rate.sum(0), atol=1e-12)
        np.testing.assert_allclose(m.funding_value.sum(0), m1.funding_value.sum(0), rtol=1e-12)
    m4 = _load(real_catalog, ["XTZUSDT"], start="2025-07-21", end="2025-07-22", freq="4h")
    assert m4.funding_count.max() == 4  # hourly settlements summed into 4h bars


def test_real_spot_outage_follows_the_gap_policy(real_catalog):
    with pytest.raises(DataError, match=r"BTCUSDT spot .*2020-02-19 12:00"):
        load_market(real_catalog, ["BTCUSDT"], start="2020-02-15", end="2020-03-01", gaps="error")
    with pytest.warns(DataWarning, match="forward-filled 5 missing bar"):
        m = load_market(real_catalog, ["BTCUSDT"], start="2020-02-15", end="2020-03-01")
    outage = (m.index >= "2020-02-19 12:00") & (m.index < "2020-02-19 17:00")
    assert m.filled[outage, 0].all() and m.filled.sum() == 5


def test_mark_from_8h_bars_where_hourly_marks_are_missing(real_catalog):
    """DOGE's 1h mark file starts late; settlements before are valued at the 8h mark bars' opens."""
    m = _load(real_catalog, ["DOGEUSDT"])
    f = _raw("DOGE_USDT_USDT-8h-funding_rate.feather")
    mark8 = _raw("DOGE_USDT_USDT-8h-mark.feather").set_index("date")["open"]
    t = f["date"].iloc[10]
    assert t in mark8.index
    i = m.index.get_loc(t - pd.Timedelta("1h"))
    assert m.mark_fallback[i, 0]  # no hourly mark there
    assert m.funding_value[i, 0] == pytest.approx(f["open"].iloc[10] * mark8[t], rel=1e-12)

"""load_market: alignment, the funding convention, resampling, gaps, multipliers, fallbacks."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from data.catalog import Catalog, PartitionKey
from data.errors import DataError
from data.loader import DataWarning, load_market
from data.schema import Kind


def _bars(times, close, spread=0.01):
    close = np.asarray(close, float)
    open_ = np.concatenate([[close[0]], close[:-1]])
    return pa.table(
        {
            "time": pd.DatetimeIndex(times),
            "open": open_,
            "high": np.maximum(open_, close) * (1 + spread),
            "low": np.minimum(open_, close) * (1 - spread),
            "close": close,
            "volume": np.full(len(close), 10.0),
        }
    )


def _funding(times, rates, hours=8.0):
    return pa.table(
        {
            "time": pd.DatetimeIndex(times),
            "rate": np.asarray(rates, float),
            "interval_hours": np.full(len(rates), hours),
        }
    )


def _write_symbol(cat, sym, times, spot, perp, mark=None, ftimes=(), frates=(), perp_sym=None, hours=8.0):
    perp_sym = perp_sym or sym
    cat.write(PartitionKey("binance", Kind.SPOT, sym, "1h"), _bars(times, spot))
    cat.write(PartitionKey("binance", Kind.PERP, perp_sym, "1h"), _bars(times, perp))
    if mark is not None:
        cat.write(PartitionKey("binance", Kind.MARK, perp_sym, "1h"), _bars(times, mark).drop_columns(["volume"]))
    cat.write(PartitionKey("binance", Kind.FUNDING, perp_sym), _funding(ftimes, frates, hours))


@pytest.fixture
def simple(tmp_path):
    cat = Catalog(tmp_path / "cat")
    times = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
    spot = 100 + np.arange(48.0)
    ftimes = pd.DatetimeIndex(
        ["2024-01-01 08:00", "2024-01-01 16:00", "2024-01-02 00:00", "2024-01-02 08:00"], tz="UTC"
    )
    _write_symbol(cat, "AAAUSDT", times, spot, spot * 1.001, spot * 1.0005, ftimes, [0.0001, -0.0002, 0.0003, 0.0004])
    return cat, times, spot


def test_funding_goes_to_the_bar_that_closes_at_the_settlement(simple):
    cat, times, spot = simple
    m = load_market(cat, ["AAAUSDT"], start="2024-01-01", end="2024-01-03")
    assert m.shape == (48, 1)
    assert m.index.equals(times)
    # settlement at 08:00 is in the 07:00 bar; valued at the mark open of the 08:00 bar
    i = times.get_loc(pd.Timestamp("2024-01-01 07:00", tz="UTC"))
    assert m.funding_rate[i, 0] == pytest.approx(0.0001)
    assert m.funding_value[i, 0] == pytest.approx(0.0001 * m.mark_open[i + 1, 0], rel=1e-12)
    assert m.funding_count[:, 0].sum() == 4
    assert m.funding_rate[:, 0].sum() == pytest.approx(0.0006, abs=1e-15)
    assert np.isnan(m.funding_interval_hours[0, 0]) and m.funding_interval_hours[i, 0] == 8.0
    assert m.valid.all() and not m.filled.any() and not m.mark_fallback.any()
    assert not m.spot_close.flags.writeable and m.spot_close.flags.c_contiguous


def test_settlement_at_the_last_close_is_kept_and_valued_from_the_previous_close(simple):
    cat, times, _ = simple
    m = load_market(cat, "AAAUSDT", end="2024-01-02 08:00")
    assert m.n_bars == 32
    # 08:00 on day 2 is the close of the last bar (07:00): kept, valued at that bar's mark close
    assert m.funding_count[-1, 0] == 1
    assert m.funding_value[-1, 0] == pytest.approx(0.0004 * m.mark_close[-1, 0])


def test_start_end_window(simple):
    cat, times, _ = simple
    m = load_market(cat, "AAAUSDT", start="2024-01-01 08:00", end="2024-01-02")
    assert m.index[0] == pd.Timestamp("2024-01-01 08:00", tz="UTC") and m.n_bars == 16
    # the 08:00 settlement belongs to the 07:00 bar, outside the window
    assert m.funding_count.sum() == 2


def test_resample_keeps_every_settlement(simple):
    cat, _, spot = simple
    m1 = load_market(cat, "AAAUSDT", start="2024-01-01", end="2024-01-03")
    m4 = load_market(cat, "AAAUSDT", freq="4h", start="2024-01-01", end="2024-01-03")
    md = load_market(cat, "AAAUSDT", freq="1d", start="2024-01-01", end="2024-01-03")
    assert m4.n_bars == 12 and md.n_bars == 2
    for m in (m4, md):
        assert m.funding_count.sum() == 4
        assert m.funding_rate.sum() == pytest.approx(m1.funding_rate.sum(), abs=1e-15)
        assert m.funding_value.sum() == pytest.approx(m1.funding_value.sum(), rel=1e-12)
    assert md.funding_count[0, 0] == 3  # 08:00, 16:00 and 00:00 of the next day close in day 1's span
    assert m4.spot_open[1, 0] == m1.spot_open[4, 0]
    assert m4.spot_close[1, 0] == m1.spot_close[7, 0]
    assert m4.spot_high[1, 0] == m1.spot_high[4:8, 0].max()
    assert m4.spot_low[1, 0] == m1.spot_low[4:8, 0].min()
    assert m4.spot_volume[1, 0] == m1.spot_volume[4:8, 0].sum()


def test_funding_time_is_the_last_settlement_instant_of_the_bar(tmp_path):
    """``funding_time_ms``: when the last settlement summed into the bar happened (exact, even
    off the hour), NO_FUNDING_TIME elsewhere; resampling and Market.select keep it."""
    from data.market import NO_FUNDING_TIME, Market

    cat = Catalog(tmp_path / "cat")
    times = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
    spot = 100 + np.arange(48.0)
    ftimes = pd.DatetimeIndex(
        ["2024-01-01 08:00", "2024-01-01 12:00:00.001", "2024-01-01 16:00", "2024-01-02 00:00"], tz="UTC"
    )
    _write_symbol(cat, "AAAUSDT", times, spot, spot * 1.001, spot * 1.0005, ftimes, [1e-4, 2e-4, 3e-4, 4e-4])
    ms = ftimes.as_unit("ms").asi8

    def at(m, bar):
        return m.funding_time_ms[m.index.get_loc(pd.Timestamp(bar, tz="UTC")), 0]

    m = load_market(cat, "AAAUSDT", start="2024-01-01", end="2024-01-03")
    ft = m.funding_time_ms
    assert ft.dtype == np.int64 and ft.shape == m.shape and not ft.flags.writeable
    assert at(m, "2024-01-01 07:00") == ms[0]  # 08:00:00 sits in the 07:00 bar
    assert at(m, "2024-01-01 12:00") == ms[1]  # 12:00:00.001 sits in the 12:00 bar, stamped exactly
    assert at(m, "2024-01-01 23:00") == ms[3]
    np.testing.assert_array_equal(ft != NO_FUNDING_TIME, m.funding_count > 0)
    m4 = load_market(cat, "AAAUSDT", freq="4h", start="2024-01-01", end="2024-01-03")
    assert at(m4, "2024-01-01 04:00") == ms[0]
    assert m4.funding_count[3, 0] == 2 and at(m4, "2024-01-01 12:00") == ms[2]  # 12:00:00.001 and 16:00: the last
    md = load_market(cat, "AAAUSDT", freq="1d", start="2024-01-01", end="2024-01-03")
    assert md.funding_count[0, 0] == 4 and at(md, "2024-01-01") == ms[3]  # the last of the day's four
    part = m.select(start="2024-01-01 10:00", end="2024-01-01 20:00")
    np.testing.assert_array_equal(part.funding_time_ms, ft[10:20])
    fields = {f: getattr(m, f) for f in m.__dataclass_fields__}
    assert Market(**{**fields, "funding_time_ms": None}).funding_time_ms is None  # optional
    with pytest.raises(DataError, match="funding_time_ms has no settlement time at bar 2024-01-01 07:00"):
        Market(**{**fields, "funding_time_ms": np.where(ft == ms[0], NO_FUNDING_TIME, ft)})


def test_gap_policy(tmp_path):
    cat = Catalog(tmp_path / "cat")
    times = pd.date_range("2024-01-01", periods=30, freq="1h", tz="UTC")
    spot = 100 + np.arange(30.0)
    keep = np.ones(30, bool)
    keep[10:13] = False  # a 3-bar spot outage
    cat.write(PartitionKey("binance", Kind.SPOT, "AAAUSDT", "1h"), _bars(times[keep], spot[keep]))
    cat.write(PartitionKey("binance", Kind.PERP, "AAAUSDT", "1h"), _bars(times, spot))
    cat.write(PartitionKey("binance", Kind.FUNDING, "AAAUSDT"), _funding(times[8:9], [0.0001]))
    with pytest.raises(DataError, match=r"AAAUSDT spot .*1 gap.*3 bar\(s\) missing from 2024-01-01 10:00"):
        load_market(cat, "AAAUSDT", gaps="error", start="2024-01-01", end="2024-01-02 06:00")
    with pytest.warns(DataWarning, match="forward-filled 3 missing bar"):
        m = load_market(cat, "AAAUSDT", start="2024-01-01", end="2024-01-02 06:00")
    assert m.filled[10:13, 0].all() and not m.filled[:10, 0].any()
    assert (m.spot_close[10:13, 0] == m.spot_close[9, 0]).all()
    assert m.valid[10:13, 0].all()
    with pytest.warns(DataWarning, match="exceeds max_fill_bars=2"):
        m = load_market(cat, "AAAUSDT", max_fill_bars=2, start="2024-01-01", end="2024-01-02 06:00")
    assert not m.valid[10:13, 0].any() and np.isnan(m.spot_close[10:13, 0]).all()


def test_thousand_multiplier_perp_is_put_in_coin_units(tmp_path):
    cat = Catalog(tmp_path / "cat")
    times = pd.date_range("2024-01-01", periods=24, freq="1h", tz="UTC")
    spot = np.full(24, 0.00001)
    _write_symbol(cat, "PEPEUSDT", times, spot, spot * 1000, spot * 1000, times[8:9], [0.0001], perp_sym="1000PEPEUSDT")
    # the spot series lives under PEPEUSDT; the perp under 1000PEPEUSDT
    for name in ("PEPEUSDT", "1000PEPEUSDT"):
        m = load_market(cat, name, start="2024-01-01", end="2024-01-02")
        assert m.symbols == ("PEPEUSDT",) and m.perp_symbols == ("1000PEPEUSDT",)
        assert m.multiplier[0] == 1000
        np.testing.assert_allclose(m.perp_close[:, 0], spot, rtol=1e-12)
        np.testing.assert_allclose(m.perp_volume[:, 0], 10.0 * 1000)
        assert m.funding_value.sum() == pytest.approx(0.0001 * 0.00001, rel=1e-9)


def test_missing_mark_falls_back_to_perp_with_a_warning(tmp_path):
    cat = Catalog(tmp_path / "cat")
    times = pd.date_range("2024-01-01", periods=24, freq="1h", tz="UTC")
    spot = 100 + np.arange(24.0)
    _write_symbol(cat, "AAAUSDT", times, spot, spot * 1.01, None, times[8:9], [0.001])
    with pytest.warns(DataWarning, match="no mark-price data"):
        m = load_market(cat, "AAAUSDT")
    assert m.mark_fallback.all()
    np.testing.assert_array_equal(m.mark_close, m.perp_close)
    with pytest.raises(DataError, match="no mark-price bars"):
        load_market(cat, "AAAUSDT", require_mark=True)


def test_multi_symbol_union_coverage(tmp_path):
    cat = Catalog(tmp_path / "cat")
    t1 = pd.date_range("2024-01-01", periods=24, freq="1h", tz="UTC")
    t2 = pd.date_range("2024-01-01 12:00", periods=24, freq="1h", tz="UTC")
    _write_symbol(cat, "AAAUSDT", t1, np.full(24, 10.0), np.full(24, 10.0), np.full(24, 10.0), t1[8:9], [0.001])
    _write_symbol(cat, "BBBUSDT", t2, np.full(24, 5.0), np.full(24, 5.0), np.full(24, 5.0), t2[8:9], [0.002])
    m = load_market(cat, ["AAAUSDT", "BBBUSDT"], start="2024-01-01", end="2024-01-02 12:00")
    assert m.n_bars == 36
    assert m.valid[:24, 0].all() and not m.valid[24:, 0].any()
    assert not m.valid[:12, 1].any() and m.valid[12:, 1].all()
    assert np.isnan(m.spot_close[:12, 1]).all()
    assert m.select(["BBBUSDT"]).symbols == ("BBBUSDT",)


def test_clear_errors(tmp_path, simple):
    cat, _, _ = simple
    with pytest.raises(DataError, match="no spot bars for ZZZUSDT.*available symbols: AAAUSDT"):
        load_market(cat, "ZZZUSDT")
    with pytest.raises(DataError, match="does not exist"):
        load_market(tmp_path / "nowhere", "AAAUSDT")
    with pytest.raises(DataError, match="cannot split"):
        load_market(cat, "AAA")
    with pytest.raises(DataError, match="empty time range"):
        load_market(cat, "AAAUSDT", start="2024-02-01", end="2024-01-01")


def test_demo_market_loads_fast_and_consistent(demo_catalog):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        m = load_market(demo_catalog, ["DEMOAUSDT", "DEMOBUSDT", "DEMOCUSDT"])
    assert m.valid.all()
    assert (m.funding_count.sum(0) > 1000).all()
    # the negative-funding symbol settles every 4h
    assert set(np.unique(m.funding_interval_hours[:, 1][~np.isnan(m.funding_interval_hours[:, 1])])) == {4.0}
    assert m.funding_rate[:, 1].sum() < 0


def test_a_shifted_second_funding_source_is_refused(tmp_path):
    """Merging settlements whose times are shifted (naive UTC+3 read as UTC) would put a second
    settlement inside every interval and double the funding: refused, naming the source, the
    rows and the shift that aligns them; nothing is written. The same rows, a later extension
    and settlements filling a hole on the schedule are merged."""
    from data.errors import DataError

    cat = Catalog(tmp_path / "cat")
    key = PartitionKey("binance", Kind.FUNDING, "BTCUSDT")
    times = pd.date_range("2024-01-01", periods=30, freq="8h", tz="UTC")
    stored = np.r_[0:10, 12:30]  # a hole of two settlements
    cat.write(key, _funding(times[stored], np.full(len(stored), 1e-4)))
    before = cat.read(key).num_rows
    shifted = times[:12] + pd.Timedelta(hours=3)
    with pytest.raises(
        DataError,
        match=r"ccxt\.csv: 9 funding settlement\(s\) of BTCUSDT fall inside .*every 8h.*2024-01-01 03:00.*\+3h.*by -3h",
    ):
        cat.write(key, _funding(shifted, np.full(12, 1e-4)), source="ccxt.csv")
    assert cat.read(key).num_rows == before
    cat.write(key, _funding(times[:5], np.full(5, 1e-4)))  # the same rows
    cat.write(key, _funding(times[10:12], np.full(2, 1e-4)))  # the hole, on the schedule
    later = pd.date_range(times[-1] + pd.Timedelta(hours=4), periods=6, freq="4h")  # a later 4h schedule
    cat.write(key, _funding(later, np.full(6, 1e-4), hours=4.0))
    assert cat.read(key).num_rows == 30 + 6

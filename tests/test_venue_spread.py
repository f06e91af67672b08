"""Funding spreads between venues (reports.venue_spread, ``carry scan --venues``).

Hand-computed cases (8-hourly against hourly settlements, holes, regimes and fees), the daily
funding of real files recomputed independently from the raw freqtrade files, and the CLI.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from data.catalog import Catalog
from data.errors import ConfigError
from reports.venue_spread import (
    DAY_MS,
    PerpPrices,
    VenueFunding,
    daily_funding,
    day_grid,
    pair_stats,
    spread_regimes,
    venue_spreads,
)
from tests.conftest import REPO, shared_data_path

H = 3_600_000
T0 = int(pd.Timestamp("2024-01-01", tz="UTC").value // 1_000_000)


def _series(venue, every_h, days, rate, start=T0, drop=()):
    """Settlements every ``every_h`` hours from ``start + every_h`` for ``days`` days at ``rate``
    (a scalar or a function of the settlement's day index), without the ``drop`` indices."""
    times = start + every_h * H * np.arange(1, days * 24 // every_h + 1)
    rates = np.array([rate((t - start - 1) // DAY_MS) if callable(rate) else rate for t in times], float)
    keep = np.setdiff1d(np.arange(len(times)), np.asarray(drop, int))
    return VenueFunding(venue, "BTCUSDT", times[keep], rates[keep], np.full(len(keep), float(every_h)))


def _days(n):
    return pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC")


def test_daily_sums_compare_8h_and_hourly_venues_per_utc_day():
    a = _series("a", 8, 10, 0.0001)  # 3 settlements a day
    b = _series("b", 1, 10, 0.00002)  # 24 a day
    days = _days(10)
    da, db = daily_funding(a, days), daily_funding(b, days)
    np.testing.assert_allclose(da.funding, 0.0003, rtol=1e-12)
    np.testing.assert_allclose(db.funding, 0.00048, rtol=1e-12)
    assert da.known.all() and db.known.all()
    st = pair_stats("BTC", da, db)
    assert st.days == 10 and st.longest_run_days == 10 and st.longest_run_higher == "b"
    assert st.spread_annualized == pytest.approx((0.00048 - 0.0003) * 365, rel=1e-12)
    assert st.share_days_b_higher == 1.0


def test_midnight_settlement_pays_for_the_day_before():
    # one 8h settlement at 2024-01-02 00:00 pays for 2024-01-01 16:00-24:00: day 0, not day 1
    s = VenueFunding(
        "a", "X", np.array([T0 + 8 * H, T0 + 16 * H, T0 + 24 * H]), np.array([1.0, 2.0, 4.0]) * 1e-4, np.full(3, 8.0)
    )
    d = daily_funding(s, _days(2))
    np.testing.assert_allclose(d.funding, [7e-4, 0.0], rtol=1e-12)
    assert d.known.tolist() == [True, False]  # day 1's funding is not in the data: not zero funding


def test_a_hole_is_not_a_day_of_zero_funding():
    # settlements 9..14 (day 3 and a bit of day 4) missing: both days unknown, their sums not used
    a = _series("a", 8, 8, 0.0001, drop=range(9, 14))
    b = _series("b", 8, 8, 0.0002)
    days = _days(8)
    da, db = daily_funding(a, days), daily_funding(b, days)
    assert da.known.tolist() == [True, True, True, False, False, True, True, True]
    st = pair_stats("BTC", da, db)
    assert st.days == 6
    assert st.spread_annualized == pytest.approx(0.0003 * 365, rel=1e-12)
    # no regime spans the hole: two segments of 3 days each
    regs = spread_regimes("BTC", da, db, 0.0005, 0.0005, window_days=2, min_days=3)
    assert [(r.start, r.days) for r in regs] == [("2024-01-01", 3), ("2024-01-06", 3)]


def test_regimes_change_sides_and_net_is_collected_less_four_taker_fees():
    # b pays 2 bp/day more for 20 days, then a pays 3 bp/day more for 20 days
    a = _series("a", 8, 40, lambda d: 0.0 if d < 20 else 0.0001)
    b = _series("b", 8, 40, lambda d: 2e-4 / 3 if d < 20 else 0.0)
    days = _days(40)
    regs = spread_regimes("BTC", daily_funding(a, days), daily_funding(b, days), 0.0005, 0.00045, 1, 10)
    assert [(r.short_venue, r.long_venue, r.days) for r in regs] == [("b", "a", 20), ("a", "b", 20)]
    # a trailing window lags the flip: with 3 days, the 20th day still reads as b's (2 + 2 - 3 > 0)
    lagged = spread_regimes("BTC", daily_funding(a, days), daily_funding(b, days), 0.0005, 0.00045, 3, 10)
    assert [r.days for r in lagged] == [21, 19]
    assert regs[0].collected == pytest.approx(20 * 2e-4, rel=1e-9)
    assert regs[1].collected == pytest.approx(20 * 3e-4, rel=1e-9)
    for r in regs:
        assert r.fees == pytest.approx(2 * (0.0005 + 0.00045), rel=1e-12)
        assert math.isnan(r.basis) and math.isnan(r.net)  # no perp prices given: unknown, not zero
    with pytest.raises(ConfigError, match="window_days"):
        spread_regimes("BTC", daily_funding(a, days), daily_funding(b, days), 0.0, 0.0, 0, 10)


def test_basis_is_the_price_pnl_of_the_same_coins_long_and_short_from_the_first_common_bar():
    # a pays 1 bp/day more for 20 days: short a, long b; b's bars start 5 hours into the first day
    a = _series("a", 8, 20, 1e-4 / 3)
    b = _series("b", 8, 20, 0.0)
    days = _days(20)
    hours = T0 + H * np.arange(0, 21 * 24)
    pa = PerpPrices("a", "X", hours, 100.0 + 0.01 * np.arange(len(hours)))  # +0.24 a day
    later = hours[5:]
    pb = PerpPrices("b", "X", later, 101.0 + 0.02 * np.arange(5, len(hours)))  # +0.48 a day
    (r,) = spread_regimes("BTC", daily_funding(a, days), daily_funding(b, days), 0.0, 0.0, 1, 10, (pa, pb))
    assert (r.short_venue, r.long_venue, r.days) == ("a", "b", 20)
    # entry at 05:00 of day 0 (the first bar both have), exit at 00:00 after day 19 (hour 480)
    long0, long1 = 101.0 + 0.02 * 5, 101.0 + 0.02 * 480
    short0, short1 = 100.0 + 0.01 * 5, 100.0 + 0.01 * 480
    assert r.basis == pytest.approx(((long1 - long0) - (short1 - short0)) / long0, rel=1e-12)
    assert r.net == pytest.approx(r.collected + r.basis - r.fees, rel=1e-12)
    # no common bar within a day of the exit: unknown
    cut = PerpPrices("b", "X", later[: 24 * 18], pb.opens[: 24 * 18])
    (r,) = spread_regimes("BTC", daily_funding(a, days), daily_funding(b, days), 0.0, 0.0, 1, 10, (pa, cut))
    assert math.isnan(r.basis) and math.isnan(r.net)


def test_day_grid_covers_the_first_interval_and_errors_on_nothing():
    a = _series("a", 8, 3, 0.0001)
    assert day_grid([a])[0] == pd.Timestamp("2024-01-01", tz="UTC")
    assert len(day_grid([a])) == 3
    empty = VenueFunding("a", "X", np.array([], np.int64), np.array([]), np.array([]))
    with pytest.raises(ConfigError, match="no funding settlements"):
        day_grid([empty])


def _raw_daily(path, start, end):
    """Daily funding recomputed from a freqtrade funding file: the rate in ``open``, times floored
    to the hour, summed per UTC day over ``(d, d + 1]``."""
    raw = pd.read_feather(path)
    t = pd.to_datetime(raw["date"], utc=True).dt.floor("h")
    day = (t - pd.Timedelta(milliseconds=1)).dt.floor("D")
    s = raw["open"].groupby(day).sum()
    return s[(s.index >= pd.Timestamp(start, tz="UTC")) & (s.index < pd.Timestamp(end, tz="UTC"))]


@pytest.mark.shared_data
def test_real_daily_funding_equals_the_raw_files(tmp_path):
    """BTC on Binance (8h) and Hyperliquid (1h, USDC) over the overlap named in issue 16: every
    known day's sum equals the raw files' (1e-12), and the spread is Hyperliquid paying more."""
    from data.ingest.freqtrade import ingest_freqtrade
    from data.venues import venue_rules

    files = {
        "binance": shared_data_path("binance", "futures", "BTC_USDT_USDT-1h-funding_rate.feather"),
        "hyperliquid": shared_data_path("hyperliquid", "futures", "BTC_USDC_USDC-1h-funding_rate.feather"),
    }
    cat = Catalog(tmp_path / "cat")
    for venue, sym in (("binance", "BTCUSDT"), ("hyperliquid", "BTCUSDC")):
        ingest_freqtrade(files[venue].parent.parent, cat, venue=venue, symbols=[sym])
    start, end = "2024-09-04", "2025-07-26"
    stats, regimes, daily = venue_spreads(
        cat,
        ["BTC"],
        ["binance", "hyperliquid"],
        {"BTC": {"binance": "BTCUSDT", "hyperliquid": "BTCUSDC"}},
        {v: (lambda day, v=v: venue_rules(v).fees_at(day).perp_taker_fee_rate) for v in files},  # as the CLI
        start,
        end,
    )
    for venue in files:
        got = daily[(daily.venue == venue) & daily.known].set_index("day").funding
        want = _raw_daily(files[venue], start, end).reindex(got.index)
        assert len(got) > 300
        np.testing.assert_allclose(got.to_numpy(), want.to_numpy(), rtol=1e-12, atol=1e-15)
    row = stats.iloc[0]
    # the README's figures ("Example: funding spreads between venues")
    assert row.days == 324 and row.longest_run_higher == "hyperliquid" and row.longest_run_days == 40
    assert f"{row.spread_annualized:+.2%}" == "+8.29%" and f"{row.share_days_b_higher:.0%}" == "89%"
    # the README's regime: one all year, short Hyperliquid, long Binance
    (r,) = regimes.itertuples()
    assert (r.short_venue, r.days, f"{r.basis:+.3%}", f"{r.net:+.3%}") == ("hyperliquid", 324, "-0.094%", "+7.097%")
    # the same trade in the engine (the README's "engine" column): net of everything
    from reports.venue_spread import engine_regimes

    priced, notes = engine_regimes(cat, regimes)
    assert not notes and f"{priced.engine_net.iloc[0]:+.3%}" == "+6.691%"
    assert priced.engine_transfers.iloc[0] == 9 and priced.engine_liquidations.iloc[0] == 0
    assert (f"{priced.engine_fees.iloc[0]:.3%}", f"{priced.engine_funding.iloc[0]:.3%}") == ("1.020%", "7.786%")
    assert 0 < priced.engine_net.iloc[0] < r.net  # the transfers' resizes and re-strikes cost fees
    # both venues' perp bars are in the catalog: every regime's basis is known
    assert regimes.basis.notna().all()
    np.testing.assert_allclose(regimes.net, regimes.collected + regimes.basis - regimes.fees, rtol=1e-12)


def _carry(*args, cwd):
    return subprocess.run([sys.executable, "-m", "backtest.app.cli", *args], cwd=cwd, capture_output=True, text=True)


def _write_funding(cat, venue, symbol, series):
    import pyarrow as pa

    from data.catalog import PartitionKey
    from data.schema import Kind

    table = pa.table(
        {
            "time": pa.array(series.times_ms, pa.timestamp("ms", tz="UTC")),
            "rate": series.rates,
            "interval_hours": series.hours,
            "mark_price": pa.nulls(len(series.times_ms), pa.float64()),
        }
    )
    with cat.transaction():
        cat.write(PartitionKey(venue, Kind.FUNDING, symbol), table)


def test_cli_scan_venues_writes_files_and_refuses_bad_input(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _write_funding(cat, "binance", "BTCUSDT", _series("binance", 8, 60, 0.0001))
    _write_funding(cat, "hyperliquid", "BTCUSDC", _series("hyperliquid", 1, 60, 0.00002))
    out = tmp_path / "out"
    r = _carry("scan", "--data", str(cat.root), "--venues", "binance,hyperliquid", "--out", str(out), cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "Funding spread by coin and venue pair" in r.stdout and "BTC" in r.stdout
    summary = json.loads((out / "venue_spread.json").read_text())
    assert summary["coins"] == ["BTC"] and summary["symbols"]["BTC"]["hyperliquid"] == "BTCUSDC"
    pair = summary["pairs"][0]
    assert pair["days"] == 60 and pair["spread_annualized"] == pytest.approx((0.00048 - 0.0003) * 365, rel=1e-9)
    assert (out / "venue_funding.parquet").exists() and (out / "report.html").stat().st_size > 10_000
    assert "basis and net unknown (ingest the perp bars)" in r.stderr  # this catalog has funding only
    assert "quotes taken 1:1: binance USDT, hyperliquid USDC" in r.stderr
    for args, words in (
        (["--venues", "binance"], "at least two different venues"),
        (["--venues", "binance,bybit"], "no funding on venue bybit"),
        (["--venues", "binance,hyperliqud"], "hyperliquid"),
        (["--venues", "binance,hyperliquid", "--symbols", "ETHUSDT"], "ETH: no funding for ETHUSDT on binance"),
        (["--venues", "binance,hyperliquid", "--venue", "okx"], "--venue reads one venue"),
    ):
        bad = tmp_path / "bad"
        r = _carry("scan", "--data", str(cat.root), *args, "--out", str(bad), cwd=REPO)
        assert r.returncode != 0 and words in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr and not bad.exists()


def test_cli_says_when_two_venues_never_overlap(tmp_path):
    cat = Catalog(tmp_path / "cat")
    _write_funding(cat, "binance", "BTCUSDT", _series("binance", 8, 30, 0.0001))
    later = T0 + 60 * DAY_MS
    _write_funding(cat, "hyperliquid", "BTCUSDC", _series("hyperliquid", 1, 30, 0.00002, start=later))
    out = tmp_path / "out"
    r = _carry("scan", "--data", str(cat.root), "--venues", "binance,hyperliquid", "--out", str(out), cwd=REPO)
    assert r.returncode == 0, r.stderr
    assert "BTC: no day whose funding is known on both binance and hyperliquid in the window" in r.stderr
    assert json.loads((out / "venue_spread.json").read_text())["pairs"][0]["days"] == 0

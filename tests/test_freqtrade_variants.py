"""freqtrade data as users really have it (issue 13, "Real files users have").

Each case twice where the real data has it: a generated directory in tmp_path reproducing the
case, and the real files of ../shared/data/{binance,bybit,hyperliquid,okx} (skipped where absent).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.catalog import Catalog, PartitionKey
from data.errors import DataError
from data.ingest import IngestReport
from data.ingest.freqtrade import derive_interval_hours, ingest_freqtrade, parse_filename
from data.quality import catalog_info, check_catalog, format_info
from data.schema import Kind
from data.symbols import (
    canonical_symbol,
    contract_multiplier,
    perp_candidates,
    split_multiplier,
    split_symbol,
    spot_symbol,
)
from tests.conftest import SHARED_DATA as SHARED
from tests.test_freqtrade import _bars, _funding, _write

H = 3_600_000


def _keys(cat: Catalog) -> set[str]:
    return {str(k) for k in cat.keys()}


def _skipped(report: IngestReport) -> list[str]:
    return [w for w in report.warnings if w.endswith("skipped")]


def _set_mtime(path: Path, when: str) -> None:
    t = pd.Timestamp(when, tz="UTC").value / 1e9
    os.utime(path, (t, t))


def _symbol_dir(
    d: Path, spot: str | None, perp: str, quote: str = "USDT", *, price: float = 1.0, mult: int = 1, n: int = 48
) -> None:
    """Spot bars of ``spot`` (if given), perp, mark and 8-hourly funding of ``perp`` (priced per
    ``mult`` coins) over ``n`` hours from 2024-01-01."""
    if spot:
        _write(_bars("2024-01-01", n, price=price), d / f"{spot}_{quote}-1h.feather")
    fut = d / "futures"
    _write(_bars("2024-01-01", n, price=price * mult * 1.001), fut / f"{perp}_{quote}_{quote}-1h-futures.feather")
    _write(_bars("2024-01-01", n, price=price * mult), fut / f"{perp}_{quote}_{quote}-1h-mark.feather")
    times = pd.date_range("2024-01-01", periods=n // 8 + 1, freq="8h", tz="UTC")
    _write(_funding(times, np.full(len(times), 1e-4)), fut / f"{perp}_{quote}_{quote}-1h-funding_rate.feather")


# --------------------------------------------------------------------------- 1. spot/ sub-folder
def test_spot_files_in_a_spot_subfolder_are_ingested(tmp_path: Path) -> None:
    d = tmp_path / "okx"
    _write(_bars("2024-01-01", 24), d / "spot" / "BTC_USDT-1h.feather")
    _write(_bars("2024-01-01", 24, price=101.0), d / "futures" / "BTC_USDT_USDT-1h-futures.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(d, cat, venue="okx")
    assert _keys(cat) == {"okx/spot/1h/BTCUSDT", "okx/perp/1h/BTCUSDT"}
    assert report.files_read == 2 and not report.warnings


def test_spot_at_the_top_and_in_spot_merge_into_one_series(tmp_path: Path) -> None:
    d = tmp_path / "ft"
    _write(_bars("2024-01-01", 24), d / "ETH_USDT-1h.feather")
    _write(_bars("2024-01-01 12:00", 24).assign(open=lambda x: x.open), d / "spot" / "ETH_USDT-1h.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(d, cat)
    spot = cat.read(PartitionKey("binance", Kind.SPOT, "ETHUSDT", "1h"))
    assert len(spot) == 36 and report.files_read == 2


def test_every_other_file_and_subfolder_is_listed_with_its_reason(tmp_path: Path) -> None:
    d = tmp_path / "ft"
    _write(_bars("2024-01-01", 24), d / "spot" / "BTC_USDT-1h.feather")
    (d / "backtest_results").mkdir()
    (d / "spot" / "old").mkdir()
    (d / ".DS_Store").write_bytes(b"\0")
    (d / "BTC_USDT-trades.feather").write_bytes(b"x")
    (d / "futures").mkdir()
    (d / "futures" / "BTC_USDT_USDT-trades.json.gz").write_bytes(b"x")
    (d / "ETH_USDT-1h.h5").write_bytes(b"x")
    (d / "pairs.txt").write_text("BTC/USDT\n")
    (d / "BTC_USDT-1h-weird.feather").write_bytes(b"x")
    (d / "BTC_USDT-0m.feather").write_bytes(b"x")
    report = ingest_freqtrade(d, Catalog(tmp_path / "cat"))
    skipped = _skipped(report)
    expected = {
        "backtest_results": "sub-folder not read",
        "old": "sub-folder of spot/ not read",
        ".DS_Store": "hidden file",
        "BTC_USDT-trades.feather": "trades (tick) file",
        "BTC_USDT_USDT-trades.json.gz": "trades (tick) file",
        "ETH_USDT-1h.h5": "freqtrade convert-data",
        "pairs.txt": "not a freqtrade data file",
        "BTC_USDT-1h-weird.feather": "not in freqtrade's layout",
        "BTC_USDT-0m.feather": "bad timeframe",
    }
    assert len(skipped) == len(expected), skipped
    for name, reason in expected.items():
        lines = [w for w in skipped if f"/{name}: " in w]
        assert len(lines) == 1 and reason in lines[0], (name, lines)
    assert report.files_read == 1


def test_a_directory_with_only_unreadable_entries_says_what_it_saw(tmp_path: Path) -> None:
    d = tmp_path / "ft"
    (d / "backups").mkdir(parents=True)
    (d / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"no freqtrade data files found.*backups: sub-folder not read"):
        ingest_freqtrade(d, Catalog(tmp_path / "cat"))


# --------------------------------------------------------------------------- 2. tickers
@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("1000PEPE", ("PEPE", 1000)),
        ("1000000MOG", ("MOG", 1_000_000)),
        ("1MBABYDOGE", ("BABYDOGE", 1_000_000)),
        ("10000LADYS", ("LADYS", 10_000)),
        ("kPEPE", ("PEPE", 1000)),  # Hyperliquid's thousands (lower-case k only)
        ("KAVA", ("KAVA", 1)),
        ("KPEPE", ("KPEPE", 1)),
        ("1INCH", ("1INCH", 1)),
        ("10001X", ("10001X", 1)),
        ("1000", ("1000", 1)),
        ("BTC", ("BTC", 1)),
    ],
)
def test_split_multiplier_reading(base: str, expected: tuple[str, int]) -> None:
    assert split_multiplier(base) == expected


def test_1000sats_is_a_token_when_the_source_has_its_spot() -> None:
    spots = {"1000SATSUSDT", "PEPEUSDT"}
    assert spot_symbol("1000SATSUSDT", spots) == "1000SATSUSDT"
    assert contract_multiplier("1000SATSUSDT", spots) == 1
    assert perp_candidates("1000SATSUSDT", spots) == [("1000SATSUSDT", 1)]
    # ... and SATSUSDT does not look for its perp under the token's name
    assert ("1000SATSUSDT", 1000) not in perp_candidates("SATSUSDT", spots)
    # 1000PEPE has no spot of its own: a multiplier, whether PEPE's spot is known or not
    for context in (spots, set(), None):
        assert spot_symbol("1000PEPEUSDT", context) == "PEPEUSDT"
        assert contract_multiplier("1000PEPEUSDT", context) == 1000
        assert perp_candidates("1000PEPEUSDT", context) == [("1000PEPEUSDT", 1000)]
    # without any context the reading alone decides (the documented fallback)
    assert spot_symbol("1000SATSUSDT") == "SATSUSDT" and contract_multiplier("1000SATSUSDT") == 1000


def test_perp_candidates_cover_every_prefix() -> None:
    cands = dict(perp_candidates("BABYDOGEUSDT"))
    assert cands["BABYDOGEUSDT"] == 1 and cands["1MBABYDOGEUSDT"] == 1_000_000
    assert cands["1000BABYDOGEUSDT"] == 1000 and cands["1000000BABYDOGEUSDT"] == 1_000_000
    assert perp_candidates("BABYDOGEUSDT")[0] == ("BABYDOGEUSDT", 1)  # the plain name first
    assert spot_symbol("1MBABYDOGEUSDT") == "BABYDOGEUSDT"
    assert perp_candidates("1INCHUSDT") == [("1INCHUSDT", 1)]  # no prefix before a digit


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("BTC/USDT:USDT", "BTCUSDT"),
        ("btc_usdt", "BTCUSDT"),
        ("BTC/USDC:USDC", "BTCUSDC"),
        ("kPEPE/USDC:USDC", "1000PEPEUSDC"),
        ("kSHIBUSDC", "1000SHIBUSDC"),
        ("kava_usdt", "KAVAUSDT"),
        ("1000SATS/USDT", "1000SATSUSDT"),
    ],
)
def test_canonical_symbol(name: str, canonical: str) -> None:
    assert canonical_symbol(name) == canonical


def test_usdc_quotes_split() -> None:
    assert split_symbol("BTCUSDC") == ("BTC", "USDC")
    assert spot_symbol("1000PEPEUSDC") == "PEPEUSDC"
    assert dict(perp_candidates("PEPEUSDC"))["1000PEPEUSDC"] == 1000


@pytest.fixture()
def tickers_dir(tmp_path: Path) -> Path:
    """1000SATS (spot token and its perp), PEPE with a 1000PEPE perp, BABYDOGE with 1MBABYDOGE."""
    d = tmp_path / "binance"
    _symbol_dir(d, "1000SATS", "1000SATS", price=0.0003)
    _symbol_dir(d, "PEPE", "1000PEPE", price=0.00001, mult=1000)
    _symbol_dir(d, "BABYDOGE", "1MBABYDOGE", price=0.000002, mult=1_000_000)
    return d


def test_ticker_variants_are_stored_under_the_exchange_names(tickers_dir: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tickers_dir, cat)
    assert not report.warnings
    perps = {k.symbol for k in cat.keys() if k.kind is Kind.PERP}
    spots = {k.symbol for k in cat.keys() if k.kind is Kind.SPOT}
    assert perps == {"1000SATSUSDT", "1000PEPEUSDT", "1MBABYDOGEUSDT"}
    assert spots == {"1000SATSUSDT", "PEPEUSDT", "BABYDOGEUSDT"}


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (["1000SATSUSDT"], {"spot/1h/1000SATSUSDT", "perp/1h/1000SATSUSDT"}),
        (["PEPEUSDT"], {"spot/1h/PEPEUSDT", "perp/1h/1000PEPEUSDT"}),
        (["1000PEPEUSDT"], {"perp/1h/1000PEPEUSDT"}),
        (["BABYDOGE/USDT"], {"spot/1h/BABYDOGEUSDT", "perp/1h/1MBABYDOGEUSDT"}),
    ],
)
def test_symbol_filter_follows_the_multiplier_rule(
    tickers_dir: Path, tmp_path: Path, wanted: list[str], expected: set[str]
) -> None:
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tickers_dir, cat, symbols=wanted)
    bars = {s.split("/", 1)[1] for s in _keys(cat) if "/funding/" not in s and "/mark/" not in s}
    assert bars == expected and not report.warnings


def test_satsusdt_is_not_the_1000sats_token(tickers_dir: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tickers_dir, cat, symbols=["SATSUSDT"])
    assert not list(cat.keys())
    assert report.warnings == [f"{tickers_dir}: no files for symbol SATSUSDT (did you mean '1000SATSUSDT'?)"]


def test_hyperliquid_thousands_and_usdc_quotes(tmp_path: Path) -> None:
    d = tmp_path / "hyperliquid"
    _symbol_dir(d, None, "kPEPE", "USDC", price=0.00001, mult=1000)
    _symbol_dir(d, None, "BTC", "USDC", price=60000.0)
    _write(_bars("2024-01-01", 24, price=60000.0), d / "UBTC_USDC-1h.feather")
    assert parse_filename("kPEPE_USDC_USDC-1h-futures.feather").symbol == "1000PEPEUSDC"
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(d, cat, venue="hyperliquid")
    assert not report.warnings
    assert {k.symbol for k in cat.keys()} == {"1000PEPEUSDC", "BTCUSDC", "UBTCUSDC"}
    sel = Catalog(tmp_path / "sel")
    ingest_freqtrade(d, sel, venue="hyperliquid", symbols=["kPEPE/USDC:USDC"])
    assert {k.symbol for k in sel.keys()} == {"1000PEPEUSDC"}


def _load(cat: Catalog, symbols: list[str]):
    from data.loader import load_market

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_market(cat, symbols, end="2024-01-02 23:00")


def test_loader_pairs_multiplier_perps_in_coin_units(tickers_dir: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(tickers_dir, cat)
    market = _load(cat, ["PEPEUSDT", "BABYDOGEUSDT"])
    assert list(market.multiplier) == [1000, 1_000_000]
    ratio = market.perp_close / market.spot_close  # both in quote per one coin
    assert np.allclose(ratio[np.isfinite(ratio)], 1.001)


def test_loader_takes_1000sats_as_a_token(tickers_dir: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(tickers_dir, cat)
    market = _load(cat, ["1000SATSUSDT"])
    assert list(market.multiplier) == [1]
    assert np.allclose(market.perp_close / market.spot_close, 1.001)


# --------------------------------------------------------------------------- 3. one-row funding
def test_a_funding_file_with_one_row(tmp_path: Path) -> None:
    d = tmp_path / "ft"
    _write(_bars("2024-01-01", 24), d / "NEW_USDT-1h.feather")
    _write(_bars("2024-01-01", 24, price=100.2), d / "futures" / "NEW_USDT_USDT-1h-futures.feather")
    path = _write(
        _funding(["2024-01-01 08:00:00.004"], [2e-4]), d / "futures" / "NEW_USDT_USDT-1h-funding_rate.feather"
    )
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(d, cat)
    fund = cat.read(PartitionKey("binance", Kind.FUNDING, "NEWUSDT"))
    assert fund.num_rows == 1 and fund.column("rate").to_pylist() == [2e-4]
    assert fund.column("interval_hours").to_pylist() == [None]  # unknown: null, not the label's 1h
    (line,) = report.warnings
    assert str(path) in line and "a single settlement" in line and "null" in line
    # downstream: data check warns, data info shows it, neither crashes
    problems = check_catalog(cat)
    assert [p.check for p in problems if "funding" in p.series] == ["funding_interval_unknown"]
    info = [r for r in catalog_info(cat) if r["kind"] == "funding"]
    assert info and "unknown" in format_info(info)
    again = ingest_freqtrade(d, cat)  # and re-ingesting is idempotent
    assert again.rows_added == 0


def test_a_funding_file_with_one_row_merges_with_later_files(tmp_path: Path) -> None:
    fut = tmp_path / "ft" / "futures"
    _write(_funding(["2024-01-01 00:00"], [1e-4]), fut / "ABC_USDT_USDT-8h-funding_rate.feather")
    times = pd.date_range("2024-01-01 08:00", periods=3, freq="8h", tz="UTC")
    _write(_funding(times, [1e-4] * 3), fut / "ABC_USDT_USDT-1h-funding_rate.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "ft", cat)
    fund = cat.read(PartitionKey("binance", Kind.FUNDING, "ABCUSDT"))
    assert fund.column("interval_hours").to_pylist() == [8.0] * 4 and not report.warnings


# --------------------------------------------------------------------------- 4. open last candle
def test_a_last_candle_still_open_when_written_is_dropped(tmp_path: Path) -> None:
    fut = tmp_path / "ft" / "futures"
    perp = _write(_bars("2024-01-01", 48), fut / "BTC_USDT_USDT-1h-futures.feather")
    mark = _write(_bars("2024-01-01", 6, freq="8h"), fut / "BTC_USDT_USDT-8h-mark.feather")
    _set_mtime(perp, "2024-01-02 23:41:07")  # freqtrade ran 41 minutes into the 23:00 bar
    _set_mtime(mark, "2024-01-02 23:41:07")  # ... and 7h41 into the 16:00 8h bar
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "ft", cat)
    assert len(cat.read(PartitionKey("binance", Kind.PERP, "BTCUSDT", "1h"))) == 47
    assert len(cat.read(PartitionKey("binance", Kind.MARK, "BTCUSDT", "8h"))) == 5
    (p_line,) = [w for w in report.warnings if "futures.feather" in w]
    assert str(perp) in p_line and "2024-01-02 23:00:00 UTC" in p_line and "still open" in p_line
    assert p_line.endswith("dropped")
    (m_line,) = [w for w in report.warnings if "mark.feather" in w]
    assert "last 8h candle 2024-01-02 16:00:00 UTC closes at 2024-01-03 00:00:00 UTC" in m_line


def test_a_last_candle_closed_when_written_is_kept(tmp_path: Path) -> None:
    path = _write(_bars("2024-01-01", 48), tmp_path / "ft" / "BTC_USDT-1h.feather")
    _set_mtime(path, "2024-01-03 00:00:00")  # written the instant the last bar closed
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "ft", cat)
    assert len(cat.read(PartitionKey("binance", Kind.SPOT, "BTCUSDT", "1h"))) == 48 and not report.warnings


def test_an_mtime_older_than_the_data_is_no_evidence(tmp_path: Path) -> None:
    path = _write(_bars("2024-01-01", 48), tmp_path / "ft" / "BTC_USDT-1h.feather")
    _set_mtime(path, "2024-01-02 10:30:00")  # 14 bars open after it: not the download time
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "ft", cat)
    assert len(cat.read(PartitionKey("binance", Kind.SPOT, "BTCUSDT", "1h"))) == 48
    (line,) = report.warnings
    assert str(path) in line and "cannot be told" in line and line.endswith("kept")


def test_funding_rows_are_not_taken_for_open_candles(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=4, freq="8h", tz="UTC")
    path = _write(_funding(times, [1e-4] * 4), tmp_path / "ft" / "futures" / "BTC_USDT_USDT-8h-funding_rate.feather")
    _set_mtime(path, "2024-01-02 00:00:30")
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(tmp_path / "ft", cat)
    assert len(cat.read(PartitionKey("binance", Kind.FUNDING, "BTCUSDT"))) == 4


def test_a_candle_dropped_now_is_added_by_a_later_download(tmp_path: Path) -> None:
    d = tmp_path / "ft"
    path = _write(_bars("2024-01-01", 48), d / "BTC_USDT-1h.feather")
    _set_mtime(path, "2024-01-02 23:10:00")
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(d, cat)
    path = _write(_bars("2024-01-01", 50), d / "BTC_USDT-1h.feather")  # the next download, mtime now
    report = ingest_freqtrade(d, cat)
    assert report.rows_added == 3 and not report.conflicts
    assert len(cat.read(PartitionKey("binance", Kind.SPOT, "BTCUSDT", "1h"))) == 50


# --------------------------------------------------------------------------- settlement times
def test_settlements_stamped_late_floor_to_their_hour(tmp_path: Path) -> None:
    times = ["2024-01-01 00:00:00.048", "2024-01-01 01:00:00.388", "2024-01-01 02:23:53.040", "2024-01-01 03:00:00.000"]
    path = _write(_funding(times, [1e-5] * 4), tmp_path / "hl" / "futures" / "BTC_USDC_USDC-1h-funding_rate.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "hl", cat, venue="hyperliquid")
    fund = cat.read(PartitionKey("hyperliquid", Kind.FUNDING, "BTCUSDC")).to_pandas()
    assert fund["time"].tolist() == list(pd.date_range("2024-01-01", periods=4, freq="1h", tz="UTC"))
    assert fund["interval_hours"].tolist() == [1.0] * 4  # not 1.38 h / 0.62 h
    (line,) = report.warnings
    assert str(path) in line and "1 settlement(s)" in line and "23.9 min" in line and "floored to the hour" in line


def test_settlements_mostly_off_the_hour_are_refused(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01 00:30", periods=4, freq="8h", tz="UTC")
    path = _write(_funding(times, [1e-4] * 4), tmp_path / "ft" / "futures" / "BTC_USDT_USDT-8h-funding_rate.feather")
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError, match=rf"{path.name}: column 'date': 4 of 4 .*row 0 \(2024-01-01 00:30"):
        ingest_freqtrade(tmp_path / "ft", cat)
    assert not list(cat.keys())


def test_a_single_late_settlement_is_floored_not_refused(tmp_path: Path) -> None:
    fut = tmp_path / "hl" / "futures"
    _write(_funding(["2024-01-01 10:14:47.645"], [1e-5]), fut / "NEW_USDC_USDC-1h-funding_rate.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "hl", cat, venue="hyperliquid")
    fund = cat.read(PartitionKey("hyperliquid", Kind.FUNDING, "NEWUSDC")).to_pandas()
    assert fund["time"].tolist() == [pd.Timestamp("2024-01-01 10:00", tz="UTC")]
    assert len(report.warnings) == 2  # floored to the hour; interval unknown


# --------------------------------------------------------------------------- 5. interval switches
@pytest.mark.parametrize(
    ("hours", "expected_runs"),
    [
        ([8] * 6 + [4] * 6, [8.0, 4.0]),  # bybit WIF
        ([8] * 4 + [1] * 5 + [4] * 4, [8.0, 1.0, 4.0]),  # binance XTZ
        ([4] * 4 + [1] * 5 + [4] * 4, [4.0, 1.0, 4.0]),  # capped -> hourly -> back to 4h
        ([8] * 4 + [1] * 6, [8.0, 1.0]),  # hyperliquid 2023-06-08
    ],
)
def test_an_interval_switch_is_a_schedule_change(tmp_path: Path, hours: list[int], expected_runs: list[float]) -> None:
    t = np.concatenate([[0], np.cumsum(hours)]) * H + pd.Timestamp("2024-03-01", tz="UTC").value // 1_000_000
    times = pd.to_datetime(t, unit="ms", utc=True)
    _write(
        _funding(times, np.full(len(t), 1e-4)), tmp_path / "ft" / "futures" / "WIF_USDT_USDT-1h-funding_rate.feather"
    )
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "ft", cat)
    assert not report.warnings  # no "settlement(s) missing"
    h = cat.read(PartitionKey("binance", Kind.FUNDING, "WIFUSDT")).to_pandas()["interval_hours"]
    assert h[h.ne(h.shift())].tolist() == expected_runs
    assert h.iloc[1:].tolist() == [float(x) for x in hours]
    assert not check_catalog(cat)  # data check sees no spacing problem either


def test_a_missing_settlement_is_still_reported(tmp_path: Path) -> None:
    hours, notes = derive_interval_hours(np.array([0, 1, 2, 4, 5, 6], dtype=np.int64) * H)
    assert hours.tolist() == [1.0] * 6 and notes == [
        "1 settlement(s) missing before 1970-01-01 04:00:00 UTC (gap 2 h, interval 1 h)"
    ]


# --------------------------------------------------------------------------- real data
def _venue_dir(venue: str) -> Path:
    d = SHARED / venue
    if not d.is_dir():
        pytest.skip(f"real data not found at {d} (set CARRY_SHARED_DATA to its folder)")
    return d


def _data_files(d: Path) -> list[Path]:
    return [p for p in d.rglob("*") if p.is_file() and parse_filename(p) is not None]


#: (venue, data files, series, warnings): what each venue's full ingest must give.
REAL = {
    "binance": (156, 146, 3),  # three 166-day holes in -8h- funding files
    "bybit": (15, 15, 0),
    "hyperliquid": (123, 123, 156),  # 60 files with settlements minutes late, 96 missing settlements
    "okx": (69, 69, 0),
}


@pytest.fixture(scope="module")
def real_catalogs(tmp_path_factory: pytest.TempPathFactory):
    """``get(venue)``: (catalog, report, seconds) of the venue's full ingest, made on first use."""
    cache: dict[str, tuple[Catalog, IngestReport, float]] = {}

    def get(venue: str) -> tuple[Catalog, IngestReport, float]:
        if venue not in cache:
            d = _venue_dir(venue)
            cat = Catalog(tmp_path_factory.mktemp(venue) / "catalog")
            t = time.perf_counter()
            report = ingest_freqtrade(d, cat, venue=venue)
            cache[venue] = (cat, report, time.perf_counter() - t)
        return cache[venue]

    return get


@pytest.mark.shared_data
@pytest.mark.parametrize("venue", sorted(REAL))
def test_real_venue_ingests_every_file(venue: str, real_catalogs) -> None:
    d = _venue_dir(venue)
    cat, report, _ = real_catalogs(venue)
    n_files, n_series, n_warnings = REAL[venue]
    files = _data_files(d)
    assert len(files) == n_files == report.files_read
    assert not _skipped(report) and not report.conflicts
    assert len({str(k) for k in cat.keys()}) == n_series
    keys = {(k.kind, k.symbol, k.timeframe) for k in cat.keys()}
    for p in files:
        f = parse_filename(p)
        assert (f.kind, f.symbol, f.timeframe) in keys, p
    assert len(report.warnings) == n_warnings, report.warnings[:5]
    assert not [p for p in check_catalog(cat) if p.severity == "error"]


@pytest.mark.shared_data
def test_real_okx_spot_subfolder(real_catalogs) -> None:
    d = _venue_dir("okx")
    cat, _, _ = real_catalogs("okx")
    spots = {k.symbol for k in cat.keys() if k.kind is Kind.SPOT}
    assert len(spots) == len(list((d / "spot").glob("*.feather"))) == 36
    assert {"BTCUSDT", "PEPEUSDT", "SHIBUSDT"} <= spots


@pytest.mark.shared_data
def test_real_bybit_wif_switches_8h_to_4h(real_catalogs) -> None:
    _venue_dir("bybit")
    cat, report, _ = real_catalogs("bybit")
    fund = cat.read(PartitionKey("bybit", Kind.FUNDING, "WIFUSDT")).to_pandas()
    h = fund["interval_hours"]
    assert h[h.ne(h.shift())].tolist() == [8.0, 4.0]
    assert fund.loc[h.ne(h.shift()), "time"].dt.strftime("%Y-%m-%d %H:%M").tolist()[1:] == ["2025-01-15 12:00"]
    assert not [w for w in report.warnings if "WIF" in w]


@pytest.mark.shared_data
def test_real_hyperliquid_hourly_funding_and_thousands(real_catalogs) -> None:
    _venue_dir("hyperliquid")
    cat, report, _ = real_catalogs("hyperliquid")
    fund = cat.read(PartitionKey("hyperliquid", Kind.FUNDING, "BTCUSDC")).to_pandas()
    assert (fund["time"].dt.minute == 0).all() and (fund["time"].dt.second == 0).all()
    hourly = fund[fund["time"] >= "2023-06-08 01:00"]
    assert (hourly["interval_hours"] == 1.0).all() and len(hourly) > 18_000
    assert (fund.loc[fund["time"] < "2023-06-08 01:00", "interval_hours"] == 8.0).all()
    assert cat.has(PartitionKey("hyperliquid", Kind.PERP, "1000PEPEUSDC", "1h"))
    assert cat.has(PartitionKey("hyperliquid", Kind.FUNDING, "1000SHIBUSDC"))
    assert cat.has(PartitionKey("hyperliquid", Kind.SPOT, "UBTCUSDC", "1h"))
    late = [w for w in report.warnings if "floored to the hour" in w]
    assert len(late) == 60 and all("_USDC_USDC-1h-funding_rate.feather" in w for w in late)
    missing = [w for w in report.warnings if "settlement(s) missing" in w]
    assert len(missing) == 96 and all("(gap 2 h, interval 1 h)" in w for w in missing)


@pytest.mark.shared_data
def test_real_hyperliquid_kpepe_is_1000_pepe(real_catalogs) -> None:
    """kPEPE (stored 1000PEPEUSDC) prices 1,000 PEPE: against OKX's PEPE spot over their common hours."""
    _venue_dir("okx")
    hl, _, _ = real_catalogs("hyperliquid")
    okx, _, _ = real_catalogs("okx")
    perp = hl.read(PartitionKey("hyperliquid", Kind.PERP, "1000PEPEUSDC", "1h")).to_pandas().set_index("time")
    assert spot_symbol("1000PEPEUSDC") == "PEPEUSDC"  # no PEPEUSDC spot here: OKX quotes PEPE in USDT
    spot = okx.read(PartitionKey("okx", Kind.SPOT, "PEPEUSDT", "1h")).to_pandas().set_index("time")
    both = perp["close"].to_frame("perp").join(spot["close"].to_frame("spot"), how="inner")
    assert len(both) > 5000
    ratio = (both["perp"] / (contract_multiplier("1000PEPEUSDC") * both["spot"])).median()
    assert abs(ratio - 1) < 0.01


@pytest.mark.shared_data
@pytest.mark.parametrize("venue", sorted(REAL))
def test_real_venue_fast_symbol_subset(venue: str, tmp_path: Path) -> None:
    d = _venue_dir(venue)
    symbols = {"hyperliquid": ["BTCUSDC", "kPEPE/USDC:USDC"], "okx": ["BTCUSDT", "PEPEUSDT"]}.get(
        venue, ["BTCUSDT", "ETHUSDT"]
    )
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(d, cat, venue=venue, symbols=symbols)
    assert not _skipped(report) and not [w for w in report.warnings if "no files for symbol" in w]
    wanted = {canonical_symbol(s) for s in symbols}
    assert {spot_symbol(k.symbol) for k in cat.keys()} | {k.symbol for k in cat.keys()} >= wanted

"""Ingestion of freqtrade data directories: generated directories and the real shared data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from data.catalog import Catalog, PartitionKey
from data.errors import DataError
from data.ingest.freqtrade import derive_interval_hours, ingest_freqtrade, parse_filename
from data.schema import Kind
from tests.conftest import SHARED_DATA as SHARED

H = 3_600_000


# --------------------------------------------------------------------------- helpers
def _bars(start: str, n: int, freq: str = "1h", price: float = 100.0) -> pd.DataFrame:
    dates = pd.date_range(start, periods=n, freq=freq, tz="UTC")
    o = price * (1 + 0.001 * np.arange(n))
    return pd.DataFrame(
        {"date": dates, "open": o, "high": o * 1.02, "low": o * 0.99, "close": o * 1.01, "volume": 10.0 + np.arange(n)}
    )


def _funding(times: list[str] | pd.DatetimeIndex, rates: list[float] | np.ndarray) -> pd.DataFrame:
    dates = pd.DatetimeIndex(pd.to_datetime(times, utc=True))
    z = np.zeros(len(dates))
    return pd.DataFrame({"date": dates, "open": np.asarray(rates, float), "high": z, "low": z, "close": z, "volume": z})


def _write(df: pd.DataFrame, path: Path, unit: str = "ns") -> Path:
    """Write a frame the way freqtrade does, in the format given by the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".json":
        ms = df["date"].astype("datetime64[ns, UTC]").astype("int64") // 1_000_000
        rows = [[int(t), *map(float, r)] for t, r in zip(ms, df[["open", "high", "low", "close", "volume"]].to_numpy())]
        path.write_text(json.dumps(rows))
        return path
    table = pa.Table.from_pandas(df, preserve_index=False)
    i = table.column_names.index("date")
    table = table.set_column(i, "date", table.column("date").cast(pa.timestamp(unit, tz="UTC")))
    if path.suffix == ".feather":
        feather.write_feather(table, path)
    else:
        pq.write_table(table, path)
    return path


def _read(cat: Catalog, kind: str, symbol: str, tf: str | None = None) -> pd.DataFrame:
    return cat.read(PartitionKey("binance", Kind(kind), symbol, tf)).to_pandas()


@pytest.fixture()
def ft_dir(tmp_path: Path) -> Path:
    """A small freqtrade directory: spot at the top, futures in futures/, mixed ms/ns."""
    d = tmp_path / "binance"
    _write(_bars("2024-01-01", 48), d / "BTC_USDT-1h.feather", unit="ns")
    _write(_bars("2024-01-01", 48, price=101.0), d / "futures" / "BTC_USDT_USDT-1h-futures.feather", unit="ms")
    _write(_bars("2024-01-01", 48, price=100.5), d / "futures" / "BTC_USDT_USDT-1h-mark.feather", unit="ns")
    times = pd.date_range("2024-01-01", periods=6, freq="8h", tz="UTC") + pd.to_timedelta(
        [17, 7, 0, 1, 2, 999], unit="ms"
    )
    _write(
        _funding(times, [1e-4, 2e-4, -1e-4, 3e-4, 0.0, 5e-5]), d / "futures" / "BTC_USDT_USDT-8h-funding_rate.feather"
    )
    return d


# --------------------------------------------------------------------------- names
@pytest.mark.parametrize(
    ("name", "symbol", "kind", "label"),
    [
        ("BTC_USDT-1h.feather", "BTCUSDT", Kind.SPOT, "1h"),
        ("BTC_USDT_USDT-1h-futures.feather", "BTCUSDT", Kind.PERP, "1h"),
        ("BTC_USDT_USDT-8h-mark.json", "BTCUSDT", Kind.MARK, "8h"),
        ("1000PEPE_USDT_USDT-1h-funding_rate.parquet", "1000PEPEUSDT", Kind.FUNDING, "1h"),
        ("ETH_USDT_USDT-5m-futures.json.gz", "ETHUSDT", Kind.PERP, "5m"),
        ("ETH_USDT_USDT-1h-premiumIndex.feather", "ETHUSDT", Kind.PREMIUM, "1h"),
    ],
)
def test_parse_filename(name: str, symbol: str, kind: Kind, label: str) -> None:
    f = parse_filename(name)
    assert f is not None and (f.symbol, f.kind, f.label) == (symbol, kind, label)
    assert f.timeframe == (None if kind is Kind.FUNDING else label)


@pytest.mark.parametrize(
    "name", ["README.md", "binance_leverage_tiers.json", "BTC-1h.feather", "BTC_USDT-1h-weird.feather"]
)
def test_parse_filename_rejects_other_files(name: str) -> None:
    assert parse_filename(name) is None


# --------------------------------------------------------------------------- generated directories
def test_ingest_layout_kinds_and_units(ft_dir: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(ft_dir, cat)
    assert report.files_read == 4 and not report.conflicts
    keys = {str(k) for k in cat.keys()}
    assert keys == {
        "binance/spot/1h/BTCUSDT",
        "binance/perp/1h/BTCUSDT",
        "binance/mark/1h/BTCUSDT",
        "binance/funding/BTCUSDT",
    }
    spot, perp = _read(cat, "spot", "BTCUSDT", "1h"), _read(cat, "perp", "BTCUSDT", "1h")
    expected = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
    # ns (spot) and ms (perp) source timestamps land on the same UTC ms times
    assert (spot["time"].to_numpy() == expected.to_numpy()).all()
    assert (perp["time"].to_numpy() == expected.to_numpy()).all()
    assert spot["volume"].tolist() == (10.0 + np.arange(48)).tolist()  # base units, untouched
    assert spot["quote_volume"].isna().all() and spot["trades"].isna().all()
    assert "volume" not in _read(cat, "mark", "BTCUSDT", "1h").columns
    fund = _read(cat, "funding", "BTCUSDT")
    # millisecond jitter floored to the minute
    assert (fund["time"] == pd.date_range("2024-01-01", periods=6, freq="8h", tz="UTC")).all()
    assert fund["rate"].tolist() == [1e-4, 2e-4, -1e-4, 3e-4, 0.0, 5e-5]  # rate from `open`
    assert fund["interval_hours"].tolist() == [8.0] * 6
    assert fund["mark_price"].isna().all()


def test_ingest_is_idempotent(ft_dir: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    first = ingest_freqtrade(ft_dir, cat)
    again = ingest_freqtrade(ft_dir, cat)
    assert first.rows_added == 48 * 3 + 6
    assert again.rows_added == 0 and sum(w.rows_unchanged for w in again.writes) == first.rows_added
    assert len(_read(cat, "spot", "BTCUSDT", "1h")) == 48


@pytest.mark.parametrize(
    ("ext", "unit"), [(".json", "ms"), (".parquet", "ms"), (".parquet", "ns"), (".feather", "ms"), (".feather", "us")]
)
def test_formats_give_identical_catalogs(tmp_path: Path, ext: str, unit: str) -> None:
    df = _bars("2023-12-31 20:00", 10)
    ref = Catalog(tmp_path / "ref")
    _write(df, tmp_path / "a" / "ETH_USDT-1h.feather", unit="ns")
    ingest_freqtrade(tmp_path / "a", ref)
    cat = Catalog(tmp_path / "cat")
    _write(df, tmp_path / "b" / f"ETH_USDT-1h{ext}", unit=unit)
    ingest_freqtrade(tmp_path / "b", cat)
    key = PartitionKey("binance", Kind.SPOT, "ETHUSDT", "1h")
    assert cat.read(key).equals(ref.read(key))
    assert [p.name for p in cat.files(key)] == ["year=2023.parquet", "year=2024.parquet"]


def test_directory_holding_futures_files_directly(tmp_path: Path) -> None:
    d = tmp_path / "testdata"
    _write(_bars("2024-01-01", 24, freq="5min"), d / "XRP_USDT_USDT-5m-futures.feather")
    _write(_bars("2024-01-01", 3, freq="8h"), d / "XRP_USDT_USDT-8h-mark.feather")
    _write(
        _funding(["2024-01-01 00:00:00.017", "2024-01-01 08:00:00.003"], [1e-4, 1e-4]),
        d / "XRP_USDT_USDT-8h-funding_rate.feather",
    )
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(d, cat)
    assert {str(k) for k in cat.keys()} == {
        "binance/perp/5m/XRPUSDT",
        "binance/mark/8h/XRPUSDT",
        "binance/funding/XRPUSDT",
    }


def test_1000pepe_perp_keeps_exchange_symbol_and_symbol_filter(tmp_path: Path) -> None:
    d = tmp_path / "binance"
    _write(_bars("2024-01-01", 5, price=0.01), d / "PEPE_USDT-1h.feather")
    _write(_bars("2024-01-01", 5, price=10.0), d / "futures" / "1000PEPE_USDT_USDT-1h-futures.feather")
    _write(_bars("2024-01-01", 5), d / "BTC_USDT-1h.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(d, cat, symbols=["PEPEUSDT"])
    assert {str(k) for k in cat.keys()} == {"binance/spot/1h/PEPEUSDT", "binance/perp/1h/1000PEPEUSDT"}
    assert not report.warnings
    report = ingest_freqtrade(d, Catalog(tmp_path / "c2"), symbols=["1000PEPEUSDT", "DOGE/USDT"])
    assert any("DOGEUSDT" in w for w in report.warnings)


def test_interval_changes_and_missing_settlement(tmp_path: Path) -> None:
    t0 = pd.Timestamp("2024-03-01", tz="UTC")
    offsets_h = [0, 8, 16, 24, 40, 48, 52, 56, 60, 61, 62, 63, 64]  # 8h, missing one at 32h, -> 4h -> 1h
    times = [t0 + pd.Timedelta(hours=h) for h in offsets_h]
    d = tmp_path / "ft" / "futures"
    _write(_funding(times, np.full(len(times), 1e-4)), d / "XTZ_USDT_USDT-1h-funding_rate.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "ft", cat)
    fund = _read(cat, "funding", "XTZUSDT")
    assert fund["interval_hours"].tolist() == [8, 8, 8, 8, 8, 8, 4, 4, 4, 1, 1, 1, 1]
    assert any("1 settlement(s) missing" in w and "2024-03-02 16:00" in w for w in report.warnings)


@pytest.mark.parametrize(
    ("gaps_h", "expected"),
    [
        ([8, 8, 8], [8, 8, 8, 8]),
        ([8, 16, 8], [8, 8, 8, 8]),  # 16h is not an interval: one missing settlement
        ([16, 8, 8], [8, 8, 8, 8]),  # ... also right after the first row
        ([4, 8, 4], [4, 4, 4, 4]),  # 8h between 4h gaps: a missing settlement
        ([4, 8, 8], [4, 4, 8, 8]),  # 4h -> 8h is a real change
        ([8, 1, 1, 4, 4], [8, 8, 1, 1, 4, 4]),  # XTZ-like 8h -> 1h -> 4h
        ([8, 100, 8], [8, 8, 8, 8]),  # hole in the data keeps the interval
        ([8, 5, 8], [8, 8, 5, 8]),  # irregular gap kept as measured (warned)
    ],
)
def test_derive_interval_hours(gaps_h: list[float], expected: list[float]) -> None:
    t = np.concatenate([[0], np.cumsum(gaps_h)]).astype(np.int64) * H + 1_700_000_000_000 // H * H
    hours, notes = derive_interval_hours(t)
    assert hours.tolist() == expected
    irregular = any(g not in (1, 2, 4, 8) for g in gaps_h)
    assert bool(notes) == (expected[1:] != list(gaps_h) or irregular)


def test_derive_interval_hours_single_and_empty() -> None:
    assert np.isnan(derive_interval_hours(np.array([0], dtype=np.int64))[0]).all()
    assert derive_interval_hours(np.array([], dtype=np.int64))[0].size == 0


def test_overlapping_8h_and_1h_funding_files_merge_and_report_conflicts(tmp_path: Path) -> None:
    d = tmp_path / "ft" / "futures"
    old = pd.date_range("2024-01-01", periods=9, freq="8h", tz="UTC")  # 8h-labelled, older download
    new = pd.date_range("2024-01-02", periods=9, freq="8h", tz="UTC")  # 1h-labelled, ends later
    old_rates = np.full(9, 1e-4)
    new_rates = np.full(9, 1e-4)
    new_rates[2] = 2e-4  # 2024-01-02 16:00: both files hold it, with different rates
    _write(_funding(old + pd.Timedelta(milliseconds=3), old_rates), d / "BTC_USDT_USDT-8h-funding_rate.feather")
    _write(_funding(new, new_rates), d / "BTC_USDT_USDT-1h-funding_rate.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "ft", cat)
    fund = _read(cat, "funding", "BTCUSDT")
    assert len(fund) == 12  # 9 + 9 - 6 shared times, each kept once
    assert fund["time"].is_monotonic_increasing and fund["time"].is_unique
    assert fund.loc[fund["time"] == pd.Timestamp("2024-01-02 16:00", tz="UTC"), "rate"].item() == 2e-4
    assert len(report.conflicts) == 1
    msg = report.conflicts[0]
    assert "2024-01-02 16:00" in msg and "BTC_USDT_USDT-1h-funding_rate.feather" in msg
    assert "BTC_USDT_USDT-8h-funding_rate.feather" in msg and "0.0002" in msg and "0.0001" in msg
    assert (fund["interval_hours"] == 8).all()


def test_zero_volume_constant_bars_are_kept(tmp_path: Path) -> None:
    df = _bars("2019-09-08 17:00", 4, price=10000.0)
    df[["open", "high", "low", "close"]] = 10000.0
    df["volume"] = [0.002, 0.0, 0.0, 0.0]
    _write(df, tmp_path / "ft" / "futures" / "BTC_USDT_USDT-1h-futures.feather", unit="ms")
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(tmp_path / "ft", cat)
    assert len(_read(cat, "perp", "BTCUSDT", "1h")) == 4


def test_unsorted_and_repeated_rows_in_a_file(tmp_path: Path) -> None:
    df = _bars("2024-01-01", 5)
    df = pd.concat([df.iloc[[3, 0, 1, 2, 4]], df.iloc[[1]]])  # out of order, one exact repeat
    _write(df, tmp_path / "ft" / "ADA_USDT-1h.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(tmp_path / "ft", cat)
    assert len(_read(cat, "spot", "ADAUSDT", "1h")) == 5
    assert any("not sorted" in w for w in report.warnings) and any("repeated" in w for w in report.warnings)


def test_unknown_files_are_skipped_with_a_warning(ft_dir: Path, tmp_path: Path) -> None:
    (ft_dir / "notes.feather").write_bytes(b"x")
    (ft_dir / "README.md").write_text("hi")
    report = ingest_freqtrade(ft_dir, Catalog(tmp_path / "cat"))
    assert any("notes.feather" in w and "skipped" in w for w in report.warnings)
    # issue 13: nothing is skipped without a word, a README neither (one line, with the reason)
    assert [w for w in report.warnings if "README" in w] == [
        f"{ft_dir / 'README.md'}: not a freqtrade data file (expected .feather, .parquet, .json.gz, .json); skipped"
    ]


# --------------------------------------------------------------------------- bad input
def test_missing_directory_and_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        ingest_freqtrade(tmp_path / "nope", Catalog(tmp_path / "cat"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no freqtrade data files"):
        ingest_freqtrade(tmp_path / "empty", Catalog(tmp_path / "cat"))


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    path = _write(_bars("2024-01-01", 3).drop(columns=["close"]), tmp_path / "ft" / "BTC_USDT-1h.feather")
    with pytest.raises(DataError, match=r"BTC_USDT-1h\.feather.*'close'"):
        ingest_freqtrade(path.parent, Catalog(tmp_path / "cat"))


def test_truncated_feather_names_file(tmp_path: Path) -> None:
    path = _write(_bars("2024-01-01", 50), tmp_path / "ft" / "BTC_USDT-1h.feather")
    path.write_bytes(path.read_bytes()[:300])
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError, match=r"BTC_USDT-1h\.feather.*truncated"):
        ingest_freqtrade(path.parent, cat)
    assert not list(cat.keys())


def test_tz_naive_dates_are_rejected(tmp_path: Path) -> None:
    df = _bars("2024-01-01", 3)
    df["date"] = df["date"].dt.tz_localize(None)
    path = tmp_path / "ft" / "BTC_USDT-1h.feather"
    path.parent.mkdir(parents=True)
    feather.write_feather(pa.Table.from_pandas(df, preserve_index=False), path)
    with pytest.raises(DataError, match=r"BTC_USDT-1h\.feather.*timezone-naive"):
        ingest_freqtrade(path.parent, Catalog(tmp_path / "cat"))


def test_percent_funding_rates_are_rejected_naming_row(tmp_path: Path) -> None:
    times = pd.date_range("2024-01-01", periods=3, freq="8h", tz="UTC")
    path = _write(
        _funding(times, [0.01, 1.0, 0.01]), tmp_path / "ft" / "futures" / "BTC_USDT_USDT-8h-funding_rate.feather"
    )
    with pytest.raises(DataError, match=r"funding_rate\.feather.*'rate', row 1 \(2024-01-01 08:00.*percent"):
        ingest_freqtrade(path.parent.parent, Catalog(tmp_path / "cat"))


def test_negative_price_names_file_column_row(tmp_path: Path) -> None:
    df = _bars("2024-01-01", 4)
    df.loc[2, "low"] = -1.0
    path = _write(df, tmp_path / "ft" / "BTC_USDT-1h.feather")
    with pytest.raises(DataError, match=r"BTC_USDT-1h\.feather: column 'low', row 2 \(2024-01-01 02:00"):
        ingest_freqtrade(path.parent, Catalog(tmp_path / "cat"))


# --------------------------------------------------------------------------- real shared data
needs_shared = pytest.mark.skipif(not (SHARED / "binance").is_dir(), reason=f"shared data not found at {SHARED}")


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> tuple[Catalog, object]:
    if not (SHARED / "binance").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    cat = Catalog(tmp_path_factory.mktemp("real") / "catalog")
    return cat, ingest_freqtrade(SHARED / "binance", cat)


@needs_shared
@pytest.mark.shared_data
def test_real_every_file_and_symbol_ingested(real) -> None:
    cat, report = real
    files = [p for p in (SHARED / "binance").rglob("*.feather")]
    assert report.files_read == len(files)
    keys = {(k.kind, k.symbol, k.timeframe) for k in cat.keys()}
    for p in files:
        f = parse_filename(p)
        assert (f.kind, f.symbol, f.timeframe) in keys, p.name
    assert not report.conflicts  # the overlapping 8h/1h files agree everywhere
    # the only warnings: the 166-day hole in three -8h- funding files
    assert len(report.warnings) == 3 and all("missing data" in w for w in report.warnings)


@needs_shared
@pytest.mark.shared_data
def test_real_btc_funding_figures(real) -> None:
    cat, _ = real
    fund = cat.read(PartitionKey("binance", Kind.FUNDING, "BTCUSDT"))
    rate = fund.column("rate").to_numpy()
    assert len(rate) == 7323
    assert abs(rate.sum() - 0.79395571) < 1e-9
    assert set(fund.column("interval_hours").to_numpy()) == {8.0}


@needs_shared
@pytest.mark.shared_data
def test_real_xtz_interval_changes(real) -> None:
    cat, _ = real
    fund = cat.read(PartitionKey("binance", Kind.FUNDING, "XTZUSDT")).to_pandas()
    h = fund["interval_hours"]
    runs = h[h.ne(h.shift())].tolist()
    # The data says 8h -> 1h (2025-07-20 09:00, after hitting the -0.75% cap) -> 4h (2025-07-22 16:00).
    assert runs == [8.0, 1.0, 4.0]
    assert fund.loc[h.ne(h.shift()), "time"].dt.strftime("%Y-%m-%d %H:%M").tolist()[1:] == [
        "2025-07-20 09:00",
        "2025-07-22 16:00",
    ]
    assert abs(fund["rate"].sum() - (-0.12931352)) < 1e-6


@needs_shared
@pytest.mark.shared_data
def test_real_merged_8h_and_1h_funding_and_pepe(real) -> None:
    cat, _ = real
    pepe = cat.read(PartitionKey("binance", Kind.FUNDING, "1000PEPEUSDT")).to_pandas()
    assert len(pepe) == 1379 + 119 - 89  # union of the -8h- and -1h- files
    assert pepe["time"].is_unique and (pepe["time"].dt.second == 0).all()
    assert cat.has(PartitionKey("binance", Kind.MARK, "1000PEPEUSDT", "8h"))
    assert cat.has(PartitionKey("binance", Kind.PERP, "1000PEPEUSDT", "1h"))


@needs_shared
@pytest.mark.shared_data
def test_real_freqtrade_testdata(tmp_path: Path) -> None:
    d = SHARED / "freqtrade-testdata"
    if not d.is_dir():
        pytest.skip(f"{d} not found")
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(d, cat)
    assert report.files_read == 5 and not report.conflicts
    fund = _read(cat, "funding", "XRPUSDT")
    assert len(fund) == 91 and (fund["time"].dt.second == 0).all() and (fund["time"].dt.microsecond == 0).all()
    assert cat.has(PartitionKey("binance", Kind.PERP, "XRPUSDT", "5m"))

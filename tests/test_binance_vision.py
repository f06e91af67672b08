"""Ingestion of Binance bulk files (data.binance.vision): end to end, and every bad input."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from data.catalog import Catalog, PartitionKey
from data.errors import ChecksumError, DataError
from data.ingest.binance_vision import ingest_binance_vision, parse_file_name
from data.schema import TIME_TYPE, Kind, field_units
from tests.binance_vision_fixtures import (
    FUNDING_HEADER,
    KLINE_HEADER,
    build_site,
    funding_rows,
    kline_rows,
    month_bounds_ms,
    site_path,
    write_month,
    write_zip,
    zip_bytes,
)

MONTHS = ["2024-11", "2024-12", "2025-01"]
HOURS = (30 + 31 + 31) * 24


def key(kind: str, symbol: str = "BTCUSDT", tf: str | None = "1h") -> PartitionKey:
    return PartitionKey("binance", Kind(kind), symbol, None if kind == "funding" else tf)


def ms(t: str) -> int:
    return int(np.datetime64(t, "ms").astype(np.int64))


def times_ms(table: pa.Table) -> np.ndarray:
    return table.column("time").cast(pa.int64()).to_numpy()


@pytest.fixture(scope="module")
def _pristine_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bv") / "site"
    build_site(root, ["BTCUSDT", "ETHUSDT"], MONTHS)
    return root


@pytest.fixture()
def site(_pristine_site: Path, tmp_path: Path) -> Path:
    """Two symbols x six kinds x three months in the site's layout (a private copy per test)."""
    return Path(shutil.copytree(_pristine_site, tmp_path / "site"))


# ----------------------------------------------------------------------------- happy path
def test_ingest_end_to_end(site: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    report = ingest_binance_vision([site], cat)
    assert report.files_read == 2 * 6 * 3
    assert {str(w.key) for w in report.writes} == {
        f"binance/{k}{'' if k == 'funding' else '/1h'}/{s}"
        for k in ("spot", "perp", "mark", "index", "premium", "funding")
        for s in ("BTCUSDT", "ETHUSDT")
    }
    assert not report.conflicts
    for kind in ("spot", "perp", "mark", "index", "premium"):
        t = cat.read(key(kind))
        assert t.num_rows == HOURS, kind
        assert t.schema.field("time").type == TIME_TYPE
        tm = times_ms(t)
        assert tm[0] == ms("2024-11-01") and tm[-1] == ms("2025-01-31T23:00")
        assert np.all(np.diff(tm) == 3_600_000)  # ms and us files land on the same hourly grid
    fund = cat.read(key("funding"))
    assert fund.num_rows == 92 * 3
    tf = times_ms(fund)
    assert np.all(tf % 60_000 == 0), "jitter (17 ms) floored to the minute"
    assert tf[0] == ms("2024-11-01T00:00") and tf[1] == ms("2024-11-01T08:00")
    assert fund.column("interval_hours").to_pylist() == [8.0] * fund.num_rows
    assert fund.column("mark_price").null_count == fund.num_rows
    assert field_units("funding")["rate"] == "fraction/interval"
    assert 0 < float(np.mean(fund.column("rate").to_numpy())) < 0.001


def test_values_and_units_match_the_csv(site: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    ingest_binance_vision([site], cat)
    spot = cat.read(key("spot"))
    # 2025-01 spot file is in microseconds without header; check its first row verbatim.
    line = kline_rows("2025-01", "spot", unit="us", seed=0)[0].split(",")
    assert int(line[0]) == ms("2025-01-01") * 1000
    row = spot.filter(pa.array(times_ms(spot) == ms("2025-01-01"))).to_pylist()[0]
    assert row["open"] == float(line[1]) and row["high"] == float(line[2])
    assert row["low"] == float(line[3]) and row["close"] == float(line[4])
    assert row["volume"] == float(line[5]) and row["quote_volume"] == float(line[7])
    assert row["trades"] == int(line[8])
    prem = cat.read(key("premium"))
    assert np.abs(prem.column("close").to_numpy()).max() < 0.01  # fractions, may be negative
    assert set(cat.read(key("mark")).column_names) == {"time", "open", "high", "low", "close"}


def test_reingest_is_idempotent(site: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    first = ingest_binance_vision([site], cat)
    assert first.rows_added == 2 * (5 * HOURS + 92 * 3)
    again = ingest_binance_vision([site], cat)
    assert again.rows_added == 0
    assert sum(w.rows_unchanged for w in again.writes) == first.rows_added
    assert cat.read(key("perp")).num_rows == HOURS
    assert "0 rows added" in again.summary()


def test_header_or_not_gives_the_same_table(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for root, header in ((a, True), (b, False)):
        write_month(root, "perp", "BTCUSDT", "2024-02", header=header)
        write_month(root, "funding", "BTCUSDT", "2024-02", header=header)
    ca, cb = Catalog(tmp_path / "ca"), Catalog(tmp_path / "cb")
    ingest_binance_vision([a], ca)
    ingest_binance_vision([b], cb)
    for k in (key("perp"), key("funding")):
        assert ca.read(k).equals(cb.read(k))
    assert ca.read(key("perp")).num_rows == 29 * 24


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_timestamp_units_detected(tmp_path: Path, unit: str) -> None:
    write_month(tmp_path / "site", "spot", "BTCUSDT", "2024-02", unit=unit)
    cat = Catalog(tmp_path / "cat")
    ingest_binance_vision([tmp_path / "site"], cat)
    tm = times_ms(cat.read(key("spot")))
    assert tm[0] == ms("2024-02-01") and len(tm) == 29 * 24


def test_files_and_directories_mixed_and_daily_overlap(tmp_path: Path) -> None:
    root = tmp_path / "site"
    monthly = write_month(root, "perp", "BTCUSDT", "2024-03")
    # A daily file repeating 2024-03-15 (same values) under the daily layout.
    lines = [ln for ln in kline_rows("2024-03", "perp") if ms("2024-03-15") <= int(ln.split(",")[0]) < ms("2024-03-16")]
    daily = write_zip(root / "data/futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03-15.zip", lines, KLINE_HEADER)
    cat = Catalog(tmp_path / "cat")
    report = ingest_binance_vision([monthly, root / "data/futures/um/daily"], cat)
    assert report.files_read == 2
    assert not report.conflicts
    assert cat.read(key("perp")).num_rows == 31 * 24
    assert parse_file_name(daily).period == "2024-03-15"


def test_funding_interval_derived_when_absent(tmp_path: Path) -> None:
    root = tmp_path / "site"
    # 8h settlements in April, 4h in May; interval column empty; and a 2-column headerless file.
    write_zip(
        site_path(root, "funding", "XTZUSDT", "2024-04"),
        funding_rows("2024-04", 8, with_interval=False),
        FUNDING_HEADER,
    )
    two_col = [f"{a},{c}" for a, _, c in (ln.split(",") for ln in funding_rows("2024-05", 4))]
    write_zip(site_path(root, "funding", "XTZUSDT", "2024-05"), two_col)
    cat = Catalog(tmp_path / "cat")
    ingest_binance_vision([root], cat)
    f = cat.read(key("funding", "XTZUSDT"))
    hours = f.column("interval_hours").to_numpy()
    t = times_ms(f)
    assert len(f) == 30 * 3 + 31 * 6
    assert np.all(hours[t < ms("2024-05-01")] == 8.0)
    # The first 4h settlement (2024-05-01 04:00) pays for 4h; 2024-05-01 00:00 closes an 8h interval.
    assert hours[t == ms("2024-05-01T00:00")][0] == 8.0
    assert np.all(hours[t > ms("2024-05-01T00:00")] == 4.0)


def test_flat_files_need_market(tmp_path: Path) -> None:
    flat = tmp_path / "flat"
    p = write_zip(flat / "BTCUSDT-1h-2024-01.zip", kline_rows("2024-01", "spot"))
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError, match=r"BTCUSDT-1h-2024-01\.zip.*spot or perpetual.*market="):
        ingest_binance_vision([flat], cat)
    ingest_binance_vision([p], cat, market="spot")
    assert cat.read(key("spot")).num_rows == 31 * 24
    # A flat fundingRate file needs no hint.
    write_zip(flat / "BTCUSDT-fundingRate-2024-01.zip", funding_rows("2024-01"), FUNDING_HEADER)
    ingest_binance_vision([flat / "BTCUSDT-fundingRate-2024-01.zip"], cat)
    assert cat.read(key("funding")).num_rows == 93


def test_flat_mark_file_is_not_taken_for_perp(tmp_path: Path) -> None:
    p = write_zip(tmp_path / "ETHUSDT-1h-2024-01.zip", kline_rows("2024-01", "mark"), KLINE_HEADER)
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError, match=r"zero volume.*kind='mark'"):
        ingest_binance_vision([p], cat, market="um")
    assert not list(cat.keys())
    ingest_binance_vision([p], cat, kind="mark")
    assert cat.read(key("mark", "ETHUSDT")).num_rows == 31 * 24


def test_parse_file_name_layouts() -> None:
    f = parse_file_name("/x/spot/data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip")
    assert (f.kind, f.symbol, f.timeframe, f.period) == (Kind.SPOT, "BTCUSDT", "1h", "2024-01")
    f = parse_file_name("/x/data/futures/um/monthly/premiumIndexKlines/ETHUSDT/4h/ETHUSDT-4h-2024-01.zip")
    assert (f.kind, f.timeframe) == (Kind.PREMIUM, "4h")
    f = parse_file_name("d/data/futures/um/daily/klines/1000PEPEUSDT/1m/1000PEPEUSDT-1m-2024-01-02.zip")
    assert (f.kind, f.symbol, f.period) == (Kind.PERP, "1000PEPEUSDT", "2024-01-02")
    f = parse_file_name("XTZUSDT-fundingRate-2025-06.zip")
    assert (f.kind, f.timeframe) == (Kind.FUNDING, None)
    with pytest.raises(DataError, match="not a Binance bulk file name"):
        parse_file_name("BTCUSDT_1h.zip")
    with pytest.raises(DataError, match="disagree with the file name"):
        parse_file_name("data/futures/um/monthly/klines/ETHUSDT/1h/BTCUSDT-1h-2024-01.zip")
    with pytest.raises(DataError, match="not supported"):
        parse_file_name("data/futures/cm/monthly/klines/BTCUSD_PERP/1h/BTCUSD_PERP-1h-2024-01.zip")
    with pytest.raises(DataError, match="timeframe '1mo' is not supported"):
        parse_file_name("BTCUSDT-1mo-2024-01.zip", market="spot")


# ----------------------------------------------------------------------------- bad input
def _assert_nothing_written(cat: Catalog) -> None:
    assert not list(cat.keys())
    assert not list(cat.root.rglob("*.parquet")) if cat.root.exists() else True


def test_checksum_mismatch(site: Path, tmp_path: Path) -> None:
    bad = site_path(site, "mark", "ETHUSDT", "2024-12")
    bad.with_name(bad.name + ".CHECKSUM").write_text("0" * 64 + f"  {bad.name}\n")
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(ChecksumError, match=rf"{bad.name}: sha256 [0-9a-f]{{64}} does not match {bad.name}\.CHECKSUM"):
        ingest_binance_vision([site], cat)
    _assert_nothing_written(cat)  # every file is validated before anything is written
    report = ingest_binance_vision([site], cat, verify_checksum=False)
    assert report.files_read == 36


def test_missing_checksum_is_a_warning(tmp_path: Path) -> None:
    p = write_zip(
        site_path(tmp_path, "perp", "BTCUSDT", "2024-01"), kline_rows("2024-01"), KLINE_HEADER, checksum=False
    )
    report = ingest_binance_vision([p], Catalog(tmp_path / "cat"))
    assert any("no .CHECKSUM" in w for w in report.warnings)


def test_corrupt_zip(site: Path, tmp_path: Path) -> None:
    bad = site_path(site, "perp", "BTCUSDT", "2024-12")
    bad.write_bytes(bad.read_bytes()[:200])
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError, match=rf"{bad.name}: corrupt or unreadable zip"):
        ingest_binance_vision([site], cat, verify_checksum=False)
    _assert_nothing_written(cat)


def test_zip_without_csv_member(tmp_path: Path) -> None:
    p = site_path(tmp_path, "spot", "BTCUSDT", "2024-01")
    p.parent.mkdir(parents=True)
    p.write_bytes(zip_bytes("README.txt", "hello"))
    with pytest.raises(DataError, match=r"BTCUSDT-1h-2024-01\.zip: no CSV member.*README\.txt"):
        ingest_binance_vision([p], Catalog(tmp_path / "cat"))


def test_wrong_column_count(tmp_path: Path) -> None:
    lines = kline_rows("2024-01", "perp")
    lines[5] = ",".join(lines[5].split(",")[:11])
    p = write_zip(site_path(tmp_path, "perp", "BTCUSDT", "2024-01"), lines, KLINE_HEADER)
    with pytest.raises(DataError) as err:
        ingest_binance_vision([p], Catalog(tmp_path / "cat"))
    msg = str(err.value)
    assert f"{p}:BTCUSDT-1h-2024-01.csv" in msg
    assert "row 5 (line 7)" in msg and "expected 12 columns" in msg and "found 11" in msg


def test_non_numeric_value(tmp_path: Path) -> None:
    lines = kline_rows("2024-01", "spot")
    fields = lines[7].split(",")
    fields[4] = "abc"
    lines[7] = ",".join(fields)
    p = write_zip(site_path(tmp_path, "spot", "BTCUSDT", "2024-01"), lines)  # no header
    with pytest.raises(DataError) as err:
        ingest_binance_vision([p], Catalog(tmp_path / "cat"))
    msg = str(err.value)
    assert f"{p}:BTCUSDT-1h-2024-01.csv" in msg
    assert "column 'close', row 7 (line 8)" in msg and "'abc'" in msg


def test_unknown_timestamp_unit(tmp_path: Path) -> None:
    lines = [ln.split(",", 1) for ln in kline_rows("2024-01", "perp")]
    lines = [f"{int(t) * 10},{rest}" for t, rest in lines]  # 1.7e13: neither ms nor us
    p = write_zip(site_path(tmp_path, "perp", "BTCUSDT", "2024-01"), lines, KLINE_HEADER)
    with pytest.raises(
        DataError,
        match=r"BTCUSDT-1h-2024-01\.csv: column 'open_time', row 0 \(line 2\): "
        r"timestamp 17040672000000 is not an epoch timestamp",
    ):
        ingest_binance_vision([p], Catalog(tmp_path / "cat"))


def test_mixed_timestamp_units_in_one_file(tmp_path: Path) -> None:
    lines = kline_rows("2024-01", "spot")
    t, rest = lines[3].split(",", 1)
    lines[3] = f"{int(t) * 1000},{rest}"
    p = write_zip(site_path(tmp_path, "spot", "BTCUSDT", "2024-01"), lines)
    with pytest.raises(
        DataError, match=r"column 'open_time', row 3 \(line 4\).*unit \(us\) differs from row 0's \(ms\)"
    ):
        ingest_binance_vision([p], Catalog(tmp_path / "cat"))


def test_funding_rates_in_percent(tmp_path: Path) -> None:
    p = write_zip(
        site_path(tmp_path, "funding", "BTCUSDT", "2024-01"), funding_rows("2024-01", rate=1.5), FUNDING_HEADER
    )
    with pytest.raises(DataError) as err:
        ingest_binance_vision([p], Catalog(tmp_path / "cat"))
    msg = str(err.value)
    assert "BTCUSDT-fundingRate-2024-01.csv" in msg and "column 'rate', row 0" in msg and "percent" in msg


def test_unsorted_rows_and_bad_prices_named_by_conform(tmp_path: Path) -> None:
    lines = kline_rows("2024-01", "perp")
    lines[10], lines[11] = lines[11], lines[10]
    p = write_zip(site_path(tmp_path, "perp", "BTCUSDT", "2024-01"), lines, KLINE_HEADER)
    with pytest.raises(DataError, match=r"BTCUSDT-1h-2024-01\.csv: column 'time', row 11.*not sorted"):
        ingest_binance_vision([p], Catalog(tmp_path / "cat"))
    lines = kline_rows("2024-01", "index")
    f = lines[2].split(",")
    f[1] = "-1"
    lines[2] = ",".join(f)
    p = write_zip(site_path(tmp_path, "index", "BTCUSDT", "2024-01"), lines, KLINE_HEADER)
    with pytest.raises(DataError, match=r"column 'open', row 2 .*non-positive price"):
        ingest_binance_vision([p], Catalog(tmp_path / "cat2"))


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or directory"):
        ingest_binance_vision([tmp_path / "nope"], Catalog(tmp_path / "cat"))


def test_overlapping_files_that_disagree_are_reported(tmp_path: Path) -> None:
    root = tmp_path / "site"
    write_month(root, "perp", "BTCUSDT", "2024-03")
    lines = [ln for ln in kline_rows("2024-03", "perp") if ms("2024-03-15") <= int(ln.split(",")[0]) < ms("2024-03-16")]
    f = lines[0].split(",")
    f[5] = "123.0"  # volume differs
    lines[0] = ",".join(f)
    write_zip(root / "data/futures/um/daily/klines/BTCUSDT/1h/BTCUSDT-1h-2024-03-15.zip", lines, KLINE_HEADER)
    cat = Catalog(tmp_path / "cat")
    report = ingest_binance_vision([root], cat)
    assert len(report.conflicts) == 1 and "2024-03-15T00:00" in report.conflicts[0]
    t = cat.read(key("perp"))
    assert t.num_rows == 31 * 24
    assert t.column("volume")[14 * 24].as_py() != 123.0  # the monthly file wins


def test_corrupt_member_crc(tmp_path: Path) -> None:
    p = write_zip(
        site_path(tmp_path, "perp", "BTCUSDT", "2024-01"), kline_rows("2024-01"), KLINE_HEADER, checksum=False
    )
    data = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as zf:
        info = zf.infolist()[0]
    off = info.header_offset + 30 + len(info.filename) + 50
    data[off] ^= 0xFF
    p.write_bytes(bytes(data))
    with pytest.raises(DataError, match=rf"{p.name}: corrupt or unreadable zip"):
        ingest_binance_vision([p], Catalog(tmp_path / "cat"))


def test_month_bounds_helper() -> None:
    assert month_bounds_ms("2024-02") == (ms("2024-02-01"), ms("2024-03-01"))


def test_verbatim_repeated_row_is_dropped_with_warning(tmp_path: Path) -> None:
    lines = kline_rows("2024-01", "perp")
    lines.insert(4, lines[3])
    p = write_zip(site_path(tmp_path, "perp", "BTCUSDT", "2024-01"), lines, KLINE_HEADER)
    cat = Catalog(tmp_path / "cat")
    report = ingest_binance_vision([p], cat)
    assert cat.read(key("perp")).num_rows == 31 * 24
    assert any("repeated verbatim (first at row 4)" in w for w in report.warnings)
    f = lines[4].split(",")
    f[4] = str(float(f[4]) + 1)
    lines[4] = ",".join(f)
    p = write_zip(site_path(tmp_path / "b", "perp", "BTCUSDT", "2024-01"), lines, KLINE_HEADER)
    with pytest.raises(DataError, match=r"column 'time', row 4 .*duplicate time"):
        ingest_binance_vision([p], Catalog(tmp_path / "cat2"))


def test_empty_csv_is_a_warning_not_a_crash(tmp_path: Path) -> None:
    p = site_path(tmp_path, "perp", "BTCUSDT", "2024-01")
    p.parent.mkdir(parents=True)
    p.write_bytes(zip_bytes(p.name[:-4] + ".csv", ""))
    report = ingest_binance_vision([p], Catalog(tmp_path / "cat"))
    assert report.files_read == 1 and report.rows_added == 0
    assert any("no rows" in w for w in report.warnings)


def test_crlf_line_endings(tmp_path: Path) -> None:
    p = site_path(tmp_path, "funding", "BTCUSDT", "2024-01")
    p.parent.mkdir(parents=True)
    text = "\r\n".join([FUNDING_HEADER, *funding_rows("2024-01")]) + "\r\n"
    p.write_bytes(zip_bytes(p.name[:-4] + ".csv", text))
    cat = Catalog(tmp_path / "cat")
    ingest_binance_vision([p], cat)
    assert cat.read(key("funding")).num_rows == 93

"""The write gate (validate.conform) and the catalog's handling of bad input, crashes and re-writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import data.catalog as catalog_mod
from data.catalog import Catalog, PartitionKey
from data.errors import DataError
from data.schema import SCHEMA_VERSION, Kind
from data.validate import conform

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
SRC = "data/BTC_USDT-1h.feather"


def _bars(n: int = 5, t0: int = T0) -> dict:
    p = 100.0 + np.arange(n)
    return {
        "time": pa.array(t0 + np.arange(n) * H, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "open": p,
        "high": p + 2,
        "low": p - 1,
        "close": p + 1,
        "volume": np.ones(n),
    }


def _funding(rates) -> dict:
    n = len(rates)
    return {
        "time": pa.array(T0 + np.arange(n) * 8 * H, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "rate": np.asarray(rates, float),
        "interval_hours": np.full(n, 8.0),
    }


def _with(cols: dict, **changes) -> pa.Table:
    d = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in cols.items()}
    for k, fn in changes.items():
        d[k] = fn(d[k])
    return pa.table(d)


def _set(i: int, value):
    def f(a):
        a = np.array(a, dtype=float)
        a[i] = value
        return a

    return f


# --------------------------------------------------------------------------- conform
def test_conform_casts_to_schema_and_fills_nullable() -> None:
    cols = _bars()
    cols["time"] = cols["time"].cast(pa.timestamp("ns", tz="UTC"))
    cols["extra"] = np.zeros(5)
    out = conform(pa.table(cols), Kind.SPOT, SRC)
    assert out.schema.field("time").type == pa.timestamp("ms", tz="UTC")
    assert out.column("quote_volume").null_count == 5 and "extra" not in out.column_names
    assert out.schema.metadata[b"carry.schema_version"] == SCHEMA_VERSION.encode()
    assert out.schema.field("volume").metadata[b"unit"] == b"base"


def test_non_utc_timezone_is_converted_not_rejected() -> None:
    cols = _bars()
    cols["time"] = cols["time"].cast(pa.timestamp("ms", tz="Europe/Paris"))
    out = conform(pa.table(cols), Kind.SPOT, SRC)
    assert out.column("time").cast(pa.int64()).to_pylist()[0] == T0


@pytest.mark.parametrize(
    ("table", "kind", "pattern"),
    [
        (pa.table({k: v for k, v in _bars().items() if k != "close"}), Kind.SPOT, r"missing column 'close'"),
        (pa.table({k: v for k, v in _bars().items() if k != "time"}), Kind.SPOT, r"missing column 'time'"),
        (
            _with(_bars(), close=lambda a: np.array(["x"] * 5)),
            Kind.SPOT,
            r"column 'close' has type string, expected double",
        ),
        (
            _with(_bars(), time=lambda a: np.arange(5)),
            Kind.SPOT,
            r"column 'time' has type int64, expected a UTC timestamp",
        ),
        (_with(_bars(), time=lambda a: a.cast(pa.timestamp("ms"))), Kind.SPOT, r"column 'time' is timezone-naive"),
        (
            _with(
                _bars(),
                time=lambda a: pa.array(np.array(a.cast(pa.int64()))[[0, 2, 1, 3, 4]]).cast(
                    pa.timestamp("ms", tz="UTC")
                ),
            ),
            Kind.SPOT,
            r"column 'time', row 2 \(2024-01-01 01:00:00(\.000)? UTC\): time goes backwards",
        ),
        (
            _with(
                _bars(),
                time=lambda a: pa.array(np.array(a.cast(pa.int64()))[[0, 1, 1, 3, 4]]).cast(
                    pa.timestamp("ms", tz="UTC")
                ),
            ),
            Kind.SPOT,
            r"column 'time', row 2 \(2024-01-01 01:00:00(\.000)? UTC\): duplicate time",
        ),
        (
            _with(_bars(), open=_set(3, 0.0)),
            Kind.SPOT,
            r"column 'open', row 3 \(2024-01-01 03:00:00(\.000)? UTC\): non-positive price 0\.0",
        ),
        (_with(_bars(), low=_set(1, -5.0)), Kind.PERP, r"column 'low', row 1 .*non-positive price -5\.0"),
        (
            _with(_bars(), close=_set(4, np.nan)),
            Kind.SPOT,
            r"column 'close', row 4 \(2024-01-01 04:00:00(\.000)? UTC\): NaN value",
        ),
        (_with(_bars(), volume=_set(0, np.inf)), Kind.SPOT, r"column 'volume', row 0 .*infinite"),
        (
            _with(_bars(), high=_set(2, 50.0)),
            Kind.SPOT,
            r"column 'high/low', row 2 .*inconsistent bar open=102\.0 high=50\.0",
        ),
        (
            pa.table(_funding([1e-4, 0.75, 1e-4])),
            Kind.FUNDING,
            r"column 'rate', row 1 \(2024-01-01 08:00:00(\.000)? UTC\): funding rate 0\.75 .*looks like percent",
        ),
        (
            _with(_funding([1e-4] * 3), interval_hours=_set(2, 0.0)),
            Kind.FUNDING,
            r"column 'interval_hours', row 2 .*bad interval 0\.0 h",
        ),
        (_with(_funding([1e-4] * 3), rate=_set(1, np.nan)), Kind.FUNDING, r"column 'rate', row 1 .*NaN"),
    ],
    ids=[
        "missing-col",
        "missing-time",
        "wrong-type",
        "int-time",
        "tz-naive",
        "unsorted",
        "duplicate",
        "zero-price",
        "negative-price",
        "nan",
        "inf",
        "ohlc",
        "percent-funding",
        "bad-interval",
        "nan-rate",
    ],
)
def test_conform_rejects_bad_input_naming_source_column_row(table: pa.Table, kind: Kind, pattern: str) -> None:
    with pytest.raises(DataError, match=pattern) as info:
        conform(table, kind, SRC)
    assert str(info.value).startswith(SRC)


def test_null_in_required_column_names_row() -> None:
    cols = _bars()
    cols["open"] = pa.array([1.0, None, 3.0, 4.0, 5.0])
    with pytest.raises(DataError, match=r"column 'open', row 1 .*missing value"):
        conform(pa.table(cols), Kind.SPOT, SRC)


# --------------------------------------------------------------------------- catalog
KEY = PartitionKey("binance", Kind.SPOT, "BTCUSDT", "1h")


def test_bad_symbol_and_missing_timeframe() -> None:
    with pytest.raises(DataError, match="bad symbol 'btc/usdt'"):
        PartitionKey("binance", Kind.SPOT, "btc/usdt", "1h")
    with pytest.raises(DataError, match="need a timeframe"):
        PartitionKey("binance", Kind.SPOT, "BTCUSDT")


def test_write_rejects_bad_table_and_writes_nothing(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    with pytest.raises(DataError, match=r"^x\.feather: column 'close', row 4"):
        cat.write(KEY, _with(_bars(), close=_set(4, np.nan)), source="x.feather")
    assert not cat.has(KEY) and not any(tmp_path.rglob("*"))


def test_truncated_partition_names_file(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(KEY, pa.table(_bars(200)))
    (path,) = cat.files(KEY)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(DataError, match=r"year=2024\.parquet: cannot read Parquet file .*truncated"):
        cat.read(KEY)
    with pytest.raises(DataError, match=r"year=2024\.parquet"):  # a merge reads it too
        cat.write(KEY, pa.table(_bars(2, t0=T0 + 500 * H)))


def test_invalid_rows_in_partition_name_file_column_row(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(KEY, pa.table(_bars()))
    (path,) = cat.files(KEY)
    bad = pq.read_table(path).to_pydict()
    bad["low"][3] = 0.0
    pq.write_table(pa.table(bad, schema=pq.read_schema(path)), path)
    with pytest.raises(DataError, match=r"year=2024\.parquet: column 'low', row 3 \(2024-01-01 03:00:00(\.000)? UTC\)"):
        cat.read(KEY)


def test_missing_series_error_names_catalog(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no spot data for ETHUSDT at timeframe 1h on venue binance"):
        Catalog(tmp_path).read(PartitionKey("binance", Kind.SPOT, "ETHUSDT", "1h"))


def test_crash_mid_write_keeps_old_partition_and_leaves_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cat = Catalog(tmp_path)
    cat.write(KEY, pa.table(_bars(5)))
    (path,) = cat.files(KEY)
    before = path.read_bytes()

    def crash(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half a file")  # the crash happens after some bytes hit the disk
        raise OSError("disk full")

    monkeypatch.setattr(catalog_mod.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        cat.write(KEY, pa.table(_bars(10)))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["year=2024.parquet"]
    assert cat.read(KEY).num_rows == 5
    # a crash on a brand-new partition leaves no file at all
    monkeypatch.setattr(catalog_mod.pq, "write_table", crash)
    with pytest.raises(OSError):
        cat.write(KEY, pa.table(_bars(3, t0=T0 + 366 * 24 * H)))
    monkeypatch.undo()
    assert [p.name for p in cat.files(KEY)] == ["year=2024.parquet"]
    assert not list(tmp_path.rglob("*.tmp"))


def test_rewrite_is_idempotent_and_merges_by_time(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    first = cat.write(KEY, pa.table(_bars(5)))
    again = cat.write(KEY, pa.table(_bars(5)))
    assert (first.rows_added, again.rows_added, again.rows_unchanged) == (5, 0, 5)
    assert again.files == [] and not again.conflicts  # nothing rewritten
    more = cat.write(KEY, pa.table(_bars(8)))  # overlaps the first 5 rows
    assert (more.rows_added, more.rows_unchanged) == (3, 5)
    t = cat.read(KEY).column("time").cast(pa.int64()).to_numpy()
    assert len(t) == 8 and (np.diff(t) == H).all()


def test_conflicting_rewrite_replaces_and_reports(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(KEY, pa.table(_bars(5)))
    changed = _with(_bars(5), close=_set(2, 102.5))
    report = cat.write(KEY, changed)
    assert report.rows_added == 0 and report.rows_unchanged == 4
    assert len(report.conflicts) == 1 and "2024-01-01T02:00" in report.conflicts[0]
    assert cat.read(KEY).column("close").to_pylist()[2] == 102.5


def test_writes_split_by_year_and_read_range(tmp_path: Path) -> None:
    cat = Catalog(tmp_path)
    cat.write(KEY, pa.table(_bars(6, t0=T0 - 3 * H)))
    assert [p.name for p in cat.files(KEY)] == ["year=2023.parquet", "year=2024.parquet"]
    got = cat.read(KEY, start=np.datetime64("2024-01-01T00:00"), end=np.datetime64("2024-01-01T02:00"))
    assert got.column("time").cast(pa.int64()).to_pylist() == [T0, T0 + H]
    assert [str(k) for k in cat.keys()] == ["binance/spot/1h/BTCUSDT"]

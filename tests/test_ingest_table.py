"""Generic sources (issue 13): ``carry data ingest table`` (CSV / Parquet / Feather with explicit
units and zone) and ``carry data ingest ccxt`` (dumps of fetch_funding_rate_history and
fetch_ohlcv). Every rejected input names the file, column and row, or the flag, and leaves the
catalog byte-for-byte unchanged."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from backtest.app import cli, ingest_table_cli
from data.catalog import Catalog, PartitionKey
from data.errors import CarryError, ConfigError, DataError, UnknownNameError
from data.ingest import ccxt_dump, table
from data.ingest.ccxt_dump import ingest_ccxt
from data.ingest.freqtrade import derive_interval_hours, ingest_freqtrade
from data.ingest.table import canonical_symbol, ingest_table, parse_column_map, resolve_zone
from data.schema import Kind
from tests.conftest import shared_data_path

H = 3_600_000
T0 = pd.Timestamp("2024-01-01", tz="UTC")


# --------------------------------------------------------------------------- helpers
def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (hidden ones too) with its sha256: equal snapshots = catalog unchanged."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }


def read(cat: Catalog, kind: str, symbol: str = "BTCUSDT", tf: str | None = None, venue: str = "bybit") -> pd.DataFrame:
    return cat.read(PartitionKey(venue, Kind(kind), symbol, tf)).to_pandas()


def funding_csv(path: Path, times: list[str], rates: list[float], header: str = "Date,Funding Rate") -> Path:
    path.write_text(header + "\n" + "".join(f"{t},{r}\n" for t, r in zip(times, rates)))
    return path


def istanbul_csv(tmp_path: Path, name: str = "funding.csv", n: int = 6) -> Path:
    """Settlements at 00/08/16 UTC written as naive Istanbul (UTC+3) times, rates in percent."""
    times = [(T0 + pd.Timedelta(hours=8 * i + 3)).strftime("%Y-%m-%d %H:%M:%S") for i in range(n)]
    rates = [0.01, 0.0125, -0.005, 0.01, 0.02, 0.0][:n]
    return funding_csv(tmp_path / name, times, rates)


def bars_frame(n: int = 6, hours: int = 1, start: pd.Timestamp = T0) -> pd.DataFrame:
    o = 100.0 + np.arange(n)
    return pd.DataFrame(
        {
            "ts": [int((start + pd.Timedelta(hours=hours * i)).value // 1_000_000) for i in range(n)],
            "o": o,
            "h": o + 2,
            "l": o - 1,
            "c": o + 1,
            "v": 10.0 + np.arange(n),
        }
    )


BAR_MAP = "time=ts,open=o,high=h,low=l,close=c,volume=v"
FUNDING = dict(kind="funding", symbol="BTCUSDT", venue="bybit", columns="time=Date,rate=Funding Rate")


# --------------------------------------------------------------------------- times, zones and units
def test_naive_istanbul_times_land_on_the_hour_utc_and_percent_rates_become_fractions(tmp_path):
    cat = Catalog(tmp_path / "cat")
    report = ingest_table(istanbul_csv(tmp_path), cat, **FUNDING, tz="Europe/Istanbul", rate_unit="percent")
    df = read(cat, "funding")
    assert list(df["time"]) == [T0 + pd.Timedelta(hours=8 * i) for i in range(6)]
    assert (df["time"].dt.minute == 0).all() and set(df["time"].dt.hour) == {0, 8, 16}
    assert df["rate"].tolist() == pytest.approx([1e-4, 1.25e-4, -5e-5, 1e-4, 2e-4, 0.0], abs=1e-15)
    assert df["interval_hours"].tolist() == [8.0] * 6  # derived from the settlements
    assert report.rows_added == 6 and report.files_read == 1


def test_the_same_file_read_as_utc_is_three_hours_off_and_refused_next_to_the_right_series(tmp_path):
    """Issue 13, point 3: naive UTC+3 times read as UTC would put a second settlement in every
    interval of the stored series; the catalog's schedule check refuses it naming the shift."""
    cat = Catalog(tmp_path / "cat")
    path = istanbul_csv(tmp_path)
    ingest_table(path, cat, **FUNDING, tz="Europe/Istanbul", rate_unit="percent")
    before = snapshot(cat.root)
    with pytest.raises(DataError, match=r"\+3h.*Nothing was written") as err:
        ingest_table(path, cat, **FUNDING, rate_unit="percent")
    assert str(path) in str(err.value)
    assert snapshot(cat.root) == before


def test_times_with_an_offset_keep_it_and_the_unused_zone_is_reported(tmp_path):
    times = [(T0 + pd.Timedelta(hours=8 * i + 3)).strftime("%Y-%m-%dT%H:%M:%S+03:00") for i in range(3)]
    path = funding_csv(tmp_path / "f.csv", times, [1.0, 2.0, 3.0], header="time,rate")
    cat = Catalog(tmp_path / "cat")
    report = ingest_table(
        path, cat, kind="funding", symbol="BTCUSDT", venue="bybit", tz="America/New_York", rate_unit="bps"
    )
    df = read(cat, "funding")
    assert list(df["time"]) == [T0 + pd.Timedelta(hours=8 * i) for i in range(3)]
    assert df["rate"].tolist() == pytest.approx([1e-4, 2e-4, 3e-4])
    assert any("--tz America/New_York not used" in w for w in report.warnings)


def test_fixed_offsets_and_zone_names_are_read_and_a_misspelt_zone_gets_a_hint():
    assert resolve_zone("+03:00").tz.utcoffset(None) == pd.Timedelta(hours=3)
    assert resolve_zone("UTC-5").tz.utcoffset(None) == pd.Timedelta(hours=-5)
    assert resolve_zone(None).is_utc and resolve_zone("utc").is_utc
    with pytest.raises(UnknownNameError, match="did you mean 'Europe/Istanbul'"):
        resolve_zone("Europe/Istambul")


def test_a_column_mixing_naive_times_and_offsets_is_refused(tmp_path):
    path = funding_csv(tmp_path / "f.csv", ["2024-01-01 00:00", "2024-01-01T08:00+00:00"], [1, 1], "time,rate")
    with pytest.raises(DataError, match=r"f\.csv: column 'time', row 1: .*mixes zones"):
        ingest_table(path, Catalog(tmp_path / "cat"), kind="funding", symbol="BTCUSDT", venue="x", rate_unit="bps")


def test_a_time_a_dst_change_makes_ambiguous_is_refused(tmp_path):
    times = ["2024-10-27 00:30", "2024-10-27 01:30", "2024-10-27 02:30"]  # 02:30 happens twice in Berlin
    path = funding_csv(tmp_path / "f.csv", times, [1, 1, 1], "time,rate")
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError, match=r"column 'time', row 2: 2024-10-27 02:30 is ambiguous.*Europe/Berlin"):
        ingest_table(path, cat, kind="funding", symbol="BTCUSDT", venue="x", rate_unit="bps", tz="Europe/Berlin")
    assert snapshot(cat.root) == {}


@pytest.mark.parametrize(
    ("unit", "values", "want"), [("fraction", [1e-4, -2e-4], [1e-4, -2e-4]), ("bps", [1, -2], [1e-4, -2e-4])]
)
def test_rate_units(tmp_path, unit, values, want):
    path = funding_csv(tmp_path / "f.csv", ["2024-01-01 00:00", "2024-01-01 08:00"], values, "time,rate")
    cat = Catalog(tmp_path / "cat")
    ingest_table(path, cat, kind="funding", symbol="BTCUSDT", venue="bybit", rate_unit=unit, interval_hours=8)
    df = read(cat, "funding")
    assert df["rate"].tolist() == pytest.approx(want) and df["interval_hours"].tolist() == [8.0, 8.0]


def test_a_single_settlement_has_an_unknown_interval_unless_given(tmp_path):
    path = funding_csv(tmp_path / "one.csv", ["2024-01-01 00:00"], [1.5], "time,rate")
    cat = Catalog(tmp_path / "cat")
    report = ingest_table(path, cat, kind="funding", symbol="BTCUSDT", venue="bybit", rate_unit="bps")
    assert read(cat, "funding")["interval_hours"].isna().all()
    assert any("interval unknown for 1 settlement" in w and "--interval-hours" in w for w in report.warnings)
    ingest_table(
        path,
        Catalog(tmp_path / "c2"),
        kind="funding",
        symbol="BTCUSDT",
        venue="bybit",
        rate_unit="bps",
        interval_hours=4,
    )
    assert read(Catalog(tmp_path / "c2"), "funding")["interval_hours"].tolist() == [4.0]
    with pytest.raises(ConfigError, match="bad --interval-hours 30"):
        ingest_table(path, cat, kind="funding", symbol="BTCUSDT", venue="bybit", rate_unit="bps", interval_hours=30)


def test_funding_needs_a_rate_unit_and_percent_read_as_fractions_is_caught(tmp_path):
    path = istanbul_csv(tmp_path)
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(ConfigError, match="--rate-unit fraction, percent or bps"):
        ingest_table(path, cat, **FUNDING, tz="+03:00")
    big = funding_csv(tmp_path / "big.csv", ["2024-01-01 00:00", "2024-01-01 08:00"], [0.01, 0.75], "time,rate")
    with pytest.raises(DataError, match=r"big\.csv: column 'rate', row 1 .*0\.75.*is --rate-unit right"):
        ingest_table(big, cat, kind="funding", symbol="BTCUSDT", venue="bybit", rate_unit="fraction")
    assert snapshot(cat.root) == {}


def test_settlements_off_the_hour_are_refused_and_minutes_late_stamps_floored(tmp_path):
    cat = Catalog(tmp_path / "cat")
    india = [f"2024-01-0{d} {h:02d}:30" for d in (1, 2) for h in (5, 13, 21)]  # UTC+5:30 read as UTC
    path = funding_csv(tmp_path / "ist.csv", india, [1] * 6, "time,rate")
    with pytest.raises(
        DataError,
        match=r"ist\.csv: column 'time': 6 of 6 settlements are 1 minute or more past the hour \(row 0 \(2024-01-01 05:30 UTC\)",
    ):
        ingest_table(path, cat, kind="funding", symbol="BTCUSDT", venue="hl", rate_unit="bps")
    assert snapshot(cat.root) == {}
    late = ["2024-01-01 00:00:00.004", "2024-01-01 01:00:00", "2024-01-01 02:23:53.040", "2024-01-01 03:00:01"]
    path = funding_csv(tmp_path / "late.csv", late, [1] * 4, "time,rate")
    report = ingest_table(path, cat, kind="funding", symbol="BTCUSDT", venue="hl", rate_unit="bps")
    assert list(read(cat, "funding", venue="hl")["time"]) == [T0 + pd.Timedelta(hours=i) for i in range(4)]
    assert read(cat, "funding", venue="hl")["interval_hours"].tolist() == [1.0] * 4
    assert any(
        "1 settlement(s) stamped 1 minute or more after the hour" in w and "23.9 min" in w for w in report.warnings
    )


def test_errors_of_the_data_checks_refuse_the_ingest_unless_allowed(tmp_path):
    """The checks of ``carry data check`` run on the staged series (issue 13, point 4): a perp
    quoted 1000x its spot is refused, nothing written, unless the check is allowed."""
    cat = Catalog(tmp_path / "cat")
    spot, perp = tmp_path / "spot.csv", tmp_path / "perp.csv"
    bars_frame(24).to_csv(spot, index=False)
    df = bars_frame(24)
    df[["o", "h", "l", "c"]] *= 1000
    df.to_csv(perp, index=False)
    kw = dict(symbol="BTCUSDT", venue="bybit", columns=BAR_MAP, time_unit="ms", timeframe="1h")
    ingest_table(spot, cat, kind="spot", **kw)
    before = snapshot(cat.root)
    with pytest.raises(
        DataError,
        match=r"perp\.csv: bybit/perp/1h/BTCUSDT vs BTCUSDT: check 'basis_divergence' failed.*Nothing was written.*--allow-errors basis_divergence",
    ):
        ingest_table(perp, cat, kind="perp", **kw)
    assert snapshot(cat.root) == before
    with pytest.raises(UnknownNameError, match="did you mean 'basis_divergence'"):
        ingest_table(perp, cat, kind="perp", **kw, allow_errors="basis_divergense")
    report = ingest_table(perp, cat, kind="perp", **kw, allow_errors=["basis_divergence"])
    assert report.rows_added == 24 and any("allowed error basis_divergence" in w for w in report.warnings)


def test_numbers_need_a_time_unit(tmp_path):
    path = tmp_path / "bars.csv"
    bars_frame().to_csv(path, index=False)
    cat = Catalog(tmp_path / "cat")
    kw = dict(kind="perp", symbol="BTCUSDT", venue="bybit", columns=BAR_MAP, timeframe="1h")
    with pytest.raises(
        ConfigError, match=r"bars\.csv: column 'ts' holds numbers .*--time-unit s, ms, us or ns.*like ms"
    ):
        ingest_table(path, cat, **kw)
    with pytest.raises(
        DataError, match=r"column 'ts' \(--map time\), row 0: 1704067200000 read as epoch s.*looks like ms"
    ):
        ingest_table(path, cat, **kw, time_unit="s")
    assert snapshot(cat.root) == {}
    ingest_table(path, cat, **kw, time_unit="ms")
    df = read(cat, "perp", tf="1h")
    assert list(df["time"]) == [T0 + pd.Timedelta(hours=i) for i in range(6)]
    assert df["close"].tolist() == bars_frame()["c"].tolist()


def test_a_time_unit_for_date_text_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"holds date-time text .*--time-unit ms is for epoch numbers"):
        ingest_table(istanbul_csv(tmp_path), Catalog(tmp_path / "cat"), **FUNDING, rate_unit="percent", time_unit="ms")


# --------------------------------------------------------------------------- columns
def test_a_wrong_column_in_map_names_it_and_lists_the_files_columns(tmp_path):
    path = istanbul_csv(tmp_path)
    cat = Catalog(tmp_path / "cat")
    bad = dict(FUNDING, columns="time=Date,rate=Fundng Rate")
    with pytest.raises(UnknownNameError) as err:
        ingest_table(path, cat, **bad, tz="Europe/Istanbul", rate_unit="percent")
    msg = str(err.value)
    assert "'Fundng Rate'" in msg and str(path) in msg and "--map rate=Fundng Rate" in msg
    assert "did you mean 'Funding Rate'?" in msg and "valid: Date, Funding Rate" in msg
    assert snapshot(cat.root) == {}


def test_an_unmapped_required_field_suggests_a_column(tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"no column for 'rate'.*perhaps --map rate=Funding Rate.*columns in the file: Date, Funding Rate",
    ):
        ingest_table(
            istanbul_csv(tmp_path), Catalog(tmp_path / "cat"), **dict(FUNDING, columns="time=Date"), rate_unit="percent"
        )


def test_an_unknown_map_field_and_bad_map_items_are_refused(tmp_path):
    with pytest.raises(UnknownNameError, match="unknown --map field 'rte' for funding data.*did you mean 'rate'"):
        ingest_table(
            istanbul_csv(tmp_path),
            Catalog(tmp_path / "cat"),
            **dict(FUNDING, columns="time=Date,rte=X"),
            rate_unit="bps",
        )
    with pytest.raises(ConfigError, match="bad --map item 'time'"):
        parse_column_map("time")
    with pytest.raises(ConfigError, match="gives field 'time' twice"):
        parse_column_map(["time=a", "time=b"])
    assert parse_column_map(["time=Date", "rate=Funding Rate, mark_price=Mark"]) == {
        "time": "Date",
        "rate": "Funding Rate",
        "mark_price": "Mark",
    }


def test_bars_need_high_and_low_columns(tmp_path):
    path = tmp_path / "closes.csv"
    bars_frame()[["ts", "o", "c", "v"]].to_csv(path, index=False)
    with pytest.raises(ConfigError, match=r"no column for 'high', which perp data needs"):
        ingest_table(
            path,
            Catalog(tmp_path / "cat"),
            kind="perp",
            symbol="BTCUSDT",
            venue="x",
            columns="time=ts,open=o,close=c,volume=v",
            time_unit="ms",
            timeframe="1h",
        )


def test_symbols_are_canonical():
    assert canonical_symbol("BTC/USDT:USDT") == "BTCUSDT"
    assert canonical_symbol("1000PEPE/USDT:USDT") == "1000PEPEUSDT"
    assert canonical_symbol("eth-usdt") == "ETHUSDT"
    assert canonical_symbol("kPEPE/USDC:USDC") == "1000PEPEUSDC"  # Hyperliquid's thousands
    with pytest.raises(ConfigError, match="dated future"):
        canonical_symbol("BTC/USDT:USDT-241227")


# --------------------------------------------------------------------------- bad rows: named, nothing written
@pytest.mark.parametrize(
    ("row", "column", "value", "message"),
    [
        (3, "c", "nan", "NaN value"),
        (2, "l", "-99", "non-positive price -99.0"),
        (4, "o", "", "missing value"),
        (1, "v", "abc", "'abc' is not a number"),
        (5, "h", "50", "inconsistent bar"),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_written(tmp_path, row, column, value, message):
    cat = Catalog(tmp_path / "cat")
    good = tmp_path / "good.csv"
    bars_frame(6).to_csv(good, index=False)
    kw = dict(kind="perp", symbol="BTCUSDT", venue="bybit", columns=BAR_MAP, time_unit="ms", timeframe="1h")
    ingest_table(good, cat, **kw)
    before = snapshot(cat.root)
    df = bars_frame(6, start=T0 + pd.Timedelta(hours=6)).astype({column: object})
    df.loc[row, column] = value
    bad = tmp_path / "bad.csv"
    df.to_csv(bad, index=False)
    later = tmp_path / "later.csv"
    bars_frame(6, start=T0 + pd.Timedelta(hours=12)).to_csv(later, index=False)
    time = (T0 + pd.Timedelta(hours=6 + row)).strftime("%Y-%m-%d %H:%M")
    col = "h" if message == "inconsistent bar" else column
    with pytest.raises(DataError) as err:
        ingest_table([later, bad], cat, **kw)
    assert f"{bad}: column '{col}'" in str(err.value) and f"row {row} ({time} UTC)" in str(err.value)
    assert message in str(err.value)
    assert snapshot(cat.root) == before


def test_rows_of_an_unsorted_file_are_named_by_their_place_in_the_file(tmp_path):
    df = bars_frame(5).iloc[::-1].reset_index(drop=True)  # newest first, as some APIs return them
    df.loc[1, "c"] = -1.0
    path = tmp_path / "desc.csv"
    df.to_csv(path, index=False)
    kw = dict(kind="perp", symbol="BTCUSDT", venue="bybit", columns=BAR_MAP, time_unit="ms", timeframe="1h")
    with pytest.raises(DataError, match=r"column 'c' \(--map close\), row 1 \(2024-01-01 03:00 UTC\): non-positive"):
        ingest_table(path, Catalog(tmp_path / "cat"), **kw)
    df.loc[1, "c"] = 104.0
    df.to_csv(path, index=False)
    cat = Catalog(tmp_path / "cat")
    report = ingest_table(path, cat, **kw)
    assert any("not sorted by time; sorted them" in w for w in report.warnings)
    assert read(cat, "perp", tf="1h")["time"].is_monotonic_increasing


def test_two_files_with_different_rows_at_one_time_are_refused_naming_both(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    full = bars_frame(6)
    full.iloc[:4].to_csv(a, index=False)
    df = full.iloc[2:].reset_index(drop=True)
    df.loc[0, "c"] = 102.5  # 02:00 in a.csv closes at 103
    df.to_csv(b, index=False)
    cat = Catalog(tmp_path / "cat")
    kw = dict(kind="perp", symbol="BTCUSDT", venue="bybit", columns=BAR_MAP, time_unit="ms", timeframe="1h")
    with pytest.raises(
        DataError,
        match=rf"two different rows at 2024-01-01 02:00 UTC: {a}: column 'c', row 2 holds 103.0, {b}: column 'c', row 0 holds 102.5",
    ):
        ingest_table([a, b], cat, **kw)
    assert snapshot(cat.root) == {}
    full.iloc[2:].to_csv(b, index=False)  # agreeing overlap: merged
    report = ingest_table([a, b], cat, **kw)
    assert report.rows_added == 6 and not report.warnings
    assert ingest_table([a, b], cat, **kw).rows_added == 0  # idempotent


# --------------------------------------------------------------------------- bars: formats and timeframe
def test_parquet_with_utc_timestamps_and_feather_with_naive_local_times(tmp_path):
    df = bars_frame(6)
    df["ts"] = pd.to_datetime(df["ts"], unit="ms", utc=True)
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), tmp_path / "a.parquet")
    local = bars_frame(6, start=T0 + pd.Timedelta(hours=6))
    local["ts"] = pd.to_datetime(local["ts"], unit="ms") + pd.Timedelta(hours=3)  # naive UTC+3
    feather.write_feather(pa.Table.from_pandas(local, preserve_index=False), tmp_path / "b.feather")
    cat = Catalog(tmp_path / "cat")
    report = ingest_table(
        [tmp_path / "a.parquet", tmp_path / "b.feather"],
        cat,
        kind="mark",
        symbol="BTCUSDT",
        venue="bybit",
        columns=BAR_MAP,
        tz="Europe/Istanbul",
        timeframe="1h",
    )
    assert "mark bars store no volume: --map volume not used" in report.warnings
    got = read(cat, "mark", tf="1h")
    assert list(got["time"]) == [T0 + pd.Timedelta(hours=i) for i in range(12)]
    assert "volume" not in got.columns  # mark bars have no volume


@pytest.mark.parametrize(
    ("hours", "timeframe", "offset", "message"),
    [
        (1, "4h", 0, r"row 1 \(2024-01-01 01:00 UTC\): not on the 4h grid \(off by 1h\)"),
        (4, "1h", 0, r"--timeframe 1h, but the bars are mostly 4h apart"),
        (1, "1h", 30, r"row 0 \(2024-01-01 00:30 UTC\): not on the 1h grid \(off by 30m\)"),
    ],
)
def test_the_timeframe_is_checked_against_the_times(tmp_path, hours, timeframe, offset, message):
    df = bars_frame(6, hours=hours, start=T0 + pd.Timedelta(minutes=offset))
    path = tmp_path / "bars.csv"
    df.to_csv(path, index=False)
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError, match=message):
        ingest_table(
            path, cat, kind="spot", symbol="BTCUSDT", venue="x", columns=BAR_MAP, time_unit="ms", timeframe=timeframe
        )
    assert snapshot(cat.root) == {}


def test_bars_need_a_timeframe_and_funding_options_are_refused_for_bars(tmp_path):
    path = tmp_path / "bars.csv"
    bars_frame().to_csv(path, index=False)
    kw = dict(kind="spot", symbol="BTCUSDT", venue="x", columns=BAR_MAP, time_unit="ms")
    with pytest.raises(ConfigError, match="spot bars need --timeframe"):
        ingest_table(path, Catalog(tmp_path / "cat"), **kw)
    with pytest.raises(ConfigError, match="--rate-unit is for funding"):
        ingest_table(path, Catalog(tmp_path / "cat"), **kw, timeframe="1h", rate_unit="percent")
    with pytest.raises(ConfigError, match="bad --timeframe '1x'"):
        ingest_table(path, Catalog(tmp_path / "cat"), **kw, timeframe="1x")


def test_a_last_bar_still_open_when_the_file_was_written_is_dropped(tmp_path):
    path = tmp_path / "bars.csv"
    bars_frame(6).to_csv(path, index=False)
    written = (T0 + pd.Timedelta(hours=5, minutes=20)).timestamp()  # the 05:00 bar ran to 06:00
    os.utime(path, (written, written))
    cat = Catalog(tmp_path / "cat")
    report = ingest_table(
        path, cat, kind="perp", symbol="BTCUSDT", venue="x", columns=BAR_MAP, time_unit="ms", timeframe="1h"
    )
    assert len(read(cat, "perp", tf="1h", venue="x")) == 5
    assert any("row 5: the last bar (2024-01-01 05:00 UTC) was still open" in w for w in report.warnings)


def test_a_file_stamped_before_its_last_bar_keeps_it_with_a_warning(tmp_path):
    path = tmp_path / "bars.csv"
    bars_frame(6).to_csv(path, index=False)
    stamp = (T0 + pd.Timedelta(hours=2)).timestamp()  # extracted with an older time: not the download time
    os.utime(path, (stamp, stamp))
    cat = Catalog(tmp_path / "cat")
    report = ingest_table(
        path, cat, kind="perp", symbol="BTCUSDT", venue="x", columns=BAR_MAP, time_unit="ms", timeframe="1h"
    )
    assert len(read(cat, "perp", tf="1h", venue="x")) == 6
    assert any("cannot be told; kept" in w for w in report.warnings)


def test_missing_files_and_empty_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        ingest_table(tmp_path / "nope.csv", Catalog(tmp_path / "cat"), **FUNDING, rate_unit="bps")
    (tmp_path / "empty.csv").write_text("Date,Funding Rate\n")
    with pytest.raises(DataError, match="no rows to ingest"):
        ingest_table(tmp_path / "empty.csv", Catalog(tmp_path / "cat"), **FUNDING, rate_unit="bps")


# --------------------------------------------------------------------------- ccxt dumps
def ccxt_funding(n: int = 6, symbol: str = "BTC/USDT:USDT", start: pd.Timestamp = T0) -> list[dict]:
    """What fetch_funding_rate_history returns (Binance stamps settlements a few ms late)."""
    out = []
    for i in range(n):
        ms = int((start + pd.Timedelta(hours=8 * i)).value // 1_000_000) + (i % 3) * 7
        iso = pd.Timestamp(ms, unit="ms", tz="UTC").strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        rate = [1e-4, 2.5e-4, -3e-5][i % 3]
        info = {"symbol": "BTCUSDT", "fundingTime": ms, "fundingRate": f"{rate:.8f}", "markPrice": "42000.1"}
        out.append({"info": info, "symbol": symbol, "fundingRate": rate, "timestamp": ms, "datetime": iso})
    return out


def ccxt_ohlcv(n: int = 6, start: pd.Timestamp = T0) -> list[list[float]]:
    t0 = int(start.value // 1_000_000)
    return [[t0 + i * H, 100.0 + i, 102.0 + i, 99.0 + i, 101.0 + i, 5.0 + i] for i in range(n)]


def dump(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_ccxt_json_funding_dump(tmp_path):
    cat = Catalog(tmp_path / "cat")
    path = dump(tmp_path / "fr.json", ccxt_funding())
    report = ingest_ccxt(path, cat, symbol="BTC/USDT:USDT", venue="binance")
    df = read(cat, "funding", venue="binance")
    assert list(df["time"]) == [T0 + pd.Timedelta(hours=8 * i) for i in range(6)]  # jitter floored
    assert df["rate"].tolist() == [1e-4, 2.5e-4, -3e-5] * 2
    assert df["interval_hours"].tolist() == [8.0] * 6
    assert report.rows_added == 6
    assert ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance").rows_added == 0


def test_a_ccxt_dump_converted_to_epoch_seconds_needs_its_time_unit(tmp_path):
    rows = ccxt_funding(3)
    for r in rows:
        r["timestamp"] //= 1000
    path = dump(tmp_path / "fr_s.json", rows)
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(
        DataError, match=r"column 'timestamp' \(time\), row 0: 1704067200 read as epoch ms .*looks like s"
    ):
        ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance")
    ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance", time_unit="s")
    assert list(read(cat, "funding", venue="binance")["time"]) == [T0 + pd.Timedelta(hours=8 * i) for i in range(3)]


def test_ccxt_json_ohlcv_dumps_need_a_kind_and_a_timeframe(tmp_path):
    cat = Catalog(tmp_path / "cat")
    path = dump(tmp_path / "ohlcv.json", ccxt_ohlcv())
    with pytest.raises(ConfigError, match=r"OHLCV dump.*pass --kind spot, perp, mark or index.*'price': 'mark'"):
        ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance")
    with pytest.raises(ConfigError, match="pass --timeframe"):
        ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance", kind="mark")
    with pytest.raises(ConfigError, match="OHLCV dump, not funding"):
        ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance", kind="funding", timeframe="1h")
    assert snapshot(cat.root) == {}
    ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance", kind="perp", timeframe="1h")
    ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance", kind="mark", timeframe="1h")
    perp, mark = read(cat, "perp", tf="1h", venue="binance"), read(cat, "mark", tf="1h", venue="binance")
    assert perp["volume"].tolist() == [5.0 + i for i in range(6)] and "volume" not in mark
    assert list(mark["time"]) == [T0 + pd.Timedelta(hours=i) for i in range(6)]
    assert mark["high"].tolist() == [102.0 + i for i in range(6)]


def test_a_dump_of_another_symbol_is_refused_naming_both(tmp_path):
    cat = Catalog(tmp_path / "cat")
    ingest_ccxt(dump(tmp_path / "btc.json", ccxt_funding()), cat, symbol="BTCUSDT", venue="binance")
    before = snapshot(cat.root)
    eth = dump(tmp_path / "eth.json", ccxt_funding(symbol="ETH/USDT:USDT", start=T0 + pd.Timedelta(days=2)))
    with pytest.raises(
        DataError,
        match=r"eth\.json: column 'symbol', row 0: the dump holds 'ETH/USDT:USDT' \(ETHUSDT\), not --symbol BTCUSDT",
    ):
        ingest_ccxt(eth, cat, symbol="BTCUSDT", venue="binance")
    mixed = ccxt_funding(start=T0 + pd.Timedelta(days=2))
    mixed[4]["symbol"] = "ETH/USDT:USDT"
    with pytest.raises(DataError, match=r"row 4: the dump holds 'ETH/USDT:USDT'"):
        ingest_ccxt([dump(tmp_path / "mixed.json", mixed)], cat, symbol="BTC/USDT:USDT", venue="binance")
    assert snapshot(cat.root) == before


def test_ccxt_csv_dumps_funding_and_headerless_ohlcv(tmp_path):
    funding = tmp_path / "fr.csv"
    pd.DataFrame(ccxt_funding()).to_csv(funding)  # pandas writes an index column and the info dicts
    bars = tmp_path / "ohlcv.csv"
    pd.DataFrame(ccxt_ohlcv()).to_csv(bars, header=False, index=False)
    named = tmp_path / "ohlcv_named.csv"
    pd.DataFrame(
        ccxt_ohlcv(4, start=T0 + pd.Timedelta(hours=6)), columns=["timestamp", "open", "high", "low", "close", "volume"]
    ).to_csv(named, index=False)
    cat = Catalog(tmp_path / "cat")
    report = ingest_ccxt([funding, bars, named], cat, symbol="BTCUSDT", venue="binance", kind="spot", timeframe="1h")
    assert report.files_read == 3 and {str(w.key) for w in report.writes} == {
        "binance/funding/BTCUSDT",
        "binance/spot/1h/BTCUSDT",
    }
    assert read(cat, "funding", venue="binance")["rate"].tolist() == [1e-4, 2.5e-4, -3e-5] * 2
    assert len(read(cat, "spot", tf="1h", venue="binance")) == 10


def test_a_ccxt_style_csv_with_naive_utc_plus_3_times_is_refused_then_read_with_tz(tmp_path):
    """Issue 13, point 3 through the ccxt source: the naive local times double the funding unless
    --tz says where they are from."""
    cat = Catalog(tmp_path / "cat")
    ingest_ccxt(dump(tmp_path / "fr.json", ccxt_funding(9)), cat, symbol="BTCUSDT", venue="binance")
    before = snapshot(cat.root)
    rows = ccxt_funding(9)
    local = pd.DataFrame(
        {
            "symbol": [r["symbol"] for r in rows],
            "fundingRate": [r["fundingRate"] for r in rows],
            "datetime": [
                (pd.Timestamp(r["timestamp"], unit="ms") + pd.Timedelta(hours=3)).strftime("%Y-%m-%d %H:%M:%S")
                for r in rows
            ],
        }
    )
    path = tmp_path / "local.csv"
    local.to_csv(path, index=False)
    with pytest.raises(DataError, match=r"\+3h from the stored settlements.*Nothing was written"):
        ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance")
    assert snapshot(cat.root) == before
    assert ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance", tz="Europe/Istanbul").rows_added == 0


@pytest.mark.parametrize(
    ("row", "index", "value", "message"),
    [
        (2, 4, None, r"column '4' \(close\), row 2 \(2024-01-01 02:00 UTC\): missing value"),
        (3, 3, -1.0, "column '3' .*row 3 .*non-positive price -1.0"),
    ],
)
def test_a_bad_ccxt_ohlcv_row_is_named(tmp_path, row, index, value, message):
    rows = ccxt_ohlcv()
    rows[row][index] = value
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError, match=message):
        ingest_ccxt(
            dump(tmp_path / "o.json", rows), cat, symbol="BTCUSDT", venue="binance", kind="perp", timeframe="1h"
        )
    assert snapshot(cat.root) == {}


def test_a_file_that_is_no_ccxt_dump_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"x\.json: holds a JSON dict, expected a ccxt dump"):
        ingest_ccxt(dump(tmp_path / "x.json", {"a": 1}), Catalog(tmp_path / "cat"), symbol="BTCUSDT", venue="b")
    (tmp_path / "y.csv").write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match=r"y\.csv: expected a ccxt dump.*columns present: a, b"):
        ingest_ccxt(tmp_path / "y.csv", Catalog(tmp_path / "cat"), symbol="BTCUSDT", venue="b")
    with pytest.raises(DataError, match="row 1 is not an OHLCV row"):
        ingest_ccxt(
            dump(tmp_path / "z.json", [[1, 2, 3, 4, 5, 6], [1, 2]]),
            Catalog(tmp_path / "cat"),
            symbol="BTCUSDT",
            venue="b",
            kind="spot",
            timeframe="1h",
        )


def test_a_dumps_still_open_last_bar_is_dropped(tmp_path):
    path = dump(tmp_path / "o.json", ccxt_ohlcv(6))
    written = (T0 + pd.Timedelta(hours=5, minutes=1)).timestamp()
    os.utime(path, (written, written))
    cat = Catalog(tmp_path / "cat")
    report = ingest_ccxt(path, cat, symbol="BTCUSDT", venue="binance", kind="perp", timeframe="1h")
    assert len(read(cat, "perp", tf="1h", venue="binance")) == 5 and any("still open" in w for w in report.warnings)


# --------------------------------------------------------------------------- the command line
def parser() -> argparse.ArgumentParser:
    """``carry data ingest`` as cli.py builds it, with the two sources added."""
    p = cli._Parser(prog="carry data ingest", formatter_class=cli._formatter)
    isub = p.add_subparsers(dest="source", metavar="SOURCE", parser_class=cli._Parser)
    ingest_table_cli.add_parsers(isub, cli._formatter, cli._Parser)
    return p


def test_cli_table_and_ccxt_commands(tmp_path, capsys):
    out = tmp_path / "cat"
    args = parser().parse_args(
        ["table", str(istanbul_csv(tmp_path)), "--kind", "funding", "--symbol", "BTCUSDT", "--venue", "bybit", "--out", str(out),
         "--map", "time=Date", "--map", "rate=Funding Rate", "--tz", "Europe/Istanbul", "--rate-unit", "percent"]
    )  # fmt: skip
    assert args.func(args) == 0
    assert "6 rows added" in capsys.readouterr().out
    assert read(Catalog(out), "funding")["time"].dt.hour.tolist() == [0, 8, 16] * 2
    path = dump(tmp_path / "o.json", ccxt_ohlcv())
    args = parser().parse_args(
        [
            "ccxt",
            str(path),
            "--symbol",
            "BTC/USDT:USDT",
            "--venue",
            "binance",
            "--kind",
            "mark",
            "--timeframe",
            "1h",
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0 and "6 rows added" in capsys.readouterr().out
    args = parser().parse_args(
        ["ccxt", str(tmp_path / "missing.json"), "--symbol", "BTCUSDT", "--venue", "b", "--out", str(out)]
    )
    with pytest.raises(DataError, match="missing.json does not exist"):
        args.func(args)


def test_cli_usage_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(["table", "f.csv", "--symbol", "BTCUSDT", "--venue", "b", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "the following arguments are required: --kind" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        parser().parse_args(
            ["table", "f.csv", "--kind", "funding", "--symbol", "X", "--venue", "b", "--out", "o", "--rate-unit", "pct"]
        )
    assert exc.value.code == 2 and "invalid choice: 'pct'" in capsys.readouterr().err


def test_cli_errors_are_carry_errors_naming_the_flag(tmp_path):
    args = parser().parse_args(
        [
            "table",
            str(istanbul_csv(tmp_path)),
            "--kind",
            "funding",
            "--symbol",
            "BTCUSDT",
            "--venue",
            "b",
            "--out",
            str(tmp_path / "cat"),
            "--map",
            "time=Date,rate=Funding Rate",
        ]
    )
    with pytest.raises(CarryError, match="--rate-unit") as err:
        args.func(args)
    assert err.value.exit_code == 2
    args = parser().parse_args(
        [
            "ccxt",
            str(tmp_path),
            "--symbol",
            "BTCUSDT",
            "--venue",
            "b",
            "--out",
            str(tmp_path / "cat"),
            "--allow-errors",
            "funding_outliers",
        ]
    )
    with pytest.raises(UnknownNameError, match="did you mean 'funding_outlier'"):
        args.func(args)


def test_cli_choices_are_the_librarys():
    assert ingest_table_cli.TABLE_KINDS == table.TABLE_KINDS
    assert ingest_table_cli.TIME_UNITS == table.TIME_UNITS
    assert ingest_table_cli.RATE_UNITS == tuple(table.RATE_UNITS)
    assert ingest_table_cli.CCXT_OHLCV_KINDS == ccxt_dump.CCXT_OHLCV_KINDS


# --------------------------------------------------------------------------- real data
@pytest.mark.shared_data
def test_real_bybit_wif_as_a_local_time_percent_csv_and_a_parquet_equals_the_freqtrade_ingest(tmp_path):
    """Bybit WIF (funding switching 8h -> 4h) written out the way another tool would (funding as
    naive Istanbul times in percent, mark bars as Parquet with epoch ms) ingests to exactly what
    the freqtrade ingest stores."""
    src = shared_data_path("bybit", "futures")
    ref = Catalog(tmp_path / "ref")
    ingest_freqtrade(src.parent, ref, venue="bybit", symbols=["WIFUSDT"])
    fr = feather.read_feather(src / "WIF_USDT_USDT-1h-funding_rate.feather")
    local = (fr["date"].dt.tz_convert("Europe/Istanbul").dt.tz_localize(None)).dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    csv = tmp_path / "wif_funding.csv"
    pd.DataFrame({"Time (UTC+3)": local, "Funding %": fr["open"] * 100}).to_csv(csv, index=False)
    mark = feather.read_feather(src / "WIF_USDT_USDT-1h-mark.feather")
    mark["date"] = mark["date"].astype("datetime64[ms, UTC]").astype("int64")
    pq.write_table(pa.Table.from_pandas(mark, preserve_index=False), tmp_path / "wif_mark.parquet")
    cat = Catalog(tmp_path / "cat")
    ingest_table(
        csv,
        cat,
        kind="funding",
        symbol="WIFUSDT",
        venue="bybit",
        columns={"time": "Time (UTC+3)", "rate": "Funding %"},
        tz="Europe/Istanbul",
        rate_unit="percent",
    )
    ingest_table(
        tmp_path / "wif_mark.parquet",
        cat,
        kind="mark",
        symbol="WIFUSDT",
        venue="bybit",
        columns={"time": "date"},
        time_unit="ms",
        timeframe="1h",
    )
    got, want = read(cat, "funding", "WIFUSDT"), read(ref, "funding", "WIFUSDT")
    assert len(got) == len(want) > 1000
    pd.testing.assert_series_equal(got["time"], want["time"])
    np.testing.assert_allclose(got["rate"], want["rate"], rtol=1e-12, atol=1e-18)
    pd.testing.assert_series_equal(got["interval_hours"], want["interval_hours"])
    assert {8.0, 4.0} <= set(got["interval_hours"])
    expected, _ = derive_interval_hours(got["time"].dt.as_unit("ms").astype("int64").to_numpy())
    np.testing.assert_array_equal(got["interval_hours"], expected)
    pd.testing.assert_frame_equal(read(cat, "mark", "WIFUSDT", "1h"), read(ref, "mark", "WIFUSDT", "1h"))

"""catalog_info / check_catalog on small generated catalogs and on the real shared data."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data.catalog import Catalog, PartitionKey
from data.ingest.freqtrade import ingest_freqtrade
from data.quality import Problem, catalog_info, check_catalog, format_info, format_problems
from data.schema import Kind
from tests.conftest import SHARED_DATA as SHARED

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def _bars(times_ms: np.ndarray, price: float | np.ndarray = 100.0, volume: bool = True) -> pa.Table:
    p = np.broadcast_to(np.asarray(price, float), len(times_ms)).copy()
    cols = {
        "time": pa.array(times_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "open": p,
        "high": p * 1.01,
        "low": p * 0.99,
        "close": p,
    }
    if volume:
        cols["volume"] = np.ones(len(times_ms))
    return pa.table(cols)


def _funding(times_ms: np.ndarray, rates, hours=8.0) -> pa.Table:
    return pa.table(
        {
            "time": pa.array(times_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "rate": np.asarray(rates, float),
            "interval_hours": np.broadcast_to(float(hours), len(times_ms)).copy(),
        }
    )


def _key(kind: str, symbol: str, tf: str | None = "1h") -> PartitionKey:
    return PartitionKey("binance", Kind(kind), symbol, tf)


def _checks(problems: list[Problem], series: str | None = None) -> dict[str, list[Problem]]:
    out: dict[str, list[Problem]] = {}
    for p in problems:
        if series is None or p.series == series:
            out.setdefault(p.check, []).append(p)
    return out


@pytest.fixture()
def clean(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path / "cat")
    t = T0 + np.arange(48) * H
    cat.write(_key("spot", "BTCUSDT"), _bars(t, 100.0))
    cat.write(_key("perp", "BTCUSDT"), _bars(t, 100.5))
    cat.write(_key("mark", "BTCUSDT"), _bars(t, 100.4, volume=False))
    cat.write(_key("funding", "BTCUSDT", None), _funding(T0 + np.arange(6) * 8 * H, [1e-4] * 6))
    cat.write(_key("spot", "PEPEUSDT"), _bars(t, 1e-5))
    cat.write(_key("perp", "1000PEPEUSDT"), _bars(t, 1.0001e-2))
    return cat


def test_clean_catalog_has_no_problems(clean: Catalog) -> None:
    problems = check_catalog(clean)
    assert problems == []
    assert format_problems(problems) == "no problems found"


def test_info_rows(clean: Catalog) -> None:
    rows = catalog_info(clean)
    by = {(r["kind"], r["symbol"]): r for r in rows}
    spot = by[("spot", "BTCUSDT")]
    assert spot["rows"] == 48 and spot["first"] == "2024-01-01T00:00:00Z" and spot["last"] == "2024-01-02T23:00:00Z"
    assert spot["files"] == 1 and spot["missing_bars"] == 0 and spot["timeframe"] == "1h"
    f = by[("funding", "BTCUSDT")]
    assert f["settlements"] == 6 and f["intervals"] == {"8h": 6} and abs(f["rate_sum"] - 6e-4) < 1e-15
    json.dumps(rows)  # JSON-ready for --json
    text = format_info(rows)
    assert "BTCUSDT" in text and "intervals 8h x6" in text and "2024-01-02 23:00:00" in text
    assert format_info([]) == "catalog is empty"


def test_gaps_are_listed_with_ranges(clean: Catalog) -> None:
    t = T0 + np.arange(48) * H
    keep = np.ones(48, bool)
    keep[[5, 6, 7, 30]] = False
    clean.write(_key("spot", "ETHUSDT"), _bars(t[keep]))
    gaps = _checks(check_catalog(clean, symbols=["ETHUSDT"]))["gaps"]
    assert [(p.time, p.count, p.severity) for p in gaps] == [
        ("2024-01-01T05:00:00Z", 3, "warning"),
        ("2024-01-02T06:00:00Z", 1, "warning"),
    ]
    assert gaps[0].message == "3 missing 1h bars: 2024-01-01 05:00 .. 2024-01-01 07:00"
    info = {r["symbol"]: r for r in catalog_info(clean) if r["kind"] == "spot"}
    assert info["ETHUSDT"]["missing_bars"] == 4


def test_format_problems_collapses_long_lists(clean: Catalog) -> None:
    t = T0 + np.arange(100) * H
    clean.write(_key("spot", "ETHUSDT"), _bars(t[::2]))  # 49 one-bar gaps
    problems = check_catalog(clean, symbols=["ETHUSDT"])
    assert len(problems) == 49
    text = format_problems(problems)
    assert "... and 44 more (gaps" in text and text.endswith("0 error(s), 49 warning(s)")
    assert len(text.splitlines()) == 2 + 5 + 1 + 1
    assert dataclasses.is_dataclass(problems[0])
    with pytest.raises(dataclasses.FrozenInstanceError):
        problems[0].count = 3  # type: ignore[misc]
    json.dumps([dataclasses.asdict(p) for p in problems], default=str)


def _write_raw(cat: Catalog, key: PartitionKey, table: pa.Table, year: int = 2024) -> Path:
    path = key.directory(cat.root) / f"year={year}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def test_damaged_files_written_behind_the_catalog(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    t = T0 + np.arange(10) * H
    bad = _bars(t).to_pydict()
    bad["time"][4] = bad["time"][3]  # duplicate
    bad["close"][6] = float("nan")
    bad["low"][7] = -1.0
    bad["high"][8] = 50.0  # high below open/close
    _write_raw(cat, _key("spot", "BTCUSDT"), pa.table(bad))
    back = _bars(t).to_pydict()
    back["time"][2], back["time"][3] = back["time"][3], back["time"][2]
    _write_raw(cat, _key("perp", "ETHUSDT"), pa.table(back))
    path = _write_raw(cat, _key("mark", "XRPUSDT"), _bars(t, volume=False))
    path.write_bytes(path.read_bytes()[:100])
    problems = check_catalog(cat)
    c = _checks(problems)
    assert c["duplicates"][0].series == "binance/spot/1h/BTCUSDT" and c["duplicates"][0].count == 1
    assert c["nan"][0].time == "2024-01-01T06:00:00Z" and "'close'" in c["nan"][0].message
    assert "year=2024.parquet" in c["nan"][0].message and "row 6" in c["nan"][0].message
    assert c["non_positive_price"][0].count == 1 and "'low'" in c["non_positive_price"][0].message
    assert c["ohlc"][0].count == 1 and "row 8" in c["ohlc"][0].message
    assert c["non_monotonic"][0].series == "binance/perp/1h/ETHUSDT"
    assert c["unreadable"][0].series == "binance/mark/1h/XRPUSDT" and "year=2024.parquet" in c["unreadable"][0].message
    assert all(
        p.severity == "error" for k in ("duplicates", "nan", "ohlc", "non_monotonic", "unreadable") for p in c[k]
    )
    assert "error(s)" in format_problems(problems)
    # info still works and says which series cannot be read
    info = {r["symbol"]: r for r in catalog_info(cat)}
    assert "error" in info["XRPUSDT"] and "ERROR" in format_info(catalog_info(cat))


def test_schema_problem_reported_as_invalid(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    _write_raw(cat, _key("spot", "BTCUSDT"), _bars(T0 + np.arange(3) * H).drop_columns(["close"]))
    (p,) = check_catalog(cat)
    assert (p.severity, p.check) == ("error", "invalid") and "'close'" in p.message


def test_funding_checks(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    t = T0 + np.arange(8) * 8 * H
    t = np.delete(t, 4)  # one missing settlement (16h gap)
    rates = np.full(len(t), 1e-4)
    rates[2] = 0.05  # beyond any cap (but not "percent" per the write gate)
    cat.write(_key("funding", "BTCUSDT", None), _funding(t, rates))
    t2 = T0 + np.arange(3) * 8 * H + 30 * 60_000  # settlements at :30
    cat.write(_key("funding", "ETHUSDT", None), _funding(t2, [1e-4] * 3))
    c = _checks(check_catalog(cat))
    (out,) = c["funding_outlier"]
    assert out.severity == "error" and out.time == "2024-01-01T16:00:00Z" and "0.05" in out.message
    (sp,) = c["funding_spacing"]
    assert sp.severity == "warning" and "16h before 2024-01-02 16:00" in sp.message
    (off,) = c["funding_off_hour"]
    assert off.series == "binance/funding/ETHUSDT" and off.count == 3


def test_spot_perp_misalignment_and_divergence(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    t = T0 + np.arange(24) * H
    cat.write(_key("spot", "BTCUSDT"), _bars(t))
    cat.write(_key("perp", "BTCUSDT"), _bars(t + 30 * 60_000))  # half an hour off
    price = np.full(24, 1e-5)
    cat.write(_key("spot", "PEPEUSDT"), _bars(t, price))
    perp = price * 1000
    perp[5] *= 1.2
    cat.write(_key("perp", "1000PEPEUSDT"), _bars(t, perp))  # 1000x: only one bar diverges
    cat.write(_key("spot", "ETHUSDT"), _bars(t, 100.0))
    cat.write(_key("perp", "ETHUSDT"), _bars(t, 1000.0))  # wrong unit everywhere
    c = _checks(check_catalog(cat))
    (mis,) = c["misaligned"]
    assert mis.severity == "error" and "BTCUSDT" in mis.series and "30 min" in mis.message
    div = {p.series: p for p in c["basis_divergence"]}
    pepe = div["binance/perp/1h/1000PEPEUSDT vs PEPEUSDT"]
    assert pepe.severity == "warning" and pepe.count == 1 and pepe.time == "2024-01-01T05:00:00Z"
    eth = div["binance/perp/1h/ETHUSDT vs ETHUSDT"]
    assert eth.severity == "error" and "+900.00%" in eth.message


# --------------------------------------------------------------------------- real data
@pytest.fixture(scope="module")
def real_cat(tmp_path_factory: pytest.TempPathFactory) -> Catalog:
    if not (SHARED / "binance").is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    cat = Catalog(tmp_path_factory.mktemp("realq") / "catalog")
    ingest_freqtrade(SHARED / "binance", cat, symbols=["BTCUSDT", "XTZUSDT", "BCHUSDT", "ENAUSDT", "PEPEUSDT"])
    return cat


@pytest.mark.shared_data
def test_real_check_reports_btc_spot_gap_and_no_errors(real_cat: Catalog) -> None:
    problems = check_catalog(real_cat)
    assert not [p for p in problems if p.severity == "error"], format_problems(problems)
    btc_gaps = [p for p in problems if p.series == "binance/spot/1h/BTCUSDT" and p.check == "gaps"]
    feb19 = [p for p in btc_gaps if p.time and p.time.startswith("2020-02-19")]
    assert len(feb19) == 1 and feb19[0].count == 5
    assert "2020-02-19 12:00 .. 2020-02-19 16:00" in feb19[0].message
    # the 166-day hole in the ENA -8h- funding file is reported
    assert any(p.series == "binance/funding/ENAUSDT" and p.check == "funding_spacing" for p in problems)
    # only BTC spot is checked when asked
    only = check_catalog(real_cat, symbols=["BTCUSDT"])
    assert only and all("BTCUSDT" in p.series for p in only)


@pytest.mark.shared_data
def test_real_info(real_cat: Catalog) -> None:
    rows = {(r["kind"], r["timeframe"], r["symbol"]): r for r in catalog_info(real_cat)}
    btc = rows[("funding", None, "BTCUSDT")]
    assert btc["settlements"] == 7323 and abs(btc["rate_sum"] - 0.79395571) < 1e-9
    assert btc["first"] == "2019-09-10T08:00:00Z" and btc["intervals"] == {"8h": 7323}
    assert rows[("funding", None, "XTZUSDT")]["intervals"] == {"1h": 52, "4h": 1789, "8h": 242}
    assert ("perp", "1h", "1000PEPEUSDT") in rows and ("mark", "8h", "1000PEPEUSDT") in rows


@pytest.mark.parametrize("what", ["missing", "file", "empty", "not_a_catalog"])
def test_check_refuses_what_is_not_a_catalog(tmp_path, what):
    """A check that passes on nothing is an error, not "no problems found"."""
    from data.catalog import Catalog
    from data.errors import DataError
    from data.quality import check_catalog

    root = tmp_path / "cat"
    if what == "file":
        root.write_text("x")
    elif what == "empty":
        root.mkdir()
    elif what == "not_a_catalog":
        root.mkdir()
        (root / "BTC_USDT-1h.feather").write_text("x")
    match = {"missing": "does not exist", "file": "is a file, not a catalog folder"}.get(
        what, "holds no catalog series"
    )
    with pytest.raises(DataError, match=match):
        check_catalog(Catalog(root))


def test_binance_vision_ingest_of_no_zip_files_is_an_error(tmp_path):
    from data.catalog import Catalog
    from data.errors import DataError
    from data.ingest.binance_vision import ingest_binance_vision

    (tmp_path / "in").mkdir()
    with pytest.raises(DataError, match="no Binance zip files"):
        ingest_binance_vision(tmp_path / "in", Catalog(tmp_path / "cat"))
    assert not (tmp_path / "cat").exists()


def test_catalog_files_follow_the_umask(tmp_path, demo_catalog):
    """Catalog partitions and atomic outputs get the user's umask (mkstemp alone makes 0600)."""
    import os

    from data.io import FILE_MODE, write_text_atomic

    files = list(Path(demo_catalog.root).rglob("*.parquet"))
    assert files and all((f.stat().st_mode & 0o777) == FILE_MODE for f in files)
    out = write_text_atomic(tmp_path / "x.json", "{}")
    assert (out.stat().st_mode & 0o777) == FILE_MODE
    mask = os.umask(0)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask

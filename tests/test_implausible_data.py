"""Implausible values are caught at ingest and before every run (issue 13, point 4): funding stored
x100, one spot tick x1000, a funding schedule shifted by a timezone, a bad wick under a perp."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.app.cli import main
from data.catalog import Catalog
from data.errors import DataError
from data.ingest.freqtrade import ingest_freqtrade
from data.quality import check_catalog
from tests.test_freqtrade import _bars, _funding, _write
from tests.test_freqtrade_variants import _symbol_dir


def _source(tmp_path: Path, n: int = 24 * 20) -> Path:
    d = tmp_path / "ft"
    _symbol_dir(d, "AAA", "AAA", price=10.0, n=n)
    return d


def _funding_file(d: Path) -> Path:
    return d / "futures" / "AAA_USDT_USDT-1h-funding_rate.feather"


def _cli(*args, capsys) -> tuple[int, list[str]]:
    code = main([str(a) for a in args])
    return code, capsys.readouterr().err.strip().splitlines()


def test_funding_stored_in_percent_is_refused_at_ingest_naming_the_scale(tmp_path):
    d = _source(tmp_path)
    times = pd.date_range("2024-01-01", periods=61, freq="8h", tz="UTC")
    _write(_funding(times, np.full(len(times), 0.01)), _funding_file(d))  # 1e-4 stored as percent: x100
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError) as err:
        ingest_freqtrade(d, cat)
    msg = str(err.value)
    assert "funding_scale" in msg and "median |rate| is 0.01 per interval" in msg and "x100 the usual level" in msg
    assert not list(cat.keys())  # nothing written


def test_a_whole_bar_stored_x1000_is_refused_at_ingest_and_before_a_run(tmp_path, capsys):
    d = _source(tmp_path)
    spot = _bars("2024-01-01", 24 * 20, price=10.0)
    spot.loc[100, ["open", "high", "low", "close"]] *= 1000
    _write(spot, d / "AAA_USDT-1h.feather")
    with pytest.raises(DataError, match=r"price_spike.*2024-01-05 04:00 close 11110 between 11.0999 and 11.1201"):
        ingest_freqtrade(d, Catalog(tmp_path / "cat"))
    # a catalog that got it anyway (allowed at ingest): every run stops until it is allowed there too
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(d, cat, allow_errors=["price_spike"])
    out = tmp_path / "out"
    args = ["backtest", "--data", cat.root, "--symbols", "AAAUSDT", "--strategy", "always_carry", "--quiet"]
    code, err = _cli(*args, "--out", out, capsys=capsys)
    assert code == 1 and len(err) == 1 and "price_spike" in err[0] and "--allow-data-errors price_spike" in err[0]
    assert not out.exists()
    # a window that does not cover the bad bar is not concerned
    code, err = _cli(*args, "--out", out, "--start", "2024-01-06", capsys=capsys)
    assert code == 0, err


def test_funding_on_a_shifted_schedule_is_refused_naming_the_shift(tmp_path):
    d = _source(tmp_path)
    times = pd.date_range("2024-01-01 03:00", periods=60, freq="8h", tz="UTC")  # UTC+3 times read as UTC
    _write(_funding(times, np.full(len(times), 1e-4)), _funding_file(d))
    with pytest.raises(DataError) as err:
        ingest_freqtrade(d, Catalog(tmp_path / "cat"))
    msg = str(err.value)
    assert "funding_schedule" in msg and "60 of 60 settlements fall off" in msg and "shift them by -3h" in msg


def test_a_bad_wick_is_kept_at_ingest_but_stops_a_run_that_covers_it(tmp_path, capsys):
    d = _source(tmp_path)
    mark = _bars("2024-01-01", 24 * 20, price=10.0)
    mark.loc[200, "high"] = mark.loc[200, "close"] * 2000  # a mark high 2,000x: liquidates any short perp
    _write(mark, d / "futures" / "AAA_USDT_USDT-1h-mark.feather")
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(d, cat)  # real data has such ticks (OKX ADA mark 2020-03-13): kept as recorded
    (wick,) = [p for p in check_catalog(cat) if p.check == "price_wick"]
    assert wick.severity == "warning" and "2024-01-09 08:00" in wick.message
    out = tmp_path / "out"
    args = ["backtest", "--data", cat.root, "--symbols", "AAAUSDT", "--strategy", "always_carry", "--quiet"]
    code, err = _cli(*args, "--out", out, capsys=capsys)
    assert code == 1 and "price_wick" in err[0] and "--allow-data-errors price_wick" in err[0]
    code, err = _cli(*args, "--out", out, "--allow-data-errors", "price_wick", capsys=capsys)
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert [p["check"] for p in summary["data_errors_allowed"]] == ["price_wick"]
    assert summary["portfolios"][0]["n_liquidations"] == 1  # what the bad tick does when allowed through

"""Implausible values are caught at ingest and before every run (issue 13, point 4): funding stored
x100, one spot tick (or two, three consecutive bars) x1000, a funding schedule shifted by a timezone,
a bad wick under a perp. Each refusal names the file, the column and the first rows, and writes
nothing."""

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
from data.quality import check_catalog, spike_runs
from tests.test_freqtrade import _bars, _funding, _write
from tests.test_freqtrade_variants import _symbol_dir

#: The catalog file of the spot bars of 2024.
SPOT_2024 = "venue=binance/kind=spot/timeframe=1h/symbol=AAAUSDT/year=2024.parquet"


def _source(tmp_path: Path, n: int = 24 * 20) -> Path:
    d = tmp_path / "ft"
    _symbol_dir(d, "AAA", "AAA", price=10.0, n=n)
    return d


def _funding_file(d: Path) -> Path:
    return d / "futures" / "AAA_USDT_USDT-1h-funding_rate.feather"


def _written(root: Path) -> list[str]:
    """Every file under a catalog folder (none when the folder was not created)."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


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
    assert "AAA_USDT_USDT-1h-funding_rate.feather" in msg and "column 'rate'" in msg  # the file and the column
    assert "first at 2024-01-01" in msg  # the first row
    assert "Nothing was written" in msg
    assert not list(cat.keys()) and _written(tmp_path / "cat") == []  # nothing written


def test_a_whole_bar_stored_x1000_is_refused_at_ingest_and_before_a_run(tmp_path, capsys):
    d = _source(tmp_path)
    spot = _bars("2024-01-01", 24 * 20, price=10.0)
    spot.loc[100, ["open", "high", "low", "close"]] *= 1000
    _write(spot, d / "AAA_USDT-1h.feather")
    with pytest.raises(DataError, match=r"price_spike.*2024-01-05 04:00 close 11110 between 11.0999 and 11.1201") as e:
        ingest_freqtrade(d, Catalog(tmp_path / "cat"))
    assert "AAA_USDT-1h.feather" in str(e.value) and "column 'close'" in str(e.value)
    assert _written(tmp_path / "cat") == []  # the refused ingest wrote nothing
    # a catalog that got it anyway (allowed at ingest): every run stops until it is allowed there too
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(d, cat, allow_errors=["price_spike"])
    out = tmp_path / "out"
    args = ["backtest", "--data", cat.root, "--symbols", "AAAUSDT", "--strategy", "always_carry", "--quiet"]
    code, err = _cli(*args, "--out", out, capsys=capsys)
    assert code == 1 and len(err) == 1 and "price_spike" in err[0] and "--allow-data-errors price_spike" in err[0]
    # the catalog file and the row of the first bad bar, and the column
    assert f"column 'close', first in {SPOT_2024} row 100" in err[0]
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
    assert "AAA_USDT_USDT-1h-funding_rate.feather" in msg and "column 'time'" in msg  # the file and the column
    assert "first 2024-01-01 03:00" in msg  # the first row
    assert _written(tmp_path / "cat") == []  # nothing written


def test_two_consecutive_bars_stored_x1000_are_refused_at_ingest_and_before_a_run(tmp_path, capsys):
    """A run of bars stored x1000 (not only one) is a bad tick: +25,527% before this check."""
    d = _source(tmp_path)
    spot = _bars("2024-01-01", 24 * 20, price=10.0)
    spot.loc[[100, 101], ["open", "high", "low", "close"]] *= 1000
    _write(spot, d / "AAA_USDT-1h.feather")
    with pytest.raises(DataError) as err:
        ingest_freqtrade(d, Catalog(tmp_path / "cat"))
    msg = str(err.value)
    assert "AAA_USDT-1h.feather" in msg and "binance/spot/1h/AAAUSDT" in msg and "check 'price_spike'" in msg
    assert "column 'close'" in msg and "2 bar(s) in 1 run(s)" in msg
    assert "2024-01-05 04:00 .. 2024-01-05 05:00 closes 11110, 11120.1 between 11.0999 and 11.1302" in msg
    assert "first at 2024-01-05T04:00:00Z" in msg and "Nothing was written" in msg
    assert _written(tmp_path / "cat") == []
    # a catalog that holds them (allowed at ingest): a run is stopped, naming the file, row and column
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(d, cat, allow_errors=["price_spike"])
    out = tmp_path / "out"
    args = ["backtest", "--data", cat.root, "--symbols", "AAAUSDT", "--strategy", "always_carry", "--quiet"]
    code, lines = _cli(*args, "--out", out, capsys=capsys)
    assert code == 1 and len(lines) == 1 and "price_spike" in lines[0], lines
    assert f"column 'close', first in {SPOT_2024} row 100" in lines[0]
    assert not out.exists()


def test_a_real_crash_that_stays_down_is_not_a_spike(tmp_path):
    """Spot and perp fall 6x in one bar and stay there: a move, not a bad tick."""
    d = _source(tmp_path)
    fut = d / "futures"
    for frame, path in (
        (_bars("2024-01-01", 24 * 20, price=10.0), d / "AAA_USDT-1h.feather"),
        (_bars("2024-01-01", 24 * 20, price=10.01), fut / "AAA_USDT_USDT-1h-futures.feather"),
        (_bars("2024-01-01", 24 * 20, price=10.0), fut / "AAA_USDT_USDT-1h-mark.feather"),
    ):
        frame.loc[200:, ["open", "high", "low", "close"]] /= 6
        frame.loc[200, "open"] = frame.loc[199, "close"]  # the crash inside bar 200
        frame.loc[200, "high"] = frame.loc[200, "open"]
        _write(frame, path)
    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(d, cat)
    assert not [p for p in check_catalog(cat) if p.check == "price_spike" or p.severity == "error"]


@pytest.mark.parametrize(
    ("bad", "scale", "flagged"),
    [
        ([5], 1000, [5]),  # one bar x1000
        ([5, 6], 1000, [5, 6]),  # two
        ([5, 6, 7], 1e-3, [5, 6, 7]),  # three /1000
        ([5, 6, 7, 8], 1000, []),  # four: not told apart from a move that came back
        (list(range(5, 20)), 1 / 6, []),  # a crash that stays down
        ([5, 6], 5.5, [5, 6]),  # just over the factor
        ([5, 6], 4.5, []),  # under it
    ],
)
def test_spike_runs_is_one_rule_for_runs_of_one_to_three_bars(bad, scale, flagged):
    close = np.full(20, 10.0)
    close[bad] *= scale
    assert np.flatnonzero(spike_runs(close)).tolist() == flagged


def test_spike_runs_needs_the_bars_around_the_run_to_agree():
    close = np.array([10.0, 10, 1000, 1000, 300, 300, 300])  # up 100x, then down 3.3x: 1000 is no spike
    assert not spike_runs(close).any()
    close = np.array([10.0, 10, 1000, 10, 10_000, 10, 10])  # two separate one-bar spikes
    assert np.flatnonzero(spike_runs(close)).tolist() == [2, 4]


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

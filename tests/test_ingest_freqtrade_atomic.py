"""A freqtrade ingest is one transaction checked before it commits (issue 13, "Writes that are all
or nothing"): one bad file among good ones writes nothing; an explicit override lets it through."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.app.cli import main
from data.catalog import Catalog
from data.errors import DataError, UnknownNameError
from data.ingest.freqtrade import ingest_freqtrade
from tests.test_freqtrade import _funding, _write
from tests.test_freqtrade_variants import _symbol_dir


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    d = tmp_path / "ft"
    for base in ("AAA", "BBB", "CCC", "DDD"):
        _symbol_dir(d, base, base, price=10.0)
    # one funding file stored x500 (a settlement of 5% per 8h: beyond any exchange cap)
    times = pd.date_range("2024-01-01", periods=7, freq="8h", tz="UTC")
    rates = np.full(len(times), 1e-4)
    rates[3] = 0.05
    _write(_funding(times, rates), d / "futures" / "CCC_USDT_USDT-1h-funding_rate.feather")
    return d


def test_one_bad_series_among_good_ones_writes_nothing(source: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    _symbol_dir(tmp_path / "before", "EEE", "EEE", price=5.0)
    ingest_freqtrade(tmp_path / "before", cat)  # a catalog that already holds something
    before = _tree(cat.root)
    with pytest.raises(DataError) as err:
        ingest_freqtrade(source, cat)
    msg = str(err.value)
    assert "funding_outlier" in msg and "CCCUSDT" in msg and "2024-01-02 00:00" in msg
    assert _tree(cat.root) == before  # the 15 good series of AAA, BBB, DDD were not committed either


def test_the_override_lets_the_named_check_through_and_says_so(source: Path, tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    report = ingest_freqtrade(source, cat, allow_errors=["funding_outlier"])
    assert len(list(cat.keys())) == 16
    assert any("allowed error" in w and "funding_outlier" in w for w in report.warnings)
    with pytest.raises(UnknownNameError, match="did you mean 'funding_outlier'"):
        ingest_freqtrade(source, Catalog(tmp_path / "cat2"), allow_errors=["funding_outlie"])


def test_cli_ingest_refuses_then_accepts_with_allow_errors(source: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "cat"
    code = main(["data", "ingest", "freqtrade", str(source), "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].startswith("carry: error: ") and "--allow-errors" in err[0]
    assert not list(Catalog(out).keys())
    code = main(["data", "ingest", "freqtrade", str(source), "--out", str(out), "--allow-errors", "funding_outlier"])
    assert code == 0 and len(list(Catalog(out).keys())) == 16

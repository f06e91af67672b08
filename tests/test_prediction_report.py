"""The predicted-funding accuracy script on the real data (skipped where it is absent)."""

from __future__ import annotations

import json

import pytest

from data.catalog import Catalog
from strategies.prediction_report import main
from tests.conftest import shared_data_path

pytestmark = pytest.mark.shared_data


def test_prediction_report_on_real_data(tmp_path, capsys):
    from data.ingest.freqtrade import ingest_freqtrade

    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(shared_data_path("binance"), cat, symbols=["BTCUSDT", "DOTUSDT"])
    assert main(["--data", str(cat.root), "--symbols", "BTCUSDT,DOTUSDT", "--start", "2025-05-01"]) == 0
    rows = {r["symbol"]: r for r in json.loads(capsys.readouterr().out.strip().splitlines()[-1])}
    assert set(rows) == {"BTCUSDT", "DOTUSDT"}
    for r in rows.values():
        assert r["n"] > 1000
        assert 0 < r["mae_bps"] < 5  # bps per settlement
        assert r["sign_accuracy"] > 0.6
    # on BTC the formula beats "next = last settled rate"
    assert rows["BTCUSDT"]["mae_bps"] < rows["BTCUSDT"]["naive_mae_bps"]

"""The CLI end to end on the real shared data, in subprocesses, as a user runs it (from a
temporary working directory: nothing is written into the repository)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import shared_data_path
from tests.test_cli_data import carry

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def real_cat(tmp_path_factory):
    source = shared_data_path("binance")
    cat = tmp_path_factory.mktemp("cli-real") / "catalog"
    r = carry(
        "data", "ingest", "freqtrade", source, "--out", cat, "--symbols", "XTZUSDT,DOTUSDT,BCHUSDT", cwd=cat.parent
    )
    assert r.returncode == 0, r.stderr
    return cat


def test_scan_negative_funding_alts(real_cat, tmp_path):
    out = tmp_path / "scan"
    r = carry(
        "scan",
        "--data",
        real_cat,
        "--start",
        "2025-05-01",
        "--end",
        "2026-05-01",
        "--leverage",
        "2",
        "--out",
        out,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "Regimes: what carry and reverse carry earned" in r.stdout
    s = json.loads((out / "scan.json").read_text())
    xtz = next(x for x in s["symbols"] if x["symbol"] == "XTZUSDT")
    assert xtz["longest_negative_run"] == 86 and xtz["intervals_hours"] == "8h -> 1h -> 4h"
    assert xtz["funding_sum"] == pytest.approx(-0.1293, abs=5e-4)
    negative = [g for g in s["regimes"] if g["sign"] == "negative"]
    assert len(negative) >= 3
    for g in negative:  # in every negative regime the carry pays funding and the mirror collects it
        assert g["carry_funding_pnl"] < 0 < g["reverse_funding_pnl"], g


def test_compare_on_real_data_and_bad_symbols(real_cat, tmp_path):
    out = tmp_path / "cmp"
    r = carry(
        "compare",
        "--data",
        real_cat,
        "--symbols",
        "XTZUSDT,DOTUSDT,BCHUSDT",
        "--start",
        "2025-05-01",
        "--end",
        "2026-05-01",
        "--strategies",
        "always_carry,funding_sign",
        "--leverage",
        "2",
        "--out",
        out,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    s = json.loads((out / "summary.json").read_text())
    ports = {p["portfolio"]: p for p in s["portfolios"]}
    assert ports["always_carry"]["funding_pnl"] < 0
    assert ports["funding_sign"]["funding_pnl"] + ports["funding_sign"]["borrow_pnl"] > 0
    bad = carry(
        "compare",
        "--data",
        real_cat,
        "--symbols",
        "BTCUSDT",
        "--strategies",
        "always_carry",
        "--out",
        tmp_path / "bad",
        cwd=tmp_path,
    )
    assert bad.returncode == 1 and "no spot bars for BTCUSDT" in bad.stderr
    assert not (tmp_path / "bad").exists()


def test_readme_negative_funding_trips_and_months(real_cat, tmp_path):
    """The README's negative-funding example: the reverse carry's round trips (trades.parquet)
    and funding_sign's months are the figures the README prints."""
    from backtest.app import runs as app
    from backtest.app.commands import execute
    from reports.periods import period_returns

    out = tmp_path / "neg"
    r = carry(
        "compare", "--data", real_cat, "--symbols", "XTZUSDT,DOTUSDT,BCHUSDT", "--start", "2025-05-01",
        "--end", "2026-05-01", "--strategies", "always_carry,funding_sign,always_reverse",
        "--param", "funding_sign.entry=0.10", "--leverage", "2", "--out", out, cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    import pandas as pd

    trips = pd.read_parquet(out / "trades.parquet")
    rev = trips[trips["portfolio"] == "always_reverse"].reset_index(drop=True)
    assert list(rev["symbol"]) == ["XTZUSDT", "DOTUSDT", "DOTUSDT", "BCHUSDT"]
    assert list(rev["exit"]) == ["end", "exit", "end", "end"]
    assert rev["total_pnl"].round(2).tolist() == [109.61, -648.28, 70.38, -52.30]
    dot = rev.iloc[1]
    assert (round(dot["basis_pnl"], 2), round(dot["unhedged_pnl"], 2), int(dot["liquidations"])) == (-972.05, 454.69, 1)
    assert str(rev.iloc[2]["entry_time"]).startswith("2025-10-11 21:00")
    cfg = app.build_run_config(app.read_run_toml(out / "config.toml"), data_overrides={"catalog": str(real_cat)})
    run = execute(cfg)
    months = period_returns(run.result, run.targets, "month")
    fs = months[months["portfolio"] == "funding_sign"].reset_index(drop=True)
    assert len(fs) == 12
    assert fs["funding_pnl"].round(2).tolist()[:3] == [69.77, 13.18, 162.61]
    assert fs["total_pnl"].round(2).tolist()[-3:] == [-39.85, 18.08, 1.19]

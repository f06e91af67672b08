"""``carry backtest / compare / sweep / scan``: end to end on the demo dataset.

Most runs call ``backtest.app.cli.main`` in-process (the same code path as the console script,
without paying vectorbt's import once per test); one test runs the real console entry in a
subprocess.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from backtest.app.cli import main
from data.errors import ConfigError
from reports.keys import COMPONENT_KEYS, SUMMARY_KEYS
from tests.conftest import REPO

SYMS = "DEMOAUSDT,DEMOBUSDT"


@pytest.fixture(scope="module")
def demo_cat(tmp_path_factory):
    from data.synthetic import write_demo_catalog

    return write_demo_catalog(tmp_path_factory.mktemp("demo") / "catalog").root


def run(*args, capsys=None) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr() if capsys else ("", "")
    return code, out, err


def test_backtest_writes_every_output_and_they_reconcile(demo_cat, tmp_path, capsys):
    out = tmp_path / "bt"
    code, stdout, _ = run(
        "backtest",
        "--data",
        demo_cat,
        "--symbols",
        SYMS,
        "--strategy",
        "funding_threshold",
        "--param",
        "entry=0.10",
        "--param",
        "exit=0.02",
        "--leverage",
        "2",
        "--out",
        out,
        capsys=capsys,
    )  # (no --quiet: it drops the table)
    assert code == 0
    assert "funding_threshold" in stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "components.parquet",
        "config.toml",
        "equity.parquet",
        "events.parquet",
        "report.html",
        "summary.json",
        "trades.parquet",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["keys"] == list(SUMMARY_KEYS)
    assert len(summary["columns"]) == 2
    for col in summary["columns"]:
        assert set(SUMMARY_KEYS) <= set(col)
    port = summary["portfolios"][0]
    # the identity, from the files: equity change = sum of the per-bar components
    comps = pd.read_parquet(out / "components.parquet")
    equity = pd.read_parquet(out / "equity.parquet")
    parts = list(COMPONENT_KEYS)  # the *_pnl keys of the components
    total = comps[parts].to_numpy().sum()
    assert equity[f"portfolio:{port['portfolio']}"].iloc[-1] - port["initial_capital"] == pytest.approx(total, rel=1e-9)
    assert port["final_equity"] == pytest.approx(equity[f"portfolio:{port['portfolio']}"].iloc[-1], rel=1e-12)
    for k in parts:
        assert port[k] == pytest.approx(comps[k].sum(), rel=1e-9, abs=1e-9)
    assert port["basis_pnl"] == pytest.approx(port["spot_pnl"] + port["perp_pnl"])
    # events: the documented columns and kinds
    ev = pd.read_parquet(out / "events.parquet")
    assert {"time", "column", "symbol", "kind", "leg", "qty", "price", "rate", "cash"} <= set(ev.columns)
    assert set(ev["kind"]) <= {"fill", "funding", "borrow", "transfer", "liquidation"}
    assert str(ev["time"].dt.tz) == "UTC"
    fills = ev[ev["kind"] == "fill"]
    assert fills["qty"].notna().all() and ev.loc[ev["kind"] == "funding", "qty"].isna().all()
    assert ev.loc[ev["kind"] == "funding", "rate"].notna().all()
    assert port["n_trades"] == len(fills)
    assert port["funding_pnl"] == pytest.approx(ev.loc[ev["kind"] == "funding", "cash"].sum(), rel=1e-9)
    # the effective config reproduces the run
    again = tmp_path / "again"
    code, _, _ = run("backtest", "--config", out / "config.toml", "--out", again, "--quiet", capsys=capsys)
    assert code == 0
    s2 = json.loads((again / "summary.json").read_text())
    assert s2["run_hash"] == summary["run_hash"]
    assert s2["portfolios"][0]["final_equity"] == pytest.approx(port["final_equity"], rel=1e-12)


def test_compare_sweep_and_walk_forward(demo_cat, tmp_path, capsys):
    out = tmp_path / "cmp"
    code, stdout, _ = run(
        "compare",
        "--data",
        demo_cat,
        "--symbols",
        SYMS,
        "--strategies",
        "always_carry,funding_sign,rotation",
        "--param",
        "funding_sign.entry=0.05",
        "--out",
        out,
        "--quiet",
        capsys=capsys,
    )
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert [p["portfolio"] for p in s["portfolios"]] == ["always_carry", "funding_sign", "rotation"]
    assert len(s["columns"]) == 6
    out = tmp_path / "sweep"
    code, stdout, _ = run(
        "sweep",
        "--data",
        demo_cat,
        "--symbols",
        SYMS,
        "--strategy",
        "funding_threshold",
        "--grid",
        "entry=0.05,0.1,0.2",
        "--grid",
        "exit=0,0.02",
        "--walk-forward",
        "90d:30d",
        "--out",
        out,
        capsys=capsys,
    )  # (no --quiet: it drops the walk-forward line)
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert len(s["portfolios"]) == 6
    assert s["walk_forward"]["n_folds"] >= 8
    assert "out-of-sample" in stdout
    html = (out / "report.html").read_text()
    assert "heatmap" in html and "Walk-forward" in html


def test_scan_reports_regimes_and_both_sides(demo_cat, tmp_path, capsys):
    out = tmp_path / "scan"
    code, stdout, _ = run("scan", "--data", demo_cat, "--out", out, "--quiet", capsys=capsys)
    assert code == 0
    s = json.loads((out / "scan.json").read_text())
    syms = {r["symbol"] for r in s["symbols"]}
    assert syms == {"DEMOAUSDT", "DEMOBUSDT", "DEMOCUSDT"}
    neg = [r for r in s["regimes"] if r["symbol"] == "DEMOBUSDT" and r["sign"] == "negative"]
    assert neg, "the demo's negative-funding regime is found"
    r = max(neg, key=lambda r: r["days"])
    assert r["days"] > 60
    # in a negative regime the carry pays funding and the reverse carry collects it
    assert r["carry_funding_pnl"] < 0 < r["reverse_funding_pnl"]
    assert r["reverse_borrow_pnl"] < 0


@pytest.mark.parametrize(
    "args, message, exit_code",
    [  # exit codes: 2 for settings (ConfigError), 1 for data problems (DataError)
        (["backtest", "--strategy", "fundng_threshold"], "did you mean 'funding_threshold'", 2),
        (["backtest", "--strategy", "funding_threshold", "--param", "entyr=0.1"], "did you mean", 2),
        (["backtest", "--strategy", "funding_threshold", "--param", "entry=10"], "percent", 2),
        (["backtest", "--strategy", "always_carry", "--set", "perp_leverag=2"], "did you mean 'perp_leverage'", 2),
        (["backtest", "--strategy", "always_carry", "--symbols", "NOPEUSDT"], "no spot bars for NOPEUSDT", 1),
        (
            ["backtest", "--strategy", "always_carry", "--start", "2030-01-01", "--end", "2031-01-01"],
            r"no tradable bar from 2030-01-01 00:00 to 2031-01-01 00:00 UTC .*DEMOAUSDT \(spot 2024-01-01\.\.2024-12-30",
            1,
        ),
    ],
)
def test_bad_input_is_one_clear_line_and_writes_nothing(demo_cat, tmp_path, capsys, args, message, exit_code):
    out = tmp_path / "out"
    full = list(args)
    if "--symbols" not in full:
        full += ["--symbols", SYMS]
    code, _, err = run(*full, "--data", demo_cat, "--out", out, "--quiet", capsys=capsys)
    assert code == exit_code
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("carry: error: ")
    assert re.search(message, lines[0], re.IGNORECASE), lines[0]
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_config_errors(demo_cat, tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[engine]\nperp_leverag = 2\n")
    code, _, err = run(
        "backtest",
        "--config",
        bad,
        "--strategy",
        "always_carry",
        "--symbols",
        SYMS,
        "--data",
        demo_cat,
        "--out",
        tmp_path / "o",
        capsys=capsys,
    )
    assert code == 2 and "did you mean 'perp_leverage'" in err  # settings: exit code 2
    bad.write_text('[data]\nsymbol = "BTCUSDT"\n')
    code, _, err = run("backtest", "--config", bad, "--out", tmp_path / "o", capsys=capsys)
    assert code == 2 and "did you mean 'symbols'" in err
    bad.write_text("[engine]\nborrow_annual_rate = -5\n")
    code, _, err = run(
        "backtest",
        "--config",
        bad,
        "--strategy",
        "always_carry",
        "--symbols",
        SYMS,
        "--data",
        demo_cat,
        "--out",
        tmp_path / "o",
        capsys=capsys,
    )
    assert code == 2 and "borrow_annual_rate" in err
    assert not (tmp_path / "o").exists()


def test_existing_output_is_refused_unless_overwrite(demo_cat, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    args = [
        "backtest",
        "--data",
        demo_cat,
        "--symbols",
        "DEMOAUSDT",
        "--strategy",
        "always_carry",
        "--out",
        out,
        "--quiet",
    ]
    code, _, err = run(*args, capsys=capsys)
    assert code == 1 and "already exists; pass --overwrite" in err
    assert (out / "keep.txt").read_text() == "mine"
    code, _, _ = run(*args, "--overwrite", capsys=capsys)
    assert code == 0 and not (out / "keep.txt").exists() and (out / "summary.json").exists()


def test_console_script_end_to_end(demo_cat, tmp_path):
    out = tmp_path / "sub"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "backtest",
            "backtest",
            "--data",
            str(demo_cat),
            "--symbols",
            "DEMOBUSDT",
            "--strategy",
            "funding_sign",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert "funding_sign" in r.stdout and (out / "report.html").exists()


def test_chunked_engine_run_equals_one_call(demo_cat, monkeypatch):
    """A long sweep runs in chunks of portfolios (for its progress bar); results are unchanged."""
    from backtest import load_market, run_backtest
    from backtest.app import commands
    from backtest.config import BacktestConfig
    from reports.metrics import stats_frame
    from strategies import run_strategy

    market = load_market(demo_cat, ["DEMOAUSDT", "DEMOBUSDT", "DEMOCUSDT"])
    targets = run_strategy("funding_threshold", market, {"entry_annualized": [0.02, 0.05, 0.1, 0.2, 0.3]})
    cfg = BacktestConfig(perp_leverage=3, margin_mode="cross", topup_margin_ratio=0.8)
    whole = run_backtest(market, targets, cfg)
    monkeypatch.setattr(commands, "GROUPS_PER_CALL", 2)
    for parallel_from in (10**12, 0):  # serial, then the portfolios on every core (numba threads)
        monkeypatch.setattr(commands, "PARALLEL_BAR_COLUMNS", parallel_from)
        for progress in (True, False):  # chunks of 2 portfolios (a progress bar), or one call
            parts = commands.run_engine_chunked(market, targets, cfg, progress=progress)
            np.testing.assert_array_equal(parts.equity.to_numpy(), whole.equity.to_numpy())
            np.testing.assert_array_equal(parts.group_equity.to_numpy(), whole.group_equity.to_numpy())
            for k in whole.components:
                np.testing.assert_array_equal(parts.components[k].to_numpy(), whole.components[k].to_numpy())
            pd.testing.assert_frame_equal(stats_frame(parts), stats_frame(whole))
            a = parts.events.sort_values(["time", "group", "column", "kind"], kind="stable").reset_index(drop=True)
            b = whole.events.sort_values(["time", "group", "column", "kind"], kind="stable").reset_index(drop=True)
            pd.testing.assert_frame_equal(a, b)
    assert (whole.events["kind"] == "transfer").any()


def test_scale_out_sweep_writes_a_report(demo_cat, tmp_path, capsys):
    out = tmp_path / "big"
    code, stdout, _ = run(
        "sweep",
        "--data",
        demo_cat,
        "--symbols",
        SYMS,
        "--strategy",
        "funding_threshold",
        "--grid",
        "entry=0.05,0.1",
        "--grid",
        "exit=0,0.02",
        "--symbol-chunk",
        "1",
        "--per-symbol",
        "--out",
        out,
        "--quiet",
        capsys=capsys,
    )
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "components.parquet",
        "config.toml",
        "equity.parquet",
        "events.parquet",
        "report.html",
        "summary.json",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["columns"]) == 8 and len(summary["portfolios"]) == 8
    assert set(SUMMARY_KEYS) <= set(summary["portfolios"][0]) and "lean" in summary
    html = (out / "report.html").read_text()
    assert "heatmap" in html and "Ranking" in html and "own portfolio" in html


def test_report_charts_follow_the_ranking_metric(demo_cat):
    """The portfolios that get component and margin charts are the best by the metric the user
    ranks by (``--rank-by``), not by Sharpe."""
    from backtest import load_market, run_backtest
    from backtest.config import BacktestConfig
    from reports.frames import column_summary, portfolio_summary
    from reports.report_data import ranked, report_data
    from strategies import run_strategy

    market = load_market(demo_cat, ["DEMOAUSDT", "DEMOBUSDT"])
    grid = {"entry_annualized": [0.02, 0.05, 0.1, 0.2, 0.3, 0.4]}
    targets = run_strategy("funding_threshold", market, grid)
    cfg = BacktestConfig(perp_leverage=2)
    result = run_backtest(market, targets, cfg)
    portfolios = portfolio_summary(result, targets)
    columns = column_summary(result, targets)
    by_sharpe = ranked(portfolios, "sharpe")
    assert len(set(portfolios["sharpe"])) == len(portfolios)  # a strict order
    # a ranking metric that orders the portfolios the other way round from Sharpe
    portfolios["total_return"] = pd.Series(np.arange(len(by_sharpe), dtype=float), index=by_sharpe)
    by_return = ranked(portfolios, "total_return")
    assert by_return == by_sharpe[::-1]

    def shown(rank_by):
        data = report_data(
            "t", market, targets, result, portfolios, columns, engine=cfg, run_id="x", ranking_by=rank_by
        )
        assert list(data.components) == list(data.margin_ratio.columns)
        return list(data.components)

    assert shown("total_return") == by_return  # every portfolio, in the order of the ranking
    assert shown("sharpe") == by_sharpe
    assert shown(None) == list(portfolios.index)  # no ranking: in their order
    with pytest.raises(ConfigError, match="did you mean 'sharpe'"):
        ranked(portfolios, "sharp")

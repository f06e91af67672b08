"""Lean files by size (issue 17): a run of more than ``reports.frames.LEAN_BAR_COLUMNS`` bar-columns
writes equity and components at each UTC day's last bar and events without the per-settlement
funding and per-hour borrow rows, says so in ``summary.json`` ``lean``; ``--full-outputs``
writes every bar whatever the size. The lean files hold the full files' own numbers.

Runs call ``backtest.app.cli.main`` in-process on the demo dataset, with the threshold lowered.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.app.cli import main
from reports import frames

SWEEP = ["--symbols", "DEMOAUSDT,DEMOBUSDT", "--strategy", "funding_threshold", "--grid", "entry=0.02,0.1"]


@pytest.fixture(scope="module")
def runs(demo_catalog, tmp_path_factory) -> dict[str, Path]:
    """The same sweep written by size below the threshold (full), above it (lean) and above it
    with --full-outputs."""
    base = tmp_path_factory.mktemp("lean")
    mp = pytest.MonkeyPatch()
    out = {}
    try:
        for name, limit, extra in (("small", None, []), ("lean", 10, []), ("forced", 10, ["--full-outputs"])):
            if limit is not None:
                mp.setattr(frames, "LEAN_BAR_COLUMNS", limit)
            out[name] = base / name
            assert main(["-q", "sweep", "--data", str(demo_catalog.root), *SWEEP, "--out", str(out[name]), *extra]) == 0
    finally:
        mp.undo()
    return out


def summary(d: Path) -> dict:
    return json.loads((d / "summary.json").read_text())


def test_small_runs_write_every_bar_and_say_nothing_is_lean(runs):
    s = summary(runs["small"])
    assert s["lean"] == {}
    assert s["components_granularity"] == "bar"
    ev = pd.read_parquet(runs["small"] / "events.parquet")
    assert (ev["kind"] == "funding").any()


def test_forced_full_outputs_equal_the_small_run_files(runs):
    assert summary(runs["forced"])["lean"] == {}
    for name in ("equity.parquet", "components.parquet", "events.parquet"):
        a = pd.read_parquet(runs["small"] / name)
        b = pd.read_parquet(runs["forced"] / name)
        pd.testing.assert_frame_equal(a, b)


def test_lean_summary_names_each_lean_file_and_the_figures_do_not_change(runs):
    lean, full = summary(runs["lean"]), summary(runs["small"])
    assert set(lean["lean"]) == {"equity.parquet", "components.parquet", "events.parquet"}
    assert "1D" in lean["lean"]["equity.parquet"]
    assert lean["components_granularity"] == "day"
    assert lean["portfolios"] == full["portfolios"]
    assert lean["columns"] == full["columns"]
    assert set(lean) == set(full)


def test_lean_equity_is_the_full_equity_at_each_days_last_bar(runs):
    full = pd.read_parquet(runs["small"] / "equity.parquet")
    lean = pd.read_parquet(runs["lean"] / "equity.parquet")
    days = full.index.floor("1D")
    last = full[~days.duplicated(keep="last")]
    assert len(lean) == days.nunique() < len(full)
    pd.testing.assert_frame_equal(lean, last)


def test_lean_events_are_the_full_events_without_funding_and_borrow_rows(runs):
    full = pd.read_parquet(runs["small"] / "events.parquet")
    lean = pd.read_parquet(runs["lean"] / "events.parquet")
    want = full[~full["kind"].isin(["funding", "borrow"])].reset_index(drop=True)
    assert len(want) < len(full)
    pd.testing.assert_frame_equal(lean, want)


def test_lean_components_sum_the_full_components_by_day(runs):
    full = pd.read_parquet(runs["small"] / "components.parquet")
    lean = pd.read_parquet(runs["lean"] / "components.parquet")
    keys = [c for c in full.columns if c.endswith("_pnl")]
    want = full.assign(time=full["time"].dt.floor("1D")).groupby(["time", "column"], as_index=False)[keys].sum()
    got = lean.sort_values(["time", "column"], kind="stable").reset_index(drop=True)
    np.testing.assert_array_equal(got["time"].to_numpy(), want["time"].to_numpy())
    np.testing.assert_allclose(got[keys].to_numpy(), want[keys].to_numpy(), rtol=1e-12, atol=1e-9)


def test_full_outputs_with_memory_bounded_options_is_refused(demo_catalog, tmp_path, capsys):
    args = ["sweep", "--data", str(demo_catalog.root), *SWEEP, "--out", str(tmp_path / "x")]
    code = main([*args, "--full-outputs", "--max-memory", "1GB"])
    err = capsys.readouterr().err
    assert code != 0
    assert "--full-outputs" in err and "--workers" in err
    assert not (tmp_path / "x").exists()


def test_a_sweep_too_large_for_one_process_runs_memory_bounded(demo_catalog, tmp_path, capsys, monkeypatch):
    from backtest.app.scale import plan

    need = plan.in_process_bytes(8760, 2, 4)
    monkeypatch.setattr(plan, "available_memory", lambda: int(need))  # 'needs more than 80% of it'
    out = tmp_path / "big"
    code = main(["sweep", "--data", str(demo_catalog.root), *SWEEP, "--grid", "exit=0,0.01", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "runs in memory-bounded tasks instead" in err
    s = summary(out)
    assert s["plan"]["path"] == "memory_bounded" and s["plan"]["portfolios"] == 4
    assert {"equity.parquet", "components.parquet", "events.parquet"} <= set(s["lean"])


def test_a_walk_forward_too_large_for_one_process_is_refused(demo_catalog, tmp_path, capsys, monkeypatch):
    from backtest.app.scale import plan

    monkeypatch.setattr(plan, "available_memory", lambda: 1000)
    args = [
        "sweep",
        "--data",
        str(demo_catalog.root),
        *SWEEP,
        "--walk-forward",
        "90d:30d",
        "--out",
        str(tmp_path / "w"),
    ]
    assert main(args) == 2
    assert "this run needs about" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()

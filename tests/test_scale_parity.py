"""Scale-out computes what a local run computes (issue 14): the same `carry sweep` in process,
with ``--workers 2`` and on a real Dask ``LocalCluster`` (2 worker processes on 127.0.0.1) writes
the same tables, the same ``summary.json`` keys and values and the same report, for a threshold
grid over 3 symbols, a capital-weighted rotation, a walk-forward and ``--per-symbol``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from backtest.app.cli import main

SYMS = "DEMOAUSDT,DEMOBUSDT,DEMOCUSDT"
CASES = {
    "threshold_grid": ["--strategy", "funding_threshold", "--grid", "entry=0.05,0.1,0.2", "--grid", "exit=0,0.02"],
    "rotation": ["--strategy", "rotation", "--grid", "top_k=1,2", "--grid", "rebalance_hours=24,72"],
    "walk_forward": ["--strategy", "funding_threshold", "--grid", "entry=0.05,0.1,0.2", "--walk-forward", "90d:30d"],
    "per_symbol": ["--strategy", "funding_threshold", "--grid", "entry=0.05,0.1", "--per-symbol"],
}
FILES = ("equity.parquet", "components.parquet", "events.parquet")


@pytest.fixture(scope="module")
def cluster():
    distributed = pytest.importorskip("distributed")
    cl = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit="2GB",
        silence_logs=40,
    )
    yield cl
    cl.close()


def _sweep(demo: Path, out: Path, case: list[str], *extra: str) -> Path:
    code = main(["sweep", *case, "--data", str(demo), "--symbols", SYMS, "--out", str(out), "--quiet", *extra])
    assert code == 0
    return out


def _same_outputs(a: Path, b: Path) -> None:
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    sa, sb = json.loads((a / "summary.json").read_text()), json.loads((b / "summary.json").read_text())
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key] == sb[key], key
    for name in FILES:
        pd.testing.assert_frame_equal(pd.read_parquet(a / name), pd.read_parquet(b / name), check_exact=True)
    assert (a / "config.toml").read_text() == (b / "config.toml").read_text()
    assert (a / "report.html").read_text() == (b / "report.html").read_text()


@pytest.mark.parametrize("name", list(CASES))
def test_workers_and_a_dask_cluster_write_what_one_process_writes(demo_catalog, tmp_path, cluster, name):
    case = CASES[name]
    local = _sweep(demo_catalog.root, tmp_path / "local", case)
    pool = _sweep(demo_catalog.root, tmp_path / "workers", case, "--workers", "2", "--param-chunk", "1")
    dask = _sweep(demo_catalog.root, tmp_path / "dask", case, "--scheduler", cluster.scheduler_address)
    _same_outputs(local, pool)
    _same_outputs(local, dask)
    summary = json.loads((local / "summary.json").read_text())
    assert summary["columns"][0]["worst_margin_ratio"] is not None  # margin figures in every path
    if name == "per_symbol":
        assert len(summary["portfolios"]) == 6 and summary["portfolios"][0]["portfolio"].endswith(":DEMOAUSDT")
    elif name == "threshold_grid":
        assert len(summary["portfolios"]) == 6 and len(summary["columns"]) == 18  # 3 symbols share capital
    if name == "walk_forward":
        assert summary["walk_forward"]["folds"]


def test_memory_bounded_options_say_what_they_compute(demo_catalog, tmp_path, capsys):
    code = main(
        ["sweep", *CASES["threshold_grid"], "--data", str(demo_catalog.root), "--symbols", SYMS,
         "--out", str(tmp_path / "out"), "--max-memory", "2GB"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--per-symbol" in err[0] and not (tmp_path / "out").exists()

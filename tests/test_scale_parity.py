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
from tests.conftest import local_cluster

SYMS = "DEMOAUSDT,DEMOBUSDT,DEMOCUSDT"
CASES = {
    "threshold_grid": ["--strategy", "funding_threshold", "--grid", "entry=0.05,0.1,0.2", "--grid", "exit=0,0.02"],
    "rotation": ["--strategy", "rotation", "--grid", "top_k=1,2", "--grid", "rebalance_hours=24,72"],
    "walk_forward": ["--strategy", "funding_threshold", "--grid", "entry=0.05,0.1,0.2", "--walk-forward", "90d:30d"],
    "per_symbol": ["--strategy", "funding_threshold", "--grid", "entry=0.05,0.1", "--per-symbol"],
}
FILES = ("equity.parquet", "components.parquet", "events.parquet", "trades.parquet")


@pytest.fixture(scope="module")
def cluster():
    cl = local_cluster()
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
        if key == "plan":  # where it ran: the same portfolios, columns and bars
            assert {k: v for k, v in sa[key].items() if k not in ("path", "mode", "tasks")} == {
                k: v for k, v in sb[key].items() if k not in ("path", "mode", "tasks")
            }
            continue
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


LEAN_KINDS = ["fill", "transfer", "liquidation", "stop", "skip"]


def _same_lean_outputs(local: Path, lean: Path) -> None:
    """A memory-bounded run holds what one process computes, less what ``summary.json``
    ``lean`` says it keeps less of: the same keys and values (to rounding: time chunks merge
    variances), the equity at each day's last bar, the components summed per UTC day, and
    the fill, transfer, liquidation, stop and skip events."""
    sa, sb = json.loads((local / "summary.json").read_text()), json.loads((lean / "summary.json").read_text())
    assert [k for k in sb if k not in sa] == ["scale"] and [k for k in sa if k not in sb] == []
    unwritten = {name for name, why in sb["lean"].items() if why.startswith("not written")}
    assert sorted(p.name for p in local.iterdir() if p.name not in unwritten) == sorted(p.name for p in lean.iterdir())
    assert unwritten == {"trades.parquet"}
    for key in sa:
        if key == "components_granularity":
            assert sb[key] == "day"
            continue
        if key == "lean":  # a small run in one process keeps every bar
            assert sa[key] == {} and {"equity.parquet", "components.parquet", "events.parquet"} <= set(sb[key])
            continue
        if key == "plan":  # the memory-bounded plan adds its chunks, budget and batches
            assert sb[key]["path"] == "memory_bounded" and sa[key]["path"] == "in_process"
            assert all(sb[key][k] == sa[key][k] for k in ("portfolios", "columns", "bars"))
            continue
        assert_nested_close(sa[key], sb[key], key)
    eq_a, eq_b = pd.read_parquet(local / "equity.parquet"), pd.read_parquet(lean / "equity.parquet")
    day_last = eq_a.groupby(eq_a.index.floor("1D")).tail(1)
    assert list(eq_a.columns) == list(eq_b.columns) and (day_last.index == eq_b.index).all()
    pd.testing.assert_frame_equal(day_last, eq_b, check_exact=False, rtol=1e-12, check_freq=False)
    ca, cb = pd.read_parquet(local / "components.parquet"), pd.read_parquet(lean / "components.parquet")
    keys = [c for c in ca.columns if c.endswith("_pnl")]
    labels = ["column", "label", "symbol", "portfolio"]
    daily = ca.groupby([ca["time"].dt.floor("1D"), *labels], sort=False)[keys].sum().reset_index()
    daily = daily.sort_values(["time", "column"], kind="stable").reset_index(drop=True)
    assert list(ca.columns) == list(cb.columns)
    pd.testing.assert_frame_equal(daily[list(ca.columns)], cb, check_exact=False, rtol=1e-9, atol=1e-9)
    ea, eb = pd.read_parquet(local / "events.parquet"), pd.read_parquet(lean / "events.parquet")
    ea = ea[ea["kind"].isin(LEAN_KINDS)].reset_index(drop=True)
    assert len(ea) > 0
    pd.testing.assert_frame_equal(ea, eb, check_exact=False, rtol=1e-9, atol=1e-9)


def assert_nested_close(a, b, path: str) -> None:
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_nested_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_nested_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert b == pytest.approx(a, rel=1e-9, abs=1e-9), path
    else:
        assert a == b, path


LEAN_CASES = {k: v for k, v in CASES.items() if k != "walk_forward"}


@pytest.mark.parametrize("name", list(LEAN_CASES))
def test_memory_bounded_sweep_writes_what_one_process_computes(demo_catalog, tmp_path, name):
    """--max-memory with time chunks (and --workers 2): the same portfolios, shared capital
    unless --per-symbol, rotation included; what is lean is said in summary.json."""
    case = LEAN_CASES[name]
    local = _sweep(demo_catalog.root, tmp_path / "local", case)
    lean = _sweep(
        demo_catalog.root, tmp_path / "lean", case, "--max-memory", "2GB", "--time-chunk", "90D", "--workers", "2"
    )
    plan = json.loads((lean / "summary.json").read_text())["plan"]
    assert plan["time_chunk_bars"] == 90 * 24 and plan["n_tasks"] >= 2
    _same_lean_outputs(local, lean)


def test_memory_bounded_sweep_on_a_dask_cluster(demo_catalog, tmp_path, cluster):
    """The memory-bounded path on a real LocalCluster: shared-capital portfolios in time chunks,
    the files of one process (lean where summary.json says)."""
    case = CASES["threshold_grid"]
    local = _sweep(demo_catalog.root, tmp_path / "local", case)
    lean = _sweep(
        demo_catalog.root, tmp_path / "dask", case, "--max-memory", "1GB", "--time-chunk", "120D",
        "--param-chunk", "3", "--scheduler", cluster.scheduler_address,
    )  # fmt: skip
    plan = json.loads((lean / "summary.json").read_text())["plan"]
    assert plan["mode"].startswith("dask[") and plan["n_tasks"] == 2 and plan["symbol_chunk"] == 3
    _same_lean_outputs(local, lean)


def test_memory_bounded_walk_forward_is_refused_with_the_way_out(demo_catalog, tmp_path, capsys):
    code = main(
        ["sweep", *CASES["walk_forward"], "--data", str(demo_catalog.root), "--symbols", SYMS,
         "--out", str(tmp_path / "out"), "--max-memory", "2GB"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--workers" in err[0] and not (tmp_path / "out").exists()

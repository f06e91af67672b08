"""A run too large for the machine is refused before it allocates anything (issue 13: a 50,000-set
grid used to die after 40 s with a raw MemoryError at 8.2 GB)."""

from __future__ import annotations

import time

import numpy as np

from backtest.app.cli import main
from backtest.app.scale import plan


def test_a_walk_forward_too_large_for_memory_is_refused_at_once_with_advice_that_works(demo_catalog, tmp_path, capsys):
    # (a plain sweep this large runs in memory-bounded tasks instead: tests/test_lean_outputs.py;
    # a walk-forward needs every bar of every portfolio in one process, so it is refused)
    entries = ",".join(f"{x:.6f}" for x in np.linspace(0.05, 0.5, 50_000))
    out = tmp_path / "out"
    t = time.perf_counter()
    code = main(
        ["sweep", "--strategy", "funding_threshold", "--grid", f"entry={entries}", "--data", str(demo_catalog.root),
         "--symbols", "DEMOAUSDT,DEMOBUSDT,DEMOCUSDT", "--walk-forward", "90d:30d", "--out", str(out), "--quiet"]
    )  # fmt: skip
    elapsed = time.perf_counter() - t
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not out.exists(), err
    assert err[0].startswith("carry: error: this run needs about ")
    assert "(50,000 parameter set(s) x 3 symbol(s) x 8,760 bars" in err[0]
    # the advice is one that works for a walk-forward (the memory-bounded options refuse it)
    assert "--walk-forward needs every portfolio's equity at every bar in one process" in err[0]
    assert "sweep fewer parameter sets or symbols, a shorter window or longer bars (--freq 4h)" in err[0]
    assert "--max-memory" not in err[0]
    assert elapsed < 30  # refused up front (the run itself would take hours and ~370 GB)


def test_the_estimate_follows_the_measured_model():
    # 300 sets x 3 symbols x 8,760 bars measured at 2.70 GB peak
    est = plan.in_process_bytes(8_736, 3, 900)
    assert 2.2e9 < est < 3.2e9


def test_full_outputs_too_large_for_memory_is_refused_naming_what_to_drop(demo_catalog, tmp_path, capsys):
    entries = ",".join(f"{x:.6f}" for x in np.linspace(0.05, 0.5, 50_000))
    out = tmp_path / "out"
    code = main(
        ["sweep", "--strategy", "funding_threshold", "--grid", f"entry={entries}", "--data", str(demo_catalog.root),
         "--symbols", "DEMOAUSDT,DEMOBUSDT,DEMOCUSDT", "--full-outputs", "--out", str(out), "--quiet"]
    )  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and not out.exists(), err
    assert "--full-outputs writes every bar of every portfolio from one process: drop --full-outputs" in err[0]

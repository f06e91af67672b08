"""``carry compile``: compile carry's numba kernels into numba's on-disk cache, ahead of the first run.

A fresh install has an empty cache: its first backtest would compile the simulation kernels
(the engine's fast and general kernels and their multi-threaded driver, the statistics, the
strategies' signal kernels) before it runs, most of a minute on a 2-core machine. The install
command of the README runs ``carry compile`` once after ``pip install``; every later process
loads the compiled kernels from the cache (``__pycache__`` beside each module, or
``NUMBA_CACHE_DIR``) in about a second.

The kernels are compiled by what compiles them in real use: the command runs, in a temporary
directory and in parallel processes (one per core), the ``carry`` commands whose runs need
them on the built-in demo dataset (the same array types, hence the same compiled versions, as
a user's runs): the demo (five strategies, portfolios of several columns: the general
kernel), one-column portfolios (the fast kernel), a sweep large enough to run on every core
(the multi-threaded driver), cross margin with top-ups, a spot/perp hedge between two demo venues
(the spread kernel, one compiled version for perp and spot legs and one whose legs switch venues, and best_venue_carry), the same hedges in cross margin per
venue (its driver) and every built-in strategy. A
process that finds a kernel already in the cache loads it instead, so running the command
again costs a few seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from data.errors import CarryError

DEMO = "DEMOAUSDT,DEMOBUSDT,DEMOCUSDT"
#: Name -> the ``carry`` arguments of a run that compiles that part (``{cat}``: the demo catalog,
#: ``{out}``: an output directory). Heaviest first: they start first.
JOBS: dict[str, list[str]] = {
    # (first: the two spread kernels, each about a minute, compile side by side)
    "hedges across venues whose legs switch venues (spread kernel, best_venue_carry)": [
        "spread",
        "--data",
        "{cat}",
        "--venues",
        "binance,bybit,okx",
        "--leg-a",
        "spot",
        "--strategy",
        "best_venue_carry",
        "--symbols",
        "DEMOA,DEMOB",
        "--out",
        "{out}",
    ],
    "hedges across two venues (spread kernel)": [
        "spread",
        "--data",
        "{cat}",
        "--venues",
        "binance,bybit",
        "--leg-a",
        "spot",
        "--strategy",
        "hold",
        "--symbols",
        "DEMOA,DEMOB",
        "--out",
        "{out}",
    ],
    "hedges across two venues in cross margin (spread cross kernel)": [
        "spread",
        "--data",
        "{cat}",
        "--venues",
        "binance,bybit",
        "--strategy",
        "hold",
        "--margin-mode",
        "cross",
        "--symbols",
        "DEMOA,DEMOB",
        "--out",
        "{out}",
    ],
    "sweep on every core (multi-threaded driver)": [
        "sweep",
        "--data",
        "{cat}",
        "--symbols",
        DEMO,
        "--strategy",
        "funding_threshold",
        "--grid",
        "entry=0.04,0.06,0.08,0.1,0.15,0.2,0.3,0.4",
        "--grid",
        "exit=-0.05,-0.04,-0.03,-0.02,-0.01,0,0.005,0.01,0.02,0.03",
        "--out",
        "{out}",
    ],
    "demo (general kernel, five strategies, report)": ["demo", "--data", "{cat}", "--out", "{out}"],
    "one-column portfolios (fast kernel, basis_aware)": [
        "sweep",
        "--data",
        "{cat}",
        "--symbols",
        DEMO,
        "--per-symbol",
        "--strategy",
        "basis_aware",
        "--grid",
        "entry_z=1,2",
        "--out",
        "{out}",
    ],
    "cross margin with top-ups (general kernel)": [
        "backtest",
        "--data",
        "{cat}",
        "--symbols",
        DEMO,
        "--strategy",
        "funding_sign",
        "--set",
        "margin_mode=cross",
        "--set",
        "topup_margin_ratio=0.8",
        "--out",
        "{out}",
    ],
}


def run_compile(workers: int | None = None, jobs: dict[str, list[str]] | None = None) -> dict[str, float]:
    """Run ``jobs`` (default :data:`JOBS`) as ``carry -q`` subprocesses on the demo dataset, at
    most ``workers`` (default: the cores) at a time. Returns each job's seconds; a failing job
    raises :class:`CarryError` with its error output."""
    from concurrent.futures import ThreadPoolExecutor

    from data.synthetic import write_demo_catalog

    jobs = JOBS if jobs is None else jobs
    workers = max(1, workers or os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="carry-compile-") as tmp:
        cat = write_demo_catalog(Path(tmp) / "catalog").root
        write_demo_catalog(cat, seed=8, venue="bybit")  # more venues for the spread runs (the
        write_demo_catalog(cat, seed=9, venue="okx")  # kernel whose legs switch venues too)

        def run(k: int, name: str, argv: list[str]) -> tuple[str, float, int, str]:
            args = [a.format(cat=cat, out=Path(tmp) / f"out{k}") for a in argv]
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "backtest", "-q", *args], capture_output=True, text=True)
            return name, time.perf_counter() - t, r.returncode, r.stderr

        with ThreadPoolExecutor(workers) as pool:
            done = list(pool.map(lambda item: run(item[0], *item[1]), enumerate(jobs.items())))
    for name, _, code, err in done:
        if code != 0:
            raise CarryError(f"the {name} run of carry compile failed ({code}): {err.strip()[-2000:]}")
    return {name: sec for name, sec, _, _ in done}


def cmd_compile(args) -> int:
    """``carry compile``: compile the kernels and print what each part took."""
    t = time.perf_counter()
    took = run_compile(args.workers)
    for name, sec in took.items():
        print(f"{name}: {sec:.1f} s")
    print(f"compiled carry's kernels into numba's cache in {time.perf_counter() - t:.1f} s")
    return 0

"""Benchmark: a user's ``carry sweep`` end to end, by stage (``python -m backtest.app.bench_sweep``).

Ingests BTC, ETH and XRP (hourly spot, perp, mark and funding) from ``../shared/data/binance``
into a temporary catalog (or uses ``--catalog``), then runs, as a user would, in a fresh Python
process::

    carry -v sweep --data CATALOG --symbols BTCUSDT,ETHUSDT,XRPUSDT --start 2022-01-01 --end 2025-01-01 \\
        --strategy funding_threshold --grid entry=<N values> --grid exit=<M values> --out OUT

(``--sets`` parameter sets, 100 by default: 300 columns) and prints the wall time, the time
of each stage from the command's own ``-v`` lines (load data, strategies, engine, figures,
report data, write outputs; ``imports`` = wall time - the command's total: interpreter start and
imports), each stage's share, the engine's share of the whole, and the size of the files written.
``--cold`` also times a first run with an empty numba cache (a fresh install before ``carry
compile``). ``--stats-sets N`` (default 1,000) times, in process, every summary figure of N sets
against the lean engine run that produced them. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT")
#: The sweep's window, [start, end) UTC: three years of hourly bars.
START, END = "2022-01-01", "2025-01-01"
DEFAULT_SOURCE = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "binance"
STAGE = re.compile(r"^carry: ([a-z][\w .-]*?): (\d+\.\d+) s$")


def grid(n_sets: int) -> tuple[list[float], list[float]]:
    """Entry and exit thresholds (annualized fractions) whose product is ``n_sets`` sets (or
    the nearest below): entries from 2% to 40%/yr, exits from -5% to 1.5%/yr."""
    import numpy as np

    n_exit = max(1, int(np.sqrt(n_sets)) // 1)
    while n_sets % n_exit:
        n_exit -= 1
    n_entry = n_sets // n_exit
    entries = np.round(np.linspace(0.02, 0.40, n_entry), 6).tolist()
    exits = np.round(np.linspace(-0.05, 0.015, n_exit), 6).tolist()
    return entries, exits


def run_sweep(catalog: Path, out: Path, n_sets: int, env: dict | None = None) -> dict:
    """One ``carry -v sweep`` in a fresh process: wall seconds, stage seconds, files' bytes."""
    entries, exits = grid(n_sets)
    cmd = [
        sys.executable,
        "-m",
        "backtest",
        "-v",
        "sweep",
        "--data",
        str(catalog),
        "--symbols",
        ",".join(SYMBOLS),
        "--start",
        START,
        "--end",
        END,
        "--strategy",
        "funding_threshold",
        "--grid",
        "entry=" + ",".join(f"{v:g}" for v in entries),
        "--grid",
        "exit=" + ",".join(f"{v:g}" for v in exits),
        "--out",
        str(out),
    ]
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"carry sweep failed ({r.returncode}):\n{r.stderr[-3000:]}")
    stages: dict[str, float] = {}
    for line in r.stderr.splitlines():
        m = STAGE.match(line.strip())
        if m:
            stages[m.group(1)] = stages.get(m.group(1), 0.0) + float(m.group(2))
    total = stages.pop("total", wall)
    stages = {"imports": max(wall - total, 0.0), **stages}
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
    return {"sets": len(entries) * len(exits), "wall_seconds": wall, "stages": stages, "files": files}


def stats_vs_engine(catalog: Path, n_sets: int) -> dict:
    """In this process: the same sweep's engine run, lean (``full=False``: equity and portfolio
    equity per bar, the events) over ``n_sets`` sets on one core, and the time of every summary
    figure of every portfolio and column from it (``reports.frames.portfolio_summary`` and
    ``column_summary``, what ``carry sweep`` computes). Returns seconds and their ratio."""
    import warnings

    from backtest.app.memory import configure_hugepages
    from backtest.config import BacktestConfig
    from backtest.engine import run_backtest
    from data.loader import load_market
    from reports.frames import column_summary, portfolio_summary
    from strategies import run_strategy

    configure_hugepages()  # as carry's commands do
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        market = load_market(str(catalog), list(SYMBOLS), start=START, end=END)
    entries, exits = grid(n_sets)
    targets = run_strategy("funding_threshold", market, {"entry_annualized": entries, "exit_annualized": exits})
    t = time.perf_counter()
    result = run_backtest(market, targets, BacktestConfig(), full=False)
    engine = time.perf_counter() - t
    t = time.perf_counter()
    ports = portfolio_summary(result, targets)
    cols = column_summary(result, targets)
    stats = time.perf_counter() - t
    return {
        "sets": len(ports),
        "columns": len(cols),
        "engine_seconds": engine,
        "statistics_seconds": stats,
        "statistics_over_engine": stats / engine,
    }


def _print(label: str, r: dict) -> None:
    wall = r["wall_seconds"]
    print(f"{label}: {r['sets']} sets x {len(SYMBOLS)} symbols, {wall:.2f} s wall")
    for name, sec in r["stages"].items():
        print(f"  {name:<24} {sec:8.2f} s  {sec / wall:6.1%}")
    sizes = ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in r["files"].items())
    print(f"  files: {sizes}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m backtest.app.bench_sweep", description=__doc__.splitlines()[0])
    p.add_argument("--catalog", type=Path, default=None, help="an existing catalog (default: ingest the shared data)")
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="freqtrade data directory to ingest")
    p.add_argument("--sets", type=int, nargs="+", default=[100], help="parameter sets per sweep (default 100)")
    p.add_argument("--cold", action="store_true", help="also time a first run with an empty numba cache")
    p.add_argument(
        "--stats-sets",
        type=int,
        default=1000,
        help="also time the statistics of this many sets against their lean engine run in process (0: skip)",
    )
    args = p.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        catalog = args.catalog
        if catalog is None:
            from data.catalog import Catalog
            from data.ingest.freqtrade import ingest_freqtrade

            if not args.source.is_dir():
                raise SystemExit(f"no data at {args.source}; pass --catalog or --source")
            t = time.perf_counter()
            catalog = Path(tmp) / "catalog"
            ingest_freqtrade(args.source, Catalog(catalog), symbols=list(SYMBOLS))
            print(f"ingested {len(SYMBOLS)} symbols from {args.source} in {time.perf_counter() - t:.2f} s")
        results: dict = {}
        if args.cold:
            cache = Path(tmp) / "numba-cache"
            r = run_sweep(catalog, Path(tmp) / "cold", args.sets[0], env={"NUMBA_CACHE_DIR": str(cache)})
            _print("first run (empty numba cache)", r)
            results["cold"] = r
        run_sweep(catalog, Path(tmp) / "warm-up", args.sets[0])  # the numba cache of this install, filled
        for n in args.sets:
            r = run_sweep(catalog, Path(tmp) / f"sweep-{n}", n)
            _print("warm", r)
            engine = r["stages"].get("engine", 0.0)
            figures = r["stages"].get("figures", 0.0)
            print(
                f"  engine share {engine / r['wall_seconds']:.1%}; everything else / engine "
                f"{(r['wall_seconds'] - engine) / max(engine, 1e-9):.1f}x; statistics (figures) / engine "
                f"{figures / max(engine, 1e-9):.2f}x"
            )
            results[str(r["sets"])] = r
        if args.stats_sets:
            st = stats_vs_engine(catalog, args.stats_sets)
            print(
                f"statistics of {st['sets']} sets ({st['columns']} columns): {st['statistics_seconds']:.2f} s against "
                f"{st['engine_seconds']:.2f} s for their lean engine run on one core "
                f"({st['statistics_over_engine']:.2f}x)"
            )
            results["statistics"] = st
        print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Scale-out benchmark (issue 6): ``python -m backtest.app.bench_scale``.

Builds a synthetic catalog of 1-minute bars (spot, perp, mark, funding every 8 h) and runs the
same memory-bounded sweep (``funding_threshold`` over a parameter grid, one portfolio per
parameter set whose symbols share the capital, as ``carry sweep`` computes it; lean outputs)
in several modes, each in a fresh Python process so peak memory is the mode's own:

* ``serial``: in-process, one core;
* ``processes``: in-process with a pool of ``--workers`` (default 2) processes;
* ``parallel_kernel``: serial, with ``run_backtest(parallel=True)`` if the engine has it;
* ``time_chunks``: serial, loading and simulating 30 days at a time (``run_sweep(time_chunk="30D")``;
  the peak memory of time chunks against ``serial``; the figures must be the same);
* ``dask``: a ``LocalCluster`` of ``--workers`` single-threaded worker processes on 127.0.0.1
  (workers started and warmed up before the clock starts, as a standing cluster would be).

It prints, from one run, bar-columns per second, wall time and peak memory (RSS of the largest
process and the sum over the mode's processes), the speed-up of 2 cores over 1 and of Dask over
in-process, the loader's speed and memory at 1-minute bars, and checks every mode's figures
equal the serial run's exactly. Figures go to a JSON file (``--json``, default
``reports/bench_scale.json``); if that file exists the previous figures are printed beside the
new ones.

Default size: 20 symbols x 180 days x 40 parameter sets (2.1e8 bar-columns; about 2 minutes
on 2 cores, catalog included). ``--full``: the issue's 100 symbols x 365 days x 100 parameter
sets (5.3e9 bar-columns; about 6 GB of Parquet written first, about 2 minutes; then 2-5
minutes per mode on 2 cores). The loader figures load at most 10 symbols at once.
``--symbols/--days/--params`` set any size; ``--catalog DIR`` keeps the catalog for
the next run.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from data.errors import ConfigError

GRID_ENTRY = (0.0, 0.02, 0.05, 0.08, 0.10, 0.12, 0.15, 0.20, 0.25, 0.30)
GRID_EXIT = (-0.10, -0.05, -0.02, 0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06)


def make_grid(n: int) -> list[dict]:
    """``n`` valid funding_threshold parameter sets (exit <= entry), spread over the grid."""
    out = []
    for e in GRID_ENTRY:
        for x in GRID_EXIT:
            if x <= e:
                out.append({"entry_annualized": e, "exit_annualized": x})
    windows = (9, 21, 3, 42)
    k = 0
    res: list[dict] = []
    while len(res) < n:
        p = dict(out[k % len(out)])
        p["window_settlements"] = windows[(k // len(out)) % len(windows)]
        res.append(p)
        k += 1
    return res


def _rss_peaks() -> tuple[int, int]:
    """(this process's peak RSS, largest reaped descendant's peak RSS), bytes."""
    me = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    return me, kids


def _child(spec: dict) -> dict:
    """Run one mode (in a fresh process) and return its figures."""
    from backtest.app.scale import run_sweep

    symbols, grid = spec["symbols"], spec["grid"]
    kw = dict(freq="1m", max_memory_bytes=spec["max_memory"], equity_every="1D")
    mode = spec["mode"]
    # warm-up: load the compiled kernels (numba's disk cache) outside the clock
    # (two symbols sharing capital: the kernel of portfolios of several columns)
    run_sweep(spec["catalog"], symbols[:2], "funding_threshold", grid[:1], {}, end=spec["warm_end"], **kw)
    cluster: Any = None
    client: Any = None
    if mode == "dask":
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ConfigError("bench_scale --mode dask needs dask distributed: pip install 'carry[scale]'") from None

        cluster = LocalCluster(
            n_workers=spec["workers"],
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=40,
            memory_limit=spec["max_memory_bytes"] // spec["workers"],
        )
        client = Client(cluster)
        warm = run_sweep(
            spec["catalog"],
            symbols[: spec["workers"]],
            "funding_threshold",
            grid[:1],
            {},
            end=spec["warm_end"],
            scheduler=client,
            symbol_chunk=1,
            per_symbol=True,  # one task per worker: both start and compile
            **kw,
        )
        assert len(warm.summary)
        kw["max_memory_bytes"] = spec["max_memory_bytes"] // spec["workers"]  # per task on Dask
        kw["scheduler"] = client
    elif mode == "processes":
        kw["workers"] = spec["workers"]
    elif mode == "parallel_kernel":
        kw["engine_kwargs"] = {"parallel": True}
    elif mode == "time_chunks":
        kw["time_chunk"] = "30D"
    t = time.perf_counter()
    res = run_sweep(spec["catalog"], symbols, "funding_threshold", grid, {}, **kw)
    seconds = time.perf_counter() - t
    worker_peaks = sorted({(tk["pid"], tk["peak_rss_bytes"]) for tk in res.meta["tasks"]})
    if client is not None:
        client.close()
    if cluster is not None:
        cluster.close()
    me, kids = _rss_peaks()
    per_pid: dict[int, int] = {os.getpid(): me}
    for pid, peak in worker_peaks:
        per_pid[pid] = max(per_pid.get(pid, 0), peak)
    stage = {
        k: sum(tk.get(f"{k}_seconds", 0.0) for tk in res.meta["tasks"])
        for k in ("load", "strategy", "engine", "figures")
    }
    return {
        "mode": mode,
        "seconds": seconds,
        "bar_columns": res.meta["bar_columns"],
        "bar_columns_per_second": res.meta["bar_columns"] / seconds,
        "peak_rss_largest_process_bytes": max(max(per_pid.values()), kids),
        "peak_rss_sum_bytes": sum(per_pid.values()),
        "processes": len(per_pid),
        "tasks": res.plan.n_tasks,
        "plan": res.plan.to_dict(),
        "task_seconds": stage,
        "time_chunks": max(tk.get("time_chunks", 1) for tk in res.meta["tasks"]),
        "warmups_extended": sum(tk.get("warmups_extended", 0) for tk in res.meta["tasks"]),
        "warmups_extended_alone": sum(tk.get("warmups_extended_alone", 0) for tk in res.meta["tasks"]),
        "summary": res.summary[["final_equity", "funding_pnl", "fee_pnl", "n_trades"]].to_numpy().tolist(),
    }


def _run_child(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "backtest.app.bench_scale", "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"mode {spec['mode']} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _loader_figures(catalog: str, symbols: list[str]) -> dict:
    """Time and memory of load_market at 1m for 1 and for all symbols (in a fresh process)."""
    code = (
        "import json, time, resource, warnings\n"
        "from data.loader import load_market\n"
        f"cat, syms = {catalog!r}, {symbols!r}\n"
        "warnings.simplefilter('ignore')\n"
        "t = time.perf_counter(); m1 = load_market(cat, syms[:1], freq='1m'); t1 = time.perf_counter() - t\n"
        "r1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "del m1\n"
        "t = time.perf_counter(); m = load_market(cat, syms, freq='1m'); tn = time.perf_counter() - t\n"
        "rn = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
        "nb = sum(getattr(m, f).nbytes for f in m.__dataclass_fields__ if hasattr(getattr(m, f), 'nbytes'))\n"
        "print(json.dumps({'bars': m.n_bars, 'one_symbol_seconds': t1, 'all_symbols_seconds': tn, "
        "'symbols': m.n_symbols, 'market_bytes': nb, 'market_bytes_per_bar_symbol': nb / (m.n_bars * m.n_symbols), "
        "'peak_rss_one_symbol_bytes': r1, 'peak_rss_all_symbols_bytes': rn}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr[-4000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    from backtest.app.memory import configure_hugepages

    configure_hugepages()  # as carry's commands and workers do (the loader figures are measured here)
    p = argparse.ArgumentParser(prog="python -m backtest.app.bench_scale", description=__doc__.split("\n\n")[0])
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--days", type=float, default=180)
    p.add_argument("--params", type=int, default=40)
    p.add_argument("--full", action="store_true", help="the issue's size: 100 symbols x 365 days x 100 parameter sets")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-memory", default="4GB", help="memory budget of the sweep (default 4GB)")
    p.add_argument("--catalog", default=None, help="reuse/keep the synthetic catalog in this directory")
    p.add_argument("--modes", default="serial,processes,parallel_kernel,dask,time_chunks")
    p.add_argument("--json", default="reports/bench_scale.json", help="write the figures here")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return 0

    from backtest.app.scale import parse_bytes, synthetic_symbols, write_synthetic_catalog

    if args.full:
        args.symbols, args.days, args.params = 100, 365, 100
    symbols = synthetic_symbols(args.symbols)
    grid = make_grid(args.params)
    tmp = None
    catalog = args.catalog
    if catalog is None:
        tmp = tempfile.TemporaryDirectory(prefix="carry-bench-scale-")
        catalog = os.path.join(tmp.name, "catalog")
    t = time.perf_counter()
    marker = Path(catalog) / f".synthetic-{args.symbols}x{args.days:g}"
    if not marker.exists():
        write_synthetic_catalog(catalog, args.symbols, args.days, seed=1)
        marker.write_text("ok")
    gen_s = time.perf_counter() - t
    size = sum(f.stat().st_size for f in Path(catalog).rglob("*.parquet"))
    print(
        f"catalog: {args.symbols} symbols x {args.days:g} days of 1m bars, {size / 1e6:,.0f} MB of Parquet "
        f"({gen_s:.1f} s to generate)"
    )

    loader = _loader_figures(catalog, symbols[:10])  # all 100 minute histories at once would need 8 GB
    print(
        f"loader 1m: 1 symbol {loader['bars']:,} bars in {loader['one_symbol_seconds']:.2f} s; "
        f"{loader['symbols']} symbols in {loader['all_symbols_seconds']:.2f} s, market {_gb(loader['market_bytes'])} "
        f"({loader['market_bytes_per_bar_symbol']:.0f} B/bar/symbol), peak RSS {_gb(loader['peak_rss_all_symbols_bytes'])}"
    )

    from backtest.engine import run_backtest

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if "parallel_kernel" in modes and "parallel" not in inspect.signature(run_backtest).parameters:
        modes.remove("parallel_kernel")
        print("parallel_kernel: skipped (run_backtest has no parallel= keyword)")
    budget = parse_bytes(args.max_memory)
    spec = {
        "catalog": catalog,
        "symbols": symbols,
        "grid": grid,
        "max_memory": budget,
        "max_memory_bytes": budget,
        "workers": args.workers,
        "warm_end": "2024-01-02",
    }
    results = {}
    for mode in modes:
        try:
            r = _run_child({**spec, "mode": mode})
        except RuntimeError as exc:
            print(f"{mode}: FAILED\n{exc}")
            continue
        results[mode] = r
        print(
            f"{mode:>16}: {r['seconds']:7.2f} s  {r['bar_columns_per_second'] / 1e6:8.2f} M bar-columns/s  "
            f"peak RSS {_gb(r['peak_rss_largest_process_bytes'])} largest process, {_gb(r['peak_rss_sum_bytes'])} "
            f"over {r['processes']} processes; {r['tasks']} tasks, {r['plan']['engine_batch']} columns/engine call, "
            f"{r.get('time_chunks', 1)} time chunks, {r.get('warmups_extended', 0)} warm-ups extended "
            f"({r.get('warmups_extended_alone', 0)} for the stale symbols alone)"
        )
    out = Path(args.json)
    prev: dict = {}
    if out.exists():
        try:
            prev = json.loads(out.read_text())
        except ValueError:
            prev = {}
    same_size = bool(prev) and prev.get("size", {}).get("bar_columns") == loader["bars"] * args.symbols * args.params
    ref = results.get("serial")
    if ref is None and same_size and "summary" in prev.get("modes", {}).get("serial", {}):
        ref = prev["modes"]["serial"]  # a serial run of the same size kept in --json: compare against it
        print(f"(figures compared with the serial run of {prev.get('time')} kept in {out})")
    identical = {m: r["summary"] == ref["summary"] for m, r in results.items()} if ref else {}
    for m, same in identical.items():
        if not same and ref is not None:  # name the first column that differs, for whoever investigates
            rows = [(k, a, b) for k, (a, b) in enumerate(zip(ref["summary"], results[m]["summary"])) if a != b]
            k, a, b = rows[0]
            print(
                f"{m}: {len(rows)} columns differ from serial; first: column {k}, "
                f"(final_equity, funding_pnl, fee_pnl, n_trades) serial {a} vs {b}"
            )
    ratios = {}
    if ref:
        for m, r in results.items():
            if m != "serial":
                ratios[f"{m}_over_serial"] = ref["seconds"] / r["seconds"]
    if "dask" in results and "processes" in results:
        ratios["dask_over_processes"] = results["processes"]["seconds"] / results["dask"]["seconds"]
    if ratios:
        print("speed-ups: " + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items()))
    if identical:
        print(
            "figures identical to serial: " + ", ".join(f"{m} {'yes' if ok else 'NO'}" for m, ok in identical.items())
        )
    n_bars = loader["bars"]
    figures: dict[str, Any] = {
        "size": {
            "symbols": args.symbols,
            "days": args.days,
            "params": args.params,
            "bars": n_bars,
            "columns": args.symbols * args.params,
            "bar_columns": n_bars * args.symbols * args.params,
            "max_memory_bytes": budget,
            "workers": args.workers,
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "platform": sys.platform},
        "catalog_bytes": size,
        "generate_seconds": gen_s,
        "loader": loader,
        # each mode's figures per column (final equity, funding, fees, trades), so that a later
        # run of other modes compares with them; modes not rerun are kept from the previous file
        "modes": {**(prev.get("modes", {}) if same_size else {}), **results},
        "ratios": ratios,
        "identical_to_serial": identical,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if same_size:
        for m, r in results.items():
            old = prev.get("modes", {}).get(m)
            if old and "seconds" in old:
                print(
                    f"vs previous run ({prev.get('time')}): {m} {old['seconds']:.2f} s -> {r['seconds']:.2f} s "
                    f"({old['seconds'] / r['seconds']:.2f}x)"
                )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2))
    print(f"wrote {out}")
    print(
        json.dumps(
            {
                "bar_columns_per_second": {m: r["bar_columns_per_second"] for m, r in results.items()},
                "peak_rss_bytes": {m: r["peak_rss_largest_process_bytes"] for m, r in results.items()},
                **ratios,
            }
        )
    )
    if tmp is not None:
        tmp.cleanup()
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())

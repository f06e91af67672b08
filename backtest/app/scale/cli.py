"""``carry sweep`` with scale-out options: the flags, and the command that runs and writes."""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from backtest.app.argtypes import whole_number
from backtest.app.scale.plan import format_bytes
from backtest.app.scale.sweep import run_sweep


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    """Add the scale-out options to ``carry sweep``."""
    g = parser.add_argument_group(
        "portfolios and scale-out (--workers, --scheduler, --param-chunk: the same study as one process; "
        "--max-memory, --time-chunk, --symbol-chunk, --warmup: memory-bounded, with --per-symbol)"
    )
    g.add_argument(
        "--scheduler",
        default=None,
        metavar="tcp://HOST:PORT",
        help="run the sweep's tasks on this Dask distributed scheduler",
    )
    g.add_argument(
        "--max-memory",
        default=None,
        metavar="SIZE",
        help="working-set budget, e.g. 4GB (in-process: for all workers; Dask: per task)",
    )
    g.add_argument(
        "--per-symbol",
        action="store_true",
        help="every symbol its own portfolio with the whole capital (default: a parameter set's symbols share it)",
    )
    g.add_argument("--workers", type=whole_number(1), default=None, help="in-process worker processes (default 1)")
    g.add_argument("--symbol-chunk", type=whole_number(1), default=None, metavar="N", help="symbols per task")
    g.add_argument("--param-chunk", type=whole_number(1), default=None, metavar="M", help="parameter sets per task")
    g.add_argument(
        "--time-chunk",
        default=None,
        metavar="DURATION",
        help="load and simulate in time chunks of this length, e.g. 30D (default: only when the memory "
        "budget needs it; 'none': never); results equal one pass",
    )
    g.add_argument(
        "--warmup",
        default=None,
        metavar="DURATION",
        help="history loaded before each later time chunk for the strategy's signals (default: from the "
        "strategy's lookback, else 30D; extended where the targets differ from the previous chunk's)",
    )
    g.add_argument(
        "--equity-every",
        default="1D",
        metavar="FREQ",
        help="sample equity curves at this period (default 1D; 'none' for no curves)",
    )
    g.add_argument(
        "--retries", type=whole_number(0), default=2, help="Dask: resubmissions of a failing task (default 2)"
    )


def wants_scale(args) -> bool:
    """True if any scale-out option was given (then ``carry sweep`` should call :func:`run_scaled_sweep_command`)."""
    return any(
        getattr(args, k, None) is not None
        for k in ("scheduler", "max_memory", "workers", "symbol_chunk", "param_chunk", "time_chunk", "warmup")
    )


def is_memory_bounded(args) -> bool:
    """True if an option of the memory-bounded path was given (``--max-memory``, ``--time-chunk``,
    ``--symbol-chunk``, ``--warmup``); ``--workers``, ``--scheduler`` and ``--param-chunk`` alone
    run the same study as one process, in portfolio tasks."""
    return any(getattr(args, k, None) is not None for k in ("max_memory", "symbol_chunk", "time_chunk", "warmup"))


def run_scaled_sweep_command(args, cfg) -> int:
    """``carry sweep`` with scale-out options: run, write the outputs, print the best rows.

    ``cfg`` is the :class:`backtest.app.runs.RunConfig` built by ``cmd_sweep`` (one strategy whose
    params hold the fixed values and the swept lists). Writes ``summary.json``,
    ``columns.parquet`` (one row per symbol x parameter set), ``equity.parquet`` (sampled
    curves, if any) and ``config.toml`` into ``args.out``, atomically.
    """
    from backtest.app import runs as app
    from reports.keys import SUMMARY_KEYS
    from reports.outputs import check_output_dir, json_ready, write_output_dir

    check_output_dir(args.out, getattr(args, "overwrite", False))
    from data.units import to_timestamp

    window = (  # (without both bounds the sweep's window is fixed later, from the catalog)
        (to_timestamp(cfg.data.start, "start"), to_timestamp(cfg.data.end, "end"))
        if cfg.data.start is not None and cfg.data.end is not None
        else None
    )
    allowed = app.check_run_data(cfg, window)  # the data checks every run passes, before any task starts
    spec = cfg.strategies[0]
    every = getattr(args, "equity_every", "1D")
    every = None if every is None or str(every).lower() == "none" else every
    quiet = getattr(args, "quiet", False) or not sys.stderr.isatty()

    def progress(done, total):
        if not quiet:
            print(f"\r{done}/{total} tasks", end="" if done < total else "\n", file=sys.stderr, flush=True)

    res = run_sweep(
        cfg.data.catalog,
        list(cfg.data.symbols),
        spec.name,
        spec.params,
        cfg.engine,
        start=cfg.data.start,
        end=cfg.data.end,
        freq=cfg.data.freq,
        venue=cfg.data.venue,
        gaps=cfg.data.gaps,
        funding_gaps=cfg.data.funding_gaps,
        symbol_chunk=args.symbol_chunk,
        param_chunk=args.param_chunk,
        max_memory_bytes=args.max_memory,
        scheduler=args.scheduler,
        workers=args.workers,
        retries=getattr(args, "retries", 2),
        equity_every=every,
        progress=progress,
        time_chunk=getattr(args, "time_chunk", None),
        warmup=getattr(args, "warmup", None),
    )
    rank = getattr(args, "rank_by", "sharpe")
    summary = {
        "carry_version": app._version(),
        "run_hash": app.run_hash(cfg),
        "config_hash": cfg.engine.config_hash(),
        "config": cfg.to_dict(),
        "scale": {k: v for k, v in res.meta.items() if k not in ("tasks", "config")},
        "plan": res.plan.to_dict(),
        "keys": list(SUMMARY_KEYS),
        "columns": res.summary.to_dict(orient="records"),
        "data_errors_allowed": allowed,
    }
    text = json.dumps(json_ready(summary), indent=2, allow_nan=False)
    writers = {
        "summary.json": lambda p: p.write_text(text),
        "config.toml": lambda p: p.write_text(app.effective_toml(cfg)),
        "columns.parquet": lambda p: res.summary.to_parquet(p, index=False),
    }
    if res.equity is not None:
        eq = res.equity.copy()
        eq.columns = [f"{pid}:{sym}" for pid, sym in eq.columns]
        writers["equity.parquet"] = lambda p: eq.to_parquet(p)
    html = scaled_report_html(res, cfg, rank)
    writers["report.html"] = lambda p: p.write_text(html)
    write_output_dir(args.out, writers, overwrite=getattr(args, "overwrite", False))
    show = res.best(rank, 20)
    cols = (
        ["param_id", "symbol"]
        + [c for c in show.columns if c not in SUMMARY_KEYS and c not in ("param_id", "symbol", "strategy")]
        + ["final_equity", "total_return", "sharpe", "max_drawdown", "funding_pnl", "n_trades"]
    )
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(show[cols].to_string(index=False))
    m = res.meta
    print(
        f"{m['n_columns']:,} portfolios x {m['n_bars']:,} bars in {m['seconds']:.1f} s "
        f"({m['bar_columns'] / max(m['seconds'], 1e-9):,.0f} bar-columns/s, {m['mode']}, "
        f"{res.plan.n_tasks} tasks, peak {format_bytes(m['peak_rss_bytes'])})"
    )
    print(f"wrote {args.out}/")
    return 0


def scaled_report_html(res, cfg, rank: str = "sharpe", top: int = 10) -> str:
    """The HTML report of a scale-out sweep (:func:`reports.report_data.scaled_report_data`):
    ranking of the best 50 (symbol, parameter set) columns, their sampled equity curves (best
    ``top``), and ``rank`` averaged over symbols on the first two swept parameters."""
    from backtest.app import runs as app
    from reports.html import render_report
    from reports.report_data import scaled_report_data

    spec = cfg.strategies[0]
    return render_report(
        scaled_report_data(
            res.summary,
            res.equity,
            strategy=spec.name,
            params=spec.params,
            run_id=app.run_hash(cfg),
            data=f"{len(cfg.data.symbols)} symbols, {cfg.data.freq}",
            mode=res.meta.get("mode", ""),
            rank=rank,
            top=top,
        )
    )

"""``carry sweep`` with scale-out options: the flags, and the command that runs and writes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from backtest.app import verbosity
from backtest.app.argtypes import whole_number
from backtest.app.scale.plan import format_bytes
from backtest.app.scale.sweep import run_sweep
from reports.frames import LEAN_NOTES, portfolio_labels


def add_scale_options(parser: argparse.ArgumentParser) -> None:
    """Add the scale-out options to ``carry sweep``."""
    g = parser.add_argument_group(
        "portfolios and scale-out (--workers, --scheduler, --param-chunk: the same study as one process; "
        "--max-memory, --time-chunk, --symbol-chunk, --warmup: the same portfolios, memory-bounded, lean files)"
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
    g.add_argument(
        "--symbol-chunk", type=whole_number(1), default=None, metavar="N", help="symbols per task (with --per-symbol)"
    )
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
    params hold the fixed values and the swept lists). Writes the files of a run in one process
    (:func:`lean_output_files`) into ``args.out``, atomically.
    """
    from backtest.app import runs as app
    from reports.outputs import check_output_dir, write_output_dir

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
    no_progress = not verbosity.show_progress(args)

    def progress(done, total):
        if not no_progress:
            print(f"\r{done}/{total} tasks", end="" if done < total else "\n", file=sys.stderr, flush=True)

    with verbosity.stage("strategies and engine in memory-bounded tasks"):
        res = run_sweep(
            cfg.data.catalog,
            list(cfg.data.symbols),
            spec.name,
            spec.params,
            cfg.engine,
            **cfg.data.load_options(),
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
            per_symbol=cfg.per_symbol,
        )
    rank = getattr(args, "rank_by", "sharpe")
    with verbosity.stage("write outputs"):
        files = lean_output_files(res, cfg, app, allowed, rank)
        write_output_dir(args.out, files, overwrite=getattr(args, "overwrite", False))
    if verbosity.quiet():
        print(f"wrote {args.out}/")
        verbosity.flagged(Path(args.out) / "summary.json", res.flags, res.warnings)
        return 0
    show = res.best(rank, 20)
    table = label_table(res)
    labels = portfolio_labels(table)
    show = show.assign(portfolio=[labels[int(p)] for p in show["portfolio"]])
    cols = ["portfolio", "final_equity", "total_return", "sharpe", "max_drawdown", "funding_pnl", "n_trades"]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.max_colwidth", 80):
        print(show[cols].to_string(index=False))
    m = res.meta
    print(
        f"{len(res.portfolios):,} portfolios ({m['n_columns']:,} columns) x {m['n_bars']:,} bars in {m['seconds']:.1f} s "
        f"({m['bar_columns'] / max(m['seconds'], 1e-9):,.0f} bar-columns/s, {m['mode']}, "
        f"{res.plan.n_tasks} tasks, peak {format_bytes(m['peak_rss_bytes'])})"
    )
    print(f"wrote {args.out}/")
    return 0


#: What the memory-bounded path keeps less of than a run in one process (``summary.json``
#: ``lean``): the lean files of any large run (:data:`reports.frames.LEAN_NOTES`), and a
#: report and round trips that need per-bar outputs.
LEAN_OUTPUTS_NOTE = {
    **LEAN_NOTES,
    "report.html": "ranking, sampled equity and heatmaps of the portfolios; no per-bar funding or margin charts",
    "trades.parquet": "not written: round trips need per-bar positions and components",
}


def label_table(res) -> pd.DataFrame:
    """The column table of a scale-out sweep (strategy, symbol, group = portfolio id, the
    parameters), for :func:`reports.frames.portfolio_labels` and :func:`reports.frames.column_labels`."""
    from reports.keys import SUMMARY_KEYS

    tab = res.summary.drop(columns=[*SUMMARY_KEYS, "column", "param_id"])
    return tab.rename(columns={"portfolio": "group"})


def lean_output_files(res, cfg, app, allowed, rank: str) -> dict:
    """The writers of a memory-bounded sweep's directory: the files and ``summary.json`` keys of
    a run in one process (labels, order and formats alike), with ``plan``, ``scale`` and
    ``lean`` (what each file keeps less of) added."""
    from reports.frames import column_labels, label_events, long_components
    from reports.keys import COMPONENT_KEYS, SUMMARY_KEYS
    from reports.outputs import json_ready

    table = label_table(res)
    plabels = portfolio_labels(table)
    clabels = column_labels(table)
    cov, notes = res.coverage["symbols"], res.coverage["notes"]
    symbols = list(res.meta["symbols"])
    coverage = {
        "symbols": symbols,
        "perp_symbols": symbols,
        "freq": cfg.data.freq,
        "start": str(pd.Timestamp(res.meta["start"])),
        "end": str(pd.Timestamp(res.meta["end"]) - pd.Timedelta(res.meta["step_ms"], "ms")),
        "bars": res.meta["n_bars"],
        **{k: {s: cov[s][k] for s in symbols} for k in ("valid_bars", "filled_bars", "funding_settlements")},
        "tradable": {s: {k: cov[s][k] for k in ("start", "end", "bars", "settlements_used")} for s in symbols},
        "notes": notes,
    }
    every = res.meta.get("equity_every")
    lean = {k: v.format(every=every) for k, v in LEAN_OUTPUTS_NOTE.items()}
    if every is None:
        lean["equity.parquet"] = "not written (--equity-every none)"
    summary = {
        "carry_version": app._version(),
        "run_hash": app.run_hash(cfg),
        "config_hash": cfg.engine.config_hash(),
        "config": cfg.to_dict(),
        "coverage": coverage,
        "flags": list(res.flags),
        "components_granularity": "day",
        "keys": list(SUMMARY_KEYS),
        "portfolios": [
            {"portfolio": plabels[int(p)], **{k: row[k] for k in SUMMARY_KEYS}}
            for p, row in zip(res.portfolios["portfolio"], res.portfolios.to_dict(orient="records"))
        ],
        "columns": [
            {
                "column": int(row["column"]),
                "label": clabels[i],
                "symbol": row["symbol"],
                "portfolio": plabels[int(row["portfolio"])],
                **{k: row[k] for k in SUMMARY_KEYS},
            }
            for i, row in enumerate(res.summary.to_dict(orient="records"))
        ],
        "warnings": list(res.warnings),
        "data_errors_allowed": allowed,
        "plan": {
            "path": "memory_bounded",
            "mode": res.meta["mode"],
            "tasks": res.plan.n_tasks,
            "portfolios": len(res.portfolios),
            "columns": len(res.summary),
            "bars": res.meta["n_bars"],
            **res.plan.to_dict(),
        },
        "scale": {k: v for k, v in res.meta.items() if k not in ("tasks", "config")},
        "lean": lean,
    }
    text = json.dumps(json_ready(summary), indent=2, allow_nan=False)
    per_day = {k: res.components[k].to_numpy() for k in COMPONENT_KEYS}
    days = next(iter(res.components.values())).index
    writers = {
        "summary.json": lambda p: p.write_text(text),
        "config.toml": lambda p: p.write_text(app.effective_toml(cfg)),
        "components.parquet": lambda p: long_components(per_day, days, table).to_parquet(p, index=False),
        "events.parquet": lambda p: label_events(res.events.rename(columns={"portfolio": "group"}), table).to_parquet(
            p, index=False
        ),
    }
    if res.equity is not None:
        port = res.group_equity.set_axis([f"portfolio:{plabels[int(g)]}" for g in res.group_equity.columns], axis=1)
        cols = res.equity.set_axis(clabels, axis=1)
        eq = pd.concat([port, cols], axis=1)
        eq.index.name = "time"
        writers["equity.parquet"] = lambda p: eq.to_parquet(p)
    html = scaled_report_html(res, cfg, rank)
    writers["report.html"] = lambda p: p.write_text(html)
    return writers


def scaled_report_html(res, cfg, rank: str = "sharpe", top: int = 10) -> str:
    """The HTML report of a memory-bounded sweep (:func:`reports.report_data.scaled_report_data`):
    ranking of the best 50 portfolios, their sampled equity curves (best ``top``), and ``rank``
    on the first two swept parameters."""
    from backtest.app import runs as app
    from reports.html import render_report
    from reports.report_data import scaled_report_data

    spec = cfg.strategies[0]
    plabels = portfolio_labels(label_table(res))
    ports = res.portfolios.set_index(pd.Index([plabels[int(p)] for p in res.portfolios["portfolio"]], name="portfolio"))
    equity = None
    if res.group_equity is not None:
        equity = res.group_equity.set_axis([plabels[int(g)] for g in res.group_equity.columns], axis=1)
    return render_report(
        scaled_report_data(
            ports,
            equity,
            strategy=spec.name,
            params=spec.params,
            run_id=app.run_hash(cfg),
            data=f"{len(cfg.data.symbols)} symbols, {cfg.data.freq}",
            mode=res.meta.get("mode", ""),
            rank=rank,
            top=top,
            per_symbol=bool(res.meta.get("per_symbol")),
        )
    )

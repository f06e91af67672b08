"""The driver of a scale-out sweep: plan the tasks, run them (serially, on a process pool or
on Dask) and assemble their compact results into one :class:`SweepResult`."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from backtest.app.scale.executors import dask_client, run_dask, run_local
from backtest.app.scale.plan import (
    BASE_PROCESS_BYTES,
    DASK_PAUSE_FRACTION,
    SweepPlan,
    available_memory,
    parse_bytes,
    peak_rss_bytes,
    plan_sweep,
)
from backtest.app.scale.tasks import SweepTask, TaskResult, ms_of, resolve_strategy, run_task
from backtest.config import BacktestConfig
from data.catalog_access import is_url, local_path, sweep_window
from data.errors import ConfigError, DataError
from reports.keys import SUMMARY_KEYS


def _bars(value: str | int | None, step_ms: int, name: str) -> int | None:
    """A length as a number of bars: ``None`` stays None (automatic), ``"none"``/0 -> 0,
    an int is bars, a string a pandas duration (``"30D"``, ``"12h"``) rounded up to whole bars."""
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value < 0:
            raise ConfigError(f"{name} must be >= 0 bars, got {value}")
        return int(value)
    if str(value).strip().lower() in ("none", "0", ""):
        return 0
    try:
        ms = pd.Timedelta(str(value)).total_seconds() * 1000.0
    except ValueError:
        raise ConfigError(
            f"cannot read {name} {value!r}: write a duration such as 30D or 12h, or a number of bars"
        ) from None
    if ms <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    return int(-(-ms // step_ms))


def _warmup_bars(strat, params: list[dict], warmup: str | int | None, step_ms: int) -> int:
    """Bars of history before each later time chunk (see ``run_sweep(warmup=...)``)."""
    from backtest.app.scale.tasks import OVERLAP_CHECK_BARS

    looks = [strat.params(p).lookback_hours() for p in params]
    need = None if any(h is None for h in looks) else max(looks, default=0.0)
    if warmup is None:
        if need is None:
            return _bars("30D", step_ms, "warmup") or 0
        return int(-(-1.25 * need * 3_600_000 // step_ms)) + OVERLAP_CHECK_BARS
    bars = _bars(warmup, step_ms, "warmup") or 0
    if need is not None and bars * step_ms < need * 3_600_000:
        raise ConfigError(
            f"warm-up {warmup!r} is shorter than strategy {strat.name!r}'s lookback of {need:g} hours "
            "(its signal windows and minimum hold): its targets would differ from one pass; raise --warmup"
        )
    return bars


def _expand_grid(grid: Any) -> list[dict]:
    from backtest.targets import param_grid

    if grid is None:
        return [{}]
    if isinstance(grid, dict):
        if any(isinstance(v, (list, tuple, np.ndarray, range)) for v in grid.values()):
            return param_grid(
                {k: (list(v) if isinstance(v, (list, tuple, np.ndarray, range)) else [v]) for k, v in grid.items()}
            )
        return [dict(grid)]
    if isinstance(grid, (list, tuple)):
        return [dict(g) if isinstance(g, dict) else g for g in grid]
    raise ConfigError(
        f"grid must be a dict (lists make a grid) or a list of parameter dicts, got {type(grid).__name__}"
    )


@dataclass
class SweepResult:
    """Compact results of a scale-out sweep.

    Columns are numbered as in one in-process run: ``column = param_id x symbols + symbol
    position``; portfolios are the parameter sets (``portfolio == param_id``), or with
    ``per_symbol`` the columns.

    Attributes
    ----------
    summary : DataFrame
        One row per column (symbol x parameter set), in column order: ``column``,
        ``portfolio``, ``param_id``, ``symbol``, ``strategy``, the parameters, then the
        :data:`reports.keys.SUMMARY_KEYS` figures (a column's capital is its share of its
        portfolio's).
    portfolios : DataFrame
        One row per portfolio, in order: ``portfolio``, ``param_id``, the parameters and the
        figures of the portfolio (its symbols together).
    equity, group_equity : DataFrame or None
        Column and portfolio equity (quote) at the last bar of each ``equity_every`` period;
        columns are the column and portfolio ids.
    components : dict
        Component key -> DataFrame (UTC days x columns) of the PnL booked each day (quote).
    events : DataFrame
        The fills, transfers, liquidations, stops and skips (as ``BacktestResult.events``,
        with ``portfolio`` for ``group``); funding and borrow are in ``components``.
    coverage : dict
        ``{"symbols": {symbol: counts}, "notes": [...]}``: the per-symbol counts of a run's
        ``summary.json`` coverage (valid, filled, funding settlements, tradable span) over the
        window's bars, and the loads' notes.
    flags, warnings : list of str
    plan : SweepPlan
    meta : dict
        Window, mode, timings, per-task statistics, peak memory.
    """

    summary: pd.DataFrame
    portfolios: pd.DataFrame
    equity: pd.DataFrame | None
    group_equity: pd.DataFrame | None
    components: dict
    events: pd.DataFrame
    coverage: dict
    flags: list
    warnings: list
    plan: SweepPlan
    meta: dict

    def best(self, metric: str = "sharpe", n: int = 10) -> pd.DataFrame:
        """The ``n`` best portfolios by ``metric``."""
        return self.portfolios.sort_values(metric, ascending=False).head(n)

    def by_params(self, metric: str = "sharpe", how: str = "mean") -> pd.DataFrame:
        """A metric of the columns aggregated over symbols per parameter set."""
        return self.summary.groupby("param_id")[metric].agg(how).to_frame(metric)

    @property
    def bar_columns(self) -> int:
        return int(self.plan.n_bars) * len(self.summary)


def _assemble(results: list[TaskResult], symbols: list[str], plan: SweepPlan, meta: dict) -> SweepResult:
    from reports.keys import COMPONENT_KEYS

    results = sorted(results, key=lambda r: r.task_id)
    frame = pd.concat([r.rows for r in results], ignore_index=True)
    order = np.argsort(frame["column"].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    first = ["column", "portfolio", "param_id", "symbol", "strategy"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    ports = pd.concat([r.portfolios for r in results], ignore_index=True)
    p_order = np.argsort(ports["portfolio"].to_numpy(), kind="stable")
    ports = ports.iloc[p_order].reset_index(drop=True)
    params = frame.drop_duplicates("portfolio").drop(
        columns=["column", "param_id", *[c for c in frame.columns if c in ports.columns and c != "portfolio"]]
    )
    params = params[[c for c in params.columns if c not in SUMMARY_KEYS]]
    if len(ports) < len(frame):  # portfolios of several symbols: no symbol of their own
        params = params.drop(columns="symbol")
    ports = ports.merge(params, on="portfolio", how="left")
    ports = ports[["portfolio", "param_id", *[c for c in ports.columns if c not in ("portfolio", "param_id")]]]
    ports = ports[[c for c in ports.columns if c not in SUMMARY_KEYS] + list(SUMMARY_KEYS)]
    equity = group_equity = None
    if results and results[0].equity is not None:
        idx = pd.DatetimeIndex(pd.to_datetime(results[0].equity_index, utc=True), name="time").as_unit("us")
        curves = np.hstack([cast(np.ndarray, r.equity) for r in results])[:, order]
        equity = pd.DataFrame(curves, index=idx, columns=pd.Index(frame["column"].to_numpy(), name="column"))
        g_curves = np.hstack([cast(np.ndarray, r.group_equity) for r in results])[:, p_order]
        group_equity = pd.DataFrame(
            g_curves, index=idx, columns=pd.Index(ports["portfolio"].to_numpy(), name="portfolio")
        )
    days = pd.DatetimeIndex(pd.to_datetime(results[0].day_index, utc=True), name="time").as_unit("us")
    components = {}
    for k in COMPONENT_KEYS:
        cum = np.hstack([r.components[k] for r in results])[:, order]
        components[k] = pd.DataFrame(
            np.diff(cum, axis=0, prepend=0.0), index=days, columns=pd.Index(frame["column"].to_numpy(), name="column")
        )
    events = pd.concat([r.events for r in results], ignore_index=True)
    if len(events):  # chronological, and within a bar by portfolio, as one run writes them
        events = events.iloc[np.lexsort((events["portfolio"].to_numpy(), events["bar"].to_numpy()))]
        events = events.reset_index(drop=True)
    coverage: dict = {"symbols": {}, "notes": []}
    for r in results:  # a symbol's counts from the first task that loaded it (tasks share the window)
        for sym, c in r.coverage["symbols"].items():
            coverage["symbols"].setdefault(sym, c)
        coverage["notes"] = list(dict.fromkeys([*coverage["notes"], *r.coverage["notes"]]))
    meta = dict(meta)
    meta["tasks"] = [{"task_id": r.task_id, **r.stats} for r in results]
    meta["peak_rss_bytes"] = max([peak_rss_bytes()] + [r.stats.get("peak_rss_bytes", 0) for r in results])
    return SweepResult(
        frame,
        ports,
        equity,
        group_equity,
        components,
        events,
        coverage,
        sorted({f for r in results for f in r.flags}),
        list(dict.fromkeys(w for r in results for w in r.warnings)),
        plan,
        meta,
    )


def _dask_task_budget(client) -> tuple[int | None, int]:
    """(smallest per-thread memory limit over the workers, total threads)."""
    try:
        info = client.scheduler_info(n_workers=-1)  # newer distributed lists only 5 workers by default
    except TypeError:
        info = client.scheduler_info()
    workers = info.get("workers", {})
    limits, threads = [], 0
    for w in workers.values():
        n = int(w.get("nthreads", 1)) or 1
        threads += n
        if w.get("memory_limit"):
            limits.append(int(w["memory_limit"]) // n)
    return (min(limits) if limits else None), max(threads, 1)


def run_sweep(
    catalog: str | os.PathLike,
    symbols: Iterable[str] | str,
    strategy: Any,
    grid: Any,
    config: BacktestConfig | dict | None = None,
    *,
    start=None,
    end=None,
    freq: str = "1h",
    venue: str = "binance",
    gaps: str = "ffill",
    funding_gaps: str = "error",
    symbol_chunk: int | None = None,
    param_chunk: int | None = None,
    max_memory_bytes: int | str | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    retries: int = 2,
    equity_every: str | None = "1D",
    engine_kwargs: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
    time_chunk: str | int | None = None,
    warmup: str | int | None = None,
    per_symbol: bool = False,
) -> SweepResult:
    """Run ``strategy`` over ``grid`` x ``symbols`` in independent, memory-bounded tasks.

    A portfolio is a parameter set over all the symbols, sharing ``initial_capital_quote``
    (what ``carry sweep`` computes in one process); with ``per_symbol`` every (symbol,
    parameter set) is its own portfolio with the whole capital (``carry sweep --per-symbol``).
    Tasks split the parameter sets (a portfolio's symbols stay in one task), the symbols only
    with ``per_symbol``, and the window into time chunks when the memory budget needs it.

    Parameters
    ----------
    catalog : path or URL
        The Parquet catalog: a local directory or an fsspec URL (``s3://bucket/catalog``,
        ``gcs://...``; needs the matching fsspec backend on every worker). Tasks read it
        themselves; no market data goes through the driver or the scheduler.
    symbols : list or comma-separated str
    strategy : registered name, Strategy or picklable function ``fn(market, params)``
        With ``per_symbol`` its targets of a symbol must depend only on that symbol's data
        (capital weights, which only mean something across a portfolio, are dropped).
    grid : dict or list
        ``{name: [values]}`` (the Cartesian product; scalars are fixed) or a list of
        parameter dicts. Parameter set ``k`` of the expanded grid is ``param_id == k``.
    config : BacktestConfig or dict
        Engine settings; ``initial_capital_quote`` is the capital of each portfolio.
    start, end, freq, venue, gaps, funding_gaps
        As :func:`data.loader.load_market`; the window defaults to the union of the
        symbols' coverage and is the same for every task.
    symbol_chunk, param_chunk : int, optional
        Symbols and parameter sets per task (default: see :func:`plan_sweep`); a symbol chunk
        smaller than the symbols needs ``per_symbol``.
    max_memory_bytes : int or str, optional
        Working-set budget (``"4GB"``). In-process: for the whole machine, split over
        ``workers``. Dask: per task (one worker thread), never more than what fits in a
        worker: 80 % of its memory limit per thread (distributed's pause threshold) less
        the process's own base. Default in-process: half of the available memory.
    scheduler : str or distributed.Client, optional
        ``"tcp://host:8786"``, a Client or a cluster object: run the tasks on Dask.
    workers : int, optional
        In-process only: >1 runs tasks on a pool of that many processes.
    retries : int
        Dask: times a failing task is resubmitted (a task on a worker that dies is
        rescheduled by the scheduler anyway).
    equity_every : str or None
        Sample each column's equity at the last bar of every period (``"1D"``, ``"1W"``);
        None: no curves.
    engine_kwargs : dict
        Extra keywords for :func:`backtest.engine.run_backtest` (e.g. ``parallel=True``).
    progress : callable(done, total), optional
    time_chunk : str or int, optional
        Load and simulate the window in time chunks of this length (``"30D"``, or a number of
        bars); every engine batch resumes from its state at the end of the previous chunk, so
        the results equal one pass. Default: only when the memory budget needs it. 0 or
        ``"none"``: never.
    warmup : str or int, optional
        History loaded before each later time chunk so the strategy's signals are warm
        (``"30D"`` or bars). Default: 1.25 x the strategy's declared lookback
        (:meth:`StrategyParams.lookback_hours`, the largest over the grid) plus 64 bars, or 30
        days when it declares none; a warm-up shorter than the declared lookback is refused.
        The targets at its end must also equal the previous chunk's; where they do not, the
        batch is recomputed with twice the history, up to the window start.

    Returns
    -------
    SweepResult
    """
    t0 = time.perf_counter()
    if isinstance(symbols, str):
        symbols = [s.strip().upper() for s in symbols.split(",") if s.strip()]
    symbols = list(dict.fromkeys(symbols))
    if not symbols:
        raise ConfigError("no symbols")
    if isinstance(strategy, str):
        from strategies import get_strategy

        get_strategy(strategy)  # unknown names fail here, with hints
    if config is None:
        config = BacktestConfig()
    elif isinstance(config, dict):
        config = BacktestConfig.from_dict(config)
    params = _expand_grid(grid)
    strat = resolve_strategy(strategy)
    params = [strat.params(p).to_dict() for p in params]  # validated here, before any task starts
    catalog = str(catalog)
    if not is_url(catalog) and not Path(local_path(catalog)).is_dir():
        raise DataError(f"catalog {catalog} does not exist")
    w_start, w_end = sweep_window(catalog, symbols, freq, venue, start, end)
    from data.schema import timeframe_minutes

    step = timeframe_minutes(freq) * 60_000
    t_lo = (ms_of(w_start) // step) * step
    n_bars = int(-(-(ms_of(w_end) - t_lo) // step))

    client, own_client = (None, False)
    budget = parse_bytes(max_memory_bytes)
    if scheduler is not None:
        client, own_client = dask_client(scheduler)
        limit, threads = _dask_task_budget(client)
        # a task runs inside a worker whose nanny kills it at 95 % of its memory limit and
        # which pauses at 80 %: the task's working set plus the worker's own base must stay
        # under the pause threshold, whatever budget was asked for
        fits = max(1, int(limit * DASK_PAUSE_FRACTION) - BASE_PROCESS_BYTES) if limit else None
        per_task = fits if budget is None else budget if fits is None else min(budget, fits)
        slots = threads
    else:
        slots = max(1, int(workers or 1))
        if budget is None:
            budget = int(available_memory() * 0.5)
        per_task = max(1, (budget - slots * BASE_PROCESS_BYTES * (slots > 1)) // slots)
    if not per_symbol:
        if symbol_chunk is not None and int(symbol_chunk) < len(symbols):
            raise ConfigError(
                f"symbol chunks of {symbol_chunk} split portfolios whose {len(symbols)} symbols share capital; "
                "add --per-symbol (every symbol its own portfolio) to split symbols"
            )
        symbol_chunk = len(symbols)
        if param_chunk is None and slots > 1:  # one task per slot: each task reads every symbol
            param_chunk = -(-len(params) // slots)
    plan = plan_sweep(
        n_bars,
        len(symbols),
        len(params),
        symbol_chunk=symbol_chunk,
        param_chunk=param_chunk,
        budget_per_task=per_task,
        min_tasks=2 * slots if slots > 1 else 1,
        time_chunk_bars=_bars(time_chunk, step, "time_chunk"),
        warmup_bars=_warmup_bars(strat, params, warmup, step),
    )
    strategy_ref = strategy if isinstance(strategy, str) else strat
    tasks: list[SweepTask] = []
    for p_lo in range(0, len(params), plan.param_chunk):
        pids = tuple(range(p_lo, min(p_lo + plan.param_chunk, len(params))))
        for s_lo in range(0, len(symbols), plan.symbol_chunk):
            syms = symbols[s_lo : s_lo + plan.symbol_chunk]
            tasks.append(
                SweepTask(
                    task_id=len(tasks),
                    catalog=catalog,
                    symbols=tuple(syms),
                    strategy=strategy_ref,
                    params=tuple(params[i] for i in pids),
                    param_ids=pids,
                    config=config.to_dict(),
                    start=w_start,
                    end=w_end,
                    freq=freq,
                    venue=venue,
                    gaps=gaps,
                    funding_gaps=funding_gaps,
                    engine_batch=plan.engine_batch,
                    equity_every=equity_every,
                    engine_kwargs=dict(engine_kwargs or {}),
                    time_chunk_bars=plan.time_chunk_bars,
                    warmup_bars=plan.warmup_bars,
                    max_history_bars=plan.max_history_bars,
                    per_symbol=per_symbol,
                    symbol_pos=tuple(range(s_lo, s_lo + len(syms))),
                    n_sweep_symbols=len(symbols),
                )
            )
    t_plan = time.perf_counter() - t0
    try:
        if client is not None:
            results = run_dask(run_task, tasks, client, retries, progress)
            mode = f"dask[{client.scheduler.address if client.scheduler else scheduler}]"
        else:
            results, mode = run_local(run_task, tasks, workers, progress)
    finally:
        if own_client and client is not None:
            client.close()
    meta = {
        "mode": mode,
        "catalog": catalog,
        "strategy": strat.name,
        "start": w_start,
        "end": w_end,
        "freq": freq,
        "n_bars": n_bars,
        "n_symbols": len(symbols),
        "symbols": list(symbols),
        "step_ms": step,
        "equity_every": equity_every,
        "n_params": len(params),
        "n_columns": len(symbols) * len(params),
        "bar_columns": n_bars * len(symbols) * len(params),
        "plan_seconds": t_plan,
        "seconds": time.perf_counter() - t0,
        "portfolios": "one per (symbol, parameter set)"
        if per_symbol
        else "one per parameter set, its symbols sharing capital",
        "per_symbol": per_symbol,
        "budget_bytes": budget,
        "config": config.to_dict(),
    }
    return _assemble(results, symbols, plan, meta)

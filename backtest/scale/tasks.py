"""One task of a scale-out sweep: some symbols x some parameter sets, run where it lands.

:func:`run_task` is what the process pool and the Dask workers run (pickled by reference).
"""

from __future__ import annotations

import dataclasses

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..config import BacktestConfig
from ..errors import ConfigError
from .catalog_access import _is_url, _local_path, _ms, _stage_remote
from .figures import lean_figures
from .plan import peak_rss_bytes


@dataclass(frozen=True)
class SweepTask:
    """One unit of work: some symbols x some parameter sets (picklable; no arrays)."""

    task_id: int
    catalog: str
    symbols: tuple[str, ...]
    strategy: Any  # a registered name, a Strategy or a picklable function
    params: tuple[dict, ...]  # the parameter sets, in global order
    param_ids: tuple[int, ...]  # their positions in the sweep's grid
    config: dict
    start: str
    end: str
    freq: str = "1h"
    venue: str = "binance"
    gaps: str = "ffill"
    engine_batch: int = 0  # columns per engine call (0 = all the task's columns)
    equity_every: str | None = "1D"
    engine_kwargs: dict = field(default_factory=dict)

    @property
    def n_columns(self) -> int:
        return len(self.symbols) * len(self.params)


@dataclass
class TaskResult:
    """What a task sends back: one row per column, sampled equity, timings."""

    task_id: int
    rows: pd.DataFrame
    equity: np.ndarray | None  # (P, C) in the order of ``rows``
    equity_index: np.ndarray | None  # (P,) int64 ns, UTC bar open times
    stats: dict


def per_column_portfolios(targets):
    """The same targets with every column its own portfolio; ``param_id`` keeps the parameter set."""
    tagged = dataclasses.replace(targets, columns=targets.columns.assign(param_id=targets.columns["group"].to_numpy()))
    return tagged.per_column()


def _resolve_strategy(strategy):
    from strategies import as_strategy

    return as_strategy(strategy)


def _sample_positions(index: pd.DatetimeIndex, every: str | None) -> np.ndarray | None:
    """Position of the last bar of each period (``every``: a pandas frequency such as ``1D``)."""
    if every is None or not len(index):
        return None
    periods = index.floor(every).asi8
    last = np.flatnonzero(np.r_[periods[1:] != periods[:-1], True])
    return last


def _lean_engine_kwargs() -> dict:
    """The leanest engine outputs the figures need: per-bar column equity, final components,
    fill and liquidation events (``outputs=("equity",)`` where the engine has it, else ``full=False``)."""
    import inspect

    from ..engine import run_backtest

    if "outputs" in inspect.signature(run_backtest).parameters:
        return {"outputs": ("equity",)}
    return {"full": False}


def run_task(task: SweepTask) -> TaskResult:
    """Load the task's symbols, evaluate its parameter sets in engine batches, return compact rows."""
    from strategies import run_strategy

    from ..engine import run_backtest
    from ..loader import DataWarning, load_market

    t_start = time.perf_counter()
    timings = {"stage": 0.0, "load": 0.0, "strategy": 0.0, "engine": 0.0, "figures": 0.0}
    root = task.catalog
    if _is_url(root):
        root = _stage_remote(root, task.symbols, task.venue, task.start, task.end)
        timings["stage"] = time.perf_counter() - t_start
    else:
        root = _local_path(root)
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        market = load_market(root, list(task.symbols), start=task.start, end=task.end, freq=task.freq,
                             venue=task.venue, gaps=task.gaps)
    timings["load"] = time.perf_counter() - t
    config = BacktestConfig.from_dict(task.config)
    strat = _resolve_strategy(task.strategy)
    n_sym = market.n_symbols
    per_call = max(1, (task.engine_batch or task.n_columns) // n_sym)  # parameter sets per engine call
    rows, curves = [], []
    sample = _sample_positions(market.index, task.equity_every)
    for lo in range(0, len(task.params), per_call):
        params = list(task.params[lo:lo + per_call])
        ids = task.param_ids[lo:lo + per_call]
        t = time.perf_counter()
        tg = run_strategy(strat, market, params)
        if tg.weights is not None:
            raise ConfigError(f"strategy {strat.name!r} returns capital weights (cross-sectional); a scale-out sweep "
                              "runs every (symbol, parameter set) as its own portfolio and cannot run it: use carry sweep")
        tg = per_column_portfolios(tg)
        timings["strategy"] += time.perf_counter() - t
        t = time.perf_counter()
        res = run_backtest(market, tg, config, **_lean_engine_kwargs(), **task.engine_kwargs)
        timings["engine"] += time.perf_counter() - t
        t = time.perf_counter()
        figs = lean_figures(res, config)
        tab = tg.columns.reset_index(drop=True)
        tab["param_id"] = np.asarray(ids, dtype=np.int64)[tab["param_id"].to_numpy()]
        tab = tab.drop(columns=["group"])
        rows.append(pd.concat([tab, figs], axis=1))
        if sample is not None:
            curves.append(res.equity.to_numpy()[sample].copy())
        timings["figures"] += time.perf_counter() - t
        del res, tg, figs
    market_bars = market.n_bars
    del market
    stats = {**{f"{k}_seconds": v for k, v in timings.items()},
             "seconds": time.perf_counter() - t_start, "bars": int(market_bars), "columns": task.n_columns,
             "pid": os.getpid(), "host": os.uname().nodename, "peak_rss_bytes": peak_rss_bytes()}
    frame = pd.concat(rows, ignore_index=True)
    return TaskResult(task.task_id, frame, np.hstack(curves) if curves else None,
                      None if sample is None else _index_of(task, sample), stats)


def _index_of(task: SweepTask, sample: np.ndarray) -> np.ndarray:
    from ..schema import timeframe_minutes

    step = timeframe_minutes(task.freq) * 60_000
    t0 = (_ms(task.start) // step) * step
    return (t0 + sample.astype(np.int64) * step) * 1_000_000

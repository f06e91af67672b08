"""Distributed runs that compute exactly what a local run computes.

A *portfolio task* is some whole portfolios of a run: some parameter sets of a strategy over
all the run's symbols (a portfolio's symbols share capital and stay together), or, with
``per_symbol``, the same parameter sets with every symbol its own portfolio. A worker loads
the market itself from the catalog (the same window as the driver's market), evaluates the
strategy for its parameter sets and runs the engine with full outputs; the driver joins the
parts (:meth:`backtest.targets.Targets.concat`, :meth:`backtest.result.BacktestResult.concat`)
into the targets and result one process would have computed, and everything after that
(figures, walk-forward, report, files) is the local code. ``--workers`` and ``--scheduler``
change where a run computes, never what.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from backtest.config import BacktestConfig
from data.errors import ConfigError

#: Portfolios per engine call inside a task (the local path's chunking, so the work per call matches).
GROUPS_PER_CALL = 16


@dataclass(frozen=True)
class PortfolioTask:
    """Whole portfolios of one run (picklable; no arrays): ``params`` are expanded parameter sets."""

    task_id: int
    catalog: str
    symbols: tuple[str, ...]
    start: str  #: the driver market's first bar (ISO, UTC)
    end: str  #: the driver market's end (ISO, UTC, exclusive)
    freq: str
    venue: str
    gaps: str
    funding_gaps: str
    strategy: str
    params: tuple[dict, ...]
    param_offset: int  #: the run's parameter sets (portfolios without per_symbol) before this task's
    per_symbol: bool
    config: dict
    strategy_files: tuple[str, ...] = ()


def split_params(params: list[dict], n_tasks: int) -> list[list[dict]]:
    """Consecutive chunks of parameter sets, as equal as possible, at most ``n_tasks``."""
    n_tasks = max(1, min(n_tasks, len(params)))
    size = math.ceil(len(params) / n_tasks)
    return [params[i : i + size] for i in range(0, len(params), size)]


def run_portfolio_task(task: PortfolioTask):
    """Load the market, evaluate the strategy for the task's parameter sets, run the engine.

    Returns ``(task_id, targets, result, warnings)``: the task's
    :class:`~backtest.targets.Targets` (groups numbered from 0), its full
    :class:`~backtest.result.BacktestResult` and the text of the warnings raised on the worker
    (the driver prints and records them)."""
    from backtest.app.memory import configure_hugepages
    from backtest.engine import run_backtest
    from backtest.result import BacktestResult
    from backtest.targets import split_by_group
    from data.loader import DataWarning, load_market
    from strategies import load_strategy_file, run_strategy

    configure_hugepages()
    for path in task.strategy_files:
        load_strategy_file(path, overwrite=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", DataWarning)  # the driver's market carries the data notes
        market = load_market(
            task.catalog,
            list(task.symbols),
            start=task.start,
            end=task.end,
            freq=task.freq,
            venue=task.venue,
            gaps=task.gaps,
            funding_gaps=task.funding_gaps,
        )
        targets = run_strategy(task.strategy, market, list(task.params))  # groups 0 .. k-1
        run = targets.renumbered(task.param_offset)  # numbered as in the whole run
        if task.per_symbol:
            run = run.per_symbol().renumbered(task.param_offset * market.n_symbols)
        config = BacktestConfig.from_dict(task.config)
        parts = [run_backtest(market, part, config) for part in split_by_group(run, GROUPS_PER_CALL)]
    result = BacktestResult.concat(parts)
    return task.task_id, targets, result, [str(w.message) for w in caught]


def run_portfolio_tasks(
    tasks: list[PortfolioTask],
    *,
    workers: int | None = None,
    scheduler: Any = None,
    retries: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list, str]:
    """Run the tasks on a process pool (``workers`` > 1), on Dask (``scheduler``) or here;
    ``(targets, result, warnings)`` per task in task order, and the mode (``serial``, ``processes[N]``, ``dask[address]``)."""
    from backtest.app.scale.executors import run_tasks

    results, mode = run_tasks(run_portfolio_task, tasks, workers, scheduler, retries, progress)
    by_id = {r[0]: r[1:] for r in results}  # results come in completion order
    return [by_id[t.task_id] for t in tasks], mode


def check_scale_options(args) -> None:
    """Options of the lean, memory-bounded path that a full run does not take."""
    given = [f"--{k.replace('_', '-')}" for k in ("symbol_chunk", "time_chunk", "warmup") if getattr(args, k, None)]
    if given:
        raise ConfigError(
            f"{', '.join(given)} split a run into memory-bounded chunks; a run that fits in memory is split "
            "by whole portfolios (--param-chunk) only"
        )


def run_distributed(
    cfg,
    market,
    *,
    workers: int | None = None,
    scheduler: Any = None,
    param_chunk: int | None = None,
    strategy_files: tuple[str, ...] = (),
    progress: Callable[[int, int], None] | None = None,
):
    """The targets and result of ``cfg`` on ``market``, computed by portfolio tasks on a process
    pool or a Dask cluster; equal to :func:`backtest.app.runs.build_targets` followed by one
    engine run. Returns ``(targets, result, warnings, mode, number of tasks)``."""
    from backtest.result import BacktestResult
    from backtest.targets import Targets
    from strategies import expand_params, get_strategy, parse_params

    step = market.index[1] - market.index[0]
    start, end = market.index[0].isoformat(), (market.index[-1] + step).isoformat()
    slots = max(1, int(workers or 1)) if scheduler is None else 2
    tasks: list[PortfolioTask] = []
    for spec in cfg.strategies:
        get_strategy(spec.name)
        params = spec.params
        if params and all(isinstance(v, str) for v in params.values()):
            params = parse_params(spec.name, params)
        sets = expand_params(params)
        chunks = (
            [sets[i : i + param_chunk] for i in range(0, len(sets), param_chunk)]
            if param_chunk
            else split_params(sets, 2 * slots)
        )
        offset = sum(len(t.params) for t in tasks)
        for chunk in chunks:
            tasks.append(
                PortfolioTask(
                    task_id=len(tasks),
                    catalog=str(cfg.data.catalog),
                    symbols=tuple(market.symbols),
                    start=start,
                    end=end,
                    freq=cfg.data.freq,
                    venue=cfg.data.venue,
                    gaps=cfg.data.gaps,
                    funding_gaps=cfg.data.funding_gaps,
                    strategy=spec.name,
                    params=tuple(chunk),
                    param_offset=offset,
                    per_symbol=cfg.per_symbol,
                    config=cfg.engine.to_dict(),
                    strategy_files=tuple(strategy_files),
                )
            )
            offset += len(chunk)
    parts, mode = run_portfolio_tasks(tasks, workers=workers, scheduler=scheduler, progress=progress)
    targets = Targets.concat([p[0] for p in parts])
    if cfg.per_symbol:
        targets = targets.per_symbol()
    result = BacktestResult.concat([p[1] for p in parts])
    said = list(dict.fromkeys(w for p in parts for w in p[2]))
    return targets, result, said, mode, len(tasks)

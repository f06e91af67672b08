"""Scale-out sweeps: many symbols x many parameter sets x long minute histories (issue 6).

:func:`run_sweep` splits a sweep into independent tasks, one per (symbol chunk x parameter
chunk). Each task reads only its symbols from the Parquet catalog (a local path, or any fsspec
URL such as ``s3://bucket/catalog``: the task copies just its symbols' year files to a local
cache first), evaluates the strategy for its parameter sets, runs the engine with its leanest
outputs (per-bar equity only: ``outputs=("equity",)``, or ``full=False`` on engines without
``outputs=``) in batches of columns sized to a memory budget, and returns compact results:
the :data:`reports.keys.SUMMARY_KEYS` figures per (symbol, parameter set) and, optionally, an
equity curve sampled once per period (default: daily). Tasks run serially in this process,
on a local process pool (``workers=2``), or on a Dask distributed cluster
(``scheduler="tcp://host:8786"`` or a ``distributed.Client``), with identical results.

Portfolios
----------
A normal ``carry sweep`` treats one parameter set as one portfolio spanning all symbols (the
columns share its capital). A scale-out sweep treats **each (symbol, parameter set) as its own
portfolio with its own ``initial_capital_quote``**. Tasks are then independent and every
figure is invariant to how the sweep is chunked: the result of a column is bit-for-bit the
same whether it ran alone, in a chunk, in another process or on another machine. (Compare a
scale-out sweep with a normal run by giving every column its own group, see
:func:`per_column_portfolios`.) Cross-sectional strategies, whose targets depend on the other
symbols (``rotation``, anything returning capital weights), are refused.

Time grid
---------
All tasks share one bar grid: when ``start``/``end`` are not given, the driver reads the
first and last timestamps of every requested symbol (the time column of its first and last
year files only) and passes the union to every task, exactly as one ``load_market`` call over
all symbols would have built it.

Memory
------
Tasks are sized to a memory budget: see :mod:`backtest.app.scale.plan`.

Modules
-------
``plan`` (memory model, task sizing), ``tasks`` (one task: :func:`run_task`), ``sweep``
(:func:`run_sweep`: plan, run, assemble), ``cli`` (``carry sweep`` scale-out options).
Catalog access and the sweep window come from :mod:`data.catalog_access`, synthetic catalogs
from :mod:`data.synthetic`, the streaming summary figures from
:class:`reports.metrics.LeanFigures`.
"""

from __future__ import annotations

from backtest.app.scale.cli import add_scale_options, is_memory_bounded, run_scaled_sweep_command, wants_scale
from backtest.app.scale.plan import (
    BYTES_PER_COLUMN_BAR,
    BYTES_PER_SYMBOL_BAR,
    LOADER_BYTES_PER_BAR,
    SweepPlan,
    format_bytes,
    parse_bytes,
    plan_sweep,
    task_bytes,
)
from backtest.app.scale.sweep import SweepResult, run_sweep
from backtest.app.scale.tasks import SweepTask, TaskResult, per_column_portfolios, run_task
from data.catalog_access import sweep_window
from data.synthetic import synthetic_symbols, write_synthetic_catalog
from reports.metrics import lean_figures

__all__ = [
    "run_sweep",
    "SweepResult",
    "SweepTask",
    "TaskResult",
    "run_task",
    "plan_sweep",
    "SweepPlan",
    "task_bytes",
    "parse_bytes",
    "format_bytes",
    "sweep_window",
    "per_column_portfolios",
    "lean_figures",
    "write_synthetic_catalog",
    "synthetic_symbols",
    "add_scale_options",
    "wants_scale",
    "is_memory_bounded",
    "run_scaled_sweep_command",
    "BYTES_PER_SYMBOL_BAR",
    "BYTES_PER_COLUMN_BAR",
    "LOADER_BYTES_PER_BAR",
]

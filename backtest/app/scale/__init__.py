"""Scale-out sweeps: many symbols x many parameter sets x long minute histories (issues 6, 14).

Two ways to spread a ``carry sweep``, both computing what one process computes:

* ``--workers`` / ``--scheduler`` / ``--param-chunk`` alone (:mod:`.portfolio`): whole
  portfolios per task, full engine outputs, the driver joins the parts into the targets and
  result of one run and writes through the local code: identical files.
* the memory-bounded path, :func:`run_sweep` (``--max-memory``, ``--time-chunk``,
  ``--symbol-chunk``, ``--warmup``): tasks of (parameter chunk x all symbols), or with
  ``per_symbol`` (symbol chunk x parameter chunk), each reading only its symbols from the
  Parquet catalog (a local path, or any fsspec URL such as ``s3://bucket/catalog``: the task
  copies just its symbols' year files to a local cache first), evaluating the strategy and
  running the engine with lean outputs (:data:`.tasks.LEAN_ENGINE_OUTPUTS`) in batches of
  columns sized to a memory budget, the window cut into time chunks (each resumed from the
  previous one's engine state) when it does not fit. Tasks return compact results: the
  :data:`reports.keys.SUMMARY_KEYS` figures per portfolio and per column (streamed by
  :class:`reports.metrics.LeanFigures`), daily components, the lean events and sampled equity.
  Tasks run serially in this process, on a local process pool (``workers=2``), or on a Dask
  distributed cluster (``scheduler="tcp://host:8786"`` or a ``distributed.Client``), with
  identical results.

Portfolios
----------
As in one process: a parameter set is one portfolio spanning all symbols (the columns share
its capital; capital-weighted strategies such as ``rotation`` included); with ``per_symbol``
(``carry sweep --per-symbol``) each (symbol, parameter set) is its own portfolio with the whole
``initial_capital_quote``, and symbols may then be split over tasks too.

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
from backtest.app.scale.tasks import SweepTask, TaskResult, run_task
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

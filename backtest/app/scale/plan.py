"""Memory model and task sizing of a scale-out sweep.

Memory
------
A task's working set is estimated as ``bars x (symbols x BYTES_PER_SYMBOL_BAR + columns x
BYTES_PER_COLUMN_BAR) + bars x LOADER_BYTES_PER_BAR`` (see :func:`task_bytes`); the engine
batch (columns per engine call) and, if not given, the symbol chunk are chosen so it stays
under the per-task budget (``max_memory_bytes / workers``); when even one symbol x one
parameter set over the whole window does not fit, the window is cut into time chunks.
"""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import sys
from dataclasses import dataclass

from data.errors import ConfigError

#: Market arrays (17 float64 + int32 + 3 bool fields) plus the strategy's cached per-symbol
#: signals (trailing funding, basis, ...), bytes per bar and symbol.
BYTES_PER_SYMBOL_BAR = 240
#: Per bar and target column: the strategy's targets (its output, the stacked copy and
#: temporaries, about 32), the engine's per-bar column equity (8), margin ratio and distance
#: to liquidation (16, for ``worst_margin_ratio``) and eight components (64, sampled at day
#: ends for ``components.parquet``), and its event buffer (six 72-byte rows per target change
#: plus one per 16 bar-columns, reserved but touched only where events happen), with headroom.
#: Measured: about 24 bytes resident per bar-column for ``funding_threshold`` on 1-minute bars
#: with equity alone (1 symbol, 10 vs 60 parameter sets in one call), plus the 64 of the components.
BYTES_PER_COLUMN_BAR = 144
#: The loader's per-symbol temporaries (Arrow table, source series, resampling), bytes per
#: source bar; one symbol is in flight at a time.
LOADER_BYTES_PER_BAR = 600
#: Interpreter, libraries and compiled kernels of one worker process (not budgeted per task).
BASE_PROCESS_BYTES = 400 * 2**20
#: Fraction of a Dask worker's memory limit a task may reach with the worker's base: distributed
#: pauses a worker at 80 % (``distributed.worker.memory.pause``) and its nanny kills it at 95 %.
DASK_PAUSE_FRACTION = 0.8
#: An in-process run (``carry backtest/compare/sweep`` without scale-out options) with full
#: outputs, bytes per bar and target column at its peak: targets, the engine's per-bar outputs
#: (equity, 8 components, positions, margin), their joined copies and the output frames.
#: Measured: ``carry sweep`` of funding_threshold on the demo (3 symbols x 8,736 bars) peaks at
#: 0.70 GB with 20 parameter sets and 2.70 GB with 300 (about 275 bytes per bar-column).
IN_PROCESS_BYTES_PER_COLUMN_BAR = 280


def in_process_bytes(n_bars: int, n_symbols: int, n_columns: int) -> int:
    """Estimated peak memory of an in-process run with full outputs, bytes."""
    return int(
        BASE_PROCESS_BYTES + n_bars * (n_symbols * BYTES_PER_SYMBOL_BAR + n_columns * IN_PROCESS_BYTES_PER_COLUMN_BAR)
    )


_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}


def parse_bytes(text: str | int | float | None) -> int | None:
    """``"4GB"`` -> 4_000_000_000, ``"512MiB"`` -> 536_870_912, ``1e9`` -> 1_000_000_000."""
    if text is None:
        return None
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        raise ConfigError(f"cannot read a memory size from {text!r}; write e.g. 4GB, 512MB, 2GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000.0
    return f"{n:.2f} TB"  # pragma: no cover


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) * (1 if sys.platform == "darwin" else 1024)


def available_memory() -> int:
    """Memory available to new allocations, bytes (psutil if present, else sysconf)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def task_bytes(n_bars: int, n_symbols: int, n_columns: int, source_bars: int | None = None) -> int:
    """Estimated peak working set of one task, bytes (see the module docstring)."""
    src = n_bars if source_bars is None else source_bars
    return int(
        n_bars * (n_symbols * BYTES_PER_SYMBOL_BAR + n_columns * BYTES_PER_COLUMN_BAR) + src * LOADER_BYTES_PER_BAR
    )


@dataclass(frozen=True)
class SweepPlan:
    n_bars: int
    n_symbols: int
    n_params: int
    symbol_chunk: int
    param_chunk: int
    engine_batch: int  # columns per engine call
    budget_per_task: int | None
    task_bytes: int
    n_tasks: int
    time_chunk_bars: int = 0  # bars per time chunk (0: the whole window at once)
    warmup_bars: int = 0  # history loaded before each later chunk
    max_history_bars: int = 0  # most bars one engine batch may load to extend a warm-up (0: no limit)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def plan_sweep(
    n_bars: int,
    n_symbols: int,
    n_params: int,
    *,
    symbol_chunk: int | None = None,
    param_chunk: int | None = None,
    budget_per_task: int | None = None,
    min_tasks: int = 1,
    time_chunk_bars: int | None = None,
    warmup_bars: int = 0,
) -> SweepPlan:
    """Choose chunk sizes so one task's working set stays under ``budget_per_task`` bytes.

    Defaults: every parameter set in one task (one load of each symbol), symbols split so the
    sweep has at least ``min_tasks`` tasks and the symbols' market arrays plus one column each
    fit; the engine batch (columns per engine call) is then as wide as the budget allows. When
    even one symbol x one parameter set over the whole window does not fit, the window is cut
    into time chunks (``time_chunk_bars``, plus ``warmup_bars`` of history before each later
    chunk) that do; ``time_chunk_bars`` may also be given (0: never cut).
    """
    if n_symbols < 1 or n_params < 1:
        raise ConfigError("a sweep needs at least one symbol and one parameter set")
    warmup_bars = max(0, int(warmup_bars))
    pc = min(n_params, param_chunk or n_params)
    chunk = 0 if not time_chunk_bars or time_chunk_bars >= n_bars else int(time_chunk_bars)

    def held(chunk_bars: int) -> int:  # bars in memory at once
        return n_bars if not chunk_bars else min(n_bars, chunk_bars + warmup_bars)

    if symbol_chunk:
        sc = min(n_symbols, int(symbol_chunk))
    else:
        sc = max(1, -(-n_symbols // max(1, min_tasks)))
        if budget_per_task is not None:
            while sc > 1 and task_bytes(held(chunk), sc, sc) > budget_per_task:
                sc = max(1, sc // 2)
    if budget_per_task is not None and time_chunk_bars is None and task_bytes(n_bars, sc, sc) > budget_per_task:
        # cut time: the most bars one task of sc symbols x 1 parameter set can hold
        per_bar = task_bytes(1, sc, sc)
        fit = int(budget_per_task // per_bar) - warmup_bars
        if fit < max(1, warmup_bars // 4):
            raise ConfigError(
                f"memory budget {format_bytes(budget_per_task)} per task holds {budget_per_task // per_bar:,} bars of "
                f"{sc} symbol(s) x 1 parameter set, too few for time chunks after a warm-up of {warmup_bars:,} bars; "
                "raise --max-memory, lower --workers or --warmup"
            )
        chunk = fit
    bars = held(chunk)
    if budget_per_task is None:
        batch = sc * pc
    else:
        free = budget_per_task - task_bytes(bars, sc, 0)
        per_param = bars * sc * BYTES_PER_COLUMN_BAR
        k = int(free // per_param) if per_param else pc
        if k < 1:
            need = task_bytes(bars, sc, sc)
            raise ConfigError(
                f"memory budget {format_bytes(budget_per_task)} per task is too small for {sc} symbol(s) x 1 parameter set "
                f"of {bars:,} bars (needs about {format_bytes(need)}); raise --max-memory, lower --workers, "
                "--symbol-chunk or --time-chunk, or shorten the period"
            )
        batch = sc * min(pc, k)
    n_tasks = -(-n_symbols // sc) * -(-n_params // pc)
    max_history = 0
    if chunk and budget_per_task is not None:
        max_history = max(bars, int(budget_per_task // task_bytes(1, sc, batch)))
    return SweepPlan(
        n_bars,
        n_symbols,
        n_params,
        sc,
        pc,
        batch,
        budget_per_task,
        task_bytes(bars, sc, batch),
        n_tasks,
        chunk,
        warmup_bars if chunk else 0,
        max_history,
    )

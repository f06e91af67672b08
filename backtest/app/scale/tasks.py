"""One task of a scale-out sweep: some symbols x some parameter sets, run where it lands.

:func:`run_task` is what the process pool and the Dask workers run (pickled by reference).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from backtest.app.scale.plan import peak_rss_bytes
from backtest.config import BacktestConfig
from data.catalog_access import is_url, local_path, stage_remote
from data.errors import ConfigError, DataError
from data.units import to_ms
from reports.frames import period_ends
from reports.metrics import LeanFigures


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
    funding_gaps: str = "error"
    engine_batch: int = 0  # columns per engine call (0 = all the task's columns)
    equity_every: str | None = "1D"
    engine_kwargs: dict = field(default_factory=dict)
    time_chunk_bars: int = 0  # bars per time chunk (0: the whole window in one load)
    warmup_bars: int = 0  # bars of history loaded before each later chunk for the strategy's signals
    max_history_bars: int = 0  # most bars a batch may load when its warm-up is extended (0: no limit)
    per_symbol: bool = (
        False  # every (symbol, parameter set) its own portfolio (else a parameter set's symbols share capital)
    )
    symbol_pos: tuple[int, ...] = ()  # the symbols' positions in the sweep's symbol list (default 0, 1, ...)
    n_sweep_symbols: int = 0  # symbols in the whole sweep (default: the task's)

    @property
    def n_columns(self) -> int:
        return len(self.symbols) * len(self.params)


@dataclass
class TaskResult:
    """What a task sends back: figures per column and per portfolio, sampled curves, daily
    components, the lean events, data coverage, timings. Columns and portfolios carry their
    sweep-wide ids (``column``: ``param_id x symbols + symbol position``; ``portfolio``: the
    ``param_id``, or the column with ``per_symbol``)."""

    task_id: int
    rows: pd.DataFrame  # one row per column: column, portfolio, param_id, symbol, strategy, parameters, figures
    portfolios: pd.DataFrame  # one row per portfolio: portfolio, param_id, figures
    equity: np.ndarray | None  # (P, C) column equity at the sample bars, in the order of ``rows``
    group_equity: np.ndarray | None  # (P, G) portfolio equity at the sample bars, in the order of ``portfolios``
    equity_index: np.ndarray | None  # (P,) int64 ns, UTC bar open times
    components: dict[str, np.ndarray]  # key -> (D, C) cumulative component (quote) at each UTC day's last bar
    day_index: np.ndarray  # (D,) int64 ns, the UTC days (midnight)
    events: pd.DataFrame  # the lean events (fills, transfers, liquidations, stops, skips), sweep-wide ids
    coverage: dict  # {"symbols": {symbol: counts over the run's bars}, "notes": [...]} (see :func:`_add_coverage`)
    flags: tuple[str, ...]
    warnings: tuple[str, ...]
    stats: dict


def resolve_strategy(strategy):
    from strategies import as_strategy

    return as_strategy(strategy)


#: The engine outputs a task keeps per bar, only for the time chunk in memory: column and
#: portfolio equity (the return figures and the sampled curves), margin ratios (for
#: ``worst_margin_ratio``) and components (sampled at each UTC day's end for
#: ``components.parquet``); fill, transfer and liquidation events are always recorded, the
#: funding and borrow rows (one per settlement or hour) are not (their cash is in the components).
LEAN_ENGINE_OUTPUTS = ("equity", "group_equity", "margin", "components")


#: Rows at the end of a chunk's warm-up compared with the previous chunk's targets.
OVERLAP_CHECK_BARS = 64


def run_task(task: SweepTask) -> TaskResult:
    """Load the task's symbols, evaluate its parameter sets in engine batches, return compact results.

    A portfolio is a parameter set over the task's symbols sharing the initial capital (the
    task then holds every symbol of the sweep), or with ``per_symbol`` each (symbol, parameter
    set) alone. With ``time_chunk_bars`` the window is loaded and simulated one time chunk at a
    time: every engine batch resumes from its state at the end of the previous chunk (exactly
    as one run), and the strategy sees ``warmup_bars`` of history before each later chunk.
    Targets (and capital weights) at the end of that warm-up must equal the ones the previous
    chunk computed for the same bars; where they do not, the symbols concerned are recomputed
    with twice the history, up to the window start, alone when that gives them the same targets
    as in the batch (:func:`_extend_symbols`), else the whole batch (``warmups_extended`` in
    the task's stats), as long as that fits ``max_history_bars`` (else ConfigError); a
    mismatch even with all the history raises ConfigError.
    """
    from backtest.app.memory import configure_hugepages
    from backtest.engine import run_backtest
    from backtest.kernels.simulate import S_Q, S_S
    from data.loader import DataWarning, load_market
    from data.schema import timeframe_minutes
    from reports.keys import COMPONENT_KEYS
    from strategies import run_strategy

    configure_hugepages()
    t_start = time.perf_counter()
    timings = {"stage": 0.0, "load": 0.0, "strategy": 0.0, "engine": 0.0, "figures": 0.0}
    root = task.catalog
    if is_url(root):
        root = stage_remote(root, task.symbols, task.venue, task.start, task.end)
        timings["stage"] = time.perf_counter() - t_start
    else:
        root = local_path(root)
    step = timeframe_minutes(task.freq) * 60_000
    t0 = (ms_of(task.start) // step) * step
    n_bars = int(-(-(ms_of(task.end) - t0) // step))
    chunk = task.time_chunk_bars if 0 < task.time_chunk_bars < n_bars else n_bars
    config = BacktestConfig.from_dict(task.config)
    strat = resolve_strategy(task.strategy)
    n_sym = len(task.symbols)
    sym_pos = np.asarray(task.symbol_pos or range(n_sym), dtype=np.int64)
    n_all = task.n_sweep_symbols or n_sym
    if not task.per_symbol and n_all != n_sym:
        raise ConfigError(
            f"task {task.task_id}: a portfolio's symbols share capital and stay in one task "
            f"({n_sym} of the sweep's {n_all} symbols given); split symbols only with per_symbol"
        )
    per_call = max(1, (task.engine_batch or task.n_columns) // n_sym)  # parameter sets per engine call
    batches = [
        (list(task.params[lo : lo + per_call]), task.param_ids[lo : lo + per_call])
        for lo in range(0, len(task.params), per_call)
    ]
    bar_index = pd.DatetimeIndex(pd.to_datetime((t0 + np.arange(n_bars, dtype=np.int64) * step) * 1_000_000, utc=True))
    sample = period_ends(bar_index, task.equity_every) if task.equity_every is not None and len(bar_index) else None
    day_ends = period_ends(bar_index, "1D")
    day_index = bar_index[day_ends].floor("1D").asi8
    del bar_index
    states: list = [None] * len(batches)
    figures: list = [None] * len(batches)
    tables: list = [None] * len(batches)
    tails: list = [None] * len(batches)
    from_start: list[set] = [set() for _ in batches]  # symbols whose targets needed all the history
    curves: list[list] = [[] for _ in batches]
    group_curves: list[list] = [[] for _ in batches]
    comps: list[list] = [[] for _ in batches]
    events: list = []
    flags: dict = {}
    coverage: dict = {"symbols": {}, "notes": []}
    n_chunks = 0

    def load(w0: int, k1: int, symbols: list[str] | None = None):
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            m = load_market(
                root,
                list(task.symbols) if symbols is None else symbols,
                start=_iso(t0 + w0 * step),
                end=_iso(t0 + k1 * step),
                freq=task.freq,
                venue=task.venue,
                gaps=task.gaps,
                funding_gaps=task.funding_gaps,
                run_end=task.end if task.time_chunk_bars > 0 else None,  # one time chunk of the run
            )
        timings["load"] += time.perf_counter() - t
        if m.n_bars != k1 - w0:
            raise DataError(
                f"task {task.task_id}: loading {_iso(t0 + w0 * step)} .. {_iso(t0 + k1 * step)} gave "
                f"{m.n_bars} bars, expected {k1 - w0} (bars of {task.freq} on a regular grid)"
            )
        return m

    def targets_of(m, params):
        tg = run_strategy(strat, m, params)  # portfolios 0 .. len(params) - 1
        return tg.per_symbol() if task.per_symbol else tg

    extended = extended_alone = 0
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.simplefilter("ignore", DataWarning)
        for k0 in range(0, n_bars, chunk):
            k1 = min(n_bars, k0 + chunk)
            w0 = max(0, k0 - task.warmup_bars)
            market = load(w0, k1)
            off = k0 - w0
            run_market = market if off == 0 else market.select(start=market.index[off])
            _add_coverage(coverage, run_market)
            for b, (params, ids) in enumerate(batches):
                t = time.perf_counter()
                m_b, wb = market, off
                tg = targets_of(m_b, params)
                # the targets at the end of the warm-up must be the previous chunk's; where they are
                # not (state older than the warm-up, e.g. a hysteresis band held for months), the
                # symbols concerned get twice the history, up to the window start (then they are
                # exact): alone when their targets do not depend on the other symbols, else the batch
                if tails[b] is not None and not _same_overlap(_signals(tg), wb, tails[b]):
                    spliced = _extend_symbols(
                        task,
                        strat.name,
                        tg,
                        params,
                        market,
                        off,
                        k0,
                        k1,
                        t0,
                        step,
                        tails[b],
                        load,
                        targets_of,
                        from_start[b],
                    )
                    if spliced is not None:
                        tg, n_ext = spliced
                        extended += n_ext
                        extended_alone += n_ext
                while tails[b] is not None and not _same_overlap(_signals(tg), wb, tails[b]):
                    if wb >= k0:
                        _check_overlap(task, strat.name, m_b, _signals(tg), wb, tails[b])  # raises
                    wb = min(k0, max(2 * wb, OVERLAP_CHECK_BARS))
                    _check_history(task, strat.name, wb, k0, k1, t0, step)
                    extended += 1
                    m_b = load(k0 - wb, k1)
                    tg = targets_of(m_b, params)
                del m_b
                if k1 < n_bars:
                    sig = _signals(tg)
                    tails[b] = sig[max(0, sig.shape[0] - OVERLAP_CHECK_BARS) :].copy()
                    del sig
                else:
                    tails[b] = None
                run_tg = tg if wb == 0 else tg.bars(wb, tg.values.shape[0])
                timings["strategy"] += time.perf_counter() - t
                t = time.perf_counter()
                prev = states[b]
                res = run_backtest(
                    run_market, run_tg, config, outputs=LEAN_ENGINE_OUTPUTS, resume=prev, **task.engine_kwargs
                )
                states[b] = res.state
                timings["engine"] += time.perf_counter() - t
                t = time.perf_counter()
                pid = np.asarray(ids, dtype=np.int64)
                if figures[b] is None:
                    figures[b] = LeanFigures(tg.n_columns, config.initial_capital_quote, res.bar_hours, tg.group)
                    tab = tg.columns.reset_index(drop=True)
                    local_pid = (tab["param_id"] if task.per_symbol else tab["group"]).to_numpy(np.int64)
                    tab["param_id"] = pid[local_pid]
                    tab["column"] = tab["param_id"].to_numpy() * n_all + sym_pos[tg.column_symbol]
                    tab["portfolio"] = tab["column"] if task.per_symbol else tab["param_id"]
                    tables[b] = tab.drop(columns=["group"])
                figures[b].add(res, *((prev.columns[:, S_S], prev.columns[:, S_Q]) if prev is not None else ()))
                if sample is not None:
                    here = sample[(sample >= k0) & (sample < k1)] - k0
                    curves[b].append(res.equity.to_numpy()[here].copy())
                    group_curves[b].append(res.group_equity.to_numpy()[here].copy())
                ends = day_ends[(day_ends >= k0) & (day_ends < k1)] - k0
                comps[b].append({k: res.components[v].to_numpy()[ends] for k, v in COMPONENT_KEYS.items()})
                events.append(_global_events(res.events, tables[b]))
                flags.update(dict.fromkeys(res.flags))
                timings["figures"] += time.perf_counter() - t
                del res, tg, run_tg
            del market, run_market
            n_chunks += 1
    rows, ports = [], []
    for b in range(len(batches)):
        rows.append(pd.concat([tables[b], figures[b].frame()], axis=1))
        port = tables[b].drop_duplicates("portfolio")[["portfolio", "param_id"]].reset_index(drop=True)
        ports.append(pd.concat([port, figures[b].portfolio_frame()], axis=1))
    stats = {
        **{f"{k}_seconds": v for k, v in timings.items()},
        "seconds": time.perf_counter() - t_start,
        "bars": int(n_bars),
        "columns": task.n_columns,
        "time_chunks": n_chunks,
        "warmups_extended": extended,
        "warmups_extended_alone": extended_alone,  # of which for the stale symbols alone
        "pid": os.getpid(),
        "host": os.uname().nodename,
        "peak_rss_bytes": peak_rss_bytes(),
    }
    components = {
        k: np.hstack([np.vstack([c[k] for c in comps[b]]) for b in range(len(batches))]) for k in COMPONENT_KEYS
    }
    return TaskResult(
        task.task_id,
        pd.concat(rows, ignore_index=True),
        pd.concat(ports, ignore_index=True),
        np.hstack([np.vstack(c) for c in curves]) if sample is not None else None,
        np.hstack([np.vstack(c) for c in group_curves]) if sample is not None else None,
        None if sample is None else _index_of(task, sample),
        components,
        day_index,
        pd.concat(events, ignore_index=True),
        coverage,
        tuple(flags),
        tuple(dict.fromkeys(str(w.message) for w in caught)),
        stats,
    )


def _signals(tg) -> np.ndarray:
    """The targets and, for capital-weighted strategies, the weights, side by side (bars x ...)."""
    return tg.values if tg.weights is None else np.hstack([tg.values, tg.weights])


def _global_events(ev: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """A batch's events with the sweep-wide column and portfolio ids (``group`` -> ``portfolio``;
    cross-margin transfers and stops keep column -1)."""
    col = ev["column"].to_numpy(np.int64)
    glob = table["column"].to_numpy(np.int64)
    port = table.drop_duplicates("portfolio")["portfolio"].to_numpy(np.int64)
    ev = ev.assign(
        column=np.where(col >= 0, glob[np.maximum(col, 0)] if len(glob) else col, -1),
        group=port[ev["group"].to_numpy(np.int64)] if len(ev) else ev["group"],
    )
    return ev.rename(columns={"group": "portfolio"})


def _add_coverage(acc: dict, market) -> None:
    """Add a chunk's data coverage per symbol (the counts of :func:`reports.outputs.coverage`)
    and its market notes to ``acc`` (``{"symbols": {}, "notes": []}``)."""
    step = market.index[1] - market.index[0] if market.n_bars > 1 else pd.Timedelta(0)
    for j, s in enumerate(market.symbols):
        c = acc["symbols"].setdefault(
            s,
            {
                "valid_bars": 0,
                "filled_bars": 0,
                "funding_settlements": 0,
                "start": None,
                "end": None,
                "bars": 0,
                "settlements_used": 0,
            },
        )
        ok = market.tradable[:, j]
        idx = np.flatnonzero(ok)
        c["valid_bars"] += int(market.valid[:, j].sum())
        c["filled_bars"] += int(market.filled[:, j].sum())
        c["funding_settlements"] += int(market.funding_count[:, j].sum())
        c["bars"] += int(idx.size)
        c["settlements_used"] += int(market.funding_count[ok, j].sum())
        if idx.size:
            c["start"] = c["start"] or str(market.index[idx[0]])
            c["end"] = str(market.index[idx[-1]] + step)
    acc["notes"] = list(dict.fromkeys([*acc["notes"], *market.notes]))


def ms_of(time: str) -> int:
    """Milliseconds since the epoch of a window bound (ISO text, UTC)."""
    ms = to_ms(time)
    if ms is None:
        raise ConfigError(f"no time given for a sweep window bound ({time!r})")
    return ms


def _iso(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()


def _check_history(
    task: SweepTask, name: str, wb: int, k0: int, k1: int, t0: int, step: int, share: float = 1.0
) -> None:
    """ConfigError when a batch's extended history of ``wb`` bars does not fit the budget
    (``share``: the fraction of the task's symbols loaded with it)."""
    if task.max_history_bars and k1 - k0 + wb > task.max_history_bars / share:
        raise ConfigError(
            f"task {task.task_id}: strategy {name!r} keeps a state older than {wb // 2:,} bars "
            f"(its targets at {_iso(t0 + k0 * step)} differ from the previous time chunk's), and the "
            f"history it needs does not fit the memory budget ({task.max_history_bars:,} bars per "
            "batch); raise --max-memory or --warmup, or run without time chunks"
        )


def _stale_columns(values: np.ndarray, off: int, tail: np.ndarray) -> np.ndarray:
    """Columns whose targets in the ``min(off, len(tail))`` bars before row ``off`` differ from
    the end of ``tail`` (NaN equal to NaN); all of them when there is no overlap."""
    m = min(off, tail.shape[0])
    if m == 0:
        return np.ones(values.shape[1], dtype=bool)
    here, there = values[off - m : off], tail[tail.shape[0] - m :]
    return ~((here == there) | (np.isnan(here) & np.isnan(there))).all(axis=0)


def _extend_symbols(
    task: SweepTask,
    name: str,
    tg,
    params,
    market,
    off: int,
    k0: int,
    k1: int,
    t0: int,
    step: int,
    tail,
    load,
    targets_of,
    from_start: set,
):
    """The batch's targets with the symbols whose warm-up did not reproduce the previous chunk's
    targets recomputed alone with twice the history, again and again, up to the window start
    (at once for symbols in ``from_start``, which needed all of it at the previous chunk: a state
    held that long is usually still held; updated in place).

    Returns ``(targets, extensions)``, or None when this does not apply: capital-weighted
    targets, every symbol stale, or targets of those symbols computed alone that differ from
    theirs in the batch (the strategy looks across symbols); the caller then extends the whole
    batch. The spliced rows are the last ``min(off, len(tail))`` of the warm-up and the chunk's.
    """
    if tg.weights is not None:
        return None
    stale = _stale_columns(tg.values, off, tail)
    syms = np.unique(tg.column_symbol[stale])
    if len(syms) == len(task.symbols):
        return None
    names = [task.symbols[i] for i in syms]
    cols = np.flatnonzero(np.isin(tg.column_symbol, syms))  # every parameter set of those symbols
    alone = targets_of(market.select(symbols=names), params)
    if alone.values.shape != (tg.values.shape[0], len(cols)) or not _same_values(alone.values, tg.values[:, cols]):
        return None  # the symbols' targets depend on the others
    m = min(off, tail.shape[0])
    values = tg.values.copy()
    wb, n_ext = off, 0
    while True:
        if wb >= k0:
            return None  # all the history and still different: the caller says where
        wb = k0 if set(syms.tolist()) <= from_start else min(k0, max(2 * wb, OVERLAP_CHECK_BARS))
        _check_history(task, name, wb, k0, k1, t0, step, share=len(names) / len(task.symbols))
        n_ext += 1
        alone = targets_of(load(k0 - wb, k1, names), params)
        if not _stale_columns(alone.values, wb, tail[:, cols]).any():
            break
    if wb >= k0:
        from_start.update(syms.tolist())
    else:
        from_start.difference_update(syms.tolist())
    values[off - m :, cols] = alone.values[wb - m :]
    from backtest.targets import Targets

    return Targets(values, tg.column_symbol, tg.group, tg.columns, None), n_ext


def _same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(((a == b) | (np.isnan(a) & np.isnan(b))).all())


def _same_overlap(values: np.ndarray, off: int, tail: np.ndarray) -> bool:
    """Whether the targets of the ``min(off, len(tail))`` bars before row ``off`` equal the end
    of ``tail`` (the previous chunk's last targets), NaN equal to NaN."""
    m = min(off, tail.shape[0])
    if m == 0:
        return False
    here, there = values[off - m : off], tail[tail.shape[0] - m :]
    return bool(((here == there) | (np.isnan(here) & np.isnan(there))).all())


def _check_overlap(task: SweepTask, name: str, market, values: np.ndarray, off: int, tail: np.ndarray) -> None:
    """Raise ConfigError naming the first bar where the targets at the end of a chunk's warm-up
    differ from the previous chunk's for those bars."""
    m = min(off, tail.shape[0])
    if m == 0:
        raise ConfigError(
            f"task {task.task_id}: time chunks need a warm-up of at least 1 bar to check that strategy "
            f"{name!r} gives the same targets as one run; set warmup"
        )
    here, there = values[off - m : off], tail[tail.shape[0] - m :]
    same = (here == there) | (np.isnan(here) & np.isnan(there))
    if not same.all():
        r, c = np.argwhere(~same)[0]
        raise ConfigError(
            f"task {task.task_id}: strategy {name!r} gives other targets at {market.index[off - m + r]} (column {c}) "
            f"with {off} bars of history than the previous time chunk did ({there[r, c]} vs {here[r, c]}), even with "
            "all the history from the window start: its targets depend on more than the market's bars (state kept "
            "between calls, randomness, the position of a bar in the window)"
        )


def _index_of(task: SweepTask, sample: np.ndarray) -> np.ndarray:
    from data.schema import timeframe_minutes

    step = timeframe_minutes(task.freq) * 60_000
    t0 = (ms_of(task.start) // step) * step
    return (t0 + sample.astype(np.int64) * step) * 1_000_000

"""Scale-out sweeps: many symbols x many parameter sets x long minute histories (issue 6).

:func:`run_sweep` splits a sweep into independent tasks, one per (symbol chunk x parameter
chunk). Each task reads only its symbols from the Parquet catalog (a local path, or any fsspec
URL such as ``s3://bucket/catalog``: the task copies just its symbols' year files to a local
cache first), evaluates the strategy for its parameter sets, runs the engine with its leanest
outputs (per-bar equity only: ``outputs=("equity",)``, or ``full=False`` on engines without
``outputs=``) in batches of columns sized to a memory budget, and returns compact results:
the :data:`backtest.app.SUMMARY_KEYS` figures per (symbol, parameter set) and, optionally, an
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
A task's working set is estimated as ``bars x (symbols x BYTES_PER_SYMBOL_BAR + columns x
BYTES_PER_COLUMN_BAR) + bars x LOADER_BYTES_PER_BAR`` (see :func:`task_bytes`); the engine
batch (columns per engine call) and, if not given, the symbol chunk are chosen so it stays
under the per-task budget (``max_memory_bytes / workers``). The per-column figure is
dominated by the engine's event buffer, which ``run_backtest`` reserves at about 6 rows of
72 bytes per finite target (it is only touched where events happen, so resident memory is
usually far lower; the estimate is what must be allocatable).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import resource
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import pandas as pd
from numba import njit

from .config import BacktestConfig
from .errors import ConfigError, DataError

if TYPE_CHECKING:
    from .catalog import Catalog

__all__ = [
    "run_sweep", "SweepResult", "SweepTask", "TaskResult", "run_task", "plan_sweep", "SweepPlan",
    "task_bytes", "parse_bytes", "format_bytes", "sweep_window", "per_column_portfolios", "lean_figures",
    "write_synthetic_catalog", "synthetic_symbols", "add_scale_options", "run_scaled_sweep_command",
    "BYTES_PER_SYMBOL_BAR", "BYTES_PER_COLUMN_BAR", "LOADER_BYTES_PER_BAR",
]

#: Market arrays (17 float64 + int32 + 3 bool fields) plus the strategy's cached per-symbol
#: signals (trailing funding, basis, ...), bytes per bar and symbol.
BYTES_PER_SYMBOL_BAR = 240
#: Per bar and target column: the strategy's targets (its output, the stacked copy and
#: temporaries, 32), the engine's equity and portfolio equity (16) and the event buffer the
#: engine reserves (``6 * finite targets + bars * columns / 4`` rows of 72 bytes = 450).
BYTES_PER_COLUMN_BAR = 500
#: The loader's per-symbol temporaries (Arrow table, source series, resampling), bytes per
#: source bar; one symbol is in flight at a time.
LOADER_BYTES_PER_BAR = 600
#: Interpreter, libraries and compiled kernels of one worker process (not budgeted per task).
BASE_PROCESS_BYTES = 400 * 2**20

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


# --------------------------------------------------------------------------- small helpers
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


def _available_memory() -> int:
    """Memory available to new allocations, bytes (psutil if present, else sysconf)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def _is_url(catalog: str) -> bool:
    return "://" in str(catalog) and not str(catalog).startswith("file://")


def _local_path(catalog: str) -> str:
    s = str(catalog)
    return s[len("file://"):] if s.startswith("file://") else s


def _chunks(seq: list, size: int) -> list[list]:
    size = max(1, int(size))
    return [seq[i:i + size] for i in range(0, len(seq), size)]


def _ms(value) -> int | None:
    if value is None:
        return None
    ts = pd.Timestamp(value)
    ts = ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
    return int(ts.value // 1_000_000)


def _ts(ms: int) -> str:
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()


# --------------------------------------------------------------------------- catalog access
class _FS:
    """The few file operations the sweep needs, on a local directory or an fsspec URL."""

    def __init__(self, catalog: str):
        self.url = str(catalog)
        if _is_url(self.url):
            try:
                import fsspec
            except ImportError:
                raise ConfigError(f"reading the catalog {self.url} needs fsspec (pip install 'carry[scale]')") from None
            self.fs, self.root = fsspec.core.url_to_fs(self.url)
            self.remote = True
        else:
            self.fs, self.root, self.remote = None, _local_path(self.url).rstrip("/") or "/", False

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def glob(self, pattern: str) -> list[str]:
        if self.remote:
            return sorted(self.fs.glob(pattern))
        import glob

        return sorted(glob.glob(pattern))

    def exists(self, path: str) -> bool:
        return self.fs.exists(path) if self.remote else os.path.exists(path)

    def read_times(self, path: str) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.remote:
            with self.fs.open(path, "rb") as fh:
                t = pq.read_table(fh, columns=["time"])
        else:
            t = pq.read_table(path, columns=["time"])
        return t.column("time").cast(pa.int64()).to_numpy()

    def get(self, path: str, local: str) -> None:
        self.fs.get(path, local)

    def info_token(self, path: str) -> str:
        info = self.fs.info(path)
        return str(info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or "") + \
            f":{info.get('size')}"


def _year_of(path: str) -> int:
    m = re.search(r"year=(\d{4})\.parquet$", path)
    return int(m.group(1)) if m else -1


def _timeframes(fs: _FS, venue: str, kind: str, symbol: str, freq_min: int) -> list[str]:
    from .schema import timeframe_minutes

    out = []
    for d in fs.glob(fs.join(f"venue={venue}", f"kind={kind}", "timeframe=*", f"symbol={symbol}")):
        tf = d.rstrip("/").split("/")[-2].split("=", 1)[1]
        try:
            m = timeframe_minutes(tf)
        except ValueError:
            continue
        if freq_min % m == 0 and fs.glob(d.rstrip("/") + "/year=*.parquet"):
            out.append(tf)
    return out


def _source_series(fs: _FS, symbol: str, freq: str, venue: str) -> tuple[str, str, str]:
    """(spot symbol, perp symbol, source timeframe) as :func:`backtest.loader.load_market` picks them."""
    from .schema import timeframe_minutes
    from .symbols import perp_candidates, spot_symbol

    freq_min = timeframe_minutes(freq)
    canonical = spot_symbol(symbol)
    spot_tfs = set(_timeframes(fs, venue, "spot", canonical, freq_min))
    for cand, _ in perp_candidates(symbol):
        common = sorted(spot_tfs & set(_timeframes(fs, venue, "perp", cand, freq_min)), key=timeframe_minutes)
        if common:
            return canonical, cand, common[-1]
    raise DataError(f"catalog {fs.url}: no spot and perp bars for {symbol} at a timeframe dividing {freq} on venue {venue}")


def sweep_window(catalog: str, symbols: Iterable[str], freq: str = "1h", venue: str = "binance",
                 start=None, end=None) -> tuple[str, str]:
    """The common ``[start, end)`` of a sweep: the union of the symbols' bar coverage.

    Reads only the ``time`` column of each series' first and last year file, so it is cheap even
    for hundreds of symbols of minute data. Explicit bounds win.
    """
    start_ms, end_ms = _ms(start), _ms(end)
    if start_ms is not None and end_ms is not None:
        return _ts(start_ms), _ts(end_ms)
    fs = _FS(catalog)
    lo, hi = None, None
    for sym in symbols:
        spot, perp, tf = _source_series(fs, sym, freq, venue)
        for kind, name in (("spot", spot), ("perp", perp)):
            files = fs.glob(fs.join(f"venue={venue}", f"kind={kind}", f"timeframe={tf}", f"symbol={name}", "year=*.parquet"))
            if not files:
                continue
            first, last = fs.read_times(files[0]), fs.read_times(files[-1])
            if first.size:
                lo = int(first[0]) if lo is None else min(lo, int(first[0]))
            if last.size:
                hi = int(last[-1]) if hi is None else max(hi, int(last[-1]))
    if lo is None:
        raise DataError(f"catalog {catalog}: no bars for {list(symbols)}")
    return _ts(lo if start_ms is None else start_ms), _ts(hi + 1 if end_ms is None else end_ms)


def _stage_remote(catalog: str, symbols: Iterable[str], venue: str, start: str, end: str,
                  cache_dir: str | None = None) -> str:
    """Copy the year files of ``symbols`` within [start, end) from an fsspec URL to a local cache.

    The cache (``$CARRY_CACHE`` or the temp dir, one folder per catalog URL) is reused across
    tasks on a worker; a file is fetched again only if its size/ETag/mtime changed.
    """
    from .symbols import perp_candidates, spot_symbol, split_symbol

    fs = _FS(catalog)
    base = cache_dir or os.environ.get("CARRY_CACHE") or os.path.join(tempfile.gettempdir(), "carry-catalog-cache")
    local_root = os.path.join(base, hashlib.sha256(fs.url.encode()).hexdigest()[:16])
    y0, y1 = pd.Timestamp(start).year, pd.Timestamp(end).year
    names: set[str] = set()
    for sym in symbols:
        names.add(spot_symbol(sym))
        names.update(c for c, _ in perp_candidates(sym))
        names.add(split_symbol(spot_symbol(sym))[0])  # borrow rates are stored per asset
    root = fs.root.rstrip("/")
    for name in sorted(names):
        pats = [fs.join(f"venue={venue}", "kind=*", "timeframe=*", f"symbol={name}", "year=*.parquet"),
                fs.join(f"venue={venue}", "kind=*", f"symbol={name}", "year=*.parquet")]
        for pat in pats:
            for path in fs.glob(pat):
                year = _year_of(path)
                kind = re.search(r"kind=([a-z]+)", path).group(1)
                if kind in ("spot", "perp", "mark", "index", "premium") and not (y0 <= year <= y1):
                    continue  # funding and borrow series are read whole by the loader
                rel = path[len(root):].lstrip("/") if path.startswith(root) else path.split(fs.root.lstrip("/"), 1)[-1].lstrip("/")
                dest = os.path.join(local_root, rel)
                token = fs.info_token(path)
                stamp = dest + ".src"
                if os.path.exists(dest) and os.path.exists(stamp) and Path(stamp).read_text() == token:
                    continue
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                tmp = f"{dest}.{os.getpid()}.part"
                fs.get(path, tmp)
                os.replace(tmp, dest)
                Path(stamp).write_text(token)
    return local_root


# --------------------------------------------------------------------------- tasks
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
    """The same targets with every column its own portfolio (group = column position)."""
    from .targets import Targets

    cols = targets.columns.copy()
    cols["param_id"] = cols["group"].to_numpy()
    cols["group"] = np.arange(targets.n_columns)
    return Targets(targets.values, targets.column_symbol, np.arange(targets.n_columns, dtype=np.int64), cols, None)


def _held_bars(records: np.ndarray, n_columns: int, n_bars: int) -> np.ndarray:
    """Bars each column held any position at the bar close, rebuilt from fill/liquidation events."""
    return _held_bars_nb(np.ascontiguousarray(records, dtype=np.float64), n_columns, n_bars)


@njit(cache=True)
def _held_bars_nb(rec, C, T):
    s = np.zeros(C)
    q = np.zeros(C)
    last = np.zeros(C, np.int64)
    held = np.zeros(C, np.bool_)
    out = np.zeros(C, np.int64)
    for k in range(rec.shape[0]):
        kind = int(rec[k, 2])
        c = int(rec[k, 1])
        if c < 0 or not (kind == 0 or kind == 4):  # fills and liquidations change positions
            continue
        b = int(rec[k, 0])
        if held[c]:
            out[c] += b - last[c]
        last[c] = b
        if kind == 0 and int(rec[k, 3]) == 0:
            s[c] += rec[k, 4]
        else:
            q[c] += rec[k, 4]
        if kind == 4:
            q[c] = 0.0
        held[c] = s[c] != 0.0 or q[c] != 0.0
    for c in range(C):
        if held[c]:
            out[c] += T - last[c]
    return out


@njit(cache=True)
def _return_ratios_nb(eq, initial, ann):
    """Per column of equity ``eq`` (T, C): annualized return, Sharpe, Sortino, max drawdown, Calmar.

    Bar returns are ``eq[t] / eq[t-1] - 1`` (``initial`` before the first bar; 0 where the
    previous equity is not positive), as :func:`backtest.app.column_stats` builds them. The
    statistics repeat vectorbt's ``returns.nb`` kernels operation by operation (365-day
    ``ann`` factor, risk-free and required return 0, ``ddof=1``; sequential sums as numba's
    ``nanmean``/``nanvar``/``nanprod``) in two streaming passes over time, without the (T, C)
    temporaries and without importing vectorbt (seconds per worker process).
    """
    T, C = eq.shape
    prod = np.ones(C)
    total = np.zeros(C)
    down = np.zeros(C)
    cnt = np.zeros(C, np.int64)
    cp = np.ones(C)
    run_max = np.full(C, np.nan)
    mdd = np.full(C, np.inf)
    for t in range(T):
        for c in range(C):
            prev = initial[c] if t == 0 else eq[t - 1, c]
            r = eq[t, c] / prev - 1.0 if prev > 0 else 0.0
            if not np.isnan(r):
                prod[c] *= r + 1.0
                total[c] += r
                a = r if r <= 0 else 0.0
                down[c] += a ** 2
                cnt[c] += 1
                cp[c] *= r + 1
            cum = cp[c] * 100.0
            if np.isnan(run_max[c]) or cum > run_max[c]:
                run_max[c] = cum
            dd = cum / run_max[c] - 1
            if np.isnan(dd) or dd < mdd[c]:
                mdd[c] = dd
    mean = np.empty(C)
    for c in range(C):
        mean[c] = total[c] / cnt[c] if cnt[c] > 0 else np.nan
    ssd = np.zeros(C)
    for t in range(T):
        for c in range(C):
            prev = initial[c] if t == 0 else eq[t - 1, c]
            r = eq[t, c] / prev - 1.0 if prev > 0 else 0.0
            if not np.isnan(r):
                v = r - mean[c]
                ssd[c] += v * v
    out = np.full((5, C), np.nan)
    for c in range(C):
        if T == 0:
            continue
        ann_ret = prod[c] ** (ann / T) - 1
        out[0, c] = ann_ret
        if T >= 2:
            rcount = max(cnt[c] - 1, 0)
            std = np.sqrt(ssd[c] / cnt[c] * cnt[c] / rcount) if rcount > 0 else np.nan
            out[1, c] = np.inf if std == 0.0 else mean[c] / std * np.sqrt(ann)
            dr = np.sqrt(down[c] / cnt[c]) * np.sqrt(ann) if cnt[c] > 0 else np.nan
            out[2, c] = np.inf if dr == 0.0 else mean[c] * ann / dr
        out[3, c] = mdd[c]
        out[4, c] = np.nan if mdd[c] == 0.0 else ann_ret / np.abs(mdd[c])
    return out


def lean_figures(result, config: BacktestConfig) -> pd.DataFrame:
    """:data:`backtest.app.SUMMARY_KEYS` per column of a ``full=False`` run of one-column portfolios.

    Everything but ``worst_margin_ratio`` (needs per-bar margin ratios: NaN) is computed from the
    lean outputs: per-bar equity, final components and the events. Ratios follow vectorbt's
    kernels with a 365-day year, as :func:`backtest.app.column_stats` does.
    """
    from .app import COMPONENT_KEYS, SUMMARY_KEYS

    eq = result.equity.to_numpy()
    T, C = eq.shape
    initial = np.full(C, float(config.initial_capital_quote))
    ann = 365.0 * 24.0 / float(result.bar_hours)
    out: dict[str, np.ndarray] = {"initial_capital": initial, "final_equity": eq[-1].copy()}
    out["total_return"] = out["final_equity"] / initial - 1.0
    ratios = _return_ratios_nb(np.ascontiguousarray(eq), initial, ann)
    for k, name in enumerate(("annualized_return", "sharpe", "sortino", "max_drawdown", "calmar")):
        out[name] = ratios[k]
    for k, v in COMPONENT_KEYS.items():
        out[k] = result.components[v].to_numpy()[-1].copy()
    out["basis_pnl"] = out["spot_pnl"] + out["perp_pnl"]
    rec = result.records
    col = rec[:, 1].astype(np.int64)
    kind = rec[:, 2].astype(np.int64)
    ok = col >= 0
    fills = ok & (kind == 0)
    out["n_liquidations"] = np.bincount(col[ok & (kind == 4)], minlength=C)[:C]
    out["n_trades"] = np.bincount(col[fills], minlength=C)[:C]
    notional = np.bincount(col[fills], weights=np.abs(rec[fills, 4]) * rec[fills, 5], minlength=C)[:C]
    out["turnover"] = notional / initial
    out["time_in_market"] = _held_bars(rec, C, T) / float(T)
    out["worst_margin_ratio"] = np.full(C, np.nan)
    return pd.DataFrame({k: out[k] for k in SUMMARY_KEYS})


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

    from .engine import run_backtest

    if "outputs" in inspect.signature(run_backtest).parameters:
        return {"outputs": ("equity",)}
    return {"full": False}


def run_task(task: SweepTask) -> TaskResult:
    """Load the task's symbols, evaluate its parameter sets in engine batches, return compact rows."""
    from strategies import run_strategy

    from .engine import run_backtest
    from .loader import DataWarning, load_market

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
    from .schema import timeframe_minutes

    step = timeframe_minutes(task.freq) * 60_000
    t0 = (_ms(task.start) // step) * step
    return (t0 + sample.astype(np.int64) * step) * 1_000_000


# --------------------------------------------------------------------------- planning
def task_bytes(n_bars: int, n_symbols: int, n_columns: int, source_bars: int | None = None) -> int:
    """Estimated peak working set of one task, bytes (see the module docstring)."""
    src = n_bars if source_bars is None else source_bars
    return int(n_bars * (n_symbols * BYTES_PER_SYMBOL_BAR + n_columns * BYTES_PER_COLUMN_BAR) + src * LOADER_BYTES_PER_BAR)


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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def plan_sweep(n_bars: int, n_symbols: int, n_params: int, *, symbol_chunk: int | None = None,
               param_chunk: int | None = None, budget_per_task: int | None = None, min_tasks: int = 1) -> SweepPlan:
    """Choose chunk sizes so one task's working set stays under ``budget_per_task`` bytes.

    Defaults: every parameter set in one task (one load of each symbol), symbols split so the
    sweep has at least ``min_tasks`` tasks and the symbols' market arrays plus one column each
    fit; the engine batch (columns per engine call) is then as wide as the budget allows.
    """
    if n_symbols < 1 or n_params < 1:
        raise ConfigError("a sweep needs at least one symbol and one parameter set")
    pc = min(n_params, param_chunk or n_params)
    if symbol_chunk:
        sc = min(n_symbols, int(symbol_chunk))
    else:
        sc = max(1, -(-n_symbols // max(1, min_tasks)))
        if budget_per_task is not None:
            while sc > 1 and task_bytes(n_bars, sc, sc) > budget_per_task:
                sc = max(1, sc // 2)
    if budget_per_task is None:
        batch = sc * pc
    else:
        free = budget_per_task - task_bytes(n_bars, sc, 0)
        per_param = n_bars * sc * BYTES_PER_COLUMN_BAR
        k = int(free // per_param) if per_param else pc
        if k < 1:
            need = task_bytes(n_bars, sc, sc)
            raise ConfigError(
                f"memory budget {format_bytes(budget_per_task)} per task is too small for {sc} symbol(s) x 1 parameter set "
                f"of {n_bars:,} bars (needs about {format_bytes(need)}); raise --max-memory, lower --workers or "
                "--symbol-chunk, or shorten the period")
        batch = sc * min(pc, k)
    n_tasks = -(-n_symbols // sc) * -(-n_params // pc)
    return SweepPlan(n_bars, n_symbols, n_params, sc, pc, batch, budget_per_task,
                     task_bytes(n_bars, sc, batch), n_tasks)


def _expand_grid(grid: Any) -> list[dict]:
    from .targets import param_grid

    if grid is None:
        return [{}]
    if isinstance(grid, dict):
        if any(isinstance(v, (list, tuple, np.ndarray, range)) for v in grid.values()):
            return param_grid({k: (list(v) if isinstance(v, (list, tuple, np.ndarray, range)) else [v])
                               for k, v in grid.items()})
        return [dict(grid)]
    if isinstance(grid, (list, tuple)):
        return [dict(g) if isinstance(g, dict) else g for g in grid]
    raise ConfigError(f"grid must be a dict (lists make a grid) or a list of parameter dicts, got {type(grid).__name__}")


# --------------------------------------------------------------------------- results
@dataclass
class SweepResult:
    """Compact results of a scale-out sweep.

    Attributes
    ----------
    summary : DataFrame
        One row per (parameter set, symbol), ordered by ``param_id`` then the requested symbol
        order: ``param_id``, ``symbol``, ``strategy``, the parameters, then the
        :data:`backtest.app.SUMMARY_KEYS` figures (``worst_margin_ratio`` is NaN: lean run).
    equity : DataFrame or None
        Column equity (quote) at the last bar of each ``equity_every`` period; columns are a
        MultiIndex (``param_id``, ``symbol``) in the order of ``summary``.
    plan : SweepPlan
    meta : dict
        Window, mode, timings, per-task statistics, peak memory.
    """

    summary: pd.DataFrame
    equity: pd.DataFrame | None
    plan: SweepPlan
    meta: dict

    def best(self, metric: str = "sharpe", n: int = 10) -> pd.DataFrame:
        return self.summary.sort_values(metric, ascending=False).head(n)

    def by_params(self, metric: str = "sharpe", how: str = "mean") -> pd.DataFrame:
        """A metric aggregated over symbols per parameter set."""
        return self.summary.groupby("param_id")[metric].agg(how).to_frame(metric)

    @property
    def bar_columns(self) -> int:
        return int(self.plan.n_bars) * len(self.summary)


def _assemble(results: list[TaskResult], symbols: list[str], plan: SweepPlan, meta: dict) -> SweepResult:
    results = sorted(results, key=lambda r: r.task_id)
    frame = pd.concat([r.rows for r in results], ignore_index=True)
    pos = {s: i for i, s in enumerate(symbols)}
    order = np.lexsort((frame["symbol"].map(pos).to_numpy(), frame["param_id"].to_numpy()))
    frame = frame.iloc[order].reset_index(drop=True)
    first = ["param_id", "symbol", "strategy"]
    frame = frame[first + [c for c in frame.columns if c not in first]]
    equity = None
    if results and results[0].equity is not None:
        curves = np.hstack([r.equity for r in results])[:, order]
        idx = pd.DatetimeIndex(pd.to_datetime(results[0].equity_index, utc=True), name="time")
        cols = pd.MultiIndex.from_arrays([frame["param_id"].to_numpy(), frame["symbol"].to_numpy()], names=["param_id", "symbol"])
        equity = pd.DataFrame(curves, index=idx, columns=cols)
    meta = dict(meta)
    meta["tasks"] = [{"task_id": r.task_id, **r.stats} for r in results]
    meta["peak_rss_bytes"] = max([peak_rss_bytes()] + [r.stats.get("peak_rss_bytes", 0) for r in results])
    return SweepResult(frame, equity, plan, meta)


# --------------------------------------------------------------------------- running
def _run_local(tasks: list[SweepTask], workers: int | None, progress: Callable | None) -> tuple[list[TaskResult], str]:
    if not workers or workers <= 1 or len(tasks) <= 1:
        out = []
        for t in tasks:
            out.append(run_task(t))
            if progress:
                progress(len(out), len(tasks))
        return out, "serial"
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")  # no fork of a process with numba/BLAS threads
    out = []
    with ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx) as pool:
        futs = [pool.submit(run_task, t) for t in tasks]
        for f in as_completed(futs):
            out.append(f.result())
            if progress:
                progress(len(out), len(tasks))
    return out, f"processes[{int(workers)}]"


def _dask_client(scheduler):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs dask distributed: pip install 'carry[scale]'") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    if hasattr(scheduler, "scheduler_address"):  # a LocalCluster or other cluster object
        return Client(scheduler), True
    return Client(str(scheduler), timeout="30s"), True


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


def _run_dask(tasks: list[SweepTask], client, retries: int, progress: Callable | None) -> list[TaskResult]:
    from distributed import as_completed

    token = hashlib.sha256(repr([(t.symbols, t.param_ids, t.catalog) for t in tasks]).encode()).hexdigest()[:10]
    futures = [client.submit(run_task, t, key=f"carry-sweep-{token}-{t.task_id}", pure=False, retries=retries)
               for t in tasks]
    out = []
    try:
        for fut in as_completed(futures):
            out.append(fut.result())
            fut.release()
            if progress:
                progress(len(out), len(tasks))
    finally:
        for f in futures:
            f.release()
    return out


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
    symbol_chunk: int | None = None,
    param_chunk: int | None = None,
    max_memory_bytes: int | str | None = None,
    scheduler: Any = None,
    workers: int | None = None,
    retries: int = 2,
    equity_every: str | None = "1D",
    engine_kwargs: dict | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Run ``strategy`` over ``grid`` x ``symbols`` in independent, memory-bounded tasks.

    Parameters
    ----------
    catalog : path or URL
        The Parquet catalog: a local directory or an fsspec URL (``s3://bucket/catalog``,
        ``gcs://...``; needs the matching fsspec backend on every worker). Tasks read it
        themselves; no market data goes through the driver or the scheduler.
    symbols : list or comma-separated str
    strategy : registered name, Strategy or picklable function ``fn(market, params)``
        Must be per-symbol (targets of a symbol depend only on that symbol's data).
    grid : dict or list
        ``{name: [values]}`` (the Cartesian product; scalars are fixed) or a list of
        parameter dicts. Parameter set ``k`` of the expanded grid is ``param_id == k``.
    config : BacktestConfig or dict
        Engine settings; ``initial_capital_quote`` is the capital of *each* (symbol,
        parameter set) portfolio.
    start, end, freq, venue, gaps
        As :func:`backtest.loader.load_market`; the window defaults to the union of the
        symbols' coverage and is the same for every task.
    symbol_chunk, param_chunk : int, optional
        Symbols and parameter sets per task (default: see :func:`plan_sweep`).
    max_memory_bytes : int or str, optional
        Working-set budget (``"4GB"``). In-process: for the whole machine, split over
        ``workers``. Dask: per task (one worker thread); default there is the worker's
        memory limit per thread. Default in-process: half of the available memory.
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
    strat = _resolve_strategy(strategy)
    params = [strat.params(p).to_dict() for p in params]  # validated here, before any task starts
    catalog = str(catalog)
    if not _is_url(catalog) and not Path(_local_path(catalog)).is_dir():
        raise DataError(f"catalog {catalog} does not exist")
    w_start, w_end = sweep_window(catalog, symbols, freq, venue, start, end)
    from .schema import timeframe_minutes

    step = timeframe_minutes(freq) * 60_000
    t_lo = (_ms(w_start) // step) * step
    n_bars = int(-(-(_ms(w_end) - t_lo) // step))

    client, own_client = (None, False)
    budget = parse_bytes(max_memory_bytes)
    if scheduler is not None:
        client, own_client = _dask_client(scheduler)
        limit, threads = _dask_task_budget(client)
        per_task = budget if budget is not None else (int(limit * 0.6) if limit else None)
        slots = threads
    else:
        slots = max(1, int(workers or 1))
        if budget is None:
            budget = int(_available_memory() * 0.5)
        per_task = max(1, (budget - slots * BASE_PROCESS_BYTES * (slots > 1)) // slots)
    plan = plan_sweep(n_bars, len(symbols), len(params), symbol_chunk=symbol_chunk, param_chunk=param_chunk,
                      budget_per_task=per_task, min_tasks=2 * slots if slots > 1 else 1)
    strategy_ref = strategy if isinstance(strategy, str) else strat
    tasks = []
    for p_lo in range(0, len(params), plan.param_chunk):
        pids = tuple(range(p_lo, min(p_lo + plan.param_chunk, len(params))))
        for syms in _chunks(symbols, plan.symbol_chunk):
            tasks.append(SweepTask(
                task_id=len(tasks), catalog=catalog, symbols=tuple(syms), strategy=strategy_ref,
                params=tuple(params[i] for i in pids), param_ids=pids, config=config.to_dict(),
                start=w_start, end=w_end, freq=freq, venue=venue, gaps=gaps, engine_batch=plan.engine_batch,
                equity_every=equity_every, engine_kwargs=dict(engine_kwargs or {}),
            ))
    t_plan = time.perf_counter() - t0
    try:
        if client is not None:
            results = _run_dask(tasks, client, retries, progress)
            mode = f"dask[{client.scheduler.address if client.scheduler else scheduler}]"
        else:
            results, mode = _run_local(tasks, workers, progress)
    finally:
        if own_client:
            client.close()
    meta = {
        "mode": mode, "catalog": catalog, "strategy": strat.name, "start": w_start, "end": w_end, "freq": freq,
        "n_bars": n_bars, "n_symbols": len(symbols), "n_params": len(params), "n_columns": len(symbols) * len(params),
        "bar_columns": n_bars * len(symbols) * len(params), "plan_seconds": t_plan,
        "seconds": time.perf_counter() - t0, "portfolios": "one per (symbol, parameter set)",
        "budget_bytes": budget, "config": config.to_dict(),
    }
    return _assemble(results, symbols, plan, meta)


# --------------------------------------------------------------------------- synthetic data
def synthetic_symbols(n: int) -> list[str]:
    """``["SYN000USDT", "SYN001USDT", ...]``."""
    return [f"SYN{k:03d}USDT" for k in range(n)]


def write_synthetic_catalog(root: str | os.PathLike, n_symbols: int, n_days: float, *, start: str = "2024-01-01",
                            timeframe: str = "1m", seed: int = 0, venue: str = "binance",
                            funding_hours: int = 8, symbols: Iterable[str] | None = None) -> "Catalog":
    """Write ``n_symbols`` x ``n_days`` of synthetic spot/perp/mark bars plus funding into a catalog.

    Prices are a geometric random walk per symbol, the perp at a slowly mean-reverting
    premium over spot, funding every ``funding_hours`` from that premium (premium + clamped
    interest, capped at +-0.3%) so funding regimes come and go and threshold strategies trade.
    Written through :meth:`Catalog.write` (validated, atomic). Same seed, same data.
    ``symbols`` overrides the names (default :func:`synthetic_symbols`).
    """
    import pyarrow as pa

    from .catalog import Catalog, PartitionKey
    from .schema import Kind, timeframe_minutes

    catalog = Catalog(root)
    step_min = timeframe_minutes(timeframe)
    n = int(round(n_days * 24 * 60 / step_min))
    t_ms = _ms(start) + np.arange(n, dtype=np.int64) * step_min * 60_000
    per_hour = 60 // step_min if step_min <= 60 else 1
    names = list(symbols) if symbols is not None else synthetic_symbols(n_symbols)
    for k, sym in enumerate(names):
        rng = np.random.default_rng([seed, k])
        vol = 0.0008 * np.sqrt(step_min) * (0.5 + rng.random())
        close = (10.0 + 990.0 * rng.random()) * np.exp(np.cumsum(rng.normal(0.0, vol, n)))
        # premium: AR(1) around a regime mean (negative, baseline, high funding)
        n_reg = max(1, int(n / (per_hour * 24 * 3)) + 1)  # a new funding regime every 3 days
        regimes = rng.choice([-0.0010, 0.0001, 0.0004, 0.0010], size=n_reg)
        mean = np.repeat(regimes, -(-n // n_reg))[:n]
        shocks = rng.normal(0.0, 0.00003, n)
        prem = np.empty(n)
        phi = 1.0 - 1.0 / (per_hour * 6)
        acc = mean[0]
        for i in range(0, n, 4096):  # blockwise AR(1) with numpy: exact enough for synthetic data
            j = min(n, i + 4096)
            powers = phi ** np.arange(1, j - i + 1)
            drive = (1 - phi) * mean[i:j] + shocks[i:j]
            prem[i:j] = powers * acc + np.convolve(drive, phi ** np.arange(j - i))[: j - i]
            acc = prem[j - 1]
        frames = {}
        for leg, c in (("spot", close), ("perp", close * (1 + prem + rng.normal(0, 0.00005, n))), ("mark", close * (1 + prem))):
            o = np.concatenate([[c[0]], c[:-1]])
            wig = np.abs(rng.normal(0.0, vol * 0.5, (2, n)))
            cols = {"time": pa.array(t_ms, pa.timestamp("ms", tz="UTC")), "open": o,
                    "high": np.maximum(o, c) * (1 + wig[0]), "low": np.minimum(o, c) * (1 - wig[1]), "close": c}
            if leg != "mark":
                cols["volume"] = rng.lognormal(np.log(2e4 / c.mean()), 0.5, n)
            frames[leg] = pa.table(cols)
        # funding settlements every funding_hours from the mean premium of the interval
        hour_ms = 3_600_000
        first = (t_ms[0] // (funding_hours * hour_ms) + 1) * funding_hours * hour_ms
        settle = np.arange(first, t_ms[-1] + step_min * 60_000 + 1, funding_hours * hour_ms)
        idx = np.searchsorted(t_ms, settle)
        csum = np.concatenate([[0.0], np.cumsum(prem)])
        lo_i = np.maximum(0, idx - funding_hours * per_hour)
        p_mean = (csum[idx] - csum[lo_i]) / np.maximum(1, idx - lo_i)
        interest = 0.0001 * funding_hours / 8
        rate = np.round(np.clip(p_mean + np.clip(interest - p_mean, -0.0005, 0.0005), -0.003, 0.003), 8)
        frames["funding"] = pa.table({"time": pa.array(settle, pa.timestamp("ms", tz="UTC")), "rate": rate,
                                      "interval_hours": np.full(len(settle), float(funding_hours)),
                                      "mark_price": pa.nulls(len(settle), pa.float64())})
        kinds = {"spot": Kind.SPOT, "perp": Kind.PERP, "mark": Kind.MARK, "funding": Kind.FUNDING}
        for leg, table in frames.items():
            key = PartitionKey(venue, kinds[leg], sym, timeframe if kinds[leg].is_bar else None)
            catalog.write(key, table, source=f"synthetic:{sym}:{leg}")
    return catalog


# --------------------------------------------------------------------------- CLI
def add_scale_options(parser: argparse.ArgumentParser) -> None:
    """Add the scale-out options to ``carry sweep``."""
    g = parser.add_argument_group("scale-out (issue 6: each symbol x parameter set is its own portfolio)")
    g.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT",
                   help="run the sweep's tasks on this Dask distributed scheduler")
    g.add_argument("--max-memory", default=None, metavar="SIZE",
                   help="working-set budget, e.g. 4GB (in-process: for all workers; Dask: per task)")
    g.add_argument("--workers", type=int, default=None, help="in-process worker processes (default 1)")
    g.add_argument("--symbol-chunk", type=int, default=None, metavar="N", help="symbols per task")
    g.add_argument("--param-chunk", type=int, default=None, metavar="M", help="parameter sets per task")
    g.add_argument("--equity-every", default="1D", metavar="FREQ",
                   help="sample equity curves at this period (default 1D; 'none' for no curves)")
    g.add_argument("--retries", type=int, default=2, help="Dask: resubmissions of a failing task (default 2)")


def wants_scale(args) -> bool:
    """True if any scale-out option was given (then ``carry sweep`` should call :func:`run_scaled_sweep_command`)."""
    return any(getattr(args, k, None) is not None for k in ("scheduler", "max_memory", "workers", "symbol_chunk", "param_chunk"))


def run_scaled_sweep_command(args, cfg) -> int:
    """``carry sweep`` with scale-out options: run, write the outputs, print the best rows.

    ``cfg`` is the :class:`backtest.app.RunConfig` built by ``cmd_sweep`` (one strategy whose
    params hold the fixed values and the swept lists). Writes ``summary.json``,
    ``columns.parquet`` (one row per symbol x parameter set), ``equity.parquet`` (sampled
    curves, if any) and ``config.toml`` into ``args.out``, atomically.
    """
    from . import app
    from .outputs import check_output_dir, write_output_dir

    check_output_dir(args.out, getattr(args, "overwrite", False))
    spec = cfg.strategies[0]
    every = getattr(args, "equity_every", "1D")
    every = None if every is None or str(every).lower() == "none" else every
    quiet = getattr(args, "quiet", False) or not sys.stderr.isatty()

    def progress(done, total):
        if not quiet:
            print(f"\r{done}/{total} tasks", end="" if done < total else "\n", file=sys.stderr, flush=True)

    res = run_sweep(cfg.data.catalog, list(cfg.data.symbols), spec.name, spec.params, cfg.engine,
                    start=cfg.data.start, end=cfg.data.end, freq=cfg.data.freq, venue=cfg.data.venue,
                    gaps=cfg.data.gaps, symbol_chunk=args.symbol_chunk, param_chunk=args.param_chunk,
                    max_memory_bytes=args.max_memory, scheduler=args.scheduler, workers=args.workers,
                    retries=getattr(args, "retries", 2), equity_every=every, progress=progress)
    rank = getattr(args, "rank_by", "sharpe")
    summary = {
        "carry_version": app._version(), "run_hash": app.run_hash(cfg), "config_hash": cfg.engine.config_hash(),
        "config": cfg.to_dict(), "scale": {k: v for k, v in res.meta.items() if k not in ("tasks", "config")},
        "plan": res.plan.to_dict(), "keys": list(app.SUMMARY_KEYS),
        "columns": res.summary.to_dict(orient="records"),
    }
    text = json.dumps(app.json_ready(summary), indent=2, allow_nan=False)
    writers = {
        "summary.json": lambda p: p.write_text(text),
        "config.toml": lambda p: p.write_text(app.effective_toml(cfg)),
        "columns.parquet": lambda p: res.summary.to_parquet(p, index=False),
    }
    if res.equity is not None:
        eq = res.equity.copy()
        eq.columns = [f"{pid}:{sym}" for pid, sym in eq.columns]
        writers["equity.parquet"] = lambda p: eq.to_parquet(p)
    write_output_dir(args.out, writers, overwrite=getattr(args, "overwrite", False))
    show = res.best(rank, 20)
    cols = ["param_id", "symbol"] + [c for c in show.columns if c not in app.SUMMARY_KEYS and c not in ("param_id", "symbol", "strategy")] \
        + ["final_equity", "total_return", "sharpe", "max_drawdown", "funding_pnl", "n_trades"]
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(show[cols].to_string(index=False))
    m = res.meta
    print(f"{m['n_columns']:,} portfolios x {m['n_bars']:,} bars in {m['seconds']:.1f} s "
          f"({m['bar_columns'] / max(m['seconds'], 1e-9):,.0f} bar-columns/s, {m['mode']}, "
          f"{res.plan.n_tasks} tasks, peak {format_bytes(m['peak_rss_bytes'])})")
    print(f"wrote {args.out}/")
    return 0

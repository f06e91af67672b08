"""Write a run's output directory atomically, and what goes into its ``summary.json``.

All files of a run are written into a hidden temporary directory beside the target, which is
then renamed into place in one step. An interrupted run leaves no half-written output
directory; an existing directory is refused unless ``overwrite=True``, in which case the old
one is swapped out only after the new one is complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data.errors import CarryError
from reports.keys import SUMMARY_KEYS

#: Timings of each file written (debug level: ``carry -v`` prints them as stage lines).
_LOG = logging.getLogger("carry")


class OutputExistsError(CarryError):
    """The output directory exists and overwriting was not asked for."""


def check_output_dir(out: Path, overwrite: bool) -> None:
    """Fail early (before any work) if ``out`` exists and may not be replaced."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"output directory {out} already exists; pass --overwrite to replace it")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"output path {out} exists and is not a directory")


def write_output_dir(out: Path, writers: dict[str, Callable[[Path], object]], overwrite: bool = False) -> Path:
    """Create ``out`` holding one file per ``writers`` entry, all or nothing.

    Parameters
    ----------
    out:
        The final directory.
    writers:
        ``{file name: function(path) that writes that file}``.
    overwrite:
        Replace an existing ``out`` (only after every new file is written).
    """
    out = Path(out)
    check_output_dir(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; a finished run is an ordinary directory
    try:
        for name, write in writers.items():
            t = time.perf_counter()
            write(tmp / name)
            _LOG.debug("write %s: %.2f s", name, time.perf_counter() - t)
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


# --------------------------------------------------------------------------- run directories
def json_ready(obj: Any) -> Any:
    """NaN/inf -> None, NumPy scalars -> Python, timestamps -> ISO text, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (pd.Timestamp, pd.Timedelta, np.datetime64)):
        return str(obj)
    return obj


def coverage(market) -> dict:
    """Data coverage facts of a market, for summary.json and scan.json."""
    return {
        "symbols": list(market.symbols),
        "perp_symbols": list(market.perp_symbols),
        "freq": market.freq,
        "start": str(market.index[0]),
        "end": str(market.index[-1]),
        "bars": market.n_bars,
        "valid_bars": {s: int(market.valid[:, j].sum()) for j, s in enumerate(market.symbols)},
        "filled_bars": {s: int(market.filled[:, j].sum()) for j, s in enumerate(market.symbols)},
        "funding_settlements": {s: int(market.funding_count[:, j].sum()) for j, s in enumerate(market.symbols)},
        "tradable": {s: tradable_span(market, j) for j, s in enumerate(market.symbols)},
        "notes": list(market.notes),
    }


def tradable_span(market, j: int) -> dict:
    """Where symbol ``j`` could be held (``Market.tradable``): first bar open and last bar close
    (UTC, ``None`` if never), the number of tradable bars and the funding settlements in them
    (the settlements a position could have received)."""
    ok = market.tradable[:, j]
    idx = np.flatnonzero(ok)
    step = market.index[1] - market.index[0] if market.n_bars > 1 else pd.Timedelta(0)
    return {
        "start": str(market.index[idx[0]]) if idx.size else None,
        "end": str(market.index[idx[-1]] + step) if idx.size else None,
        "bars": int(idx.size),
        "settlements_used": int(market.funding_count[ok, j].sum()),
    }


def run_summary(
    header: dict, *, market, targets, result, portfolios: pd.DataFrame, columns: pd.DataFrame, granularity: str
) -> dict:
    """The content of a run's ``summary.json``: ``header`` (version, hashes, config), data
    coverage, engine flags, the summary keys (:data:`reports.keys.SUMMARY_KEYS`, in order) and
    their figures per portfolio and per column."""
    from reports.frames import portfolio_labels

    plabels = portfolio_labels(targets)
    return {
        **header,
        "coverage": coverage(market),
        "flags": sorted(result.flags),  # (chunking decides the order in which parts saw them)
        "components_granularity": granularity,
        "keys": list(SUMMARY_KEYS),
        "portfolios": [
            {"portfolio": k, **v} for k, v in portfolios[list(SUMMARY_KEYS)].to_dict(orient="index").items()
        ],
        "columns": [
            {
                "column": i,
                "label": lab,
                "symbol": sym,
                "portfolio": port,
                **columns.loc[lab, list(SUMMARY_KEYS)].to_dict(),
            }
            for i, (lab, sym, port) in enumerate(
                zip(columns.index, targets.columns["symbol"], [plabels[int(g)] for g in targets.columns["group"]])
            )
        ],
    }


def write_run_outputs(
    out: Path,
    *,
    header: dict,
    config_toml: str,
    market,
    targets,
    result,
    portfolios: pd.DataFrame,
    columns: pd.DataFrame,
    report,
    overwrite: bool = False,
    extra: dict | None = None,
    frames: dict[str, pd.DataFrame] | None = None,
    full_outputs: bool | None = None,
) -> Path:
    """Write a run's directory atomically: summary.json (:func:`run_summary` plus ``extra``),
    config.toml (``config_toml``), equity/components/events Parquet, the report's round trips
    (trades.parquet), ``frames`` (file name -> DataFrame written as Parquet without its index,
    e.g. walk_forward.parquet) and report.html (``report``, a :class:`reports.html.ReportData`).

    ``full_outputs``: True writes every file per bar, False lean, None (default) lean beyond
    :data:`reports.frames.LEAN_BAR_COLUMNS`; what a lean file keeps less of is listed in
    summary.json ``lean`` (empty when nothing is)."""
    from reports.frames import LEAN_NOTES, components_frame, equity_frame, events_frame, is_lean
    from reports.html import render_report

    lean = is_lean(len(result.index), result.equity.shape[1], full_outputs)
    every = "1D" if lean else None
    t = time.perf_counter()
    comps, granularity = components_frame(result, targets, market, per_bar=not lean)
    _LOG.debug("components frame: %.2f s", time.perf_counter() - t)
    summary = run_summary(
        header,
        market=market,
        targets=targets,
        result=result,
        portfolios=portfolios,
        columns=columns,
        granularity=granularity,
    )
    summary["lean"] = {k: v.format(every=every) for k, v in LEAN_NOTES.items()} if lean else {}
    summary.update(extra or {})
    text = json.dumps(json_ready(summary), indent=2, allow_nan=False)
    t = time.perf_counter()
    html = render_report(report)
    _LOG.debug("render report.html: %.2f s", time.perf_counter() - t)
    writers = {
        "summary.json": lambda p: p.write_text(text),
        "config.toml": lambda p: p.write_text(config_toml),
        "equity.parquet": lambda p: equity_frame(result, targets, every).to_parquet(p),
        "components.parquet": lambda p: comps.to_parquet(p, index=False),
        "events.parquet": lambda p: events_frame(result, targets, cashflows=not lean).to_parquet(p, index=False),
        "report.html": lambda p: p.write_text(html),
    }
    if report.round_trips is not None:  # every round trip of every portfolio (reports.trades)
        writers["trades.parquet"] = lambda p: report.round_trips.to_parquet(p, index=False)
    for name, frame in (frames or {}).items():
        writers[name] = _parquet_writer(frame)
    return write_output_dir(out, writers, overwrite=overwrite)


def _parquet_writer(frame: pd.DataFrame) -> Callable[[Path], None]:
    """A writer of ``frame`` as Parquet without its index (for :func:`write_output_dir`)."""
    return lambda p: frame.to_parquet(p, index=False)

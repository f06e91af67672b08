"""Monthly and yearly returns of each portfolio, with the PnL of each component.

A period is a calendar month or year in UTC; a bar belongs to the period of its open time,
and a period's figures run from the close of the last bar of the period before (the initial
capital for the first period) to the close of its own last bar. The first and last periods
of a run cover only the run's bars in them (a run starting on the 20th has a short first
month). Per period and portfolio:

- ``start_equity``, ``end_equity`` (quote) and ``return`` = end / start − 1 (a fraction of the
  equity at the period's start, not annualized);
- the PnL of each component of :data:`reports.trades.TRIP_COMPONENTS` (quote, summed over
  the portfolio's columns) and ``total_pnl`` = end − start equity, which they sum to (the
  accounting identity, README "Accounting").
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.errors import ConfigError, unknown_name
from reports.frames import portfolio_labels
from reports.trades import TRIP_COMPONENTS, per_bar

#: Period kinds: name -> pandas period frequency.
PERIODS = {"month": "M", "year": "Y"}
#: The columns of :func:`period_returns`, in order.
PERIOD_COLUMNS = ("portfolio", "period", "start_equity", "end_equity", "return", *TRIP_COMPONENTS, "total_pnl")


def period_ends(index: pd.DatetimeIndex, period: str) -> tuple[np.ndarray, list[str]]:
    """Positions of the last bar of each calendar ``period`` (``month``/``year``, UTC) in
    ``index``, and the periods' labels (``2024-01`` / ``2024``)."""
    if period not in PERIODS:
        raise unknown_name("period", period, list(PERIODS))
    utc = index.tz_convert("UTC") if index.tz is not None else index
    year = utc.year.to_numpy().astype(np.int64)
    key = year * 12 + utc.month.to_numpy() - 1 if period == "month" else year
    ends = np.append(np.flatnonzero(key[1:] != key[:-1]), len(key) - 1) if len(key) else np.empty(0, np.int64)
    k = key[ends]
    labels = [f"{v // 12:04d}-{v % 12 + 1:02d}" for v in k] if period == "month" else [f"{v:04d}" for v in k]
    return ends.astype(np.int64), labels


def period_returns(result, targets=None, period: str = "month") -> pd.DataFrame:
    """Returns and component PnL per portfolio and calendar ``period`` (see the module's text).

    ``result``: a run that kept per-bar portfolio equity and components; ``targets``: the
    run's Targets or their column table, for the labels (default: the result's column table).
    Rows ordered by portfolio (group id), then time; columns :data:`PERIOD_COLUMNS`.
    """
    if not (per_bar(result, "group_equity") and per_bar(result, "components")):
        raise ConfigError(f"{period}ly returns need per-bar portfolio equity and components: run without lean outputs")
    table = result.column_table if targets is None else targets
    ends, labels = period_ends(result.index, period)
    P, G = len(ends), len(result.group_ids)
    equity = result.group_equity.to_numpy()[ends]  # (P, G)
    start = np.vstack([np.full((1, G), float(result.config.initial_capital_quote)), equity[:-1]])
    member = np.zeros((len(result.column_group), G))
    member[np.arange(len(result.column_group)), result.column_group] = 1.0
    comps = {}
    for key, names in TRIP_COMPONENTS.items():
        cum = sum(result.components[name].to_numpy()[ends] for name in names) @ member  # (P, G)
        comps[key] = np.diff(cum, axis=0, prepend=0.0)
    plabels = portfolio_labels(table)
    with np.errstate(invalid="ignore", divide="ignore"):
        ret = equity / start - 1.0
    frame = pd.DataFrame(
        {
            "portfolio": np.repeat(np.array([plabels[int(g)] for g in result.group_ids], dtype=object), P),
            "period": np.tile(np.array(labels, dtype=object), G),
            "start_equity": start.T.reshape(-1),
            "end_equity": equity.T.reshape(-1),
            "return": ret.T.reshape(-1),
            **{k: v.T.reshape(-1) for k, v in comps.items()},
            "total_pnl": (equity - start).T.reshape(-1),
        }
    )
    return frame[list(PERIOD_COLUMNS)]

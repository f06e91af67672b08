"""The tables of a run: labelled summaries, and the equity, components and events frames
written to the output directory (``equity.parquet``, ``components.parquet``,
``events.parquet``), plus the funding and trade frames the HTML report draws.

Everything here reads a :class:`~backtest.result.BacktestResult`, its
:class:`~backtest.targets.Targets` (for labels) and the :class:`~data.market.Market`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.units import HOURS_PER_YEAR
from reports import metrics
from reports.keys import COMPONENT_KEYS, SUMMARY_KEYS

# --------------------------------------------------------------------------- labels


def _table(targets) -> pd.DataFrame:
    """The column table (strategy, symbol, group, parameters) of targets, or the table itself."""
    return targets if isinstance(targets, pd.DataFrame) else targets.columns


def portfolio_labels(targets) -> dict[int, str]:
    """Readable label per portfolio: ``strategy`` or ``strategy[p=v,...]`` when parameters vary,
    and ``...:SYMBOL`` for one-symbol portfolios of a strategy run over several symbols
    (``--per-symbol``). ``targets``: :class:`~backtest.targets.Targets` or their column table."""
    tab = _table(targets)
    params = [c for c in tab.columns if c not in ("strategy", "symbol", "group", "param_id")]
    sizes = tab.groupby("group")["symbol"].size()
    # per strategy, once: the parameters that vary over its columns, and whether each of its
    # portfolios is one symbol of several (--per-symbol); then one pass over the portfolios
    varying_of, per_symbol_of = {}, {}
    for strategy, same in tab.groupby("strategy", sort=False):
        varying_of[strategy] = [p for p in params if same[p].nunique(dropna=False) > 1]
        per_symbol_of[strategy] = bool((sizes[same["group"].unique()] == 1).all() and same["symbol"].nunique() > 1)
    firsts = tab.drop_duplicates("group").sort_values("group", kind="stable")
    labels = {}
    for first in firsts.to_dict(orient="records"):
        strategy = first["strategy"]
        inner = ",".join(f"{p}={_fmt_param(first[p])}" for p in varying_of[strategy] if pd.notna(first[p]))
        label = f"{strategy}[{inner}]" if inner else str(strategy)
        labels[int(first["group"])] = f"{label}:{first['symbol']}" if per_symbol_of[strategy] else label
    if len(set(labels.values())) != len(labels):  # same strategy twice with the same params
        labels = {g: f"{lab}#{g}" for g, lab in labels.items()}
    return labels


def _fmt_param(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def column_labels(targets) -> list[str]:
    """``<portfolio label>:<SYMBOL>`` per column (``targets``: Targets or their column table)."""
    groups = portfolio_labels(targets)
    tab = _table(targets)
    return [
        groups[int(g)] if groups[int(g)].endswith(f":{s}") else f"{groups[int(g)]}:{s}"
        for g, s in zip(tab["group"], tab["symbol"])
    ]


# --------------------------------------------------------------------------- summaries


def portfolio_summary(result, targets) -> pd.DataFrame:
    """:func:`reports.metrics.stats_frame` with the portfolios' labels as index (``portfolio``)."""
    labels = portfolio_labels(targets)
    frame = metrics.stats_frame(result)
    frame.index = pd.Index([labels[int(g)] for g in frame.index], name="portfolio")
    return frame[list(SUMMARY_KEYS)]


def column_summary(result, targets) -> pd.DataFrame:
    """:func:`reports.metrics.column_stats` with the columns' labels as index (``column``)."""
    frame = metrics.column_stats(result)
    frame.index = pd.Index(column_labels(targets), name="column")
    return frame[list(SUMMARY_KEYS)]


# --------------------------------------------------------------------------- output frames
#: Runs of more bar-columns (bars x target columns) than this write lean files unless full
#: outputs are asked for (``carry ... --full-outputs``): equity and components at each UTC
#: day's last bar, events without the per-settlement funding and per-hour borrow rows
#: (:data:`LEAN_NOTES`). 5 M: 100 parameter sets over 3 symbols of 2 years hourly and more.
LEAN_BAR_COLUMNS = 5_000_000
#: What each file of a lean run keeps less of (``summary.json`` ``lean``); ``{every}``: the
#: equity's sampling period.
LEAN_NOTES = {
    "equity.parquet": "portfolio and column equity at the last bar of each {every} period, not every bar",
    "components.parquet": "the components booked per UTC day (components_granularity: day), not per bar",
    "events.parquet": (
        "fills, transfers, liquidations, stops and skipped orders only; funding settlements and borrow "
        "charges (one row per settlement or hour) are in components.parquet"
    ),
}
#: Event kinds of the per-settlement and per-hour cash flows (left out of lean events).
CASHFLOW_KINDS = ("funding", "borrow")


def is_lean(n_bars: int, n_columns: int, full_outputs: bool | None = None) -> bool:
    """Whether a run writes lean files: ``full_outputs`` if given, else by size
    (:data:`LEAN_BAR_COLUMNS`)."""
    if full_outputs is not None:
        return not full_outputs
    return n_bars * n_columns > LEAN_BAR_COLUMNS


def period_ends(index, every: str = "1D") -> np.ndarray:
    """Position of the last bar of each ``every`` period (a pandas frequency, UTC-aligned) of
    ``index``, (periods,) int64."""
    if not len(index):
        return np.zeros(0, np.int64)
    periods = pd.DatetimeIndex(index).floor(every).asi8
    return np.flatnonzero(np.r_[periods[1:] != periods[:-1], True])


def components_frame(result, targets, market, per_bar: bool | None = None) -> tuple[pd.DataFrame, str]:
    """PnL components in long form (time, column, symbol, portfolio, *_pnl), quote, per bar or
    per UTC day (``per_bar`` None: per bar up to :data:`LEAN_BAR_COLUMNS`).

    Returns the frame and its granularity (``"bar"`` or ``"day"``).
    """
    cum = {k: result.components[v].to_numpy() for k, v in COMPONENT_KEYS.items()}
    T, C = cum["funding_pnl"].shape
    index = market.index
    if per_bar is None:
        per_bar = not is_lean(T, C)
    if per_bar:
        per_bar_pnl = {k: np.diff(a, axis=0, prepend=0.0) for k, a in cum.items()}
        return long_components(per_bar_pnl, index, targets), "bar"
    # a UTC day's PnL = the cumulative component at its last bar - at the previous day's last bar
    # (as the memory-bounded path books it: backtest.app.scale)
    ends = period_ends(index, "1D")
    per_day = {k: np.diff(a[ends], axis=0, prepend=0.0) for k, a in cum.items()}
    return long_components(per_day, pd.DatetimeIndex(index).floor("1D")[ends], targets), "day"


def long_components(per_period: dict[str, np.ndarray], index: pd.DatetimeIndex, targets) -> pd.DataFrame:
    """Components booked per period (key of :data:`COMPONENT_KEYS` -> periods x columns, quote)
    in the long form of ``components.parquet``: time, column, label, symbol, portfolio, the
    components and ``basis_pnl`` (spot + perp). ``targets``: Targets or their column table."""
    labels = column_labels(targets)
    plabels = portfolio_labels(targets)
    tab = _table(targets)
    T, C = per_period["funding_pnl"].shape
    column = np.tile(np.arange(C), T)
    # times from their int64 microseconds (a tz-aware index's to_numpy() is one Python object per
    # row); text columns dictionary-encoded: one string per column of the table, not per row
    times = pd.DatetimeIndex(index)
    times = (times.tz_localize("UTC") if times.tz is None else times.tz_convert("UTC")).as_unit("us")
    frame = pd.DataFrame(
        {
            "time": pd.DatetimeIndex(np.repeat(times.asi8, C).view("M8[us]")).tz_localize("UTC"),
            "column": column,
            "label": _text_codes(labels, column),
            "symbol": _text_codes(tab["symbol"].astype(str).tolist(), column),
            "portfolio": _text_codes([plabels[int(g)] for g in tab["group"]], column),
        }
    )
    for k in COMPONENT_KEYS:
        frame[k] = np.asarray(per_period[k]).reshape(-1)
    frame["basis_pnl"] = frame["spot_pnl"].to_numpy() + frame["perp_pnl"].to_numpy()
    return frame


def _text_codes(values: list[str], codes: np.ndarray) -> pd.Categorical:
    """``values[codes]`` as a categorical column (Parquet: dictionary-encoded text), its
    categories the distinct values in first-seen order."""
    uniq, first, inverse = np.unique(np.asarray(values, dtype=object), return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return pd.Categorical.from_codes(rank[inverse][codes], categories=pd.Index(uniq[order], dtype="str"))


def events_frame(result, targets, cashflows: bool = True) -> pd.DataFrame:
    """The engine's events with readable labels: time, bar, column, label, portfolio, symbol, kind, leg, qty, price,
    rate, cash, fee; without the funding and borrow rows unless ``cashflows``."""
    ev = result.events
    if not cashflows:
        ev = ev[~ev["kind"].isin(CASHFLOW_KINDS).to_numpy()].reset_index(drop=True)
    return label_events(ev, targets)


def label_events(events: pd.DataFrame, targets) -> pd.DataFrame:
    """Events (``BacktestResult.events``: column and ``group`` ids) with the column's
    ``label`` and the portfolio's label in place of ``group``, the columns of
    ``events.parquet``. ``targets``: Targets or their column table."""
    ev = events.copy()
    labels = np.array(column_labels(targets), dtype=object)
    plabels = portfolio_labels(targets)
    col = ev["column"].to_numpy()
    at = ev.columns.get_loc("column") + 1
    ev.insert(at, "label", np.where(col >= 0, labels[np.maximum(col, 0)] if len(labels) else None, None))
    ev.insert(at + 1, "portfolio", [plabels.get(int(g)) for g in ev["group"]])
    ev = ev.drop(columns=["group"])
    for c in ("symbol", "kind", "leg", "label", "portfolio"):
        ev[c] = ev[c].astype(object)
    # qty for fills, liquidations and skipped orders (signed coins); rate for funding and borrow
    # (per interval, per hour), liquidations (the insurance fund's cover, quote) and fills priced
    # at the slippage cap (the cap, a fraction; else NaN) (README: Outputs, events.parquet)
    kind = ev["kind"]
    ev["qty"] = ev["qty"].where(kind.isin(["fill", "liquidation", "skip"]))
    ev["rate"] = ev["rate"].where(kind.isin(["funding", "borrow", "liquidation", "fill"]))
    return ev


def equity_frame(result, targets, every: str | None = None) -> pd.DataFrame:
    """Equity per portfolio and per column (quote), one wide frame indexed by time: every bar,
    or the last bar of each ``every`` period (``"1D"``)."""
    labels = column_labels(targets)
    plabels = portfolio_labels(targets)
    rows = slice(None) if every is None else period_ends(result.index, every)
    port = result.group_equity.to_numpy()[rows]
    col = result.equity.to_numpy()[rows]
    names = [f"portfolio:{plabels[int(g)]}" for g in result.group_equity.columns] + list(labels)
    out = pd.DataFrame(np.concatenate([port, col], axis=1), index=result.index[rows], columns=names)
    out.index.name = "time"
    return out


# --------------------------------------------------------------------------- report frames


def funding_annualized_frame(market, window_settlements: int = 21) -> pd.DataFrame:
    """Trailing mean of the annualized funding rate over ``window_settlements`` settlements.

    Bars x symbols, fraction per 365-day year, on settlement bars only (NaN elsewhere): the
    line the report draws (raw settlements are too noisy to read).
    """
    hours = market.funding_interval_hours
    with np.errstate(invalid="ignore", divide="ignore"):
        ann = np.where(
            market.funding_count > 0, market.funding_rate / market.funding_count * (HOURS_PER_YEAR / hours), np.nan
        )
    frame = pd.DataFrame(ann, index=market.index, columns=list(market.symbols))
    return frame.apply(lambda s: s.dropna().rolling(window_settlements, min_periods=1).mean().reindex(s.index))


def trades_table(result, targets, columns: np.ndarray) -> pd.DataFrame:
    """Entries, exits and liquidations of the given columns (for markers on the funding chart)."""
    rows = []
    spot = result.spot_qty.to_numpy()
    perp = result.perp_qty.to_numpy()
    index = result.index
    symbols = targets.columns["symbol"].to_numpy()
    for c in columns:
        held = (spot[:, c] != 0) | (perp[:, c] != 0)
        change = np.diff(held.astype(np.int8), prepend=0)
        for i in np.flatnonzero(change == 1):
            rows.append((index[i], symbols[c], "entry"))
        for i in np.flatnonzero(change == -1):
            rows.append((index[i], symbols[c], "exit"))
    ev = result.events
    liq = ev[(ev["kind"] == "liquidation") & ev["column"].isin(columns)]
    for t, c in zip(liq["time"], liq["column"]):
        rows.append((t, symbols[int(c)], "liquidation"))
    return pd.DataFrame(rows, columns=["time", "symbol", "action"])

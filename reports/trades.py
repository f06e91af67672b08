"""Round trips: every position of a run from its entry to its exit, with its PnL by component.

A **trip** is one column's (one symbol's, in one portfolio) position of one side held over
consecutive bars: it starts at the first bar whose close holds a position of that side
(carry: long spot / short perp; reverse carry: short spot / long perp; a leg left alone
after a liquidation keeps the side of the trip it belongs to) and ends at the bar whose open
fill closes it (``exit``), at the last bar of the run (``end``, still open), or where the
position turns to the other side without going flat (``flip``: the bar of the flip belongs
to the new trip, its fill's costs with it).

A trip's PnL of a component is the difference of the column's cumulative component between
the bar before its entry and its exit bar (:attr:`backtest.result.BacktestResult.components`),
in quote. Trips do not overlap, so the trips of a column plus its flat bars sum to the
column's final components (tested in ``tests/test_reports_trades.py``).

Vectorized over bars and columns: a 1-minute run of a year (525,600 bars) takes a few
array passes, whatever the number of trips.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.errors import ConfigError
from reports.frames import column_labels, portfolio_labels

#: The PnL columns of a trip (and of a period, :mod:`reports.periods`), quote: summary key ->
#: the result's components summed into it (``basis`` = spot + perp price PnL of the hedged coins).
TRIP_COMPONENTS: dict[str, tuple[str, ...]] = {
    "funding_pnl": ("funding",),
    "fee_pnl": ("fees",),
    "slippage_pnl": ("slippage",),
    "borrow_pnl": ("borrow",),
    "basis_pnl": ("spot_price", "perp_price"),
    "unhedged_pnl": ("unhedged",),
    "liquidation_pnl": ("liquidation",),
}
#: Side of a trip by the sign of its position (+1: long spot or short perp).
SIDES = {1: "carry", -1: "reverse carry"}
#: The columns of :func:`round_trips`, in order.
TRIP_COLUMNS = (
    "portfolio",
    "label",
    "column",
    "symbol",
    "side",
    "entry_time",
    "exit_time",
    "exit",
    "holding_hours",
    "entry_notional",
    "liquidations",
    *TRIP_COMPONENTS,
    "total_pnl",
)
_FILL, _LIQUIDATION = 0, 4  # backtest.result.EVENT_KINDS positions


def per_bar(result, name: str) -> bool:
    """True when the result kept ``name`` (``"positions"``, ``"components"``, ``"group_equity"``)
    for every bar (lean runs keep the last bar only)."""
    n = len(result.index)
    if name == "positions":
        return len(result.spot_qty) == n and len(result.perp_qty) == n
    if name == "components":
        return all(len(f) == n for f in result.components.values())
    return len(getattr(result, name)) == n


def sides(result) -> np.ndarray:
    """(T, C) int8: +1 where a column holds a carry at the bar close, -1 a reverse carry, 0 flat.

    The spot leg's sign decides (long spot: carry); a perp alone (its spot leg liquidated or
    sold) decides by its opposite sign (short perp: carry)."""
    spot = result.spot_qty.to_numpy()
    perp = result.perp_qty.to_numpy()
    return np.where(spot != 0, np.sign(spot), -np.sign(perp)).astype(np.int8)


def trip_bounds(side: np.ndarray) -> dict[str, np.ndarray]:
    """Where the trips of ``side`` (:func:`sides`, T x C) start and end, column by column.

    Returns arrays with one entry per trip, ordered by column then time: ``column``,
    ``side`` (+1/-1), ``first`` (first bar held), ``last`` (last bar held), ``exit_bar`` (the
    bar of the closing fill: ``last + 1``; ``last`` for a trip still open at the end),
    ``pnl_end`` (the last bar whose PnL is the trip's: ``exit_bar``, but ``last`` for a flip,
    whose bar belongs to the next trip) and ``kind`` (0 exit, 1 flip, 2 end).
    """
    s = np.ascontiguousarray(side.T)  # (C, T): np.nonzero walks column by column, then time
    C, T = s.shape
    prev = np.zeros_like(s)
    prev[:, 1:] = s[:, :-1]
    nxt = np.zeros_like(s)
    nxt[:, :-1] = s[:, 1:]
    held = s != 0
    col, first = np.nonzero(held & (s != prev))
    col_end, last = np.nonzero(held & (s != nxt))
    assert np.array_equal(col, col_end)  # one end per start, in the same order
    after = np.where(last + 1 < T, s[col, np.minimum(last + 1, T - 1)], 0)
    kind = np.where(last == T - 1, 2, np.where(after == 0, 0, 1)).astype(np.int8)
    exit_bar = np.where(kind == 2, last, last + 1)
    pnl_end = np.where(kind == 1, last, exit_bar)
    return {
        "column": col.astype(np.int64),
        "side": s[col, first],
        "first": first.astype(np.int64),
        "last": last.astype(np.int64),
        "exit_bar": exit_bar.astype(np.int64),
        "pnl_end": pnl_end.astype(np.int64),
        "kind": kind,
    }


def _fill_prices(records: np.ndarray, n_columns: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys ``(bar * C + column) * 2 + leg`` of the fills, and the mean fill price
    (notional-weighted, quote per coin) of each key."""
    fills = records[records[:, 2] == _FILL]
    if len(fills) == 0:
        return np.empty(0, np.int64), np.empty(0)
    key = (fills[:, 0].astype(np.int64) * n_columns + fills[:, 1].astype(np.int64)) * 2 + fills[:, 3].astype(np.int64)
    order = np.argsort(key, kind="stable")
    key = key[order]
    qty = np.abs(fills[order, 4])
    value = qty * fills[order, 5]
    uniq, start = np.unique(key, return_index=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.add.reduceat(value, start) / np.add.reduceat(qty, start)
    return uniq, price


def _lookup(keys: np.ndarray, values: np.ndarray, want: np.ndarray) -> np.ndarray:
    pos = np.searchsorted(keys, want)
    found = pos < len(keys)
    found[found] = keys[pos[found]] == want[found]
    out = np.full(len(want), np.nan)
    out[found] = values[pos[found]]
    return out


def round_trips(result, targets=None, columns=None) -> pd.DataFrame:
    """Every trip of a run (see the module's text), one row each, ordered by column then time.

    Parameters
    ----------
    result : BacktestResult
        A run that kept per-bar positions and components.
    targets : Targets or their column table, optional
        For the labels (default: the result's column table).
    columns : array of int, optional
        Column positions to cover (default: all).

    Returns
    -------
    DataFrame with :data:`TRIP_COLUMNS`: ``portfolio`` and column ``label``, ``column`` (the
    column's position, as in ``events.parquet`` and ``components.parquet``), ``symbol``,
    ``side`` (``carry`` / ``reverse carry``), ``entry_time`` (the open of the bar of the entry
    fill), ``exit_time`` (the open of the bar of the exit fill; the last bar's close for a trip
    still open; both UTC, in microseconds as the events' times), ``exit`` (``exit``, ``flip``
    or ``end``), ``holding_hours``, ``entry_notional`` (quote: the spot leg's coins at the
    entry bar's close times its entry fill price; the perp leg's for a trip without spot),
    ``liquidations`` (liquidation events in
    the trip), the components of :data:`TRIP_COMPONENTS` and ``total_pnl`` (their sum), quote.
    """
    if not (per_bar(result, "positions") and per_bar(result, "components")):
        raise ConfigError(
            "round trips need per-bar positions and components: run without lean outputs "
            "(run_backtest(..., outputs=...) must keep 'positions' and 'components')"
        )
    table = result.column_table if targets is None else targets
    side_all = sides(result)
    T, C = side_all.shape
    cols = np.arange(C) if columns is None else np.asarray(columns, dtype=np.int64)
    b = trip_bounds(side_all[:, cols])
    col = cols[b["column"]]  # the result's column positions
    first, pnl_end, exit_bar = b["first"], b["pnl_end"], b["exit_bar"]
    index = result.index
    n = len(col)

    comps = {}
    before = first - 1
    has_before = before >= 0
    for key, names in TRIP_COMPONENTS.items():
        v = np.zeros(n)
        for name in names:
            cum = result.components[name].to_numpy()
            v += cum[pnl_end, col] - np.where(has_before, cum[np.maximum(before, 0), col], 0.0)
        comps[key] = v
    total = np.sum(list(comps.values()), axis=0) if n else np.zeros(0)

    spot = result.spot_qty.to_numpy()
    perp = result.perp_qty.to_numpy()
    keys, price = _fill_prices(np.asarray(result.records), C)
    q_spot = spot[first, col]
    leg = np.where(q_spot != 0, 0, 1)
    qty = np.where(leg == 0, q_spot, perp[first, col])
    notional = np.abs(qty) * _lookup(keys, price, (first * C + col) * 2 + leg)

    liq = np.zeros(n, dtype=np.int64)
    rec = np.asarray(result.records)
    liq_rec = rec[(rec[:, 2] == _LIQUIDATION) & (rec[:, 1] >= 0)]
    if n and len(liq_rec):
        start_key = col * T + first  # increasing: columns ascend, trips of a column do not overlap
        order = np.argsort(start_key, kind="stable")
        lk = liq_rec[:, 1].astype(np.int64) * T + liq_rec[:, 0].astype(np.int64)
        pos = np.searchsorted(start_key[order], lk, side="right") - 1
        ok = pos >= 0
        trip = order[np.maximum(pos, 0)]
        ok &= lk <= (col * T + pnl_end)[trip]
        np.add.at(liq, trip[ok], 1)

    kind = b["kind"]
    entry = index[first]
    step_ns = int(round(float(result.bar_hours) * 3600e9))
    exit_time = index[np.minimum(exit_bar, T - 1)] + pd.to_timedelta(np.where(kind == 2, step_ns, 0), unit="ns")
    holding = (exit_time - entry).total_seconds().to_numpy() / 3600.0

    labels = np.array(column_labels(table), dtype=object)
    plabels = portfolio_labels(table)
    tab = table if isinstance(table, pd.DataFrame) else table.columns  # Targets or their column table
    group = tab["group"].to_numpy()
    frame = pd.DataFrame(
        {
            "portfolio": np.array([plabels[int(g)] for g in group], dtype=object)[col] if n else [],
            "label": labels[col] if n else [],
            "column": col,
            "symbol": tab["symbol"].to_numpy(dtype=object)[col] if n else [],
            "side": np.where(b["side"] > 0, SIDES[1], SIDES[-1]).astype(object),
            "entry_time": entry.as_unit("us"),
            "exit_time": exit_time.as_unit("us"),
            "exit": np.array(["exit", "flip", "end"], dtype=object)[kind],
            "holding_hours": holding,
            "entry_notional": notional,
            "liquidations": liq,
            **comps,
            "total_pnl": total,
        }
    )
    return frame[list(TRIP_COLUMNS)]


def flat_pnl(result, columns=None) -> pd.DataFrame:
    """PnL by trip component booked on the bars that belong to no trip (columns x components,
    quote): what the trips of :func:`round_trips` leave out of a column's final components."""
    side = sides(result)
    T, C = side.shape
    cols = np.arange(C) if columns is None else np.asarray(columns, dtype=np.int64)
    b = trip_bounds(side[:, cols])
    covered = np.zeros((T + 1, len(cols)), dtype=np.int64)  # +1 at a trip's first bar, -1 after its pnl_end
    np.add.at(covered, (b["first"], b["column"]), 1)
    np.add.at(covered, (b["pnl_end"] + 1, b["column"]), -1)
    flat = np.cumsum(covered, axis=0)[:T] == 0
    out = {}
    for key, names in TRIP_COMPONENTS.items():
        v = np.zeros(len(cols))
        for name in names:
            cum = result.components[name].to_numpy()[:, cols]
            inc = np.diff(cum, axis=0, prepend=0.0)
            v += np.where(flat, inc, 0.0).sum(axis=0)
        out[key] = v
    return pd.DataFrame(out, index=pd.Index(cols, name="column"))

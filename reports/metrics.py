"""Every return statistic of carry, in one place, vectorized over columns.

Run summaries (one row per portfolio: :func:`stats_frame`, :func:`stats`), per-column
summaries (:func:`column_stats`), the streaming figures of scale-out sweeps
(:class:`LeanFigures`, over lean runs on consecutive time chunks) and walk-forward windows
(:func:`return_stats`) all compute their figures here, with the same formulas and the same
rules. The keys are those of :mod:`reports.keys`.

Definitions
-----------
Equity ``E_t`` (quote) at the close of bars ``t = 0 .. T-1``; ``E_-1`` is the equity before
the first bar (the initial capital, a column's share of it, or the equity before a window).

* bar return ``r_t = E_t / E_(t-1) - 1``, and ``0`` where ``E_(t-1) <= 0`` (nothing left to
  return on); NaN equity gives a NaN return, left out of every statistic;
* daily return ``d_k = D_k / D_(k-1) - 1`` (same rules), where ``D_k`` is the equity at the end
  of the ``k``-th UTC day of the bars (the close of the last bar opening in that day; the last
  day ends at the last bar, even mid-day) and ``D_-1 = E_-1``; bars longer than a day give one
  return each;
* ``total_return = E_(T-1) / E_-1 - 1``;
* ``annualized_return = prod(1 + r) ** (A / T) - 1`` with ``A = HOURS_PER_YEAR / bar_hours``
  bars per 365-day year (:data:`data.units.HOURS_PER_YEAR`);
* ``sharpe = mean(d) / std(d) * sqrt(P)`` with ``P = 365`` days a year (the bars a year for
  bars longer than a day; sample standard deviation, ``ddof=1``; risk-free 0);
* ``sortino = mean(d) * P / (sqrt(mean(min(d, 0) ** 2)) * sqrt(P))`` (required return 0);
* ``max_drawdown = min_t (W_t / max_(s<=t) W_s - 1)`` with ``W_t = prod_(s<=t) (1 + r_s)``:
  negative, ``0`` without a drawdown;
* ``calmar = annualized_return / abs(max_drawdown)``.

Sharpe and Sortino come from daily returns so that the same PnL gives the same figures on
1-hour, 4-hour and daily bars: a carry's bar returns are not independent from bar to bar
(funding lands every few hours, the basis reverts within the day), so scaling per-bar figures
by the square root of the bars a year gives a figure that depends on the bar length. The
equity path between day ends still counts in the drawdown, from bar returns.

Zero-variance rule (one rule for every path)
--------------------------------------------
A ratio whose denominator is zero is **NaN** (``null`` in JSON), never ``+-inf``: ``sharpe``
and ``sortino`` when the standard deviation of the daily returns is 0 (the returns never vary,
e.g. a portfolio that never trades; also with fewer than 2 daily returns, i.e. bars within one
day), ``sortino`` also when no daily return is negative (downside deviation 0), ``calmar``
when equity never draws down.

The moments are accumulated chunk by chunk (products, sums and the running drawdown
sequentially in one compiled pass, the variance of the daily returns two-pass within a chunk;
chunks are merged with Chan's formula, so several chunks agree with one pass to rounding and
one chunk is exactly the two-pass variance). The results equal vectorbt's returns accessor
(365-day year; Sharpe and Sortino on the daily returns with a one-day frequency) to rounding
wherever that accessor gives a finite value.

Other figures
-------------
PnL components are the result's cumulative components at the last bar, summed over a
portfolio's columns; ``n_trades`` counts fills (each leg), ``n_liquidations`` liquidation
events, ``turnover`` is the traded notional ``sum |qty| * price`` over fills divided by the
initial capital; ``time_in_market`` is the fraction of bars with any position open at the bar
close (a portfolio: any of its columns), from per-bar positions when the result keeps them,
else rebuilt from fill and liquidation events (runs that started flat); ``worst_margin_ratio``
is the highest per-bar margin ratio (NaN without per-bar margin outputs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from backtest.result import EVENT_KINDS
from data.errors import ConfigError, did_you_mean
from data.units import HOURS_PER_YEAR
from reports.keys import COMPONENT_KEYS, SUMMARY_KEYS

#: The statistics of an equity curve alone (:func:`return_stats`), in summary order.
RETURN_KEYS = ("total_return", "annualized_return", "sharpe", "sortino", "max_drawdown", "calmar")

_FILL = EVENT_KINDS.index("fill")
_LIQUIDATION = EVENT_KINDS.index("liquidation")
#: ``worst_margin_ratio`` above this (an infinite ratio: the margin balance was gone at a bar's
#: adverse extreme, a move through the bankruptcy price) is reported as this, a finite number.
WORST_MARGIN_RATIO_CAP = 1000.0
_SKIP = EVENT_KINDS.index("skip")

# --------------------------------------------------------------------------- return moments
#: Rows of the return accumulator: the per-bar path (products, drawdown, last equity) and the
#: moments of the daily returns (see :class:`ReturnAccumulator`).
A_PROD, A_DOWN, A_CNT, A_CP, A_RUNMAX, A_MDD, A_MEAN, A_M2, A_PREV, A_DAY_PREV = range(10)
N_ACC = 10
#: Milliseconds in one day (the sampling period of Sharpe and Sortino).
MS_PER_DAY = 86_400_000


@njit(cache=True)
def _path_nb(eq, acc):
    """Add the bar returns of equity ``eq`` (T, C) to the path rows of ``acc`` (N_ACC, C), in place.

    ``acc[A_PREV]`` is the equity before ``eq``'s first bar. Products and the running drawdown
    run sequentially (as vectorbt's ``returns.nb`` kernels and numba's ``nanprod``).
    """
    T, C = eq.shape
    for t in range(T):
        for c in range(C):
            prev = acc[A_PREV, c] if t == 0 else eq[t - 1, c]
            r = eq[t, c] / prev - 1.0 if prev > 0 else 0.0
            if not np.isnan(r):
                acc[A_PROD, c] *= r + 1.0
                acc[A_CP, c] *= r + 1
            cum = acc[A_CP, c] * 100.0
            if np.isnan(acc[A_RUNMAX, c]) or cum > acc[A_RUNMAX, c]:
                acc[A_RUNMAX, c] = cum
            dd = cum / acc[A_RUNMAX, c] - 1
            if np.isnan(dd) or dd < acc[A_MDD, c]:
                acc[A_MDD, c] = dd
    if T > 0:
        for c in range(C):
            acc[A_PREV, c] = eq[T - 1, c]


@njit(cache=True)
def _moments_nb(ret, acc):
    """Add the period returns ``ret`` (D, C; NaN: left out) to the moment rows of ``acc``, in place.

    The downside sum runs sequentially (as numba's ``nanmean``); the variance is two-pass
    within ``ret`` (numba's ``nanvar``) and merged into the earlier returns' with Chan's formula.
    """
    D, C = ret.shape
    total = np.zeros(C)
    cnt = np.zeros(C, np.int64)
    for t in range(D):
        for c in range(C):
            r = ret[t, c]
            if not np.isnan(r):
                total[c] += r
                a = r if r <= 0 else 0.0
                acc[A_DOWN, c] += a**2
                cnt[c] += 1
    mean = np.empty(C)
    for c in range(C):
        mean[c] = total[c] / cnt[c] if cnt[c] > 0 else np.nan
    ssd = np.zeros(C)
    for t in range(D):
        for c in range(C):
            r = ret[t, c]
            if not np.isnan(r):
                v = r - mean[c]
                ssd[c] += v * v
    for c in range(C):
        n_a = acc[A_CNT, c]
        n_b = float(cnt[c])
        if n_b == 0:
            pass
        elif n_a == 0:
            acc[A_MEAN, c] = mean[c]
            acc[A_M2, c] = ssd[c]
        else:
            n = n_a + n_b
            delta = mean[c] - acc[A_MEAN, c]
            acc[A_MEAN, c] += delta * n_b / n
            acc[A_M2, c] += ssd[c] + delta * delta * n_a * n_b / n
        acc[A_CNT, c] = n_a + n_b


def _simple_returns(end: np.ndarray, before: np.ndarray) -> np.ndarray:
    """``end / before - 1``, and 0 where ``before <= 0`` (or NaN): the bar-return rule, on any sampling."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(before > 0, end / before - 1.0, 0.0)


def periods_per_year(bar_hours: float) -> float:
    """Sampling periods of Sharpe and Sortino in a 365-day year: 365 days, or the bars when they
    are longer than a day."""
    return HOURS_PER_YEAR / max(24.0, float(bar_hours))


class ReturnAccumulator:
    """The return statistics of equity curves fed in consecutive chunks of bars.

    ``initial``: equity before the first bar, one value per column (quote); ``bar_hours``:
    bar length. Bar returns give the annualized return and the drawdown; the equity at the end
    of each UTC day (the close of the day's last bar) gives the daily returns of Sharpe and
    Sortino, the first against ``initial``, the last day's at the last bar added (see the
    module docstring).
    """

    def __init__(self, initial, bar_hours: float):
        initial = np.asarray(initial, dtype=np.float64)
        self.initial = initial.copy()
        self.bar_hours = float(bar_hours)
        acc = np.zeros((N_ACC, len(initial)))
        acc[A_PROD] = 1.0
        acc[A_CP] = 1.0
        acc[A_RUNMAX] = np.nan
        acc[A_MDD] = np.inf
        acc[A_PREV] = initial
        acc[A_DAY_PREV] = initial
        self.acc = acc
        self.bars = 0
        self.day: int | None = None  # UTC day (days since the epoch) of the last bar added

    def _days(self, times, T: int) -> np.ndarray:
        """UTC day of each bar's open, (T,) int64; without ``times`` the bars are taken as
        consecutive from a UTC midnight (the first bar added opens at 00:00)."""
        if times is None:
            bar_ms = max(1, round(self.bar_hours * 3_600_000))
            return (self.bars + np.arange(T, dtype=np.int64)) * bar_ms // MS_PER_DAY
        ms = pd.DatetimeIndex(times).as_unit("ms").asi8
        if len(ms) != T:
            raise ValueError(f"{len(ms)} bar times for {T} bars of equity")
        return ms // MS_PER_DAY

    def add(self, equity, times=None) -> None:
        """Add the next bars' equity, (bars x columns); ``times``: their open times (UTC; see
        :meth:`_days` for ``None``)."""
        eq = np.ascontiguousarray(equity, dtype=np.float64)
        if eq.ndim != 2 or eq.shape[1] != self.acc.shape[1]:
            raise ValueError(f"equity of shape {eq.shape} for {self.acc.shape[1]} columns")
        T = eq.shape[0]
        if T == 0:
            return
        day = self._days(times, T)
        # the days this chunk closes: the pending one (at the previous chunk's last bar) when
        # the chunk starts a new day, and every day whose last bar is in the chunk but not last
        ends = eq[np.flatnonzero(day[1:] != day[:-1])]
        if self.day is not None and day[0] != self.day:
            ends = np.vstack([self.acc[A_PREV][None, :], ends])
        if len(ends):
            before = np.vstack([self.acc[A_DAY_PREV][None, :], ends[:-1]])
            _moments_nb(np.ascontiguousarray(_simple_returns(ends, before)), self.acc)
            self.acc[A_DAY_PREV] = ends[-1]
        _path_nb(eq, self.acc)
        self.day = int(day[-1])
        self.bars += T

    @property
    def last(self) -> np.ndarray:
        """The equity at the last bar added (the initial equity before any)."""
        return self.acc[A_PREV].copy()

    def stats(self) -> dict[str, np.ndarray]:
        """:data:`RETURN_KEYS` per column (see the module docstring for the formulas and the
        zero-variance rule)."""
        acc, T = self.acc.copy(), self.bars
        C = acc.shape[1]
        nan = np.full(C, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            total = np.where(self.initial > 0, acc[A_PREV] / self.initial - 1.0, np.nan)
        if T == 0:
            return {"total_return": total, **{k: nan.copy() for k in RETURN_KEYS[1:]}}
        # the last day closes at the last bar added
        _moments_nb(_simple_returns(acc[A_PREV], acc[A_DAY_PREV])[None, :], acc)
        ann = HOURS_PER_YEAR / self.bar_hours
        per_year = periods_per_year(self.bar_hours)
        cnt = acc[A_CNT]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            mean = np.where(cnt > 0, acc[A_MEAN], np.nan)
            ann_ret = acc[A_PROD] ** (ann / T) - 1
            # sqrt(var * n / (n - 1)) with var = M2 / n: numba's nanstd(ddof=1) order
            std = np.where(cnt > 1, np.sqrt(acc[A_M2] / cnt * cnt / (cnt - 1)), np.nan)
            down = np.where(cnt > 0, np.sqrt(acc[A_DOWN] / cnt) * np.sqrt(per_year), np.nan)
            varies = std > 0
            sharpe = np.where(varies, mean / std * np.sqrt(per_year), np.nan)
            sortino = np.where(varies & (down > 0), mean * per_year / down, np.nan)
            mdd = acc[A_MDD].copy()
            calmar = np.where(mdd != 0, ann_ret / np.abs(mdd), np.nan)
        return {
            "total_return": total,
            "annualized_return": ann_ret,
            "sharpe": sharpe,
            "sortino": sortino,
            "max_drawdown": mdd,
            "calmar": calmar,
        }


def return_stats(equity, initial, bar_hours: float, times=None) -> dict[str, np.ndarray]:
    """:data:`RETURN_KEYS` of equity curves in one pass.

    ``equity``: (bars x columns) quote, ``initial``: equity before the first bar per column
    (quote; for a window of a longer curve: the equity at the bar before the window),
    ``bar_hours``: bar length, ``times``: the bars' open times (UTC), which place the day ends
    of Sharpe and Sortino; without them the first bar is taken to open at 00:00 UTC and the
    bars to follow each other without gaps. Returns ``{key: array over columns}``.
    """
    eq = np.asarray(equity, dtype=np.float64)
    if eq.ndim == 1:
        eq = eq[:, None]
    acc = ReturnAccumulator(np.broadcast_to(np.asarray(initial, dtype=np.float64), (eq.shape[1],)), bar_hours)
    acc.add(eq, times)
    return acc.stats()


def check_return_key(metric: str, what: str = "this statistic") -> None:
    """ConfigError unless ``metric`` is one of :data:`RETURN_KEYS` (with a did-you-mean hint)."""
    if metric not in RETURN_KEYS:
        raise ConfigError(
            f"{what} needs a return statistic ({', '.join(RETURN_KEYS)}), not {metric!r}"
            f"{did_you_mean(metric, RETURN_KEYS)}"
        )


# --------------------------------------------------------------------------- time in market
#: A position rebuilt from fills is closed when it is within this fraction of the largest
#: quantity the leg has held or traded (the sums of fills reproduce the engine's zero to rounding).
SNAP = 1e-9


@njit(cache=True)
def _held_bars_nb(rec, C, T, s0, q0, col_group, G):
    """Bars each column and each portfolio held any position at the bar close, from the fill
    (kind 0) and liquidation (kind 4: closes its leg, perp or borrowed spot) events ``rec``
    (chronological) and the positions before the first bar (a leg within :data:`SNAP` of its
    largest quantity counts as closed)."""
    s = s0.copy()
    q = q0.copy()
    s_scale = np.abs(s0)
    q_scale = np.abs(q0)
    last = np.zeros(C, np.int64)
    held = np.zeros(C, np.bool_)
    n_held = np.zeros(G, np.int64)
    g_last = np.zeros(G, np.int64)
    for c in range(C):
        held[c] = s[c] != 0.0 or q[c] != 0.0
        if held[c]:
            n_held[col_group[c]] += 1
    out = np.zeros(C, np.int64)
    g_out = np.zeros(G, np.int64)
    for k in range(rec.shape[0]):
        kind = int(rec[k, 2])
        c = int(rec[k, 1])
        if c < 0 or not (kind == 0 or kind == 4):  # fills and liquidations change positions
            continue
        b = int(rec[k, 0])
        if held[c]:
            out[c] += b - last[c]
        last[c] = b
        qty = rec[k, 4]
        if int(rec[k, 3]) == 0:  # spot leg (a fill, or the liquidation of a borrowed spot leg)
            s[c] += qty
            s_scale[c] = max(s_scale[c], abs(qty), abs(s[c]))
            if abs(s[c]) <= SNAP * s_scale[c] or kind == 4:  # closed: the engine sets it to 0
                s[c] = 0.0
        else:
            q[c] += qty
            q_scale[c] = max(q_scale[c], abs(qty), abs(q[c]))
            if abs(q[c]) <= SNAP * q_scale[c] or kind == 4:
                q[c] = 0.0
        now = s[c] != 0.0 or q[c] != 0.0
        if now != held[c]:
            g = col_group[c]
            if n_held[g] > 0:
                g_out[g] += b - g_last[g]
            g_last[g] = b
            n_held[g] += 1 if now else -1
        held[c] = now
    for c in range(C):
        if held[c]:
            out[c] += T - last[c]
    for g in range(G):
        if n_held[g] > 0:
            g_out[g] += T - g_last[g]
    return out, g_out


def held_bars_from_events(records, n_columns: int, n_bars: int, column_group=None, spot0=None, perp0=None):
    """Bars with a position open at the close, per column and per portfolio, rebuilt from the
    fill and liquidation events ``records`` (:attr:`BacktestResult.records`).

    ``column_group``: portfolio position of each column (one portfolio per column by default);
    ``spot0``/``perp0``: positions before the first bar, coins (flat by default).
    Returns ``(per_column, per_portfolio)`` int64 arrays.
    """
    cg = np.arange(n_columns, dtype=np.int64) if column_group is None else np.asarray(column_group, np.int64)
    G = int(cg.max()) + 1 if len(cg) else 0
    s0 = np.zeros(n_columns) if spot0 is None else np.asarray(spot0, dtype=np.float64)
    q0 = np.zeros(n_columns) if perp0 is None else np.asarray(perp0, dtype=np.float64)
    rec = np.ascontiguousarray(records, dtype=np.float64)
    return _held_bars_nb(rec, n_columns, int(n_bars), s0, q0, cg, G)


# --------------------------------------------------------------------------- result figures
def _per_bar(frame, n_bars: int) -> bool:
    return frame.shape[0] == n_bars


def _started_flat(result) -> bool:
    """True when the run began with no position (not resumed from another run's state)."""
    state = getattr(result, "state", None)
    return state is None or int(state.bars) == len(result.index)


def _event_counts(records, n: int, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(n_liquidations, n_trades, traded notional in quote, n_skipped_orders) per owner of the events.

    ``owner``: for each event row, the position of its column or portfolio (-1: none).
    """
    kind = records[:, 2].astype(np.int64)
    ok = owner >= 0
    fills = ok & (kind == _FILL)
    notional = np.bincount(owner[fills], weights=np.abs(records[fills, 4]) * records[fills, 5], minlength=n)[:n]
    n_liq = np.bincount(owner[ok & (kind == _LIQUIDATION)], minlength=n)[:n]
    n_skip = np.bincount(owner[ok & (kind == _SKIP)], minlength=n)[:n]
    return n_liq, np.bincount(owner[fills], minlength=n)[:n], notional, n_skip


def _counts(n_liq, n_trades, notional, n_skip, initial) -> dict[str, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        turnover = np.where(initial > 0, notional / initial, np.nan)
    return {"n_liquidations": n_liq, "n_trades": n_trades, "turnover": turnover, "n_skipped_orders": n_skip}


def _assemble(n: int, initial, final, returns: dict, comps: dict, counts: dict, held, worst) -> dict:
    out: dict[str, np.ndarray] = {"initial_capital": initial, "final_equity": final}
    out.update(returns)
    out.update(comps)
    out["basis_pnl"] = comps["spot_pnl"] + comps["perp_pnl"]
    out.update(counts)
    out["time_in_market"] = held
    out["worst_margin_ratio"] = np.minimum(worst, WORST_MARGIN_RATIO_CAP)
    return {k: np.asarray(out[k]) if np.ndim(out[k]) else np.full(n, out[k]) for k in SUMMARY_KEYS}


def _column_initial(result, eq: np.ndarray) -> np.ndarray:
    """Each column's initial capital: its equity minus its cumulative PnL at the first bar
    (the last bar when the components are kept for the last bar only)."""
    comps = {k: result.components[v].to_numpy() for k, v in COMPONENT_KEYS.items()}
    first = eq.shape[0] == next(iter(comps.values())).shape[0]
    row_e, row_c = (0, 0) if first else (-1, -1)
    total = 0
    for c in comps.values():
        total = total + c[row_c]
    return eq[row_e] - total


def column_stats(result) -> pd.DataFrame:
    """The :data:`~reports.keys.SUMMARY_KEYS` figures of every column (symbol x parameter set).

    A column's capital is its share of the portfolio's initial capital and its returns are
    the changes of its equity (bar to bar, and day end to day end for Sharpe and Sortino). Rows in column order (index: column position); label
    them with :func:`reports.frames.column_summary`.
    """
    n_bars = len(result.index)
    eq_frame = result.equity
    if not _per_bar(eq_frame, n_bars):
        raise ConfigError("column statistics need column equity per bar: run with outputs including 'equity'")
    eq = eq_frame.to_numpy(dtype=np.float64)
    C = eq.shape[1]
    initial = _column_initial(result, eq)
    rets = return_stats(eq, initial, result.bar_hours, result.index)
    with np.errstate(divide="ignore", invalid="ignore"):
        rets["total_return"] = np.where(initial > 0, eq[-1] / initial - 1.0, np.nan)
    comps = {k: result.components[v].to_numpy()[-1] for k, v in COMPONENT_KEYS.items()}
    col = result.records[:, 1].astype(np.int64)
    counts = _counts(*_event_counts(result.records, C, np.where(col >= 0, col, -1)), initial)
    if _per_bar(result.spot_qty, n_bars) and _per_bar(result.perp_qty, n_bars):
        held = ((result.spot_qty.to_numpy() != 0) | (result.perp_qty.to_numpy() != 0)).mean(axis=0)
    elif _started_flat(result):
        held = held_bars_from_events(result.records, C, n_bars)[0] / float(n_bars)
    else:
        held = np.full(C, np.nan)
    worst = np.full(C, np.nan)
    if _per_bar(result.margin_ratio, n_bars):
        worst = np.fmax.reduce(result.margin_ratio.to_numpy(), axis=0) if n_bars else worst
    out = _assemble(C, initial, eq[-1], rets, comps, counts, held, worst)
    return pd.DataFrame(out, index=pd.RangeIndex(C, name="column"))


def _group_order(column_group: np.ndarray, G: int) -> tuple[np.ndarray, np.ndarray]:
    """Columns sorted by portfolio (stable) and the start of each portfolio's run of columns."""
    order = np.argsort(column_group, kind="stable")
    starts = np.searchsorted(column_group[order], np.arange(G))
    return order, starts


def stats_frame(result) -> pd.DataFrame:
    """The :data:`~reports.keys.SUMMARY_KEYS` figures of every portfolio, one row each
    (index: the group ids, named ``group``), in one vectorized pass."""
    n_bars = len(result.index)
    ge = result.group_equity
    if not _per_bar(ge, n_bars):
        raise ConfigError(
            "statistics need group equity per bar: run with outputs including 'group_equity' (or full=True)"
        )
    G = len(result.group_ids)
    eq = ge.to_numpy(dtype=np.float64)
    init = np.full(G, float(result.config.initial_capital_quote))
    rets = return_stats(eq, init, result.bar_hours, result.index)
    cg = np.asarray(result.column_group, dtype=np.int64)
    comps = {
        k: np.bincount(cg, weights=result.components[v].to_numpy()[-1], minlength=G)[:G]
        for k, v in COMPONENT_KEYS.items()
    }
    col = result.records[:, 1].astype(np.int64)
    owner = np.where(col >= 0, cg[np.maximum(col, 0)] if len(cg) else col, -1 - col)
    counts = _counts(*_event_counts(result.records, G, owner), init)
    order, starts = _group_order(cg, G)
    if _per_bar(result.spot_qty, n_bars) and _per_bar(result.perp_qty, n_bars) and n_bars and G:
        held_cols = (result.spot_qty.to_numpy() != 0) | (result.perp_qty.to_numpy() != 0)
        held = np.logical_or.reduceat(held_cols[:, order], starts, axis=1).mean(axis=0)
    elif _started_flat(result) and n_bars:
        held = held_bars_from_events(result.records, len(cg), n_bars, cg)[1] / float(n_bars)
    else:
        held = np.full(G, np.nan)
    worst = np.full(G, np.nan)
    if _per_bar(result.margin_ratio, n_bars) and n_bars and G:
        worst = np.fmax.reduceat(np.fmax.reduce(result.margin_ratio.to_numpy(), axis=0)[order], starts)
    out = _assemble(G, init, eq[-1], rets, comps, counts, held, worst)
    return pd.DataFrame(out, index=pd.Index(result.group_ids, name="group"))


def stats(result, group=None) -> dict:
    """The :data:`~reports.keys.SUMMARY_KEYS` figures of one portfolio (the only one by
    default) as a dict of Python floats and ints. For many portfolios use :func:`stats_frame`
    (one pass for all)."""
    ids = list(result.group_ids)
    if group is None:
        if len(ids) != 1:
            raise ConfigError(f"result has {len(ids)} portfolios; pass group= one of {ids[:20]}")
        group = ids[0]
    if group not in ids:
        raise ConfigError(f"no portfolio {group!r} in the result; its groups are {ids[:20]}")
    row = stats_frame(result).loc[group]
    return {k: (int(row[k]) if k.startswith("n_") else float(row[k])) for k in SUMMARY_KEYS}


# --------------------------------------------------------------------------- streaming figures
class LeanFigures:
    """:data:`~reports.keys.SUMMARY_KEYS` per column and per portfolio, accumulated over lean
    runs of the same portfolios on consecutive time chunks (each resumed from the previous
    one's state).

    ``column_group``: each column's portfolio position (``0 .. G - 1``; default: every column its
    own portfolio). Everything comes from the lean outputs: per-bar column equity (and, for
    portfolios of several columns, per-bar portfolio equity, ``group_equity``), the components,
    the events and, when the run kept them (``outputs`` with ``"margin"``), the per-bar margin
    ratios for ``worst_margin_ratio`` (NaN without them). A column's initial capital is read
    from the first chunk (its equity minus its PnL), a portfolio's is ``initial_capital``. The
    formulas are those of :func:`column_stats` and :func:`stats_frame` (one accumulator: over
    several chunks the figures agree with one run over every bar to rounding, the variance
    being merged).
    """

    def __init__(self, n_columns: int, initial_capital: float, bar_hours: float, column_group=None):
        cg = np.arange(n_columns, dtype=np.int64) if column_group is None else np.asarray(column_group, np.int64)
        if len(cg) != n_columns:
            raise ValueError(f"column_group has {len(cg)} entries for {n_columns} columns")
        self.column_group = cg
        self.shared = not np.array_equal(cg, np.arange(n_columns))
        G = int(cg.max()) + 1 if len(cg) else 0
        self.group_initial = np.full(G, float(initial_capital))
        self.bar_hours = float(bar_hours)
        self.initial: np.ndarray | None = None if self.shared else self.group_initial.copy()
        self.returns: ReturnAccumulator | None = None if self.shared else ReturnAccumulator(self.initial, bar_hours)
        self.group_returns = ReturnAccumulator(self.group_initial, bar_hours) if self.shared else None
        self.held = np.zeros(n_columns, np.int64)
        self.group_held = np.zeros(G, np.int64)
        self.counts = [np.zeros(n_columns, np.int64), np.zeros(n_columns, np.int64), np.zeros(n_columns)]
        self.counts += [np.zeros(n_columns, np.int64)]
        self.group_counts = [np.zeros(G, np.int64), np.zeros(G, np.int64), np.zeros(G), np.zeros(G, np.int64)]
        self.comps: dict[str, np.ndarray] | None = None
        self.worst = np.full(n_columns, np.nan)
        self._bars = 0

    @property
    def bars(self) -> int:
        return self._bars

    def add(self, result, spot0=None, perp0=None) -> None:
        """Add a chunk's lean result; ``spot0``/``perp0``: positions before its first bar."""
        eq = result.equity.to_numpy()
        T, C = eq.shape
        if C != len(self.column_group):
            raise ValueError(f"a result of {C} columns for figures of {len(self.column_group)}")
        if self.returns is None:  # the first chunk: each column's share of its portfolio's capital
            self.initial = _column_initial(result, eq)
            self.returns = ReturnAccumulator(self.initial, self.bar_hours)
        self.returns.add(eq, result.index)
        if self.group_returns is not None:
            if not _per_bar(result.group_equity, T):
                raise ConfigError(
                    "portfolio figures need per-bar group equity: run with outputs including 'group_equity'"
                )
            self.group_returns.add(result.group_equity.to_numpy(), result.index)
        rec = result.records
        col = rec[:, 1].astype(np.int64)
        cg = self.column_group
        for acc, new in zip(self.counts, _event_counts(rec, C, np.where(col >= 0, col, -1))):
            acc += new
        owner = np.where(col >= 0, cg[np.maximum(col, 0)] if C else col, -1 - col)
        for acc, new in zip(self.group_counts, _event_counts(rec, len(self.group_initial), owner)):
            acc += new
        held, group_held = held_bars_from_events(rec, C, T, cg, spot0, perp0)
        self.held += held
        self.group_held += group_held
        self.comps = {k: result.components[v].to_numpy()[-1].copy() for k, v in COMPONENT_KEYS.items()}
        if T and _per_bar(result.margin_ratio, T):
            self.worst = np.fmax(self.worst, np.fmax.reduce(result.margin_ratio.to_numpy(), axis=0))
        self._bars += T

    def _figures(self, initial, returns: ReturnAccumulator, comps, counts, held, worst) -> pd.DataFrame:
        n = len(initial)
        held_share = held / float(self.bars) if self.bars else np.full(n, np.nan)
        counted = _counts(counts[0], counts[1], counts[2], counts[3], initial)
        return pd.DataFrame(_assemble(n, initial, returns.last, returns.stats(), comps, counted, held_share, worst))

    def frame(self) -> pd.DataFrame:
        """The figures per column (rows in column order)."""
        if self.comps is None or self.returns is None or self.initial is None:
            raise ValueError("LeanFigures.frame() needs at least one chunk (add a result first)")
        return self._figures(self.initial, self.returns, self.comps, self.counts, self.held, self.worst)

    def portfolio_frame(self) -> pd.DataFrame:
        """The figures per portfolio (rows in portfolio order); the column figures when every
        column is its own portfolio."""
        if self.comps is None or self.returns is None:
            raise ValueError("LeanFigures.portfolio_frame() needs at least one chunk (add a result first)")
        if self.group_returns is None:
            return self.frame()
        G = len(self.group_initial)
        cg = self.column_group
        comps = {k: np.bincount(cg, weights=v, minlength=G)[:G] for k, v in self.comps.items()}
        worst = np.full(G, np.nan)
        if G:
            order, starts = _group_order(cg, G)
            worst = np.fmax.reduceat(self.worst[order], starts)
        return self._figures(self.group_initial, self.group_returns, comps, self.group_counts, self.group_held, worst)


def lean_figures(result, config) -> pd.DataFrame:
    """:data:`~reports.keys.SUMMARY_KEYS` per column of a lean run of one-column portfolios
    (one chunk of :class:`LeanFigures`)."""
    figs = LeanFigures(result.equity.shape[1], config.initial_capital_quote, result.bar_hours)
    figs.add(result)
    return figs.frame()

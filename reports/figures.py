"""The summary figures of a lean engine run (per-bar equity, final components, events)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from backtest.config import BacktestConfig


def _held_bars(records: np.ndarray, n_columns: int, n_bars: int, spot0=None, perp0=None) -> np.ndarray:
    """Bars each column held any position at the bar close, rebuilt from fill/liquidation events
    (``spot0``/``perp0``: positions before the first bar, coins; flat by default)."""
    s0 = np.zeros(n_columns) if spot0 is None else np.asarray(spot0, dtype=np.float64)
    q0 = np.zeros(n_columns) if perp0 is None else np.asarray(perp0, dtype=np.float64)
    return _held_bars_nb(np.ascontiguousarray(records, dtype=np.float64), n_columns, n_bars, s0, q0)


@njit(cache=True)
def _held_bars_nb(rec, C, T, s0, q0):
    s = s0.copy()
    q = q0.copy()
    last = np.zeros(C, np.int64)
    held = np.zeros(C, np.bool_)
    for c in range(C):
        held[c] = s[c] != 0.0 or q[c] != 0.0
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


#: Rows of the return accumulator (see :func:`_accumulate_returns_nb`).
A_PROD, A_TOTAL, A_DOWN, A_CNT, A_CP, A_RUNMAX, A_MDD, A_MEAN, A_M2, A_PREV = range(10)
N_ACC = 10


def _new_return_accumulator(initial: np.ndarray) -> np.ndarray:
    acc = np.zeros((N_ACC, len(initial)))
    acc[A_PROD] = 1.0
    acc[A_CP] = 1.0
    acc[A_RUNMAX] = np.nan
    acc[A_MDD] = np.inf
    acc[A_PREV] = initial
    return acc


@njit(cache=True)
def _accumulate_returns_nb(eq, acc):
    """Add the bar returns of equity ``eq`` (T, C) to ``acc`` (N_ACC, C), in place.

    Bar returns are ``eq[t] / eq[t-1] - 1`` (``acc[A_PREV]`` before the first bar: the initial
    capital, or the previous chunk's last equity; 0 where the previous equity is not positive),
    as :func:`backtest.app.runs.column_stats` builds them. Products, sums, the downside sum and the
    running drawdown run sequentially as vectorbt's ``returns.nb`` kernels do (numba's
    ``nanmean``/``nanvar``/``nanprod`` order); the variance is two-pass within a chunk and
    chunks are merged with Chan's formula (one chunk: exactly the two-pass variance).
    """
    T, C = eq.shape
    total = np.zeros(C)
    cnt = np.zeros(C, np.int64)
    for t in range(T):
        for c in range(C):
            prev = acc[A_PREV, c] if t == 0 else eq[t - 1, c]
            r = eq[t, c] / prev - 1.0 if prev > 0 else 0.0
            if not np.isnan(r):
                acc[A_PROD, c] *= r + 1.0
                acc[A_TOTAL, c] += r
                total[c] += r
                a = r if r <= 0 else 0.0
                acc[A_DOWN, c] += a**2
                cnt[c] += 1
                acc[A_CP, c] *= r + 1
            cum = acc[A_CP, c] * 100.0
            if np.isnan(acc[A_RUNMAX, c]) or cum > acc[A_RUNMAX, c]:
                acc[A_RUNMAX, c] = cum
            dd = cum / acc[A_RUNMAX, c] - 1
            if np.isnan(dd) or dd < acc[A_MDD, c]:
                acc[A_MDD, c] = dd
    mean = np.empty(C)
    for c in range(C):
        mean[c] = total[c] / cnt[c] if cnt[c] > 0 else np.nan
    ssd = np.zeros(C)
    for t in range(T):
        for c in range(C):
            prev = acc[A_PREV, c] if t == 0 else eq[t - 1, c]
            r = eq[t, c] / prev - 1.0 if prev > 0 else 0.0
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
        if T > 0:
            acc[A_PREV, c] = eq[T - 1, c]


@njit(cache=True)
def _return_ratios_nb(acc, ann, T):
    """Annualized return, Sharpe, Sortino, max drawdown, Calmar per column from ``acc`` after
    ``T`` bars (365-day ``ann`` factor, risk-free and required return 0, ``ddof=1``)."""
    C = acc.shape[1]
    out = np.full((5, C), np.nan)
    for c in range(C):
        if T == 0:
            continue
        cnt = np.int64(acc[A_CNT, c])
        mean = acc[A_MEAN, c] if cnt > 0 else np.nan
        ann_ret = acc[A_PROD, c] ** (ann / T) - 1
        out[0, c] = ann_ret
        if T >= 2:
            rcount = max(cnt - 1, 0)
            std = np.sqrt(acc[A_M2, c] / cnt * cnt / rcount) if rcount > 0 else np.nan
            out[1, c] = np.inf if std == 0.0 else mean / std * np.sqrt(ann)
            dr = np.sqrt(acc[A_DOWN, c] / cnt) * np.sqrt(ann) if cnt > 0 else np.nan
            out[2, c] = np.inf if dr == 0.0 else mean * ann / dr
        mdd = acc[A_MDD, c]
        out[3, c] = mdd
        out[4, c] = np.nan if mdd == 0.0 else ann_ret / np.abs(mdd)
    return out


class LeanFigures:
    """:data:`backtest.app.runs.SUMMARY_KEYS` per column, accumulated over lean runs of one-column
    portfolios on consecutive time chunks (each resumed from the previous one's state).

    Everything but ``worst_margin_ratio`` (needs per-bar margin ratios: NaN) comes from the
    lean outputs: per-bar equity, final components and the events. Ratios follow vectorbt's
    kernels with a 365-day year, as :func:`backtest.app.runs.column_stats` does; over several
    chunks they agree with one run over every bar to rounding (the variance is merged).
    """

    def __init__(self, n_columns: int, initial_capital: float, bar_hours: float):
        self.initial = np.full(n_columns, float(initial_capital))
        self.ann = 365.0 * 24.0 / float(bar_hours)
        self.acc = _new_return_accumulator(self.initial)
        self.bars = 0
        self.held = np.zeros(n_columns, np.int64)
        self.n_liq = np.zeros(n_columns, np.int64)
        self.n_trades = np.zeros(n_columns, np.int64)
        self.notional = np.zeros(n_columns)
        self.last = None

    def add(self, result, spot0=None, perp0=None) -> None:
        """Add a chunk's lean result; ``spot0``/``perp0``: positions before its first bar."""
        eq = np.ascontiguousarray(result.equity.to_numpy())
        T, C = eq.shape
        _accumulate_returns_nb(eq, self.acc)
        rec = result.records
        col = rec[:, 1].astype(np.int64)
        kind = rec[:, 2].astype(np.int64)
        ok = col >= 0
        fills = ok & (kind == 0)
        self.n_liq += np.bincount(col[ok & (kind == 4)], minlength=C)[:C]
        self.n_trades += np.bincount(col[fills], minlength=C)[:C]
        self.notional += np.bincount(col[fills], weights=np.abs(rec[fills, 4]) * rec[fills, 5], minlength=C)[:C]
        self.held += _held_bars(rec, C, T, spot0, perp0)
        self.bars += T
        self.last = (
            eq[-1].copy(),
            {k: result.components[v].to_numpy()[-1].copy() for k, v in _component_keys().items()},
        )

    def frame(self) -> pd.DataFrame:
        from backtest.app.runs import SUMMARY_KEYS

        final_eq, comps = self.last
        out: dict[str, np.ndarray] = {"initial_capital": self.initial, "final_equity": final_eq}
        out["total_return"] = final_eq / self.initial - 1.0
        ratios = _return_ratios_nb(self.acc, self.ann, self.bars)
        for k, name in enumerate(("annualized_return", "sharpe", "sortino", "max_drawdown", "calmar")):
            out[name] = ratios[k]
        out.update(comps)
        out["basis_pnl"] = out["spot_pnl"] + out["perp_pnl"]
        out["n_liquidations"] = self.n_liq
        out["n_trades"] = self.n_trades
        out["turnover"] = self.notional / self.initial
        out["time_in_market"] = self.held / float(self.bars)
        out["worst_margin_ratio"] = np.full(len(self.initial), np.nan)
        return pd.DataFrame({k: out[k] for k in SUMMARY_KEYS})


def _component_keys() -> dict:
    from backtest.app.runs import COMPONENT_KEYS

    return COMPONENT_KEYS


def lean_figures(result, config: BacktestConfig) -> pd.DataFrame:
    """:data:`backtest.app.runs.SUMMARY_KEYS` per column of a lean run of one-column portfolios
    (one chunk of :class:`LeanFigures`)."""
    figs = LeanFigures(result.equity.shape[1], config.initial_capital_quote, result.bar_hours)
    figs.add(result)
    return figs.frame()

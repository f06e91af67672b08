"""The summary figures of a lean engine run (per-bar equity, final components, events)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from ..config import BacktestConfig


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
    from ..app import COMPONENT_KEYS, SUMMARY_KEYS

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

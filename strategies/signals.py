"""Signal building blocks shared by the strategies: causal, vectorized, cached per market.

Every function returns a read-only ``(T, N)`` float array whose row ``i`` uses only data
known at bar ``i``'s close (see :mod:`data.market` for the funding convention: the
settlements summed into ``funding_rate[i]`` are known at bar ``i``'s close). Kernels are numba
functions over ``(T, C)`` arrays, time along axis 0, names ending in ``_nb``.

Results of the public signal functions are memoised per market object (markets are
immutable), so a parameter grid that shares a window computes it once.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numba import njit

from data.errors import ConfigError, check_choice
from data.market import Market
from data.units import HOURS_PER_YEAR
from strategies.cache import cached, clear_cache
from strategies.predicted_funding import predicted_funding_annualized

__all__ = [
    "HOURS_PER_YEAR",
    "MAX_FUNDING_INTERVAL_HOURS",
    "trailing_funding_annualized",
    "basis",
    "rolling_zscore",
    "rolling_mean",
    "hysteresis_nb",
    "hysteresis",
    "cached",
    "clear_cache",
    "funding_signal",
]

#: The longest funding interval on Binance perpetuals (hours): settlement windows span at most this.
MAX_FUNDING_INTERVAL_HOURS = 8.0
#: The names :func:`funding_signal` knows.
FUNDING_SIGNALS = ("trailing", "predicted")


# --------------------------------------------------------------------------- funding
@njit(cache=True)
def trailing_settlement_mean_nb(rate, count, interval, window, min_settlements, default_interval):
    """Mean annualized rate of the last ``window`` settlements known at each bar close.

    A bar with ``c`` settlements contributes ``c`` values ``rate / c * 8760 / interval``
    (its sum split evenly; the interval is the bar's last settlement's). NaN until
    ``min_settlements`` settlements have been seen. The window is summed oldest first, so a
    value depends only on the settlements in it, not on where the data starts.
    """
    T, N = rate.shape
    out = np.full((T, N), np.nan)
    buf = np.zeros(window)
    for j in range(N):
        pos = 0
        filled = 0
        for i in range(T):
            c = count[i, j]
            r = rate[i, j]
            if c > 0 and np.isfinite(r):
                h = interval[i, j]
                if not (h > 0.0):
                    h = default_interval
                v = r / c * (8760.0 / h)
                for _ in range(c):
                    buf[pos] = v
                    pos = (pos + 1) % window
                    if filled < window:
                        filled += 1
            if filled >= min_settlements and filled > 0:
                # oldest to newest: the sum of the same settlements is the same number wherever
                # the data starts (a ring's order would depend on it: time chunks, truncations)
                s = 0.0
                for q in range(filled):
                    s += buf[(pos - filled + q) % window]
                out[i, j] = s / filled
    return out


def trailing_funding_annualized(
    market: Market, window_settlements: int = 9, min_settlements: int | None = None, default_interval_hours: float = 8.0
) -> np.ndarray:
    """Trailing annualized funding over the last ``window_settlements`` settlements.

    Parameters
    ----------
    market : Market
    window_settlements : int
        Number of past settlements averaged (per symbol; 9 = three days of 8h funding).
    min_settlements : int, optional
        Settlements needed before a value is produced (default: the full window); NaN before.
    default_interval_hours : float
        Interval assumed where a settlement's interval is unknown (NaN).

    Returns
    -------
    ndarray (T, N)
        Mean over the window of ``rate_k * 365 * 24 / interval_hours_k`` (fraction per
        365-day year; each settlement annualized with its own interval, so interval changes
        are respected). Row ``i`` uses settlements up to and including bar ``i``'s close.
    """
    w = int(window_settlements)
    m = w if min_settlements is None else int(min_settlements)
    if w < 1 or not 1 <= m <= w:
        raise ConfigError(f"window_settlements must be >= 1 and 1 <= min_settlements <= window; got {w}, {m}")
    return cached(
        market,
        ("trailing_funding", w, m, float(default_interval_hours)),
        lambda: trailing_settlement_mean_nb(
            market.funding_rate,
            market.funding_count,
            market.funding_interval_hours,
            w,
            m,
            float(default_interval_hours),
        ),
    )


def funding_signal(market: Market, signal: str, window_settlements: int) -> np.ndarray:
    """Annualized funding signal by name: ``"trailing"`` (mean of the last
    ``window_settlements`` settlements) or ``"predicted"`` (the next settlement's rate
    predicted by :func:`strategies.predicted_funding.predicted_funding_annualized` with its
    defaults). Fraction per 365-day year."""
    check_choice("signal", signal, FUNDING_SIGNALS)
    if signal == "trailing":
        return trailing_funding_annualized(market, window_settlements)
    return predicted_funding_annualized(market)


# --------------------------------------------------------------------------- basis
def basis(market: Market) -> np.ndarray:
    """Perp close / spot close - 1 (fraction), NaN on invalid bars."""

    def compute():
        with np.errstate(divide="ignore", invalid="ignore"):
            b = market.perp_close / market.spot_close - 1.0
        b[~market.valid] = np.nan
        return b

    return cached(market, ("basis",), compute)


def rolling_mean(x: np.ndarray, window: int, min_periods: int | None = None) -> np.ndarray:
    """Trailing mean over ``window`` bars (current bar included), ignoring NaNs."""
    mp = max(1, window // 2) if min_periods is None else min_periods
    return pd.DataFrame(x).rolling(window, min_periods=mp).mean().to_numpy()


def rolling_zscore(x: np.ndarray, window: int, min_periods: int | None = None) -> np.ndarray:
    """Trailing z-score ``(x - mean) / std`` over ``window`` bars (current bar included).

    NaNs are skipped; the result is NaN until ``min_periods`` (default ``window // 2``)
    finite values are in the window, and where the standard deviation is zero.
    """
    if window < 2:
        raise ConfigError(f"z-score window must be >= 2 bars, got {window}")
    mp = max(2, window // 2) if min_periods is None else max(2, min_periods)
    r = pd.DataFrame(x).rolling(window, min_periods=mp)
    mean, std = r.mean().to_numpy(), r.std().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(x, dtype=np.float64) - mean) / std
    z[~(std > 1e-15)] = np.nan
    return z


def basis_zscore(market: Market, window_bars: int) -> np.ndarray:
    """Rolling z-score of :func:`basis` (cached per market and window)."""
    return cached(market, ("basis_z", int(window_bars)), lambda: rolling_zscore(basis(market), int(window_bars)))


# --------------------------------------------------------------------------- state machine
@njit(cache=True)
def hysteresis_nb(
    score_long, score_short, enter_long, exit_long, enter_short, exit_short, allow_long, allow_short, min_hold_bars
):
    """Three-state (+1 / 0 / -1) hysteresis over ``(T, C)`` scores.

    From flat: go +1 when ``score_long > enter_long[c]`` and ``allow_long``; else -1 when
    ``score_short < enter_short[c]`` and ``allow_short``. From +1: exit when ``score_long <
    exit_long[c]`` once ``min_hold_bars[c]`` bars have passed since entry; from -1 likewise
    when ``score_short > exit_short[c]``. An exit may flip straight into the other side on the
    same bar. NaN scores compare false: they never enter or exit (the state is kept).
    Threshold arrays are (C,); ``score_long``/``score_short`` may be the same array.
    """
    T, C = score_long.shape
    out = np.zeros((T, C))
    for c in range(C):
        state = 0
        held = 0
        for i in range(T):
            sl = score_long[i, c]
            ss = score_short[i, c]
            held += 1
            if state == 1 and held >= min_hold_bars[c] and sl < exit_long[c]:
                state = 0
            elif state == -1 and held >= min_hold_bars[c] and ss > exit_short[c]:
                state = 0
            if state == 0:
                if sl > enter_long[c] and allow_long[i, c]:
                    state = 1
                    held = 0
                elif ss < enter_short[c] and allow_short[i, c]:
                    state = -1
                    held = 0
            out[i, c] = state
    return out


@njit(cache=True)
def best_candidate_nb(scores, entry, exit_, switch, min_hold):
    """The candidate held per bar and column, (T, N) int64 (-1: none), from ``scores`` (K, T, N)
    (e.g. after-fee annualized funding of K venues, or of K venue pairs and directions; NaN:
    unknown). Flat: enter the best candidate when its score exceeds ``entry``. Holding candidate
    ``k`` for at least ``min_hold`` bars: leave when its score falls below ``exit_`` (then enter
    the best one on the same bar if it is above ``entry``), else move to the best candidate when
    that one's score exceeds ``k``'s by more than ``switch`` (or ``k``'s is unknown). A NaN
    score never enters; an unknown score of the held candidate keeps it while nothing else is
    known. (``hysteresis_nb`` is the one-candidate-per-side case.)"""
    V, T, N = scores.shape
    out = np.full((T, N), -1, np.int64)
    for n in range(N):
        held = -1
        age = 0
        for i in range(T):
            best = -1
            top = -np.inf
            for v in range(V):
                x = scores[v, i, n]
                if x == x and x > top:
                    top = x
                    best = v
            age += 1
            if held >= 0 and age >= min_hold:
                mine = scores[held, i, n]
                if mine == mine and mine < exit_:
                    held = -1
                elif best >= 0 and best != held and (mine != mine or top - mine > switch):
                    held = best
                    age = 0
            if held < 0 and best >= 0 and top > entry:
                held = best
                age = 0
            out[i, n] = held
    return out


def hysteresis(
    score: np.ndarray,
    *,
    enter_long: float = np.inf,
    exit_long: float = -np.inf,
    enter_short: float = -np.inf,
    exit_short: float = np.inf,
    score_short: np.ndarray | None = None,
    allow_long: np.ndarray | None = None,
    allow_short: np.ndarray | None = None,
    min_hold_bars: int = 0,
) -> np.ndarray:
    """Wrapper of :func:`hysteresis_nb` with scalar thresholds; returns states (T, C).

    ``score`` drives the long (+1, carry) side and, unless ``score_short`` is given, the short
    side too. Defaults disable a side. ``held`` counts bars since entry (entry bar = 0), so
    ``min_hold_bars = h`` keeps a position at least ``h`` bars before an exit is honoured.
    """
    score = np.ascontiguousarray(score, dtype=np.float64)
    short = score if score_short is None else np.ascontiguousarray(score_short, dtype=np.float64)
    T, C = score.shape
    full = lambda v: np.full(C, float(v))  # noqa: E731

    def mask(a):
        if a is None:
            return np.ones((T, C), np.bool_)
        return np.ascontiguousarray(np.broadcast_to(np.asarray(a, np.bool_), (T, C)))

    return hysteresis_nb(
        score,
        short,
        full(enter_long),
        full(exit_long),
        full(enter_short),
        full(exit_short),
        mask(allow_long),
        mask(allow_short),
        np.full(C, int(min_hold_bars), np.int64),
    )

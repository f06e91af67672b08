"""Numba helpers: flexible parameter indexing, maintenance margin brackets, liquidation prices.

Tier arrays are ``(N, K)`` per symbol (see :class:`backtest.tiers.TierTable` and
:class:`backtest.kernels.layout.Tiers`): bracket ``k`` of symbol ``n`` covers notionals
``lo[n, k] <= notional < hi[n, k]`` (quote) with maintenance margin
``notional * mmr[n, k] - cum[n, k]`` (quote). The one home of the bracket search, the
maintenance margin, the isolated liquidation price and the liquidation pre-check level.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def flex_nb(a, i, c):
    """Element ``(i, c)`` of a flexible 2-D parameter of shape (1, 1), (1, C), (T, 1) or (T, C).

    Indices may be signed or unsigned (no conditional expression mixes their types)."""
    return a[i * (a.shape[0] > 1), c * (a.shape[1] > 1)]


@njit(cache=True)
def bracket_nb(hi, n_tiers, sym, notional):
    """Index of the bracket holding ``notional`` (quote); the last bracket beyond the table."""
    nt = n_tiers[sym]
    for k in range(nt):
        if notional < hi[sym, k]:
            return k
    return nt - 1


@njit(cache=True)
def maint_margin_nb(hi, mmr, cum, n_tiers, sym, notional):
    """Maintenance margin (quote) of a position of ``notional = |q| * mark`` (quote)."""
    if notional <= 0.0:
        return 0.0
    k = bracket_nb(hi, n_tiers, sym, notional)
    return notional * mmr[sym, k] - cum[sym, k]


@njit(cache=True)
def isolated_liq_price_nb(lo, hi, mmr, cum, n_tiers, sym, wallet, q, cost):
    """Liquidation price of one isolated position (README: "Margin and liquidation").

    Solves ``wallet + q * LP - cost = |q| * LP * mmr - cum`` bracket by bracket, where
    ``cost = q * entry_price`` (quote), and returns the root whose notional ``|q| * LP`` lies
    in its own bracket; NaN when there is none (e.g. the margin covers any price).
    """
    aq = abs(q)
    nt = n_tiers[sym]
    for k in range(nt):
        den = q - aq * mmr[sym, k]
        if den == 0.0:
            continue
        lp = (cost - wallet - cum[sym, k]) / den
        if lp <= 0.0:
            continue
        n = aq * lp
        if n >= lo[sym, k] and (n < hi[sym, k] or k == nt - 1):
            return lp
    return np.nan


@njit(cache=True, inline="always")
def bracket_cached_nb(hi, n_tiers, sym, notional, k):
    """:func:`bracket_nb` with a guess ``k`` (the last bracket found): exact for ascending ``hi``.

    The guess is accepted only when ``hi[k-1] <= notional < hi[k]`` (or ``k`` is the last
    bracket and ``notional >= hi[k-1]``), which is the bracket the linear search returns;
    otherwise (including NaN notionals) the linear search runs.
    """
    nt = n_tiers[sym]
    if k >= 0 and k < nt and (k == 0 or notional >= hi[sym, k - 1]) and (notional < hi[sym, k] or k == nt - 1):
        return k
    return bracket_nb(hi, n_tiers, sym, notional)


@njit(cache=True, inline="always")
def bracket_hint_nb(hi, n_tiers, sym, notional, hint, hi_sorted):
    """(bracket of ``notional``, the next search hint): with ascending bounds the bracket found
    is the hint, else the hint is unused and kept."""
    if hi_sorted:
        k = bracket_cached_nb(hi, n_tiers, sym, notional, hint)
        return k, k
    return bracket_nb(hi, n_tiers, sym, notional), hint


#: Points tried on a bar's path by :func:`path_step_nb`: the open, then 100 halvings.
PATH_STEPS = 101


@njit(cache=True, inline="always")
def path_point_nb(it, lo, hi):
    """The point (0: the mark open, 1: the adverse extremes) step ``it`` of a cross account's
    liquidation search tries: the open first, then the middle of ``[lo, hi]``."""
    return 0.0 if it == 0 else 0.5 * (lo + hi)


@njit(cache=True, inline="always")
def path_step_nb(it, lam, met, lo, hi):
    """The search's bracket ``(lo, hi, done)`` after trying ``lam`` (``met``: the margin balance
    meets the maintenance margin there): the first point of the path where it is met is ``hi``
    (the open on a gap: done at once)."""
    if met:
        return lo, lam, it == 0
    if it > 0:
        return lam, hi, False
    return lo, hi, False


@njit(cache=True)
def tier_bounds_nb(mmr, cum, n_tiers):
    """Per symbol, the largest maintenance rate and the smallest ``cum`` (both against 0): the
    cheap bound ``notional * mmr_max - cum_min`` of any bracket's maintenance margin."""
    N = n_tiers.shape[0]
    mmr_max = np.zeros(N)
    cum_min = np.zeros(N)
    for n in range(N):
        for k in range(n_tiers[n]):
            mmr_max[n] = max(mmr_max[n], mmr[n, k])
            cum_min[n] = min(cum_min[n], cum[n, k])
    return mmr_max, cum_min


@njit(cache=True, inline="always")
def liq_level_slope_nb(qc, mmr_max):
    """How :func:`liq_level_nb`'s level of a position of ``qc`` perp coins moves per unit of its
    wallet (``d level / d fwc``, the tolerance held): ``1 / d`` for a short, ``-1 / d`` for a
    long (``d`` as there); 0.0 flat or where the level is NaN.

    A funding settlement of ``amt`` moves the level by ``amt * slope``: one multiply-add per
    settlement instead of the level's two divisions (an hourly venue settles every bar). The
    tolerance this holds still moves by at most ``1e-9 * |amt| * (1 + k) / d`` (``k`` <= (1 +
    mmr) / (1 - mmr)), a small part of the tolerance itself while a kernel recomputes the level
    from the state at every order, liquidation and chunk of bars; the pre-check stays on the
    safe side, and the full check alone decides."""
    d = qc - mmr_max * abs(qc)  # (-|qc| (1 + mmr) short, qc (1 - mmr) long)
    if qc == 0.0 or (qc > 0.0 and d <= 0.0):
        return 0.0
    return -1.0 / d


@njit(cache=True, inline="always")
def liq_level_and_slope_nb(qc, fwc, costc, mmr_max, cum_min):
    """:func:`liq_level_nb` and :func:`liq_level_slope_nb` together: a kernel that moves the
    level with funding recomputes both wherever the position or wallet changes otherwise (a
    stale slope after a fill would move the level wrongly)."""
    return liq_level_nb(qc, fwc, costc, mmr_max, cum_min), liq_level_slope_nb(qc, mmr_max)


@njit(cache=True, inline="always")
def liq_level_nb(qc, fwc, costc, mmr_max, cum_min):
    """Liquidation pre-check level (mark) of an isolated position ``qc`` with wallet ``fwc``.

    The full check runs only when the adverse mark extreme ``adv`` may satisfy
    ``fwc + qc * adv - costc <= |qc| * adv * mmr_max - cum_min`` (the cheap bound, itself
    necessary for a liquidation). That inequality is linear in ``adv``: a short may be liquidated
    only at ``adv >= level`` and a long only at ``adv <= level``, where ``level`` here is moved
    to the safe side by far more than any rounding of the check. A bar whose extreme stays
    strictly inside (short: ``adv < level``; long: ``adv > level``) cannot liquidate; NaN means
    "always run the full check".
    """
    if qc == 0.0:
        return np.nan
    a = fwc - costc + cum_min
    aq = abs(qc)
    if qc < 0.0:
        d = aq * (1.0 + mmr_max)
    else:
        d = aq * (1.0 - mmr_max)
        if d <= 0.0:
            return np.nan
    tol = 1e-9 * (abs(fwc) + abs(costc) + abs(cum_min) + abs(a) * aq * (1.0 + mmr_max) / d) + 1e-300
    if qc < 0.0:
        return (a - tol) / d  # candidate when a - d * adv <= 0
    return (tol - a) / d  # candidate when a + d * adv <= 0

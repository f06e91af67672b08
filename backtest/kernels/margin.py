"""Numba helpers: flexible parameter indexing, maintenance margin brackets, liquidation prices.

Tier arrays are ``(N, K)`` per symbol (see :class:`backtest.tiers.TierTable`): bracket ``k`` of
symbol ``n`` covers notionals ``lo[n, k] <= notional < hi[n, k]`` (quote) with maintenance
margin ``notional * mmr[n, k] - cum[n, k]`` (quote).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, inline="always")
def flex_nb(a, i, c):
    """Element ``(i, c)`` of a flexible 2-D parameter of shape (1, 1), (1, C), (T, 1) or (T, C)."""
    r = i if a.shape[0] > 1 else 0
    k = c if a.shape[1] > 1 else 0
    return a[r, k]


@njit(cache=True)
def bracket_nb(lo, hi, n_tiers, sym, notional):
    """Index of the bracket holding ``notional`` (quote); the last bracket beyond the table."""
    nt = n_tiers[sym]
    for k in range(nt):
        if notional < hi[sym, k]:
            return k
    return nt - 1


@njit(cache=True)
def maint_margin_nb(lo, hi, mmr, cum, n_tiers, sym, notional):
    """Maintenance margin (quote) of a position of ``notional = |q| * mark`` (quote)."""
    if notional <= 0.0:
        return 0.0
    k = bracket_nb(lo, hi, n_tiers, sym, notional)
    return notional * mmr[sym, k] - cum[sym, k]


@njit(cache=True)
def maint_rate_nb(lo, hi, mmr, n_tiers, sym, notional):
    """Maintenance margin rate (fraction) of the bracket of ``notional``."""
    return mmr[sym, bracket_nb(lo, hi, n_tiers, sym, notional)]


@njit(cache=True)
def isolated_liq_price_nb(lo, hi, mmr, cum, n_tiers, sym, wallet, q, cost):
    """Liquidation price of one isolated position (SPEC 6).

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
    return bracket_nb(hi, hi, n_tiers, sym, notional)

"""``rotation``: hold the top-k symbols by expected funding carry, rebalanced periodically."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import njit

from data.market import Market
from strategies.base import StrategyParams, WeightedTargets, bar_hours, param
from strategies.signals import funding_signal

__all__ = ["RotationParams", "rotation", "rotation_nb"]

ANN = "annualized fraction (0.10 = 10%/yr)"


@dataclass(frozen=True, kw_only=True)
class RotationParams(StrategyParams):
    top_k: int = param(3, "symbols", ge=1, le=10_000, help="number of symbols held")
    rebalance_hours: float = param(24.0, "hours", gt=0.0, help="rebalance when a new period of this length starts")
    buffer: int = param(
        1, "ranks", ge=0, le=10_000, help="a held symbol stays while its rank is < top_k + buffer (turnover control)"
    )
    min_annualized: float = param(0.05, ANN, ge=-5.0, le=5.0, help="minimum net expected carry to hold a symbol")
    borrow_annual_rate: float = param(
        0.05,
        "annualized fraction of the borrowed spot value",
        ge=0.0,
        le=5.0,
        help="subtracted from the reverse side's expected carry",
    )
    allow_reverse: bool = param(True, "", help="hold negative-funding symbols as reverse carry")
    weighting: str = param(
        "equal", "", choices=("equal", "strength"), help="capital split: equal, or proportional to net expected carry"
    )
    window_settlements: int = param(9, "settlements", ge=1, le=10_000)
    signal: str = param("trailing", "", choices=("trailing", "predicted"))


@njit(cache=True)
def rotation_nb(strength, direction, eligible, rebalance, top_k, buffer, strength_weights):
    """Cross-sectional selection over (T, N); returns (targets, weights), both (T, N).

    At each rebalance bar, held symbols whose direction is unchanged and whose rank (by
    ``strength``, descending, among eligible symbols) is below ``top_k + buffer`` stay; free
    slots are filled best-first. Between rebalances the previous row is repeated.
    """
    T, N = strength.shape
    targets = np.zeros((T, N))
    weights = np.ones((T, N))
    held = np.zeros(N)  # current direction per symbol
    w = np.ones(N)
    for i in range(T):
        if rebalance[i]:
            s = np.where(eligible[i], strength[i], -np.inf)
            order = np.argsort(-s, kind="mergesort")
            rank = np.empty(N, np.int64)
            for r in range(N):
                rank[order[r]] = r
            new = np.zeros(N)
            n_sel = 0
            for n in range(N):
                if held[n] != 0 and eligible[i, n] and direction[i, n] == held[n] and rank[n] < top_k + buffer:
                    new[n] = held[n]
                    n_sel += 1
            # if the buffer kept more than top_k, drop the worst-ranked incumbents
            while n_sel > top_k:
                worst = -1
                for n in range(N):
                    if new[n] != 0 and (worst < 0 or rank[n] > rank[worst]):
                        worst = n
                new[worst] = 0
                n_sel -= 1
            for r in range(N):
                if n_sel >= top_k:
                    break
                n = order[r]
                if eligible[i, n] and new[n] == 0:
                    new[n] = direction[i, n]
                    n_sel += 1
            held = new
            for n in range(N):
                if n_sel == 0:
                    w[n] = 1.0
                elif held[n] == 0:
                    w[n] = 0.0
                else:
                    w[n] = max(strength[i, n], 1e-12) if strength_weights else 1.0
        for n in range(N):
            targets[i, n] = held[n]
            weights[i, n] = w[n]
    return targets, weights


def rotation(market: Market, params: RotationParams) -> WeightedTargets:
    """Each rebalance, hold the ``top_k`` symbols with the best expected funding carry.

    Idea
        Funding differs a lot across symbols and persists for days. Rank symbols by their net
        expected annualized carry: ``f`` for a positive signal (carry), ``-f - borrow`` for a
        negative one (reverse carry, if allowed), where ``f`` is the trailing (or predicted)
        annualized funding. Hold the best ``top_k`` whose carry exceeds ``min_annualized``,
        direction by sign. Rebalance when a new ``rebalance_hours`` period starts (by the bar's
        close time, UTC). Turnover control: a held symbol keeps its slot while its rank is
        within ``top_k + buffer`` and its direction is unchanged.

    Parameters
    ----------
    top_k : int
        Symbols held.
    rebalance_hours : float
        Rebalance period, hours (24 = daily, at 00:00 UTC closes).
    buffer : int
        Extra ranks a held symbol may drop before it is replaced.
    min_annualized : float
        Minimum net expected carry to hold, annualized fraction.
    borrow_annual_rate : float
        Expected borrow cost of reverse carries, annualized fraction.
    allow_reverse : bool
    weighting : {"equal", "strength"}
        Capital split among held symbols (returned as ``Targets.weights``): equal, or
        proportional to net expected carry.
    window_settlements : int
    signal : {"trailing", "predicted"}

    Returns
    -------
    WeightedTargets
        Targets +1 / -1 / 0 and weights (T, N); unselected symbols get weight 0 (all ones when
        nothing is held). A symbol is eligible only on valid bars with a finite signal; held
        symbols that turn invalid are dropped at the next rebalance. Targets are NaN (keep) on
        invalid bars after a symbol's first valid bar.

    Risks
        Concentration in a few (often illiquid, volatile) symbols with high funding; funding of
        the top symbols mean-reverts fast; rebalancing costs fees on both legs; small caps have
        higher funding caps and liquidation risk.
    """
    f = funding_signal(market, params.signal, params.window_settlements)
    direction = np.where(f > 0, 1.0, -1.0)
    strength = np.where(f > 0, f, -f - params.borrow_annual_rate)
    if not params.allow_reverse:
        strength = np.where(f > 0, strength, -np.inf)
    eligible = market.valid & np.isfinite(f) & (strength > params.min_annualized)
    hours = bar_hours(market)
    close_h = np.asarray((market.index - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(hours=1), dtype=np.float64) + hours
    period = np.floor(close_h / params.rebalance_hours + 1e-9)
    rebalance = np.ones(market.n_bars, np.bool_)
    rebalance[1:] = period[1:] != period[:-1]
    targets, weights = rotation_nb(
        np.ascontiguousarray(np.nan_to_num(strength, nan=-np.inf, posinf=1e9)),
        np.ascontiguousarray(direction),
        np.ascontiguousarray(eligible),
        rebalance,
        params.top_k,
        params.buffer,
        params.weighting == "strength",
    )
    seen = np.logical_or.accumulate(market.valid, axis=0)
    targets[~market.valid & seen] = np.nan
    return WeightedTargets(targets, np.maximum(weights, 0.0))

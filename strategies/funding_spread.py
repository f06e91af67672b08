"""``funding_spread``: long the perp where funding is low, short it where it is high (across venues).

A strategy of several venues' perps, not of one market: ``funding_spread_pairs(perps, params,
fees) -> {(i, k): targets}`` holds, per coin, the venue pair with the widest spread after fees,
one pair at a time; ``funding_spread(leg_a, leg_b, params, fee_a, fee_b) -> targets`` is its
one-pair case. Targets are for :func:`backtest.spread.run_spread` (+1: long leg A, short leg B;
-1 the mirror; 0 flat; NaN keep).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data.errors import ConfigError
from data.market import Market
from strategies.base import StrategyParams, check_entry_exit, hours_to_bars, param
from strategies.signals import best_candidate_nb

__all__ = ["FundingSpreadParams", "funding_spread", "funding_spread_pairs", "trailing_funding_per_year"]

ANN = "annualized fraction (0.05 = 5%/yr)"
HOURS_PER_YEAR = 365.0 * 24.0


@dataclass(frozen=True, kw_only=True)
class FundingSpreadParams(StrategyParams):
    entry_annualized: float = param(0.05, ANN, ge=0.0, le=5.0, help="enter above this spread, after fees")
    exit_annualized: float = param(0.0, ANN, ge=-5.0, le=5.0, help="exit below this spread, after fees")
    window_hours: float = param(72.0, "hours", gt=0.0, le=24.0 * 365, help="trailing window of the spread")
    min_hold_hours: float = param(72.0, "hours", ge=0.0, help="minimum time in a trade before an exit")
    fee_horizon_hours: float = param(
        720.0, "hours", gt=0.0, help="the round trip's fees are spread over this expected holding time"
    )
    switch_annualized: float = param(
        0.05, ANN, ge=0.0, le=5.0, help="move to another venue pair when its spread is this much wider, after fees"
    )
    exposure: float = param(1.0, "fraction of the column's capital (0..1)", gt=0.0, le=1.0)

    def check(self) -> None:
        super().check()
        check_entry_exit(self)


def trailing_funding_per_year(market: Market, window_hours: float) -> np.ndarray:
    """Funding settled over the last ``window_hours`` up to each bar's close, annualized: the sum
    of the rates (fractions of notional) of the window's settlements x ``8760 / window_hours``,
    (T, N). Venues settling every 8 h and every hour compare on one scale. NaN until a whole
    window of bars is tradable (a window reaching outside the symbol's known funding is no
    measure of it)."""
    step = max(1, int(round(window_hours / (market.index[1] - market.index[0]).total_seconds() * 3600)))
    rate = np.where(market.tradable, market.funding_rate, np.nan)
    csum = np.nancumsum(rate, axis=0)
    known = np.cumsum(market.tradable, axis=0)
    out = np.full(rate.shape, np.nan)
    if len(rate) >= step:
        total = csum[step - 1 :].copy()
        total[1:] -= csum[:-step]
        full = known[step - 1 :].copy()
        full[1:] -= known[:-step]
        out[step - 1 :] = np.where(full == step, total * (HOURS_PER_YEAR / window_hours), np.nan)
    return out


def funding_spread_pairs(
    perps: Sequence[Market], params: FundingSpreadParams, fees: Sequence[float]
) -> dict[tuple[int, int], np.ndarray]:
    """Per coin, trade the widest funding spread among several venues' perps, after fees.

    Idea
        The same coin's perp pays different funding on different venues, often for weeks. For
        each pair of venues ``(i, k)`` (``i < k``), ``spread = trailing funding(k) - trailing
        funding(i)`` (annualized over ``window_hours``, :func:`trailing_funding_per_year`): long
        ``i`` and short ``k`` (+1) collects it when positive, the mirror (-1) when negative. The
        round trip costs ``2 * (fee_i + fee_k)`` of notional; spread over ``fee_horizon_hours`` it
        is a hurdle of ``2 * (fee_i + fee_k) * 8760 / fee_horizon_hours`` a year. Each pair and
        direction is a candidate scored ``+-spread - hurdle``; per coin the widest one above
        ``entry_annualized`` is entered; held for ``min_hold_hours``, it is left below
        ``exit_annualized`` or exchanged for another pair paying ``switch_annualized`` more
        (:func:`strategies.signals.best_candidate_nb`: one pair per coin at a time).

    Parameters
    ----------
    perps : sequence of Market
        The venues' perp markets: one bar index, the same coins in the same order.
    fees : sequence of float
        Each venue's perp fee (fraction of notional), in ``perps``' order.

    Returns
    -------
    dict
        ``{(i, k): ndarray (T, N)}`` per pair ``i < k``: ``exposure`` (long ``i``, short ``k``),
        ``-exposure`` or 0; NaN (keep) on bars where a leg has no price.

    Risks
        Trailing spreads lag their turns (a regime that flips is left late); the legs' basis
        moves against the trade on the way (the two perps' prices differ by their premiums); a
        leg can be liquidated while collateral is in transfer; USDC and USDT taken 1:1; a
        switch of pair closes the leg that changes venue and moves its collateral
        (:func:`venue_schedule` keeps the other leg's venue), unhedged until it arrives.
    """
    if len(perps) != len(fees) or len(perps) < 2:
        raise ConfigError(
            f"funding_spread needs two venues or more and one fee each: {len(perps)} venues, {len(fees)} fees"
        )
    shape = perps[0].shape
    if any(m.shape != shape or not m.index.equals(perps[0].index) for m in perps):
        raise ConfigError("funding_spread: the venues' markets must share one bar index and the same coins")
    trailing = [trailing_funding_per_year(m, params.window_hours) for m in perps]
    pairs = [(i, k) for i in range(len(perps)) for k in range(i + 1, len(perps))]
    scores = []
    for i, k in pairs:
        spread = trailing[k] - trailing[i]
        hurdle = 2.0 * (fees[i] + fees[k]) * HOURS_PER_YEAR / params.fee_horizon_hours
        scores += [spread - hurdle, -spread - hurdle]  # +1: long i, short k; -1: the mirror
    held = best_candidate_nb(
        np.stack(scores),
        params.entry_annualized,
        params.exit_annualized,
        params.switch_annualized,
        hours_to_bars(perps[0], params.min_hold_hours),
    )
    out = {}
    for p, (i, k) in enumerate(pairs):
        x = np.where(held == 2 * p, params.exposure, np.where(held == 2 * p + 1, -params.exposure, 0.0))
        x[~(perps[i].valid & perps[k].valid) & (x != 0.0)] = np.nan  # a leg without a price: keep
        out[(i, k)] = x
    return out


def venue_schedule(
    picked: dict[tuple[int, int], np.ndarray], orient: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One pair of venues held at a time (:func:`funding_spread_pairs`' ``{(i, k): x}``) as the
    targets and venues of one hedge per coin, whose legs switch venues
    (:func:`backtest.spread.run_spread`'s ``venues``).

    Returns ``(x, venue_a, venue_b)``, (T, N) each: the target (NaN where a pair's is: keep),
    and per leg the venue held (NaN where flat or kept: stay). With ``orient`` a new pair keeps
    the venue it shares with the one before in the same leg (``(0, 1)`` then ``(1, 2)``: leg A
    stays on venue 1, leg B moves from 0 to 2, the target's sign follows), so a switch moves
    one leg, not both; without it leg A is ``i`` and leg B ``k`` (a spot leg A: one venue).
    """
    first = next(iter(picked.values()))
    x: np.ndarray = np.zeros(first.shape)
    pa, pb = np.full(first.shape, np.nan), np.full(first.shape, np.nan)
    for (i, k), xp in picked.items():
        on = np.isfinite(xp) & (xp != 0.0)
        x[on], pa[on], pb[on] = xp[on], i, k
    for xp in picked.values():
        x[np.isnan(xp)] = np.nan
    va, vb = np.full(x.shape, np.nan), np.full(x.shape, np.nan)
    for n in range(x.shape[1]):
        rows = np.flatnonzero(np.isfinite(x[:, n]) & (x[:, n] != 0.0))
        if not rows.size:
            continue
        code = pa[rows, n] * 1e6 + pb[rows, n]
        starts = np.flatnonzero(np.r_[True, code[1:] != code[:-1]])
        held: tuple[float, float] | None = None
        for s, e in zip(starts, [*starts[1:], rows.size]):
            seg = rows[s:e]
            i, k = pa[seg[0], n], pb[seg[0], n]
            a, b = i, k
            if orient and held is not None:
                if held[0] in (i, k):
                    a, b = held[0], (k if held[0] == i else i)
                elif held[1] in (i, k):
                    a, b = (k if held[1] == i else i), held[1]
            if a != i:  # long i short k is short a (= k) and long b (= i)
                x[seg, n] = -x[seg, n]
            va[seg, n], vb[seg, n] = a, b
            held = (a, b)
    return x, va, vb


def funding_spread(leg_a: Market, leg_b: Market, params: FundingSpreadParams, fee_a: float, fee_b: float) -> np.ndarray:
    """:func:`funding_spread_pairs` for one pair of venues: +``exposure`` long A and short B when
    B pays more than A by more than the fee hurdle and ``entry_annualized``, the mirror when A
    pays more, 0 flat, NaN (keep) where a leg has no price."""
    if leg_a.shape != leg_b.shape:
        raise ConfigError(f"the legs' markets differ in shape: {leg_a.shape} vs {leg_b.shape}")
    return funding_spread_pairs([leg_a, leg_b], params, [fee_a, fee_b])[(0, 1)]

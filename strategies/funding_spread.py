"""``funding_spread``: long the perp where funding is low, short it where it is high (two venues).

A strategy of a venue pair, not of one market: ``funding_spread(leg_a, leg_b, params, fee_a,
fee_b) -> targets`` for :func:`backtest.spread.run_spread` (+1: long leg A, short leg B; -1 the
mirror; 0 flat; NaN keep).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.errors import ConfigError
from data.market import Market
from strategies.base import StrategyParams, check_entry_exit, hours_to_bars, param
from strategies.signals import hysteresis

__all__ = ["FundingSpreadParams", "funding_spread", "trailing_funding_per_year"]

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


def funding_spread(leg_a: Market, leg_b: Market, params: FundingSpreadParams, fee_a: float, fee_b: float) -> np.ndarray:
    """Trade the funding spread between two venues when it beats both venues' fees.

    Idea
        The same coin's perp pays different funding on different venues, often for weeks.
        ``spread = trailing funding(B) - trailing funding(A)`` (annualized,
        :func:`trailing_funding_per_year` over ``window_hours``): long A and short B (+1) collects
        it when positive, the mirror (-1) when negative. The round trip costs
        ``2 * (fee_a + fee_b)`` of notional; spread over ``fee_horizon_hours`` it is a hurdle of
        ``2 * (fee_a + fee_b) * 8760 / fee_horizon_hours`` a year. Enter +1 when
        ``spread - hurdle > entry_annualized``, -1 when ``-spread - hurdle > entry_annualized``;
        leave when the same after-fee spread falls below ``exit_annualized`` once
        ``min_hold_hours`` have passed (hysteresis: churn costs four fees).

    Returns
    -------
    ndarray (T, N)
        ``exposure``, ``-exposure`` or 0; NaN (keep) on bars where a leg has no price; 0 before a
        whole window is known.

    Risks
        Trailing spreads lag their turns (a regime that flips is left late); the legs' basis
        moves against the trade on the way (the two perps' prices differ by their premiums); a
        leg can be liquidated while collateral is in transfer; USDC and USDT taken 1:1.
    """
    if leg_a.shape != leg_b.shape:
        raise ConfigError(f"the legs' markets differ in shape: {leg_a.shape} vs {leg_b.shape}")
    spread = trailing_funding_per_year(leg_b, params.window_hours) - trailing_funding_per_year(
        leg_a, params.window_hours
    )
    hurdle = 2.0 * (fee_a + fee_b) * HOURS_PER_YEAR / params.fee_horizon_hours
    # the short side's after-fee spread is -spread - hurdle: above the entry level when
    # spread + hurdle < -entry, below the exit level when spread + hurdle > -exit
    state = hysteresis(
        spread - hurdle,
        enter_long=params.entry_annualized,
        exit_long=params.exit_annualized,
        score_short=spread + hurdle,
        enter_short=-params.entry_annualized,
        exit_short=-params.exit_annualized,
        min_hold_bars=hours_to_bars(leg_a, params.min_hold_hours),
    )
    out = state * params.exposure
    out[~np.isfinite(spread)] = 0.0
    out[~(leg_a.valid & leg_b.valid) & np.isfinite(spread)] = np.nan
    return out

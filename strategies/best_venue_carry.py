"""``best_venue_carry``: spot on one venue, the short perp on whichever venue pays the carry most.

A strategy of several venues' perps for one spot venue: ``best_venue_carry(perps, params, fees)
-> [targets per perp venue]``, each ``(T, N)`` for :func:`backtest.spread.run_spread` with
``SpreadConfig(leg_a="spot")`` (+``exposure``: long the spot, short that venue's perp; 0 flat).
At most one venue holds a coin's carry at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from data.errors import ConfigError
from data.market import Market
from strategies.base import StrategyParams, check_entry_exit, hours_to_bars, param
from strategies.funding_spread import HOURS_PER_YEAR, trailing_funding_per_year
from strategies.signals import best_candidate_nb

__all__ = ["BestVenueCarryParams", "best_venue_carry"]

#: (the state machine: :func:`strategies.signals.best_candidate_nb`)
best_venue_nb = best_candidate_nb

ANN = "annualized fraction (0.05 = 5%/yr)"


@dataclass(frozen=True, kw_only=True)
class BestVenueCarryParams(StrategyParams):
    entry_annualized: float = param(0.05, ANN, ge=-5.0, le=5.0, help="enter above this funding, after fees")
    exit_annualized: float = param(0.0, ANN, ge=-5.0, le=5.0, help="exit below this funding, after fees")
    switch_annualized: float = param(
        0.05, ANN, ge=0.0, le=5.0, help="move to another venue when it pays this much more, after fees"
    )
    window_hours: float = param(72.0, "hours", gt=0.0, le=24.0 * 365, help="trailing window of the funding")
    min_hold_hours: float = param(72.0, "hours", ge=0.0, help="minimum time on a venue before an exit or a switch")
    fee_horizon_hours: float = param(
        720.0, "hours", gt=0.0, help="a round trip's fees are spread over this expected holding time"
    )
    exposure: float = param(1.0, "fraction of the column's capital (0..1)", gt=0.0, le=1.0)

    def check(self) -> None:
        super().check()
        check_entry_exit(self)


def best_venue_carry(
    perps: Sequence[Market], params: BestVenueCarryParams, fees: Sequence[float], spot_fee: float
) -> list[np.ndarray]:
    """Hold each coin's cash-and-carry on the perp venue whose funding pays it most.

    Idea
        Funding differs between venues for weeks; a desk holding spot on one venue can short the
        perp wherever it pays most. Each venue's score is its trailing funding over
        ``window_hours``, annualized (:func:`strategies.funding_spread.trailing_funding_per_year`),
        less a fee hurdle: the round trip's fees (spot ``spot_fee`` and that venue's perp fee, in
        and out) spread over ``fee_horizon_hours``. Flat: enter the best venue above
        ``entry_annualized``. Held for ``min_hold_hours``: exit below ``exit_annualized``, or
        switch to another venue paying ``switch_annualized`` more (in a spread backtest of one
        carry whose perp moves venue: the perp closes on one venue and opens on the other).

    Parameters
    ----------
    perps : sequence of Market
        The candidate venues' perp markets, one bar index and the same coins in the same order.
    fees : sequence of float
        Each venue's perp fee (fraction of notional), in ``perps``' order.
    spot_fee : float
        The spot venue's fee (fraction of notional).

    Returns
    -------
    list of ndarray (T, N)
        Per venue: ``exposure`` where that venue holds the coin's carry, else 0.

    Risks
        Trailing funding lags its turns; a switch costs the perp's round trip and a transfer of
        its collateral to the new venue (``venue_schedule`` and ``run_spread(..., venues=...)``:
        the spot stays, unhedged until the collateral arrives).
    """
    if len(perps) != len(fees) or not perps:
        raise ConfigError(f"best_venue_carry needs one fee per venue: {len(perps)} venues, {len(fees)} fees")
    shape = perps[0].shape
    if any(m.shape != shape or not m.index.equals(perps[0].index) for m in perps):
        raise ConfigError("best_venue_carry: the venues' markets must share one bar index and the same coins")
    scores = np.stack(
        [
            trailing_funding_per_year(m, params.window_hours)
            - 2.0 * (spot_fee + fee) * HOURS_PER_YEAR / params.fee_horizon_hours
            for m, fee in zip(perps, fees)
        ]
    )
    held = best_candidate_nb(
        scores,
        params.entry_annualized,
        params.exit_annualized,
        params.switch_annualized,
        hours_to_bars(perps[0], params.min_hold_hours),
    )
    return [np.where(held == v, params.exposure, 0.0) for v in range(len(perps))]

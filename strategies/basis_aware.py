"""``basis_aware``: trade the carry when the basis is rich, exit when it has converged."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.errors import ConfigError
from data.market import Market
from strategies.base import StrategyParams, hours_to_bars, mask_targets, param
from strategies.signals import (
    MAX_FUNDING_INTERVAL_HOURS,
    basis,
    basis_zscore,
    hysteresis,
    rolling_mean,
    trailing_funding_annualized,
)

__all__ = ["BasisAwareParams", "basis_aware"]

ANN = "annualized fraction (0.10 = 10%/yr)"


@dataclass(frozen=True, kw_only=True)
class BasisAwareParams(StrategyParams):
    window_hours: float = param(168.0, "hours", ge=2.0, help="rolling window of the basis mean and z-score")
    entry_z: float = param(1.5, "standard deviations", gt=0.0, le=20.0, help="enter when |z| exceeds this")
    exit_z: float = param(
        0.0, "standard deviations", ge=-20.0, le=20.0, help="exit carry when z < exit_z (reverse: z > -exit_z)"
    )
    min_edge_bps: float = param(
        5.0, "bps of notional", ge=0.0, le=10_000.0, help="expected convergence (basis - its mean) needed to enter"
    )
    min_funding_annualized: float = param(
        0.0, ANN, ge=-5.0, le=5.0, help="net trailing funding the side must earn to enter"
    )
    window_settlements: int = param(9, "settlements", ge=1, le=10_000)
    borrow_annual_rate: float = param(0.05, "annualized fraction of the borrowed spot value", ge=0.0, le=5.0)
    allow_reverse: bool = param(False, "", help="also take the reverse side when the basis is cheap")
    min_hold_hours: float = param(0.0, "hours", ge=0.0)
    exposure: float = param(1.0, "fraction of the column's capital share (0..1)", gt=0.0, le=1.0)

    def check(self) -> None:
        super().check()
        if self.exit_z >= self.entry_z:
            raise ConfigError(
                f"BasisAwareParams: exit_z ({self.exit_z:g}) must be < entry_z ({self.entry_z:g}) "
                "(standard deviations of the basis)"
            )

    def lookback_hours(self) -> float:
        """The longer of the basis window and the funding window (at 8 h), plus the minimum hold."""
        return max(self.window_hours, self.window_settlements * MAX_FUNDING_INTERVAL_HOURS) + self.min_hold_hours


def basis_aware(market: Market, params: BasisAwareParams) -> np.ndarray:
    """Enter the carry when the perp is rich to spot; exit once the basis has converged.

    Idea
        A carry is opened by selling the perp and buying spot, so its entry price is the basis
        ``b = perp_close / spot_close - 1``. Entering when ``b`` is high relative to its recent
        history (z-score over ``window_hours`` above ``entry_z``) locks in the expected
        convergence ``b - mean(b)``, a gain on top of funding; it is required to exceed
        ``min_edge_bps`` (enough to pay the round-trip fees you assume). The position is closed
        when the z-score falls below ``exit_z`` (the basis has converged). The trailing funding
        must not argue against the side: carry needs trailing annualized funding >=
        ``min_funding_annualized``; the optional reverse side (cheap basis, ``z < -entry_z``)
        needs ``-(funding) - borrow >= min_funding_annualized``.

    Parameters
    ----------
    window_hours : float
        Rolling window of the basis mean and standard deviation, hours (rounded up to bars).
    entry_z, exit_z : float
        z-score levels (standard deviations), exit_z < entry_z.
    min_edge_bps : float
        Minimum expected convergence ``|b - mean(b)|`` to enter, basis points of notional.
    min_funding_annualized : float
        Minimum net annualized funding (fraction per year) of the side at entry.
    window_settlements : int
        Trailing funding window, settlements.
    borrow_annual_rate : float
        Borrow cost of the reverse side, annualized fraction.
    allow_reverse : bool
        Also trade the reverse carry (default False).
    min_hold_hours : float
        Minimum holding time before an exit, hours.
    exposure : float
        Size when in a trade.

    Returns
    -------
    ndarray (T, N)
        ``+exposure``, ``-exposure`` or 0; NaN on invalid bars after the first valid bar, 0 before.
        Flat until the z-score has half a window of data.

    Risks
        The basis can widen further before converging (mark-to-market loss, liquidation risk
        on the perp); a regime shift in the basis level makes the rolling mean a poor anchor;
        hourly closes of two venues are not simultaneous trades, so small basis moves are noise.
    """
    w = max(2, hours_to_bars(market, params.window_hours))
    b = basis(market)
    z = basis_zscore(market, w)
    edge_bps = (b - rolling_mean(b, w, max(2, w // 2))) * 1e4
    f = trailing_funding_annualized(market, params.window_settlements)
    f0 = np.nan_to_num(f, nan=0.0)  # no funding history yet: neutral
    allow_long = (edge_bps > params.min_edge_bps) & (f0 >= params.min_funding_annualized)
    allow_short = (-edge_bps > params.min_edge_bps) & (-f0 - params.borrow_annual_rate >= params.min_funding_annualized)
    state = hysteresis(
        z,
        enter_long=params.entry_z,
        exit_long=params.exit_z,
        enter_short=-params.entry_z if params.allow_reverse else -np.inf,
        exit_short=-params.exit_z,
        allow_long=allow_long,
        allow_short=allow_short & params.allow_reverse,
        min_hold_bars=hours_to_bars(market, params.min_hold_hours),
    )
    state *= params.exposure  # hysteresis returns a new array: scale and mask it in place
    return mask_targets(market, state, copy=False)

"""``funding_threshold``: carry while trailing funding is high, with hysteresis."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.market import Market
from strategies.base import StrategyParams, check_entry_exit, hours_to_bars, mask_targets, param
from strategies.signals import MAX_FUNDING_INTERVAL_HOURS, funding_signal, hysteresis

__all__ = ["FundingThresholdParams", "funding_threshold"]

ANN = "annualized fraction (0.10 = 10%/yr)"


@dataclass(frozen=True, kw_only=True)
class FundingThresholdParams(StrategyParams):
    entry_annualized: float = param(0.10, ANN, ge=-5.0, le=5.0, help="enter carry above this funding")
    exit_annualized: float = param(0.02, ANN, ge=-5.0, le=5.0, help="exit carry below this funding")
    window_settlements: int = param(9, "settlements", ge=1, le=10_000, help="trailing window (9 = 3 days of 8h)")
    min_hold_hours: float = param(0.0, "hours", ge=0.0, help="minimum time in a position before an exit")
    signal: str = param(
        "trailing",
        "",
        choices=("trailing", "predicted"),
        help="trailing mean of settled rates, or the predicted next rate",
    )
    exposure: float = param(1.0, "fraction of the column's capital share (0..1)", gt=0.0, le=1.0)

    def check(self) -> None:
        super().check()
        check_entry_exit(self)

    def lookback_hours(self) -> float:
        """The signal's settlements at the longest interval (8 h), plus the minimum hold."""
        window = self.window_settlements if self.signal == "trailing" else 1
        return window * MAX_FUNDING_INTERVAL_HOURS + self.min_hold_hours


def funding_threshold(market: Market, params: FundingThresholdParams) -> np.ndarray:
    """Carry when trailing annualized funding is above an entry level; exit below an exit level.

    Idea
        Funding is persistent: a symbol whose recent funding is high tends to keep paying
        shorts. Enter the carry when the signal (mean annualized rate of the last
        ``window_settlements`` settlements, or the predicted next rate) rises above
        ``entry_annualized``; leave when it falls below ``exit_annualized``. The gap between the
        two levels (hysteresis) and ``min_hold_hours`` limit churn, whose fees can exceed the
        funding collected.

    Parameters
    ----------
    entry_annualized, exit_annualized : float
        Levels as annualized fractions per 365-day year (0.10 = 10%/yr); exit <= entry.
    window_settlements : int
        Settlements in the trailing mean (per symbol, whatever its interval).
    min_hold_hours : float
        Hours a position is held at least before an exit is honoured (rounded up to bars).
    signal : {"trailing", "predicted"}
        Signal source (see :func:`strategies.signals.funding_signal`).
    exposure : float
        Size when in the trade, fraction of the column's capital share.

    Returns
    -------
    ndarray (T, N)
        ``exposure`` or 0; NaN on invalid bars after the first valid bar (keep), 0 before.

    Risks
        Trailing funding lags regime changes (enters late, exits late); thresholds fitted on
        one period overfit; same liquidation and basis risks as :func:`always_carry` while in.
    """
    score = funding_signal(market, params.signal, params.window_settlements)
    state = hysteresis(
        score,
        enter_long=params.entry_annualized,
        exit_long=params.exit_annualized,
        min_hold_bars=hours_to_bars(market, params.min_hold_hours),
    )
    state *= params.exposure  # hysteresis returns a new array: scale and mask it in place
    return mask_targets(market, state, copy=False)

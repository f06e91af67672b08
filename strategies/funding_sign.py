"""``funding_sign``: carry in positive funding, reverse carry in negative funding net of borrow."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.errors import ConfigError
from data.market import Market
from strategies.base import StrategyParams, check_entry_exit, hours_to_bars, mask_targets, param
from strategies.signals import HOURS_PER_YEAR, MAX_FUNDING_INTERVAL_HOURS, funding_signal, hysteresis

__all__ = ["FundingSignParams", "funding_sign"]

ANN = "annualized fraction (0.10 = 10%/yr)"


@dataclass(frozen=True, kw_only=True)
class FundingSignParams(StrategyParams):
    entry_annualized: float = param(0.05, ANN, ge=0.0, le=5.0, help="edge needed to enter either side")
    exit_annualized: float = param(0.0, ANN, ge=-5.0, le=5.0, help="edge below which a side is left")
    borrow_annual_rate: float = param(
        0.05,
        "annualized fraction (0.05 = 5%/yr) of the borrowed spot value",
        ge=0.0,
        le=5.0,
        help="expected borrow cost of the reverse side",
    )
    use_market_borrow: bool = param(
        False, "", help="use market.borrow_hourly_rate (x 8760) instead of borrow_annual_rate"
    )
    window_settlements: int = param(9, "settlements", ge=1, le=10_000, help="trailing window")
    min_hold_hours: float = param(0.0, "hours", ge=0.0, help="minimum time in a position before an exit")
    signal: str = param("trailing", "", choices=("trailing", "predicted"))
    allow_reverse: bool = param(True, "", help="take the reverse-carry side at all")
    exposure: float = param(1.0, "fraction of the column's capital share (0..1)", gt=0.0, le=1.0)

    def check(self) -> None:
        super().check()
        check_entry_exit(self)

    def lookback_hours(self) -> float:
        """The signal's settlements at the longest interval (8 h), plus the minimum hold."""
        window = self.window_settlements if self.signal == "trailing" else 1
        return window * MAX_FUNDING_INTERVAL_HOURS + self.min_hold_hours


def funding_sign(market: Market, params: FundingSignParams) -> np.ndarray:
    """Follow the sign of funding: carry when it pays shorts, reverse carry when it pays longs.

    Idea
        With signal ``f`` (annualized trailing or predicted funding) and expected borrow cost
        ``b`` (annualized), the carry earns about ``f`` and the reverse carry ``-f - b``. Go
        carry when ``f > entry``, reverse carry when ``-f - b > entry`` (``f < -(entry + b)``),
        flat in between. A side is left when its edge drops below ``exit`` (carry:
        ``f < exit``; reverse: ``f > -(exit + b)``), after ``min_hold_hours``. This is the
        strategy for long negative-funding regimes, where a plain carry pays funding.

    Parameters
    ----------
    entry_annualized, exit_annualized : float
        Edges (annualized fractions per 365-day year, 0.05 = 5%/yr), exit <= entry.
    borrow_annual_rate : float
        Expected borrow interest of the short spot leg, annualized fraction of its value.
    use_market_borrow : bool
        Use the market's hourly borrow rate at the bar (x 8760) instead (error if absent).
    window_settlements : int
        Trailing window (settlements) for ``signal="trailing"``.
    min_hold_hours : float
        Minimum holding time before an exit, hours.
    signal : {"trailing", "predicted"}
    allow_reverse : bool
        False = carry-or-flat only.
    exposure : float
        Size when in a trade.

    Returns
    -------
    ndarray (T, N)
        ``+exposure``, ``-exposure`` or 0; NaN on invalid bars after the first valid bar, 0 before.

    Risks
        Borrow can be unavailable, recalled or much dearer than assumed; the reverse side's
        long perp is liquidated in a crash; sign flips of a trailing signal come late, and
        each flip costs two round trips of fees.
    """
    f = funding_signal(market, params.signal, params.window_settlements)
    T, N = market.shape
    if params.use_market_borrow:
        if market.borrow_hourly_rate is None:
            raise ConfigError(
                "use_market_borrow=True but the market has no borrow_hourly_rate; "
                "set borrow_annual_rate (annualized fraction) instead"
            )
        b = np.nan_to_num(market.borrow_hourly_rate * HOURS_PER_YEAR, nan=params.borrow_annual_rate)
    else:
        b = np.full((T, N), params.borrow_annual_rate)
    state = hysteresis(
        f,
        score_short=f + b,
        enter_long=params.entry_annualized,
        exit_long=params.exit_annualized,
        enter_short=-params.entry_annualized if params.allow_reverse else -np.inf,
        exit_short=-params.exit_annualized,
        min_hold_bars=hours_to_bars(market, params.min_hold_hours),
    )
    state *= params.exposure  # hysteresis returns a new array: scale and mask it in place
    return mask_targets(market, state, copy=False)

"""``always_carry``: buy spot, short the perp, hold. The benchmark."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.market import Market
from strategies.base import StrategyParams, mask_targets, param

__all__ = ["AlwaysCarryParams", "always_carry"]


@dataclass(frozen=True, kw_only=True)
class AlwaysCarryParams(StrategyParams):
    exposure: float = param(
        1.0, "fraction of the column's capital share (0..1)", ge=0.0, le=1.0, help="size of the carry position"
    )

    def lookback_hours(self) -> float:
        return 0.0  # the same target on every bar


def always_carry(market: Market, params: AlwaysCarryParams) -> np.ndarray:
    """Hold a carry (long spot, short perp) on every symbol, all the time.

    Idea
        The unconditional cash-and-carry: collects funding when rates are positive (longs pay
        shorts) and **pays** it when they are negative. Every other strategy is judged
        against it.

    Parameters
    ----------
    exposure : float
        Target size, a fraction of the column's capital share in [0, 1] (default 1).

    Returns
    -------
    ndarray (T, N)
        ``+exposure`` on valid bars, NaN (keep) on invalid bars after the first valid one,
        0 before it.

    Risks
        Pays funding through negative regimes (XTZUSDT 2025-26); the short perp can be
        liquidated in a sharp rally while its gain sits in the spot wallet; basis moves show up
        as mark-to-market noise.
    """
    return mask_targets(market, np.full(market.shape, params.exposure), copy=False)

"""``always_reverse``: short spot on margin, long the perp, hold."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.market import Market
from strategies.base import StrategyParams, mask_targets, param

__all__ = ["AlwaysReverseParams", "always_reverse"]


@dataclass(frozen=True, kw_only=True)
class AlwaysReverseParams(StrategyParams):
    exposure: float = param(
        1.0, "fraction of the column's capital share (0..1)", ge=0.0, le=1.0, help="size of the reverse-carry position"
    )

    def lookback_hours(self) -> float:
        return 0.0  # the same target on every bar


def always_reverse(market: Market, params: AlwaysReverseParams) -> np.ndarray:
    """Hold a reverse carry (short spot borrowed on margin, long perp) on every symbol.

    Idea
        The mirror of :func:`always_carry`: receives funding when rates are negative (shorts
        pay longs) and pays it when positive, and always pays borrow interest on the short
        spot leg (charged by the engine from its borrow-rate setting).

    Parameters
    ----------
    exposure : float
        Target size, a fraction of the column's capital share in [0, 1] (default 1); the
        target is ``-exposure``.

    Returns
    -------
    ndarray (T, N)
        ``-exposure`` on valid bars, NaN (keep) on invalid bars after the first valid one,
        0 before it.

    Risks
        Funding is positive most of the time on most symbols, so this usually loses funding and
        borrow; borrow may be unavailable or recalled; the long perp can be liquidated in a
        crash.
    """
    return mask_targets(market, np.full(market.shape, -params.exposure), copy=False)

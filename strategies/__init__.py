"""Strategies: pure functions from a :class:`data.market.Market` to target exposures.

A strategy is ``fn(market, params) -> ndarray (T, N)`` of targets in [-1, 1] (+1 carry: long
spot / short perp; -1 reverse carry: short spot on margin / long perp; 0 flat; NaN keep),
using at row ``i`` only data known at bar ``i``'s close. ``params`` is a frozen keyword-only
dataclass (:class:`StrategyParams`). :func:`run_strategy` evaluates a parameter grid into
:class:`backtest.targets.Targets`::

    from strategies import run_strategy
    targets = run_strategy("funding_threshold", market,
                           {"entry_annualized": [0.05, 0.10, 0.20], "exit_annualized": 0.02})

Write your own as a plain function and pass it to ``run_strategy`` (or register it)::

    from dataclasses import dataclass
    from strategies import StrategyParams, param, register, mask_targets, trailing_funding_annualized

    @dataclass(frozen=True, kw_only=True)
    class MyParams(StrategyParams):
        level_annualized: float = param(0.1, "annualized fraction (0.10 = 10%/yr)", ge=-5, le=5)

    def my_carry(market, params: MyParams):
        f = trailing_funding_annualized(market, 21)
        return mask_targets(market, (f > params.level_annualized).astype(float))

    register(my_carry, MyParams, "my_carry")
"""

from strategies.always_carry import AlwaysCarryParams, always_carry
from strategies.always_reverse import AlwaysReverseParams, always_reverse
from strategies.base import (
    NoParams,
    Strategy,
    StrategyParams,
    WeightedTargets,
    bar_hours,
    hours_to_bars,
    mask_targets,
    param,
)
from strategies.basis_aware import BasisAwareParams, basis_aware
from strategies.best_venue_carry import BestVenueCarryParams, best_venue_carry
from strategies.funding_sign import FundingSignParams, funding_sign
from strategies.funding_spread import (
    FundingSpreadParams,
    funding_spread,
    funding_spread_pairs,
    trailing_funding_per_year,
    venue_schedule,
)
from strategies.funding_threshold import FundingThresholdParams, funding_threshold
from strategies.lookahead import LookaheadDifference, LookaheadReport, check_lookahead, perturb_after, truncate_after
from strategies.predicted_funding import (
    caps_from_leverage_tiers,
    funding_formula,
    predicted_funding_annualized,
    predicted_funding_rate,
    prediction_accuracy,
    premium_proxy,
)
from strategies.registry import (
    as_strategy,
    available_strategies,
    get_strategy,
    load_strategy_file,
    parse_params,
    register,
)
from strategies.rotation import RotationParams, rotation
from strategies.runner import expand_params, run_strategy
from strategies.signals import (
    HOURS_PER_YEAR,
    basis,
    basis_zscore,
    clear_cache,
    funding_signal,
    hysteresis,
    hysteresis_nb,
    rolling_mean,
    rolling_zscore,
    trailing_funding_annualized,
)

__all__ = [
    "LookaheadDifference",
    "LookaheadReport",
    "check_lookahead",
    "perturb_after",
    "truncate_after",
    "StrategyParams",
    "NoParams",
    "param",
    "Strategy",
    "WeightedTargets",
    "as_strategy",
    "run_strategy",
    "expand_params",
    "mask_targets",
    "bar_hours",
    "hours_to_bars",
    "register",
    "get_strategy",
    "available_strategies",
    "parse_params",
    "load_strategy_file",
    "always_carry",
    "AlwaysCarryParams",
    "always_reverse",
    "AlwaysReverseParams",
    "funding_threshold",
    "FundingThresholdParams",
    "funding_sign",
    "FundingSignParams",
    "funding_spread",
    "funding_spread_pairs",
    "venue_schedule",
    "FundingSpreadParams",
    "best_venue_carry",
    "BestVenueCarryParams",
    "trailing_funding_per_year",
    "basis_aware",
    "BasisAwareParams",
    "rotation",
    "RotationParams",
    "predicted_funding_rate",
    "predicted_funding_annualized",
    "prediction_accuracy",
    "funding_formula",
    "premium_proxy",
    "caps_from_leverage_tiers",
    "HOURS_PER_YEAR",
    "trailing_funding_annualized",
    "funding_signal",
    "basis",
    "basis_zscore",
    "rolling_mean",
    "rolling_zscore",
    "hysteresis",
    "hysteresis_nb",
    "clear_cache",
]

"""Evaluate a strategy on a market, for one parameter set or a whole grid: :func:`run_strategy`.

The strategy may be a registered name (looked up in :mod:`strategies.registry`), a
:class:`~strategies.base.Strategy` or a plain function; every parameter set's output is checked
(shape, finite, within [-1, 1]) and the sets are stacked side by side as
:class:`backtest.targets.Targets`, parameter set ``g`` being portfolio ``group == g``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numba import njit
from numba.typed import List

from backtest.targets import Targets, param_grid
from data.errors import ConfigError
from data.market import Market
from strategies.base import StrategyParams, WeightedTargets
from strategies.registry import as_strategy

__all__ = ["run_strategy"]


def _as_grid(params: Any) -> list[Any]:
    """Normalise ``params`` to a list of per-run specs (dicts or StrategyParams)."""
    if params is None:
        return [{}]
    if isinstance(params, StrategyParams):
        return [params]
    if isinstance(params, dict):
        if any(isinstance(v, (list, tuple, np.ndarray, range)) for v in params.values()):
            grid = {k: (list(v) if isinstance(v, (list, tuple, np.ndarray, range)) else [v]) for k, v in params.items()}
            return param_grid(grid)
        return [params]
    if isinstance(params, (list, tuple)):
        return list(params)
    raise ConfigError(
        f"params must be None, a dict, a grid dict of lists, a list or a StrategyParams; got {type(params).__name__}"
    )


def expand_params(params: Any) -> list[Any]:
    """The parameter sets ``run_strategy`` evaluates for ``params``, in its order (parameter set
    ``g`` is portfolio ``group == g``): a grid dict expanded, a list as given, ``None`` the defaults."""
    return _as_grid(params)


def _numbers(values: Any, what: str) -> np.ndarray:
    try:
        return np.asarray(values, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{what} are not numbers ({exc})") from None


def _check_output(name: str, out: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    weights = None
    if isinstance(out, WeightedTargets) or (isinstance(out, tuple) and len(out) == 2):
        out, weights = out
        weights = _numbers(weights, f"strategy {name!r} returned weights that")
        if weights.shape != shape:
            raise ConfigError(f"strategy {name!r} returned weights of shape {weights.shape}, expected {shape}")
    values = _numbers(out, f"strategy {name!r} returned targets that")
    if values.shape != shape:
        raise ConfigError(
            f"strategy {name!r} returned targets of shape {values.shape}, expected {shape} (bars x symbols)"
        )
    # fmin/fmax skip NaN ("keep") without temporaries; infinities show up as extremes
    lo = np.fmin.reduce(values, axis=None) if values.size else np.nan
    hi = np.fmax.reduce(values, axis=None) if values.size else np.nan
    if np.isinf(lo) or np.isinf(hi):
        raise ConfigError(f"strategy {name!r} returned infinite targets")
    if lo < -1 - 1e-9 or hi > 1 + 1e-9:
        raise ConfigError(f"strategy {name!r} returned targets outside [-1, 1] (+1 carry, -1 reverse carry)")
    if lo < -1.0 or hi > 1.0:  # rounding noise beyond the bounds
        values = np.clip(values, -1.0, 1.0)
    return values, weights


def _stack_columns(blocks: list[np.ndarray], n_rows: int) -> np.ndarray:
    """``np.hstack(blocks)`` of (T, n) float arrays (a blocked copy, see :func:`_stack_into_nb`)."""
    width = sum(b.shape[1] for b in blocks)
    out = np.empty((n_rows, width))
    if width and n_rows:
        typed = List()
        for b in blocks:
            typed.append(np.ascontiguousarray(b, dtype=np.float64))
        _stack_into_nb(typed, out, max(256, (2 << 20) // (8 * width)))
    return out


@njit(cache=True)
def _stack_into_nb(blocks, out, step):
    """Copy ``blocks`` side by side into ``out`` in row blocks of ``step`` rows, so the block of
    ``out`` stays in cache while each input, read sequentially, writes its columns into it (a
    plain hstack walks the whole output once per input: slow for many narrow inputs)."""
    T = out.shape[0]
    for r0 in range(0, T, step):
        r1 = min(T, r0 + step)
        c0 = 0
        for b in blocks:
            w = b.shape[1]
            for r in range(r0, r1):
                for k in range(w):
                    out[r, c0 + k] = b[r, k]
            c0 += w


def run_strategy(strategy: Any, market: Market, params: Any = None) -> Targets:
    """Evaluate a strategy on a market for one parameter set or a whole grid.

    Parameters
    ----------
    strategy : str, Strategy or callable
        A registered name (``"funding_threshold"``), a :class:`Strategy`, or a plain function
        ``fn(market, params)`` / ``fn(market)``.
    market : data.market.Market
    params : None, dict, grid dict, StrategyParams or list of those
        ``None``: defaults. A dict of scalars: one parameter set (names may be abbreviated to
        a unique prefix). A dict in which some values are lists: the Cartesian grid of those
        lists (other values fixed). A list: one run per element.

    Returns
    -------
    backtest.targets.Targets
        ``N`` columns (one per market symbol) per parameter set; parameter set ``g`` is
        portfolio ``group == g``. ``columns`` has ``strategy``, ``symbol``, ``group`` and one
        column per parameter. Signals shared between parameter sets (e.g. the trailing
        funding for one window) are computed once per market (see ``strategies.signals``).
    """
    strat = as_strategy(strategy)
    if not isinstance(market, Market):
        raise ConfigError(f"run_strategy needs a data.market.Market, got {type(market).__name__}")
    specs = _as_grid(params)
    if not specs:
        raise ConfigError("empty parameter grid")
    n = market.n_symbols
    values, weights, rows = [], [], []
    any_weights = False
    for g, spec in enumerate(specs):
        p = strat.params(spec)
        v, w = _check_output(strat.name, strat.fn(market, p), market.shape)
        values.append(v)
        weights.append(w)
        any_weights |= w is not None
        d = p.to_dict()
        for _j, sym in enumerate(market.symbols):
            rows.append({"strategy": strat.name, "symbol": sym, "group": g, **d})
    columns = pd.DataFrame(rows)
    w_all = None
    if any_weights:
        w_all = _stack_columns([w if w is not None else np.ones(market.shape) for w in weights], market.n_bars)
    return Targets(
        values=_stack_columns(values, market.n_bars),
        column_symbol=np.tile(np.arange(n, dtype=np.int64), len(specs)),
        group=np.repeat(np.arange(len(specs), dtype=np.int64), n),
        columns=columns,
        weights=w_all,
    )

"""Target exposures: what a strategy asks the engine to hold, per bar and column.

A *column* is one symbol under one parameter set. Columns with the same ``group`` (one
parameter set of one strategy) form one portfolio: they share its capital. The engine reads
target ``i`` at bar ``i``'s close and trades toward it at a later bar (the execution delay).

Target semantics (fractions, per bar): ``+1`` = full carry (long spot, short perp) with the
column's whole capital share, ``-1`` = full reverse carry (short spot on margin, long perp),
``0`` = flat, values in between scale the position. NaN means "no opinion: keep what you
hold".
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from data.errors import ConfigError
from data.market import Market


def _floats(values, name: str) -> np.ndarray:
    """``values`` as a C-contiguous float64 array; ``ConfigError`` naming ``name`` if not numbers."""
    try:
        return np.ascontiguousarray(values, dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{name} must be numbers ({exc})") from None


def _fit(values, shape: tuple[int, int], name: str) -> np.ndarray:
    """``values`` broadcast to ``shape`` as a new C-contiguous float64 array; ``ConfigError`` if it does not fit."""
    a = _floats(values, name)
    try:
        return np.ascontiguousarray(np.broadcast_to(a, shape))
    except ValueError:
        raise ConfigError(f"{name} of shape {a.shape} do not fit {shape} (bars x columns)") from None


@dataclass(frozen=True, eq=False)
class Targets:
    """Target exposures for ``C`` columns over the market's ``T`` bars.

    Attributes
    ----------
    values : ndarray (T, C) float64
        Target exposure in [-1, 1] (fraction of the column's capital share; sign = direction),
        or NaN for "keep the current position".
    column_symbol : ndarray (C,) int64
        Index into ``market.symbols`` of each column's symbol.
    group : ndarray (C,) int64
        Portfolio id of each column; columns of one group share capital.
    columns : pandas.DataFrame
        One row per column: ``symbol``, ``group``, ``strategy`` and one column per parameter.
    weights : ndarray (T, C) float64 or None
        Optional capital weights within each group (non-negative; the engine normalises them
        per group and bar). None = equal weight among the group's columns.
    """

    values: np.ndarray
    column_symbol: np.ndarray
    group: np.ndarray
    columns: pd.DataFrame
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        values = _floats(self.values, "targets")
        if values.ndim != 2:
            raise ConfigError(f"targets must be 2-D (bars x columns), got shape {values.shape}")
        # fmin/fmax skip NaN ("keep") without a temporary; infinities show up as extremes
        lo = np.fmin.reduce(values, axis=None) if values.size else np.nan
        hi = np.fmax.reduce(values, axis=None) if values.size else np.nan
        if np.isinf(lo) or np.isinf(hi):
            raise ConfigError("targets contain infinite values")
        if lo < -1 - 1e-12 or hi > 1 + 1e-12:
            raise ConfigError(
                f"targets must lie in [-1, 1] (+1 carry, -1 reverse carry); got min {lo:.6g}, max {hi:.6g}"
            )
        n_cols = values.shape[1]
        try:
            col_symbol = np.ascontiguousarray(self.column_symbol, dtype=np.int64)
            group = np.ascontiguousarray(self.group, dtype=np.int64)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ConfigError(f"column_symbol and group must be whole numbers, one per target column ({exc})") from None
        if col_symbol.shape != (n_cols,) or group.shape != (n_cols,):
            raise ConfigError("column_symbol and group need one entry per target column")
        if len(self.columns) != n_cols:
            raise ConfigError(f"columns table has {len(self.columns)} rows for {n_cols} target columns")
        for a in (values, col_symbol, group):
            a.flags.writeable = False
        object.__setattr__(self, "values", values)
        object.__setattr__(self, "column_symbol", col_symbol)
        object.__setattr__(self, "group", group)
        if self.weights is not None:
            w = _fit(self.weights, values.shape, "weights")
            if (w < 0).any() or not np.isfinite(w).all():
                raise ConfigError("weights must be finite and non-negative")
            w.flags.writeable = False
            object.__setattr__(self, "weights", w)

    @property
    def n_columns(self) -> int:
        return self.values.shape[1]

    def frame(self, index: pd.Index | None = None) -> pd.DataFrame:
        """Targets as a DataFrame whose columns are a MultiIndex of the parameters and symbol."""
        names = [c for c in self.columns.columns if c not in ("group",)]
        cols = pd.MultiIndex.from_frame(self.columns[names]) if names else None
        return pd.DataFrame(self.values, index=index, columns=cols)

    @classmethod
    def _derived(cls, values, column_symbol, group, columns, weights) -> Targets:
        """Targets made of (parts of) already validated arrays: no checks, no copies."""
        obj = object.__new__(cls)
        for name, v in (("values", values), ("column_symbol", column_symbol), ("group", group), ("weights", weights)):
            if isinstance(v, np.ndarray) and v.flags.writeable:
                v.flags.writeable = False
            object.__setattr__(obj, name, v)
        object.__setattr__(obj, "columns", columns)
        return obj

    def per_column(self) -> Targets:
        """The same targets with every column its own portfolio (group = column position)."""
        groups = np.arange(self.n_columns, dtype=np.int64)
        return Targets._derived(self.values, self.column_symbol, groups, self.columns.assign(group=groups), None)

    def per_symbol(self) -> Targets:
        """Every column its own portfolio (each with the whole initial capital), its parameter set
        kept in a ``param_id`` column (the group it had); capital weights, which only mean
        something across a portfolio's columns, are dropped. ``carry sweep --per-symbol``."""
        cols = self.columns
        if "param_id" not in cols.columns:
            cols = cols.assign(param_id=self.group)
        return self.with_columns(cols).per_column()

    def renumbered(self, offset: int) -> Targets:
        """The same targets with every group id moved by ``offset``: the portfolios of one part of
        a run, numbered as in the whole run (see :meth:`backtest.result.BacktestResult.concat`)."""
        groups = self.group + int(offset)
        return Targets._derived(
            self.values, self.column_symbol, groups, self.columns.assign(group=groups), self.weights
        )

    def with_columns(self, columns: pd.DataFrame) -> Targets:
        """The same targets with another column table (one row per column)."""
        if len(columns) != self.n_columns:
            raise ConfigError(f"columns table has {len(columns)} rows for {self.n_columns} target columns")
        return Targets._derived(self.values, self.column_symbol, self.group, columns, self.weights)

    def bars(self, start: int, stop: int) -> Targets:
        """The rows of bars ``start .. stop - 1`` (positions), same columns: the targets of a
        time chunk (see ``run_backtest(resume=...)``)."""
        w = None if self.weights is None else self.weights[start:stop]
        return Targets._derived(self.values[start:stop], self.column_symbol, self.group, self.columns, w)

    @classmethod
    def from_array(cls, market: Market, values, *, strategy: str = "custom", weights=None) -> Targets:
        """One target column per market symbol, all in one portfolio.

        ``values`` may be a scalar, an (N,) vector, a (T, N) array or a DataFrame indexed like
        the market with the market's symbols as columns.
        """
        if isinstance(values, pd.DataFrame):
            missing = [s for s in market.symbols if s not in values.columns]
            if missing:
                raise ConfigError(f"targets frame lacks columns for symbols {missing}")
            if not values.index.equals(market.index):
                raise ConfigError("targets frame index differs from the market's bar index")
            values = values[list(market.symbols)]
        arr = _fit(values, market.shape, "targets")
        n = market.n_symbols
        return cls(arr, np.arange(n), np.zeros(n, np.int64), _symbol_table(market, strategy), weights)

    @classmethod
    def concat(cls, parts: list[Targets]) -> Targets:
        """Side by side, each part's groups renumbered so they stay separate portfolios."""
        values, col_symbol, group, frames, weights = [], [], [], [], []
        offset = 0
        for p in parts:
            values.append(p.values)
            col_symbol.append(p.column_symbol)
            group.append(p.group + offset)
            f = p.columns.copy()
            f["group"] = f["group"] + offset
            frames.append(f)
            weights.append(p.weights if p.weights is not None else np.ones_like(p.values))
            offset = int(group[-1].max()) + 1 if len(group[-1]) else offset
        has_w = any(p.weights is not None for p in parts)
        bars = {v.shape[0] for v in values}
        if len(bars) > 1:
            raise ConfigError(f"Targets.concat needs parts over the same bars, got {sorted(bars)} bars")
        return cls(
            np.hstack(values),
            np.concatenate(col_symbol),
            np.concatenate(group),
            pd.concat(frames, ignore_index=True),
            np.hstack(weights) if has_w else None,
        )


_SYMBOL_TABLES: weakref.WeakKeyDictionary[Market, dict[str, pd.DataFrame]] = weakref.WeakKeyDictionary()


def _symbol_table(market: Market, strategy: str) -> pd.DataFrame:
    """The column table of one column per market symbol in one portfolio (built once per market
    and strategy name; each caller gets its own copy-on-write view, so changing it changes no other)."""
    tables = _SYMBOL_TABLES.setdefault(market, {})
    table = tables.get(strategy)
    if table is None:
        n = market.n_symbols
        table = tables[strategy] = pd.DataFrame(
            {"strategy": [strategy] * n, "symbol": list(market.symbols), "group": [0] * n}
        )
    return table.copy(deep=False)


def split_by_group(targets: Targets, groups_per_part: int) -> list[Targets]:
    """Consecutive chunks of whole portfolios (groups), in increasing group order."""
    groups = np.unique(targets.group)
    parts = []
    for k in range(0, len(groups), max(1, groups_per_part)):
        cols = np.flatnonzero(np.isin(targets.group, groups[k : k + groups_per_part]))
        parts.append(
            Targets(
                targets.values[:, cols],
                targets.column_symbol[cols],
                targets.group[cols],
                targets.columns.iloc[cols].reset_index(drop=True),
                None if targets.weights is None else targets.weights[:, cols],
            )
        )
    return parts


def param_grid(grid: dict[str, list]) -> list[dict]:
    """Cartesian product of a ``{name: [values]}`` grid, in a stable order."""
    names = list(grid)
    bad = [n for n in names if isinstance(grid[n], (str, bytes)) or not isinstance(grid[n], Iterable)]
    if bad:
        raise ConfigError(f"a parameter grid maps names to lists of values; {bad[0]!r} has {grid[bad[0]]!r}")
    return [dict(zip(names, combo)) for combo in itertools.product(*(list(grid[n]) for n in names))]

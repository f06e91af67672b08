"""Where a run stopped: :class:`EngineState`, to continue a backtest on the next bars exactly.

A long history need not be in memory at once: run the engine on consecutive time chunks,
each started from the state the previous one ended in::

    res1 = run_backtest(market.select(end="2024-07-01"), targets1, cfg)
    res2 = run_backtest(market.select(start="2024-07-01"), targets2, cfg, resume=res1.state)
    BacktestResult.chain([res1, res2])   # == run_backtest(market, targets, cfg), bit for bit

The state holds every column's and portfolio's accounting state (positions, wallets, cost
basis, cumulative components, pending post-liquidation actions, scheduled top-ups), the targets
of the last ``execution_delay_bars`` bars (decided but not executed yet) and the last bar's
volumes and closes (slippage and, with delay 0, the reference prices of the next bar). It
also records what it is valid for: the symbols, the column layout, the config hash and the
open time of the bar the next run must start at; :meth:`EngineState.check_continuation`
refuses anything else with a message that says what differs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from backtest.kernels.layout import (
    G_CASH,
    G_TOPUP,
    NSC,
    NSG,
    S_COMP7,
    S_INIT,
    S_LASTX,
    S_LIQ,
    S_PRE,
    S_PV,
    S_SV,
    S_TOPUP,
)
from data.errors import ConfigError


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, copy=True)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class EngineState:
    """The engine's state after a run's last bar (see the module docstring).

    Attributes
    ----------
    columns : ndarray (C, NSC) float64
        Per-column slots (``backtest.kernels.layout.S_*``).
    groups : ndarray (G, NSG) float64
        Per-portfolio slots (``backtest.kernels.layout.G_*``), in the order of the run's sorted group ids.
    target_tail, weight_tail : ndarray (k, C) or None
        The last ``k = min(lag, bars)`` target (and weight) rows, executed by the next run.
    last_spot_volume, last_perp_volume, last_spot_close, last_perp_close : ndarray (N,)
        The last bar's volumes (base units) and closes (quote/coin) per market symbol.
    last_valid : ndarray (N,) bool
    bars : int
        Bars simulated since the start of the backtest.
    next_time : pandas.Timestamp or None
        Open time of the bar the next run must start with (None before any bar).
    symbols : tuple of str
    column_symbol, group : ndarray (C,) int64
    config_hash : str
    """

    columns: np.ndarray
    groups: np.ndarray
    target_tail: np.ndarray
    weight_tail: np.ndarray | None
    last_spot_volume: np.ndarray
    last_perp_volume: np.ndarray
    last_spot_close: np.ndarray
    last_perp_close: np.ndarray
    last_valid: np.ndarray
    bars: int
    next_time: pd.Timestamp | None
    symbols: tuple[str, ...]
    column_symbol: np.ndarray
    group: np.ndarray
    config_hash: str

    # ------------------------------------------------------------------ construction
    @classmethod
    def initial(cls, symbols, column_symbol, group, capital: float, config_hash: str) -> EngineState:
        """The state before the first bar: flat, every portfolio holding ``capital`` quote."""
        column_symbol = np.asarray(column_symbol, dtype=np.int64)
        group = np.asarray(group, dtype=np.int64)
        uniq, gid = np.unique(group, return_inverse=True)
        C, G, N = len(column_symbol), len(uniq), len(symbols)
        cols = np.zeros((C, NSC))
        for k in (S_SV, S_PV, S_LASTX, S_LIQ):
            cols[:, k] = np.nan
        cols[:, S_TOPUP] = -1.0
        cols[:, S_PRE] = -1.0
        size = np.bincount(gid, minlength=G).astype(np.float64)
        cols[:, S_INIT] = capital / size[gid] if C else 0.0
        cols[:, S_COMP7] = cols[:, S_INIT]
        grps = np.zeros((G, NSG))
        grps[:, G_CASH] = capital
        grps[:, G_TOPUP] = -1.0
        zeros = np.zeros(N)
        return cls(
            cols,
            grps,
            np.zeros((0, C)),
            None,
            zeros,
            zeros,
            np.full(N, np.nan),
            np.full(N, np.nan),
            np.zeros(N, np.bool_),
            0,
            None,
            tuple(symbols),
            column_symbol,
            group,
            config_hash,
        )

    @property
    def n_columns(self) -> int:
        return self.columns.shape[0]

    @property
    def weight_rows(self) -> np.ndarray:
        """The weights of the :attr:`target_tail` rows (ones where the runs had no weights)."""
        return self.weight_tail if self.weight_tail is not None else np.ones_like(self.target_tail)

    # ------------------------------------------------------------------ checks
    def check_continuation(self, market, targets, config) -> None:
        """Raise ConfigError unless ``market``/``targets``/``config`` continue this state."""
        if tuple(market.symbols) != self.symbols:
            raise ConfigError(
                f"resume: the market's symbols {list(market.symbols)} differ from the state's {list(self.symbols)}"
            )
        if (
            targets.n_columns != self.n_columns
            or not np.array_equal(targets.column_symbol, self.column_symbol)
            or not np.array_equal(targets.group, self.group)
        ):
            raise ConfigError(
                "resume: the targets' columns (symbols and portfolios) differ from the state's; "
                "continue with the same strategy and parameter sets"
            )
        if config.config_hash() != self.config_hash:
            raise ConfigError(
                f"resume: the config (hash {config.config_hash()}) differs from the one the state was "
                f"made with ({self.config_hash}); continue with the same settings"
            )
        if (self.weight_tail is not None) != (targets.weights is not None) and self.bars and len(self.target_tail):
            raise ConfigError(
                "resume: the previous run had capital weights and this one has none, or the other way round"
            )
        if self.next_time is not None and market.n_bars and market.index[0] != self.next_time:
            raise ConfigError(
                f"resume: the state ends before the bar at {self.next_time}, but the market starts at "
                f"{market.index[0]}; pass the bars that follow the previous run, without gap or overlap"
            )

    # ------------------------------------------------------------------ the next state
    def advanced(self, market, targets, lag: int, columns: np.ndarray, groups: np.ndarray) -> EngineState:
        """The state after a run over ``market``'s bars (``columns``/``groups`` from the kernel)."""
        T = market.n_bars
        k = min(lag, self.bars + T)

        def last_rows(prev: np.ndarray, rows: np.ndarray) -> np.ndarray:  # the last k of prev + rows
            return rows[T - k :] if T >= k else np.concatenate([prev, rows])[len(prev) + T - k :]

        tail = last_rows(self.target_tail, targets.values)
        wtail = None
        if targets.weights is not None:
            wtail = _frozen(last_rows(self.weight_rows, targets.weights))
        if T:
            step = market.index[-1] - market.index[-2] if T > 1 else pd.Timedelta(market.freq)
            last = (
                market.spot_volume[-1],
                market.perp_volume[-1],
                market.spot_close[-1],
                market.perp_close[-1],
                market.valid[-1],
                market.index[-1] + step,
            )
        else:
            last = (
                self.last_spot_volume,
                self.last_perp_volume,
                self.last_spot_close,
                self.last_perp_close,
                self.last_valid,
                self.next_time,
            )
        spot_volume, perp_volume, spot_close, perp_close, valid, next_time = last
        return EngineState(
            _frozen(columns),
            _frozen(groups),
            _frozen(tail),
            wtail,
            _frozen(spot_volume),
            _frozen(perp_volume),
            _frozen(spot_close),
            _frozen(perp_close),
            _frozen(valid),
            self.bars + T,
            next_time,
            self.symbols,
            self.column_symbol,
            self.group,
            self.config_hash,
        )

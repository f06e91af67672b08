"""The kernels' data layout, in one place: argument tuples, state slots, flag bits, event records.

Every kernel (:mod:`backtest.kernels.simulate`, :mod:`backtest.kernels.fast`), the per-bar rules
they share (:mod:`backtest.kernels.rules`) and the engine around them
(:mod:`backtest.engine`, :mod:`backtest.state`) take these names from here.

Arguments travel as a few named tuples of arrays and scalars (numba compiles them as tuples):
:class:`MarketArrays` (per bar and symbol), :class:`Book` (targets and the column/portfolio
layout), :class:`Params` (flexible per-column parameters), :class:`Tiers` (maintenance
brackets), :class:`Settings` (run-wide scalars), :class:`StateArrays` (where a run starts and
stops) and :class:`Outputs` (per-bar or final-row results).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

#: Cumulative cost components of a column (quote, signed: + is a gain). ``C_SPOT``/``C_PERP`` hold
#: the price PnL of the hedged coins of each leg, ``C_UNH`` that of a leg's coins without a
#: matching opposite leg (see ``rules.revalue_nb``).
N_COMP = 8
C_FUND, C_FEE, C_SLIP, C_BORROW, C_SPOT, C_PERP, C_LIQ, C_UNH = 0, 1, 2, 3, 4, 5, 6, 7

#: Event records: rows of a float64 (R, N_REC_FIELDS) buffer with the fields bar, column (or
#: ``-1 - group`` for a portfolio's transfer), kind (``K_*``), leg (``LEG_*``), qty, price, rate,
#: cash, fee (see :mod:`backtest.result` for their meaning), at these positions.
R_BAR, R_COL, R_KIND, R_LEG, R_QTY, R_PRICE, R_RATE, R_CASH, R_FEE = 0, 1, 2, 3, 4, 5, 6, 7, 8
N_REC_FIELDS = 9
K_FILL, K_FUNDING, K_BORROW, K_TRANSFER, K_LIQ, K_STOP, K_SKIP = 0, 1, 2, 3, 4, 5, 6
LEG_SPOT, LEG_PERP, LEG_NONE = 0, 1, -1
#: Wallet transfers smaller than this (quote) are rounding noise and skipped.
MIN_TRANSFER = 1e-9

#: Slots of a column's state (``StateArrays.columns[c]``): what a run needs to continue on the
#: next bars. Quantities in coins (spot ``s``, perp ``q``), quote amounts (perp cost ``q * entry``,
#: futures wallet, last valuation prices of both legs), the last executed target, the pending
#: close of the legs after a liquidation (0/1), the bar of a pending re-entry (-1: none), the
#: cumulative components, their cached partial sum (initial share + funding + fees + slippage +
#: borrow), the bracket hint, the liquidation pre-check level, the bar of a scheduled top-up
#: (-1: none), the column's initial capital share (quote), the suspension of rebalancing and
#: re-entry until the target changes (0/1), a rebalance due at the next bar (0/1) and the capital
#: share (fraction of the portfolio's equity) of the last sizing. Bars held in the state (top-up,
#: re-entry) count from the run's first bar while it runs and from its end between runs.
S_S, S_Q, S_COST, S_FW, S_SV, S_PV, S_LASTX, S_PCLOSE, S_PRE = 0, 1, 2, 3, 4, 5, 6, 7, 8
S_COMP = 9  # 9 .. 16: the N_COMP components
S_COMP7, S_KC, S_LIQ, S_TOPUP, S_INIT, S_SUSP, S_REB, S_SHARE = 17, 18, 19, 20, 21, 22, 23, 24
#: Scratch slots of the general kernel within one bar (meaningless between bars): borrowed
#: coins before the bar and after its orders, perp coins after its orders, the futures margin
#: ratio at the bar's adverse mark extreme (isolated; NaN: none).
S_BPREV, S_BOPEN, S_QOPEN, S_MRF = 25, 26, 27, 28
NSC = 29
#: Slots of a portfolio's state (``StateArrays.groups[g]``): spot quote cash, cross futures
#: wallet, scheduled cross top-up (as ``S_TOPUP``), stop state (``STOP_*``).
G_CASH, G_FW, G_TOPUP, G_STOP = 0, 1, 2, 3
NSG = 4
#: ``G_STOP`` values: trading, closing every leg at the next open (equity reached zero), stopped.
STOP_NONE, STOP_CLOSING, STOP_DONE = 0.0, 1.0, 2.0
#: Milliseconds per hour (whole-hour borrow, rebalancing schedules).
MS_H = 3_600_000

#: Bits of ``Settings.flags``: which outputs are written per bar (else only the final row) and
#: whether per-bar cash-flow events (funding, borrow) are recorded.
F_EQUITY, F_GROUP_EQUITY, F_COMPONENTS, F_POSITIONS, F_MARGIN, F_CASHFLOW_EVENTS = 1, 2, 4, 8, 16, 32
#: Hints: some column has a finite delta band / a top-up threshold / rebalancing (else those
#: checks are skipped).
F_HAS_BAND, F_HAS_TOPUP, F_HAS_REB = 64, 128, 256

#: ``Settings.after_liq`` codes (``BacktestConfig.after_liquidation``).
AFTER_CLOSE_SPOT, AFTER_HOLD_SPOT, AFTER_REENTER, AFTER_CLOSE_REENTER = 0, 1, 2, 3


class MarketArrays(NamedTuple):
    """Market inputs, (T, N) per bar and symbol unless noted.

    ``so_ref``/``po_ref``: the spot/perp reference price of a fill at bar ``j`` (its open, or
    bar ``j - 1``'s close for delay 0), valid where ``ref_valid``; ``valid``: the bar has
    prices; ``funding_value``: quote per perp coin settled at the bar (0: none);
    ``vol0_spot``/``vol0_perp`` (N,): volumes of the bar before bar 0 (0 for a new backtest);
    ``spot_open``/``spot_high``/``spot_low``: the bar's own spot open and extremes (the margin
    account of borrowed legs); ``time_ms`` (T,) int64: each bar's open, ms since the epoch.
    """

    so_ref: np.ndarray
    po_ref: np.ndarray
    ref_valid: np.ndarray
    spot_close: np.ndarray
    spot_volume: np.ndarray
    perp_volume: np.ndarray
    mark_open: np.ndarray
    mark_high: np.ndarray
    mark_low: np.ndarray
    mark_close: np.ndarray
    valid: np.ndarray
    funding_value: np.ndarray
    funding_rate: np.ndarray
    vol0_spot: np.ndarray
    vol0_perp: np.ndarray
    spot_open: np.ndarray
    spot_high: np.ndarray
    spot_low: np.ndarray
    time_ms: np.ndarray


class Book(NamedTuple):
    """Targets and the layout of columns in portfolios (groups).

    ``targets`` (t_off + T, C) and ``weights`` (flexible, as targets) hold ``t_off`` rows before
    bar 0 (the last targets of the previous run, still to be executed); ``col_sym`` (C,): the
    market symbol of each column; ``grp_cols``/``grp_start``: the columns of group ``g`` are
    ``grp_cols[grp_start[g]:grp_start[g + 1]]`` (CSR layout).
    """

    targets: np.ndarray
    weights: np.ndarray
    col_sym: np.ndarray
    grp_cols: np.ndarray
    grp_start: np.ndarray
    t_off: int


class Params(NamedTuple):
    """Flexible per-column parameters: 2-D of shape (1, 1), (1, C), (T, 1) or (T, C) (see ``flex_nb``).

    Rates are fractions (fees, slippage, clearance; ``borrow_h`` per hour), ``impact`` the
    volume-participation coefficient, ``topup_thr`` a margin ratio (NaN: none), ``delta_band``
    a fraction of the spot leg (inf: none), ``reb_every_ms`` the rebalancing period in ms (inf:
    check every bar), ``reb_band`` the rebalancing tolerance, a fraction of the target notional
    (inf: no rebalancing); ``lot`` the pair's common lot (coins, 0: none), ``min_qty`` and
    ``min_notional`` the least order (coins, quote; 0: none).
    """

    leverage: np.ndarray
    spot_fee: np.ndarray
    perp_fee: np.ndarray
    slip_frac: np.ndarray
    impact: np.ndarray
    borrow_h: np.ndarray
    clearance: np.ndarray
    topup_thr: np.ndarray
    delta_band: np.ndarray
    reb_every_ms: np.ndarray
    reb_band: np.ndarray
    lot: np.ndarray
    min_qty: np.ndarray
    min_notional: np.ndarray


class Tiers(NamedTuple):
    """Maintenance brackets, (N, K) per symbol (see :class:`backtest.tiers.TierTable`).

    ``hi_sorted``: every symbol's bracket bounds ascend (the last bracket found is then a
    valid search hint, see ``bracket_cached_nb``).
    """

    lo: np.ndarray
    hi: np.ndarray
    mmr: np.ndarray
    cum: np.ndarray
    n: np.ndarray
    hi_sorted: bool


class Settings(NamedTuple):
    """Run-wide scalars.

    ``lag``: bars between a target row and its execution (>= 1; delay 0 runs on shifted
    reference prices); ``cross``: cross or portfolio margin; ``haircut``: portfolio margin's spot collateral haircut (< 0: not portfolio
    margin); ``topup_delay``: bars from a top-up's detection to its transfer; ``after_liq``:
    ``AFTER_*`` code; ``flags``: ``F_*`` bits; ``bar_ms``: bar length in ms; ``cooldown``: bars
    from a liquidation to the re-entry of ``AFTER_CLOSE_REENTER`` (>= 1); ``spot_liq_level``:
    margin level (assets / liabilities) at which a borrowed spot leg is liquidated (0: never,
    portfolio margin); ``spot_liq_fee``: its liquidation fee, a fraction of the bought-back value.
    """

    lag: int
    cross: bool
    haircut: float
    topup_delay: int
    after_liq: int
    flags: int
    bar_ms: int
    cooldown: int
    spot_liq_level: float
    spot_liq_fee: float


class StateArrays(NamedTuple):
    """Where a run starts and, written back in place, where it stops: ``columns`` (C, NSC) of
    ``S_*`` slots and ``groups`` (G, NSG) of ``G_*`` slots."""

    columns: np.ndarray
    groups: np.ndarray


class Outputs(NamedTuple):
    """Results written in place: ``equity`` (T|1, C), ``group_equity`` (T|1, G), ``comps``
    (N_COMP, T|1, C), ``spot``/``perp`` positions and ``mr``/``dl`` margin ratio and distance to
    liquidation (T|1, C). One row per bar where the matching ``F_*`` bit is set, else one row
    with the final values (margin: left untouched)."""

    equity: np.ndarray
    group_equity: np.ndarray
    comps: np.ndarray
    spot: np.ndarray
    perp: np.ndarray
    mr: np.ndarray
    dl: np.ndarray


# ------------------------------------------------------------------ cross-venue spread hedges
#: Slots of a spread column's state (:mod:`backtest.kernels.spread`; rules: :mod:`backtest.spread`):
#: leg A and leg B coins, their costs (coins x entry, quote), the venues' futures wallets
#: (quote), the transfer in flight (quote, net of its fee; 0: none), the coins a spot leg A
#: had borrowed before the bar (held between the two halves of a cross run's bar) and the
#: transfer's arrival bar, the legs' last valuation prices, the last executed target, the
#: pending close (0/1), the re-entry bar (-1: none), a collateral rebalance due (0/1), the
#: column's initial capital (quote), the eight cumulative components and the splits below. Bars held in the
#: state count as in ``S_*``: from the run's first bar while it runs, from its end between runs.
X_S, X_Q, X_COSTA, X_COSTB, X_BALA, X_BALB, X_FLIGHT, X_BPREV, X_FBAR = 0, 1, 2, 3, 4, 5, 6, 7, 8
X_VA, X_VB, X_LASTX, X_PCLOSE, X_PRE, X_REB, X_INIT = 9, 10, 11, 12, 13, 14, 15
X_COMP = 16  # 16 .. 23: the N_COMP components (C_SPOT: leg A's price PnL, C_PERP: leg B's)
#: Leg A's share of the funding component and the transfer fees' share of the fees (quote,
#: cumulative), and the number of transfers sent.
X_FUNDA, X_TFEE, X_NTR = 24, 25, 26
#: A sizing held short of its target by a venue's margin balance (0/1; see ``backtest.spread``).
X_CAP = 27
#: The rates (account currency per unit of the venue's quote) venue A's and venue B's balances
#: are valued at now (1.0 for a venue quoted in the account currency), and the cumulative
#: revaluation of the venues' balances by moves of those rates (account currency; inside the
#: ``unhedged`` component).
X_RA, X_RB, X_FX = 28, 29, 30
#: Venue switching (``SpreadSettings.switching``): the venue each leg is on now (an index into
#: that leg's venues), the balances left on venues no leg is on (account currency: each one at
#: most the transfer fee, not worth sending), and the part of the amount in flight that goes to
#: leg A's venue (the rest goes to leg B's).
X_VENA, X_VENB, X_IDLE, X_FLA = 31, 32, 33, 34
NSX = 35


class SpreadParams(NamedTuple):
    """Flexible per-column parameters of spread hedges (see ``flex_nb``): ``leverage`` (leg B's,
    and leg A's unless ``leverage_a`` differs), ``fee_a``/``fee_b`` the venues' fees,
    ``slip_frac`` and ``impact`` (as :class:`Params`), ``clearance`` the clearance fee rate,
    ``band`` the collateral rebalance band (fraction of a venue's share; inf: never),
    ``transfer_fee`` (quote per transfer), ``leverage_a`` leg A's perp leverage, ``borrow_h`` the
    hourly borrow rate of a borrowed spot leg A (fraction per hour)."""

    leverage: np.ndarray
    fee_a: np.ndarray
    fee_b: np.ndarray
    slip_frac: np.ndarray
    impact: np.ndarray
    clearance: np.ndarray
    band: np.ndarray
    transfer_fee: np.ndarray
    leverage_a: np.ndarray
    borrow_h: np.ndarray


class SpreadSettings(NamedTuple):
    """Run-wide scalars of spread hedges: ``lag`` (as :class:`Settings`), ``after_liq`` (``AFTER_*``),
    ``cooldown`` (bars), ``transfer_delay`` (bars from a transfer's departure to its arrival),
    ``flags`` (``F_*`` output bits), ``a_spot`` (leg A is spot coins bought with venue A's quote
    cash, not a perp: no funding, no liquidation, no cost basis), ``fx`` (a venue's quote differs
    from the account currency and :class:`SpreadRates` convert it; False: every rate is 1);
    ``spot_level`` the margin level (assets / borrowed value) at which a borrowed spot leg A is
    bought back, ``spot_liq_fee`` that buy-back's fee (fraction of its value), ``bar_ms`` the
    bar length (ms; the borrow interest's whole hours); ``n_coins`` the coins per venue (a leg's
    markets stack its venues' symbols: venue ``v``'s coin ``n`` is symbol ``v * n_coins + n``),
    ``switching`` the legs may change venue (:class:`SpreadVenues`; fees per venue),
    ``switch_keep`` a switch keeps open the leg whose venue and side stay, ``cross_a``/``cross_b`` the
    columns of a portfolio share leg A's / leg B's venue's margin account (cross margin: one
    liquidation per account)."""

    lag: int
    after_liq: int
    cooldown: int
    transfer_delay: int
    flags: int
    a_spot: bool
    fx: bool
    spot_level: float
    spot_liq_fee: float
    bar_ms: int
    n_coins: int
    switching: bool
    switch_keep: bool
    cross_a: bool
    cross_b: bool


class SpreadVenues(NamedTuple):
    """The venue each leg should be on, per target row and column (an index into the leg's
    venues; NaN: stay), rows as :class:`Book` ``targets``; read with ``SpreadSettings.switching``."""

    a: np.ndarray
    b: np.ndarray


class SpreadRates(NamedTuple):
    """Per-bar rates of each venue's quote currency in the account currency (USDT per USDC), at
    each bar's open and close, (T, V) each: column ``v`` for the leg's venue ``v`` (one column
    without venue switching; all 1.0 for a venue quoted in the account currency). Read only when
    :class:`SpreadSettings` ``fx`` is set ((1, 1) placeholders otherwise)."""

    a_open: np.ndarray
    a_close: np.ndarray
    b_open: np.ndarray
    b_close: np.ndarray


class SpreadOutputs(NamedTuple):
    """Spread results written in place, (T|1, C) each: ``equity``, ``comps`` (N_COMP, T|1, C),
    positions ``pos_a``/``pos_b`` (coins), margin ratios ``mr_a``/``mr_b`` at the close (NaN:
    flat leg), the venues ``ven_a``/``ven_b`` the legs are on (venue switching; rows as
    positions, else (1, 1) and not written) and the amount ``in_flight`` (quote; per bar it is written only where non-zero:
    the caller passes zeros). One row per bar where the matching ``F_*`` bit is set (equity,
    components, positions, margin; in flight follows equity), else the final values (margin:
    untouched)."""

    equity: np.ndarray
    comps: np.ndarray
    pos_a: np.ndarray
    pos_b: np.ndarray
    mr_a: np.ndarray
    mr_b: np.ndarray
    in_flight: np.ndarray
    ven_a: np.ndarray
    ven_b: np.ndarray

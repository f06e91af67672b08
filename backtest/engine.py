"""The engine API: ``run_backtest(market, targets_or_strategy, config) -> BacktestResult``.

A thin layer: it checks inputs, turns the config and per-column parameters into flexible
NumPy arrays packed in the kernels' argument tuples (:mod:`backtest.kernels.layout`), calls
:func:`backtest.kernels.simulate.simulate_range_nb` once (or
:func:`~backtest.kernels.simulate.simulate_parallel_nb` with ``parallel=True``) and wraps the output.
When every portfolio is one column in isolated margin without top-ups it calls the specialised
:func:`backtest.kernels.fast.fast_range_nb` instead (same results, faster; ``kernel=``).
It never imports vectorbt; the summary statistics of a result are in :mod:`reports.metrics`.

Rules of the simulation (see the README, "The rules carry follows", and :mod:`backtest.kernels.simulate`)
---------------------------------------------------------------------------------------
* **Timing.** Target row ``i`` is read at bar ``i``'s close and executed at the open of bar
  ``i + execution_delay_bars`` (delay 0, opt-in only: at bar ``i``'s close price). The position
  held during bar ``j`` (after that bar's fills) receives ``-q * funding_value[j]``.
* **When it trades.** A column trades when its target is finite and differs from the last
  target it executed (NaN = keep), when its spot notional drifts past
  ``rebalance_notional_band`` of its target (checked at every close, traded at the next open;
  ``rebalance_every_hours`` adds calendar rebalancing), after a liquidation per
  ``after_liquidation`` (default: close the unhedged leg at the next open, re-enter after
  ``reentry_cooldown_hours``), for a hedge-keeping margin top-up, or to close every leg of a
  portfolio whose equity reached zero (it then stops). Invalid bars never trade (the order
  waits for the next valid bar while the target persists). No position is held over a bar
  outside its symbol's tradable span (``Market.tradable``: before its funding is known,
  after it ends, in a funding hole skipped with ``funding_gaps="no_trade"``): the target of
  a row executed at such a bar is 0, so the legs close at the open of its first bar.
* **Sizing.** Capital share of a column = portfolio equity at the execution bar's open x its
  weight / the sum of weights of the portfolio's *active* columns (non-zero target, or NaN
  target while holding a position). Exposure ``x`` buys ``N = share * |x| * L / (L + 1)`` quote
  of spot at the spot open (sold short for ``x < 0``) and the perp at ``-spot`` coins, both
  rounded to the pair's common lot when ``markets_path`` is set (an order below its minimum is
  skipped and recorded).
* **Wallets.** After a column's fills (a portfolio's, in cross mode) the futures margin
  balance is reset to ``sum |q| * perp price / L`` by a transfer from the spot wallet (an
  unrealized loss is refilled; an unrealized profit stays in the futures wallet); spot quote
  cash may dip below zero by the fees (an interest-free quote loan, small by construction).
  A top-up that the quote cash cannot cover sells spot and buys back the same perp coins.
* **Costs.** Fees ``|q| * fill price * rate`` per leg; slippage ``slippage_bps`` plus
  ``volume_participation_coefficient * |q| / volume`` (volume of the last completed bar) as a
  fraction of the reference price, booked apart from fees; borrow on short spot in whole
  hours as Binance charges it (one hour at borrowing, one at each full hour).
* **Liquidation.** Checked after the fills against the bar's adverse mark extreme; closes the
  perp at the liquidation price (or the mark open on a gap) and charges
  ``clearance_fee_rate * notional``, floored at the margin left; the insurance fund covers a
  deficit (isolated, cross). Portfolio margin (``margin_mode="portfolio"``): cross, with the
  quote cash and the spot legs (long at ``1 - spot_collateral_haircut``, borrowed at
  ``1 + haircut``, moving with their mark inside the bar) in the margin balance; each column's
  adverse direction is that of its net delta. Borrowed spot legs (isolated and cross) sit in
  the portfolio's margin account (its quote cash and long coins), bought back when its margin
  level reaches ``spot_margin_liquidation_level`` at the bar's spot highs.
* **Components.** ``equity - initial = funding + fees + slippage + borrow + spot_price +
  perp_price + liquidation + unhedged`` at every bar; the price components hold the hedged
  coins' PnL, ``unhedged`` that of a leg without a matching opposite leg.

Example::

    from backtest import run_backtest, BacktestConfig
    res = run_backtest(market, 1.0, BacktestConfig(perp_leverage=2))   # hold a full carry
    res.equity, res.pnl("funding"), res.events   # statistics: reports.metrics.stats(res)
"""

from __future__ import annotations

import math
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from backtest.buffers import OUTPUT_POOL
from backtest.config import DEFAULT_MAINTENANCE_MARGIN_RATE, OPTIONAL_NUMBERS, BacktestConfig, implausible
from backtest.kernels.layout import (
    AFTER_CLOSE_REENTER,
    AFTER_CLOSE_SPOT,
    AFTER_HOLD_SPOT,
    AFTER_REENTER,
    F_CASHFLOW_EVENTS,
    F_COMPONENTS,
    F_EQUITY,
    F_GROUP_EQUITY,
    F_HAS_BAND,
    F_HAS_REB,
    F_HAS_TOPUP,
    F_MARGIN,
    F_POSITIONS,
    K_FILL,
    K_LIQ,
    K_STOP,
    N_COMP,
    N_REC_FIELDS,
    R_BAR,
    R_COL,
    R_KIND,
    R_RATE,
    S_BPREV,
    S_MRF,
    Book,
    MarketArrays,
    Outputs,
    Params,
    Settings,
    StateArrays,
    Tiers,
)
from backtest.targets import Targets
from backtest.tiers import TierTable, load_tiers
from data.errors import ConfigError
from data.market import Market
from data.units import MS_PER_HOUR, bar_hours

if TYPE_CHECKING:
    from backtest.state import EngineState


#: Parameters that may vary per column (shape (C,)) or per bar and column (shape (T, C)).
COLUMN_PARAMS = (
    "perp_leverage",
    "spot_taker_fee_rate",
    "spot_maker_fee_rate",
    "perp_taker_fee_rate",
    "perp_maker_fee_rate",
    "slippage_bps",
    "volume_participation_coefficient",
    "borrow_annual_rate",
    "clearance_fee_rate",
    "topup_margin_ratio",
    "rebalance_delta_band",
    "rebalance_every_hours",
    "rebalance_notional_band",
)
AFTER_LIQ_CODES = {
    "close_and_reenter": AFTER_CLOSE_REENTER,
    "close_spot": AFTER_CLOSE_SPOT,
    "hold_spot": AFTER_HOLD_SPOT,
    "reenter": AFTER_REENTER,
}
#: Names accepted by ``run_backtest(outputs=...)``: per-bar outputs, plus ``"events"`` for the
#: per-bar cash-flow events (funding settlements and borrow charges; fills, transfers and
#: liquidations are always recorded).
OUTPUTS = ("equity", "group_equity", "components", "positions", "margin", "events")
#: What ``full=False`` keeps per bar (the rest: final values only; margin outputs NaN). Lean
#: runs record fills, transfers and liquidations but not one funding/borrow row per bar: those
#: cash flows are in the final component totals.
LEAN_OUTPUTS = ("equity", "group_equity")
#: Portfolios per block of the fast kernel: a grid of more runs block after block (each block
#: over every bar), so that the blocks' column state (~300 bytes each) stays in cache; its
#: events are merged back into bar order. Measured on 1,000 hourly bars (``backtest.app.bench``):
#: 100,000 columns in one pass ran at 52 M bar-columns/s against 68 M for 1,000; in blocks 56 M.
FAST_BLOCK_GROUPS = 4096
#: ``kernel="auto"`` runs the structure-of-arrays kernel (:mod:`backtest.kernels.soa`) for lean
#: one-symbol grids of at least this many portfolios (serially, or in chunks with ``parallel``), where it applies (measured on
#: ``backtest.app.bench``'s grid: 1.15-1.7x the fast kernel from 256 columns up, about even at
#: 16-64, 3.4x slower on one column; see the module's docstring).
SOA_MIN_GROUPS = 64


def _ro(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64) if a.dtype != np.bool_ else np.ascontiguousarray(a)
    if a.flags.writeable:
        if a.base is not None:
            a = a.copy()
        a.flags.writeable = False
    return a


def flex_param(name: str, value: Any, shape: tuple[int, int]) -> np.ndarray:
    """A scalar, (C,), (1, C), (T, 1) or (T, C) value as a read-only 2-D float array."""
    a = np.asarray(value, dtype=np.float64)
    T, C = shape
    if a.ndim == 0:
        a = a.reshape(1, 1)
    elif a.ndim == 1:
        if a.shape[0] != C:
            raise ConfigError(f"column parameter {name!r} has {a.shape[0]} values for {C} columns")
        a = a.reshape(1, C)
    elif a.ndim == 2:
        if a.shape[0] not in (1, T) or a.shape[1] not in (1, C):
            raise ConfigError(f"column parameter {name!r} has shape {a.shape}; expected (1|{T}, 1|{C})")
    else:
        raise ConfigError(f"column parameter {name!r} must be a scalar, (C,) or (T, C) array")
    return _ro(a)


def to_targets(market: Market, targets: Any) -> Targets:
    """Normalise a Targets, scalar, (T, N) array, DataFrame or strategy callable to Targets."""
    if callable(targets) and not isinstance(targets, (Targets, np.ndarray, pd.DataFrame)):
        targets = targets(market)
    if isinstance(targets, Targets):
        if targets.values.shape[0] != market.n_bars:
            raise ConfigError(f"targets have {targets.values.shape[0]} bars, the market {market.n_bars}")
        if len(targets.column_symbol) and (
            targets.column_symbol.min() < 0 or targets.column_symbol.max() >= market.n_symbols
        ):
            raise ConfigError("targets.column_symbol points outside market.symbols")
        return targets
    return Targets.from_array(market, targets)


def tier_table(market: Market, config: BacktestConfig) -> TierTable:
    """Maintenance brackets for the market's symbols per the config (flat rate wins)."""
    if config.maintenance_margin_rate is not None:
        return TierTable.flat(market.n_symbols, config.maintenance_margin_rate)
    if config.tiers_path is not None:
        return load_tiers(config.tiers_path, market.perp_symbols)
    return TierTable.flat(market.n_symbols, DEFAULT_MAINTENANCE_MARGIN_RATE)


def run_backtest(
    market: Market,
    targets: Any,
    config: BacktestConfig | dict | None = None,
    *,
    column_params: dict[str, Any] | None = None,
    full: bool = True,
    outputs: tuple[str, ...] | list[str] | None = None,
    parallel: bool | int = False,
    kernel: str = "auto",
    resume: EngineState | None = None,
):
    """Simulate spot + perp positions that follow target exposures.

    Parameters
    ----------
    market : Market
        Aligned bars (T bars x N symbols).
    targets : Targets, float, ndarray (T, N), DataFrame or callable
        Target exposure per bar and column in [-1, 1] (+1 full carry, -1 full reverse carry,
        NaN keep); a callable ``strategy(market)`` returning any of these.
    config : BacktestConfig or dict, optional
        Engine settings (defaults if omitted).
    column_params : dict, optional
        Per-column (C,) or per-bar (T, C) overrides of the numeric settings named in
        :data:`COLUMN_PARAMS` (grids: one column per parameter set).
    full : bool
        Keep every per-bar output (default). False keeps only equity and group equity per bar,
        final component totals and positions (margin outputs NaN), and the fill, transfer and
        liquidation events (no per-bar funding or borrow rows): less memory and time for large
        grids. Same as ``outputs=LEAN_OUTPUTS``.
    outputs : sequence of str, optional
        Overrides ``full``: the per-bar outputs to keep, among :data:`OUTPUTS`
        (``equity``, ``group_equity``, ``components``, ``positions``, ``margin``, ``events``).
        An output not named holds one row, its value at the last bar (margin: NaN); without
        ``"events"`` the events table has fills, transfers and liquidations but no funding or
        borrow rows (their totals are in the components). The simulation is the same: named
        outputs are identical whatever else is asked. E.g. ``outputs=("group_equity",)`` for
        the fastest grid sweeps. Portfolios of one column in isolated margin, in column order
        (grids of single-symbol portfolios), report their column's equity as their portfolio
        equity: ``group_equity`` and ``equity`` are then one array (the portfolio's own sum of
        cash, legs and wallet agrees to rounding, 1e-12 relative; tested).
        Output arrays come from :data:`backtest.buffers.OUTPUT_POOL`, which reuses the memory
        of results that no longer exist.
    parallel : bool or int
        Run portfolios (groups) in parallel threads (numba ``prange``): True = numba's thread
        count, an int = that many chunks of groups. Results are bit-identical to the serial
        run (groups are independent; events come back in the serial order). Useful when there
        are many portfolios; a single portfolio always runs serially.
    kernel : {"auto", "general", "fast", "soa"}
        Simulation kernel. ``"auto"`` (default) uses the specialised
        :mod:`backtest.kernels.fast` kernel when every portfolio is one column in isolated
        margin without margin top-ups (same results, faster), else the general kernel; for
        lean grids of one symbol (``SOA_MIN_GROUPS`` portfolios or more) the
        structure-of-arrays :mod:`backtest.kernels.soa` (same results again);
        ``"general"`` forces the general kernel; ``"fast"`` and ``"soa"`` require theirs (ConfigError
        when the run is outside its scope). The result's ``kernel`` attribute names the one used.
    resume : EngineState, optional
        Continue a backtest from where an earlier run stopped (its ``result.state``): the
        market must start with the bar after that run's last one, with the same symbols, the
        same columns and the same config (checked). Positions, wallets, cumulative components
        and decided-but-unexecuted targets carry over, so consecutive chunks joined with
        :meth:`BacktestResult.chain` equal one run over the whole period bit for bit. Targets
        are the new bars' only (the state holds the last ``execution_delay_bars`` rows).

    Returns
    -------
    BacktestResult
    """
    from backtest.kernels import simulate as K
    from backtest.kernels.fast import fast_range_nb
    from backtest.kernels.soa import soa_applies, soa_parallel_nb, soa_range_nb
    from backtest.result import BacktestResult
    from backtest.state import EngineState

    if config is None:
        config = BacktestConfig()
    elif isinstance(config, dict):
        config = BacktestConfig.from_dict(config)
    if not isinstance(market, Market):
        raise ConfigError(f"market must be a backtest.Market, got {type(market).__name__}")
    if "perp_only" in market.data_flags:
        raise ConfigError(
            "the market has no spot prices (loaded with spot=False): a spot/perp hedge needs them; "
            "perp-against-perp hedges between venues run with backtest.spread.run_spread"
        )
    tg = to_targets(market, targets)
    T, C = tg.values.shape
    params = {name: getattr(config, name) for name in COLUMN_PARAMS}
    for name, value in (column_params or {}).items():
        if name not in COLUMN_PARAMS:
            import difflib

            close = difflib.get_close_matches(name, COLUMN_PARAMS, n=1)
            raise ConfigError(
                f"{name!r} cannot vary per column"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; allowed: {list(COLUMN_PARAMS)}"
            )
        params[name] = value
    for name in OPTIONAL_NUMBERS:
        if name in params and params[name] is None:
            params[name] = np.nan if name == "topup_margin_ratio" else np.inf
    shape = (T, C)
    fx = {name: flex_param(name, value, shape) for name, value in params.items()}
    for name, a in fx.items():
        if name in ("perp_leverage", "rebalance_every_hours") and not (a > 0).all():
            raise ConfigError(f"{name} must be > 0 in every column")
        if name not in ("topup_margin_ratio",) and (a < 0).any():
            raise ConfigError(f"{name} must be >= 0 in every column")
        finite = a[np.isfinite(a)]
        why = implausible(name, float(finite.max())) if finite.size else None
        if why:
            raise ConfigError(f"column parameter {why}")
    # rebalancing: the schedule in ms (inf: none) and the band (inf: none)
    reb_every_ms = _ro(fx["rebalance_every_hours"] * MS_PER_HOUR)
    reb_band = fx["rebalance_notional_band"]
    taker = config.order_type == "taker"
    spot_fee = fx["spot_taker_fee_rate" if taker else "spot_maker_fee_rate"]
    perp_fee = fx["perp_taker_fee_rate" if taker else "perp_maker_fee_rate"]
    slip = _ro(fx["slippage_bps"] / 1e4)
    if config.borrow_rate_source == "market":
        if market.borrow_hourly_rate is None:
            raise ConfigError("borrow_rate_source='market' but the market has no borrow_hourly_rate")
        borrow = pd.DataFrame(market.borrow_hourly_rate[:, tg.column_symbol]).ffill().fillna(0.0).to_numpy()
        borrow = _ro(borrow)
    else:
        borrow = _ro(fx["borrow_annual_rate"] / (365.0 * 24.0))

    # groups -> contiguous ids, columns sorted by group (CSR layout)
    uniq, gid = np.unique(tg.group, return_inverse=True)
    order = np.argsort(gid, kind="stable").astype(np.int64)
    starts = np.concatenate([[0], np.cumsum(np.bincount(gid, minlength=len(uniq)))]).astype(np.int64)

    delay = config.execution_delay_bars
    if delay == 0:

        def shift(a, fill):
            out = np.empty_like(a)
            out[0] = fill
            out[1:] = a[:-1]
            return _ro(out)

        so_ref, po_ref = shift(market.spot_close, np.nan), shift(market.perp_close, np.nan)
        ref_valid = shift(market.valid, False)
    else:
        so_ref, po_ref, ref_valid = market.spot_open, market.perp_open, market.valid
    if resume is None:
        state = EngineState.initial(
            market.symbols, tg.column_symbol, tg.group, float(config.initial_capital_quote), config.config_hash()
        )
    else:
        if not isinstance(resume, EngineState):
            raise ConfigError(
                f"resume must be the EngineState of an earlier result (result.state), got {type(resume).__name__}"
            )
        resume.check_continuation(market, tg, config)
        state = resume
    t_off = len(state.target_tail)
    target_rows = tg.values if not t_off else np.concatenate([state.target_tail, tg.values])
    if tg.weights is None:
        weights = np.ones((1, 1))
    elif not t_off:
        weights = tg.weights
    else:
        weights = np.concatenate([state.weight_rows, tg.weights])
    weights = _ro(weights)
    col_state = np.array(state.columns, copy=True)
    grp_state = np.array(state.groups, copy=True)
    if delay == 0 and state.bars:  # bar 0's reference is the previous run's last close
        so_ref, po_ref, ref_valid = (np.array(a, copy=True) for a in (so_ref, po_ref, ref_valid))
        so_ref[0], po_ref[0], ref_valid[0] = state.last_spot_close, state.last_perp_close, state.last_valid
        so_ref, po_ref, ref_valid = _ro(so_ref), _ro(po_ref), np.ascontiguousarray(ref_valid)
    tiers = tier_table(market, config)
    tiers.check_leverage(fx["perp_leverage"], market.perp_symbols, column_symbol=tg.column_symbol)
    lot, min_qty, min_notional = _order_limits(market, tg, config)
    hours = bar_hours(market)
    bar_ms = int(round(hours * MS_PER_HOUR))

    if outputs is None:
        outputs = OUTPUTS if full else LEAN_OUTPUTS
    outputs = tuple(outputs)
    unknown = [o for o in outputs if o not in OUTPUTS]
    if unknown:
        raise ConfigError(f"unknown outputs {unknown}; choose from {list(OUTPUTS)}")
    bits = {
        "equity": F_EQUITY,
        "group_equity": F_GROUP_EQUITY,
        "components": F_COMPONENTS,
        "positions": F_POSITIONS,
        "margin": F_MARGIN,
        "events": F_CASHFLOW_EVENTS,
    }
    kflags = 0
    for o in outputs:
        kflags |= bits[o]
    if np.isfinite(fx["rebalance_delta_band"]).any():
        kflags |= F_HAS_BAND
    if not np.isnan(fx["topup_margin_ratio"]).all():
        kflags |= F_HAS_TOPUP
    if np.isfinite(reb_band).any() or np.isfinite(reb_every_ms).any():
        kflags |= F_HAS_REB
    G = len(uniq)
    fast_ok = (
        config.margin_mode == "isolated"
        and bool((np.diff(starts) == 1).all())
        and bool(np.isnan(fx["topup_margin_ratio"]).all())
    )
    # one-column isolated portfolios in column order: a portfolio's equity is its column's
    # (the same per-bar array serves both; the kernel keeps only the last row of its own sum)
    shared_equity = "group_equity" in outputs and fast_ok and G == C and bool((order == np.arange(C)).all())
    if shared_equity:
        kflags = (kflags | F_EQUITY) & ~F_GROUP_EQUITY
    # outputs, allocated here (not in the kernel)
    per_bar_tc = [
        o for o in ("equity", "components", "positions", "margin") if o in outputs or (o == "equity" and shared_equity)
    ]
    n_tc = {"equity": 1, "components": N_COMP, "positions": 2, "margin": 2}
    # one block per output, reused from the last runs whose results are gone (see backtest.buffers)
    views = {o: OUTPUT_POOL.empty((n_tc[o], T, C)) for o in per_bar_tc}
    equity = views["equity"][0] if "equity" in views else np.empty((1, C))
    comps = views["components"] if "components" in views else np.empty((N_COMP, 1, C))
    spot_out, perp_out = (
        (views["positions"][0], views["positions"][1]) if "positions" in views else (np.empty((1, C)), np.empty((1, C)))
    )
    mr_out, dl_out = (
        (views["margin"][0], views["margin"][1])
        if "margin" in views
        else (np.full((1, C), np.nan), np.full((1, C), np.nan))
    )
    group_equity = OUTPUT_POOL.empty((T if "group_equity" in outputs and not shared_equity else 1, G))
    hi_sorted = all(np.all(np.diff(tiers.max_notional[n, : tiers.n_tiers[n]]) >= 0) for n in range(len(tiers.n_tiers)))

    mk = MarketArrays(
        so_ref,
        po_ref,
        ref_valid,
        market.spot_close,
        market.spot_volume,
        market.perp_volume,
        market.mark_open,
        market.mark_high,
        market.mark_low,
        market.mark_close,
        market.valid,
        market.funding_value,
        market.funding_rate,
        _ro(state.last_spot_volume),
        _ro(state.last_perp_volume),
        market.spot_open,
        market.spot_high,
        market.spot_low,
        _bar_times_ms(market),
    )
    target_rows = hold_only_where_tradable(market.tradable, tg.column_symbol, target_rows, t_off, max(delay, 1))
    book = Book(_ro(target_rows), weights, tg.column_symbol, _ro_int(order), _ro_int(starts), t_off)
    prm = Params(
        fx["perp_leverage"],
        spot_fee,
        perp_fee,
        slip,
        fx["volume_participation_coefficient"],
        borrow,
        fx["clearance_fee_rate"],
        fx["topup_margin_ratio"],
        fx["rebalance_delta_band"],
        reb_every_ms,
        reb_band,
        lot,
        min_qty,
        min_notional,
    )
    tier_arrays = Tiers(
        _ro(tiers.min_notional),
        _ro(tiers.max_notional),
        _ro(tiers.mmr),
        _ro(tiers.cum),
        _ro_int(tiers.n_tiers),
        bool(hi_sorted),
    )
    run = Settings(
        max(delay, 1),
        config.margin_mode in ("cross", "portfolio"),
        float(config.spot_collateral_haircut) if config.margin_mode == "portfolio" else -1.0,
        int(config.topup_delay_bars),
        AFTER_LIQ_CODES[config.after_liquidation],
        kflags,
        bar_ms,
        max(1, math.ceil(config.reentry_cooldown_hours * MS_PER_HOUR / bar_ms - 1e-9)),
        0.0 if config.margin_mode == "portfolio" else float(config.spot_margin_liquidation_level),
        float(config.spot_liquidation_fee_rate),
    )
    st = StateArrays(col_state, grp_state)
    kout = Outputs(equity, group_equity, comps, spot_out, perp_out, mr_out, dl_out)
    args = (mk, book, prm, tier_arrays, run, st, kout)
    if kernel not in ("auto", "general", "fast", "soa"):
        raise ConfigError(f"kernel must be 'auto', 'general', 'fast' or 'soa', got {kernel!r}")
    if kernel in ("fast", "soa") and not fast_ok:
        raise ConfigError(f"kernel={kernel!r} needs one column per portfolio, isolated margin and no top-ups")
    use_fast = fast_ok and kernel != "general"
    # the structure-of-arrays kernel: lean one-symbol grids on one core (see backtest.kernels.soa)
    use_soa = use_fast and (kernel == "soa" or (kernel == "auto" and G >= SOA_MIN_GROUPS))
    use_soa = use_soa and soa_applies(kflags, prm, book)
    if kernel == "soa" and not use_soa:
        raise ConfigError("kernel='soa' needs lean outputs, one symbol and per-bar-constant parameters")
    range_nb = soa_range_nb if use_soa else fast_range_nb if use_fast else K.simulate_range_nb
    cap = _record_capacity(market, tg, "events" in outputs)
    n_chunks = (_n_threads() if parallel is True else int(parallel)) if parallel else 1
    n_chunks = max(1, min(n_chunks, G))
    threaded = n_chunks > 1
    if use_fast:  # blocks of portfolios whose state stays in cache (FAST_BLOCK_GROUPS)
        n_chunks = max(n_chunks, -(-G // FAST_BLOCK_GROUPS))
    t_kernel = time.perf_counter()
    if n_chunks == 1:
        rec = OUTPUT_POOL.empty((cap, N_REC_FIELDS))
        n = range_nb(0, G, *args, rec)
        if n > rec.shape[0]:  # the estimate was short: rerun with the exact size, from the same state
            rec = np.empty((n, N_REC_FIELDS))
            col_state[:], grp_state[:] = state.columns, state.groups
            n = range_nb(0, G, *args, rec)
        records = rec[:n]  # a view: the untouched rest of the buffer was never paged in
    else:
        # chunks of whole groups with about equal numbers of columns
        bounds = np.searchsorted(starts, np.linspace(0, C, n_chunks + 1), side="left").astype(np.int64)
        bounds[0], bounds[-1] = 0, G
        bounds = np.unique(bounds)
        ncols = np.diff(starts[bounds])
        caps = (cap * ncols // max(C, 1) + 1024).astype(np.int64)
        rec_bounds = np.concatenate([[0], np.cumsum(caps)]).astype(np.int64)
        rec = OUTPUT_POOL.empty((rec_bounds[-1], N_REC_FIELDS))  # (a scratch: back to the pool after the merge)

        def chunks(rec_bounds, rec):
            if threaded:
                if use_soa:
                    return soa_parallel_nb(bounds, rec_bounds, *args, rec)
                return K.simulate_parallel_nb(use_fast, bounds, rec_bounds, *args, rec)
            return np.array(  # one core: the blocks one after the other
                [
                    range_nb(g0, g1, *args, rec[r0:r1])
                    for g0, g1, r0, r1 in zip(bounds, bounds[1:], rec_bounds, rec_bounds[1:])
                ],
                np.int64,
            )

        counts = chunks(rec_bounds, rec)
        if (counts > caps).any():
            rec_bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
            rec = np.empty((rec_bounds[-1], N_REC_FIELDS))
            col_state[:], grp_state[:] = state.columns, state.groups
            counts = chunks(rec_bounds, rec)
        records = OUTPUT_POOL.empty((int(counts.sum()), N_REC_FIELDS))
        K.merge_records_nb(rec, rec_bounds, counts, records)
        del rec
    t_kernel = time.perf_counter() - t_kernel
    col_state[:, S_BPREV : S_MRF + 1] = 0.0  # the kernels' per-bar scratch slots
    if shared_equity:
        group_equity = equity
        if "equity" not in outputs:
            equity = equity[-1:]
    out = (equity, group_equity, comps, spot_out, perp_out, mr_out, dl_out, records)
    flags: tuple[str, ...] = ("same_bar_execution",) if delay == 0 else ()
    flags += tuple(market.data_flags)
    if kflags & F_HAS_TOPUP and _late_topups(market, tg, fx["topup_margin_ratio"], tiers):
        flags += ("topup_too_late",)
    liqs = records[records[:, R_KIND] == K_LIQ]
    covered = liqs[liqs[:, R_RATE] > 0]
    if len(covered):
        warnings.warn(
            f"{len(covered)} liquidation(s) went through the bankruptcy price; the insurance fund covered "
            f"{covered[:, R_RATE].sum():,.2f} quote of deficit (booked in the liquidation component; the events' rate)",
            stacklevel=2,
        )
        flags += ("insurance_cover",)
    if slippage_capped(records):
        flags += ("slippage_capped",)
    stops = records[records[:, R_KIND] == K_STOP]
    if len(stops):
        groups_stopped = ", ".join(
            f"{uniq[-1 - int(r[R_COL])]} at {market.index[int(r[R_BAR])]:%Y-%m-%d %H:%M}" for r in stops[:5]
        )
        warnings.warn(
            f"{len(stops)} portfolio(s) reached zero equity and stopped trading (portfolio at time: {groups_stopped})",
            stacklevel=2,
        )
        flags += ("stopped",)
    if market.mark_fallback_symbols[tg.column_symbol].any():
        warnings.warn(
            "mark prices are missing for some bars and fall back to perp last prices "
            "(funding and liquidation use them); see Market.mark_fallback",
            stacklevel=2,
        )
        flags += ("mark_fallback",)
    res = BacktestResult.from_kernel(
        market,
        tg,
        config,
        out,
        group_ids=uniq,
        flags=flags,
        bar_hours=hours,
        full=set(outputs) >= set(OUTPUTS),
        column_params=column_params,
        outputs=outputs,
    )
    res.kernel = "soa" if use_soa else "fast" if use_fast else "general"
    res.kernel_seconds = t_kernel
    res.state = state.advanced(market, tg, max(delay, 1), col_state, grp_state)
    return res


def _bar_times_ms(market: Market) -> np.ndarray:
    """The bar open times in ms since the epoch, (T,) int64 read-only, computed once per market
    (a conversion of the index costs ~2 ms per 500,000 bars: more than a lean run's kernel)."""
    cached = market.__dict__.get("_bar_times_ms")
    if cached is None:
        cached = _ro_int(market.index.as_unit("ms").asi8)
        object.__setattr__(market, "_bar_times_ms", cached)
    return cached


def _order_limits(market: Market, tg: Targets, config: BacktestConfig) -> tuple[np.ndarray, ...]:
    """Per column (1, C): the pair's common lot (coins), least quantity (coins) and least notional
    (quote) from the config's markets file; zeros (no limit) without one."""
    if config.markets_path is None:
        zero = _ro(np.zeros((1, 1)))
        return zero, zero, zero
    from data.markets import load_markets

    rules = load_markets(config.markets_path, market.symbols, market.perp_symbols, multiplier=market.multiplier)
    sym = tg.column_symbol
    return tuple(
        _ro(a[sym].reshape(1, -1)) for a in (rules.common_lot(), rules.pair_min_qty(), rules.pair_min_notional())
    )


def slippage_capped(records: np.ndarray) -> bool:
    """Warn (and return True) when fills among the kernel's event ``records`` had their price
    impact capped at :data:`backtest.kernels.rules.MAX_SLIPPAGE` (their event's rate)."""
    from backtest.kernels.rules import MAX_SLIPPAGE

    # (masks, not a copy of the fill rows: a grid's records run to hundreds of MB)
    n = int(np.count_nonzero((records[:, R_KIND] == K_FILL) & np.isfinite(records[:, R_RATE])))
    if n:
        warnings.warn(
            f"{n} fill(s) were priced at the slippage cap, {MAX_SLIPPAGE:.0%} of the reference price: orders many "
            "times the previous bar's volume, where volume_participation_coefficient x order / volume prices no "
            "market; their slippage is understated (flag slippage_capped; the fill events' rate)",
            stacklevel=3,
        )
    return bool(n)


def hold_only_where_tradable(
    tradable: np.ndarray, column_symbol: np.ndarray, rows: np.ndarray, t_off: int, lag: int
) -> np.ndarray:
    """``rows`` with target 0 wherever the row executes at a bar outside its symbol's tradable
    span (``tradable`` (T, N); row ``i`` executes at bar ``i + lag - t_off``); the input itself
    when every bar is tradable. Per symbol, so a large grid costs one (bars,) mask per symbol,
    not a (T, C) one."""
    blocked = ~np.asarray(tradable)
    if not blocked.any():
        return rows
    out = np.array(rows, dtype=np.float64, copy=True)
    for n in np.flatnonzero(blocked.any(axis=0)):
        cols = np.flatnonzero(column_symbol == n)
        if not len(cols):
            continue
        i = np.flatnonzero(blocked[:, n]) - lag + t_off
        i = i[(i >= 0) & (i < len(out))]
        out[np.ix_(i, cols)] = 0.0
    return out


def _late_topups(market: Market, tg: Targets, thr: np.ndarray, tiers: TierTable) -> bool:
    """Warn (and return True) where a top-up threshold sits so close to the liquidation that a
    typical bar jumps past it: from margin ratio ``thr`` to 1 an isolated position moves about
    ``mmr * (1 / thr - 1) / (1 + mmr)`` of the price (``mmr``: the symbol's first bracket), and
    the top-up, detected at a bar's adverse extreme, only fires at the next bar. Compared with
    the 90th percentile of the adverse moves of the symbol's bars (the larger of high/open - 1
    and 1 - low/open): below it, one bar in ten can jump from the threshold to the liquidation."""
    per_col = np.nanmax(np.broadcast_to(thr, (thr.shape[0], tg.n_columns)), axis=0)
    late = []
    for n in np.unique(tg.column_symbol[np.isfinite(per_col)]):
        ok = market.valid[:, n]
        if not ok.any():
            continue
        mo, mh, ml = market.mark_open[ok, n], market.mark_high[ok, n], market.mark_low[ok, n]
        typical = float(np.percentile(np.maximum(mh / mo - 1.0, 1.0 - ml / mo), 90))
        mmr = float(tiers.mmr[n, 0])
        worst = float(np.nanmax(per_col[tg.column_symbol == n]))
        gap = mmr * (1.0 / worst - 1.0) / (1.0 + mmr)
        if gap < typical and mmr > 0:
            room = 1.0 / (1.0 + 3.0 * typical * (1.0 + mmr) / mmr)
            late.append(
                f"{market.symbols[n]}: topup_margin_ratio={worst:g} fires within {gap:.2%} of the liquidation price "
                f"(maintenance rate {mmr:.2%}), less than one bar in ten moves against the position ({typical:.2%}), "
                f"so liquidations can come before any top-up; a ratio of {room:.3g} or lower leaves three such bars of room"
            )
    if late:
        warnings.warn("; ".join(late), stacklevel=3)
    return bool(late)


def _record_capacity(market: Market, tg: Targets, cashflow_events: bool = True) -> int:
    """A generous estimate of the number of events (fills, transfers, funding, borrow).

    Six rows per target change (fills of both legs, transfer, liquidation and what follows
    it; changes counted on every 32nd bar of large arrays, with a 2x margin), one per 16
    bar-columns for the policies (delta band, top-ups, re-entries), and the funding and borrow
    rows when they are recorded. Only the rows written are ever paged in, so over-estimating
    costs address space only; a short estimate costs a rerun.
    """
    from backtest.kernels.simulate import count_target_changes_nb

    stride = 32 if tg.values.size > 1 << 16 else 1
    n_changes = int(count_target_changes_nb(tg.values, stride)) * (2 if stride > 1 else 1)
    if not cashflow_events:
        return 6 * n_changes + tg.values.size // 16 + 1024
    per_symbol = (market.funding_count > 0).sum(axis=0)
    n_funding = int(per_symbol[tg.column_symbol].sum()) if tg.n_columns else 0
    return 6 * n_changes + n_funding + tg.values.size // 4 + 1024


def _n_threads() -> int:
    import numba

    return numba.get_num_threads()


def _ro_int(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.int64)
    if a.flags.writeable:
        if a.base is not None:
            a = a.copy()
        a.flags.writeable = False
    return a

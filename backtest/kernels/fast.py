"""A specialised kernel for portfolios of one column in isolated margin (the common case).

Same rules as :func:`backtest.kernels.simulate.simulate_range_nb`, taken from the same
functions (:mod:`backtest.kernels.rules`, :mod:`backtest.kernels.margin`) in the same order,
so its results and final state are bit-identical (``tests/test_engine_fast.py`` checks it),
restricted to:

* every portfolio (group) holds exactly one column, margin mode isolated;
* no margin top-ups (``topup_margin_ratio`` NaN everywhere).

Rebalancing, delta bands, lots and minimums, weights, delays, invalid bars, liquidations of the
perp and of the borrowed spot leg's margin account, every after-liquidation policy and the stop
at zero equity are supported. A column's state lives in local variables (registers) while it runs through a block
of bars (time chunk); columns run one after the other inside a chunk, so the (T, C) inputs and
outputs touched by a chunk stay in cache. Events of a chunk are then put back in the general
kernel's (bar, group) order by a stable counting sort on the bar.

Bars run in a small inner loop as long as they are quiet (no order due or pending, the adverse
mark extreme inside the liquidation pre-check level, a borrowed leg's margin account above its
level at the spot high): funding, close revaluation, borrow, outputs and the stop and
rebalancing checks. A bar
that needs more leaves it for its open revaluation, orders and liquidation check, then goes back
into the loop for those remaining steps, which every bar thus takes from one place. (Keeping the
orders out of the loop's body keeps its state in registers: measured 10-15% faster than one loop.)
That general part is :func:`isolated_open_nb`, shared with :mod:`backtest.kernels.soa`; it takes
the few arrays it reads in :class:`OpenArrays` (whole argument tuples there cost ~10%).

In the common case of a lean run (equity and portfolio equity only, a long spot leg or none,
no delta band) the quiet bars run in a function of their own, :func:`quiet_bars_nb`: the same
steps through the same rules, with a dozen live values instead of the loop's ~40. Measured
against the build before it in one process: one column of 525,600 one-minute bars, the kernel
2.7 ms -> 1.8 ms; ``backtest.app.bench``'s grid (1,000 columns x 8,760 hourly bars, lean, this
kernel) 97-99 ms -> 92-93 ms, its long carries alone 67 ms -> 60 ms (with lean time chunks of
:data:`CHUNK` 512 bars: at 128 the grid gained nothing).

Inside it, the plainest stretches take smaller loops still: an exactly hedged long carry's
bars up to the next settlement, order, invalid bar or rebalance (:func:`hedged_bars_nb`: the
checks, two running sums and the equity, nothing else live) and a flat column's
(:func:`flat_bars_nb`: its constant equity written), each bar taken whole or left to
:func:`quiet_bars_nb`. The general quiet loop's ~45 live values spilled to the stack and it
reloaded its arrays' addresses every bar. On ``backtest.app.bench_reference``'s column
(525,600 one-minute bars, a third of them flat) the kernel went from 1.67-1.80 ms to
0.9-1.16 ms, 2.13-2.18x -> 1.08-1.46x the hand-written loop of the same carry (issue 17's goal:
1.5x).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from backtest.kernels import layout, rules
from backtest.kernels.margin import bracket_hint_nb, flex_nb, liq_level_nb, tier_bounds_nb
from backtest.kernels.views import borrowed

#: Bars per time chunk when several columns run, in a lean run (equity and portfolio equity per
#: bar at most): long enough to spread each column's state loads and stores, and the calls of
#: :func:`quiet_bars_nb`, over many bars, short enough that a chunk's rows of the (T, C) arrays
#: stay in cache. Measured on 1,000 columns x 8,760 hourly bars (``backtest.app.bench``'s grid,
#: lean): 32, 128, 512, 1,024, 2,048 and 16,384 bars ran at 67, 86, 95, 96, 94 and 85 M
#: bar-columns/s (long carries alone: 75, 117, 147, 150, 149, 137 M).
CHUNK = 512
#: The same for a run writing components, positions or margin per bar (up to 13 (T, C) series):
#: on the same grid with every output, 128 bars ran 1.25x as fast as 512 (341 ms against 427).
CHUNK_FULL = 128
#: Most bar-columns in one time chunk (a chunk of many columns has fewer bars): its events'
#: scratch buffer holds ``MAX_EV`` rows per bar-column.
CHUNK_CELLS = 128 * 4096
#: Most events of one column in one bar (spot fill, perp fill, transfer, perp liquidation, spot
#: liquidation, funding, borrow, stop).
MAX_EV = 8


@njit(cache=True, inline="always")
def chunk_bars_nb(T, ng, flags):
    """Bars per time chunk of :func:`fast_range_nb` (and of :mod:`backtest.kernels.soa`, which
    follows its chunks) for ``ng`` portfolios over ``T`` bars with output ``flags``
    (``layout.F_*``): :data:`CHUNK` (:data:`CHUNK_FULL` with per-bar components, positions or
    margin), fewer for many portfolios (:data:`CHUNK_CELLS`, at least 16), all bars for one
    portfolio."""
    full = (flags & (layout.F_COMPONENTS | layout.F_POSITIONS | layout.F_MARGIN)) != 0
    bars = CHUNK_FULL if full else CHUNK
    return max(16, min(bars, CHUNK_CELLS // max(ng, 1))) if ng > 1 else max(T, 1)


@njit(cache=True)
def scatter_by_bar(scr, m, rec, base, j0, j1):
    """Rows ``0 .. m - 1`` of ``scr`` (bars ``j0 .. j1 - 1``) into ``rec[base:]`` sorted by bar (stable).

    Rows falling beyond ``rec`` are dropped (the caller reruns with a larger buffer).
    """
    cnt = np.zeros(j1 - j0 + 1, np.int64)
    for r in range(m):
        cnt[np.int64(scr[r, layout.R_BAR]) - j0 + 1] += 1
    for b in range(1, j1 - j0 + 1):
        cnt[b] += cnt[b - 1]
    R = rec.shape[0]
    for r in range(m):
        b = np.int64(scr[r, layout.R_BAR]) - j0
        dst = base + cnt[b]
        cnt[b] += 1
        if dst < R:
            for f in range(layout.N_REC_FIELDS):
                rec[np.uint64(dst), np.uint64(f)] = scr[np.uint64(r), np.uint64(f)]


class FillMarket(NamedTuple):
    """The market arrays of :func:`backtest.kernels.rules.fill_inputs_nb` (as ``MarketArrays``)."""

    spot_volume: np.ndarray
    perp_volume: np.ndarray
    vol0_spot: np.ndarray
    vol0_perp: np.ndarray


class FillRates(NamedTuple):
    """The parameters of :func:`backtest.kernels.rules.fill_inputs_nb` (as ``Params``)."""

    slip_frac: np.ndarray
    impact: np.ndarray
    spot_fee: np.ndarray
    perp_fee: np.ndarray


class OpenArrays(NamedTuple):
    """The arrays :func:`isolated_open_nb` reads (borrowed, as the kernels' arguments: each array an
    inlined function takes would otherwise cost an atomic reference-count pair per call)."""

    weights: np.ndarray
    leverage: np.ndarray
    lot: np.ndarray
    min_qty: np.ndarray
    min_notional: np.ndarray
    clearance: np.ndarray
    fill_mk: FillMarket
    fill_prm: FillRates
    tiers: layout.Tiers


@njit(cache=True, inline="always")
def open_arrays_nb(mk, book, prm, tiers):
    """The :class:`OpenArrays` of a run (borrowed where its arguments are, as the kernels'
    are: :mod:`backtest.kernels.views`)."""
    return OpenArrays(
        book.weights,
        prm.leverage,
        prm.lot,
        prm.min_qty,
        prm.min_notional,
        prm.clearance,
        FillMarket(mk.spot_volume, mk.perp_volume, mk.vol0_spot, mk.vol0_perp),
        FillRates(prm.slip_frac, prm.impact, prm.spot_fee, prm.perp_fee),
        tiers,
    )


@njit(cache=True, inline="always")
def isolated_open_nb(
    buf, nrec, j, c, n, i, x, ok, mh, ml, band, w_margin, kc, mmr_max_n, cum_min_n, px, arr, run, st1, st2
):
    """The general part of bar ``j`` of column ``c`` (symbol ``n``) of a one-column isolated
    portfolio, shared by :func:`fast_range_nb` and :func:`backtest.kernels.soa.soa_range_nb`:
    the open revaluation, the orders of target row ``i`` (``x``: its target, NaN for no row),
    the liquidation of the perp against the adverse mark extreme (``mh``/``ml``: the bar's mark
    high and low; ``ok``: the bar is valid) and of the borrowed spot leg's margin account.
    ``px = (ref_valid, so_ref, po_ref, mark_open, spot_high, spot_open)``: the bar's
    ``MarketArrays`` values of symbol ``n``; ``arr``: :func:`open_arrays_nb`.

    ``st1 = (s, q, cost, fw, sv, pv, last_x, pend_close, reentry, susp, reb, share, factor,
    stop, cash)`` and ``st2 = (c_fee, c_slip, c_spot, c_perp, c_liq, c_unh, liq_lvl)`` are the
    column's state before; returns ``(nrec, dirty, b_prev, b_open, mr_f, smr)`` (events written,
    whether the partial equity sum changed, borrowed coins before the bar and after its orders,
    futures and spot margin ratios at the extremes when ``w_margin``) followed by the new
    ``st1`` and ``st2`` fields, flat."""
    s, q, cost, fw, sv, pv, last_x, pend_close, reentry, susp, reb, share, factor, stop, cash = st1
    c1, c2, c4, c5, c6, cun, liq_lvl = st2
    after_liq, cooldown, level, spot_fee_liq = run.after_liq, run.cooldown, run.spot_liq_level, run.spot_liq_fee
    ref_ok, so_ref, po_ref, mark_open, spot_high, spot_open = px
    pend_re = reentry >= 0.0 and j >= reentry
    due = rules.order_due_nb(x, last_x, pend_re, pend_close, reb, stop, s, q, band) if i >= 0 else 0
    dirty = False
    b_prev = -s if s < 0.0 else 0.0
    if (due != 0 or not ok) and ref_ok:
        c4, c5, cun, sv, pv = rules.revalue_nb(s, q, sv, pv, so_ref, po_ref, c4, c5, cun)
        if due != 0:
            # 3. orders, sized on the equity at the open
            dirty = True
            eq = rules.open_value_nb(0.0, s, sv, q, pv, cost, fw) + (cash + 0.0) if due == 2 else 0.0
            lev = flex_nb(arr.leverage, j, c)
            new_s, new_q, last_x, pend_close, sized, new_share, skipped = rules.order_nb(
                x,
                last_x,
                pend_re,
                pend_close,
                reb,
                stop,
                s,
                q,
                band,
                eq,
                flex_nb(arr.weights, i, c),
                0.0,
                True,
                lev,
                sv,
                flex_nb(arr.lot, j, c),
                flex_nb(arr.min_qty, j, c),
                flex_nb(arr.min_notional, j, c),
            )
            if skipped != 0.0:
                nrec = rules.skip_event_nb(buf, nrec, j, c, skipped, sv)
            reb = False
            if sized or pend_re:
                reentry = -1.0
            if sized:
                susp = False
                share = new_share
                factor = rules.target_factor_nb(share, last_x, lev)
            vol, rates = rules.fill_inputs_nb(arr.fill_mk, arr.fill_prm, j, c, n)
            s, q, cost, fw, cash, c1, c2, nrec, traded = rules.fill_column_nb(
                buf, nrec, j, c, new_s, new_q, s, q, cost, fw, cash, c1, c2, (sv, pv), vol, rates
            )
            if traded:
                cash, fw, nrec = rules.transfer_nb(
                    buf,
                    nrec,
                    j,
                    c,
                    rules.margin_transfer_nb(rules.margin_need_nb(q, pv, lev), fw, q * pv - cost),
                    cash,
                    fw,
                )
                liq_lvl = liq_level_nb(q, fw, cost, mmr_max_n, cum_min_n)
            if stop == layout.STOP_CLOSING and s == 0.0 and q == 0.0:
                stop = layout.STOP_DONE
    b_open = -s if s < 0.0 else 0.0
    # 4. liquidation against the adverse mark extreme (full check only beyond the
    # pre-check level), after the margin ratio there
    mr_f = np.nan
    if q != 0.0 and ok:
        adv = mh if q < 0.0 else ml
        if w_margin:
            t = arr.tiers
            kb, _kc = bracket_hint_nb(t.hi, t.n, n, abs(q) * adv, kc, t.hi_sorted)
            mr_f = rules.adverse_ratio_nb(q, adv, fw, cost, t.mmr[n, kb], t.cum[n, kb])
        if rules.liq_possible_nb(q, adv, liq_lvl):
            lp = rules.isolated_liq_nb(arr.tiers, n, q, fw, cost, adv, mark_open, mmr_max_n, cum_min_n)
            if lp == lp:
                fw, c5, cun, c6, nrec = rules.liquidate_perp_nb(
                    buf, nrec, j, c, q, s, cost, pv, lp, flex_nb(arr.clearance, j, c), fw, c5, cun, c6, True
                )
                q = 0.0
                cost = 0.0
                pv = lp
                liq_lvl = np.nan
                pend_close, reentry, susp = rules.after_liquidation_nb(
                    after_liq, s, q, pend_close, reentry, susp, j, cooldown
                )
                reb = False
    # 4b. the borrowed spot leg's margin account (the portfolio's quote cash)
    smr = np.nan
    if s < 0.0 and ok and level > 0.0:
        sh = spot_high
        smr = rules.spot_ratio_nb(level, -s * sh, cash)
        if cash <= level * (-s * sh):
            p = rules.spot_liq_single_nb(cash, s, spot_open, sh, level)
            cash, c4, cun, c6, nrec = rules.liquidate_spot_nb(
                buf, nrec, j, c, s, q, sv, p, spot_fee_liq, cash, 0.0, c4, cun, c6
            )
            s = 0.0
            sv = p
            if cash < 0.0:
                c6 += -cash
                if nrec - 1 < buf.shape[0]:
                    buf[np.uint64(nrec - 1), np.uint64(layout.R_RATE)] = -cash
                    buf[np.uint64(nrec - 1), np.uint64(layout.R_CASH)] += -cash
                cash = 0.0
            pend_close, reentry, susp = rules.after_liquidation_nb(
                after_liq, s, q, pend_close, reentry, susp, j, cooldown
            )
            reb = False
    return (
        nrec,
        dirty,
        b_prev,
        b_open,
        mr_f,
        smr,
        s,
        q,
        cost,
        fw,
        sv,
        pv,
        last_x,
        pend_close,
        reentry,
        susp,
        reb,
        share,
        factor,
        stop,
        cash,
        c1,
        c2,
        c4,
        c5,
        c6,
        cun,
        liq_lvl,
    )


@njit(cache=True, inline="always")
def new_target_nb(tg1, i, C, c, last_x):
    """Whether column ``c``'s target row ``i`` (flat index ``i * C + c``; none before row 0)
    asks for an order: a finite target other than the one held ``last_x``
    (:func:`rules.order_due_nb` for a column without band, pending orders or stop)."""
    if i < 0:
        return False
    x = tg1[np.uint64(i * C + c)]
    return x == x and x != last_x


@njit(cache=True)
def hedged_bars_nb(j, j1, i_off, C, c, N, n, tg1, va1, mh1, fv1, sc1, mc1, equity, eq_step, s, sv, pv, c4, c5, rest, last_x, liq_lvl, factor, band, min_qty, min_not):  # fmt: skip
    """The plainest quiet bars of a long carry, from bar ``j`` up to ``j1``: ``s > 0`` spot coins
    hedged by ``q = -s`` perp coins, no settlement, no rebalancing calendar, no portfolio
    equity of its own. :func:`quiet_bars_nb`'s steps for that case through the same
    arithmetic, in the fewest live values (the general loop's ~45 spill to the stack).

    A bar is taken whole or not at all: the loop ends *before* a bar with an order due (its
    target row ``j + i_off`` differs from ``last_x``), an invalid bar, a bar whose mark high
    reaches the pre-check level ``liq_lvl`` (:func:`rules.liq_possible_nb` for a short), a
    funding settlement (finite, non-zero ``fv1``) and a bar whose close would take the equity
    to zero or below; the caller takes that bar from its start. A bar taken: the close
    revaluation (:func:`rules.revalue_nb`, exactly hedged), its equity ``(((rest[0] + c4) + c5)
    + rest[1]) + rest[2]`` (:func:`rules.equity_nb`: partial sum, spot, perp, liquidation and
    unhedged components) written to ``equity[j * eq_step, c]``, then the rebalancing check
    (:func:`rules.rebalance_due_nb` without schedule; ``band`` inf: never; the order's
    ``min_qty`` coins and ``min_not`` quote), which ends the loop after the bar. Flat inputs
    are read at ``j * N + n``, targets at ``i * C + c``.

    Returns ``(j, sv, pv, c4, c5, reb)``: the first bar not taken, the state after the bars
    taken, and whether a rebalance is due at bar ``j``'s open."""
    q = -s
    c7, c6, cun = rest
    while j < j1:
        if new_target_nb(tg1, j + i_off, C, c, last_x):
            break
        jn = np.uint64(j * N + n)
        if not va1[jn]:
            break
        if rules.liq_possible_nb(q, mh1[jn], liq_lvl):
            break
        fv = fv1[jn]
        if fv != 0.0 and np.isfinite(fv):
            break
        n4, n5, _cun, sc, mc = rules.revalue_nb(s, q, sv, pv, sc1[jn], mc1[jn], c4, c5, cun)  # (hedged: cun stays)
        ceq = rules.equity_nb(c7, n4, n5, c6, cun)
        if ceq <= 0.0:
            break
        c4, c5, sv, pv = n4, n5, sc, mc
        equity[np.uint64(j * eq_step), np.uint64(c)] = ceq
        j += 1
        if rules.rebalance_due_nb(False, band, ceq, factor, s, sc, min_qty, min_not):
            return j, sv, pv, c4, c5, True
    return j, sv, pv, c4, c5, False


@njit(cache=True)
def flat_bars_nb(j, j1, i_off, C, c, N, n, tg1, va1, equity, eq_step, ceq, last_x):
    """The quiet bars of a flat column (no coins, target factor 0: nothing to revalue, fund,
    liquidate or rebalance), from bar ``j`` up to ``j1``: its equity ``ceq`` (> 0) written to
    ``equity[j * eq_step, c]`` up to the first bar with an order due or an invalid bar (see
    :func:`hedged_bars_nb`). Returns the first bar not taken; the caller takes the valuation
    prices of the last bar taken (the revaluation of a flat column only moves them)."""
    while j < j1:
        if new_target_nb(tg1, j + i_off, C, c, last_x):
            break
        if not va1[np.uint64(j * N + n)]:
            break
        equity[np.uint64(j * eq_step), np.uint64(c)] = ceq
        j += 1
    return j


@njit(cache=True)
def quiet_bars_nb(
    j, j1, i_off, C, c, N, n, g, tg1, va1, adv1, fv1, sc1, mc1, equity, w_eq, group_equity, w_geq, time_ms, bar_ms,
    s, q, cost, fw, cash, sv, pv, part, c0, c4, c5, c6, cun, c7, last_x, liq_lvl, mmr_max_n, cum_min_n, factor,
    check_reb, re0, rb0, mq0, mn0,
):  # fmt: skip
    """The quiet bars of :func:`fast_range_nb`'s common case, from bar ``j`` up to ``j1``, in a
    loop of their own (a small function keeps its state in registers: the whole quiet loop
    of the kernel carries ~40 live values and reloads them from the stack every bar).

    The case: outputs of equity and portfolio equity only (no components, positions, margin or
    per-bar cash-flow events), no borrowed spot leg (``s >= 0``), no delta band, rebalancing
    parameters constant over the bars; the caller checks it. The steps and their order are the
    kernel's quiet loop, through the same rules: the target row ``j + i_off`` (an order due
    ends the stretch), an invalid bar ends it, the liquidation pre-check against the adverse
    mark extreme ``adv1`` (the high for a short, the low for a long), funding at the bar's
    ``fv1`` into the wallet ``fw`` and component ``c0`` (then the partial sum ``c7`` and the
    pre-check level again; ``part = (initial share, fees, slippage, borrow)``), the close
    revaluation, equity and outputs and the rebalancing check. A bar whose equity would reach
    zero ends the stretch as it was before the bar (the kernel's loop takes it and its stop).

    A settlement leaves the inner loop, is booked outside it, and its bar goes on in the
    inner loop, whose wallet, funding component, partial sum and level are thus constants
    (measured on one column of 525,600 one-minute bars: 1.8 ms against 2.5 ms for one loop that
    books funding inside).

    Returns ``(j, fw, c0, c7, liq_lvl, sv, pv, c4, c5, cun, reb)``: ``j`` the first bar not
    taken, ``reb`` a rebalance found due at bar ``j - 1``'s close."""
    init, c1, c2, c3 = part
    reb = False
    funded = False  # bar j's checks passed and its funding is booked: go on with its close
    fw0, c00, c70, lvl0 = fw, c0, c7, liq_lvl  # (the state before that funding)
    # an exactly hedged long carry or a flat column, without calendar or portfolio equity of
    # its own: its plainest bars in hedged_bars_nb or flat_bars_nb, the bar that ends
    # them here (see the module docstring)
    plain = not w_geq and re0 == np.inf
    hedged = plain and s > 0.0 and s + q == 0.0
    band = rb0 if check_reb else np.inf
    if plain and s == 0.0 and q == 0.0 and factor == 0.0:
        ceq = rules.equity_nb(c7, c4, c5, c6, cun)
        if ceq > 0.0:
            j0 = j
            j = flat_bars_nb(j, j1, i_off, C, c, N, n, tg1, va1, equity, 1 if w_eq else 0, ceq, last_x)
            if j > j0:
                jn = np.uint64((j - 1) * N + n)
                sv, pv = sc1[jn], mc1[jn]
    while j < j1:
        settles = False
        while j < j1:
            if hedged and not funded:
                j, sv, pv, c4, c5, reb = hedged_bars_nb(
                    j, j1, i_off, C, c, N, n, tg1, va1, adv1, fv1, sc1, mc1, equity, 1 if w_eq else 0, s, sv, pv,
                    c4, c5, (c7, c6, cun), last_x, liq_lvl, factor, band, mq0, mn0,
                )  # fmt: skip
                if reb or j >= j1:
                    break
            jn = np.uint64(j * N + n)
            if not funded:
                if new_target_nb(tg1, j + i_off, C, c, last_x):
                    break
                if not va1[jn]:
                    break
                if q != 0.0:
                    if rules.liq_possible_nb(q, adv1[jn], liq_lvl):
                        break
                    fv = fv1[jn]
                    if fv != 0.0 and np.isfinite(fv):  # (rules.funding_nb's test)
                        settles = True
                        break
            n4, n5, nun, nsv, npv = rules.revalue_nb(s, q, sv, pv, sc1[jn], mc1[jn], c4, c5, cun)
            ceq = rules.equity_nb(c7, n4, n5, c6, nun)
            if ceq <= 0.0:
                if funded:
                    fw, c0, c7, liq_lvl = fw0, c00, c70, lvl0
                    funded = False
                break
            funded = False
            c4, c5, cun, sv, pv = n4, n5, nun, nsv, npv
            ju = np.uint64(j)
            equity[ju if w_eq else np.uint64(0), np.uint64(c)] = ceq
            if w_geq:
                group_equity[ju, np.uint64(g)] = cash + 0.0 + rules.column_value_nb(0.0, s, sv, fw, q, q * pv - cost)
            j += 1
            if check_reb:
                sched = re0 < np.inf and rules.period_start_nb(time_ms[ju], bar_ms, re0)
                if rules.rebalance_due_nb(sched, rb0, ceq, factor, s, sv, mq0, mn0):
                    reb = True
                    break
        if not settles:
            break
        fw0, c00, c70, lvl0 = fw, c0, c7, liq_lvl
        fw, c0, _famt = rules.funding_nb(q, fv1[np.uint64(j * N + n)], fw, c0)
        c7 = rules.partial_sum_nb(init, c0, c1, c2, c3)
        liq_lvl = liq_level_nb(q, fw, cost, mmr_max_n, cum_min_n)
        funded = True
    return j, fw, c0, c7, liq_lvl, sv, pv, c4, c5, cun, reb


@njit(cache=True)
def fast_range_nb(g0, g1, mk, book, prm, tiers, run, st, out, rec):
    """:func:`~backtest.kernels.simulate.simulate_range_nb` for one-column isolated groups
    without top-ups (same arguments, same results and final state; ``run.cross``,
    ``run.haircut``, ``prm.topup_thr`` and ``run.topup_delay`` are ignored).

    A column's state lives in ``st.columns`` (its own slots, see ``S_*``) and its portfolio's
    cash in ``st.groups`` between time chunks, as between runs."""
    T = mk.so_ref.shape[0]
    # the arguments' arrays borrowed (backtest.kernels.views): no reference counting in the bar
    # loop, at each call of quiet_bars_nb or in the general part
    mk, book, prm, tiers = borrowed(mk), borrowed(book), borrowed(prm), borrowed(tiers)
    st, out, rec = borrowed(st), borrowed(out), borrowed(rec)
    mmr_max, cum_min = tier_bounds_nb(tiers.mmr, tiers.cum, tiers.n)
    ng = g1 - g0
    flags = run.flags
    w_eq = (flags & layout.F_EQUITY) != 0
    w_geq = (flags & layout.F_GROUP_EQUITY) != 0
    w_comp = (flags & layout.F_COMPONENTS) != 0
    w_pos = (flags & layout.F_POSITIONS) != 0
    w_margin = (flags & layout.F_MARGIN) != 0
    w_cf = (flags & layout.F_CASHFLOW_EVENTS) != 0
    has_band = (flags & layout.F_HAS_BAND) != 0
    lag = run.lag
    cs, gs = st.columns, st.groups
    so_ref, po_ref, ref_valid, mark_open, spot_open = mk.so_ref, mk.po_ref, mk.ref_valid, mk.mark_open, mk.spot_open
    arr = open_arrays_nb(mk, book, prm, tiers)
    equity, group_equity = out.equity, out.group_equity
    borrow_h, delta_band = prm.borrow_h, prm.delta_band
    t_off = book.t_off
    mr_out, dl_out, comps_out, spot_out, perp_out = out.mr, out.dl, out.comps, out.spot, out.perp
    t_hi, t_n, t_mmr, t_cum, hi_sorted = tiers.hi, tiers.n, tiers.mmr, tiers.cum, tiers.hi_sorted
    funding_rate = mk.funding_rate
    chunk = chunk_bars_nb(T, ng, flags)  # (bars per time chunk)
    # several columns: a chunk's events go to a scratch buffer (at most MAX_EV per bar and
    # column), then into ``rec`` in (bar, group) order; one column: straight into ``rec``
    sorting = ng > 1 and chunk > 1
    scr = np.empty((MAX_EV * chunk * ng if sorting else 0, layout.N_REC_FIELDS))
    nrec = 0
    base = 0
    # flat views of the inputs every bar reads: one bar offset (j * N + n) serves them all,
    # which leaves the compiler enough registers for the bar loop's state (~15% faster)
    N = mk.valid.shape[1]
    C = book.targets.shape[1]
    tg1 = book.targets.ravel()  # (views of borrowed arrays; a copy would own its memory)
    va1 = mk.valid.ravel()
    mh1 = mk.mark_high.ravel()
    ml1 = mk.mark_low.ravel()
    fv1 = mk.funding_value.ravel()
    sc1 = mk.spot_close.ravel()
    mc1 = mk.mark_close.ravel()
    sh1 = mk.spot_high.ravel()
    has_reb = (flags & layout.F_HAS_REB) != 0
    bar_ms, level = run.bar_ms, run.spot_liq_level
    time_ms = mk.time_ms
    for j0 in range(0, T, chunk):
        j1 = min(T, j0 + chunk)
        buf = borrowed(scr) if sorting else rec  # (scr outlives the view: scatter_by_bar below)
        if sorting:
            base = nrec
            nrec = 0
        for g in range(g0, g1):
            c = book.grp_cols[book.grp_start[g]]
            n = book.col_sym[c]
            mmr_max_n = mmr_max[n]
            cum_min_n = cum_min[n]
            # unsigned indices: numba skips the negative-index wraparound on them
            nu = np.uint64(n)
            cu = np.uint64(c)
            gu = np.uint64(g)
            s = cs[cu, layout.S_S]
            q = cs[cu, layout.S_Q]
            cost = cs[cu, layout.S_COST]
            fw = cs[cu, layout.S_FW]
            sv = cs[cu, layout.S_SV]
            pv = cs[cu, layout.S_PV]
            last_x = cs[cu, layout.S_LASTX]
            pend_close = cs[cu, layout.S_PCLOSE] != 0.0
            reentry = cs[cu, layout.S_PRE]
            susp = cs[cu, layout.S_SUSP] != 0.0
            reb = cs[cu, layout.S_REB] != 0.0
            share = cs[cu, layout.S_SHARE]
            c0 = cs[cu, layout.S_COMP + 0]
            c1 = cs[cu, layout.S_COMP + 1]
            c2 = cs[cu, layout.S_COMP + 2]
            c3 = cs[cu, layout.S_COMP + 3]
            c4 = cs[cu, layout.S_COMP + 4]
            c5 = cs[cu, layout.S_COMP + 5]
            c6 = cs[cu, layout.S_COMP + 6]
            cun = cs[cu, layout.S_COMP + 7]
            c7 = cs[cu, layout.S_COMP7]
            cash = gs[gu, layout.G_CASH]
            stop = gs[gu, layout.G_STOP]
            kc = np.int64(cs[cu, layout.S_KC])
            liq_lvl = cs[cu, layout.S_LIQ]
            init_share = cs[cu, layout.S_INIT]
            # per-column constants of the flexible parameters that do not vary per bar
            bor_t = borrow_h.shape[0] > 1
            bor_k = np.uint64(c if borrow_h.shape[1] > 1 else 0)
            bor0 = borrow_h[np.uint64(0), bor_k]
            band_t = has_band and delta_band.shape[0] > 1
            band_k = np.uint64(c if delta_band.shape[1] > 1 else 0)
            band0 = delta_band[np.uint64(0), band_k] if has_band else np.inf
            # the rebalancing check's parameters: constants of the column unless some vary per bar
            reb_t = has_reb and (
                prm.reb_every_ms.shape[0] > 1
                or prm.reb_band.shape[0] > 1
                or prm.leverage.shape[0] > 1
                or prm.min_qty.shape[0] > 1
                or prm.min_notional.shape[0] > 1
            )
            re0 = flex_nb(prm.reb_every_ms, 0, c)
            rb0 = flex_nb(prm.reb_band, 0, c)
            lv0 = flex_nb(prm.leverage, 0, c)
            mq0 = flex_nb(prm.min_qty, 0, c)
            mn0 = flex_nb(prm.min_notional, 0, c)
            factor = rules.target_factor_nb(share, last_x, lv0)  # (again after each sizing)
            # quiet_bars_nb's case (besides a long spot leg, no suspension and no stop)
            quiet_ok = not (w_margin or w_comp or w_pos or w_cf or bor_t or band_t or reb_t or band0 < np.inf)

            j = j0
            general = False  # bar j's open, orders and liquidation are done: go on with its funding
            ok = True
            dirty = False
            pending = pend_close or reb or reentry >= 0.0 or stop == layout.STOP_CLOSING
            stop_bar = -1  # a stop detected at this bar's close, its event still to write
            stop_eq = 0.0
            mr_f = np.nan  # futures margin ratio at the adverse extreme, from the general part
            smr = np.nan  # spot margin account ratio at the spot high, from the general part
            b_prev = 0.0
            b_open = 0.0  # borrowed coins after this bar's orders (0.0 once its borrow is charged)
            while j < j1:
                while j < j1:
                    ju = np.uint64(j)
                    jn = np.uint64(j * N + n)
                    if general:
                        general = False
                    elif pending:  # a close, re-entry, rebalance or stop waits: the general part
                        break
                    else:
                        if quiet_ok and s >= 0.0 and not susp and stop == layout.STOP_NONE:
                            # the common case's quiet bars in a loop of their own (quiet_bars_nb)
                            adv1 = mh1 if q < 0.0 else ml1
                            i_off = t_off - lag
                            part = (init_share, c1, c2, c3)
                            j, fw, c0, c7, liq_lvl, sv, pv, c4, c5, cun, reb = quiet_bars_nb(
                                j, j1, i_off, C, c, N, n, g, tg1, va1, adv1, fv1, sc1, mc1, equity, w_eq,
                                group_equity, w_geq, time_ms, bar_ms, s, q, cost, fw, cash, sv, pv, part, c0, c4,
                                c5, c6, cun, c7, last_x, liq_lvl, mmr_max_n, cum_min_n, factor, has_reb, re0, rb0,
                                mq0, mn0,
                            )  # fmt: skip
                            if reb:
                                pending = True
                                continue
                            if j >= j1:
                                break
                            ju = np.uint64(j)
                            jn = np.uint64(j * N + n)
                        # 1. what the bar asks: the target row i is executed at bar j (the
                        # pending orders aside: ``pending`` is False here)
                        i = j - lag + t_off
                        if i >= 0 and rules.order_due_nb(
                            tg1[np.uint64(i * C + c)],
                            last_x,
                            False,
                            False,
                            False,
                            layout.STOP_NONE,
                            s,
                            q,
                            delta_band[ju, band_k] if band_t else band0,
                        ):
                            break
                        ok = va1[jn]
                        if q != 0.0 and ok and rules.liq_possible_nb(q, mh1[jn] if q < 0.0 else ml1[jn], liq_lvl):
                            break
                        if s < 0.0 and ok and cash <= level * (-s * sh1[jn]):
                            break
                        dirty = False
                        # 2. an invalid bar keeps the reference price
                        if not ok and ref_valid[ju, nu]:
                            c4, c5, cun, sv, pv = rules.revalue_nb(
                                s, q, sv, pv, so_ref[ju, nu], po_ref[ju, nu], c4, c5, cun
                            )
                        if s < 0.0:  # borrowed coins, unchanged since the last bar
                            b_prev = -s
                            b_open = b_prev
                        if w_margin:
                            mr_f = np.nan
                            smr = np.nan
                            if q != 0.0 and ok:
                                adv = mh1[jn] if q < 0.0 else ml1[jn]
                                kb, _kc = bracket_hint_nb(t_hi, t_n, n, abs(q) * adv, kc, hi_sorted)
                                mr_f = rules.adverse_ratio_nb(q, adv, fw, cost, t_mmr[n, kb], t_cum[n, kb])
                            if s < 0.0 and ok:
                                smr = rules.spot_ratio_nb(level, -s * sh1[jn], cash)
                    # 5. funding, 6. close revaluation, 7. borrow
                    fv = fv1[jn] if q != 0.0 else 0.0
                    fw, c0, famt = rules.funding_nb(q, fv, fw, c0)
                    if ok:
                        c4, c5, cun, sv, pv = rules.revalue_nb(s, q, sv, pv, sc1[jn], mc1[jn], c4, c5, cun)
                    br = 0.0
                    bamt = 0.0
                    if s < 0.0 or b_open > 0.0:
                        br = borrow_h[ju, bor_k] if bor_t else bor0
                        h_open, h_in = rules.borrow_hours_nb(time_ms[ju], bar_ms)
                        cash, c3, bamt = rules.borrow_nb(
                            b_prev, b_open, -s if s < 0.0 else 0.0, sv, br, h_open, h_in, cash, c3
                        )
                    if famt != 0.0 or bamt != 0.0:
                        dirty = True
                        if famt != 0.0:
                            liq_lvl = liq_level_nb(q, fw, cost, mmr_max_n, cum_min_n)
                        if w_cf:
                            nrec = rules.cashflow_events_nb(
                                buf, nrec, j, c, q, fv, funding_rate, n, famt, s, sv, br, bamt
                            )
                    # 8. outputs: equity, margin ratio and distance to liquidation, components,
                    # positions; the stop of a portfolio whose equity reached zero; rebalancing
                    if dirty:
                        c7 = rules.partial_sum_nb(init_share, c0, c1, c2, c3)
                    # (the column's equity is its portfolio's: the stop and rebalancing checks)
                    ceq = rules.equity_nb(c7, c4, c5, c6, cun)
                    equity[ju if w_eq else np.uint64(0), cu] = ceq
                    if w_geq:
                        group_equity[ju, gu] = cash + 0.0 + rules.column_value_nb(0.0, s, sv, fw, q, q * pv - cost)
                    if w_margin:
                        mr = mr_f
                        if b_open > 0.0:
                            mr = rules.worst_ratio_nb(mr, smr)
                        dl = np.nan
                        if q != 0.0:
                            notional = abs(q) * pv
                            kb, kc = bracket_hint_nb(t_hi, t_n, n, notional, kc, hi_sorted)
                            _mr_close, dl = rules.isolated_margin_nb(
                                q, notional, t_mmr[n, kb], t_cum[n, kb], fw + (q * pv - cost)
                            )
                        rules.store_pair_nb(mr_out, dl_out, ju, cu, mr, dl)
                    if w_comp:
                        rules.store_components_nb(comps_out, ju, cu, c0, c1, c2, c3, c4, c5, c6, cun)
                    if w_pos:
                        rules.store_pair_nb(spot_out, perp_out, ju, cu, s, q)
                    if ceq <= 0.0 and stop == layout.STOP_NONE:
                        # the stop event is written by the next bar's general part (or after
                        # the block): writing it here would slow every quiet bar down
                        stop = layout.STOP_CLOSING if (s != 0.0 or q != 0.0) else layout.STOP_DONE
                        stop_eq = ceq
                        stop_bar = j
                        pending = True
                    if has_reb and not pending and not susp and stop == layout.STOP_NONE:
                        if reb_t:  # (parameters that vary per bar: read them at this bar)
                            re0 = flex_nb(prm.reb_every_ms, j, c)
                            rb0 = flex_nb(prm.reb_band, j, c)
                            mq0 = flex_nb(prm.min_qty, j, c)
                            mn0 = flex_nb(prm.min_notional, j, c)
                            factor = rules.target_factor_nb(share, last_x, flex_nb(prm.leverage, j, c))
                        sched = re0 < np.inf and rules.period_start_nb(time_ms[ju], bar_ms, re0)
                        if rules.rebalance_due_nb(sched, rb0, ceq, factor, s, sv, mq0, mn0):
                            reb = True
                            pending = True
                    b_open = 0.0  # (set again by the next bar that borrows)
                    j += 1
                if j >= j1:
                    break
                # the general part of bar j (orders due, a possible liquidation, or the last bar's stop)
                if stop_bar >= 0:
                    stop, nrec = rules.stop_nb(buf, nrec, stop_bar, g, stop_eq, stop != layout.STOP_DONE)
                    stop_bar = -1
                ju = np.uint64(j)
                jn = np.uint64(j * N + n)
                i = j - lag + t_off
                ok = va1[jn]
                (
                    nrec,
                    dirty,
                    b_prev,
                    b_open,
                    mr_f,
                    smr,
                    s,
                    q,
                    cost,
                    fw,
                    sv,
                    pv,
                    last_x,
                    pend_close,
                    reentry,
                    susp,
                    reb,
                    share,
                    factor,
                    stop,
                    cash,
                    c1,
                    c2,
                    c4,
                    c5,
                    c6,
                    cun,
                    liq_lvl,
                ) = isolated_open_nb(
                    buf,
                    nrec,
                    j,
                    c,
                    n,
                    i,
                    tg1[np.uint64(i * C + c)] if i >= 0 else np.nan,
                    ok,
                    mh1[jn],
                    ml1[jn],
                    delta_band[ju, band_k] if band_t else band0,
                    w_margin,
                    kc,
                    mmr_max_n,
                    cum_min_n,
                    (ref_valid[ju, nu], so_ref[ju, nu], po_ref[ju, nu], mark_open[ju, nu], sh1[jn], spot_open[ju, nu]),
                    arr,
                    run,
                    (s, q, cost, fw, sv, pv, last_x, pend_close, reentry, susp, reb, share, factor, stop, cash),
                    (c1, c2, c4, c5, c6, cun, liq_lvl),
                )
                pending = pend_close or reb or reentry >= 0.0 or stop == layout.STOP_CLOSING
                general = True

            if stop_bar >= 0:  # a stop at the block's last bar
                stop, nrec = rules.stop_nb(buf, nrec, stop_bar, g, stop_eq, stop != layout.STOP_DONE)
            if not w_geq:  # the last bar's portfolio equity, as the bar itself would write it
                group_equity[0, gu] = cash + 0.0 + rules.column_value_nb(0.0, s, sv, fw, q, q * pv - cost)
            cs[cu, layout.S_S] = s
            cs[cu, layout.S_Q] = q
            cs[cu, layout.S_COST] = cost
            cs[cu, layout.S_FW] = fw
            cs[cu, layout.S_SV] = sv
            cs[cu, layout.S_PV] = pv
            cs[cu, layout.S_LASTX] = last_x
            cs[cu, layout.S_PCLOSE] = 1.0 if pend_close else 0.0
            cs[cu, layout.S_PRE] = reentry
            cs[cu, layout.S_SUSP] = 1.0 if susp else 0.0
            cs[cu, layout.S_REB] = 1.0 if reb else 0.0
            cs[cu, layout.S_SHARE] = share
            cs[cu, layout.S_COMP + 0] = c0
            cs[cu, layout.S_COMP + 1] = c1
            cs[cu, layout.S_COMP + 2] = c2
            cs[cu, layout.S_COMP + 3] = c3
            cs[cu, layout.S_COMP + 4] = c4
            cs[cu, layout.S_COMP + 5] = c5
            cs[cu, layout.S_COMP + 6] = c6
            cs[cu, layout.S_COMP + 7] = cun
            cs[cu, layout.S_COMP7] = c7
            gs[gu, layout.G_CASH] = cash
            gs[gu, layout.G_STOP] = stop
            cs[cu, layout.S_KC] = kc
            cs[cu, layout.S_LIQ] = liq_lvl

        if sorting:
            scatter_by_bar(scr, nrec, rec, base, j0, j1)
            nrec += base
    for g in range(g0, g1):
        c = book.grp_cols[book.grp_start[g]]
        cs[c, layout.S_PRE] = rules.carry_bar_nb(cs[c, layout.S_PRE], T)
        rules.store_final_nb(cs, out, c, flags)
    return nrec

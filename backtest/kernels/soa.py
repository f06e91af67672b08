"""A structure-of-arrays kernel for lean grids of one-column isolated portfolios of one symbol.

Same contract as :func:`backtest.kernels.fast.fast_range_nb` (same arguments, results, final
state and event records in the same order; ``tests/test_engine_soa.py`` checks it bit for bit),
restricted to what a lean parameter grid needs (:func:`soa_applies` says when it does):

* the fast kernel's own restrictions (one column per portfolio, isolated margin, no top-ups);
* every column of the run on one symbol;
* lean outputs: equity and portfolio equity per bar (or their last rows), no per-bar
  components, positions or margin, no funding/borrow events;
* the delta band, borrow rate and rebalancing parameters constant over the bars (per column or
  for all; leverage may vary per bar only without rebalancing).

Bars are the outer loop and the portfolios of a tile of :data:`TILE` the inner one, so that a
bar's targets and equity (rows of the (T, C) arrays) are read and written contiguously, and a
tile's state lives in one array, slot after slot (``w[slot * STRIDE + k]`` for the tile's
``k``-th column: one base pointer, constant offsets, a stride off the powers of two). Each bar:

1. :func:`_quiet_nb` takes every column of the tile through the bar as if it were quiet (the
   fast kernel's quiet-bar steps, from the same rules) in branch-free loops that LLVM
   vectorizes (8 doubles per AVX-512 instruction; ``error_model="numpy"`` takes the division
   checks out, unsigned indices the negative-index selects that made its loads gathers): which
   columns need the general part (an order due or pending, a possible liquidation of the perp
   or of the borrowed spot leg's margin account, a pending close, re-entry, rebalance or stop:
   they keep their state), then for the others the funding of a funding bar, the close and
   the rebalancing check, a loop each;
2. :func:`_schedules_nb` (calendar rebalancing) takes out of those loops the work only some
   bars need;
3. the columns that need it take the general part from
   :func:`backtest.kernels.fast.isolated_open_nb`, the fast kernel's own code, then the rest of
   their bar from the same helpers as step 1 (any column may take this path: on a quiet bar the
   general part changes nothing);
4. stops are put among the bar's other events in portfolio order (:func:`_put_stops`).

Events go straight to the records in (bar, portfolio) order within a tile; several tiles' events
are put in bar order by the fast kernel's stable counting sort.

Measured against the fast kernel on ``backtest.app.bench``'s grid (interleaved runs in one
process, best of 3-7, one core of a shared 2-core AVX-512 machine, so +-20%): 1.15-1.25x at
256-1,000 columns (8,760 bars: 74-77 M bar-columns/s against 62-68 M), 0.7-1.6x at 10,000
(noisy: 1.2x typical), 1.7x at 100,000 columns of 1,000 bars (58-62 M/s against 33-37 M), about
1.0-1.15x at 16-64 columns, 3.4x slower on one column (a vector loop of one element):
``run_backtest`` uses it from ``engine.SOA_MIN_GROUPS`` portfolios. Since the general part
borrows its arrays (:mod:`backtest.kernels.views`) and the quiet bar is four loops (one loop that
took every step kept ~40 live values and their masks, more than the registers hold: ~440
instructions per 8 columns, half of them mask moves and spills) over blocks of columns whose
state stays in the L1 cache (:data:`SUB`), the bench grid runs at 280-300 M bar-columns/s: the
quiet loops cost ~2-2.5 ns per bar-column (4.2-4.6 ns as one loop), the general part (~1% of the
bar-columns) about 100-130 ns each.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from backtest.kernels import layout, rules
from backtest.kernels.fast import chunk_bars_nb, isolated_open_nb, open_arrays_nb, scatter_by_bar
from backtest.kernels.margin import liq_level_nb, tier_bounds_nb
from backtest.kernels.views import borrowed, prefetch_read, prefetch_write

#: Portfolios per tile (at most; the engine calls the kernel with blocks of ``FAST_BLOCK_GROUPS``).
#: Per-bar costs (a tile's general part, its calls) favour large tiles: measured on 1,000 columns
#: x 8,760 bars, tiles of 64, 128, 256, 512, 1,024 and 4,096 ran at 0.74, 0.87, 0.88, 0.96, 1.10
#: and 1.15x the fast kernel.
TILE = 4096
#: Elements from one slot of a tile's state to the next: a tile plus one cache line, so that a
#: column's slots fall in different cache sets (a power-of-two stride put them all in one or two
#: sets of the L1 cache: measured 3x slower).
STRIDE = TILE + 8
#: Columns per block of a tile's quiet-bar loops (:func:`_quiet_nb`): a block's slots stay in
#: the L1 cache from one loop to the next (the first loop of a bar, which finds the columns that
#: need the general part, was bound by the L2 cache: 0.5 ns per bar-column on 128 columns
#: against 0.95 ns on 1,000, timed alone). Measured on the bench grid (the kernel alone, medians
#: of six interleaved runs): blocks of 32, 64 and 128 columns ran 1.02, 1.09 and 1.04x as fast
#: as none; 256 and 1,024 no faster.
SUB = 64

# Slots of a tile's state array (slot w of the tile's k-th column at ``w * STRIDE + k``): the
# column state of ``layout.S_*`` plus its portfolio's cash and stop state, the target factor of
# the rebalancing check, whether a close/re-entry/rebalance/stop is pending, the per-column
# constants of the quiet bars' checks (delta band, hourly borrow rate, rebalancing period,
# band and minimums).
W_S, W_Q, W_COST, W_FW, W_SV, W_PV, W_LASTX, W_PCLOSE, W_PRE, W_SUSP, W_REB, W_SHARE = range(12)
W_C0, W_C1, W_C2, W_C3, W_C4, W_C5, W_C6, W_CUN, W_C7, W_LIQ, W_INIT = range(12, 23)
W_CASH, W_STOP, W_FACTOR, W_PEND, W_BAND, W_BOR, W_RE, W_RB, W_MQ, W_MN, W_LV = range(23, 34)
# scratch of a bar: the column needs the general part; its equity reached zero (the equity)
W_NEED, W_STOPPED, W_SEQ = range(34, 37)
# a rebalancing period starts after this bar (computed per bar only when some column has a period);
# the column's funding of this bar was booked by the funding loop (set at funding bars only)
W_SCHED, W_PAID = 37, 38
NW = 39


@njit(cache=True, inline="always")
def _close_nb(ok, fv_n, sx, px, bor, h_open, h_in, s, q, fw, sv, pv, cun, st):
    """Steps 5-7 of a bar as the fast kernel takes them (funding, close revaluation at ``sx``/
    ``px``, borrow at hourly rate ``bor``), scalars in and out: ``st = (c0, c3, c4, c5, cash,
    b_prev, b_open)`` in, ``(fw, sv, pv, cun, c0, c3, c4, c5, cash, famt, bamt)`` out (the
    funding and borrow amounts: the caller updates the liquidation level and the partial sum)."""
    c0, c3, c4, c5, cash, b_prev, b_open = st
    fv = fv_n if q != 0.0 else 0.0
    fw, c0, famt = rules.funding_nb(q, fv, fw, c0)
    if ok:
        c4, c5, cun, sv, pv = rules.revalue_nb(s, q, sv, pv, sx, px, c4, c5, cun)
    bamt = 0.0
    if s < 0.0 or b_open > 0.0:
        cash, c3, bamt = rules.borrow_nb(b_prev, b_open, -s if s < 0.0 else 0.0, sv, bor, h_open, h_in, cash, c3)
    return fw, sv, pv, cun, c0, c3, c4, c5, cash, famt, bamt


@njit(cache=True, inline="always")
def _stop_nb(ceq, stop, s, q):
    """The stop at the equity ``ceq`` (step 8): a portfolio whose equity reached zero stops,
    closing what it holds. Returns ``(stop, stopped)``."""
    if ceq <= 0.0 and stop == layout.STOP_NONE:
        return (layout.STOP_CLOSING if (s != 0.0 or q != 0.0) else layout.STOP_DONE), True
    return stop, False


@njit(cache=True, inline="always")
def _checks_nb(ceq, stop, pending, susp, has_reb, sched, rb0, factor, s, q, sv, mq0, mn0):
    """Step 8's checks after the equity ``ceq``: ``(stop, stopped, reb)``, the stop state
    (:func:`_stop_nb`) and a rebalance due at the next bar (``sched``: a rebalancing period
    starts, see ``rules.period_start_nb``)."""
    stop, stopped = _stop_nb(ceq, stop, s, q)
    pending = pending or stopped
    reb = False
    if has_reb and not pending and not susp and stop == layout.STOP_NONE:
        reb = rules.rebalance_due_nb(sched, rb0, ceq, factor, s, sv, mq0, mn0)
    return stop, stopped, reb


@njit(cache=True)
def _put_stops(buf, seg0, nrec, gen_k, gen_end, ngen, stop_k, stop_g, stop_eq, stop_hold, nstop, j):
    """Bar ``j``'s stop events in (portfolio) order among its other events ``buf[seg0:nrec]``
    (those of the general columns ``gen_k[:ngen]``, ascending, column ``gen_k[h]``'s ending at
    ``gen_end[h]``), each after its own column's; returns the new event count."""
    # the stops, by tile column (insertion sort: there are few)
    for a in range(1, nstop):
        b = a
        while b > 0 and stop_k[b - 1] > stop_k[b]:
            for arr in (stop_k, stop_g):
                arr[b - 1], arr[b] = arr[b], arr[b - 1]
            stop_eq[b - 1], stop_eq[b] = stop_eq[b], stop_eq[b - 1]
            stop_hold[b - 1], stop_hold[b] = stop_hold[b], stop_hold[b - 1]
            b -= 1
    if nrec + nstop > buf.shape[0]:  # the caller reruns with a larger buffer
        return nrec + nstop
    seg = buf[seg0:nrec].copy()
    p = seg0
    h = 0
    r = 0
    for a in range(nstop):
        while h < ngen and gen_k[h] <= stop_k[a]:
            while r < gen_end[h] - seg0:
                buf[p] = seg[r]
                p += 1
                r += 1
            h += 1
        _st, p = rules.stop_nb(buf, p, j, stop_g[a], stop_eq[a], stop_hold[a])
    while r < nrec - seg0:
        buf[p] = seg[r]
        p += 1
        r += 1
    return p


@njit(cache=True, inline="always")
def _need_cols(w, nb, tg_row, cfu, bar, has_band):
    """Step 1 of a bar: whether each column of a tile needs the general part (``W_NEED``): a
    pending order, close, re-entry, rebalance or stop, an order due at the bar's target row
    ``tg_row[cfu + k]``, a possible liquidation of its perp or of its borrowed spot leg's
    margin account. Returns their number. ``has_band`` (some column of the run has a delta band)
    is a constant of each copy: without it the band's test is left out (every band is then
    infinite: never breached)."""
    has_row, ok, mh, ml, sh, level = bar[0], bar[1], bar[2], bar[3], bar[4], bar[5]
    ngen = 0
    for k in range(nb):
        s = w[W_S * STRIDE + k]
        q = w[W_Q * STRIDE + k]
        due = rules.order_due_nb(
            tg_row[cfu + np.uint64(k)],
            w[W_LASTX * STRIDE + k],
            False,
            False,
            False,
            layout.STOP_NONE,
            s,
            q,
            w[W_BAND * STRIDE + k] if has_band else np.inf,
        )
        need = (
            (w[W_PEND * STRIDE + k] != 0.0)
            | (has_row & (due != 0))
            | ((q != 0.0) & ok & rules.liq_possible_nb(q, mh if q < 0.0 else ml, w[W_LIQ * STRIDE + k]))
            | ((s < 0.0) & ok & (w[W_CASH * STRIDE + k] <= level * (-s * sh)))
        )
        w[W_NEED * STRIDE + k] = 1.0 if need else 0.0
        ngen += 1 if need else 0
    return ngen


@njit(cache=True, inline="always")
def _funding_cols(w, nb, fv_n, mmr_max_n, cum_min_n):
    """Step 5 of a funding bar (settlement ``fv_n``, quote per coin) for the quiet columns of a
    tile: the funding into the futures wallet and its component (``rules.funding_nb``), the
    liquidation pre-check level from the new wallet, ``W_PAID`` where an amount was booked."""
    for k in range(nb):
        need = w[W_NEED * STRIDE + k] != 0.0
        q = w[W_Q * STRIDE + k]
        fw = w[W_FW * STRIDE + k]
        c0 = w[W_C0 * STRIDE + k]
        n_fw, n_c0, famt = rules.funding_nb(q, fv_n if q != 0.0 else 0.0, fw, c0)
        paid = ~need & (famt != 0.0)
        lvl = liq_level_nb(q, n_fw, w[W_COST * STRIDE + k], mmr_max_n, cum_min_n)
        w[W_FW * STRIDE + k] = n_fw if paid else fw
        w[W_C0 * STRIDE + k] = n_c0 if paid else c0
        w[W_LIQ * STRIDE + k] = lvl if paid else w[W_LIQ * STRIDE + k]
        w[W_PAID * STRIDE + k] = 1.0 if paid else 0.0


@njit(cache=True, inline="always")
def _close_cols(w, nb, eq_row, cfu, bar, fund_bar, reval):
    """Steps 6-8 of a bar for the quiet columns of a tile: the revaluation (``reval``: at the
    close, or at the reference prices on an invalid bar that has them), the borrow interest, the
    partial sum when funding (``W_PAID`` on a ``fund_bar``) or borrow moved it, the equity (into
    ``eq_row[cfu + k]``, also for the general columns: written again by the general part) and
    the stop (``W_STOPPED``, ``W_SEQ``). Returns the number of stops. ``reval`` and, on valid
    bars, ``fund_bar`` are constants of each copy (the vector loop otherwise computes and then
    drops the revaluation and the funding's partial sum: measured 6% of the kernel's time)."""
    ok, so_r, po_r, sx, px, h_open, h_in = bar[1], bar[6], bar[7], bar[9], bar[10], bar[11], bar[12]
    rx = sx if ok else so_r
    rpx = px if ok else po_r
    nst = 0
    for k in range(nb):
        need = w[W_NEED * STRIDE + k] != 0.0
        s = w[W_S * STRIDE + k]
        q = w[W_Q * STRIDE + k]
        cash = w[W_CASH * STRIDE + k]
        sv = w[W_SV * STRIDE + k]
        pv = w[W_PV * STRIDE + k]
        c3 = w[W_C3 * STRIDE + k]
        c4 = w[W_C4 * STRIDE + k]
        c5 = w[W_C5 * STRIDE + k]
        cun = w[W_CUN * STRIDE + k]
        c7 = w[W_C7 * STRIDE + k]
        stop = w[W_STOP * STRIDE + k]
        n_sv, n_pv, n_c4, n_c5, n_cun = sv, pv, c4, c5, cun
        if reval:
            n_c4, n_c5, n_cun, n_sv, n_pv = rules.revalue_nb(s, q, sv, pv, rx, rpx, c4, c5, cun)
        n_cash, n_c3, bamt = cash, c3, 0.0
        if s < 0.0:  # (a quiet bar neither opens nor repays a loan)
            n_cash, n_c3, bamt = rules.borrow_nb(-s, -s, -s, n_sv, w[W_BOR * STRIDE + k], h_open, h_in, cash, c3)
        dirty = (bamt != 0.0) | (fund_bar & (w[W_PAID * STRIDE + k] != 0.0))
        c0, c1, c2 = w[W_C0 * STRIDE + k], w[W_C1 * STRIDE + k], w[W_C2 * STRIDE + k]
        n_c7 = rules.partial_sum_nb(w[W_INIT * STRIDE + k], c0, c1, c2, n_c3) if dirty else c7
        ceq = rules.equity_nb(n_c7, n_c4, n_c5, w[W_C6 * STRIDE + k], n_cun)
        eq_row[cfu + np.uint64(k)] = ceq
        n_stop, stopped = _stop_nb(ceq, stop, s, q)
        stopped = stopped & ~need
        w[W_SV * STRIDE + k] = sv if need else n_sv
        w[W_PV * STRIDE + k] = pv if need else n_pv
        w[W_C3 * STRIDE + k] = c3 if need else n_c3
        w[W_C4 * STRIDE + k] = c4 if need else n_c4
        w[W_C5 * STRIDE + k] = c5 if need else n_c5
        w[W_CUN * STRIDE + k] = cun if need else n_cun
        w[W_C7 * STRIDE + k] = c7 if need else n_c7
        w[W_CASH * STRIDE + k] = cash if need else n_cash
        w[W_STOP * STRIDE + k] = stop if need else n_stop
        w[W_PEND * STRIDE + k] = 1.0 if (need | stopped) else 0.0
        w[W_STOPPED * STRIDE + k] = 1.0 if stopped else 0.0
        w[W_SEQ * STRIDE + k] = ceq
        nst += 1 if stopped else 0
    return nst


@njit(cache=True, inline="always")
def _rebalance_cols(w, nb, has_min, sched_any):
    """Step 8's rebalancing check for the quiet columns of a tile, after their equity
    (``W_SEQ``): ``W_REB`` and ``W_PEND`` where a rebalance is due at the next bar. ``has_min``
    (some column of the tile has an order minimum) and ``sched_any`` (some has a rebalancing
    period) are constants of each copy: without them, the minimums' test (a division) and the
    schedule's are left out (a column without minimums or period never takes them)."""
    for k in range(nb):
        need = w[W_NEED * STRIDE + k] != 0.0
        mq0 = w[W_MQ * STRIDE + k] if has_min else 0.0
        mn0 = w[W_MN * STRIDE + k] if has_min else 0.0
        sched = (w[W_SCHED * STRIDE + k] != 0.0) if sched_any else False
        due = rules.rebalance_due_nb(
            sched,
            w[W_RB * STRIDE + k],
            w[W_SEQ * STRIDE + k],
            w[W_FACTOR * STRIDE + k],
            w[W_S * STRIDE + k],
            w[W_SV * STRIDE + k],
            mq0,
            mn0,
        )
        reb = due & ~need & (w[W_SUSP * STRIDE + k] == 0.0) & (w[W_STOP * STRIDE + k] == layout.STOP_NONE)
        w[W_REB * STRIDE + k] = w[W_REB * STRIDE + k] if need else (1.0 if reb else 0.0)
        w[W_PEND * STRIDE + k] = 1.0 if (reb | (w[W_PEND * STRIDE + k] != 0.0)) else 0.0


@njit(cache=True, error_model="numpy")
def _quiet_nb(w, nb, rows, bar, tile):
    """Every column of a tile (state ``w``) through a bar as if it were quiet, as
    :func:`fast_range_nb`'s quiet bars take it, in loops the compiler vectorizes: which columns
    need the general part (:func:`_need_cols`: their state is kept), then for the others the
    funding of a funding bar (:func:`_funding_cols`), the close (:func:`_close_cols`) and the
    rebalancing check (:func:`_rebalance_cols`). ``rows = (tg_row, eq_row, cf, tg_next,
    eq_next)``: the bar's target and equity rows, the tile's first column and the next bar's rows
    (prefetched block by block); ``bar``: the bar's values of the symbol
    (see :func:`soa_range_nb`); ``tile = (has_min, sched_any, has_band, mmr_max_n, cum_min_n)``.
    The loops take the tile in blocks of :data:`SUB` columns. Returns the numbers of columns that
    need the general part and of stops.

    Four loops, each with a few live values, run in about two thirds of the time of the one
    loop that took every step (measured on the bench grid's columns: 3.0-3.2 against 4.2-4.6 ns
    per bar-column): that loop's ~40 live values and masks did not fit the registers. Each loop
    is compiled once per run- or bar-wide switch it tests (bands; revaluation and funding bar;
    minimums and schedules), so that it does not compute, for every column, work a switch
    turns off."""
    tg_row, eq_row, cf, tg_next, eq_next = rows
    fv_n, has_reb, fund_bar = bar[8], bar[13], bar[15]
    has_min, sched_any, has_band, mmr_max_n, cum_min_n = tile
    cfu = np.uint64(cf)  # unsigned: no negative-index wraparound (which would turn loads into gathers)
    w = borrowed(w)  # (no reference counting of its blocks' views)
    reval = bar[1] or bar[14]  # (an invalid bar keeps the reference price)
    ngen = 0
    nst = 0
    for k0 in range(0, nb, SUB):  # blocks of columns whose state the loops find in the L1 cache
        m = min(nb - k0, SUB)
        wb = w[k0:]  # (the block's state: slot w of its column k at wb[w * STRIDE + k])
        cb = cfu + np.uint64(k0)
        for l in range(0, m, 8):  # the next bar's rows of the block, a cache line (8 values) at a time
            prefetch_read(tg_next, cb + np.uint64(l))
            prefetch_write(eq_next, cb + np.uint64(l))
        if has_band:
            ngen += _need_cols(wb, m, tg_row, cb, bar, True)
        else:
            ngen += _need_cols(wb, m, tg_row, cb, bar, False)
        if fund_bar:
            _funding_cols(wb, m, fv_n, mmr_max_n, cum_min_n)
        if reval and fund_bar:
            nst += _close_cols(wb, m, eq_row, cb, bar, True, True)
        elif reval:
            nst += _close_cols(wb, m, eq_row, cb, bar, False, True)
        else:
            nst += _close_cols(wb, m, eq_row, cb, bar, fund_bar, False)
        if has_reb:
            if has_min and sched_any:
                _rebalance_cols(wb, m, True, True)
            elif has_min:
                _rebalance_cols(wb, m, True, False)
            elif sched_any:
                _rebalance_cols(wb, m, False, True)
            else:
                _rebalance_cols(wb, m, False, False)
    return ngen, nst


@njit(cache=True, inline="always")
def _flagged_nb(w, slot, nb, out):
    """The columns of a tile whose flag ``w[slot * STRIDE + k]`` (1.0 or 0.0) is set, ascending,
    into ``out``; returns their number. Eight columns are tested at once (their sum, as a tree:
    exact for such flags), then one by one where the sum is not zero: a bar's flagged columns
    are few, and a test and branch per column cost 0.30 ns per bar-column (0.17 ns this way)."""
    h = 0
    base = slot * STRIDE
    nb8 = nb - nb % 8
    for k0 in range(0, nb8, 8):
        a = base + k0
        t = ((w[a] + w[a + 1]) + (w[a + 2] + w[a + 3])) + ((w[a + 4] + w[a + 5]) + (w[a + 6] + w[a + 7]))
        if t != 0.0:
            for d in range(8):
                if w[a + d] != 0.0:
                    out[h] = k0 + d
                    h += 1
    for k in range(nb8, nb):
        if w[base + k] != 0.0:
            out[h] = k
            h += 1
    return h


@njit(cache=True, inline="always")
def _portfolio_value_nb(w, k):
    """The equity of the tile's ``k``-th one-column portfolio from its state ``w``: its cash, spot
    value, futures wallet and unrealized perp PnL (as the fast kernel sums them)."""
    s = w[W_S * STRIDE + k]
    q = w[W_Q * STRIDE + k]
    upnl = q * w[W_PV * STRIDE + k] - w[W_COST * STRIDE + k]
    return (
        w[W_CASH * STRIDE + k]
        + 0.0
        + rules.column_value_nb(0.0, s, w[W_SV * STRIDE + k], w[W_FW * STRIDE + k], q, upnl)
    )


@njit(cache=True, error_model="numpy")
def _group_equity_nb(w, nb, ge_row, ga):
    """The portfolio equity of each quiet column of a tile after its bar into ``ge_row[ga + k]``."""
    for k in range(nb):
        if w[W_NEED * STRIDE + k] == 0.0:
            ge_row[ga + k] = _portfolio_value_nb(w, k)


@njit(cache=True, error_model="numpy")
def _schedules_nb(w, nb, t_ms, bar_ms):
    """Whether a rebalancing period starts after the bar opening at ``t_ms``, per column of a tile."""
    for k in range(nb):
        re0 = w[W_RE * STRIDE + k]
        w[W_SCHED * STRIDE + k] = 1.0 if (re0 < np.inf and rules.period_start_nb(t_ms, bar_ms, re0)) else 0.0


@njit(cache=True)
def soa_range_nb(g0, g1, mk, book, prm, tiers, run, st, out, rec):
    """:func:`~backtest.kernels.fast.fast_range_nb` for the runs :func:`soa_applies` accepts
    (same arguments, same results, final state and events)."""
    T = mk.so_ref.shape[0]
    # the arguments' arrays borrowed (backtest.kernels.views): no reference counting in the bar loop
    mk, book, prm, tiers = borrowed(mk), borrowed(book), borrowed(prm), borrowed(tiers)
    st, out, rec = borrowed(st), borrowed(out), borrowed(rec)
    mmr_max, cum_min = tier_bounds_nb(tiers.mmr, tiers.cum, tiers.n)
    flags = run.flags
    w_eq = (flags & layout.F_EQUITY) != 0
    w_geq = (flags & layout.F_GROUP_EQUITY) != 0
    has_band = (flags & layout.F_HAS_BAND) != 0
    has_reb = (flags & layout.F_HAS_REB) != 0
    lag, bar_ms, level = run.lag, run.bar_ms, run.spot_liq_level
    cs, gs = st.columns, st.groups
    equity, group_equity = out.equity, out.group_equity
    tg = book.targets
    t_off = book.t_off
    valid, mark_high, mark_low, spot_high = mk.valid, mk.mark_high, mk.mark_low, mk.spot_high
    spot_close, mark_close, funding_value = mk.spot_close, mk.mark_close, mk.funding_value
    ref_valid, so_ref, po_ref = mk.ref_valid, mk.so_ref, mk.po_ref
    mark_open, spot_open, time_ms = mk.mark_open, mk.spot_open, mk.time_ms
    ng = g1 - g0
    ntile = (ng + TILE - 1) // TILE
    # the fast kernel's time chunks (it recomputes the rebalancing check's target factor at each)
    chunk = chunk_bars_nb(T, ng, flags)
    sorting = ntile > 1  # tiles' events: into a scratch buffer, then into bar order
    buf = np.empty((rec.shape[0] if sorting else 0, layout.N_REC_FIELDS))
    if not sorting:
        buf = rec
    bbuf = borrowed(buf)  # the general part's events (a scratch buf outlives it: scatter_by_bar below)
    nrec = 0
    n = book.col_sym[book.grp_cols[book.grp_start[g0]]] if ng > 0 else 0
    nu = np.uint64(n)
    mmr_max_n = mmr_max[n] if ng > 0 else 0.0
    cum_min_n = cum_min[n] if ng > 0 else 0.0
    w = np.empty(NW * STRIDE)
    cidx = np.empty(TILE, np.int64)
    gen_k = np.empty(TILE, np.int64)  # a bar's general columns, and where their events end
    gen_end = np.empty(TILE, np.int64)
    stop_k = np.empty(TILE, np.int64)  # a bar's stops: tile column, portfolio, equity, holding
    stop_g = np.empty(TILE, np.int64)
    stop_eq = np.empty(TILE)
    stop_hold = np.empty(TILE, np.bool_)
    arr = open_arrays_nb(mk, book, prm, tiers)
    for t in range(ntile):
        ga = g0 + t * TILE
        nb = min(g1, ga + TILE) - ga
        sched_any = False
        has_min = False
        for k in range(nb):
            g = ga + k
            c = book.grp_cols[book.grp_start[g]]
            cidx[k] = c
            w[W_SCHED * STRIDE + k] = 0.0
            sched_any = sched_any or (has_reb and rules.flex_nb(prm.reb_every_ms, 0, c) < np.inf)
            w[W_S * STRIDE + k] = cs[c, layout.S_S]
            w[W_Q * STRIDE + k] = cs[c, layout.S_Q]
            w[W_COST * STRIDE + k] = cs[c, layout.S_COST]
            w[W_FW * STRIDE + k] = cs[c, layout.S_FW]
            w[W_SV * STRIDE + k] = cs[c, layout.S_SV]
            w[W_PV * STRIDE + k] = cs[c, layout.S_PV]
            w[W_LASTX * STRIDE + k] = cs[c, layout.S_LASTX]
            w[W_PCLOSE * STRIDE + k] = cs[c, layout.S_PCLOSE]
            w[W_PRE * STRIDE + k] = cs[c, layout.S_PRE]
            w[W_SUSP * STRIDE + k] = cs[c, layout.S_SUSP]
            w[W_REB * STRIDE + k] = cs[c, layout.S_REB]
            w[W_SHARE * STRIDE + k] = cs[c, layout.S_SHARE]
            for m in range(layout.N_COMP - 1):
                w[(W_C0 + m) * STRIDE + k] = cs[c, layout.S_COMP + m]
            w[W_CUN * STRIDE + k] = cs[c, layout.S_COMP + 7]
            w[W_C7 * STRIDE + k] = cs[c, layout.S_COMP7]
            w[W_LIQ * STRIDE + k] = cs[c, layout.S_LIQ]
            w[W_INIT * STRIDE + k] = cs[c, layout.S_INIT]
            w[W_CASH * STRIDE + k] = gs[g, layout.G_CASH]
            stop = gs[g, layout.G_STOP]
            w[W_STOP * STRIDE + k] = stop
            pend = (
                cs[c, layout.S_PCLOSE] != 0.0
                or cs[c, layout.S_REB] != 0.0
                or cs[c, layout.S_PRE] >= 0.0
                or stop == layout.STOP_CLOSING
            )
            w[W_PEND * STRIDE + k] = 1.0 if pend else 0.0
            w[W_BAND * STRIDE + k] = prm.delta_band[0, c if prm.delta_band.shape[1] > 1 else 0] if has_band else np.inf
            w[W_BOR * STRIDE + k] = prm.borrow_h[0, c if prm.borrow_h.shape[1] > 1 else 0]
            w[W_RE * STRIDE + k] = rules.flex_nb(prm.reb_every_ms, 0, c)
            w[W_RB * STRIDE + k] = rules.flex_nb(prm.reb_band, 0, c)
            w[W_MQ * STRIDE + k] = rules.flex_nb(prm.min_qty, 0, c)
            w[W_MN * STRIDE + k] = rules.flex_nb(prm.min_notional, 0, c)
            has_min = has_min or w[W_MQ * STRIDE + k] > 0.0 or w[W_MN * STRIDE + k] > 0.0
            lv0 = rules.flex_nb(prm.leverage, 0, c)
            w[W_LV * STRIDE + k] = lv0
            w[W_FACTOR * STRIDE + k] = rules.target_factor_nb(cs[c, layout.S_SHARE], cs[c, layout.S_LASTX], lv0)
        for j in range(T):
            ju = np.uint64(j)
            if has_reb and j > 0 and j % chunk == 0:  # as the fast kernel at each of its time chunks
                for k in range(nb):
                    w[W_FACTOR * STRIDE + k] = rules.target_factor_nb(
                        w[W_SHARE * STRIDE + k], w[W_LASTX * STRIDE + k], w[W_LV * STRIDE + k]
                    )
            i = j - lag + t_off
            iu = np.uint64(max(i, 0))
            ok = valid[ju, nu]
            mh = mark_high[ju, nu]
            ml = mark_low[ju, nu]
            sh = spot_high[ju, nu]
            sx = spot_close[ju, nu]
            px = mark_close[ju, nu]
            fv_n = funding_value[ju, nu]
            ref_ok = ref_valid[ju, nu]
            so_r = so_ref[ju, nu]
            po_r = po_ref[ju, nu]
            mo_n = mark_open[ju, nu]
            so_n = spot_open[ju, nu]
            t_ms = time_ms[ju]
            fund_bar = fv_n != 0.0 and np.isfinite(fv_n)
            if sched_any:
                _schedules_nb(w, nb, t_ms, bar_ms)
            h_open, h_in = rules.borrow_hours_nb(t_ms, bar_ms)
            row = ju if w_eq else np.uint64(0)
            has_row = i >= 0
            seg0 = nrec
            tg_row = tg[iu]
            eq_row = equity[row]
            eq_next = equity[np.uint64(min(j + 1, T - 1)) if w_eq else np.uint64(0)]
            tg_next = tg[np.uint64(min(max(i + 1, 0), tg.shape[0] - 1))]
            ge_row = group_equity[ju] if w_geq else group_equity[0]  # (not written without w_geq)
            cf = cidx[0]
            # every column's bar as if it were quiet (loops the compiler vectorizes); the
            # columns that need the general part keep their state and take it below
            bar = (has_row, ok, mh, ml, sh, level, so_r, po_r, fv_n, sx, px, h_open, h_in, has_reb, ref_ok, fund_bar)
            ngen, nst = _quiet_nb(
                w, nb, (tg_row, eq_row, cf, tg_next, eq_next), bar, (has_min, sched_any, has_band, mmr_max_n, cum_min_n)
            )
            if w_geq:  # (the general part writes its columns' own)
                _group_equity_nb(w, nb, ge_row, ga)
            nstop = 0
            if nst > 0:  # the quiet columns' stops (their events are put in order below)
                nstop = _flagged_nb(w, W_STOPPED, nb, stop_k)
                for a in range(nstop):
                    k = stop_k[a]
                    stop_g[a] = ga + k
                    stop_eq[a] = w[W_SEQ * STRIDE + k]
                    stop_hold[a] = w[W_STOP * STRIDE + k] != layout.STOP_DONE
            if ngen > 0:
                _flagged_nb(w, W_NEED, nb, gen_k)
            # the general part (orders, liquidations, pending closes) of the others, then the rest of their bar
            for h in range(ngen):
                k = gen_k[h]
                ku = np.uint64(k)
                c = cidx[ku]
                (
                    nrec,
                    dirty,
                    b_prev,
                    b_open,
                    _mr_f,
                    _smr,
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
                    bbuf,
                    nrec,
                    j,
                    c,
                    n,
                    i,
                    tg[iu, np.uint64(c)] if i >= 0 else np.nan,
                    ok,
                    mh,
                    ml,
                    w[W_BAND * STRIDE + ku],
                    False,
                    0,
                    mmr_max_n,
                    cum_min_n,
                    (ref_ok, so_r, po_r, mo_n, sh, so_n),
                    arr,
                    run,
                    (
                        w[W_S * STRIDE + ku],
                        w[W_Q * STRIDE + ku],
                        w[W_COST * STRIDE + ku],
                        w[W_FW * STRIDE + ku],
                        w[W_SV * STRIDE + ku],
                        w[W_PV * STRIDE + ku],
                        w[W_LASTX * STRIDE + ku],
                        w[W_PCLOSE * STRIDE + ku] != 0.0,
                        w[W_PRE * STRIDE + ku],
                        w[W_SUSP * STRIDE + ku] != 0.0,
                        w[W_REB * STRIDE + ku] != 0.0,
                        w[W_SHARE * STRIDE + ku],
                        w[W_FACTOR * STRIDE + ku],
                        w[W_STOP * STRIDE + ku],
                        w[W_CASH * STRIDE + ku],
                    ),
                    (
                        w[W_C1 * STRIDE + ku],
                        w[W_C2 * STRIDE + ku],
                        w[W_C4 * STRIDE + ku],
                        w[W_C5 * STRIDE + ku],
                        w[W_C6 * STRIDE + ku],
                        w[W_CUN * STRIDE + ku],
                        w[W_LIQ * STRIDE + ku],
                    ),
                )
                gen_end[h] = nrec
                pending = pend_close or reb or reentry >= 0.0 or stop == layout.STOP_CLOSING
                fw, sv, pv, cun, c0, c3, c4, c5, cash, famt, bamt = _close_nb(
                    ok,
                    fv_n,
                    sx,
                    px,
                    w[W_BOR * STRIDE + ku],
                    h_open,
                    h_in,
                    s,
                    q,
                    fw,
                    sv,
                    pv,
                    cun,
                    (w[W_C0 * STRIDE + ku], w[W_C3 * STRIDE + ku], c4, c5, cash, b_prev, b_open),
                )
                if famt != 0.0 or bamt != 0.0:
                    dirty = True
                    if famt != 0.0:
                        liq_lvl = liq_level_nb(q, fw, cost, mmr_max_n, cum_min_n)
                if dirty:
                    c7 = rules.partial_sum_nb(w[W_INIT * STRIDE + ku], c0, c1, c2, c3)
                    w[W_C7 * STRIDE + ku] = c7
                else:
                    c7 = w[W_C7 * STRIDE + ku]
                ceq = rules.equity_nb(c7, c4, c5, c6, cun)
                eq_row[c] = ceq
                if w_geq:
                    ge_row[ga + k] = cash + 0.0 + rules.column_value_nb(0.0, s, sv, fw, q, q * pv - cost)
                stop, stopped, reb2 = _checks_nb(
                    ceq,
                    stop,
                    pending,
                    susp,
                    has_reb,
                    w[W_RE * STRIDE + ku] < np.inf and rules.period_start_nb(t_ms, bar_ms, w[W_RE * STRIDE + ku]),
                    w[W_RB * STRIDE + ku],
                    factor,
                    s,
                    q,
                    sv,
                    w[W_MQ * STRIDE + ku],
                    w[W_MN * STRIDE + ku],
                )
                if stopped:
                    stop_k[nstop] = k
                    stop_g[nstop] = ga + k
                    stop_eq[nstop] = ceq
                    stop_hold[nstop] = stop != layout.STOP_DONE
                    nstop += 1
                    pending = True
                if reb2:
                    reb = True
                    pending = True
                w[W_S * STRIDE + ku] = s
                w[W_Q * STRIDE + ku] = q
                w[W_COST * STRIDE + ku] = cost
                w[W_FW * STRIDE + ku] = fw
                w[W_SV * STRIDE + ku] = sv
                w[W_PV * STRIDE + ku] = pv
                w[W_LASTX * STRIDE + ku] = last_x
                w[W_PCLOSE * STRIDE + ku] = 1.0 if pend_close else 0.0
                w[W_PRE * STRIDE + ku] = reentry
                w[W_SUSP * STRIDE + ku] = 1.0 if susp else 0.0
                w[W_REB * STRIDE + ku] = 1.0 if reb else 0.0
                w[W_SHARE * STRIDE + ku] = share
                w[W_FACTOR * STRIDE + ku] = factor
                w[W_STOP * STRIDE + ku] = stop
                w[W_C0 * STRIDE + ku] = c0
                w[W_C1 * STRIDE + ku] = c1
                w[W_C2 * STRIDE + ku] = c2
                w[W_C3 * STRIDE + ku] = c3
                w[W_C4 * STRIDE + ku] = c4
                w[W_C5 * STRIDE + ku] = c5
                w[W_C6 * STRIDE + ku] = c6
                w[W_CUN * STRIDE + ku] = cun
                w[W_CASH * STRIDE + ku] = cash
                w[W_LIQ * STRIDE + ku] = liq_lvl
                w[W_PEND * STRIDE + ku] = 1.0 if pending else 0.0
            if nstop > 0:
                nrec = _put_stops(buf, seg0, nrec, gen_k, gen_end, ngen, stop_k, stop_g, stop_eq, stop_hold, nstop, j)
        for k in range(nb):
            g = ga + k
            c = cidx[k]
            s = w[W_S * STRIDE + k]
            q = w[W_Q * STRIDE + k]
            cash = w[W_CASH * STRIDE + k]
            if not w_geq:  # the last bar's portfolio equity, as the bar itself would write it
                group_equity[0, g] = _portfolio_value_nb(w, k)
            cs[c, layout.S_S] = s
            cs[c, layout.S_Q] = q
            cs[c, layout.S_COST] = w[W_COST * STRIDE + k]
            cs[c, layout.S_FW] = w[W_FW * STRIDE + k]
            cs[c, layout.S_SV] = w[W_SV * STRIDE + k]
            cs[c, layout.S_PV] = w[W_PV * STRIDE + k]
            cs[c, layout.S_LASTX] = w[W_LASTX * STRIDE + k]
            cs[c, layout.S_PCLOSE] = w[W_PCLOSE * STRIDE + k]
            cs[c, layout.S_PRE] = w[W_PRE * STRIDE + k]
            cs[c, layout.S_SUSP] = w[W_SUSP * STRIDE + k]
            cs[c, layout.S_REB] = w[W_REB * STRIDE + k]
            cs[c, layout.S_SHARE] = w[W_SHARE * STRIDE + k]
            for m in range(layout.N_COMP - 1):
                cs[c, layout.S_COMP + m] = w[(W_C0 + m) * STRIDE + k]
            cs[c, layout.S_COMP + 7] = w[W_CUN * STRIDE + k]
            cs[c, layout.S_COMP7] = w[W_C7 * STRIDE + k]
            cs[c, layout.S_LIQ] = w[W_LIQ * STRIDE + k]
            gs[g, layout.G_CASH] = cash
            gs[g, layout.G_STOP] = w[W_STOP * STRIDE + k]
    if sorting and nrec <= rec.shape[0]:
        scatter_by_bar(buf, nrec, rec, 0, 0, T)
    for g in range(g0, g1):
        c = book.grp_cols[book.grp_start[g]]
        cs[c, layout.S_PRE] = rules.carry_bar_nb(cs[c, layout.S_PRE], T)
        rules.store_final_nb(cs, out, c, flags)
    return nrec


#: Output flags the kernel does not write per bar (it runs only without them).
NOT_LEAN = layout.F_COMPONENTS | layout.F_POSITIONS | layout.F_MARGIN | layout.F_CASHFLOW_EVENTS


def soa_applies(flags: int, prm: layout.Params, book: layout.Book) -> bool:
    """Whether :func:`soa_range_nb` runs a run the fast kernel may run (its own conditions
    checked by the caller) with output ``flags``, parameters ``prm`` and columns ``book``: lean
    outputs, one symbol, portfolios in column order, the quiet bars' parameters constant over
    the bars."""
    col_sym = book.col_sym
    first = book.grp_cols[book.grp_start[:-1]]
    if not np.array_equal(first, np.arange(len(first))):
        return False
    per_bar = [prm.borrow_h, prm.delta_band]
    if flags & layout.F_HAS_REB:
        per_bar += [prm.reb_every_ms, prm.reb_band, prm.leverage, prm.min_qty, prm.min_notional]
    return (
        (flags & NOT_LEAN) == 0
        and len(col_sym) > 0
        and bool((col_sym == col_sym[0]).all())
        and all(a.shape[0] == 1 for a in per_bar)
    )


@njit(cache=True, parallel=True)
def soa_parallel_nb(bounds, rec_bounds, mk, book, prm, tiers, run, st, out, rec):
    """:func:`soa_range_nb` over chunks of groups ``bounds[h] .. bounds[h + 1]`` in parallel
    (chunk ``h`` writes its events to ``rec[rec_bounds[h]:rec_bounds[h + 1]]``; returns each
    chunk's count, as :func:`backtest.kernels.simulate.simulate_parallel_nb`). Its own function,
    so that only runs that use this kernel compile it."""
    nch = bounds.shape[0] - 1
    counts = np.zeros(nch, np.int64)
    for h in prange(nch):
        counts[h] = soa_range_nb(
            bounds[h], bounds[h + 1], mk, book, prm, tiers, run, st, out, rec[rec_bounds[h] : rec_bounds[h + 1]]
        )
    return counts

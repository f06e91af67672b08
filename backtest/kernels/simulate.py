"""The carry simulation kernel: one pass over time, columns inside, pure NumPy in and out.

Per bar ``j`` and portfolio (group) ``g`` the kernel does, in this order:

1. **open**: revalue spot legs to the reference price and perp legs to the perp reference
   price (``so_ref``/``po_ref``: bar ``j``'s open, or bar ``j-1``'s close for delay 0);
2. **top-ups** due at this bar move quote from the spot wallet to the futures wallet(s),
   selling spot coins for a shortfall;
3. **orders**: a new target (``targets[j - lag]``, finite and different from the last one
   executed) resizes both legs to ``x * C_c * L / (L + 1)`` spot notional with the perp at
   ``-spot`` coins; else a pending post-liquidation spot close, else the delta band;
   after a column's (isolated) or group's (cross) fills the futures wallet is set to
   ``sum |q| * price / L`` by a transfer;
4. **liquidation** against the bar's adverse mark extreme (isolated: closed form per bracket;
   cross: the common point on the path from mark open to the adverse extremes; portfolio
   margin (``haircut >= 0``): as cross, with the quote cash and the spot legs (long at
   ``1 - haircut``, short at ``1 + haircut``, moving with their mark) in the margin balance);
5. **funding** ``-q * funding_value[j]`` into the futures wallet;
6. **close**: revalue spot to the spot close, perp to the mark close;
7. **borrow** on short spot: ``|s| * spot * hourly_rate * bar_hours``;
8. margin ratio, distance to liquidation, top-up detection; outputs.

Invalid bars (``valid`` False) never trade and keep the last valuation prices.
Components are kept cumulative per column: 0 funding, 1 fees, 2 slippage, 3 borrow,
4 spot price, 5 perp price, 6 liquidation (all quote, signed: + is a gain).
Event records are rows of a caller-provided float64 (R, 9) buffer: bar, column, kind, leg, qty,
price, rate, cash, fee (see :mod:`backtest.result` for the meaning).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from backtest.kernels.margin import bracket_cached_nb, bracket_nb, flex_nb, isolated_liq_price_nb, maint_margin_nb

N_COMP = 7
C_FUND, C_FEE, C_SLIP, C_BORROW, C_SPOT, C_PERP, C_LIQ = 0, 1, 2, 3, 4, 5, 6
K_FILL, K_FUNDING, K_BORROW, K_TRANSFER, K_LIQ = 0, 1, 2, 3, 4
LEG_SPOT, LEG_PERP, LEG_NONE = 0, 1, -1
N_REC_FIELDS = 9
#: Wallet transfers smaller than this (quote) are rounding noise and skipped.
MIN_TRANSFER = 1e-9

#: Slots of a column's state (``col_state[c]``): what a run needs to continue on the next bars.
#: Quantities in coins (spot ``s``, perp ``q``), quote amounts (perp cost ``q * entry``, futures
#: wallet, last valuation prices of both legs), the last executed target, the post-liquidation
#: flags (0/1), the cumulative components, their cached partial sum, the bracket hint, the
#: liquidation pre-check level, the bar of a scheduled top-up counted from the run's end
#: (-1: none) and the column's initial capital share (quote).
S_S, S_Q, S_COST, S_FW, S_SV, S_PV, S_LASTX, S_PCLOSE, S_PRE = 0, 1, 2, 3, 4, 5, 6, 7, 8
S_COMP = 9  # 9 .. 15: the N_COMP components
S_COMP7, S_KC, S_LIQ, S_TOPUP, S_INIT = 16, 17, 18, 19, 20
NSC = 21
#: Slots of a portfolio's state (``grp_state[g]``): spot quote cash, cross futures wallet,
#: scheduled cross top-up (as ``S_TOPUP``).
G_CASH, G_FW, G_TOPUP = 0, 1, 2
NSG = 3


@njit(cache=True, inline="always")
def _push(rec, n, bar, col, kind, leg, qty, price, rate, cash, fee):
    """Write event row ``n`` if the buffer has room; always return ``n + 1`` (the count needed)."""
    if n < rec.shape[0]:
        rec[n, 0] = bar
        rec[n, 1] = col
        rec[n, 2] = kind
        rec[n, 3] = leg
        rec[n, 4] = qty
        rec[n, 5] = price
        rec[n, 6] = rate
        rec[n, 7] = cash
        rec[n, 8] = fee
    return n + 1


@njit(cache=True)
def fill_price(dq, ref, vol, slip_frac, impact):
    """Fill price (quote/coin) of ``dq`` coins against ``ref``: fixed + participation slippage."""
    s = slip_frac
    if impact > 0.0 and vol > 0.0:
        s += impact * abs(dq) / vol
    return ref * (1.0 + s) if dq > 0 else ref * (1.0 - s)


@njit(cache=True)
def perp_trade(q, cost, dq, f):
    """New (q, cost, realized) after trading ``dq`` perp coins at ``f``; ``cost = q * entry``."""
    if q == 0.0 or (q > 0.0) == (dq > 0.0):
        return q + dq, cost + dq * f, 0.0
    if abs(dq) <= abs(q):
        r = -dq / q
        realized = -dq * f - r * cost
        nq = q + dq
        return nq, (cost - r * cost) if nq != 0.0 else 0.0, realized
    realized = q * f - cost
    rest = q + dq
    return rest, rest * f, realized


#: Bits of the ``flags`` argument: which outputs are written per bar (else only the final row)
#: and whether per-bar cash-flow events (funding, borrow) are recorded.
F_EQUITY, F_GROUP_EQUITY, F_COMPONENTS, F_POSITIONS, F_MARGIN, F_CASHFLOW_EVENTS = 1, 2, 4, 8, 16, 32
#: Hints: some column has a finite delta band / a top-up threshold (else those checks are skipped).
F_HAS_BAND, F_HAS_TOPUP = 64, 128


@njit(cache=True)
def _bracket(t_hi, t_n, kc, c, n, notional, use_cache):
    """Bracket of ``notional`` for column ``c`` on symbol ``n``, remembering it in ``kc[c]``."""
    if use_cache:
        k = bracket_cached_nb(t_hi, t_n, n, notional, kc[c])
        kc[c] = k
        return k
    return bracket_nb(t_hi, t_hi, t_n, n, notional)


@njit(cache=True, inline="always")
def liq_level(qc, fwc, costc, mmr_max, cum_min):
    """Liquidation pre-check level (mark) of an isolated position ``qc`` with wallet ``fwc``.

    The full check of step 4 runs only when the adverse mark extreme ``adv`` may satisfy
    ``fwc + qc * adv - costc <= |qc| * adv * mmr_max - cum_min`` (the cheap bound, itself
    necessary for a liquidation). That inequality is linear in ``adv``: a short may be liquidated
    only at ``adv >= level`` and a long only at ``adv <= level``, where ``level`` here is moved
    to the safe side by far more than any rounding of the check. A bar whose extreme stays
    strictly inside (short: ``adv < level``; long: ``adv > level``) cannot liquidate; NaN means
    "always run the full check".
    """
    if qc == 0.0:
        return np.nan
    a = fwc - costc + cum_min
    aq = abs(qc)
    if qc < 0.0:
        d = aq * (1.0 + mmr_max)
    else:
        d = aq * (1.0 - mmr_max)
        if d <= 0.0:
            return np.nan
    tol = 1e-9 * (abs(fwc) + abs(costc) + abs(cum_min) + abs(a) * aq * (1.0 + mmr_max) / d) + 1e-300
    if qc < 0.0:
        return (a - tol) / d  # candidate when a - d * adv <= 0
    return (tol - a) / d  # candidate when a + d * adv <= 0


@njit(cache=True)
def simulate_range_nb(
    g0,
    g1,
    so_ref,
    po_ref,
    ref_valid,
    spot_close,
    spot_volume,
    perp_volume,
    mark_open,
    mark_high,
    mark_low,
    mark_close,
    valid,
    funding_value,
    funding_rate,
    targets,
    weights,
    col_sym,
    grp_cols,
    grp_start,
    capital,
    leverage,
    spot_fee,
    perp_fee,
    slip_frac,
    impact,
    borrow_h,
    clearance,
    topup_thr,
    delta_band,
    t_lo,
    t_hi,
    t_mmr,
    t_cum,
    t_n,
    tier_cache,
    lag,
    bar_hours,
    cross,
    haircut,
    topup_delay,
    after_liq,
    flags,
    t_off,
    vol0_spot,
    vol0_perp,
    col_state,
    grp_state,
    equity,
    group_equity,
    comps_out,
    spot_out,
    perp_out,
    mr_out,
    dl_out,
    rec,
):
    """Simulate portfolios (groups) ``g0 .. g1 - 1`` over all bars; see the module docstring.

    The run starts from ``col_state`` (C, NSC) and ``grp_state`` (G, NSG) and writes the state
    after its last bar back into them (for its own columns and groups only): a later run over
    the following bars continues exactly. ``targets`` (and ``weights`` when per bar) hold
    ``t_off`` rows before bar 0 (the last targets of the previous run, still to be executed);
    ``vol0_spot``/``vol0_perp`` (N,) are the volumes of the bar before bar 0 (0 for a new run).

    Groups are independent, so disjoint ranges can run in any order or in parallel and give
    bit-identical results. Outputs are written in place (only the columns and groups of the
    range): ``equity`` (T|1, C), ``group_equity`` (T|1, G), ``comps_out`` (7, T|1, C),
    ``spot_out``/``perp_out``/``mr_out``/``dl_out`` (T|1, C): one row per bar where the matching
    bit of ``flags`` is set, else one row with the final values (margin: left untouched).
    Events go to ``rec`` (R, 9) in (bar, group, column) order; returns the number of events
    (rows beyond R were not written: the caller reruns with a larger buffer).
    """
    T = so_ref.shape[0]
    C = targets.shape[1]
    G = grp_start.shape[0] - 1
    w_eq = (flags & F_EQUITY) != 0
    w_geq = (flags & F_GROUP_EQUITY) != 0
    w_comp = (flags & F_COMPONENTS) != 0
    w_pos = (flags & F_POSITIONS) != 0
    w_margin = (flags & F_MARGIN) != 0
    w_cf = (flags & F_CASHFLOW_EVENTS) != 0
    has_band = (flags & F_HAS_BAND) != 0
    has_topup = (flags & F_HAS_TOPUP) != 0
    mmr_max = np.zeros(t_n.shape[0])
    cum_min = np.zeros(t_n.shape[0])
    for n in range(t_n.shape[0]):
        for k in range(t_n[n]):
            mmr_max[n] = max(mmr_max[n], t_mmr[n, k])
            cum_min[n] = min(cum_min[n], t_cum[n, k])
    nrec = 0

    s = np.zeros(C)
    q = np.zeros(C)
    cost = np.zeros(C)
    fw = np.zeros(C)
    sv = np.full(C, np.nan)
    pv = np.full(C, np.nan)
    last_x = np.full(C, np.nan)
    pending_close = np.zeros(C, np.bool_)
    pending_reenter = np.zeros(C, np.bool_)
    topup_at = np.full(C, -1, np.int64)
    # a column's components side by side (one cache line); slot 7 caches the partial sum
    # init + funding + fees + slippage + borrow of the equity (the terms that rarely change)
    comp = np.zeros((C, 8))
    init_share = np.zeros(C)
    kc = np.zeros(C, np.int64)  # last maintenance bracket of each column (a search hint)
    liq_lvl = np.full(C, np.nan)  # liquidation pre-check level per column (see liq_level)
    cash = np.zeros(G)
    gfw = np.zeros(G)
    g_topup_at = np.full(G, -1, np.int64)
    for g in range(g0, g1):
        cash[g] = grp_state[g, G_CASH]
        gfw[g] = grp_state[g, G_FW]
        g_topup_at[g] = _due_in(grp_state[g, G_TOPUP])
        for k in range(grp_start[g], grp_start[g + 1]):
            c = grp_cols[k]
            s[c] = col_state[c, S_S]
            q[c] = col_state[c, S_Q]
            cost[c] = col_state[c, S_COST]
            fw[c] = col_state[c, S_FW]
            sv[c] = col_state[c, S_SV]
            pv[c] = col_state[c, S_PV]
            last_x[c] = col_state[c, S_LASTX]
            pending_close[c] = col_state[c, S_PCLOSE] != 0.0
            pending_reenter[c] = col_state[c, S_PRE] != 0.0
            for m in range(N_COMP):
                comp[c, m] = col_state[c, S_COMP + m]
            comp[c, 7] = col_state[c, S_COMP7]
            kc[c] = np.int64(col_state[c, S_KC])
            liq_lvl[c] = col_state[c, S_LIQ]
            topup_at[c] = _due_in(col_state[c, S_TOPUP])
            init_share[c] = col_state[c, S_INIT]

    for j in range(T):
        rj = j if w_eq else 0
        rg = j if w_geq else 0
        for g in range(g0, g1):
            a, b = grp_start[g], grp_start[g + 1]
            single_iso = (not cross) and b - a == 1
            # 1. open revaluation and due top-ups; in the same pass a quick scan for orders
            # (step 3): most bars of most columns have nothing to do
            any_due = cross and g_topup_at[g] == j
            new_target = False
            any_order = False
            i = j - lag + t_off  # the target row executed at bar j
            scan = i >= 0
            for k in range(a, b):
                c = grp_cols[k]
                if topup_at[c] == j:
                    any_due = True
                if scan:
                    x = targets[i, c]
                    if pending_reenter[c] or (x == x and x != last_x[c]):
                        new_target = True
                        any_order = True
                    elif pending_close[c]:
                        any_order = True
                    elif has_band:
                        sc = s[c]
                        if sc != 0.0 and abs(sc + q[c]) > flex_nb(delta_band, j, c) * abs(sc):
                            any_order = True
            if single_iso and not (any_order or any_due):
                # quiet bar of a one-column isolated portfolio (no fill, no top-up, and the
                # adverse mark extreme on the safe side of the liquidation pre-check level):
                # steps 5-8 only, without the open revaluation
                c = grp_cols[a]
                n = col_sym[c]
                sc = s[c]
                qc = q[c]
                ok = valid[j, n]
                quiet = True
                if qc != 0.0 and ok:
                    if qc < 0.0:
                        quiet = mark_high[j, n] < liq_lvl[c]
                    else:
                        quiet = mark_low[j, n] > liq_lvl[c]
                if quiet:
                    dirty = False
                    fv = funding_value[j, n]
                    if qc != 0.0 and fv != 0.0 and np.isfinite(fv):
                        amt = -qc * fv
                        fw[c] += amt
                        comp[c, C_FUND] += amt
                        dirty = True
                        liq_lvl[c] = liq_level(qc, fw[c], cost[c], mmr_max[n], cum_min[n])
                        if w_cf:
                            r = funding_rate[j, n]
                            nrec = _push(
                                rec, nrec, j, c, K_FUNDING, LEG_PERP, qc, fv / r if r != 0.0 else np.nan, r, amt, 0.0
                            )
                    if ok:
                        sx = spot_close[j, n]
                        mx = mark_close[j, n]
                    elif ref_valid[j, n]:  # an invalid bar keeps the reference price
                        sx = so_ref[j, n]
                        mx = po_ref[j, n]
                    else:
                        sx = sv[c]
                        mx = pv[c]
                    if sc != 0.0:
                        comp[c, C_SPOT] += sc * (sx - sv[c])
                    if qc != 0.0:
                        comp[c, C_PERP] += qc * (mx - pv[c])
                    sv[c] = sx
                    pv[c] = mx
                    svc = sv[c]
                    if sc < 0.0:
                        r = flex_nb(borrow_h, j, c)
                        amt = -sc * svc * r * bar_hours
                        if amt != 0.0:
                            cash[g] -= amt
                            comp[c, C_BORROW] -= amt
                            dirty = True
                            if w_cf:
                                nrec = _push(rec, nrec, j, c, K_BORROW, LEG_SPOT, sc, svc, r, -amt, 0.0)
                    fwc = fw[c]
                    colsum = 0.0
                    if sc != 0.0:
                        colsum += sc * svc
                    colsum += fwc
                    mr = np.nan
                    dl = np.nan
                    if qc != 0.0:
                        pvc = pv[c]
                        upnl = qc * pvc - cost[c]
                        colsum += upnl
                        thr = flex_nb(topup_thr, j, c) if has_topup else np.nan
                        if w_margin or thr == thr:
                            notional = abs(qc) * pvc
                            kb = _bracket(t_hi, t_n, kc, c, n, notional, tier_cache)
                            mm = notional * t_mmr[n, kb] - t_cum[n, kb] if notional > 0.0 else 0.0
                            rate = t_mmr[n, kb]
                            den = notional * (1.0 + rate) if qc < 0.0 else notional * (1.0 - rate)
                            mb = fwc + upnl
                            mr = mm / mb if mb > 0.0 else np.inf
                            dl = (mb - mm) / den
                            if mr >= thr and topup_at[c] < 0:
                                topup_at[c] = j + 1 + topup_delay
                    if dirty:
                        comp[c, 7] = init_share[c] + comp[c, 0] + comp[c, 1] + comp[c, 2] + comp[c, 3]
                    equity[rj, c] = comp[c, 7] + comp[c, 4] + comp[c, 5] + comp[c, 6]
                    if w_margin:
                        mr_out[j, c] = mr
                        dl_out[j, c] = dl
                    if w_comp:
                        for m in range(N_COMP):
                            comps_out[m, j, c] = comp[c, m]
                    if w_pos:
                        spot_out[j, c] = sc
                        perp_out[j, c] = qc
                    group_equity[rg, g] = cash[g] + gfw[g] + colsum
                    continue
            # the open revaluation only where something uses the open prices (fills, top-ups,
            # cross margin); on quiet bars of isolated portfolios the close revaluation (step 6)
            # goes straight from the last valuation price to the close (same sum, rounded once)
            # (and on bars where the reference is valid but the bar is not, which keeps the
            # reference price: delay 0 after a valid bar)
            open_all = cross or any_order or any_due
            for k in range(a, b):
                c = grp_cols[k]
                n = col_sym[c]
                if ref_valid[j, n] and (open_all or not valid[j, n]):
                    so = so_ref[j, n]
                    po = po_ref[j, n]
                    if s[c] != 0.0:
                        comp[c, C_SPOT] += s[c] * (so - sv[c])
                    if q[c] != 0.0:
                        comp[c, C_PERP] += q[c] * (po - pv[c])
                    sv[c] = so
                    pv[c] = po
            eq_ready = False
            eq = 0.0
            fills = False  # fills may change fees and slippage: refresh the cached partial sums
            if scan and any_due:
                fills = True
                # 2. top-ups due now
                due_g = cross and g_topup_at[g] == j
                if cross and g_topup_at[g] == j:
                    g_topup_at[g] = -1
                for k in range(a, b):
                    c = grp_cols[k]
                    n = col_sym[c]
                    due = (not cross) and topup_at[c] == j
                    if not (due or due_g):
                        continue
                    if not cross:
                        topup_at[c] = -1
                        if q[c] == 0.0:
                            continue
                        if not ref_valid[j, n]:
                            topup_at[c] = j + 1
                            continue
                        need = abs(q[c]) * pv[c] / flex_nb(leverage, j, c) - (fw[c] + q[c] * pv[c] - cost[c])
                    else:
                        if k != a:
                            continue
                        need = -gfw[g]
                        for k2 in range(a, b):
                            c2 = grp_cols[k2]
                            if q[c2] != 0.0:
                                need += abs(q[c2]) * pv[c2] / flex_nb(leverage, j, c2) - (q[c2] * pv[c2] - cost[c2])
                    if need <= 0.0:
                        continue
                    # sell spot coins for the part the quote cash cannot cover
                    for k2 in range(a, b):
                        c2 = grp_cols[k2] if cross else c
                        n2 = col_sym[c2]
                        short = need - max(cash[g], 0.0)
                        if short <= 0.0:
                            break
                        if s[c2] > 0.0 and ref_valid[j, n2]:
                            dq = -min(s[c2], short / so_ref[j, n2])
                            vol = spot_volume[j - 1, n2] if j > 0 else vol0_spot[n2]
                            f = fill_price(dq, so_ref[j, n2], vol, flex_nb(slip_frac, j, c2), flex_nb(impact, j, c2))
                            fee = abs(dq) * f * flex_nb(spot_fee, j, c2)
                            cash[g] -= dq * f + fee
                            s[c2] += dq
                            comp[c2, C_FEE] -= fee
                            comp[c2, C_SLIP] += dq * (so_ref[j, n2] - f)
                            nrec = _push(rec, nrec, j, c2, K_FILL, LEG_SPOT, dq, f, np.nan, -dq * f - fee, fee)
                        if not cross:
                            break
                    tr = min(need, max(cash[g], 0.0))
                    if tr > MIN_TRANSFER:
                        cash[g] -= tr
                        if cross:
                            gfw[g] += tr
                            nrec = _push(rec, nrec, j, -1 - g, K_TRANSFER, LEG_NONE, np.nan, np.nan, np.nan, tr, 0.0)
                        else:
                            fw[c] += tr
                            nrec = _push(rec, nrec, j, c, K_TRANSFER, LEG_NONE, np.nan, np.nan, np.nan, tr, 0.0)

                # spot sales of the top-ups cost fees and slippage: take a fresh snapshot
                eq = cash[g] + gfw[g]
                for k in range(a, b):
                    c = grp_cols[k]
                    if s[c] != 0.0:
                        eq += s[c] * sv[c]
                    if q[c] != 0.0:
                        eq += q[c] * pv[c] - cost[c]
                    eq += fw[c]
                eq_ready = True
                any_order = True  # spot sales may have moved a delta band: let step 3 check
            if any_order:
                # 3. orders
                fills = True
                group_traded = False
                if new_target and not eq_ready:
                    # equity snapshot at the open (sizing): the state is unchanged since step 1
                    for k in range(a, b):
                        c = grp_cols[k]
                        if s[c] != 0.0:
                            eq += s[c] * sv[c]
                        if q[c] != 0.0:
                            eq += q[c] * pv[c] - cost[c]
                        eq += fw[c]
                    eq += cash[g] + gfw[g]
                # capital shares: weights among the group's active columns as they stand at the open
                wsum = 0.0
                if new_target:
                    for k2 in range(a, b if b - a > 1 else a):  # one column: its share is 1 when x != 0
                        c2 = grp_cols[k2]
                        x2 = targets[i, c2]
                        act = (x2 != 0.0) if np.isfinite(x2) else (s[c2] != 0.0 or q[c2] != 0.0)
                        if act:
                            wsum += flex_nb(weights, i, c2)
                for k in range(a, b):
                    c = grp_cols[k]
                    n = col_sym[c]
                    if not ref_valid[j, n]:
                        continue
                    x = targets[i, c]
                    if pending_reenter[c]:  # back to the last target after a liquidation
                        if not np.isfinite(x):
                            x = last_x[c]
                        last_x[c] = np.nan
                        pending_reenter[c] = False
                    new_s = s[c]
                    new_q = q[c]
                    if np.isfinite(x) and x != last_x[c]:
                        if b - a == 1:
                            w = 1.0 if (x != 0.0 and flex_nb(weights, i, c) > 0.0) else 0.0
                        else:
                            w = flex_nb(weights, i, c) / wsum if (x != 0.0 and wsum > 0.0) else 0.0
                        lev = flex_nb(leverage, j, c)
                        notional = max(eq, 0.0) * w * abs(x) * lev / (lev + 1.0)
                        new_s = np.sign(x) * notional / so_ref[j, n]
                        new_q = -new_s
                        last_x[c] = x
                        pending_close[c] = False
                    elif pending_close[c]:
                        new_s = 0.0
                        pending_close[c] = False
                    elif s[c] != 0.0 and abs(s[c] + q[c]) > flex_nb(delta_band, j, c) * abs(s[c]):
                        new_q = -s[c]
                    traded = False
                    dq = new_s - s[c]
                    if dq != 0.0:
                        vol = spot_volume[j - 1, n] if j > 0 else vol0_spot[n]
                        f = fill_price(dq, so_ref[j, n], vol, flex_nb(slip_frac, j, c), flex_nb(impact, j, c))
                        fee = abs(dq) * f * flex_nb(spot_fee, j, c)
                        cash[g] -= dq * f + fee
                        s[c] = new_s
                        comp[c, C_FEE] -= fee
                        comp[c, C_SLIP] += dq * (so_ref[j, n] - f)
                        nrec = _push(rec, nrec, j, c, K_FILL, LEG_SPOT, dq, f, np.nan, -dq * f - fee, fee)
                        traded = True
                    dq = new_q - q[c]
                    if dq != 0.0:
                        vol = perp_volume[j - 1, n] if j > 0 else vol0_perp[n]
                        f = fill_price(dq, po_ref[j, n], vol, flex_nb(slip_frac, j, c), flex_nb(impact, j, c))
                        fee = abs(dq) * f * flex_nb(perp_fee, j, c)
                        nq, ncost, realized = perp_trade(q[c], cost[c], dq, f)
                        q[c] = new_q
                        cost[c] = ncost
                        if cross:
                            gfw[g] += realized - fee
                        else:
                            fw[c] += realized - fee
                        comp[c, C_FEE] -= fee
                        comp[c, C_SLIP] += dq * (po_ref[j, n] - f)
                        nrec = _push(rec, nrec, j, c, K_FILL, LEG_PERP, dq, f, np.nan, realized - fee, fee)
                        traded = True
                    if traded and not cross:
                        tr = abs(q[c]) * pv[c] / flex_nb(leverage, j, c) - fw[c] if q[c] != 0.0 else -fw[c]
                        if abs(tr) > MIN_TRANSFER:
                            cash[g] -= tr
                            fw[c] += tr
                            nrec = _push(rec, nrec, j, c, K_TRANSFER, LEG_NONE, np.nan, np.nan, np.nan, tr, 0.0)
                    group_traded = group_traded or traded
                if cross and group_traded:
                    target = 0.0
                    for k in range(a, b):
                        c = grp_cols[k]
                        if q[c] != 0.0:
                            target += abs(q[c]) * pv[c] / flex_nb(leverage, j, c)
                    tr = target - gfw[g]
                    if abs(tr) > MIN_TRANSFER:
                        cash[g] -= tr
                        gfw[g] += tr
                        nrec = _push(rec, nrec, j, -1 - g, K_TRANSFER, LEG_NONE, np.nan, np.nan, np.nan, tr, 0.0)

            # 4. liquidation of a cross or portfolio-margin account: the portfolio's perps together,
            # at the first point lam in [0, 1] of the path from the mark open to the adverse extremes
            # where the margin balance meets the maintenance margin
            port_liq = cross and haircut >= 0.0
            liq = False
            lam = 0.0
            if port_liq:  # portfolio margin: the spot wallet counts as collateral
                any_pos = False
                for k in range(a, b):
                    if q[grp_cols[k]] != 0.0:
                        any_pos = True
                if any_pos:
                    mb, mm = _pm_balance(
                        1.0,
                        j,
                        a,
                        b,
                        grp_cols,
                        col_sym,
                        s,
                        q,
                        cost,
                        sv,
                        pv,
                        valid,
                        mark_open,
                        mark_high,
                        mark_low,
                        gfw[g],
                        cash[g],
                        haircut,
                        t_lo,
                        t_hi,
                        t_mmr,
                        t_cum,
                        t_n,
                    )
                    liq = mb <= mm
                    if liq:
                        lo_l, hi_l = 0.0, 1.0
                        mb, mm = _pm_balance(
                            0.0,
                            j,
                            a,
                            b,
                            grp_cols,
                            col_sym,
                            s,
                            q,
                            cost,
                            sv,
                            pv,
                            valid,
                            mark_open,
                            mark_high,
                            mark_low,
                            gfw[g],
                            cash[g],
                            haircut,
                            t_lo,
                            t_hi,
                            t_mmr,
                            t_cum,
                            t_n,
                        )
                        if mb <= mm:
                            hi_l = 0.0
                        else:
                            for _it in range(100):
                                lam = 0.5 * (lo_l + hi_l)
                                mb, mm = _pm_balance(
                                    lam,
                                    j,
                                    a,
                                    b,
                                    grp_cols,
                                    col_sym,
                                    s,
                                    q,
                                    cost,
                                    sv,
                                    pv,
                                    valid,
                                    mark_open,
                                    mark_high,
                                    mark_low,
                                    gfw[g],
                                    cash[g],
                                    haircut,
                                    t_lo,
                                    t_hi,
                                    t_mmr,
                                    t_cum,
                                    t_n,
                                )
                                if mb <= mm:
                                    hi_l = lam
                                else:
                                    lo_l = lam
                        lam = hi_l
            elif cross:
                any_pos = False
                worst_mb = gfw[g]
                bound_mm = 0.0
                for k in range(a, b):
                    c = grp_cols[k]
                    n = col_sym[c]
                    if q[c] != 0.0:
                        any_pos = True
                        m = pv[c]
                        if valid[j, n]:
                            m = mark_high[j, n] if q[c] < 0.0 else mark_low[j, n]
                        worst_mb += q[c] * m - cost[c]
                        bound_mm += abs(q[c]) * m * mmr_max[n] - cum_min[n]
                # cheap bound first (maintenance <= notional * max mmr - min cum, term by term)
                if any_pos and worst_mb <= bound_mm:
                    worst_mm = 0.0
                    for k in range(a, b):
                        c = grp_cols[k]
                        n = col_sym[c]
                        if q[c] != 0.0:
                            m = pv[c]
                            if valid[j, n]:
                                m = mark_high[j, n] if q[c] < 0.0 else mark_low[j, n]
                            worst_mm += maint_margin_nb(t_lo, t_hi, t_mmr, t_cum, t_n, n, abs(q[c]) * m)
                    liq = worst_mb <= worst_mm
                if liq:
                    # find the first point lam in [0, 1] on the path open -> adverse where MB <= MM
                    lo_l, hi_l = 0.0, 1.0
                    for it in range(101):
                        lam = 0.0 if it == 0 else 0.5 * (lo_l + hi_l)
                        mb = gfw[g]
                        mm = 0.0
                        for k in range(a, b):
                            c = grp_cols[k]
                            n = col_sym[c]
                            if q[c] != 0.0:
                                m = pv[c]
                                if valid[j, n]:
                                    adv = mark_high[j, n] if q[c] < 0.0 else mark_low[j, n]
                                    m = mark_open[j, n] + lam * (adv - mark_open[j, n])
                                mb += q[c] * m - cost[c]
                                mm += maint_margin_nb(t_lo, t_hi, t_mmr, t_cum, t_n, n, abs(q[c]) * m)
                        if it == 0:
                            if mb <= mm:
                                hi_l = 0.0
                                break
                        elif mb <= mm:
                            hi_l = lam
                        else:
                            lo_l = lam
                    lam = hi_l
            if liq:
                for k in range(a, b):
                    c = grp_cols[k]
                    n = col_sym[c]
                    if q[c] == 0.0:
                        continue
                    lp = pv[c]
                    if valid[j, n]:
                        up = _pm_up(s[c], q[c], haircut) if port_liq else q[c] < 0.0
                        adv = mark_high[j, n] if up else mark_low[j, n]
                        lp = mark_open[j, n] + lam * (adv - mark_open[j, n])
                    comp[c, C_PERP] += q[c] * (lp - pv[c])
                    realized = q[c] * lp - cost[c]
                    fee = flex_nb(clearance, j, c) * abs(q[c]) * lp
                    gfw[g] += realized - fee
                    comp[c, C_LIQ] -= fee
                    nrec = _push(rec, nrec, j, c, K_LIQ, LEG_PERP, -q[c], lp, np.nan, realized - fee, fee)
                    q[c] = 0.0
                    cost[c] = 0.0
                    pv[c] = lp
                    if after_liq == 0:
                        pending_close[c] = s[c] != 0.0
                    elif after_liq == 2:
                        pending_reenter[c] = True
                g_topup_at[g] = -1

            # 4.-8. per column: isolated liquidation, funding, close revaluation, borrow, outputs
            colsum = 0.0
            g_upnl = 0.0
            g_mm = 0.0
            g_den = 0.0
            g_coll = 0.0  # portfolio margin: spot collateral (long at 1 - haircut, short at 1 + haircut)
            port = cross and haircut >= 0.0
            g_thr = flex_nb(topup_thr, j, grp_cols[a]) if (cross and has_topup) else np.nan
            g_margin = cross and (w_margin or g_thr == g_thr)
            for k in range(a, b):
                c = grp_cols[k]
                n = col_sym[c]
                sc = s[c]
                qc = q[c]
                ok = valid[j, n]
                dirty = fills
                if not cross and qc != 0.0 and ok:
                    adv = mark_high[j, n] if qc < 0.0 else mark_low[j, n]
                    mb = fw[c] + qc * adv - cost[c]
                    # cheap bound first: maintenance <= notional * max mmr - min cum
                    if mb <= abs(qc) * adv * mmr_max[n] - cum_min[n] and mb <= maint_margin_nb(
                        t_lo, t_hi, t_mmr, t_cum, t_n, n, abs(qc) * adv
                    ):
                        lp = isolated_liq_price_nb(t_lo, t_hi, t_mmr, t_cum, t_n, n, fw[c], qc, cost[c])
                        if not np.isfinite(lp):
                            lp = adv
                        mo = mark_open[j, n]
                        if qc < 0.0:
                            lp = min(max(lp, mo), adv)
                        else:
                            lp = max(min(lp, mo), adv)
                        comp[c, C_PERP] += qc * (lp - pv[c])
                        realized = qc * lp - cost[c]
                        fee = flex_nb(clearance, j, c) * abs(qc) * lp
                        fw[c] += realized - fee
                        comp[c, C_LIQ] -= fee
                        nrec = _push(rec, nrec, j, c, K_LIQ, LEG_PERP, -qc, lp, np.nan, realized - fee, fee)
                        qc = 0.0
                        q[c] = 0.0
                        cost[c] = 0.0
                        pv[c] = lp
                        topup_at[c] = -1
                        if after_liq == 0:
                            pending_close[c] = sc != 0.0
                        elif after_liq == 2:
                            pending_reenter[c] = True
                # 5. funding
                fv = funding_value[j, n]
                if qc != 0.0 and fv != 0.0 and np.isfinite(fv):
                    amt = -qc * fv
                    if cross:
                        gfw[g] += amt
                    else:
                        fw[c] += amt
                    comp[c, C_FUND] += amt
                    dirty = True
                    if w_cf:
                        r = funding_rate[j, n]
                        nrec = _push(
                            rec, nrec, j, c, K_FUNDING, LEG_PERP, qc, fv / r if r != 0.0 else np.nan, r, amt, 0.0
                        )
                # 6. close revaluation
                if ok:
                    sx = spot_close[j, n]
                    mx = mark_close[j, n]
                    if sc != 0.0:
                        comp[c, C_SPOT] += sc * (sx - sv[c])
                    if qc != 0.0:
                        comp[c, C_PERP] += qc * (mx - pv[c])
                    sv[c] = sx
                    pv[c] = mx
                svc = sv[c]
                # 7. borrow
                if sc < 0.0:
                    r = flex_nb(borrow_h, j, c)
                    amt = -sc * svc * r * bar_hours
                    if amt != 0.0:
                        cash[g] -= amt
                        comp[c, C_BORROW] -= amt
                        dirty = True
                        if w_cf:
                            nrec = _push(rec, nrec, j, c, K_BORROW, LEG_SPOT, sc, svc, r, -amt, 0.0)
                # 8. margin ratio, distance to liquidation, top-up detection, outputs
                fwc = fw[c]
                if sc != 0.0:
                    colsum += sc * svc
                colsum += fwc
                mr = np.nan
                dl = np.nan
                if qc != 0.0:
                    pvc = pv[c]
                    upnl = qc * pvc - cost[c]
                    colsum += upnl
                    thr = flex_nb(topup_thr, j, c) if (has_topup and not cross) else np.nan
                    if (w_margin and not cross) or thr == thr or g_margin:
                        notional = abs(qc) * pvc
                        kb = _bracket(t_hi, t_n, kc, c, n, notional, tier_cache)
                        mm = notional * t_mmr[n, kb] - t_cum[n, kb] if notional > 0.0 else 0.0
                        rate = t_mmr[n, kb]
                        den = notional * (1.0 + rate) if qc < 0.0 else notional * (1.0 - rate)
                        if port:  # an adverse move of the column's net delta, spot included
                            up = _pm_up(sc, qc, haircut)
                            w = 1.0 - haircut if sc > 0.0 else 1.0 + haircut
                            den = abs(qc * pvc + sc * svc * w) + (notional * rate if up else -notional * rate)
                        if cross:
                            g_upnl += upnl
                            g_mm += mm
                            g_den += den
                        else:
                            mb = fwc + upnl
                            mr = mm / mb if mb > 0.0 else np.inf
                            dl = (mb - mm) / den
                            if mr >= thr and topup_at[c] < 0:
                                topup_at[c] = j + 1 + topup_delay
                if port and sc != 0.0 and g_margin:
                    w = 1.0 - haircut if sc > 0.0 else 1.0 + haircut
                    g_coll += sc * svc * w
                    if qc == 0.0:
                        g_den += abs(sc * svc * w)
                if dirty:
                    comp[c, 7] = init_share[c] + comp[c, 0] + comp[c, 1] + comp[c, 2] + comp[c, 3]
                # = init + components summed left to right, as a plain loop would
                equity[rj, c] = comp[c, 7] + comp[c, 4] + comp[c, 5] + comp[c, 6]
                if w_margin:
                    mr_out[j, c] = mr
                    dl_out[j, c] = dl
                if w_comp:
                    for m in range(N_COMP):
                        comps_out[m, j, c] = comp[c, m]
                if w_pos:
                    spot_out[j, c] = sc
                    perp_out[j, c] = qc
                if not cross:
                    liq_lvl[c] = liq_level(qc, fw[c], cost[c], mmr_max[n], cum_min[n])
            group_equity[rg, g] = cash[g] + gfw[g] + colsum
            if g_margin and (g_den > 0.0 or port):
                g_mb = gfw[g] + g_upnl
                if port:
                    g_mb += cash[g] + g_coll
                mr = g_mm / g_mb if g_mb > 0.0 else np.inf
                # portfolio margin: no adverse move of the hedged book liquidates it when den <= 0
                dl = (g_mb - g_mm) / g_den if g_den > 0.0 else np.inf
                if mr >= g_thr and g_topup_at[g] < 0:
                    g_topup_at[g] = j + 1 + topup_delay
                if w_margin:
                    for k in range(a, b):
                        c = grp_cols[k]
                        if q[c] != 0.0:
                            mr_out[j, c] = mr
                            dl_out[j, c] = dl
    for g in range(g0, g1):
        grp_state[g, G_CASH] = cash[g]
        grp_state[g, G_FW] = gfw[g]
        grp_state[g, G_TOPUP] = _due_after(g_topup_at[g], T)
        for k in range(grp_start[g], grp_start[g + 1]):
            c = grp_cols[k]
            if not w_comp:
                for m in range(N_COMP):
                    comps_out[m, 0, c] = comp[c, m]
            if not w_pos:
                spot_out[0, c] = s[c]
                perp_out[0, c] = q[c]
            col_state[c, S_S] = s[c]
            col_state[c, S_Q] = q[c]
            col_state[c, S_COST] = cost[c]
            col_state[c, S_FW] = fw[c]
            col_state[c, S_SV] = sv[c]
            col_state[c, S_PV] = pv[c]
            col_state[c, S_LASTX] = last_x[c]
            col_state[c, S_PCLOSE] = 1.0 if pending_close[c] else 0.0
            col_state[c, S_PRE] = 1.0 if pending_reenter[c] else 0.0
            for m in range(N_COMP):
                col_state[c, S_COMP + m] = comp[c, m]
            col_state[c, S_COMP7] = comp[c, 7]
            col_state[c, S_KC] = kc[c]
            col_state[c, S_LIQ] = liq_lvl[c]
            col_state[c, S_TOPUP] = _due_after(topup_at[c], T)
    return nrec


@njit(cache=True, inline="always")
def _pm_up(sc, qc, haircut):
    """Portfolio margin: True when a rise of the price is adverse to a column holding ``sc``
    spot and ``qc`` perp coins (its net collateral delta ``qc + sc * w`` is short; a zero
    delta follows the perp, whose maintenance margin grows with the price when short)."""
    w = 1.0 - haircut if sc > 0.0 else 1.0 + haircut
    eff = qc + sc * w
    return eff < 0.0 or (eff == 0.0 and qc < 0.0)


@njit(cache=True)
def _pm_balance(
    lam,
    j,
    a,
    b,
    grp_cols,
    col_sym,
    s,
    q,
    cost,
    sv,
    pv,
    valid,
    mark_open,
    mark_high,
    mark_low,
    gfw_g,
    cash_g,
    haircut,
    t_lo,
    t_hi,
    t_mmr,
    t_cum,
    t_n,
):
    """(margin balance, maintenance margin) of a portfolio-margin account at the point ``lam``
    in [0, 1] of the path from each column's mark open to its adverse extreme (bar ``j``).

    Balance: futures wallet + quote cash + unrealized perp PnL + spot collateral (long coins at
    ``1 - haircut``, short at ``1 + haircut`` of their value); a spot leg moves with its mark
    (``spot open * mark / mark open``). Invalid bars keep the last valuation prices.
    """
    mb = gfw_g + cash_g
    mm = 0.0
    for k in range(a, b):
        c = grp_cols[k]
        n = col_sym[c]
        sc = s[c]
        qc = q[c]
        if sc == 0.0 and qc == 0.0:
            continue
        m = pv[c]
        ratio = 1.0
        if valid[j, n]:
            mo = mark_open[j, n]
            adv = mark_high[j, n] if _pm_up(sc, qc, haircut) else mark_low[j, n]
            m = mo + lam * (adv - mo)
            if mo > 0.0:
                ratio = m / mo
        if qc != 0.0:
            mb += qc * m - cost[c]
            mm += maint_margin_nb(t_lo, t_hi, t_mmr, t_cum, t_n, n, abs(qc) * m)
        if sc != 0.0:
            w = 1.0 - haircut if sc > 0.0 else 1.0 + haircut
            mb += sc * sv[c] * ratio * w
    return mb, mm


@njit(cache=True, inline="always")
def _due_in(v):
    """A scheduled top-up bar from a state slot (bars after the previous run's end; -1: none)."""
    return np.int64(v) if v >= 0.0 else np.int64(-1)


@njit(cache=True, inline="always")
def _due_after(bar, T):
    """A scheduled top-up bar of this run as a state slot for the run over the next bars."""
    return float(bar - T) if bar >= 0 else -1.0


@njit(cache=True, parallel=True)
def simulate_parallel_nb(
    bounds,
    rec_bounds,
    so_ref,
    po_ref,
    ref_valid,
    spot_close,
    spot_volume,
    perp_volume,
    mark_open,
    mark_high,
    mark_low,
    mark_close,
    valid,
    funding_value,
    funding_rate,
    targets,
    weights,
    col_sym,
    grp_cols,
    grp_start,
    capital,
    leverage,
    spot_fee,
    perp_fee,
    slip_frac,
    impact,
    borrow_h,
    clearance,
    topup_thr,
    delta_band,
    t_lo,
    t_hi,
    t_mmr,
    t_cum,
    t_n,
    tier_cache,
    lag,
    bar_hours,
    cross,
    haircut,
    topup_delay,
    after_liq,
    flags,
    t_off,
    vol0_spot,
    vol0_perp,
    col_state,
    grp_state,
    equity,
    group_equity,
    comps_out,
    spot_out,
    perp_out,
    mr_out,
    dl_out,
    rec,
):
    """:func:`simulate_range_nb` over chunks of groups ``bounds[h] .. bounds[h + 1]`` in parallel.

    Chunk ``h`` writes its events to ``rec[rec_bounds[h]:rec_bounds[h + 1]]``; returns the
    number of events of each chunk (see :func:`merge_records_nb`).
    """
    nch = bounds.shape[0] - 1
    counts = np.zeros(nch, np.int64)
    for h in prange(nch):
        counts[h] = simulate_range_nb(
            bounds[h],
            bounds[h + 1],
            so_ref,
            po_ref,
            ref_valid,
            spot_close,
            spot_volume,
            perp_volume,
            mark_open,
            mark_high,
            mark_low,
            mark_close,
            valid,
            funding_value,
            funding_rate,
            targets,
            weights,
            col_sym,
            grp_cols,
            grp_start,
            capital,
            leverage,
            spot_fee,
            perp_fee,
            slip_frac,
            impact,
            borrow_h,
            clearance,
            topup_thr,
            delta_band,
            t_lo,
            t_hi,
            t_mmr,
            t_cum,
            t_n,
            tier_cache,
            lag,
            bar_hours,
            cross,
            haircut,
            topup_delay,
            after_liq,
            flags,
            t_off,
            vol0_spot,
            vol0_perp,
            col_state,
            grp_state,
            equity,
            group_equity,
            comps_out,
            spot_out,
            perp_out,
            mr_out,
            dl_out,
            rec[rec_bounds[h] : rec_bounds[h + 1]],
        )
    return counts


@njit(cache=True)
def count_target_changes_nb(targets, stride):
    """Bars where a column's target is finite and differs from the bar before (a NaN bar before
    counts as different): an upper bound of the bars where targets make a column trade.

    ``stride > 1`` estimates it from every ``stride``-th bar (times ``stride``; the first bar
    is always counted exactly), reading about ``2 / stride`` of the array.
    """
    T, C = targets.shape
    n = 0
    for c in range(min(T, 1) * C):
        x = targets[0, c]
        if x == x:
            n += 1
    sampled = 0
    for j in range(stride, T, stride) if stride > 1 else range(1, T):
        for c in range(C):
            x = targets[j, c]
            if x == x and x != targets[j - 1, c]:
                sampled += 1
    return n + sampled * max(stride, 1)


@njit(cache=True)
def merge_records_nb(rec, rec_bounds, counts):
    """Events of the parallel chunks in the serial order: by bar, then chunk (stable)."""
    nch = counts.shape[0]
    total = 0
    for h in range(nch):
        total += counts[h]
    out = np.empty((total, rec.shape[1]))
    pos = rec_bounds[:-1].copy()
    end = rec_bounds[:-1] + counts
    for r in range(total):
        best = -1
        for h in range(nch):
            if pos[h] < end[h] and (best < 0 or rec[pos[h], 0] < rec[pos[best], 0]):
                best = h
        src = pos[best]
        for f in range(rec.shape[1]):
            out[r, f] = rec[src, f]
        pos[best] = src + 1
    return out

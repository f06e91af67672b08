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
   cross: the common point on the path from mark open to the adverse extremes);
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
from numba import njit

from .margin import flex_nb, isolated_liq_price_nb, maint_margin_nb, maint_rate_nb

N_COMP = 7
C_FUND, C_FEE, C_SLIP, C_BORROW, C_SPOT, C_PERP, C_LIQ = 0, 1, 2, 3, 4, 5, 6
K_FILL, K_FUNDING, K_BORROW, K_TRANSFER, K_LIQ = 0, 1, 2, 3, 4
LEG_SPOT, LEG_PERP, LEG_NONE = 0, 1, -1
N_REC_FIELDS = 9
#: Wallet transfers smaller than this (quote) are rounding noise and skipped.
MIN_TRANSFER = 1e-9


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
def _fill_price(dq, ref, vol, slip_frac, impact):
    """Fill price (quote/coin) of ``dq`` coins against ``ref``: fixed + participation slippage."""
    s = slip_frac
    if impact > 0.0 and vol > 0.0:
        s += impact * abs(dq) / vol
    return ref * (1.0 + s) if dq > 0 else ref * (1.0 - s)


@njit(cache=True)
def _perp_trade(q, cost, dq, f):
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


@njit(cache=True)
def simulate_nb(
    so_ref, po_ref, ref_valid, spot_close, spot_volume, perp_volume,
    mark_open, mark_high, mark_low, mark_close, valid, funding_value, funding_rate,
    targets, weights, col_sym, grp_cols, grp_start, capital,
    leverage, spot_fee, perp_fee, slip_frac, impact, borrow_h, clearance, topup_thr, delta_band,
    t_lo, t_hi, t_mmr, t_cum, t_n,
    lag, bar_hours, cross, topup_delay, after_liq, full, rec,
):
    """Run the simulation; see the module docstring for the order of operations.

    Returns
    -------
    equity : (T, C) column equity (initial share + cumulative components), quote
    group_equity : (T, G) wallet-based portfolio equity, quote
    comps : (7, T, C) cumulative components (or (7, 1, C) final values if not ``full``)
    spot_qty, perp_qty : (T, C) coins (or (1, C))
    margin_ratio, dist_liq : (T, C) fractions (or (1, C)); NaN when flat
    n_records : int
        Number of events; rows ``[:n_records]`` of ``rec`` (an (R, 9) buffer) hold them when
        ``n_records <= R``, else the caller reruns with a buffer of ``n_records`` rows.
    """
    T = so_ref.shape[0]
    C = targets.shape[1]
    G = grp_start.shape[0] - 1
    TT = T if full else 1
    equity = np.empty((T, C))
    group_equity = np.empty((T, G))
    comps_out = np.empty((N_COMP, TT, C))  # every element is written below
    spot_out = np.empty((TT, C))
    perp_out = np.empty((TT, C))
    mr_out = np.empty((TT, C)) if full else np.full((1, C), np.nan)
    dl_out = np.empty((TT, C)) if full else np.full((1, C), np.nan)
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
    comp = np.zeros((N_COMP, C))
    init_share = np.zeros(C)
    cash = np.full(G, capital)
    gfw = np.zeros(G)
    g_topup_at = np.full(G, -1, np.int64)
    for g in range(G):
        n = grp_start[g + 1] - grp_start[g]
        for k in range(grp_start[g], grp_start[g + 1]):
            init_share[grp_cols[k]] = capital / n

    for j in range(T):
        for g in range(G):
            a, b = grp_start[g], grp_start[g + 1]
            # 1. open revaluation, equity snapshot (sizing) and due top-ups
            eq = 0.0
            any_due = cross and g_topup_at[g] == j
            for k in range(a, b):
                c = grp_cols[k]
                n = col_sym[c]
                if ref_valid[j, n]:
                    if s[c] != 0.0:
                        comp[C_SPOT, c] += s[c] * (so_ref[j, n] - sv[c])
                    if q[c] != 0.0:
                        comp[C_PERP, c] += q[c] * (po_ref[j, n] - pv[c])
                    sv[c] = so_ref[j, n]
                    pv[c] = po_ref[j, n]
                if s[c] != 0.0:
                    eq += s[c] * sv[c]
                if q[c] != 0.0:
                    eq += q[c] * pv[c] - cost[c]
                eq += fw[c]
                if topup_at[c] == j:
                    any_due = True
            eq += cash[g] + gfw[g]
            if j >= lag and any_due:
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
                            vol = spot_volume[j - 1, n2] if j > 0 else 0.0
                            f = _fill_price(dq, so_ref[j, n2], vol, flex_nb(slip_frac, j, c2), flex_nb(impact, j, c2))
                            fee = abs(dq) * f * flex_nb(spot_fee, j, c2)
                            cash[g] -= dq * f + fee
                            s[c2] += dq
                            comp[C_FEE, c2] -= fee
                            comp[C_SLIP, c2] += dq * (so_ref[j, n2] - f)
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
            if j >= lag:
                # 3. orders
                group_traded = False
                i = j - lag
                # capital shares: weights among the group's active columns as they stand at the open
                wsum = 0.0
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
                        vol = spot_volume[j - 1, n] if j > 0 else 0.0
                        f = _fill_price(dq, so_ref[j, n], vol, flex_nb(slip_frac, j, c), flex_nb(impact, j, c))
                        fee = abs(dq) * f * flex_nb(spot_fee, j, c)
                        cash[g] -= dq * f + fee
                        s[c] = new_s
                        comp[C_FEE, c] -= fee
                        comp[C_SLIP, c] += dq * (so_ref[j, n] - f)
                        nrec = _push(rec, nrec, j, c, K_FILL, LEG_SPOT, dq, f, np.nan, -dq * f - fee, fee)
                        traded = True
                    dq = new_q - q[c]
                    if dq != 0.0:
                        vol = perp_volume[j - 1, n] if j > 0 else 0.0
                        f = _fill_price(dq, po_ref[j, n], vol, flex_nb(slip_frac, j, c), flex_nb(impact, j, c))
                        fee = abs(dq) * f * flex_nb(perp_fee, j, c)
                        nq, ncost, realized = _perp_trade(q[c], cost[c], dq, f)
                        q[c] = new_q
                        cost[c] = ncost
                        if cross:
                            gfw[g] += realized - fee
                        else:
                            fw[c] += realized - fee
                        comp[C_FEE, c] -= fee
                        comp[C_SLIP, c] += dq * (po_ref[j, n] - f)
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

            # 4. liquidation of a cross portfolio (all its positions together)
            if cross:
                any_pos = False
                worst_mb = gfw[g]
                worst_mm = 0.0
                for k in range(a, b):
                    c = grp_cols[k]
                    n = col_sym[c]
                    if q[c] != 0.0:
                        any_pos = True
                        m = pv[c]
                        if valid[j, n]:
                            m = mark_high[j, n] if q[c] < 0.0 else mark_low[j, n]
                        worst_mb += q[c] * m - cost[c]
                        worst_mm += maint_margin_nb(t_lo, t_hi, t_mmr, t_cum, t_n, n, abs(q[c]) * m)
                if any_pos and worst_mb <= worst_mm:
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
                    for k in range(a, b):
                        c = grp_cols[k]
                        n = col_sym[c]
                        if q[c] == 0.0:
                            continue
                        lp = pv[c]
                        if valid[j, n]:
                            adv = mark_high[j, n] if q[c] < 0.0 else mark_low[j, n]
                            lp = mark_open[j, n] + lam * (adv - mark_open[j, n])
                        comp[C_PERP, c] += q[c] * (lp - pv[c])
                        realized = q[c] * lp - cost[c]
                        fee = flex_nb(clearance, j, c) * abs(q[c]) * lp
                        gfw[g] += realized - fee
                        comp[C_LIQ, c] -= fee
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
            g_thr = flex_nb(topup_thr, j, grp_cols[a]) if cross else np.nan
            g_margin = cross and (full or g_thr == g_thr)
            for k in range(a, b):
                c = grp_cols[k]
                n = col_sym[c]
                if not cross and q[c] != 0.0 and valid[j, n]:
                    adv = mark_high[j, n] if q[c] < 0.0 else mark_low[j, n]
                    mb = fw[c] + q[c] * adv - cost[c]
                    # cheap bound first: maintenance <= notional * max mmr - min cum
                    if mb <= abs(q[c]) * adv * mmr_max[n] - cum_min[n] and \
                            mb <= maint_margin_nb(t_lo, t_hi, t_mmr, t_cum, t_n, n, abs(q[c]) * adv):
                        lp = isolated_liq_price_nb(t_lo, t_hi, t_mmr, t_cum, t_n, n, fw[c], q[c], cost[c])
                        if not np.isfinite(lp):
                            lp = adv
                        mo = mark_open[j, n]
                        if q[c] < 0.0:
                            lp = min(max(lp, mo), adv)
                        else:
                            lp = max(min(lp, mo), adv)
                        comp[C_PERP, c] += q[c] * (lp - pv[c])
                        realized = q[c] * lp - cost[c]
                        fee = flex_nb(clearance, j, c) * abs(q[c]) * lp
                        fw[c] += realized - fee
                        comp[C_LIQ, c] -= fee
                        nrec = _push(rec, nrec, j, c, K_LIQ, LEG_PERP, -q[c], lp, np.nan, realized - fee, fee)
                        q[c] = 0.0
                        cost[c] = 0.0
                        pv[c] = lp
                        topup_at[c] = -1
                        if after_liq == 0:
                            pending_close[c] = s[c] != 0.0
                        elif after_liq == 2:
                            pending_reenter[c] = True
                # 5. funding
                fv = funding_value[j, n]
                if q[c] != 0.0 and fv != 0.0 and np.isfinite(fv):
                    amt = -q[c] * fv
                    if cross:
                        gfw[g] += amt
                    else:
                        fw[c] += amt
                    comp[C_FUND, c] += amt
                    r = funding_rate[j, n]
                    nrec = _push(rec, nrec, j, c, K_FUNDING, LEG_PERP, q[c], fv / r if r != 0.0 else np.nan, r, amt, 0.0)
                # 6. close revaluation
                if valid[j, n]:
                    if s[c] != 0.0:
                        comp[C_SPOT, c] += s[c] * (spot_close[j, n] - sv[c])
                    if q[c] != 0.0:
                        comp[C_PERP, c] += q[c] * (mark_close[j, n] - pv[c])
                    sv[c] = spot_close[j, n]
                    pv[c] = mark_close[j, n]
                # 7. borrow
                if s[c] < 0.0:
                    r = flex_nb(borrow_h, j, c)
                    amt = -s[c] * sv[c] * r * bar_hours
                    if amt != 0.0:
                        cash[g] -= amt
                        comp[C_BORROW, c] -= amt
                        nrec = _push(rec, nrec, j, c, K_BORROW, LEG_SPOT, s[c], sv[c], r, -amt, 0.0)
                # 8. margin ratio, distance to liquidation, top-up detection, outputs
                if s[c] != 0.0:
                    colsum += s[c] * sv[c]
                colsum += fw[c]
                mr = np.nan
                dl = np.nan
                if q[c] != 0.0:
                    upnl = q[c] * pv[c] - cost[c]
                    colsum += upnl
                    thr = np.nan if cross else flex_nb(topup_thr, j, c)
                    if (full and not cross) or thr == thr or g_margin:
                        notional = abs(q[c]) * pv[c]
                        mm = maint_margin_nb(t_lo, t_hi, t_mmr, t_cum, t_n, n, notional)
                        rate = maint_rate_nb(t_lo, t_hi, t_mmr, t_n, n, notional)
                        den = notional * (1.0 + rate) if q[c] < 0.0 else notional * (1.0 - rate)
                        if cross:
                            g_upnl += upnl
                            g_mm += mm
                            g_den += den
                        else:
                            mb = fw[c] + upnl
                            mr = mm / mb if mb > 0.0 else np.inf
                            dl = (mb - mm) / den
                            if mr >= thr and topup_at[c] < 0:
                                topup_at[c] = j + 1 + topup_delay
                tot = init_share[c]
                for m in range(N_COMP):
                    tot += comp[m, c]
                equity[j, c] = tot
                if full:
                    mr_out[j, c] = mr
                    dl_out[j, c] = dl
                    for m in range(N_COMP):
                        comps_out[m, j, c] = comp[m, c]
                    spot_out[j, c] = s[c]
                    perp_out[j, c] = q[c]
            group_equity[j, g] = cash[g] + gfw[g] + colsum
            if g_margin and g_den > 0.0:
                g_mb = gfw[g] + g_upnl
                mr = g_mm / g_mb if g_mb > 0.0 else np.inf
                dl = (g_mb - g_mm) / g_den
                if mr >= g_thr and g_topup_at[g] < 0:
                    g_topup_at[g] = j + 1 + topup_delay
                if full:
                    for k in range(a, b):
                        c = grp_cols[k]
                        if q[c] != 0.0:
                            mr_out[j, c] = mr
                            dl_out[j, c] = dl
    if not full:
        for c in range(C):
            for m in range(N_COMP):
                comps_out[m, 0, c] = comp[m, c]
            spot_out[0, c] = s[c]
            perp_out[0, c] = q[c]
    return equity, group_equity, comps_out, spot_out, perp_out, mr_out, dl_out, nrec

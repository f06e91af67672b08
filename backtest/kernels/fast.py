"""A specialised kernel for portfolios of one column in isolated margin (the common case).

Same rules, same operations in the same order as :func:`backtest.kernels.simulate.simulate_range_nb`
(results are bit-identical; ``tests/test_engine_fast.py`` checks it), restricted to:

* every portfolio (group) holds exactly one column, margin mode isolated;
* no margin top-ups (``topup_margin_ratio`` NaN everywhere).

Delta bands, weights, delays, invalid bars, liquidations and all after-liquidation policies are
supported. A column's state lives in local variables while it runs through a block of bars
(time chunk); columns run one after the other inside a chunk, so the (T, C) inputs and
outputs touched by a chunk stay in cache. Events of a chunk are then put back in the general
kernel's (bar, group) order by a stable counting sort on the bar.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from backtest.kernels.margin import bracket_cached_nb, bracket_nb, isolated_liq_price_nb, maint_margin_nb
from backtest.kernels.simulate import (
    F_CASHFLOW_EVENTS,
    F_COMPONENTS,
    F_EQUITY,
    F_GROUP_EQUITY,
    F_HAS_BAND,
    F_MARGIN,
    F_POSITIONS,
    G_CASH,
    K_BORROW,
    K_FILL,
    K_FUNDING,
    K_LIQ,
    K_TRANSFER,
    LEG_NONE,
    LEG_PERP,
    LEG_SPOT,
    MIN_TRANSFER,
    N_COMP,
    S_COMP,
    S_COMP7,
    S_COST,
    S_FW,
    S_INIT,
    S_KC,
    S_LASTX,
    S_LIQ,
    S_PCLOSE,
    S_PRE,
    S_PV,
    S_Q,
    S_S,
    S_SV,
    fill_price,
    liq_level,
    perp_trade,
)


@njit(cache=True, inline="always")
def _push_u(rec, n, bar, col, kind, leg, qty, price, rate, cash, fee):
    """:func:`~backtest.kernels.simulate._push` with unsigned row indexing (no wraparound checks)."""
    if n < rec.shape[0]:
        r = np.uint64(n)
        rec[r, np.uint64(0)] = bar
        rec[r, np.uint64(1)] = col
        rec[r, np.uint64(2)] = kind
        rec[r, np.uint64(3)] = leg
        rec[r, np.uint64(4)] = qty
        rec[r, np.uint64(5)] = price
        rec[r, np.uint64(6)] = rate
        rec[r, np.uint64(7)] = cash
        rec[r, np.uint64(8)] = fee
    return n + 1


@njit(cache=True, inline="always")
def _store_components(comps_out, ju, cu, c0, c1, c2, c3, c4, c5, c6):
    """Write a column's seven cumulative components at bar ``ju``."""
    comps_out[0, ju, cu] = c0
    comps_out[1, ju, cu] = c1
    comps_out[2, ju, cu] = c2
    comps_out[3, ju, cu] = c3
    comps_out[4, ju, cu] = c4
    comps_out[5, ju, cu] = c5
    comps_out[6, ju, cu] = c6


#: Bars per time chunk when several columns run: long enough to spread each column's state
#: loads and stores over many bars, short enough that a chunk's rows of the (T, C) arrays stay
#: in cache (measured on 1,000 columns x 8,760 bars: 128 about 10% faster than 32 or 512).
CHUNK = 128
#: Most events of one column in one bar (spot fill, perp fill, transfer, liquidation, funding, borrow).
MAX_EV = 6
#: Fields of an event row.
N_REC = 9


@njit(cache=True)
def _scatter_by_bar(scr, m, rec, base, j0, j1):
    """Rows ``0 .. m - 1`` of ``scr`` (bars ``j0 .. j1 - 1``) into ``rec[base:]`` sorted by bar (stable).

    Rows falling beyond ``rec`` are dropped (the caller reruns with a larger buffer).
    """
    cnt = np.zeros(j1 - j0 + 1, np.int64)
    for r in range(m):
        cnt[np.int64(scr[r, 0]) - j0 + 1] += 1
    for b in range(1, j1 - j0 + 1):
        cnt[b] += cnt[b - 1]
    R = rec.shape[0]
    for r in range(m):
        b = np.int64(scr[r, 0]) - j0
        dst = base + cnt[b]
        cnt[b] += 1
        if dst < R:
            for f in range(N_REC):
                rec[np.uint64(dst), np.uint64(f)] = scr[np.uint64(r), np.uint64(f)]


@njit(cache=True)
def fast_range_nb(
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
    """:func:`~backtest.kernels.simulate.simulate_range_nb` for one-column isolated groups
    without top-ups (same signature, same results; ``cross``, ``haircut``, ``topup_*`` are ignored).

    A column's state lives in ``col_state`` (its own slots, see ``S_*``) and its portfolio's
    cash in ``grp_state`` between time chunks, as between runs."""
    T = so_ref.shape[0]
    mmr_max = np.zeros(t_n.shape[0])
    cum_min = np.zeros(t_n.shape[0])
    for n in range(t_n.shape[0]):
        for k in range(t_n[n]):
            mmr_max[n] = max(mmr_max[n], t_mmr[n, k])
            cum_min[n] = min(cum_min[n], t_cum[n, k])
    ng = g1 - g0
    w_eq = (flags & F_EQUITY) != 0
    w_geq = (flags & F_GROUP_EQUITY) != 0
    w_comp = (flags & F_COMPONENTS) != 0
    w_pos = (flags & F_POSITIONS) != 0
    w_margin = (flags & F_MARGIN) != 0
    w_cf = (flags & F_CASHFLOW_EVENTS) != 0
    has_band = (flags & F_HAS_BAND) != 0
    # several columns: blocks of CHUNK bars (fewer for very many columns: the scratch buffer
    # below holds MAX_EV rows per bar and column of a block)
    chunk = max(16, min(CHUNK, CHUNK * 4096 // max(ng, 1))) if ng > 1 else max(T, 1)
    # several columns: a chunk's events go to a scratch buffer (at most MAX_EV per bar and
    # column), then into ``rec`` in (bar, group) order; one column: straight into ``rec``
    sorting = ng > 1 and chunk > 1
    scr = np.empty((MAX_EV * chunk * ng if sorting else 0, N_REC))
    nrec = 0
    base = 0
    # flat views of the inputs the quiet-bar loop reads: one bar offset (j * N + n) serves them
    # all, which leaves the compiler enough registers for that loop's state (~15% faster)
    N = valid.shape[1]
    C = targets.shape[1]
    tg1 = targets.ravel()
    va1 = valid.ravel()
    mh1 = mark_high.ravel()
    ml1 = mark_low.ravel()
    fv1 = funding_value.ravel()
    sc1 = spot_close.ravel()
    mc1 = mark_close.ravel()
    for j0 in range(0, T, chunk):
        j1 = min(T, j0 + chunk)
        buf = scr if sorting else rec
        if sorting:
            base = nrec
            nrec = 0
        for g in range(g0, g1):
            c = grp_cols[grp_start[g]]
            mmr_max_n = mmr_max[col_sym[c]]
            cum_min_n = cum_min[col_sym[c]]
            n = col_sym[c]
            # unsigned indices: numba skips the negative-index wraparound on them
            nu = np.uint64(n)
            cu = np.uint64(c)
            gu = np.uint64(g)
            s = col_state[cu, S_S]
            q = col_state[cu, S_Q]
            cost = col_state[cu, S_COST]
            fw = col_state[cu, S_FW]
            sv = col_state[cu, S_SV]
            pv = col_state[cu, S_PV]
            last_x = col_state[cu, S_LASTX]
            pend_close = col_state[cu, S_PCLOSE] != 0.0
            pend_re = col_state[cu, S_PRE] != 0.0
            c0 = col_state[cu, S_COMP + 0]
            c1 = col_state[cu, S_COMP + 1]
            c2 = col_state[cu, S_COMP + 2]
            c3 = col_state[cu, S_COMP + 3]
            c4 = col_state[cu, S_COMP + 4]
            c5 = col_state[cu, S_COMP + 5]
            c6 = col_state[cu, S_COMP + 6]
            c7 = col_state[cu, S_COMP7]
            cash = grp_state[gu, G_CASH]
            kc = np.int64(col_state[cu, S_KC])
            liq_lvl = col_state[cu, S_LIQ]
            init_share = col_state[cu, S_INIT]
            # per-column constants of the flexible parameters that do not vary per bar
            bor_t = borrow_h.shape[0] > 1
            bor_k = np.uint64(c if borrow_h.shape[1] > 1 else 0)
            bor0 = borrow_h[np.uint64(0), bor_k]
            band_t = delta_band.shape[0] > 1
            band_k = np.uint64(c if delta_band.shape[1] > 1 else 0)
            band0 = delta_band[np.uint64(0), band_k]

            j = j0
            while j < j1:
                # The hot inner loop: bars without orders on which no liquidation is possible
                # (flat columns; positions whose adverse mark stays inside the pre-check level).
                # Kept apart from the general bar below so that the compiler keeps its state
                # in registers; it breaks out on the first bar that needs the general path.
                new_target = False  # why the loop broke out: a new target, another order, or
                any_order = False  # (neither) a possible liquidation
                while j < j1:
                    ju = np.uint64(j)
                    rj = ju if w_eq else np.uint64(0)
                    jn = j * N + n
                    i = j - lag + t_off  # the target row executed at bar j
                    if i >= 0:
                        x = tg1[np.uint64(i * C + c)]
                        if pend_re or (x == x and x != last_x):
                            new_target = True
                            any_order = True
                            break
                        if pend_close or (
                            has_band
                            and s != 0.0
                            and abs(s + q) > (delta_band[ju, band_k] if band_t else band0) * abs(s)
                        ):
                            any_order = True
                            break
                    if s == 0.0 and q == 0.0:
                        # a flat column on a bar without orders: no funding, revaluation, borrow or
                        # margin; its valuation prices are refreshed at its next fill's open
                        equity[rj, cu] = c7 + c4 + c5 + c6
                        if w_margin:
                            mr_out[ju, cu] = np.nan
                            dl_out[ju, cu] = np.nan
                        if w_comp:
                            _store_components(comps_out, ju, cu, c0, c1, c2, c3, c4, c5, c6)
                        if w_pos:
                            spot_out[ju, cu] = s
                            perp_out[ju, cu] = q
                        if w_geq:
                            group_equity[ju, gu] = cash + 0.0 + (0.0 + fw)
                        j += 1
                        continue
                    ok = va1[np.uint64(jn)]
                    if q != 0.0 and ok:
                        if q < 0.0:
                            if not mh1[np.uint64(jn)] < liq_lvl:
                                break
                        elif not ml1[np.uint64(jn)] > liq_lvl:
                            break
                    dirty = False
                    fv = fv1[np.uint64(jn)]
                    if q != 0.0 and fv != 0.0 and np.isfinite(fv):
                        amt = -q * fv
                        fw += amt
                        c0 += amt
                        dirty = True
                        liq_lvl = liq_level(q, fw, cost, mmr_max_n, cum_min_n)
                        if w_cf:
                            r = funding_rate[ju, nu]
                            nrec = _push_u(
                                buf, nrec, j, c, K_FUNDING, LEG_PERP, q, fv / r if r != 0.0 else np.nan, r, amt, 0.0
                            )
                    if ok:
                        sx = sc1[np.uint64(jn)]
                        mx = mc1[np.uint64(jn)]
                    elif ref_valid[ju, nu]:
                        sx = so_ref[ju, nu]
                        mx = po_ref[ju, nu]
                    else:
                        sx = sv
                        mx = pv
                    if s != 0.0:
                        c4 += s * (sx - sv)
                    if q != 0.0:
                        c5 += q * (mx - pv)
                    sv = sx
                    pv = mx
                    if s < 0.0:
                        r = borrow_h[ju, bor_k] if bor_t else bor0
                        amt = -s * sv * r * bar_hours
                        if amt != 0.0:
                            cash -= amt
                            c3 -= amt
                            dirty = True
                            if w_cf:
                                nrec = _push_u(buf, nrec, j, c, K_BORROW, LEG_SPOT, s, sv, r, -amt, 0.0)
                    if w_geq:
                        colsum = 0.0
                        if s != 0.0:
                            colsum += s * sv
                        colsum += fw
                        if q != 0.0:
                            colsum += q * pv - cost
                        group_equity[ju, gu] = cash + 0.0 + colsum
                    if q != 0.0:
                        if w_margin:
                            upnl = q * pv - cost
                            notional = abs(q) * pv
                            if tier_cache:
                                kb = bracket_cached_nb(t_hi, t_n, n, notional, kc)
                                kc = kb
                            else:
                                kb = bracket_nb(t_hi, t_hi, t_n, n, notional)
                            mm = notional * t_mmr[n, kb] - t_cum[n, kb] if notional > 0.0 else 0.0
                            rate = t_mmr[n, kb]
                            den = notional * (1.0 + rate) if q < 0.0 else notional * (1.0 - rate)
                            mb = fw + upnl
                            mr_out[ju, cu] = mm / mb if mb > 0.0 else np.inf
                            dl_out[ju, cu] = (mb - mm) / den
                    elif w_margin:
                        mr_out[ju, cu] = np.nan
                        dl_out[ju, cu] = np.nan
                    if dirty:
                        c7 = init_share + c0 + c1 + c2 + c3
                    equity[rj, cu] = c7 + c4 + c5 + c6
                    if w_comp:
                        _store_components(comps_out, ju, cu, c0, c1, c2, c3, c4, c5, c6)
                    if w_pos:
                        spot_out[ju, cu] = s
                        perp_out[ju, cu] = q
                    j += 1
                if j >= j1:
                    break

                # a general bar (bar j, as the inner loop left it): orders, or a possible liquidation
                rg = ju if w_geq else np.uint64(0)
                ok = valid[ju, nu]
                # general path: open revaluation where the open prices are used
                rv = ref_valid[ju, nu]
                if rv and (any_order or not ok):
                    so = so_ref[ju, nu]
                    po = po_ref[ju, nu]
                    if s != 0.0:
                        c4 += s * (so - sv)
                    if q != 0.0:
                        c5 += q * (po - pv)
                    sv = so
                    pv = po
                fills = False
                if any_order:
                    fills = True
                    eq = 0.0
                    if new_target:
                        if s != 0.0:
                            eq += s * sv
                        if q != 0.0:
                            eq += q * pv - cost
                        eq += fw
                        eq += cash + 0.0
                    if rv:
                        x = targets[np.uint64(i), cu]
                        if pend_re:
                            if not np.isfinite(x):
                                x = last_x
                            last_x = np.nan
                            pend_re = False
                        new_s = s
                        new_q = q
                        if np.isfinite(x) and x != last_x:
                            wk = c if weights.shape[1] > 1 else 0
                            wr = i if weights.shape[0] > 1 else 0
                            w = 1.0 if (x != 0.0 and weights[wr, wk] > 0.0) else 0.0
                            lev = leverage[j if leverage.shape[0] > 1 else 0, c if leverage.shape[1] > 1 else 0]
                            notional = max(eq, 0.0) * w * abs(x) * lev / (lev + 1.0)
                            new_s = np.sign(x) * notional / so_ref[ju, nu]
                            new_q = -new_s
                            last_x = x
                            pend_close = False
                        elif pend_close:
                            new_s = 0.0
                            pend_close = False
                        elif s != 0.0 and abs(s + q) > (delta_band[ju, band_k] if band_t else band0) * abs(s):
                            new_q = -s
                        traded = False
                        jr = j if slip_frac.shape[0] > 1 else 0
                        sl = slip_frac[jr, c if slip_frac.shape[1] > 1 else 0]
                        im = impact[j if impact.shape[0] > 1 else 0, c if impact.shape[1] > 1 else 0]
                        dq = new_s - s
                        if dq != 0.0:
                            vol = spot_volume[j - 1, n] if j > 0 else vol0_spot[n]
                            f = fill_price(dq, so_ref[ju, nu], vol, sl, im)
                            fee = (
                                abs(dq)
                                * f
                                * spot_fee[j if spot_fee.shape[0] > 1 else 0, c if spot_fee.shape[1] > 1 else 0]
                            )
                            cash -= dq * f + fee
                            s = new_s
                            c1 -= fee
                            c2 += dq * (so_ref[ju, nu] - f)
                            nrec = _push_u(buf, nrec, j, c, K_FILL, LEG_SPOT, dq, f, np.nan, -dq * f - fee, fee)
                            traded = True
                        dq = new_q - q
                        if dq != 0.0:
                            vol = perp_volume[j - 1, n] if j > 0 else vol0_perp[n]
                            f = fill_price(dq, po_ref[ju, nu], vol, sl, im)
                            fee = (
                                abs(dq)
                                * f
                                * perp_fee[j if perp_fee.shape[0] > 1 else 0, c if perp_fee.shape[1] > 1 else 0]
                            )
                            nq, ncost, realized = perp_trade(q, cost, dq, f)
                            q = new_q
                            cost = ncost
                            fw += realized - fee
                            c1 -= fee
                            c2 += dq * (po_ref[ju, nu] - f)
                            nrec = _push_u(buf, nrec, j, c, K_FILL, LEG_PERP, dq, f, np.nan, realized - fee, fee)
                            traded = True
                        if traded:
                            lev = leverage[j if leverage.shape[0] > 1 else 0, c if leverage.shape[1] > 1 else 0]
                            tr = abs(q) * pv / lev - fw if q != 0.0 else -fw
                            if abs(tr) > MIN_TRANSFER:
                                cash -= tr
                                fw += tr
                                nrec = _push_u(buf, nrec, j, c, K_TRANSFER, LEG_NONE, np.nan, np.nan, np.nan, tr, 0.0)

                # 4.-8. isolated liquidation, funding, close revaluation, borrow, outputs
                dirty = fills
                if q != 0.0 and ok:
                    adv = mark_high[ju, nu] if q < 0.0 else mark_low[ju, nu]
                    mb = fw + q * adv - cost
                    if mb <= abs(q) * adv * mmr_max_n - cum_min_n and mb <= maint_margin_nb(
                        t_lo, t_hi, t_mmr, t_cum, t_n, n, abs(q) * adv
                    ):
                        lp = isolated_liq_price_nb(t_lo, t_hi, t_mmr, t_cum, t_n, n, fw, q, cost)
                        if not np.isfinite(lp):
                            lp = adv
                        mo = mark_open[ju, nu]
                        if q < 0.0:
                            lp = min(max(lp, mo), adv)
                        else:
                            lp = max(min(lp, mo), adv)
                        c5 += q * (lp - pv)
                        realized = q * lp - cost
                        fee = (
                            clearance[j if clearance.shape[0] > 1 else 0, c if clearance.shape[1] > 1 else 0]
                            * abs(q)
                            * lp
                        )
                        fw += realized - fee
                        c6 -= fee
                        nrec = _push_u(buf, nrec, j, c, K_LIQ, LEG_PERP, -q, lp, np.nan, realized - fee, fee)
                        q = 0.0
                        cost = 0.0
                        pv = lp
                        if after_liq == 0:
                            pend_close = s != 0.0
                        elif after_liq == 2:
                            pend_re = True
                fv = funding_value[ju, nu]
                if q != 0.0 and fv != 0.0 and np.isfinite(fv):
                    amt = -q * fv
                    fw += amt
                    c0 += amt
                    dirty = True
                    if w_cf:
                        r = funding_rate[ju, nu]
                        nrec = _push_u(
                            buf, nrec, j, c, K_FUNDING, LEG_PERP, q, fv / r if r != 0.0 else np.nan, r, amt, 0.0
                        )
                if ok:
                    sx = spot_close[ju, nu]
                    mx = mark_close[ju, nu]
                    if s != 0.0:
                        c4 += s * (sx - sv)
                    if q != 0.0:
                        c5 += q * (mx - pv)
                    sv = sx
                    pv = mx
                if s < 0.0:
                    r = borrow_h[ju, bor_k] if bor_t else bor0
                    amt = -s * sv * r * bar_hours
                    if amt != 0.0:
                        cash -= amt
                        c3 -= amt
                        dirty = True
                        if w_cf:
                            nrec = _push_u(buf, nrec, j, c, K_BORROW, LEG_SPOT, s, sv, r, -amt, 0.0)
                colsum = 0.0
                if s != 0.0:
                    colsum += s * sv
                colsum += fw
                mr = np.nan
                dl = np.nan
                if q != 0.0:
                    upnl = q * pv - cost
                    colsum += upnl
                    if w_margin:
                        notional = abs(q) * pv
                        if tier_cache:
                            kb = bracket_cached_nb(t_hi, t_n, n, notional, kc)
                            kc = kb
                        else:
                            kb = bracket_nb(t_hi, t_hi, t_n, n, notional)
                        mm = notional * t_mmr[n, kb] - t_cum[n, kb] if notional > 0.0 else 0.0
                        rate = t_mmr[n, kb]
                        den = notional * (1.0 + rate) if q < 0.0 else notional * (1.0 - rate)
                        mb = fw + upnl
                        mr = mm / mb if mb > 0.0 else np.inf
                        dl = (mb - mm) / den
                if dirty:
                    c7 = init_share + c0 + c1 + c2 + c3
                equity[rj, cu] = c7 + c4 + c5 + c6
                if w_margin:
                    mr_out[ju, cu] = mr
                    dl_out[ju, cu] = dl
                if w_comp:
                    _store_components(comps_out, ju, cu, c0, c1, c2, c3, c4, c5, c6)
                if w_pos:
                    spot_out[ju, cu] = s
                    perp_out[ju, cu] = q
                liq_lvl = liq_level(q, fw, cost, mmr_max_n, cum_min_n)
                group_equity[rg, gu] = cash + 0.0 + colsum
                j += 1

            if not w_geq:  # the last bar's portfolio equity, as the bar itself would write it
                colsum = 0.0
                if s != 0.0:
                    colsum += s * sv
                colsum += fw
                if q != 0.0:
                    colsum += q * pv - cost
                group_equity[0, gu] = cash + 0.0 + colsum
            col_state[cu, S_S] = s
            col_state[cu, S_Q] = q
            col_state[cu, S_COST] = cost
            col_state[cu, S_FW] = fw
            col_state[cu, S_SV] = sv
            col_state[cu, S_PV] = pv
            col_state[cu, S_LASTX] = last_x
            col_state[cu, S_PCLOSE] = 1.0 if pend_close else 0.0
            col_state[cu, S_PRE] = 1.0 if pend_re else 0.0
            col_state[cu, S_COMP + 0] = c0
            col_state[cu, S_COMP + 1] = c1
            col_state[cu, S_COMP + 2] = c2
            col_state[cu, S_COMP + 3] = c3
            col_state[cu, S_COMP + 4] = c4
            col_state[cu, S_COMP + 5] = c5
            col_state[cu, S_COMP + 6] = c6
            col_state[cu, S_COMP7] = c7
            grp_state[gu, G_CASH] = cash
            col_state[cu, S_KC] = kc
            col_state[cu, S_LIQ] = liq_lvl

        if sorting:
            _scatter_by_bar(scr, nrec, rec, base, j0, j1)
            nrec += base
    w_comp = (flags & F_COMPONENTS) != 0
    w_pos = (flags & F_POSITIONS) != 0
    for g in range(g0, g1):
        c = grp_cols[grp_start[g]]
        if not w_comp:
            for m in range(N_COMP):
                comps_out[m, 0, c] = col_state[c, S_COMP + m]
        if not w_pos:
            spot_out[0, c] = col_state[c, S_S]
            perp_out[0, c] = col_state[c, S_Q]
    return nrec


@njit(cache=True, parallel=True)
def fast_parallel_nb(
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
    """:func:`fast_range_nb` over chunks of groups in parallel (as ``simulate_parallel_nb``)."""
    nch = bounds.shape[0] - 1
    counts = np.zeros(nch, np.int64)
    for h in prange(nch):
        counts[h] = fast_range_nb(
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

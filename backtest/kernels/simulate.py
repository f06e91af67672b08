"""The carry simulation kernel: one pass over time, portfolios and columns inside, NumPy in and out.

Per bar ``j`` and portfolio (group) ``g`` the kernel does, in this order (each step's rule is
one function of :mod:`backtest.kernels.rules` or :mod:`backtest.kernels.margin`, shared with the
one-column kernel :mod:`backtest.kernels.fast`; argument tuples, state slots and flags:
:mod:`backtest.kernels.layout`):

1. **open**: where fills, top-ups or cross margin use the open prices, revalue spot legs to the
   reference price and perp legs to the perp reference price (``so_ref``/``po_ref``: bar
   ``j``'s open, or bar ``j-1``'s close for delay 0), splitting each move into hedged and
   unhedged coins (``rules.revalue_nb``);
2. **top-ups** due at this bar move quote from the spot wallet to the futures wallet(s); when
   the cash falls short the carry columns sell spot and buy back the same perp coins
   (:func:`_topups`);
3. **orders**: a stopping portfolio closes its legs; a new target (``targets[j - lag]``, finite
   and different from the last one executed), a re-entry due or a rebalance due resizes both
   legs to ``x * C_c * L / (L + 1)`` spot notional with the perp at ``-spot`` coins (lots and
   minimums applied); else a pending post-liquidation close, else the delta band; after a
   column's (isolated) or group's (cross) fills the futures margin balance is reset to
   ``sum |q| * price / L`` by a transfer (:func:`_orders`);
4. **liquidation** against the bar's adverse mark extreme (isolated: closed form per bracket,
   after a pre-check level that rules out most bars; cross: the common point on the path from
   mark open to the adverse extremes; portfolio margin (``haircut >= 0``): as cross, with the
   quote cash and the spot legs (long at ``1 - haircut``, short at ``1 + haircut``, moving with
   their mark) in the margin balance (:func:`_liquidate_group`)), the margin ratio there
   recorded first; then the borrowed spot legs' margin account at the spot highs
   (:func:`_spot_margin`);
5. **funding** ``-q * funding_value[j]`` into the futures wallet;
6. **close**: revalue spot to the spot close, perp to the mark close; an invalid bar to its
   reference prices instead (unless step 1 did), or keep the last valuation prices when those
   are invalid too (a valid bar without fills thus goes straight from the last valuation
   price to the close);
7. **borrow** on short spot, in whole hours (``rules.borrow_nb``);
8. outputs; top-up detection (margin ratio at the adverse extreme); the stop of a portfolio
   whose equity reached zero; rebalancing detection for the next bar.

Invalid bars (``valid`` False) never trade. The state of columns and portfolios lives in
``st.columns``/``st.groups`` and is updated there in place, bar by bar (a scheduled top-up is
held as the absolute bar while the run lasts). Components are kept cumulative per column
(``C_*``); events are rows of a caller-provided float64 (R, 9) buffer.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from backtest.kernels import rules
from backtest.kernels.fast import fast_range_nb
from backtest.kernels.layout import (
    C_BORROW,
    C_FEE,
    C_FUND,
    C_LIQ,
    C_PERP,
    C_SLIP,
    C_SPOT,
    C_UNH,
    F_CASHFLOW_EVENTS,
    F_COMPONENTS,
    F_EQUITY,
    F_GROUP_EQUITY,
    F_HAS_BAND,
    F_HAS_REB,
    F_HAS_TOPUP,
    F_MARGIN,
    F_POSITIONS,
    G_CASH,
    G_FW,
    G_STOP,
    G_TOPUP,
    R_BAR,
    R_CASH,
    R_RATE,
    S_BOPEN,
    S_BPREV,
    S_COMP,
    S_COMP7,
    S_COST,
    S_FW,
    S_INIT,
    S_KC,
    S_LASTX,
    S_LIQ,
    S_MRF,
    S_PCLOSE,
    S_PRE,
    S_PV,
    S_Q,
    S_QOPEN,
    S_REB,
    S_S,
    S_SHARE,
    S_SUSP,
    S_SV,
    S_TOPUP,
    STOP_CLOSING,
    STOP_DONE,
    STOP_NONE,
)
from backtest.kernels.margin import (
    PATH_STEPS,
    bracket_hint_nb,
    flex_nb,
    liq_level_nb,
    maint_margin_nb,
    path_point_nb,
    path_step_nb,
    tier_bounds_nb,
)
from backtest.kernels.views import borrowed


@njit(cache=True, inline="always")
def _pm_up(sc, qc, haircut):
    """Portfolio margin: True when a rise of the price is adverse to a column holding ``sc``
    spot and ``qc`` perp coins (its net collateral delta ``qc + sc * w`` is short; a zero
    delta follows the perp, whose maintenance margin grows with the price when short)."""
    w = 1.0 - haircut if sc > 0.0 else 1.0 + haircut
    eff = qc + sc * w
    return eff < 0.0 or (eff == 0.0 and qc < 0.0)


@njit(cache=True)
def _balance(lam, j, a, b, grp_cols, col_sym, cs, valid, mark_open, mark_high, mark_low, tiers, mb, port, haircut):
    """(margin balance, maintenance margin) of a cross (``port`` False) or portfolio-margin
    account at the point ``lam`` of the path from each column's mark open to its adverse extreme
    (bar ``j``), starting from the balance ``mb`` (futures wallet; plus the quote cash for
    portfolio margin).

    Balance: + unrealized perp PnL; portfolio margin also + spot collateral (long coins at
    ``1 - haircut``, short at ``1 + haircut`` of their value), a spot leg moving with its mark
    (``spot open * mark / mark open``). Invalid bars keep the last valuation prices.
    """
    mm = 0.0
    for k in range(a, b):
        c = np.uint64(grp_cols[k])
        n = np.uint64(col_sym[c])
        sc = cs[c, S_S] if port else 0.0
        qc = cs[c, S_Q]
        if sc == 0.0 and qc == 0.0:
            continue
        m = cs[c, S_PV]
        ratio = 1.0
        if valid[j, n]:
            mo = mark_open[j, n]
            up = _pm_up(sc, qc, haircut) if port else qc < 0.0
            adv = mark_high[j, n] if up else mark_low[j, n]
            m = mo + lam * (adv - mo)
            if mo > 0.0:
                ratio = m / mo
        if qc != 0.0:
            mb += qc * m - cs[c, S_COST]
            mm += maint_margin_nb(tiers.hi, tiers.mmr, tiers.cum, tiers.n, n, abs(qc) * m)
        if sc != 0.0:
            w = 1.0 - haircut if sc > 0.0 else 1.0 + haircut
            mb += sc * cs[c, S_SV] * ratio * w
    return mb, mm


@njit(cache=True)
def _cross_worst(j, a, b, grp_cols, col_sym, cs, valid, mark_high, mark_low, tiers):
    """The maintenance margin of a cross account's perps at the bar's adverse mark extremes."""
    mm = 0.0
    for k in range(a, b):
        c = np.uint64(grp_cols[k])
        n = np.uint64(col_sym[c])
        qc = cs[c, S_Q]
        if qc != 0.0:
            m = cs[c, S_PV]
            if valid[j, n]:
                m = mark_high[j, n] if qc < 0.0 else mark_low[j, n]
            mm += maint_margin_nb(tiers.hi, tiers.mmr, tiers.cum, tiers.n, n, abs(qc) * m)
    return mm


@njit(cache=True)
def _margin_shortfall(j, k0, k1, book, prm, cs, wallet):
    """Initial margin of columns ``grp_cols[k0:k1]`` (``|q| * pv / L``) minus their margin balance
    (``wallet`` + unrealized perp PnL), quote: what a top-up must bring."""
    need = -wallet
    for k in range(k0, k1):
        c = book.grp_cols[k]
        q = cs[c, S_Q]
        if q != 0.0:
            pv = cs[c, S_PV]
            need += rules.margin_need_nb(q, pv, flex_nb(prm.leverage, j, c)) - (q * pv - cs[c, S_COST])
    return need


@njit(cache=True)
def _topups(j, g, a, b, mk, book, prm, run, cs, gs, rec, nrec):
    """Step 2: the top-ups due at bar ``j`` (a column's, or the portfolio's in cross margin):
    quote cash to the futures wallet up to its initial margin. When the cash falls short, the
    carry columns of the job shrink on both legs (spot sold, the same perp coins bought back) by
    the fraction that covers the rest, so the hedge stays neutral. Returns the event count."""
    cross = run.cross
    due_g = cross and gs[g, G_TOPUP] == j
    if due_g:
        gs[g, G_TOPUP] = -1.0
    stopped = gs[g, G_STOP] != STOP_NONE
    for k in range(a, b):
        c = book.grp_cols[k]
        n = book.col_sym[c]
        if cross:
            if not due_g or k != a or stopped:
                continue
            k0, k1 = a, b
        else:
            if cs[c, S_TOPUP] != j:
                continue
            cs[c, S_TOPUP] = -1.0
            if cs[c, S_Q] == 0.0 or stopped:
                continue
            if not mk.ref_valid[j, n]:
                cs[c, S_TOPUP] = j + 1
                continue
            k0, k1 = k, k + 1
        need = _margin_shortfall(j, k0, k1, book, prm, cs, gs[g, G_FW] if cross else cs[c, S_FW])
        if need <= 0.0:
            continue
        short = need - max(gs[g, G_CASH], 0.0)
        if short > 0.0:
            # shrink the carry columns (long spot, short perp) on both legs
            den = 0.0
            for k2 in range(k0, k1):
                c2 = book.grp_cols[k2]
                if cs[c2, S_S] > 0.0 and cs[c2, S_Q] < 0.0 and mk.ref_valid[j, book.col_sym[c2]]:
                    den += cs[c2, S_S] * (cs[c2, S_SV] + cs[c2, S_PV] / flex_nb(prm.leverage, j, c2))
            if den > 0.0:
                f = min(1.0, short / den)
                for k2 in range(k0, k1):
                    c2 = book.grp_cols[k2]
                    n2 = book.col_sym[c2]
                    s2, q2 = cs[c2, S_S], cs[c2, S_Q]
                    if not (s2 > 0.0 and q2 < 0.0 and mk.ref_valid[j, n2]):
                        continue
                    d = min(s2 if f >= 1.0 else f * s2, -q2)  # (never past the perp: no flip)
                    lot = flex_nb(prm.lot, j, c2)
                    if lot > 0.0 and d < min(s2, -q2):  # whole lots, rounded up to cover the need
                        d = min(np.ceil(d / lot * (1.0 - 1e-9)) * lot, s2, -q2)
                    vol, rates = rules.fill_inputs_nb(mk, prm, j, c2, n2)
                    wallet = gs[g, G_FW] if cross else cs[c2, S_FW]
                    cost, cash, c_fee, c_slip = (
                        cs[c2, S_COST],
                        gs[g, G_CASH],
                        cs[c2, S_COMP + C_FEE],
                        cs[c2, S_COMP + C_SLIP],
                    )
                    s2, q2, cost, wallet, cash, c_fee, c_slip, nrec, _traded = rules.fill_column_nb(
                        rec,
                        nrec,
                        j,
                        c2,
                        s2 - d,
                        q2 + d,
                        s2,
                        q2,
                        cost,
                        wallet,
                        cash,
                        c_fee,
                        c_slip,
                        (cs[c2, S_SV], cs[c2, S_PV]),
                        vol,
                        rates,
                    )
                    cs[c2, S_S], cs[c2, S_Q], cs[c2, S_COST] = s2, q2, cost
                    gs[g, G_CASH], cs[c2, S_COMP + C_FEE], cs[c2, S_COMP + C_SLIP] = cash, c_fee, c_slip
                    if cross:
                        gs[g, G_FW] = wallet
                    else:
                        cs[c2, S_FW] = wallet
                need = _margin_shortfall(j, k0, k1, book, prm, cs, gs[g, G_FW] if cross else cs[c, S_FW])
        tr = min(need, max(gs[g, G_CASH], 0.0))
        if tr > 0.0:
            if cross:
                gs[g, G_CASH], gs[g, G_FW], nrec = rules.transfer_nb(
                    rec, nrec, j, -1 - g, tr, gs[g, G_CASH], gs[g, G_FW]
                )
            else:
                gs[g, G_CASH], cs[c, S_FW], nrec = rules.transfer_nb(rec, nrec, j, c, tr, gs[g, G_CASH], cs[c, S_FW])
    return nrec


@njit(cache=True)
def _orders(j, i, g, a, b, new_target, eq, mk, book, prm, run, cs, gs, rec, nrec):
    """Step 3: the orders of portfolio ``g``'s columns at bar ``j`` (target row ``i``), sized on
    the equity snapshot ``eq``; then the futures wallet transfers. Returns the event count."""
    cross = run.cross
    has_band = (run.flags & F_HAS_BAND) != 0
    single = b - a == 1
    stop = gs[g, G_STOP]
    # capital shares: weights among the group's active columns as they stand at the open
    wsum = 0.0
    if new_target and not single:
        for k2 in range(a, b):
            c2 = book.grp_cols[k2]
            x2 = book.targets[i, c2]
            act = (x2 != 0.0) if np.isfinite(x2) else (cs[c2, S_S] != 0.0 or cs[c2, S_Q] != 0.0)
            if act:
                wsum += flex_nb(book.weights, i, c2)
    group_traded = False
    flat = True
    for k in range(a, b):
        c = book.grp_cols[k]
        n = book.col_sym[c]
        if not mk.ref_valid[j, n]:
            flat = flat and cs[c, S_S] == 0.0 and cs[c, S_Q] == 0.0
            continue
        s, q, sv, pv = cs[c, S_S], cs[c, S_Q], cs[c, S_SV], cs[c, S_PV]
        lev = flex_nb(prm.leverage, j, c)
        pend_re = cs[c, S_PRE] >= 0.0 and j >= cs[c, S_PRE]
        new_s, new_q, cs[c, S_LASTX], pend_close, sized, share, skipped = rules.order_nb(
            book.targets[i, c],
            cs[c, S_LASTX],
            pend_re,
            cs[c, S_PCLOSE] != 0.0,
            cs[c, S_REB] != 0.0,
            stop,
            s,
            q,
            flex_nb(prm.delta_band, j, c) if has_band else np.inf,
            eq,
            flex_nb(book.weights, i, c),
            wsum,
            single,
            lev,
            sv,
            flex_nb(prm.lot, j, c),
            flex_nb(prm.min_qty, j, c),
            flex_nb(prm.min_notional, j, c),
        )
        if skipped != 0.0:
            nrec = rules.skip_event_nb(rec, nrec, j, c, skipped, sv)
        cs[c, S_PCLOSE] = 1.0 if pend_close else 0.0
        cs[c, S_REB] = 0.0
        if sized or pend_re:
            cs[c, S_PRE] = -1.0
        if sized:
            cs[c, S_SUSP] = 0.0
            cs[c, S_SHARE] = share
        vol, rates = rules.fill_inputs_nb(mk, prm, j, c, n)
        wallet = gs[g, G_FW] if cross else cs[c, S_FW]
        cost, cash, c_fee, c_slip = cs[c, S_COST], gs[g, G_CASH], cs[c, S_COMP + C_FEE], cs[c, S_COMP + C_SLIP]
        s, q, cost, wallet, cash, c_fee, c_slip, nrec, traded = rules.fill_column_nb(
            rec, nrec, j, c, new_s, new_q, s, q, cost, wallet, cash, c_fee, c_slip, (sv, pv), vol, rates
        )
        cs[c, S_COST], gs[g, G_CASH], cs[c, S_COMP + C_FEE], cs[c, S_COMP + C_SLIP] = cost, cash, c_fee, c_slip
        cs[c, S_S], cs[c, S_Q] = s, q
        flat = flat and s == 0.0 and q == 0.0
        if cross:
            gs[g, G_FW] = wallet
        elif traded:
            tr = rules.margin_transfer_nb(rules.margin_need_nb(q, pv, lev), wallet, q * pv - cost)
            gs[g, G_CASH], cs[c, S_FW], nrec = rules.transfer_nb(rec, nrec, j, c, tr, gs[g, G_CASH], wallet)
        else:
            cs[c, S_FW] = wallet
        group_traded = group_traded or traded
    if cross and group_traded:
        target = 0.0
        upnl = 0.0
        for k in range(a, b):
            c = book.grp_cols[k]
            qc = cs[c, S_Q]
            target += rules.margin_need_nb(qc, cs[c, S_PV], flex_nb(prm.leverage, j, c))
            if qc != 0.0:
                upnl += qc * cs[c, S_PV] - cs[c, S_COST]
        gs[g, G_CASH], gs[g, G_FW], nrec = rules.transfer_nb(
            rec, nrec, j, -1 - g, rules.margin_transfer_nb(target, gs[g, G_FW], upnl), gs[g, G_CASH], gs[g, G_FW]
        )
    if stop == STOP_CLOSING and flat:
        gs[g, G_STOP] = STOP_DONE
    return nrec


@njit(cache=True)
def _liquidate_group(j, g, a, b, mk, book, prm, tiers, run, cs, gs, rec, nrec):
    """Step 4 for a breached cross or portfolio-margin account: its perps are closed together at
    the first point ``lam`` of the path from the mark open to the adverse extremes where the
    margin balance meets the maintenance margin (bisection, 100 steps; 0: at the open). A cross
    wallet left below zero is reset by the insurance fund (booked on the last column closed).
    Returns the event count."""
    haircut = run.haircut
    port = haircut >= 0.0
    grp_cols, col_sym = book.grp_cols, book.col_sym
    valid, mark_open, mark_high, mark_low = mk.valid, mk.mark_open, mk.mark_high, mk.mark_low
    mb0 = gs[g, G_FW] + gs[g, G_CASH] if port else gs[g, G_FW]
    lo_l, hi_l = 0.0, 1.0
    for it in range(PATH_STEPS):
        lam = path_point_nb(it, lo_l, hi_l)
        mb, mm = _balance(
            lam, j, a, b, grp_cols, col_sym, cs, valid, mark_open, mark_high, mark_low, tiers, mb0, port, haircut
        )
        lo_l, hi_l, done = path_step_nb(it, lam, mb <= mm, lo_l, hi_l)
        if done:
            break
    last = -1
    for k in range(a, b):
        c = grp_cols[k]
        n = col_sym[c]
        qc = cs[c, S_Q]
        if qc == 0.0:
            continue
        lp = cs[c, S_PV]
        if valid[j, n]:
            up = _pm_up(cs[c, S_S], qc, haircut) if port else qc < 0.0
            adv = mark_high[j, n] if up else mark_low[j, n]
            lp = mark_open[j, n] + hi_l * (adv - mark_open[j, n])
        gs[g, G_FW], nrec = _liquidate_column(
            cs, c, lp, flex_nb(prm.clearance, j, c), gs[g, G_FW], False, run, rec, nrec, j
        )
        last = c
    if not port and last >= 0 and gs[g, G_FW] < 0.0:
        cover = -gs[g, G_FW]
        gs[g, G_FW] = 0.0
        cs[last, S_COMP + C_LIQ] += cover
        if nrec - 1 < rec.shape[0]:
            rec[nrec - 1, R_RATE] = cover
            rec[nrec - 1, R_CASH] += cover
    gs[g, G_TOPUP] = -1.0
    return nrec


@njit(cache=True)
def _liquidate_column(cs, c, lp, clear_rate, wallet, cover_ok, run, rec, nrec, j):
    """Close column ``c``'s perp at the liquidation price ``lp`` of bar ``j`` (the realized PnL and
    the clearance fee go to the futures ``wallet``, isolated or the portfolio's); the column is
    then flat in perps, valued at ``lp``, with the post-liquidation state per the policy.
    Returns ``(wallet, nrec)``."""
    wallet, cs[c, S_COMP + C_PERP], cs[c, S_COMP + C_UNH], cs[c, S_COMP + C_LIQ], nrec = rules.liquidate_perp_nb(
        rec,
        nrec,
        j,
        c,
        cs[c, S_Q],
        cs[c, S_S],
        cs[c, S_COST],
        cs[c, S_PV],
        lp,
        clear_rate,
        wallet,
        cs[c, S_COMP + C_PERP],
        cs[c, S_COMP + C_UNH],
        cs[c, S_COMP + C_LIQ],
        cover_ok,
    )
    cs[c, S_Q] = 0.0
    cs[c, S_COST] = 0.0
    cs[c, S_PV] = lp
    _after_liq(cs, c, run, j)
    return wallet, nrec


@njit(cache=True)
def _after_liq(cs, c, run, j):
    """Column ``c``'s post-liquidation state per the policy (see ``rules.after_liquidation_nb``)."""
    pend_close, reentry, susp = rules.after_liquidation_nb(
        run.after_liq,
        cs[c, S_S],
        cs[c, S_Q],
        cs[c, S_PCLOSE] != 0.0,
        cs[c, S_PRE],
        cs[c, S_SUSP] != 0.0,
        j,
        run.cooldown,
    )
    cs[c, S_PCLOSE] = 1.0 if pend_close else 0.0
    cs[c, S_PRE] = reentry
    cs[c, S_SUSP] = 1.0 if susp else 0.0
    cs[c, S_REB] = 0.0


@njit(cache=True)
def _margin_account(lam, j, a, b, mk, book, cs, cash):
    """(assets, liabilities) of a portfolio's margin account at the point ``lam`` of the path from
    the spot opens to the adverse extremes of bar ``j``: the quote ``cash`` plus the long spot
    coins at their path to the low; the borrowed coins (valid bars) at their path to the high."""
    assets = cash
    liab = 0.0
    for k in range(a, b):
        c = book.grp_cols[k]
        n = book.col_sym[c]
        sc = cs[c, S_S]
        if sc == 0.0:
            continue
        if not mk.valid[j, n]:
            if sc > 0.0:
                assets += sc * cs[c, S_SV]
            continue
        so = mk.spot_open[j, n]
        if sc > 0.0:
            assets += sc * (so + lam * (mk.spot_low[j, n] - so))
        else:
            liab += -sc * (so + lam * (mk.spot_high[j, n] - so))
    return assets, liab


@njit(cache=True)
def _spot_margin(j, g, a, b, mk, book, run, cs, gs, rec, nrec):
    """Step 4b: the margin account of the portfolio's borrowed spot legs (Binance's margin level:
    total assets / borrowed value; assets: the quote cash and the long spot coins) on the path
    from the spot opens to the adverse extremes (highs of the borrowed coins, lows of the long
    ones). Records each column's borrowed coins after the orders (``S_BOPEN``). When the level
    reaches ``run.spot_liq_level`` every borrowed leg is bought back at the first such point (one
    borrowed leg and no long one: ``rules.spot_liq_single_nb``; else bisection, 100 steps), with
    the liquidation fee floored at the assets left; a deficit left by a gap is reset by the
    insurance fund. Returns ``(margin ratio at the extremes (NaN: no borrowed leg), nrec)``."""
    grp_cols, col_sym = book.grp_cols, book.col_sym
    nshort = 0
    nlong = 0
    one = -1
    for k in range(a, b):
        c = np.uint64(grp_cols[k])
        n = np.uint64(col_sym[c])
        sc = cs[c, S_S]
        cs[c, S_BOPEN] = -sc if sc < 0.0 else 0.0
        if sc < 0.0 and mk.valid[j, n]:
            nshort += 1
            one = np.int64(c)
        elif sc > 0.0:
            nlong += 1
    level = run.spot_liq_level
    if nshort == 0 or not level > 0.0:
        return np.nan, nrec
    cash = gs[g, G_CASH]
    if nlong == 0 and nshort == 1:
        n1 = col_sym[one]
        liab = -cs[one, S_S] * mk.spot_high[j, n1]
        ratio = rules.spot_ratio_nb(level, liab, cash)
        if not cash <= level * liab:
            return ratio, nrec
        p1 = rules.spot_liq_single_nb(cash, cs[one, S_S], mk.spot_open[j, n1], mk.spot_high[j, n1], level)
        lam = np.nan
    else:
        assets, liab = _margin_account(1.0, j, a, b, mk, book, cs, cash)
        ratio = rules.spot_ratio_nb(level, liab, assets)
        if not assets <= level * liab:
            return ratio, nrec
        p1 = np.nan
        lo, hi = 0.0, 1.0
        for it in range(101):
            lm = 0.0 if it == 0 else 0.5 * (lo + hi)
            assets, liab = _margin_account(lm, j, a, b, mk, book, cs, cash)
            if assets <= level * liab:
                hi = lm
                if it == 0:
                    break
            elif it > 0:
                lo = lm
        lam = hi
    # the long coins stay in the account: the fee floor and any deficit count them at the point
    other = 0.0
    if nlong > 0:
        other = _margin_account(lam, j, a, b, mk, book, cs, 0.0)[0]
    last = -1
    for k in range(a, b):
        c = grp_cols[k]
        n = col_sym[c]
        sc = cs[c, S_S]
        if not (sc < 0.0 and mk.valid[j, n]):
            continue
        p = p1 if lam != lam else mk.spot_open[j, n] + lam * (mk.spot_high[j, n] - mk.spot_open[j, n])
        cash, cs[c, S_COMP + C_SPOT], cs[c, S_COMP + C_UNH], cs[c, S_COMP + C_LIQ], nrec = rules.liquidate_spot_nb(
            rec,
            nrec,
            j,
            c,
            sc,
            cs[c, S_Q],
            cs[c, S_SV],
            p,
            run.spot_liq_fee,
            cash,
            other,
            cs[c, S_COMP + C_SPOT],
            cs[c, S_COMP + C_UNH],
            cs[c, S_COMP + C_LIQ],
        )
        cs[c, S_S] = 0.0
        cs[c, S_SV] = p
        cs[c, S_TOPUP] = -1.0
        _after_liq(cs, c, run, j)
        last = c
    if last >= 0:
        gs[g, G_TOPUP] = -1.0
    if cash + other < 0.0 and last >= 0:
        cover = -(cash + other)
        cash += cover
        cs[last, S_COMP + C_LIQ] += cover
        if nrec - 1 < rec.shape[0]:
            rec[nrec - 1, R_RATE] = cover
            rec[nrec - 1, R_CASH] += cover
    gs[g, G_CASH] = cash
    return ratio, nrec


@njit(cache=True)
def simulate_range_nb(g0, g1, mk, book, prm, tiers, run, st, out, rec):
    """Simulate portfolios (groups) ``g0 .. g1 - 1`` over all bars; see the module docstring and
    the tuples of :mod:`backtest.kernels.layout` (``mk`` market, ``book`` targets and layout,
    ``prm`` column parameters, ``tiers``, ``run`` settings, ``st`` state, ``out`` outputs).

    The run starts from ``st.columns`` (C, NSC) and ``st.groups`` (G, NSG) and writes the state
    after its last bar back into them (for its own columns and groups only): a later run over
    the following bars continues exactly. ``book.targets`` (and ``book.weights`` when per bar)
    hold ``book.t_off`` rows before bar 0 (the last targets of the previous run, still to be
    executed); ``mk.vol0_spot``/``mk.vol0_perp`` (N,) are the volumes of the bar before bar 0.

    Groups are independent, so disjoint ranges can run in any order or in parallel and give
    bit-identical results. Outputs are written in place (only the columns and groups of the
    range). Events go to ``rec`` (R, 9) in (bar, group, column) order; returns the number of
    events (rows beyond R were not written: the caller reruns with a larger buffer).
    """
    T = mk.so_ref.shape[0]
    # the arguments' arrays borrowed (backtest.kernels.views): the helpers below take these
    # tuples, and each array of each call would otherwise cost an atomic reference-count pair
    mk, book, prm, tiers = borrowed(mk), borrowed(book), borrowed(prm), borrowed(tiers)
    st, out, rec = borrowed(st), borrowed(out), borrowed(rec)
    flags = run.flags
    w_eq = (flags & F_EQUITY) != 0
    w_geq = (flags & F_GROUP_EQUITY) != 0
    w_comp = (flags & F_COMPONENTS) != 0
    w_pos = (flags & F_POSITIONS) != 0
    w_margin = (flags & F_MARGIN) != 0
    w_cf = (flags & F_CASHFLOW_EVENTS) != 0
    has_band = (flags & F_HAS_BAND) != 0
    has_topup = (flags & F_HAS_TOPUP) != 0
    has_reb = (flags & F_HAS_REB) != 0
    cross, haircut, lag = run.cross, run.haircut, run.lag
    port = cross and haircut >= 0.0
    mmr_max, cum_min = tier_bounds_nb(tiers.mmr, tiers.cum, tiers.n)
    cs, gs = st.columns, st.groups
    grp_cols, col_sym, grp_start = book.grp_cols, book.col_sym, book.grp_start
    valid, ref_valid = mk.valid, mk.ref_valid
    so_ref, po_ref, spot_close, mark_close = mk.so_ref, mk.po_ref, mk.spot_close, mk.mark_close
    mark_open, mark_high, mark_low = mk.mark_open, mk.mark_high, mk.mark_low
    funding_value, funding_rate, time_ms = mk.funding_value, mk.funding_rate, mk.time_ms
    targets, t_off = book.targets, book.t_off
    delta_band, borrow_h, topup_thr, clearance = prm.delta_band, prm.borrow_h, prm.topup_thr, prm.clearance
    t_hi, t_n, t_mmr, t_cum, hi_sorted = tiers.hi, tiers.n, tiers.mmr, tiers.cum, tiers.hi_sorted
    equity, group_equity, comps_out = out.equity, out.group_equity, out.comps
    spot_out, perp_out, mr_out, dl_out = out.spot, out.perp, out.mr, out.dl
    nrec = 0
    for j in range(T):
        rj = j if w_eq else 0
        rg = j if w_geq else 0
        for g in range(g0, g1):
            a, b = grp_start[g], grp_start[g + 1]
            # 1. scan: orders and top-ups due (most bars of most columns have nothing to do)
            any_due = cross and gs[g, G_TOPUP] == j
            new_target = False
            any_order = False
            i = j - lag + t_off  # the target row executed at bar j
            for k in range(a, b):
                # unsigned column and symbol indices (here and below): numba then skips the
                # negative-index wraparound of every array access (~10% of the kernel's instructions)
                c = np.uint64(grp_cols[k])
                if cs[c, S_TOPUP] == j:
                    any_due = True
                sc = cs[c, S_S]
                cs[c, S_BPREV] = -sc if sc < 0.0 else 0.0
                if i >= 0:
                    due = rules.order_due_nb(
                        targets[i, c],
                        cs[c, S_LASTX],
                        cs[c, S_PRE] >= 0.0 and j >= cs[c, S_PRE],
                        cs[c, S_PCLOSE] != 0.0,
                        cs[c, S_REB] != 0.0,
                        gs[g, G_STOP],
                        sc,
                        cs[c, S_Q],
                        flex_nb(delta_band, j, c) if has_band else np.inf,
                    )
                    new_target = new_target or due == 2
                    any_order = any_order or due != 0
            # open revaluation where the open prices are used (fills, top-ups, cross margin);
            # otherwise an invalid bar takes its reference price at step 6 (nothing in between
            # uses the prices of an invalid bar)
            open_all = cross or any_order or any_due
            for k in range(a, b if open_all else a):
                c = np.uint64(grp_cols[k])
                n = np.uint64(col_sym[c])
                if ref_valid[j, n]:
                    cs[c, S_COMP + C_SPOT], cs[c, S_COMP + C_PERP], cs[c, S_COMP + C_UNH], cs[c, S_SV], cs[c, S_PV] = (
                        rules.revalue_nb(
                            cs[c, S_S],
                            cs[c, S_Q],
                            cs[c, S_SV],
                            cs[c, S_PV],
                            so_ref[j, n],
                            po_ref[j, n],
                            cs[c, S_COMP + C_SPOT],
                            cs[c, S_COMP + C_PERP],
                            cs[c, S_COMP + C_UNH],
                        )
                    )
            eq = 0.0
            fills = False  # fills may change fees and slippage (and wallets): refresh the partial sums
            if i >= 0 and any_due:
                # 2. top-ups due now; their spot sales cost fees and slippage: a fresh snapshot
                fills = True
                nrec = _topups(j, g, a, b, mk, book, prm, run, cs, gs, rec, nrec)
                eq = gs[g, G_CASH] + gs[g, G_FW]
                for k in range(a, b):
                    c = np.uint64(grp_cols[k])
                    eq = rules.open_value_nb(
                        eq, cs[c, S_S], cs[c, S_SV], cs[c, S_Q], cs[c, S_PV], cs[c, S_COST], cs[c, S_FW]
                    )
                any_order = True  # spot sales may have moved a delta band: let step 3 check
            elif new_target:
                # equity snapshot at the open (sizing): the state is unchanged since the open
                for k in range(a, b):
                    c = np.uint64(grp_cols[k])
                    eq = rules.open_value_nb(
                        eq, cs[c, S_S], cs[c, S_SV], cs[c, S_Q], cs[c, S_PV], cs[c, S_COST], cs[c, S_FW]
                    )
                eq += gs[g, G_CASH] + gs[g, G_FW]
            if any_order:
                # 3. orders
                fills = True
                nrec = _orders(j, i, g, a, b, new_target, eq, mk, book, prm, run, cs, gs, rec, nrec)
            # 4. liquidation of a cross or portfolio-margin account (isolated: per column below),
            # checked at the adverse mark extremes: the perps' worst balance against a cheap bound
            # of the maintenance margin (notional * max mmr - min cum, term by term), then the
            # brackets (portfolio margin: the balance with the spot collateral at the path's end)
            g_mr = np.nan  # cross / portfolio margin: the account's ratio at the adverse extremes
            g_thr = flex_nb(topup_thr, j, grp_cols[a]) if (cross and has_topup) else np.nan
            g_margin = cross and (w_margin or g_thr == g_thr)
            if cross:
                mb = gs[g, G_FW]
                bound = 0.0
                any_pos = False
                any_priced = False  # the ratio is measured while some perp of the account has prices
                for k in range(a, b):
                    c = np.uint64(grp_cols[k])
                    qc = cs[c, S_Q]
                    if qc != 0.0:
                        any_pos = True
                        any_priced = any_priced or valid[j, np.uint64(col_sym[c])]
                        if not port:
                            n = np.uint64(col_sym[c])
                            m = cs[c, S_PV]
                            if valid[j, n]:
                                m = mark_high[j, n] if qc < 0.0 else mark_low[j, n]
                            mb += qc * m - cs[c, S_COST]
                            bound += abs(qc) * m * mmr_max[n] - cum_min[n]
                if port and any_pos:
                    mb, mm = _balance(
                        1.0,
                        j,
                        a,
                        b,
                        grp_cols,
                        col_sym,
                        cs,
                        valid,
                        mark_open,
                        mark_high,
                        mark_low,
                        tiers,
                        gs[g, G_FW] + gs[g, G_CASH],
                        True,
                        haircut,
                    )
                    breached = mb <= mm
                    if g_margin:
                        g_mr = rules.margin_ratio_nb(mb, mm)
                elif any_pos and (mb <= bound or g_margin):
                    mm = _cross_worst(j, a, b, grp_cols, col_sym, cs, valid, mark_high, mark_low, tiers)
                    breached = mb <= mm
                    g_mr = rules.margin_ratio_nb(mb, mm)
                else:
                    breached = False
                if not any_priced:
                    g_mr = np.nan
                # the positions after the orders (margin outputs of liquidated columns)
                for k in range(a, b):
                    c = np.uint64(grp_cols[k])
                    cs[c, S_QOPEN] = cs[c, S_Q]
                if breached:
                    nrec = _liquidate_group(j, g, a, b, mk, book, prm, tiers, run, cs, gs, rec, nrec)
            else:
                # 4. isolated liquidation, per column, against its adverse mark extreme (the
                # pre-check level holds while nothing traded at this bar); the margin ratio there
                for k in range(a, b):
                    c = np.uint64(grp_cols[k])
                    n = np.uint64(col_sym[c])
                    qc = cs[c, S_Q]
                    cs[c, S_MRF] = np.nan
                    if qc == 0.0 or not valid[j, n]:  # (an invalid bar has no prices to check)
                        continue
                    adv = mark_high[j, n] if qc < 0.0 else mark_low[j, n]
                    thr = flex_nb(topup_thr, j, c) if has_topup else np.nan
                    if w_margin or thr == thr:
                        kb, _kc = bracket_hint_nb(t_hi, t_n, n, abs(qc) * adv, np.int64(cs[c, S_KC]), hi_sorted)
                        cs[c, S_MRF] = rules.adverse_ratio_nb(
                            qc, adv, cs[c, S_FW], cs[c, S_COST], t_mmr[n, kb], t_cum[n, kb]
                        )
                    if fills or rules.liq_possible_nb(qc, adv, cs[c, S_LIQ]):
                        lp = rules.isolated_liq_nb(
                            tiers, n, qc, cs[c, S_FW], cs[c, S_COST], adv, mark_open[j, n], mmr_max[n], cum_min[n]
                        )
                        if lp == lp:
                            cs[c, S_FW], nrec = _liquidate_column(
                                cs, c, lp, flex_nb(clearance, j, c), cs[c, S_FW], True, run, rec, nrec, j
                            )
                            cs[c, S_TOPUP] = -1.0
                            cs[c, S_LIQ] = np.nan
            # 4b. the borrowed spot legs' margin account
            g_smr, nrec = _spot_margin(j, g, a, b, mk, book, run, cs, gs, rec, nrec)

            # 5.-8. per column: funding, close revaluation, borrow, outputs
            colsum = 0.0
            g_upnl = 0.0
            g_mm = 0.0
            g_den = 0.0
            g_coll = 0.0  # portfolio margin: spot collateral (long at 1 - haircut, short at 1 + haircut)
            holding = False
            perp_held = False
            eqsum = 0.0  # the sum of the columns' equities (the stop and rebalancing checks)
            for k in range(a, b):
                c = np.uint64(grp_cols[k])
                n = np.uint64(col_sym[c])
                ok = valid[j, n]
                dirty = fills
                sc = cs[c, S_S]
                qc = cs[c, S_Q]
                # 5. funding
                fv = funding_value[j, n] if qc != 0.0 else 0.0
                wallet, c_fund, famt = rules.funding_nb(
                    qc, fv, gs[g, G_FW] if cross else cs[c, S_FW], cs[c, S_COMP + C_FUND]
                )
                if famt != 0.0:
                    cs[c, S_COMP + C_FUND] = c_fund
                    if cross:
                        gs[g, G_FW] = wallet
                    else:
                        cs[c, S_FW] = wallet
                # 6. close revaluation (an invalid bar: to the reference price unless done at the open)
                svc, pvc = cs[c, S_SV], cs[c, S_PV]
                c_spot, c_perp, c_unh = cs[c, S_COMP + C_SPOT], cs[c, S_COMP + C_PERP], cs[c, S_COMP + C_UNH]
                if ok or not (open_all or not ref_valid[j, n]):
                    sx = spot_close[j, n] if ok else so_ref[j, n]
                    px = mark_close[j, n] if ok else po_ref[j, n]
                    c_spot, c_perp, c_unh, svc, pvc = rules.revalue_nb(sc, qc, svc, pvc, sx, px, c_spot, c_perp, c_unh)
                    cs[c, S_COMP + C_SPOT], cs[c, S_COMP + C_PERP], cs[c, S_COMP + C_UNH] = c_spot, c_perp, c_unh
                    cs[c, S_SV], cs[c, S_PV] = svc, pvc
                # 7. borrow, in whole hours
                br = 0.0
                bamt = 0.0
                b_open = cs[c, S_BOPEN]
                if sc < 0.0 or b_open > 0.0:
                    br = flex_nb(borrow_h, j, c)
                    h_open, h_in = rules.borrow_hours_nb(time_ms[j], run.bar_ms)
                    cash, c_borrow, bamt = rules.borrow_nb(
                        cs[c, S_BPREV],
                        b_open,
                        -sc if sc < 0.0 else 0.0,
                        svc,
                        br,
                        h_open,
                        h_in,
                        gs[g, G_CASH],
                        cs[c, S_COMP + C_BORROW],
                    )
                    if bamt != 0.0:
                        gs[g, G_CASH], cs[c, S_COMP + C_BORROW] = cash, c_borrow
                if famt != 0.0 or bamt != 0.0:
                    dirty = True
                    if w_cf:
                        nrec = rules.cashflow_events_nb(
                            rec, nrec, j, c, qc, fv, funding_rate, n, famt, sc, svc, br, bamt
                        )
                # 8. margin ratio (at the adverse extremes), distance to liquidation (at the close),
                # top-up detection, outputs
                fwc = cs[c, S_FW]
                upnl = qc * pvc - cs[c, S_COST]
                colsum = rules.column_value_nb(colsum, sc, svc, fwc, qc, upnl)
                holding = holding or sc != 0.0 or qc != 0.0
                perp_held = perp_held or qc != 0.0
                mr = np.nan
                dl = np.nan
                if not cross:
                    mr = cs[c, S_MRF]
                    thr = flex_nb(topup_thr, j, c) if has_topup else np.nan
                    if mr >= thr and qc != 0.0 and cs[c, S_TOPUP] < 0.0:
                        cs[c, S_TOPUP] = j + 1 + run.topup_delay
                elif cs[c, S_QOPEN] != 0.0:
                    mr = g_mr
                if b_open > 0.0 and ok:
                    mr = rules.worst_ratio_nb(mr, g_smr)
                if qc != 0.0 and (w_margin or g_margin):
                    notional = abs(qc) * pvc
                    kb, kc = bracket_hint_nb(t_hi, t_n, n, notional, np.int64(cs[c, S_KC]), hi_sorted)
                    cs[c, S_KC] = kc
                    rate = t_mmr[n, kb]
                    if not cross:
                        _mr_close, dl = rules.isolated_margin_nb(qc, notional, rate, t_cum[n, kb], fwc + upnl)
                    else:
                        mm, den = rules.maintenance_nb(qc, notional, rate, t_cum[n, kb])
                        if port:  # an adverse move of the column's net delta, spot included
                            up = _pm_up(sc, qc, haircut)
                            w = 1.0 - haircut if sc > 0.0 else 1.0 + haircut
                            den = abs(qc * pvc + sc * svc * w) + (notional * rate if up else -notional * rate)
                        g_upnl += upnl
                        g_mm += mm
                        g_den += den
                if port and sc != 0.0 and g_margin:
                    w = 1.0 - haircut if sc > 0.0 else 1.0 + haircut
                    g_coll += sc * svc * w
                    if qc == 0.0:
                        g_den += abs(sc * svc * w)
                partial = cs[c, S_COMP7]
                if dirty:
                    partial = rules.partial_sum_nb(
                        cs[c, S_INIT], cs[c, S_COMP], cs[c, S_COMP + 1], cs[c, S_COMP + 2], cs[c, S_COMP + 3]
                    )
                    cs[c, S_COMP7] = partial
                ceq = rules.equity_nb(partial, c_spot, c_perp, cs[c, S_COMP + C_LIQ], c_unh)
                equity[rj, c] = ceq
                eqsum += ceq
                if w_margin:
                    rules.store_pair_nb(mr_out, dl_out, j, c, mr, dl)
                if w_comp:
                    rules.store_components_nb(
                        comps_out,
                        j,
                        c,
                        cs[c, S_COMP],
                        cs[c, S_COMP + 1],
                        cs[c, S_COMP + 2],
                        cs[c, S_COMP + 3],
                        cs[c, S_COMP + 4],
                        cs[c, S_COMP + 5],
                        cs[c, S_COMP + 6],
                        cs[c, S_COMP + 7],
                    )
                if w_pos:
                    rules.store_pair_nb(spot_out, perp_out, j, c, sc, qc)
                if dirty and not cross:  # the wallet or the position may have moved
                    cs[c, S_LIQ] = liq_level_nb(qc, fwc, cs[c, S_COST], mmr_max[n], cum_min[n])
            geq = gs[g, G_CASH] + gs[g, G_FW] + colsum
            group_equity[rg, g] = geq
            if g_margin:
                if perp_held and g_mr >= g_thr and gs[g, G_TOPUP] < 0.0:
                    gs[g, G_TOPUP] = j + 1 + run.topup_delay
                if w_margin and (g_den > 0.0 or port):
                    g_mb = gs[g, G_FW] + g_upnl
                    if port:
                        g_mb += gs[g, G_CASH] + g_coll
                    # portfolio margin: no adverse move of the hedged book liquidates it when den <= 0
                    dl = (g_mb - g_mm) / g_den if g_den > 0.0 else np.inf
                    for k in range(a, b):
                        c = np.uint64(grp_cols[k])
                        if cs[c, S_Q] != 0.0:
                            dl_out[j, c] = dl
            # a portfolio whose equity reached zero stops; rebalancing due at the next bar
            if eqsum <= 0.0 and gs[g, G_STOP] == STOP_NONE:
                gs[g, G_STOP], nrec = rules.stop_nb(rec, nrec, j, g, eqsum, holding)
            if has_reb and gs[g, G_STOP] == STOP_NONE:
                for k in range(a, b):
                    c = np.uint64(grp_cols[k])
                    if cs[c, S_SUSP] == 0.0 and cs[c, S_PRE] < 0.0 and cs[c, S_PCLOSE] == 0.0:
                        if rules.rebalance_due_nb(
                            rules.period_start_nb(time_ms[j], run.bar_ms, flex_nb(prm.reb_every_ms, j, c)),
                            flex_nb(prm.reb_band, j, c),
                            eqsum,
                            rules.target_factor_nb(cs[c, S_SHARE], cs[c, S_LASTX], flex_nb(prm.leverage, j, c)),
                            cs[c, S_S],
                            cs[c, S_SV],
                            flex_nb(prm.min_qty, j, c),
                            flex_nb(prm.min_notional, j, c),
                        ):
                            cs[c, S_REB] = 1.0
    # scheduled top-ups and re-entries, counted from the end of this run for the run over the next bars
    for g in range(g0, g1):
        gs[g, G_TOPUP] = rules.carry_bar_nb(gs[g, G_TOPUP], T)
        for k in range(grp_start[g], grp_start[g + 1]):
            c = grp_cols[k]
            cs[c, S_TOPUP] = rules.carry_bar_nb(cs[c, S_TOPUP], T)
            cs[c, S_PRE] = rules.carry_bar_nb(cs[c, S_PRE], T)
            rules.store_final_nb(cs, out, c, flags)
    return nrec


@njit(cache=True, parallel=True)
def simulate_parallel_nb(fast, bounds, rec_bounds, mk, book, prm, tiers, run, st, out, rec):
    """:func:`simulate_range_nb` (or, with ``fast``, :func:`~backtest.kernels.fast.fast_range_nb`)
    over chunks of groups ``bounds[h] .. bounds[h + 1]`` in parallel.

    Chunk ``h`` writes its events to ``rec[rec_bounds[h]:rec_bounds[h + 1]]``; returns the
    number of events of each chunk (see :func:`merge_records_nb`).
    """
    nch = bounds.shape[0] - 1
    counts = np.zeros(nch, np.int64)
    for h in prange(nch):
        part = rec[rec_bounds[h] : rec_bounds[h + 1]]
        if fast:
            counts[h] = fast_range_nb(bounds[h], bounds[h + 1], mk, book, prm, tiers, run, st, out, part)
        else:
            counts[h] = simulate_range_nb(bounds[h], bounds[h + 1], mk, book, prm, tiers, run, st, out, part)
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
def merge_records_nb(rec, rec_bounds, counts, out):
    """Events of chunks of groups into ``out`` (``counts.sum()`` rows) in the order of one pass
    over every group: by bar, then chunk, then the chunk's own order. Chunk ``h``'s events are
    rows ``rec_bounds[h] .. rec_bounds[h] + counts[h] - 1`` of ``rec``, in bar order: a merge
    of those runs, bar by bar, each chunk's run of a bar copied whole (contiguous rows in, a
    contiguous block out). Linear in the events, plus bars times chunks for the cursors.

    (It replaced a counting sort of every row on its bar, which scattered rows one at a time:
    2.35 M events of 25 chunks, ``backtest.app.bench``'s 100,000-column grid, in ~80 ms
    against 10-16 ms now.)"""
    nch = counts.shape[0]
    F = rec.shape[1]
    src = rec.ravel()
    dst = out.ravel()
    pos = np.empty(nch, np.int64)
    end = np.empty(nch, np.int64)
    bar = np.inf  # the bar being merged: the smallest bar at a chunk's cursor
    for h in range(nch):
        pos[h] = rec_bounds[h]
        end[h] = rec_bounds[h] + counts[h]
        if counts[h] > 0:
            bar = min(bar, rec[pos[h], R_BAR])
    d = 0
    while bar < np.inf:
        following = np.inf
        for h in range(nch):
            p0 = pos[h]
            p = p0
            e = end[h]
            while p < e and rec[np.uint64(p), R_BAR] == bar:
                p += 1
            if p > p0:
                dst[d * F : (d + p - p0) * F] = src[p0 * F : p * F]
                d += p - p0
                pos[h] = p
            if p < e:
                following = min(following, rec[np.uint64(p), R_BAR])
        bar = following
    return d

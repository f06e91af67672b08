"""The kernel of cross-venue spread hedges: a perp on venue A against a perp on venue B.

The rules are stated once, in :mod:`backtest.spread` (and followed step by step by the plain-Python
reference ``tests/reference_spread.py``); every per-bar rule that also exists for single-venue
hedges is taken from :mod:`backtest.kernels.rules` (revaluation and its hedged/unhedged split,
funding, fills and their prices, the isolated liquidation check and close, what follows a
liquidation, margin ratio), with the leg code ``LEG_SPOT`` standing for leg A and ``LEG_PERP``
for leg B in the events. Layout: :class:`~backtest.kernels.layout.SpreadParams`,
:class:`~backtest.kernels.layout.SpreadSettings`, :class:`~backtest.kernels.layout.SpreadOutputs`
and the ``X_*`` state slots; the two legs' markets are two
:class:`~backtest.kernels.layout.MarketArrays` (their perp and mark fields).

Every column is its own portfolio, so columns are independent: a range of columns can run in
any order or on threads (:func:`spread_parallel_nb`) with bit-identical results. Bars are the
outer loop, columns the inner one (as in :func:`backtest.kernels.simulate.simulate_range_nb`);
a bar without orders costs a liquidation check per open leg, two funding reads, the close
revaluation and the outputs.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from backtest.kernels import rules
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
    F_MARGIN,
    F_POSITIONS,
    K_BORROW,
    K_LIQ,
    K_TRANSFER,
    LEG_PERP,
    LEG_SPOT,
    N_COMP,
    R_CASH,
    R_FEE,
    R_KIND,
    R_RATE,
    X_BALA,
    X_BALB,
    X_BPREV,
    X_CAP,
    X_COMP,
    X_COSTA,
    X_COSTB,
    X_FBAR,
    X_FLA,
    X_FLIGHT,
    X_FUNDA,
    X_FX,
    X_IDLE,
    X_INIT,
    X_LASTX,
    X_NTR,
    X_PCLOSE,
    X_PRE,
    X_Q,
    X_RA,
    X_RB,
    X_REB,
    X_S,
    X_TFEE,
    X_VA,
    X_VB,
    X_VENA,
    X_VENB,
)
from backtest.kernels.margin import (
    PATH_STEPS,
    flex_nb,
    liq_level_and_slope_nb,
    maint_margin_nb,
    path_point_nb,
    path_step_nb,
    tier_bounds_nb,
)
from backtest.kernels.views import borrowed

#: A sizing cap below this fraction of the equity opens nothing, and an order below this
#: fraction of the position is not sent (rounding residues, not trades).
DUST = 1e-9
#: :func:`_bars_nb`'s phases (int64, not literals: one compiled version for every caller): all of
#: each bar, its first half, its second half, all of it noting the cross accounts.
PHASE_ALL, PHASE_OPEN, PHASE_REST, PHASE_NOTE = np.int64(0), np.int64(1), np.int64(2), np.int64(3)
ZERO = np.int64(0)
#: Bars per chunk of a cross run's driver (:func:`spread_cross_nb`) checked together.
CROSS_CHUNK = 64
#: Bars per time chunk of :func:`spread_range_nb` (a chunk's per-bar outputs of all its columns
#: stay in cache while each column runs through it).
TIME_CHUNK = 256


@njit(cache=True, inline="always")
def _share_a(a_spot, lev_a, lev_b):
    """Venue A's share of the two venues' margin balances: what its leg needs at the target
    leverage, over both (spot: the notional against its margin ``N / L_B``; two perps: ``N / L_A``
    against ``N / L_B``)."""
    if a_spot:
        return lev_b / (lev_b + 1.0)
    return lev_b / (lev_a + lev_b)


@njit(cache=True, inline="always")
def _leg_code(cs, c, to_b):
    """An event's leg code: ``LEG_SPOT`` for leg A, ``LEG_PERP`` for leg B, plus twice the index
    of the venue the leg is on (0 without venue switching)."""
    if to_b:
        return LEG_PERP + 2 * np.int64(cs[c, X_VENB])
    return LEG_SPOT + 2 * np.int64(cs[c, X_VENA])


@njit(cache=True, inline="always")
def _to_account(rec, n0, n1, r):
    """Events ``n0 .. n1 - 1`` (those the buffer holds) written in a venue's quote: their cash,
    fee (and a liquidation's insurance cover) in the account currency at rate ``r``."""
    for k in range(n0, min(n1, rec.shape[0])):
        ku = np.uint64(k)
        rec[ku, np.uint64(R_CASH)] *= r
        rec[ku, np.uint64(R_FEE)] *= r
        if rec[ku, np.uint64(R_KIND)] == K_LIQ:
            rec[ku, np.uint64(R_RATE)] *= r


@njit(cache=True, inline="always")
def _revalue(s, q, va, vb, pxa, pxb, c_spot, c_perp, c_unh, ra, rb, fx):
    """``rules.revalue_nb`` with each leg's price PnL in the account currency: leg A's at rate
    ``ra``, leg B's at ``rb`` (the unhedged coins are the larger leg's); ``fx`` False: as it is."""
    if not fx:
        return rules.revalue_nb(s, q, va, vb, pxa, pxb, c_spot, c_perp, c_unh)
    ds, dp, du, nva, nvb = rules.revalue_nb(s, q, va, vb, pxa, pxb, 0.0, 0.0, 0.0)
    return c_spot + ds * ra, c_perp + dp * rb, c_unh + du * (ra if abs(s) > abs(q) else rb), nva, nvb


@njit(cache=True, inline="always")
def _fx_move(s, q, va, vb, costa, costb, bala, balb, ra, rb, ra_new, rb_new):
    """The revaluation of both venues' margin balances (wallet plus unrealized, in each venue's
    quote; a spot leg: its cash and coins) when the rates move from ``ra``/``rb`` to the new ones
    (account currency)."""
    upa = s * va - costa if s != 0.0 else 0.0
    upb = q * vb - costb if q != 0.0 else 0.0
    return (bala + upa) * (ra_new - ra) + (balb + upb) * (rb_new - rb)


@njit(cache=True, inline="always")
def _transfer(j, c, cs, from_b, amount, fee, delay, rec, nrec):
    """Send ``amount`` (account currency) from venue A's wallet (``from_b`` False) or B's to the
    other one: it leaves now (``amount`` at the sender's rate, in its quote), the flat ``fee``
    is a cost, and ``amount - fee`` arrives at bar ``j + delay`` (at once for delay 0), credited
    at the receiver's rate then. Returns the event count."""
    cs[c, X_BALB if from_b else X_BALA] -= amount / (cs[c, X_RB] if from_b else cs[c, X_RA])
    return _send(j, c, cs, _leg_code(cs, c, from_b), not from_b, amount, fee, delay, rec, nrec)


@njit(cache=True, inline="always")
def _send(j, c, cs, code, to_b, amount, fee, delay, rec, nrec):
    """``amount`` (account currency, already taken from the sender, whose event leg code is
    ``code``) on its way to leg B's venue (``to_b``) or leg A's: the flat ``fee`` is a cost, and
    ``amount - fee`` arrives at bar ``j + delay`` (added to what is in flight: both legs' venues
    may receive at once), or now for delay 0. Returns the event count."""
    cs[c, X_COMP + C_FEE] -= fee
    cs[c, X_TFEE] -= fee
    cs[c, X_NTR] += 1.0
    nrec = rules.push_nb(rec, nrec, j, c, K_TRANSFER, code, np.nan, np.nan, np.nan, -amount, fee)
    net = amount - fee
    if delay == 0:
        cs[c, X_BALB if to_b else X_BALA] += net / (cs[c, X_RB] if to_b else cs[c, X_RA])
        nrec = rules.push_nb(rec, nrec, j, c, K_TRANSFER, _leg_code(cs, c, to_b), np.nan, np.nan, np.nan, net, 0.0)
    else:
        cs[c, X_FLIGHT] += net
        if not to_b:
            cs[c, X_FLA] += net
        cs[c, X_FBAR] = j + delay
    return nrec


@njit(cache=True, inline="always")
def _fill(j, c, cs, to_b, dq, ref, vol, slip, impact, fee_rate, rec, nrec, a_spot=False):
    """Trade ``dq`` coins of leg A (``to_b`` False) or B at the reference ``ref`` into that venue's
    wallet (``rules.perp_leg_fill_nb``; a spot leg A, ``a_spot``: ``rules.spot_fill_nb`` for venue
    A's quote cash). An order of at most ``DUST`` of the position is a rounding residue of a
    resizing to the same size: not sent. The fee and slippage components and the event's cash
    are in the account currency (at the venue's rate ``X_RA``/``X_RB``). Returns the event count."""
    pos0 = cs[c, X_Q] if to_b else cs[c, X_S]
    if dq == 0.0 or abs(dq) <= DUST * abs(pos0):
        return nrec
    r = cs[c, X_RB] if to_b else cs[c, X_RA]
    if r == 1.0:
        return _fill_local(j, c, cs, to_b, dq, ref, vol, slip, impact, fee_rate, rec, nrec, a_spot)
    # a venue quoted in another currency: its fee and slippage in the account currency
    f0, s0, n0 = cs[c, X_COMP + C_FEE], cs[c, X_COMP + C_SLIP], nrec
    nrec = _fill_local(j, c, cs, to_b, dq, ref, vol, slip, impact, fee_rate, rec, nrec, a_spot)
    cs[c, X_COMP + C_FEE] = f0 + (cs[c, X_COMP + C_FEE] - f0) * r
    cs[c, X_COMP + C_SLIP] = s0 + (cs[c, X_COMP + C_SLIP] - s0) * r
    _to_account(rec, n0, nrec, r)
    return nrec


@njit(cache=True, inline="always")
def _fill_local(j, c, cs, to_b, dq, ref, vol, slip, impact, fee_rate, rec, nrec, a_spot):
    """:func:`_fill` in the venue's quote currency (its wallet, the fee and slippage components)."""
    if a_spot and not to_b:
        cs[c, X_BALA], cs[c, X_COMP + C_FEE], cs[c, X_COMP + C_SLIP], nrec = rules.spot_fill_nb(
            rec,
            nrec,
            j,
            c,
            dq,
            ref,
            vol,
            slip,
            impact,
            fee_rate,
            cs[c, X_BALA],
            cs[c, X_COMP + C_FEE],
            cs[c, X_COMP + C_SLIP],
        )
        cs[c, X_S] += dq
        return nrec
    pos_k, cost_k, bal_k = (X_Q, X_COSTB, X_BALB) if to_b else (X_S, X_COSTA, X_BALA)
    cs[c, cost_k], cs[c, bal_k], cs[c, X_COMP + C_FEE], cs[c, X_COMP + C_SLIP], nrec = rules.perp_leg_fill_nb(
        rec,
        nrec,
        j,
        c,
        _leg_code(cs, c, to_b),
        dq,
        ref,
        vol,
        slip,
        impact,
        fee_rate,
        cs[c, pos_k],
        cs[c, cost_k],
        cs[c, bal_k],
        cs[c, X_COMP + C_FEE],
        cs[c, X_COMP + C_SLIP],
    )
    cs[c, pos_k] += dq
    if cs[c, pos_k] == 0.0:
        cs[c, cost_k] = 0.0
    return nrec


@njit(cache=True, inline="always")
def _open(j, c, na, nb, mka, mkb, prm, run, cs):
    """The start of step 1: both legs revalued to their reference prices at bar ``j``'s open;
    returns those prices, the rates, leverages, slippage, fees and previous volumes an order
    reads."""
    pxa, pxb = mka.po_ref[j, na], mkb.po_ref[j, nb]
    ra, rb = cs[c, X_RA], cs[c, X_RB]  # (account currency per unit of each venue's quote; 1: the same)
    cs[c, X_COMP + C_SPOT], cs[c, X_COMP + C_PERP], cs[c, X_COMP + C_UNH], cs[c, X_VA], cs[c, X_VB] = _revalue(
        cs[c, X_S],
        cs[c, X_Q],
        cs[c, X_VA],
        cs[c, X_VB],
        pxa,
        pxb,
        cs[c, X_COMP + C_SPOT],
        cs[c, X_COMP + C_PERP],
        cs[c, X_COMP + C_UNH],
        ra,
        rb,
        run.fx,
    )
    lev = flex_nb(prm.leverage, j, c)  # leg B's (and leg A's unless lev_a differs)
    lev_a = flex_nb(prm.leverage_a, j, c)
    slip, impact = flex_nb(prm.slip_frac, j, c), flex_nb(prm.impact, j, c)
    fee_a, fee_b = _fees(prm, run, j, c, cs)
    vol_a = mka.perp_volume[j - 1, na] if j > 0 else mka.vol0_perp[na]
    vol_b = mkb.perp_volume[j - 1, nb] if j > 0 else mkb.vol0_perp[nb]
    return pxa, pxb, ra, rb, lev, lev_a, slip, impact, fee_a, fee_b, vol_a, vol_b


@njit(cache=True, inline="always")
def _orders(j, x, size, c, na, nb, mka, mkb, prm, run, cs, rec, nrec):
    """Step 1 of bar ``j`` for column ``c`` (leg A on symbol ``na`` of its markets, leg B on
    ``nb``), both legs' reference prices valid: revalue to them, then size to target ``x``
    (``size``), close after a liquidation, or rebalance the collateral (see
    :mod:`backtest.spread`). Returns the event count."""
    pxa, pxb, ra, rb, lev, lev_a, slip, impact, fee_a, fee_b, vol_a, vol_b = _open(j, c, na, nb, mka, mkb, prm, run, cs)
    s, q = cs[c, X_S], cs[c, X_Q]
    if size or cs[c, X_PCLOSE] != 0.0:
        new_s = 0.0
        if size:  # (margin balances, equity, notionals and room in the account currency)
            mba = (cs[c, X_BALA] + (s * pxa - cs[c, X_COSTA])) * ra
            mbb = (cs[c, X_BALB] + (q * pxb - cs[c, X_COSTB])) * rb
            eq = mba + mbb + cs[c, X_FLIGHT]
            if run.a_spot:  # spot N plus margin N / L: N = E * L / (L + 1); A buys only what it holds
                notional = max(eq, 0.0) * abs(x) * lev / (lev + 1.0)
                room = max(min(mba, mbb * lev), 0.0)
            elif lev_a == lev:  # margin N / L on each venue: N = E * L / 2
                notional = max(eq, 0.0) * abs(x) * lev / 2.0
                room = max(min(mba, mbb), 0.0) * lev  # each venue margins only what it holds
            else:  # margins N / L_A + N / L_B = E: N = E * L_A * L_B / (L_A + L_B)
                notional = max(eq, 0.0) * abs(x) * (lev_a * lev / (lev_a + lev))
                room = max(min(mba * lev_a, mbb * lev), 0.0)
            if room <= DUST * max(eq, cs[c, X_INIT]):  # a rounding residue (a wallet left at maintenance - fee)
                room = 0.0
            cs[c, X_CAP] = 1.0 if room < notional * (1.0 - DUST) else 0.0  # (short by more than rounding)
            new_s = np.sign(x) * min(notional, room) / (pxa * ra)
            cs[c, X_LASTX] = x
            cs[c, X_PRE] = -1.0
        cs[c, X_PCLOSE] = 0.0
        nrec = _fill(j, c, cs, False, new_s - s, pxa, vol_a, slip, impact, fee_a, rec, nrec, run.a_spot)
        nrec = _fill(j, c, cs, True, -new_s - q, pxb, vol_b, slip, impact, fee_b, rec, nrec)
        return nrec
    # collateral rebalance: both legs back to the target's size on the equity (a rise of the
    # price grows the notional and the winning leg's initial margin), then from the venue with
    # the larger margin balance to the other
    cs[c, X_REB] = 0.0
    last = cs[c, X_LASTX]
    if s != 0.0 and q != 0.0 and last == last:
        mba = (cs[c, X_BALA] + (s * pxa - cs[c, X_COSTA])) * ra
        mbb = (cs[c, X_BALB] + (q * pxb - cs[c, X_COSTB])) * rb
        eq = mba + mbb + cs[c, X_FLIGHT]
        per = lev / (lev + 1.0) if run.a_spot else lev / 2.0 if lev_a == lev else lev_a * lev / (lev_a + lev)
        new_s = np.sign(last) * (max(eq, 0.0) * abs(last) * per) / (pxa * ra)
        nrec = _fill(j, c, cs, False, new_s - s, pxa, vol_a, slip, impact, fee_a, rec, nrec, run.a_spot)
        nrec = _fill(j, c, cs, True, -new_s - q, pxb, vol_b, slip, impact, fee_b, rec, nrec)
        s, q = cs[c, X_S], cs[c, X_Q]
        cs[c, X_CAP] = 0.0  # at the target's size now: no longer held short
    mba = (cs[c, X_BALA] + (s * pxa - cs[c, X_COSTA])) * ra  # (margin balance: wallet + unrealized)
    mbb = (cs[c, X_BALB] + (q * pxb - cs[c, X_COSTB])) * rb
    if run.a_spot or lev_a != lev:  # venue A's share of the two: L / (L + 1) (spot), L_B / (L_A + L_B)
        ta = _share_a(run.a_spot, lev_a, lev) * (mba + mbb)
        from_b = mba < ta
        need = ta - mba if from_b else mba - ta
    else:
        from_b = mbb > mba
        need = abs(mba - mbb) / 2.0
    pos, px = (q, pxb) if from_b else (s, pxa)
    bal_k, cost_k = (X_BALB, X_COSTB) if from_b else (X_BALA, X_COSTA)
    spot_rich = run.a_spot and not from_b  # a spot leg's free quote is its cash
    lev_rich = lev if from_b else lev_a
    r_rich = rb if from_b else ra
    if spot_rich:  # a spot leg's free quote is its cash; borrowed, what keeps its margin level at 2
        free = (cs[c, bal_k] - (2.0 * abs(pos) * px if pos < 0.0 else 0.0)) * r_rich
    else:
        free = (cs[c, bal_k] - abs(pos) * px / lev_rich) * r_rich
    if free < need and pos * px - cs[c, cost_k] > 0.0 and pos != 0.0 and not spot_rich:
        # re-strike the richer leg (close and reopen the same coins) to realize its profit
        vol, fee_rate = (vol_b, fee_b) if from_b else (vol_a, fee_a)
        nrec = _fill(j, c, cs, from_b, -pos, px, vol, slip, impact, fee_rate, rec, nrec)
        nrec = _fill(j, c, cs, from_b, pos, px, vol, slip, impact, fee_rate, rec, nrec)
        free = (cs[c, bal_k] - abs(pos) * px / lev_rich) * r_rich
    amount = min(need, free)
    fee_t = flex_nb(prm.transfer_fee, j, c)
    if amount > fee_t and amount > 0.0:
        nrec = _transfer(j, c, cs, from_b, amount, fee_t, run.transfer_delay, rec, nrec)
        if cs[c, X_CAP] != 0.0:  # a capped sizing with a flat leg: size once the transfer is in
            cs[c, X_CAP] = 0.0
            cs[c, X_PRE] = j + run.transfer_delay
    return nrec


@njit(cache=True, inline="always")
def _fees(prm, run, j, c, cs):
    """The fees (fractions of notional) at bar ``j`` of the venues legs A and B are on: per
    column, or per venue when the legs switch venues (each a schedule per bar, or one row)."""
    if run.switching:
        return flex_nb(prm.fee_a, j, np.int64(cs[c, X_VENA])), flex_nb(prm.fee_b, j, np.int64(cs[c, X_VENB]))
    return flex_nb(prm.fee_a, j, c), flex_nb(prm.fee_b, j, c)


@njit(cache=True)
def _switch(j, x, ta, tb, c, na, nb, mka, mkb, prm, run, rates, cs, rec, nrec):
    """Step 1 of bar ``j`` for a new target ``x`` on other venues (leg A to venue ``ta``, leg B
    to ``tb``; NaN: stay), both legs revalued to their reference prices: a leg that changes venue or
    side is closed on its venue; the wallet of each venue left is sent to the leg's new venue (a
    transfer, ``fee_t``, in the account currency at the rate of the venue left, credited at the new
    venue's; a balance of at most the fee stays there, idle, in the equity at the rate of the
    moment); the
    column sizes to ``x`` once what is sent has arrived (a re-entry due at the arrival bar, or at
    once when nothing is in flight), on the new venues. A leg that keeps its venue and side stays
    open meanwhile (unhedged until the other leg opens), unless ``run.switch_keep`` is False
    (closed too). Returns the event count."""
    pxa, pxb, _ra, _rb, _lev, _lev_a, slip, impact, fee_a, fee_b, vol_a, vol_b = _open(
        j, c, na, nb, mka, mkb, prm, run, cs
    )
    fee_t = flex_nb(prm.transfer_fee, j, c)
    side = np.sign(x)
    s, q = cs[c, X_S], cs[c, X_Q]
    new_a = ta == ta and ta != cs[c, X_VENA]
    new_b = tb == tb and tb != cs[c, X_VENB]
    keep = run.switch_keep
    if s != 0.0 and (new_a or np.sign(s) != side or not keep):
        nrec = _fill(j, c, cs, False, -s, pxa, vol_a, slip, impact, fee_a, rec, nrec, run.a_spot)
    if q != 0.0 and (new_b or np.sign(q) != -side or not keep):
        nrec = _fill(j, c, cs, True, -q, pxb, vol_b, slip, impact, fee_b, rec, nrec)
    for to_b in (False, True):
        if (to_b and not new_b) or (not to_b and not new_a):
            continue
        bal_k, r_k = (X_BALB, X_RB) if to_b else (X_BALA, X_RA)
        amount = cs[c, bal_k] * cs[c, r_k]  # (at the rate of the venue left)
        code = _leg_code(cs, c, to_b)  # (the venue left)
        cs[c, bal_k] = 0.0
        v = tb if to_b else ta
        cs[c, X_VENB if to_b else X_VENA] = v
        cs[c, X_VB if to_b else X_VA] = np.nan
        if run.fx:  # the new venue's quote at this open's rate (what arrives is credited at it)
            vu = np.uint64(v)
            cs[c, r_k] = rates.b_open[np.uint64(j), vu] if to_b else rates.a_open[np.uint64(j), vu]
        if amount > fee_t and amount > 0.0:
            nrec = _send(j, c, cs, code, to_b, amount, fee_t, run.transfer_delay, rec, nrec)
        else:
            cs[c, X_IDLE] += amount
    cs[c, X_LASTX] = x
    cs[c, X_PCLOSE] = 0.0
    cs[c, X_REB] = 0.0
    cs[c, X_CAP] = 0.0
    cs[c, X_PRE] = cs[c, X_FBAR] if cs[c, X_FBAR] >= 0.0 else j
    return nrec


@njit(cache=True)
def _liquidate(j, c, n, to_b, mk, tiers, mmr_max, cum_min, clear, run, cs, rec, nrec):
    """Step 2 for leg A (``to_b`` False) or B: liquidated when its isolated margin balance at the
    bar's adverse mark extreme meets its venue's maintenance margin (``rules.isolated_liq_nb``);
    closed there (``rules.liquidate_leg_nb``), then the policy of ``run.after_liq``. Returns the
    event count."""
    pos_k, cost_k, bal_k, _v_k, _comp_k, _r_k = _leg_slots(to_b)
    pos = cs[c, pos_k]
    adv = mk.mark_low[j, n] if pos > 0.0 else mk.mark_high[j, n]
    lp = rules.isolated_liq_nb(tiers, n, pos, cs[c, bal_k], cs[c, cost_k], adv, mk.mark_open[j, n], mmr_max, cum_min)
    if lp != lp:
        return nrec
    cs[c, bal_k], nrec = _close_leg(j, c, to_b, lp, clear, cs[c, bal_k], True, cs, rec, nrec)
    _after_liquidation(j, c, run, cs)
    return nrec


@njit(cache=True, inline="always")
def _close_leg(j, c, to_b, lp, clear, wallet, cover_ok, cs, rec, nrec):
    """Close leg A's perp (``to_b`` False) or B's at the liquidation price ``lp`` of bar ``j``
    (``rules.liquidate_leg_nb``: its realized PnL and the clearance fee ``clear`` into ``wallet``,
    the isolated leg's or its cross account's; ``cover_ok``: the insurance fund covers a negative
    wallet), its amounts in the account currency (:func:`_liq_at_rate`); the leg is then flat,
    valued at ``lp``. Returns ``(wallet, nrec)``."""
    pos_k, cost_k, _bal_k, v_k, comp_k, r_k = _leg_slots(to_b)
    p0, u0, l0, n0 = cs[c, comp_k], cs[c, X_COMP + C_UNH], cs[c, X_COMP + C_LIQ], nrec
    after, cs[c, comp_k], cs[c, X_COMP + C_UNH], cs[c, X_COMP + C_LIQ], nrec = rules.liquidate_leg_nb(
        rec,
        nrec,
        j,
        c,
        _leg_code(cs, c, to_b),
        cs[c, pos_k],
        cs[c, X_S] if to_b else cs[c, X_Q],
        cs[c, cost_k],
        cs[c, v_k],
        lp,
        clear,
        wallet,
        cs[c, comp_k],
        cs[c, X_COMP + C_UNH],
        cs[c, X_COMP + C_LIQ],
        cover_ok,
    )
    _liq_at_rate(c, cs, comp_k, p0, u0, l0, cs[c, r_k], rec, n0, nrec)
    cs[c, pos_k] = 0.0
    cs[c, cost_k] = 0.0
    cs[c, v_k] = lp
    return after, nrec


@njit(cache=True, inline="always")
def _liq_at_rate(c, cs, comp_k, p0, u0, l0, r, rec, n0, n1):
    """A liquidation's amounts, booked in its venue's quote, in the account currency at the venue's
    rate ``r``: the price (``comp_k``), unhedged and liquidation components' changes since
    ``p0``/``u0``/``l0`` and events ``n0 .. n1 - 1`` (nothing to do at rate 1)."""
    if r != 1.0:
        cs[c, comp_k] = p0 + (cs[c, comp_k] - p0) * r
        cs[c, X_COMP + C_UNH] = u0 + (cs[c, X_COMP + C_UNH] - u0) * r
        cs[c, X_COMP + C_LIQ] = l0 + (cs[c, X_COMP + C_LIQ] - l0) * r
        _to_account(rec, n0, n1, r)


@njit(cache=True, inline="always")
def _after_liquidation(j, c, run, cs):
    """What follows a leg's liquidation: the policy of ``run.after_liq`` for the other leg."""
    pend_close, reentry, _susp = rules.after_liquidation_nb(
        run.after_liq, cs[c, X_S], cs[c, X_Q], cs[c, X_PCLOSE] != 0.0, cs[c, X_PRE], False, j, run.cooldown
    )
    cs[c, X_PCLOSE] = 1.0 if pend_close else 0.0
    cs[c, X_PRE] = reentry
    cs[c, X_REB] = 0.0
    cs[c, X_CAP] = 0.0  # the policy decides what follows, not an earlier capped sizing


@njit(cache=True)
def _margin_call(j, c, n, mk, run, cs, rec, nrec):
    """Step 2 for a borrowed spot leg A (``s < 0``): venue A's margin account (its quote cash
    against the borrowed coins' value) reaches ``run.spot_level`` on the path from the spot open
    to the bar's high: the coins are bought back there (``rules.spot_liq_single_nb``,
    ``rules.liquidate_spot_nb``, its fee floored at the cash left), a balance left negative is
    covered by the insurance fund (in ``liquidation``; the event's rate), then the policy of
    ``run.after_liq``. Returns the event count."""
    s = cs[c, X_S]
    p = rules.spot_liq_single_nb(cs[c, X_BALA], s, mk.mark_open[j, n], mk.mark_high[j, n], run.spot_level)
    if p != p:
        return nrec
    p0, u0, l0, n0 = cs[c, X_COMP + C_SPOT], cs[c, X_COMP + C_UNH], cs[c, X_COMP + C_LIQ], nrec
    cash, c_spot, c_unh, c_liq, nrec = rules.liquidate_spot_nb(
        rec, nrec, j, c, s, cs[c, X_Q], cs[c, X_VA], p, run.spot_liq_fee, cs[c, X_BALA], 0.0, p0, u0, l0
    )
    if cash < 0.0:  # the insurance fund covers what the buy-back left owed
        c_liq -= cash
        if nrec - 1 < rec.shape[0]:
            k = np.uint64(nrec - 1)
            rec[k, np.uint64(R_CASH)] -= cash
            rec[k, np.uint64(R_RATE)] = -cash
        cash = 0.0
    cs[c, X_BALA], cs[c, X_COMP + C_SPOT], cs[c, X_COMP + C_UNH], cs[c, X_COMP + C_LIQ] = cash, c_spot, c_unh, c_liq
    _liq_at_rate(c, cs, X_COMP + C_SPOT, p0, u0, l0, cs[c, X_RA], rec, n0, nrec)
    cs[c, X_S] = 0.0
    cs[c, X_VA] = p
    _after_liquidation(j, c, run, cs)
    return nrec


@njit(cache=True, inline="always")
def _leg_ratio(pos, v, bal, cost, tiers, n):
    """A leg's margin ratio at valuation price ``v`` (NaN when flat)."""
    if pos == 0.0:
        return np.nan
    mm = maint_margin_nb(tiers.hi, tiers.mmr, tiers.cum, tiers.n, n, abs(pos) * v)
    return rules.margin_ratio_nb(bal + pos * v - cost, mm)


@njit(cache=True, inline="always")
def _borrow_ratio(s, v, cash, level):
    """A spot leg A's margin ratio: borrowed (``s < 0``), the call level over its margin level
    (cash over the borrowed coins' value at ``v``: 1 at the call); long, NaN (never called)."""
    if s >= 0.0:
        return np.nan
    return level * (-s) * v / cash if cash > 0.0 else np.inf


@njit(cache=True, inline="always")
def _get(cs, c):
    """A column's hot state: the values a bar without orders reads and writes."""
    return (
        cs[c, X_S],
        cs[c, X_Q],
        cs[c, X_COSTA],
        cs[c, X_COSTB],
        cs[c, X_BALA],
        cs[c, X_BALB],
        cs[c, X_VA],
        cs[c, X_VB],
        cs[c, X_FLIGHT],
        cs[c, X_FBAR],
        cs[c, X_LASTX],
        cs[c, X_PRE],
        cs[c, X_PCLOSE],
        cs[c, X_REB],
        cs[c, X_CAP],
        cs[c, X_COMP + C_FUND],
        cs[c, X_COMP + C_SPOT],
        cs[c, X_COMP + C_PERP],
        cs[c, X_COMP + C_UNH],
        cs[c, X_FUNDA],
    )


@njit(cache=True, inline="always")
def _put(cs, c, st):
    """Write back what :func:`_get` read (the rare paths work on ``cs``)."""
    (
        cs[c, X_S],
        cs[c, X_Q],
        cs[c, X_COSTA],
        cs[c, X_COSTB],
        cs[c, X_BALA],
        cs[c, X_BALB],
        cs[c, X_VA],
        cs[c, X_VB],
        cs[c, X_FLIGHT],
        cs[c, X_FBAR],
        cs[c, X_LASTX],
        cs[c, X_PRE],
        cs[c, X_PCLOSE],
        cs[c, X_REB],
        cs[c, X_CAP],
        cs[c, X_COMP + C_FUND],
        cs[c, X_COMP + C_SPOT],
        cs[c, X_COMP + C_PERP],
        cs[c, X_COMP + C_UNH],
        cs[c, X_FUNDA],
    ) = st


@njit(cache=True)
def _size_now(j, c, na, nb, mka, mkb, prm, run, cs, rec, nrec):
    """A switch with nothing in flight: size to the target on the new venues at once (out of
    the bar loop: its code stays small)."""
    return _orders(j, cs[c, X_LASTX], True, c, na, nb, mka, mkb, prm, run, cs, rec, nrec)


@njit(cache=True)
def _switching(venues):
    """Whether the legs may switch venues: ``venues`` given (a run without is compiled apart,
    ``None``: the checks below fold away)."""
    if venues is None:
        return False
    return True


@njit(cache=True)
def _target_venues(venues, i, c):
    """The venues target row ``i`` names for column ``c``'s legs (NaN: stay; NaN without venues)."""
    if venues is None:
        return np.nan, np.nan
    return venues.a[np.uint64(i), np.uint64(c)], venues.b[np.uint64(i), np.uint64(c)]


@njit(cache=True)
def _arrive(j, c, cs, rec, nrec):
    """Step 0: what is in flight (account currency) reaches its venues' wallets (``X_FLA`` of it
    leg A's, the rest leg B's), at each venue's rate now. Returns the event count."""
    to_a = cs[c, X_FLA]
    to_b = cs[c, X_FLIGHT] - to_a
    if to_a != 0.0:
        cs[c, X_BALA] += to_a / cs[c, X_RA]
        nrec = rules.push_nb(rec, nrec, j, c, K_TRANSFER, _leg_code(cs, c, False), np.nan, np.nan, np.nan, to_a, 0.0)
    if to_b != 0.0:
        cs[c, X_BALB] += to_b / cs[c, X_RB]
        nrec = rules.push_nb(rec, nrec, j, c, K_TRANSFER, _leg_code(cs, c, True), np.nan, np.nan, np.nan, to_b, 0.0)
    cs[c, X_FLIGHT] = 0.0
    cs[c, X_FLA] = 0.0
    cs[c, X_FBAR] = -1.0
    return nrec


@njit(cache=True)
def spread_range_nb(c0, c1, mka, mkb, book, prm, tiers_a, tiers_b, run, rates, venues, cs, out, rec):
    """Simulate spread columns ``c0 .. c1 - 1`` over all bars (rules: :mod:`backtest.spread`).

    ``mka``/``mkb``: the legs' :class:`~backtest.kernels.layout.MarketArrays` (``po_ref`` the
    fill reference, ``ref_valid``, ``perp_volume``, ``vol0_perp``, ``mark_*``, ``valid``,
    ``funding_value``, ``funding_rate``); ``book``: :class:`~backtest.kernels.layout.Book`
    (targets with ``t_off`` rows of the previous run, ``col_sym``); ``prm``:
    :class:`~backtest.kernels.layout.SpreadParams`; ``tiers_a``/``tiers_b``: each venue's
    :class:`~backtest.kernels.layout.Tiers`; ``run``: :class:`~backtest.kernels.layout.SpreadSettings`;
    ``rates``: :class:`~backtest.kernels.layout.SpreadRates` (read when ``run.fx``); ``venues``:
    :class:`~backtest.kernels.layout.SpreadVenues` or None (legs that switch venues: each leg's
    markets, tiers and fees then stack its venues, see ``SpreadSettings.n_coins``);
    ``cs`` (C, NSX): the columns' ``X_*`` state, updated in place (bars held in it count from the
    end of the run afterwards); ``out``: :class:`~backtest.kernels.layout.SpreadOutputs`.

    Loops: chunks of ``TIME_CHUNK`` bars, then columns, then the chunk's bars, a column's hot
    state in local variables (:func:`_get`; the rare bars with a transfer arriving, orders or a
    possible liquidation write it back for the functions of those steps and read it again).
    Events go to ``rec`` (R, 9) in (chunk, column, bar) order: a stable sort by bar gives the
    (bar, column) order. Returns their number (rows beyond R are not written: the caller reruns
    with a larger buffer).
    """
    zero = np.int64(0)  # (an int64, not the literal 0: one compiled version for every caller)
    kargs = (mka, mkb, book, prm, tiers_a, tiers_b, run, rates, venues, cs, out, rec)
    return _bars_nb(zero, mka.po_ref.shape[0], zero, c0, c1, *kargs, np.zeros((6, 1, 1)), zero)


@njit(cache=True)
def _note(acc, k, jj, c, pos, m, bal, cost, mmr_max, cum_min, ok):
    """A column's part of a cross account at bar ``j_lo + jj`` (:func:`_bars_nb` phase 3, leg A's
    venue ``k`` 0, B's 2): its wallet plus its leg's unrealized PnL at the adverse extreme ``m``,
    the cheap bound of its maintenance there, and 1 where the leg is open on a valid bar (a
    function of its own: its stores stay out of the bar loop's code)."""
    acc[k, jj, c] = bal + (pos * m - cost if pos != 0.0 else 0.0)
    acc[k + 1, jj, c] = abs(pos) * m * mmr_max - cum_min if pos != 0.0 else 0.0
    acc[k + 2, jj, c] = 1.0 if pos != 0.0 and ok else 0.0


@njit(cache=True)
def _note_close(acc, k, jj, c, pos, mb, notional, tiers, n):
    """A column's part of a cross account at the close of bar ``j_lo + jj`` (:func:`_bars_nb`
    phase 3 with the margin ratio kept; ``k`` 6: leg A's venue, 9: B's): its margin balance
    there, its leg's maintenance margin, and 1 where the leg is open."""
    acc[k, jj, c] = mb
    acc[k + 1, jj, c] = maint_margin_nb(tiers.hi, tiers.mmr, tiers.cum, tiers.n, n, notional) if pos != 0.0 else 0.0
    acc[k + 2, jj, c] = 1.0 if pos != 0.0 else 0.0


@njit(cache=True, inline="always")
def _account_sums(acc, k, jj, a, b, grp_cols):
    """The sums over columns ``grp_cols[a:b]`` of notes ``acc[k .. k + 2, jj]`` (a cross
    account's balance, maintenance or its bound, legs open or priced)."""
    x = y = z = 0.0
    for i in range(a, b):
        c = grp_cols[i]
        x += acc[k, jj, c]
        y += acc[k + 1, jj, c]
        z += acc[k + 2, jj, c]
    return x, y, z


@njit(cache=True)
def _ratios_from_notes(acc, j0, n, grp_bounds, grp_cols, run, out):
    """Each cross account's margin ratio at the closes of bars ``j0 .. j0 + n - 1`` from its
    columns' notes (:func:`_note_close`) into ``out.mr_a`` / ``out.mr_b`` of its columns with a
    leg open there."""
    for jj in range(n):
        for g in range(len(grp_bounds) - 1):
            for k in (6, 9):
                if (k == 6 and run.cross_a) or (k == 9 and run.cross_b):
                    mb, mm, n_open = _account_sums(acc, k, jj, grp_bounds[g], grp_bounds[g + 1], grp_cols)
                    if n_open == 0.0:
                        continue
                    ratio = rules.margin_ratio_nb(mb, mm)
                    mr = out.mr_a if k == 6 else out.mr_b
                    for i in range(grp_bounds[g], grp_bounds[g + 1]):
                        c = grp_cols[i]
                        if acc[k + 2, jj, c] != 0.0:
                            mr[j0 + jj, c] = ratio


@njit(cache=True)
def _bars_nb(
    j_lo, j_hi, phase, c0, c1, mka, mkb, book, prm, tiers_a, tiers_b, run, rates, venues, cs, out, rec, acc, nrec0
):
    """:func:`spread_range_nb` over bars ``j_lo .. j_hi - 1``: all of each bar (``phase`` 0), or its
    first half (1: a transfer arriving, the orders, the close's rates) or its second half (2: from
    the liquidation on; a cross run checks its venues' accounts in between, :func:`spread_cross_nb`),
    or all of it noting each column's part of its cross accounts at the bar's adverse extremes (3:
    ``acc[0|3, j - j_lo, c]`` its wallet plus unrealized PnL on leg A's | B's venue,
    ``acc[1|4, ...]`` the cheap bound of its maintenance there, ``acc[2|5, ...]`` 1 where its leg
    there is open on a valid bar, and with the margin ratio kept its part at the close,
    :func:`_note_close`; :func:`spread_cross_nb` checks them after the chunk).
    The end of the run (bars held in the state counted from its end) follows the last bar's
    second half."""
    T = mka.po_ref.shape[0]
    # the arguments' arrays borrowed (backtest.kernels.views): no reference counting at each
    # call of the rare steps' functions, which take these tuples
    mka, mkb, book, prm = borrowed(mka), borrowed(mkb), borrowed(book), borrowed(prm)
    tiers_a, tiers_b, rates, venues = borrowed(tiers_a), borrowed(tiers_b), borrowed(rates), borrowed(venues)
    cs, out, rec, acc = borrowed(cs), borrowed(out), borrowed(rec), borrowed(acc)
    flags = run.flags
    w_eq = (flags & F_EQUITY) != 0
    w_comp = (flags & F_COMPONENTS) != 0
    w_pos = (flags & F_POSITIONS) != 0
    w_margin = (flags & F_MARGIN) != 0
    w_cf = (flags & F_CASHFLOW_EVENTS) != 0
    mmr_max_a, cum_min_a = tier_bounds_nb(tiers_a.mmr, tiers_a.cum, tiers_a.n)
    mmr_max_b, cum_min_b = tier_bounds_nb(tiers_b.mmr, tiers_b.cum, tiers_b.n)
    targets, t_off, col_sym, lag = book.targets, book.t_off, book.col_sym, run.lag
    valid_a, valid_b, ref_a, ref_b = mka.valid, mkb.valid, mka.ref_valid, mkb.ref_valid
    lo_a, hi_a, lo_b, hi_b = mka.mark_low, mka.mark_high, mkb.mark_low, mkb.mark_high
    fv_a, fv_b, mc_a, mc_b = mka.funding_value, mkb.funding_value, mka.mark_close, mkb.mark_close
    band_t = prm.band.shape[0] > 1
    lev_t = prm.leverage.shape[0] > 1 or prm.leverage_a.shape[0] > 1  # (per-bar leverages: read each bar)
    a_spot, fx, spot_level = run.a_spot, run.fx, run.spot_level
    time_a = mka.time_ms
    ncoin, switching = run.n_coins, _switching(venues)
    cross_a, cross_b = run.cross_a, run.cross_b
    nrec = nrec0  # (events go on from row nrec0 of rec)
    for j0 in range(j_lo, j_hi, TIME_CHUNK):
        j1 = min(j_hi, j0 + TIME_CHUNK)
        for c in range(c0, c1):
            n = col_sym[c]
            cu = np.uint64(c)
            # the legs' venues: symbols of their stacked markets and tiers (n without switching)
            ven_a, ven_b = (cs[c, X_VENA], cs[c, X_VENB]) if switching else (0.0, 0.0)
            na, nb = np.int64(ven_a) * ncoin + n, np.int64(ven_b) * ncoin + n
            nua, nub = np.uint64(na), np.uint64(nb)
            mmr_a, cmin_a, mmr_b, cmin_b = mmr_max_a[na], cum_min_a[na], mmr_max_b[nb], cum_min_b[nb]
            idle = cs[c, X_IDLE] if switching else 0.0
            band = flex_nb(prm.band, 0, c)
            lev, lev_a = flex_nb(prm.leverage, 0, c), flex_nb(prm.leverage_a, 0, c)
            shared = a_spot or lev_a != lev  # each venue against its share (else halves)
            share_a = _share_a(a_spot, lev_a, lev)
            # fmt: off
            (s, q, costa, costb, bala, balb, va, vb, flight, fbar,
             lastx, pre, pclose, reb, cap, c_fund, c_spot, c_perp, c_unh, funda) = _get(cs, c)
            # fmt: on
            lva = sla = lvb = slb = 0.0  # (a venue in cross margin checks accounts: no pre-check levels)
            if not cross_a:
                lva, sla = liq_level_and_slope_nb(s, bala, costa, mmr_a, cmin_a)
            if not cross_b:
                lvb, slb = liq_level_and_slope_nb(q, balb, costb, mmr_b, cmin_b)
            for j in range(j0, j1):
                ju = np.uint64(j)
                i = j - lag + t_off
                rj = np.uint64(j if w_eq else 0)  # (unsigned indices: no negative-index wraparound)
                b_prev = 0.0  # coins borrowed before the bar (a spot leg A)
                if phase != 2:  # (phase 2: the second half of a bar, see spread_cross_nb)
                    if fx:  # the venues' balances revalued to the rates at the open (rates: in cs only)
                        ra_n, rb_n = rates.a_open[ju, np.uint64(ven_a)], rates.b_open[ju, np.uint64(ven_b)]
                        d = _fx_move(s, q, va, vb, costa, costb, bala, balb, cs[c, X_RA], cs[c, X_RB], ra_n, rb_n)
                        c_unh += d
                        cs[c, X_FX] += d
                        cs[c, X_RA], cs[c, X_RB] = ra_n, rb_n
                    b_prev = -s if s < 0.0 else 0.0
                    # 0-1. a transfer arriving, orders (rare: on the state in cs)
                    x = targets[np.uint64(i), cu] if i >= 0 else np.nan
                    pend_re = pre >= 0.0 and j >= pre
                    ta = tb = np.nan
                    switch = False
                    if switching and x == x and x != 0.0:  # the target's venues (NaN: stay)
                        ta, tb = _target_venues(venues, i, c)
                        switch = (ta == ta and ta != ven_a) or (tb == tb and tb != ven_b)
                    size = (x == x and (x != lastx or switch)) or pend_re
                    arriving = fbar >= 0.0 and j >= fbar
                    if switch and fbar > j:  # a switch of venue waits for what is in flight
                        size = False
                    ordering = (size or pclose != 0.0 or reb != 0.0) and ref_a[ju, nua] and ref_b[ju, nub]
                    if arriving or ordering:
                        # fmt: off
                        _put(cs, c, (s, q, costa, costb, bala, balb, va, vb, flight, fbar,
                                   lastx, pre, pclose, reb, cap, c_fund, c_spot, c_perp, c_unh, funda))
                        # fmt: on
                        if arriving:
                            nrec = _arrive(j, c, cs, rec, nrec)
                        if ordering:
                            if size and x != x:
                                x = cs[c, X_LASTX]
                            if switch and size:  # (out of the bar loop's code: rare)
                                nrec = _switch(j, x, ta, tb, c, na, nb, mka, mkb, prm, run, rates, cs, rec, nrec)
                            else:
                                nrec = _orders(j, x, size, c, na, nb, mka, mkb, prm, run, cs, rec, nrec)
                            if switch and size:  # on the new venues; sized now when nothing is in flight
                                ven_a, ven_b = cs[c, X_VENA], cs[c, X_VENB]
                                na, nb = np.int64(ven_a) * ncoin + n, np.int64(ven_b) * ncoin + n
                                nua, nub = np.uint64(na), np.uint64(nb)
                                mmr_a, cmin_a, mmr_b, cmin_b = (
                                    mmr_max_a[na],
                                    cum_min_a[na],
                                    mmr_max_b[nb],
                                    cum_min_b[nb],
                                )
                                idle = cs[c, X_IDLE]
                                if cs[c, X_PRE] == j and ref_a[ju, nua] and ref_b[ju, nub]:
                                    nrec = _size_now(j, c, na, nb, mka, mkb, prm, run, cs, rec, nrec)
                        # fmt: off
                        (s, q, costa, costb, bala, balb, va, vb, flight, fbar,
                         lastx, pre, pclose, reb, cap, c_fund, c_spot, c_perp, c_unh, funda) = _get(cs, c)
                        # fmt: on
                        lva, sla = liq_level_and_slope_nb(s, bala, costa, mmr_a, cmin_a)
                        lvb, slb = liq_level_and_slope_nb(q, balb, costb, mmr_b, cmin_b)
                    if fx:  # and to the rates at the close (liquidation, funding and the close at those)
                        ra_n, rb_n = rates.a_close[ju, np.uint64(ven_a)], rates.b_close[ju, np.uint64(ven_b)]
                        d = _fx_move(s, q, va, vb, costa, costb, bala, balb, cs[c, X_RA], cs[c, X_RB], ra_n, rb_n)
                        c_unh += d
                        cs[c, X_FX] += d
                        cs[c, X_RA], cs[c, X_RB] = ra_n, rb_n
                if phase == 1:  # a cross portfolio's bar: its venues' accounts are checked next
                    cs[c, X_BPREV] = b_prev
                    continue
                if phase == 2:
                    b_prev = cs[c, X_BPREV]
                # 2. liquidation, leg A then leg B (the full check only past the pre-check level)
                ok_a, ok_b = valid_a[ju, nua], valid_b[ju, nub]
                if phase == 3:  # (after the orders: the column's part of its cross accounts)
                    jj = j - j_lo
                    if cross_a:
                        m = (lo_a[ju, nua] if s > 0.0 else hi_a[ju, nua]) if ok_a else va
                        _note(acc, 0, jj, c, s, m, bala, costa, mmr_a, cmin_a, ok_a)
                    if cross_b:
                        m = (lo_b[ju, nub] if q > 0.0 else hi_b[ju, nub]) if ok_b else vb
                        _note(acc, 3, jj, c, q, m, balb, costb, mmr_b, cmin_b, ok_b)
                b_open = -s if s < 0.0 else 0.0  # (after the open's fills)
                # a borrowed spot leg A: its margin level at the spot high at or below the call level
                call_a = s < 0.0 and a_spot and ok_a and hi_a[ju, nua] * (-s) * spot_level >= bala
                liq_a = (
                    not a_spot
                    and not cross_a  # (a cross account is checked as a whole: spread_cross_nb)
                    and s != 0.0
                    and ok_a
                    and rules.liq_possible_nb(s, lo_a[ju, nua] if s > 0.0 else hi_a[ju, nua], lva)
                )
                liq_b = (
                    not cross_b
                    and q != 0.0
                    and ok_b
                    and rules.liq_possible_nb(q, lo_b[ju, nub] if q > 0.0 else hi_b[ju, nub], lvb)
                )
                if liq_a or liq_b or call_a:
                    # fmt: off
                    _put(cs, c, (s, q, costa, costb, bala, balb, va, vb, flight, fbar,
                               lastx, pre, pclose, reb, cap, c_fund, c_spot, c_perp, c_unh, funda))
                    # fmt: on
                    clear = flex_nb(prm.clearance, j, c)
                    if call_a:
                        nrec = _margin_call(j, c, na, mka, run, cs, rec, nrec)
                    if liq_a:
                        nrec = _liquidate(j, c, na, False, mka, tiers_a, mmr_a, cmin_a, clear, run, cs, rec, nrec)
                    if liq_b and cs[c, X_Q] != 0.0:
                        nrec = _liquidate(j, c, nb, True, mkb, tiers_b, mmr_b, cmin_b, clear, run, cs, rec, nrec)
                    # fmt: off
                    (s, q, costa, costb, bala, balb, va, vb, flight, fbar,
                     lastx, pre, pclose, reb, cap, c_fund, c_spot, c_perp, c_unh, funda) = _get(cs, c)
                    # fmt: on
                    lva, sla = liq_level_and_slope_nb(s, bala, costa, mmr_a, cmin_a)
                    lvb, slb = liq_level_and_slope_nb(q, balb, costb, mmr_b, cmin_b)
                # 3. funding of each leg at its venue's settlements
                fva, fvb = fv_a[ju, nua], fv_b[ju, nub]
                c0_fund = c_fund
                bala, c_fund, amt = rules.funding_nb(s, fva, bala, c_fund)
                if amt != 0.0:
                    lva += amt * sla  # (the pre-check level follows the wallet: liq_level_slope_nb)
                    if fx:  # in the account currency
                        amt *= cs[c, X_RA]
                        c_fund = c0_fund + amt
                    funda += amt
                    if w_cf:
                        code = LEG_SPOT + 2 * np.int64(ven_a)
                        nrec = rules.funding_event_nb(rec, nrec, j, c, code, s, fva, mka.funding_rate[ju, nua], amt)
                c0_fund = c_fund
                balb, c_fund, amt = rules.funding_nb(q, fvb, balb, c_fund)
                if amt != 0.0:
                    lvb += amt * slb
                    if fx:
                        amt *= cs[c, X_RB]
                        c_fund = c0_fund + amt
                    if w_cf:
                        code = LEG_PERP + 2 * np.int64(ven_b)
                        nrec = rules.funding_event_nb(rec, nrec, j, c, code, q, fvb, mkb.funding_rate[ju, nub], amt)
                # 4. close
                pxa = mc_a[ju, nua] if ok_a else va
                pxb = mc_b[ju, nub] if ok_b else vb
                if fx:
                    c_spot, c_perp, c_unh, va, vb = _revalue(
                        s, q, va, vb, pxa, pxb, c_spot, c_perp, c_unh, cs[c, X_RA], cs[c, X_RB], True
                    )
                else:
                    c_spot, c_perp, c_unh, va, vb = rules.revalue_nb(s, q, va, vb, pxa, pxb, c_spot, c_perp, c_unh)
                # 4b. borrow interest of a borrowed spot leg A, in whole hours (rules.borrow_nb)
                if a_spot and (b_prev > 0.0 or b_open > 0.0 or s < 0.0):
                    h_open, h_in = rules.borrow_hours_nb(time_a[ju], run.bar_ms)
                    br = flex_nb(prm.borrow_h, j, c)
                    c_b0 = cs[c, X_COMP + C_BORROW]
                    bala, c_b, bamt = rules.borrow_nb(
                        b_prev, b_open, -s if s < 0.0 else 0.0, va, br, h_open, h_in, bala, c_b0
                    )
                    if bamt != 0.0:
                        if fx:  # (account currency)
                            bamt *= cs[c, X_RA]
                            c_b = c_b0 - bamt
                        cs[c, X_COMP + C_BORROW] = c_b
                        if w_cf:
                            nrec = rules.push_nb(rec, nrec, j, c, K_BORROW, LEG_SPOT, s, va, br, -bamt, 0.0)
                # 5. outputs
                upa = s * va - costa if s != 0.0 else 0.0
                upb = q * vb - costb if q != 0.0 else 0.0
                if fx:
                    eq = (bala + upa) * cs[c, X_RA] + (balb + upb) * cs[c, X_RB] + flight
                else:
                    eq = bala + balb + flight + upa + upb
                out.equity[rj, cu] = eq + idle if switching else eq
                if flight != 0.0 or not w_eq:  # (zeros where nothing is in flight: the caller's)
                    out.in_flight[rj, cu] = flight
                if w_comp:
                    for m in range(N_COMP):
                        out.comps[m, j, c] = cs[c, X_COMP + m]
                    out.comps[C_FUND, j, c] = c_fund
                    out.comps[C_SPOT, j, c] = c_spot
                    out.comps[C_PERP, j, c] = c_perp
                    out.comps[C_UNH, j, c] = c_unh
                if w_pos:
                    rules.store_pair_nb(out.pos_a, out.pos_b, j, c, s, q)
                    if switching:
                        rules.store_pair_nb(out.ven_a, out.ven_b, j, c, ven_a, ven_b)
                if w_margin:
                    rules.store_pair_nb(
                        out.mr_a,
                        out.mr_b,
                        j,
                        c,
                        (
                            _borrow_ratio(s, va, bala, spot_level)
                            if a_spot
                            else _leg_ratio(s, va, bala, costa, tiers_a, na)
                        ),
                        _leg_ratio(q, vb, balb, costb, tiers_b, nb),
                    )
                    if phase == 3:  # (a cross account's ratio: from its columns' notes, after the chunk)
                        if cross_a:
                            _note_close(acc, 6, j - j_lo, c, s, bala + upa, abs(s) * va, tiers_a, na)
                        if cross_b:
                            _note_close(acc, 9, j - j_lo, c, q, balb + upb, abs(q) * vb, tiers_b, nb)
                # 6. collateral check (decided at the close, done at the next open)
                # (an infinite band never rebalances: skipped unless the band varies per bar)
                if (
                    (band_t or band < np.inf)
                    and fbar < 0.0
                    and ((s != 0.0 and q != 0.0) or cap != 0.0)
                    and ok_a
                    and ok_b
                ):
                    mba = bala + upa
                    mbb = balb + upb
                    if fx:  # (account currency)
                        mba *= cs[c, X_RA]
                        mbb *= cs[c, X_RB]
                    if band_t:
                        band = flex_nb(prm.band, j, c)
                    if lev_t:
                        lev, lev_a = flex_nb(prm.leverage, j, c), flex_nb(prm.leverage_a, j, c)
                        shared = a_spot or lev_a != lev
                        share_a = _share_a(a_spot, lev_a, lev)
                    if shared:  # each venue against its share (see _share_a)
                        ta = share_a * (mba + mbb)
                        low = mba < (1.0 - band) * ta or mbb < (1.0 - band) * (mba + mbb - ta)
                        reb = 1.0 if band < np.inf and low else 0.0
                    else:
                        reb = 1.0 if band < np.inf and min(mba, mbb) < (1.0 - band) * (mba + mbb) / 2.0 else 0.0
            # fmt: off
            _put(cs, c, (s, q, costa, costb, bala, balb, va, vb, flight, fbar,
                       lastx, pre, pclose, reb, cap, c_fund, c_spot, c_perp, c_unh, funda))
            # fmt: on
    if phase == 1 or j_hi < T:
        return nrec
    for c in range(c0, c1):
        if not w_comp:
            for m in range(N_COMP):
                out.comps[m, 0, c] = cs[c, X_COMP + m]
        if not w_pos:
            rules.store_pair_nb(out.pos_a, out.pos_b, 0, c, cs[c, X_S], cs[c, X_Q])
            if switching:
                rules.store_pair_nb(out.ven_a, out.ven_b, 0, c, cs[c, X_VENA], cs[c, X_VENB])
        cs[c, X_PRE] = rules.carry_bar_nb(cs[c, X_PRE], T)
        cs[c, X_FBAR] = rules.carry_bar_nb(cs[c, X_FBAR], T)
    return nrec


@njit(cache=True, parallel=True)
def spread_parallel_nb(bounds, rec_bounds, mka, mkb, book, prm, tiers_a, tiers_b, run, rates, venues, cs, out, rec):
    """:func:`spread_range_nb` on threads: chunk ``h`` runs columns ``bounds[h] .. bounds[h + 1]``
    into ``rec[rec_bounds[h]:rec_bounds[h + 1]]``; returns each chunk's event count."""
    nch = len(bounds) - 1
    counts = np.zeros(nch, np.int64)
    for h in prange(nch):
        counts[h] = spread_range_nb(
            bounds[h],
            bounds[h + 1],
            mka,
            mkb,
            book,
            prm,
            tiers_a,
            tiers_b,
            run,
            rates,
            venues,
            cs,
            out,
            rec[rec_bounds[h] : rec_bounds[h + 1]],
        )
    return counts


# ------------------------------------------------------------------ cross margin per venue


@njit(cache=True, inline="always")
def _path_price(lam, j, n, pos, mk, v):
    """The mark of a position of ``pos`` coins at the point ``lam`` (0: the open, 1: the adverse
    extreme) of bar ``j``'s path; an invalid bar keeps the valuation price ``v``."""
    if not mk.valid[j, n]:
        return v
    mo = mk.mark_open[j, n]
    adv = mk.mark_low[j, n] if pos > 0.0 else mk.mark_high[j, n]
    return mo + lam * (adv - mo)


@njit(cache=True, inline="always")
def _leg_slots(to_b):
    """The state slots of leg A's venue (``to_b`` False) or B's: position, cost, wallet, valuation
    price, price component, rate."""
    if to_b:
        return X_Q, X_COSTB, X_BALB, X_VB, X_COMP + C_PERP, X_RB
    return X_S, X_COSTA, X_BALA, X_VA, X_COMP + C_SPOT, X_RA


@njit(cache=True)
def _account_nb(lam, j, a, b, grp_cols, col_sym, to_b, mk, tiers, cs, mmr_max, cum_min, bound=False):
    """(margin balance, maintenance margin, legs open, legs priced) of a portfolio's cross account
    on leg A's venue (``to_b`` False) or B's, in the venue's quote: the wallets of the columns
    ``grp_cols[a:b]`` plus their perps' unrealized PnL, each perp at the point ``lam`` of its path
    from the mark open to its adverse extreme of bar ``j`` (:func:`_path_price`); ``bound``: the maintenance margin's cheap upper bound instead
    (``notional * mmr_max - cum_min`` per symbol)."""
    pos_k, cost_k, bal_k, v_k, _comp_k, _r_k = _leg_slots(to_b)
    mb = 0.0
    mm = 0.0
    n_open = 0
    n_priced = 0
    for k in range(a, b):
        c = grp_cols[k]
        n = col_sym[c]
        mb += cs[c, bal_k]
        pos = cs[c, pos_k]
        if pos == 0.0:
            continue
        n_open += 1
        if mk.valid[j, n]:
            n_priced += 1
        m = _path_price(lam, j, n, pos, mk, cs[c, v_k])
        mb += pos * m - cs[c, cost_k]
        if bound:  # (the cheap bound of the brackets' maintenance: tier_bounds_nb)
            mm += abs(pos) * m * mmr_max[n] - cum_min[n]
        else:
            mm += maint_margin_nb(tiers.hi, tiers.mmr, tiers.cum, tiers.n, n, abs(pos) * m)
    return mb, mm, n_open, n_priced


@njit(cache=True)
def _cross_liquidation(j, a, b, grp_cols, col_sym, to_b, mk, tiers, mmr_max, cum_min, prm, run, cs, rec, nrec):
    """Step 2 for a portfolio's cross account on leg A's venue (``to_b`` False) or B's: breached
    when its margin balance meets its maintenance margin with every perp at its bar's adverse mark
    extreme. Its perps are then closed together at the first point of their paths from the mark
    open where it is met (bisection, 100 steps; the open on a gap), in column order, the account's
    wallet taking each one's realized PnL and clearance fee (floored at what the account holds);
    an account left below zero is reset by the insurance fund (booked on the last leg closed); a
    column's wallet left below zero is then brought to zero by the others in proportion to theirs
    (the account's loss shared: ``liquidation`` component, a ``transfer`` event of each share).
    Then each liquidated column's after-liquidation policy. Returns the event count."""
    mb, bound, _n, n_priced = _account_nb(
        1.0, j, a, b, grp_cols, col_sym, to_b, mk, tiers, cs, mmr_max, cum_min, True
    )  # (most bars: far from the bound)
    if n_priced == 0 or mb > bound:
        return nrec
    mb, mm, _n, _n = _account_nb(1.0, j, a, b, grp_cols, col_sym, to_b, mk, tiers, cs, mmr_max, cum_min)
    if mb > mm:
        return nrec
    lo_l, hi_l = 0.0, 1.0
    for it in range(PATH_STEPS):
        lam = path_point_nb(it, lo_l, hi_l)
        mb, mm, _n, _n = _account_nb(lam, j, a, b, grp_cols, col_sym, to_b, mk, tiers, cs, mmr_max, cum_min)
        lo_l, hi_l, done = path_step_nb(it, lam, mb <= mm, lo_l, hi_l)
        if done:
            break
    pos_k, _cost_k, bal_k, v_k, _comp_k, r_k = _leg_slots(to_b)
    acct = 0.0
    for k in range(a, b):
        acct += cs[grp_cols[k], bal_k]
    last, k_last = -1, -1
    for k in range(a, b):
        c = grp_cols[k]
        pos = cs[c, pos_k]
        if pos == 0.0:
            continue
        lp = _path_price(hi_l, j, col_sym[c], pos, mk, cs[c, v_k])
        after, nrec = _close_leg(j, c, to_b, lp, flex_nb(prm.clearance, j, c), acct, False, cs, rec, nrec)
        cs[c, bal_k] += after - acct  # (the column's realized PnL and fee, out of the account)
        acct = after
        last, k_last = c, nrec - 1
        _after_liquidation(j, c, run, cs)
    if acct < 0.0:  # the insurance fund covers the account's deficit
        r = cs[last, r_k]
        cs[last, bal_k] -= acct
        cs[last, X_COMP + C_LIQ] -= acct * r
        if k_last < rec.shape[0]:
            ku = np.uint64(k_last)
            rec[ku, np.uint64(R_CASH)] -= acct * r
            rec[ku, np.uint64(R_RATE)] = -acct * r
    return _share_account(j, a, b, grp_cols, to_b, cs, rec, nrec)


@njit(cache=True)
def _share_account(j, a, b, grp_cols, to_b, cs, rec, nrec):
    """After a cross account's liquidation (its balance >= 0): the columns' wallets on the venue
    left below zero are brought to zero by the others', each giving in proportion to its balance
    (in the venue's quote; booked in ``liquidation`` at the venue's rate, a ``transfer`` event of
    each share). Returns the event count."""
    _pos_k, _cost_k, bal_k, _v_k, _comp_k, r_k = _leg_slots(to_b)
    owed = 0.0
    held = 0.0
    for k in range(a, b):
        w = cs[grp_cols[k], bal_k]
        if w < 0.0:
            owed -= w
        else:
            held += w
    if owed == 0.0 or held == 0.0:
        return nrec
    f = min(owed / held, 1.0)
    for k in range(a, b):
        c = grp_cols[k]
        w = cs[c, bal_k]
        d = -w if w < 0.0 else -w * f
        if d == 0.0:
            continue
        cs[c, bal_k] = w + d
        r = cs[c, r_k]
        cs[c, X_COMP + C_LIQ] += d * r
        nrec = rules.push_nb(rec, nrec, j, c, K_TRANSFER, _leg_code(cs, c, to_b), np.nan, np.nan, np.nan, d * r, 0.0)
    return nrec


@njit(cache=True)
def _split_bar_nb(
    j, grp_bounds, grp_cols, mka, mkb, book, prm, tiers_a, tiers_b, run, rates, venues, cs, out, rec, nrec, bounds
):
    """Bar ``j`` of a cross run in two halves (see :func:`spread_cross_nb`); returns the event count."""
    C = cs.shape[0]
    col_sym = book.col_sym
    mmr_max_a, cum_min_a, mmr_max_b, cum_min_b = bounds
    acc = np.zeros((6, 1, 1))
    kargs = (mka, mkb, book, prm, tiers_a, tiers_b, run, rates, venues, cs, out, rec)
    nrec = _bars_nb(j, j + 1, PHASE_OPEN, ZERO, C, *kargs, acc, nrec)
    for g in range(len(grp_bounds) - 1):
        a, b = grp_bounds[g], grp_bounds[g + 1]
        if run.cross_a:
            nrec = _cross_liquidation(
                j, a, b, grp_cols, col_sym, False, mka, tiers_a, mmr_max_a, cum_min_a, prm, run, cs, rec, nrec
            )
        if run.cross_b:
            nrec = _cross_liquidation(
                j, a, b, grp_cols, col_sym, True, mkb, tiers_b, mmr_max_b, cum_min_b, prm, run, cs, rec, nrec
            )
    nrec = _bars_nb(j, j + 1, PHASE_REST, ZERO, C, *kargs, acc, nrec)
    if (run.flags & F_MARGIN) != 0:  # (the accounts' ratios as a chunk's: from the columns' notes)
        notes = np.zeros((12, 1, C))
        for c in range(C):
            n = col_sym[c]
            s, q = cs[c, X_S], cs[c, X_Q]
            if run.cross_a:
                mb = cs[c, X_BALA] + (s * cs[c, X_VA] - cs[c, X_COSTA] if s != 0.0 else 0.0)
                _note_close(notes, 6, 0, c, s, mb, abs(s) * cs[c, X_VA], tiers_a, n)
            if run.cross_b:
                mb = cs[c, X_BALB] + (q * cs[c, X_VB] - cs[c, X_COSTB] if q != 0.0 else 0.0)
                _note_close(notes, 9, 0, c, q, mb, abs(q) * cs[c, X_VB], tiers_b, n)
        _ratios_from_notes(notes, j, 1, grp_bounds, grp_cols, run, out)
    return nrec


@njit(cache=True)
def _first_breach(acc, n, grp_bounds, grp_cols, run):
    """The first of a chunk's ``n`` bars where a portfolio's cross account may be breached (its
    balance at the adverse extremes at or below the cheap bound of its maintenance, some leg
    priced; :func:`_bars_nb`'s phase 3 notes), or ``n`` when none is."""
    for jj in range(n):
        for g in range(len(grp_bounds) - 1):
            for k in (0, 3):
                if (k == 0 and run.cross_a) or (k == 3 and run.cross_b):
                    mb, bound, priced = _account_sums(acc, k, jj, grp_bounds[g], grp_bounds[g + 1], grp_cols)
                    if priced > 0.0 and mb <= bound:
                        return jj
    return n


@njit(cache=True)
def spread_cross_nb(grp_bounds, grp_cols, mka, mkb, book, prm, tiers_a, tiers_b, run, rates, venues, cs, out, rec):
    """:func:`spread_range_nb` for portfolios of several columns in cross margin per venue: the
    columns ``grp_cols[grp_bounds[g]:grp_bounds[g + 1]]`` of portfolio ``g`` share the margin
    account of each venue in cross margin (``run.cross_a``, ``run.cross_b``; their wallets are
    that account's ledger per column).

    The rule is per bar: the first half of every column's bar (a transfer arriving, the orders),
    then each portfolio's cross accounts (leg A's venue's, then leg B's:
    :func:`_cross_liquidation`), then the second half (a venue in isolated margin checks its legs
    there, funding, the close, the outputs, the collateral check), then each cross account's
    margin ratio at the close (:func:`_split_bar_nb`). A bar where no account can be breached
    (its balance at the adverse extremes above the cheap bound of its maintenance) is the same
    run whole, column by column; so the driver runs ``CROSS_CHUNK`` bars at a time that way
    (:func:`_bars_nb` phase 3, each column noting its part of its accounts per bar), and where an
    account may be breached at some bar of the chunk it restores the state, runs the chunk again
    up to that bar, and that bar in two halves. The cross accounts' margin ratios at the closes
    of a chunk's bars come from its columns' notes too (:func:`_ratios_from_notes`). Events come in (bar, column) order within a chunk's columns, (bar, step,
    column) in a bar run in halves (a stable sort by bar and column gives the engine's).
    Returns their number."""
    T = mka.po_ref.shape[0]
    C = cs.shape[0]
    # the arguments' arrays borrowed (backtest.kernels.views; never an array this function
    # allocates: rebinding its variable would free it)
    mka, mkb, book, prm = borrowed(mka), borrowed(mkb), borrowed(book), borrowed(prm)
    tiers_a, tiers_b, rates, venues = borrowed(tiers_a), borrowed(tiers_b), borrowed(rates), borrowed(venues)
    cs, out, rec = borrowed(cs), borrowed(out), borrowed(rec)
    mmr_max_a, cum_min_a = tier_bounds_nb(tiers_a.mmr, tiers_a.cum, tiers_a.n)
    mmr_max_b, cum_min_b = tier_bounds_nb(tiers_b.mmr, tiers_b.cum, tiers_b.n)
    bounds = (mmr_max_a, cum_min_a, mmr_max_b, cum_min_b)
    args = (grp_bounds, grp_cols, mka, mkb, book, prm, tiers_a, tiers_b, run, rates, venues, cs, out, rec)
    acc = np.zeros((12, CROSS_CHUNK, C))
    w_margin = (run.flags & F_MARGIN) != 0
    kargs = (mka, mkb, book, prm, tiers_a, tiers_b, run, rates, venues, cs, out, rec)
    nrec = ZERO  # (int64 from the start: the calls below compile one version of _bars_nb)
    j = ZERO
    while j < T:
        # a chunk of whole bars, each column through it at once, noting its part of its accounts
        j1 = min(T, j + CROSS_CHUNK)
        saved, n0 = cs.copy(), nrec
        nrec = _bars_nb(j, j1, PHASE_NOTE, ZERO, C, *kargs, acc, nrec)
        jb = j + _first_breach(acc, j1 - j, grp_bounds, grp_cols, run)
        if jb == j1:  # no account could be liquidated: the chunk stands
            if w_margin:
                _ratios_from_notes(acc, j, j1 - j, grp_bounds, grp_cols, run, out)
            j = j1
            continue
        # an account may go at bar jb: the chunk again up to it, then that bar in two halves
        cs[:] = saved
        nrec = n0
        if out.in_flight.shape[0] > 1:  # (written only where something is in flight: the chunk's undone)
            out.in_flight[j:j1, :] = 0.0
        if jb > j:
            nrec = _bars_nb(j, jb, PHASE_NOTE, ZERO, C, *kargs, acc, nrec)
            if w_margin:
                _ratios_from_notes(acc, j, jb - j, grp_bounds, grp_cols, run, out)
        nrec = _split_bar_nb(jb, *args, nrec, bounds)
        j = jb + 1
    return nrec

"""The per-bar rules of the simulation: one function each, the only copy, used by both kernels.

:func:`backtest.kernels.simulate.simulate_range_nb` (any portfolio) and
:func:`backtest.kernels.fast.fast_range_nb` (one-column isolated portfolios) take every step
of a bar from here (the rules themselves: ``backtest.engine``'s docstring and the README),
in both of their paths (a quiet bar and a bar with orders or a possible liquidation):

* revaluation of both legs, at the open (fills) and at the close: :func:`revalue_nb`;
* funding into the futures wallet: :func:`funding_nb`; borrow on short spot: :func:`borrow_nb`;
  their per-bar events: :func:`cashflow_events_nb`;
* orders: when a column trades (:func:`order_due_nb`), to what (:func:`order_nb`, with
  :func:`capital_share_nb` and :func:`target_size_nb`), the fills of its legs
  (:func:`fill_column_nb`: :func:`spot_fill_nb`, :func:`perp_fill_nb`, priced by
  :func:`fill_price_nb` with :func:`fill_inputs_nb`, perp cost basis by :func:`perp_trade_nb`);
* wallet transfers (margin after fills, top-ups): :func:`margin_need_nb`, :func:`transfer_nb`;
* isolated liquidation: :func:`liq_possible_nb` (the pre-check against
  :func:`backtest.kernels.margin.liq_level_nb`), :func:`isolated_liq_nb` (the check and the
  price); the perp close of any liquidation: :func:`liquidate_perp_nb`, and what follows it:
  :func:`after_liquidation_nb`;
* margin ratio and distance to liquidation: :func:`maintenance_nb`, :func:`margin_ratio_nb`,
  :func:`isolated_margin_nb`;
* equity: :func:`partial_sum_nb`, :func:`equity_nb`, :func:`column_value_nb` (a column's part of
  its portfolio's equity), :func:`open_value_nb` (the sizing snapshot at the open);
* output stores: :func:`store_components_nb`, :func:`store_pair_nb`, :func:`store_final_nb`.

Hot-loop discipline (measured on the fast kernel with ``python -m backtest.app.bench``): a
function called on every bar takes and returns scalars (tuples of scalars cost nothing once
inlined), or writes arrays without branching (:func:`store_components_nb`,
:func:`store_pair_nb`: the kernels test the output flags). An inlined function that takes
arrays (or tuples of arrays) and branches leaves a reference-count pair per call that numba
cannot prune in the big kernel functions: on every bar that doubled to tripled the fast
kernel's time. Such functions (fills, transfers, events, liquidation) run only on the rare
bars that need them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from backtest.kernels.layout import (
    AFTER_CLOSE_REENTER,
    AFTER_CLOSE_SPOT,
    AFTER_REENTER,
    F_COMPONENTS,
    F_POSITIONS,
    K_BORROW,
    K_FILL,
    K_FUNDING,
    K_LIQ,
    K_SKIP,
    K_STOP,
    K_TRANSFER,
    LEG_NONE,
    LEG_PERP,
    LEG_SPOT,
    MIN_TRANSFER,
    MS_H,
    N_COMP,
    R_BAR,
    R_CASH,
    R_COL,
    R_FEE,
    R_KIND,
    R_LEG,
    R_PRICE,
    R_QTY,
    R_RATE,
    S_COMP,
    S_Q,
    S_S,
    STOP_CLOSING,
    STOP_DONE,
    STOP_NONE,
)
from backtest.kernels.margin import flex_nb, isolated_liq_price_nb, maint_margin_nb

# ------------------------------------------------------------------ events


#: The largest slippage a fill takes, as a fraction of its reference price. Beyond it the
#: participation term (``volume_participation_coefficient * |order| / volume`` of an order many
#: times the previous bar's volume) prices no market (a sale at or below zero): the fill is
#: priced at the cap, its event carries the cap in ``rate`` and the run is flagged
#: ``slippage_capped`` (its slippage is understated there).
MAX_SLIPPAGE = 0.5


@njit(cache=True, inline="always")
def push_nb(rec, n, bar, col, kind, leg, qty, price, rate, cash, fee):
    """Write event row ``n`` if the buffer has room; always return ``n + 1`` (the count needed).

    Unsigned indices: numba skips the negative-index wraparound on them."""
    if n < rec.shape[0]:
        r = np.uint64(n)
        rec[r, np.uint64(R_BAR)] = bar
        rec[r, np.uint64(R_COL)] = col
        rec[r, np.uint64(R_KIND)] = kind
        rec[r, np.uint64(R_LEG)] = leg
        rec[r, np.uint64(R_QTY)] = qty
        rec[r, np.uint64(R_PRICE)] = price
        rec[r, np.uint64(R_RATE)] = rate
        rec[r, np.uint64(R_CASH)] = cash
        rec[r, np.uint64(R_FEE)] = fee
    return n + 1


@njit(cache=True, inline="always")
def funding_event_nb(rec, n, j, c, leg, q, fv, r, famt):
    """The funding event of ``q`` perp coins of leg ``leg`` (``LEG_*``) of column ``c`` at bar ``j``:
    ``famt`` quote received at rate ``r`` (price: ``fv / r``, the price the venue paid at)."""
    return push_nb(rec, n, j, c, K_FUNDING, leg, q, fv / r if r != 0.0 else np.nan, r, famt, 0.0)


@njit(cache=True, inline="always")
def cashflow_events_nb(rec, n, j, c, q, fv, funding_rate, nsym, famt, s, sv, brate, bamt):
    """The funding (``famt``, quote; 0: none) and borrow (``bamt``) events of column ``c`` at bar
    ``j``, in that order; the funding rate is read from ``funding_rate[j, nsym]``."""
    if famt != 0.0:
        n = funding_event_nb(rec, n, j, c, LEG_PERP, q, fv, funding_rate[j, nsym], famt)
    if bamt != 0.0:
        n = push_nb(rec, n, j, c, K_BORROW, LEG_SPOT, s, sv, brate, -bamt, 0.0)
    return n


# ------------------------------------------------------------------ valuation and cash flows


@njit(cache=True, inline="always")
def hedged_nb(s, q):
    """Coins of each leg matched by the other: ``min(|s|, |q|)`` when the legs have opposite
    signs (a carry or a reverse carry), else 0."""
    if (s > 0.0 and q < 0.0) or (s < 0.0 and q > 0.0):
        return min(abs(s), abs(q))
    return 0.0


@njit(cache=True, inline="always")
def revalue_nb(s, q, sv, pv, sx, px, c_spot, c_perp, c_unh):
    """Revalue ``s`` spot and ``q`` perp coins from the last valuation prices ``sv``/``pv`` to
    ``sx``/``px``: returns the spot, perp and unhedged price components and the new valuation
    prices. The hedged coins of each leg (:func:`hedged_nb`) book into the spot and perp
    components, the rest of a leg (a leg without a matching opposite leg) into ``c_unh``."""
    if s + q == 0.0:  # flat, or exactly hedged (the usual case): no unhedged coins
        if s != 0.0:
            c_spot += s * (sx - sv)
            c_perp += q * (px - pv)
    else:
        h = hedged_nb(s, q)
        if s != 0.0:
            hs = h if s > 0.0 else -h
            c_spot += hs * (sx - sv)
            if hs != s:
                c_unh += (s - hs) * (sx - sv)
        if q != 0.0:
            hq = h if q > 0.0 else -h
            c_perp += hq * (px - pv)
            if hq != q:
                c_unh += (q - hq) * (px - pv)
    return c_spot, c_perp, c_unh, sx, px


@njit(cache=True, inline="always")
def funding_nb(q, fv, wallet, c_fund):
    """Funding of a bar: ``-q * fv`` (quote) into the futures ``wallet`` and the funding component.

    Returns ``(wallet, c_fund, amount)``; amount 0.0: nothing settled (flat, no settlement, or
    no funding value)."""
    if q != 0.0 and fv != 0.0 and np.isfinite(fv):
        amt = -q * fv
        return wallet + amt, c_fund + amt, amt
    return wallet, c_fund, 0.0


@njit(cache=True, inline="always")
def borrow_hours_nb(t, bar_ms):
    """Whole hours of borrow interest a bar opening at ``t`` (ms) and lasting ``bar_ms`` charges:
    ``(h_open, h_in)``, 1.0 when the bar opens at a full hour (else 0.0) and the number of full
    hours strictly inside the bar."""
    h_open = 1.0 if t % MS_H == 0 else 0.0
    h_in = float((t + bar_ms - 1) // MS_H - t // MS_H)
    return h_open, h_in


@njit(cache=True, inline="always")
def borrow_nb(b_prev, b_open, b_close, sv, rate, h_open, h_in, cash, c_borrow):
    """Borrow interest of a bar, in whole hours as Binance charges it (one hour at borrowing,
    one at each full hour while the loan is outstanding), out of the quote cash:
    ``rate * sv * (h_open * b_open + (1 - h_open) * max(b_open - b_prev, 0) + h_in * b_close)``
    with ``b_prev``/``b_open``/``b_close`` the borrowed coins before the bar, after its fills at
    the open and at its close, hourly ``rate``, spot valuation price ``sv``; ``h_open``/``h_in``
    from :func:`borrow_hours_nb`. Returns ``(cash, c_borrow, amount)``; amount 0.0: none."""
    if b_open > 0.0 or b_close > 0.0:
        coins = h_open * b_open + (1.0 - h_open) * max(b_open - b_prev, 0.0) + h_in * b_close
        amt = rate * sv * coins
        if amt != 0.0:
            return cash - amt, c_borrow - amt, amt
    return cash, c_borrow, 0.0


# ------------------------------------------------------------------ orders and fills


@njit(cache=True, inline="always")
def order_due_nb(x, last_x, pend_re, pend_close, reb, stop, s, q, band):
    """What a column's bar asks of it: 3 close every leg (its portfolio is stopping), 2 size to a
    target (``x`` finite and not the last executed, a re-entry due ``pend_re``, or a rebalance
    due ``reb``), 1 another order (a pending post-liquidation close, or a breached delta
    ``band``: ``|s + q| > band * |s|``; an infinite or NaN band never is), 0 nothing (also
    always once the portfolio has stopped)."""
    if stop != STOP_NONE:
        return 3 if (stop == STOP_CLOSING and (s != 0.0 or q != 0.0)) else 0
    if pend_re or reb or (x == x and x != last_x):
        return 2
    if pend_close or (band < np.inf and s != 0.0 and abs(s + q) > band * abs(s)):
        return 1
    return 0


@njit(cache=True, inline="always")
def target_size_nb(eq, w, x, lev, ref):
    """Spot coins for exposure ``x`` of a capital share ``w`` of equity ``eq`` at leverage ``lev``:
    ``x * max(eq, 0) * w * L / (L + 1)`` quote of spot at the reference price ``ref``."""
    notional = max(eq, 0.0) * w * abs(x) * lev / (lev + 1.0)
    return np.sign(x) * notional / ref


@njit(cache=True, inline="always")
def capital_share_nb(x, weight, wsum, single):
    """A column's share of its portfolio's equity for target ``x``: its ``weight`` over the sum of
    weights ``wsum`` of the portfolio's active columns (a one-column portfolio: 1 when its weight
    is positive); 0 for a zero target."""
    if single:
        return 1.0 if (x != 0.0 and weight > 0.0) else 0.0
    return weight / wsum if (x != 0.0 and wsum > 0.0) else 0.0


@njit(cache=True, inline="always")
def lot_round_nb(x, lot):
    """``x`` coins rounded toward zero to whole ``lot``s (0: no lot; the one home of this rule).

    The lot count is ``floor(|x| / lot * (1 + 1e-9))``: the relative tolerance keeps a quantity
    a float error below a whole number of lots at that number (0.3 is 3 lots of 0.1, although
    ``0.3 / 0.1 == 2.9999999999999996``). For a lot of ``1 / k`` (``0.1``, ``0.001``: every
    decimal lot up to 1) the result is ``lots / k``, the float nearest the decimal (``0.3``, not
    ``3 * 0.1 == 0.30000000000000004``); for other lots ``lots * lot``."""
    if lot > 0.0 and x != 0.0:
        lots = np.floor(abs(x) / lot * (1.0 + 1e-9))
        inv = np.round(1.0 / lot)
        size = lots / inv if (inv >= 1.0 and abs(inv * lot - 1.0) <= 1e-12) else lots * lot
        return size if x > 0.0 else -size
    return x


@njit(cache=True, inline="always")
def too_small_nb(dq, ref, min_qty, min_notional):
    """Whether an order of ``dq`` coins at ``ref`` is below the least quantity or notional an
    exchange accepts (relative tolerance 1e-9: an order of exactly the minimum passes; 0: no
    order, never below; minimums of 0 never bind)."""
    return dq != 0.0 and (abs(dq) < min_qty * (1.0 - 1e-9) or abs(dq) * ref < min_notional * (1.0 - 1e-9))


@njit(cache=True, inline="always")
def skip_event_nb(rec, n, j, c, dq, ref):
    """The event of an order of ``dq`` spot coins at ``ref`` that was not sent (below the minimum)."""
    return push_nb(rec, n, j, c, K_SKIP, LEG_NONE, dq, ref, np.nan, 0.0, 0.0)


@njit(cache=True, inline="always")
def order_nb(
    x, last_x, pend_re, pend_close, reb, stop, s, q, band, eq, weight, wsum, single, lev, ref, lot, min_qty, min_not
):
    """A column's order at the open of a bar, for its target ``x`` (NaN: keep) and the equity
    snapshot ``eq``: ``(new spot, new perp, last_x, pend_close, sized, share, skipped)``, coins,
    the last executed target, the pending close, whether the column was sized to a target, the
    capital share it was sized with (NaN when not sized) and the spot coins of an order that was
    not sent (0.0: none).

    In order: a stopping portfolio closes both legs; a new target, a re-entry due (``pend_re``:
    back to ``x``, or the last target when ``x`` is NaN) or a rebalance due (``reb``: the last
    target) sizes both legs (:func:`target_size_nb`, rounded to whole ``lot``s, perp at
    ``-spot``; an order below ``min_qty`` coins or ``min_not`` quote is skipped unless it closes
    the position); else a pending post-liquidation close closes both legs; else a breached
    delta ``band`` brings the perp back to ``-spot``."""
    if stop != STOP_NONE:
        if stop == STOP_CLOSING:
            return 0.0, 0.0, last_x, False, False, np.nan, 0.0
        return s, q, last_x, pend_close, False, np.nan, 0.0
    if pend_re or (reb and not (x == x and x != last_x)):
        if x != x or reb:
            x = last_x
        last_x = np.nan
    if x == x and x != last_x:
        share = capital_share_nb(x, weight, wsum, single)
        new_s = lot_round_nb(target_size_nb(eq, share, x, lev, ref), lot)
        if new_s != 0.0 and too_small_nb(new_s - s, ref, min_qty, min_not):
            return s, q, x, False, True, share, new_s - s
        return new_s, -new_s, x, False, True, share, 0.0
    if pend_close:
        return 0.0, 0.0, last_x, False, False, np.nan, 0.0
    if band < np.inf and s != 0.0 and abs(s + q) > band * abs(s):
        return s, -s, last_x, False, False, np.nan, 0.0
    return s, q, last_x, False, False, np.nan, 0.0


@njit(cache=True, inline="always")
def target_factor_nb(share, last_x, lev):
    """Target spot notional per unit of portfolio equity of a column holding ``last_x`` with
    capital ``share`` at leverage ``lev``: ``share * |last_x| * L / (L + 1)``."""
    return share * abs(last_x) * lev / (lev + 1.0)


@njit(cache=True, inline="always")
def period_start_nb(t, bar_ms, every_ms):
    """Whether the bar after the one opening at ``t`` (ms) starts a new UTC-aligned period of
    ``every_ms`` (inf: never)."""
    return every_ms < np.inf and np.floor((t + bar_ms) / every_ms) > np.floor(t / every_ms)


@njit(cache=True, inline="always")
def rebalance_due_nb(sched, band, eq, factor, s, sv, min_qty, min_not):
    """Whether a column holding its target rebalances at the next bar: its spot notional
    ``|s| * sv`` is more than ``band`` (a fraction; inf: never) away from the target notional
    ``max(eq, 0) * factor`` (:func:`target_factor_nb`; ``eq``: the portfolio equity at this
    close), or ``sched`` (:func:`period_start_nb`) and the notional is off the target at all;
    never for a trade an exchange would refuse (below ``min_qty`` coins or ``min_not`` quote)."""
    target = max(eq, 0.0) * factor
    drift = abs(abs(s) * sv - target)
    if not (drift > band * target or (sched and drift > 0.0)):
        return False
    return not ((min_qty > 0.0 or min_not > 0.0) and too_small_nb(drift / sv, sv, min_qty, min_not))


@njit(cache=True)
def fill_price_nb(dq, ref, vol, slip_frac, impact):
    """Fill price (quote/coin) of ``dq`` coins against ``ref``: fixed + participation slippage,
    at most :data:`MAX_SLIPPAGE` of ``ref``; and that cap where it bound (NaN: it did not)."""
    s = slip_frac
    if impact > 0.0 and vol > 0.0:
        s += impact * abs(dq) / vol
    capped = np.nan
    if s > MAX_SLIPPAGE:
        s = MAX_SLIPPAGE
        capped = MAX_SLIPPAGE
    return (ref * (1.0 + s) if dq > 0 else ref * (1.0 - s)), capped


@njit(cache=True)
def perp_trade_nb(q, cost, dq, f):
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


@njit(cache=True, inline="always")
def spot_fill_nb(rec, n, j, c, dq, ref, vol, slip, impact, fee_rate, cash, c_fee, c_slip):
    """Buy (``dq > 0``) or sell ``dq`` spot coins at bar ``j``'s reference ``ref`` for quote cash.

    Returns ``(cash, c_fee, c_slip, n)`` after the fee (``|dq| * price * fee_rate``), the
    slippage against ``ref`` and the fill event."""
    f, capped = fill_price_nb(dq, ref, vol, slip, impact)
    fee = abs(dq) * f * fee_rate
    n = push_nb(rec, n, j, c, K_FILL, LEG_SPOT, dq, f, capped, -dq * f - fee, fee)
    return cash - (dq * f + fee), c_fee - fee, c_slip + dq * (ref - f), n


@njit(cache=True, inline="always")
def perp_fill_nb(rec, n, j, c, dq, ref, vol, slip, impact, fee_rate, q, cost, wallet, c_fee, c_slip):
    """Trade ``dq`` perp coins at bar ``j``'s reference ``ref``: the realized PnL minus the fee
    goes to the futures ``wallet``. Returns ``(cost, wallet, c_fee, c_slip, n)``."""
    return perp_leg_fill_nb(
        rec, n, j, c, LEG_PERP, dq, ref, vol, slip, impact, fee_rate, q, cost, wallet, c_fee, c_slip
    )


@njit(cache=True, inline="always")
def perp_leg_fill_nb(rec, n, j, c, leg, dq, ref, vol, slip, impact, fee_rate, q, cost, wallet, c_fee, c_slip):
    """:func:`perp_fill_nb` for the perp of leg ``leg`` (``LEG_*``; a cross-venue hedge's leg A is
    a perp too, see :mod:`backtest.kernels.spread`)."""
    f, capped = fill_price_nb(dq, ref, vol, slip, impact)
    fee = abs(dq) * f * fee_rate
    _nq, ncost, realized = perp_trade_nb(q, cost, dq, f)
    n = push_nb(rec, n, j, c, K_FILL, leg, dq, f, capped, realized - fee, fee)
    return ncost, wallet + (realized - fee), c_fee - fee, c_slip + dq * (ref - f), n


@njit(cache=True, inline="always")
def fill_inputs_nb(mk, prm, j, c, n):
    """What a fill of column ``c`` (symbol ``n``) at bar ``j`` needs besides its prices: the
    previous bar's volumes ``(spot, perp)`` (participation slippage) and the rates
    ``(slippage, impact, spot fee, perp fee)``."""
    vol = (
        mk.spot_volume[j - 1, n] if j > 0 else mk.vol0_spot[n],
        mk.perp_volume[j - 1, n] if j > 0 else mk.vol0_perp[n],
    )
    rates = (
        flex_nb(prm.slip_frac, j, c),
        flex_nb(prm.impact, j, c),
        flex_nb(prm.spot_fee, j, c),
        flex_nb(prm.perp_fee, j, c),
    )
    return vol, rates


@njit(cache=True, inline="always")
def fill_column_nb(rec, n, j, c, new_s, new_q, s, q, cost, wallet, cash, c_fee, c_slip, px, vol, rates):
    """Trade a column to ``new_s`` spot and ``new_q`` perp coins at the reference prices
    ``px = (spot, perp)`` with the previous bar's volumes ``vol = (spot, perp)`` and
    ``rates = (slippage, impact, spot fee, perp fee)``: the spot leg first, then the perp.
    Returns ``(s, q, cost, wallet, cash, c_fee, c_slip, n, traded)``."""
    traded = False
    dq = new_s - s
    if dq != 0.0:
        cash, c_fee, c_slip, n = spot_fill_nb(
            rec, n, j, c, dq, px[0], vol[0], rates[0], rates[1], rates[2], cash, c_fee, c_slip
        )
        s = new_s
        traded = True
    dq = new_q - q
    if dq != 0.0:
        cost, wallet, c_fee, c_slip, n = perp_fill_nb(
            rec, n, j, c, dq, px[1], vol[1], rates[0], rates[1], rates[3], q, cost, wallet, c_fee, c_slip
        )
        q = new_q
        traded = True
    return s, q, cost, wallet, cash, c_fee, c_slip, n, traded


@njit(cache=True, inline="always")
def margin_need_nb(q, px, lev):
    """Initial margin (quote) of ``q`` perp coins at ``px`` and leverage ``lev``: ``|q| * px / L``."""
    return abs(q) * px / lev if q != 0.0 else 0.0


@njit(cache=True, inline="always")
def margin_transfer_nb(need, wallet, upnl):
    """The transfer (quote, spot cash to futures wallet; negative: back) that resets a futures
    account's margin balance ``wallet + upnl`` to its initial margin ``need`` after fills: an
    unrealized loss is refilled, an unrealized profit stays in the wallet (the exchange does not
    let it leave before it is realized): ``need - (wallet + min(upnl, 0))``."""
    return need - (wallet + min(upnl, 0.0))


@njit(cache=True, inline="always")
def transfer_nb(rec, n, j, col, tr, cash, wallet):
    """Move ``tr`` quote from the spot cash to a futures ``wallet`` (negative: back), unless it is
    rounding noise (``|tr| <= MIN_TRANSFER``); ``col`` is the column, or ``-1 - g`` for a
    portfolio's wallet. Returns ``(cash, wallet, n)``."""
    if abs(tr) > MIN_TRANSFER:
        n = push_nb(rec, n, j, col, K_TRANSFER, LEG_NONE, np.nan, np.nan, np.nan, tr, 0.0)
        return cash - tr, wallet + tr, n
    return cash, wallet, n


# ------------------------------------------------------------------ liquidation


@njit(cache=True, inline="always")
def liq_possible_nb(q, adv, level):
    """False when the bar's adverse mark extreme ``adv`` stays strictly on the safe side of the
    pre-check ``level`` of a position of ``q`` perp coins (see ``liq_level_nb``; NaN: always
    possible): no liquidation can happen then."""
    if q < 0.0:
        return not adv < level
    return not adv > level


@njit(cache=True)
def isolated_liq_nb(tiers, sym, q, wallet, cost, adv, mo, mmr_max, cum_min):
    """The price at which an isolated position of ``q`` perp coins (cost ``q * entry``) with
    futures ``wallet`` is liquidated on a bar with mark open ``mo`` and adverse extreme
    ``adv``; NaN when it is not. The balance at ``adv`` is checked against a cheap bound first
    (maintenance <= notional * max mmr - min cum), then the brackets; the price is the
    closed-form liquidation price, clamped to the bar's path (the open on a gap)."""
    mb = wallet + q * adv - cost
    if mb <= abs(q) * adv * mmr_max - cum_min and mb <= maint_margin_nb(
        tiers.hi, tiers.mmr, tiers.cum, tiers.n, sym, abs(q) * adv
    ):
        lp = isolated_liq_price_nb(tiers.lo, tiers.hi, tiers.mmr, tiers.cum, tiers.n, sym, wallet, q, cost)
        if not np.isfinite(lp):
            lp = adv
        if q < 0.0:
            return min(max(lp, mo), adv)
        return max(min(lp, mo), adv)
    return np.nan


@njit(cache=True, inline="always")
def liquidate_perp_nb(rec, n, j, c, q, s, cost, pv, lp, clear_rate, wallet, c_perp, c_unh, c_liq, cover_ok):
    """Close ``q`` perp coins at the liquidation price ``lp`` (the spot leg ``s`` stays): revalue
    from ``pv`` (:func:`revalue_nb`'s split), realize into the futures ``wallet`` and charge the
    clearance fee ``clear_rate * |q| * lp``, floored at what the wallet holds after the close.
    With ``cover_ok`` (isolated margin) a wallet left below zero by a gap through the
    bankruptcy price is reset to zero by the insurance fund, booked as a gain in ``c_liq`` and as
    the event's ``rate``. Returns ``(wallet, c_perp, c_unh, c_liq, n)``; the position is then flat
    at valuation price ``lp``."""
    return liquidate_leg_nb(
        rec, n, j, c, LEG_PERP, q, s, cost, pv, lp, clear_rate, wallet, c_perp, c_unh, c_liq, cover_ok
    )


@njit(cache=True, inline="always")
def liquidate_leg_nb(rec, n, j, c, leg, q, s, cost, pv, lp, clear_rate, wallet, c_perp, c_unh, c_liq, cover_ok):
    """:func:`liquidate_perp_nb` for the perp of leg ``leg`` (``LEG_*``): ``q`` its coins, ``s`` the
    other leg's (the hedge split), ``c_perp`` the liquidated leg's price component."""
    _c_spot, c_perp, c_unh, _sx, _px = revalue_nb(s, q, 0.0, pv, 0.0, lp, 0.0, c_perp, c_unh)
    realized = q * lp - cost
    after = wallet + realized
    fee = min(clear_rate * abs(q) * lp, max(after, 0.0))
    after -= fee
    cover = 0.0
    if cover_ok and after < 0.0:
        cover = -after
        after = 0.0
    n = push_nb(rec, n, j, c, K_LIQ, leg, -q, lp, cover, realized - fee + cover, fee)
    return after, c_perp, c_unh, c_liq - fee + cover, n


@njit(cache=True, inline="always")
def spot_liq_single_nb(cash, s, so, sh, level):
    """The price at which the margin account of one borrowed spot leg (``s < 0`` coins, quote
    assets ``cash``) reaches the liquidation ``level`` (assets / liabilities) on a bar with spot
    open ``so`` and high ``sh``: the open on a gap, else the first point of the path from the
    open to the high (bisection, 100 steps); NaN when the account stays above the level."""
    b = -s
    if not cash <= level * (b * sh):
        return np.nan
    if cash <= level * (b * so):
        return so
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if cash <= level * (b * (so + mid * (sh - so))):
            hi = mid
        else:
            lo = mid
    return so + hi * (sh - so)


@njit(cache=True, inline="always")
def liquidate_spot_nb(rec, n, j, c, s, q, sv, p, fee_rate, cash, other, c_spot, c_unh, c_liq):
    """Buy back a borrowed spot leg of ``s < 0`` coins at the margin-liquidation price ``p``
    (revalued from ``sv`` with :func:`revalue_nb`'s split against the perp ``q``) with the
    liquidation fee ``fee_rate * |s| * p``, floored at the assets left in the margin account
    (its quote ``cash`` after the buy-back plus ``other``: the value of its long coins).
    Returns ``(cash, c_spot, c_unh, c_liq, n)``; the leg is then flat at valuation price ``p``."""
    c_spot, _c_perp, c_unh, _sx, _px = revalue_nb(s, q, sv, 0.0, p, 0.0, c_spot, 0.0, c_unh)
    cash += s * p
    fee = min(fee_rate * (-s) * p, max(cash + other, 0.0))
    n = push_nb(rec, n, j, c, K_LIQ, LEG_SPOT, -s, p, 0.0, s * p - fee, fee)
    return cash - fee, c_spot, c_unh, c_liq - fee, n


@njit(cache=True, inline="always")
def after_liquidation_nb(after_liq, s, q, pend_close, reentry, susp, j, cooldown):
    """The post-liquidation state ``(pend_close, reentry bar, suspended)`` per the policy code,
    for a column left with ``s`` spot and ``q`` perp coins at bar ``j``: close the legs at the next
    open and re-enter after ``cooldown`` bars; close and stay flat until the target changes;
    hold the legs until it changes; or re-enter at the next bar."""
    left = s != 0.0 or q != 0.0
    if after_liq == AFTER_CLOSE_REENTER:
        return left, j + cooldown, susp
    if after_liq == AFTER_CLOSE_SPOT:
        return left, reentry, True
    if after_liq == AFTER_REENTER:
        return pend_close, j + 1, susp
    return pend_close, reentry, True


# ------------------------------------------------------------------ margin ratio


@njit(cache=True, inline="always")
def maintenance_nb(q, notional, rate, cum):
    """(maintenance margin, adverse-move denominator) of ``q`` perp coins of ``notional`` (quote)
    in the bracket ``(rate, cum)``: the margin balance falls by ``den`` per unit of relative
    adverse move, net of the maintenance margin's own change."""
    mm = notional * rate - cum if notional > 0.0 else 0.0
    den = notional * (1.0 + rate) if q < 0.0 else notional * (1.0 - rate)
    return mm, den


@njit(cache=True, inline="always")
def margin_ratio_nb(mb, mm):
    """Margin ratio: maintenance margin over margin balance (inf when the balance is not positive)."""
    return mm / mb if mb > 0.0 else np.inf


@njit(cache=True, inline="always")
def adverse_ratio_nb(q, adv, wallet, cost, rate, cum):
    """Isolated margin ratio of ``q`` perp coins at the bar's adverse mark extreme ``adv``, in the
    bracket ``(rate, cum)`` of the notional there: maintenance margin over ``wallet + q * adv -
    cost`` (inf when that balance is not positive)."""
    return margin_ratio_nb(wallet + q * adv - cost, abs(q) * adv * rate - cum)


@njit(cache=True, inline="always")
def spot_ratio_nb(level, liabilities, cash):
    """A borrowed spot leg's margin account on the margin-ratio scale (1 = liquidation):
    ``level * liabilities / cash`` (inf when the quote assets ``cash`` are not positive)."""
    return level * liabilities / cash if cash > 0.0 else np.inf


@njit(cache=True, inline="always")
def worst_ratio_nb(a, b):
    """The larger of two margin ratios, NaN meaning "no account"."""
    if a != a:
        return b
    if b != b:
        return a
    return max(a, b)


@njit(cache=True, inline="always")
def isolated_margin_nb(q, notional, rate, cum, mb):
    """(margin ratio, distance to liquidation as a fraction of the price) of an isolated
    position of ``q`` perp coins with margin balance ``mb`` (wallet + unrealized PnL)."""
    mm, den = maintenance_nb(q, notional, rate, cum)
    return margin_ratio_nb(mb, mm), (mb - mm) / den


# ------------------------------------------------------------------ equity and outputs


@njit(cache=True, inline="always")
def partial_sum_nb(init, c_fund, c_fee, c_slip, c_borrow):
    """The terms of a column's equity that rarely change, summed left to right (cached by the kernels)."""
    return init + c_fund + c_fee + c_slip + c_borrow


@njit(cache=True, inline="always")
def equity_nb(partial, c_spot, c_perp, c_liq, c_unh):
    """A column's equity: initial share + components, summed left to right as a plain loop would."""
    return partial + c_spot + c_perp + c_liq + c_unh


@njit(cache=True, inline="always")
def stop_nb(rec, n, j, g, geq, holding):
    """Portfolio ``g``'s equity ``geq`` reached zero at bar ``j``'s close: it stops trading. Returns
    ``(stop state, n)``: closing (its legs close at the next open) while it ``holding``s any leg,
    else done; and the stop event (column ``-1 - g``, cash = the equity)."""
    n = push_nb(rec, n, j, -1 - g, K_STOP, LEG_NONE, np.nan, np.nan, np.nan, geq, 0.0)
    return (STOP_CLOSING if holding else STOP_DONE), n


@njit(cache=True, inline="always")
def column_value_nb(acc, s, sv, fw, q, upnl):
    """``acc`` plus a column's legs and futures wallet (spot value, wallet, unrealized perp PnL,
    in that order): its part of the portfolio equity."""
    if s != 0.0:
        acc += s * sv
    acc += fw
    if q != 0.0:
        acc += upnl
    return acc


@njit(cache=True, inline="always")
def open_value_nb(acc, s, sv, q, pv, cost, fw):
    """``acc`` plus a column's value at the open for sizing (spot value, unrealized perp PnL,
    futures wallet, in that order)."""
    if s != 0.0:
        acc += s * sv
    if q != 0.0:
        acc += q * pv - cost
    return acc + fw


@njit(cache=True, inline="always")
def store_components_nb(comps, row, c, c0, c1, c2, c3, c4, c5, c6, c7):
    """Write a column's eight cumulative components at ``row`` of ``comps`` (N_COMP, T|1, C)."""
    comps[0, row, c] = c0
    comps[1, row, c] = c1
    comps[2, row, c] = c2
    comps[3, row, c] = c3
    comps[4, row, c] = c4
    comps[5, row, c] = c5
    comps[6, row, c] = c6
    comps[7, row, c] = c7


@njit(cache=True, inline="always")
def carry_bar_nb(v, T):
    """A bar held in the state (top-up, re-entry; -1: none), counted from the end of a run of ``T``
    bars for the run over the next bars (a past-due one is due at that run's first bar)."""
    return max(v - T, 0.0) if v >= 0.0 else -1.0


@njit(cache=True)
def store_final_nb(cs, out, c, flags):
    """The one-row outputs of column ``c`` at the end of a run: its components and positions
    from its state ``cs[c]`` where they were not written per bar."""
    if (flags & F_COMPONENTS) == 0:
        for m in range(N_COMP):
            out.comps[m, 0, c] = cs[c, S_COMP + m]
    if (flags & F_POSITIONS) == 0:
        store_pair_nb(out.spot, out.perp, 0, c, cs[c, S_S], cs[c, S_Q])


@njit(cache=True, inline="always")
def store_pair_nb(a, b, row, c, x, y):
    """Write ``x`` and ``y`` at ``(row, c)`` of two outputs (positions, or margin ratio and distance)."""
    a[row, c] = x
    b[row, c] = y

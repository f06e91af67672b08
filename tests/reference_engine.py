"""A slow, plain-Python reference of the engine's rules (README: "The rules carry follows"), for comparison tests.

Written for reading, not speed: one object per column, one per portfolio, explicit wallets,
an entry price (not a cost basis) for the perp, and every cash flow booked in a named
component. It follows the same order of operations as the kernel (see
``backtest/kernels/simulate.py``) but shares no code with it.

The desk position rules of issue 12 (scheduled and banded rebalancing, hedge-keeping top-ups,
re-entry after a cool-down, the borrowed spot leg's margin account, the clearance fee floored
at the remaining margin and the insurance cover, the bankruptcy stop, whole-hour borrow and
the ``unhedged`` component) are written here from their statement, step by step in the
kernel's order. Their settings are read with ``getattr(config, name, default)`` (defaults in
:data:`DESK_DEFAULTS`), so any object with the older settings and the new names works as a
config.

Events are tuples ``(bar, column, kind, leg, qty, price, cash)``; liquidation events carry two
more fields, ``(..., fee, rate)``: the clearance (perp) or margin-liquidation (spot) fee and
the insurance fund's cover of a negative wallet or margin account (0.0 when none). A spot
liquidation's cash includes the cover, and so does a perp liquidation's (its realized PnL minus
the fee plus the cover: what the wallet received). Cross-margin transfers and the stop event
of a portfolio (kind ``stop``, cash = its equity, at the bar its equity reached zero) have
column ``-1 - group``.

Where the statement leaves room, this reference chooses:

* top-up detection (step 8) only while the account still holds a perp at the close: a
  liquidation's cancelled top-up is not re-armed by its own margin ratio;
* the after-liquidation policy cancels a scheduled top-up after a spot (margin-account)
  liquidation too, as it does after a perp liquidation;
* no margin ratio on a bar without valid prices, for any margin mode (a cross portfolio's ratio
  is still measured while one of its perps has prices; its top-up check uses it);
* in a multi-column portfolio a column re-entering with a NaN target is sized with the shares
  of the columns active at the open (its own weight counts only if it holds a leg);
* ``stopped`` becomes 2 after a bar's orders once every leg of the portfolio is flat (a column
  without a reference price at the closing bar closes at its next valid bar);
* rebalancing and re-entry flags are cleared only by a sizing (b, c, e).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

COMPONENTS = ("funding", "fees", "slippage", "borrow", "spot_price", "perp_price", "liquidation", "unhedged")

#: The issue-12 settings and their defaults (None: off), for configs that do not have them yet.
DESK_DEFAULTS = {
    "rebalance_every_hours": None,
    "rebalance_notional_band": 0.10,
    "after_liquidation": "close_and_reenter",
    "reentry_cooldown_hours": 24.0,
    "spot_margin_liquidation_level": 1.1,
    "spot_liquidation_fee_rate": 0.02,
}
HOUR_MS = 3_600_000


@dataclass
class Column:
    symbol: int
    spot: float = 0.0  # coins
    perp: float = 0.0  # coins
    entry: float = 0.0  # perp entry price
    wallet: float = 0.0  # isolated futures wallet (quote)
    spot_mark: float = math.nan
    perp_mark: float = math.nan
    last_target: float = math.nan
    pend_close: bool = False  # close both legs at the next valid open (after a liquidation)
    reentry_bar: int = -1  # bar from which the column re-enters its target (-1: none)
    suspended: bool = False  # no rebalancing until the next sizing
    rebalance_due: bool = False  # size back to the last target at the next valid open
    share: float = 0.0  # capital share of the last sizing
    topup_bar: int = -1
    borrowed_prev: float = 0.0  # borrowed coins at the end of the previous bar
    borrowed_open: float = 0.0  # borrowed coins after this bar's orders
    pnl: dict = field(default_factory=lambda: {k: 0.0 for k in COMPONENTS})


@dataclass
class Portfolio:
    cash: float  # quote in the spot (margin) account
    wallet: float = 0.0  # cross futures wallet (cross and portfolio margin)
    topup_bar: int = -1  # cross: the scheduled top-up
    stopped: int = 0  # 0 trading, 1 closing every leg at the next open, 2 stopped
    stopped_bar: int | None = None


def brackets_of(tiers, sym):
    n = int(tiers.n_tiers[sym])
    return [
        (tiers.min_notional[sym, k], tiers.max_notional[sym, k], tiers.mmr[sym, k], tiers.cum[sym, k]) for k in range(n)
    ]


def maintenance(brackets, notional):
    if notional <= 0:
        return 0.0
    for k, (_lo, hi, mmr, cum) in enumerate(brackets):
        if notional < hi or k == len(brackets) - 1:
            return notional * mmr - cum


def maintenance_rate(brackets, notional):
    for k, (_lo, hi, mmr, _cum) in enumerate(brackets):
        if notional < hi or k == len(brackets) - 1:
            return mmr


def liq_price_isolated(brackets, wallet, q, entry):
    """Solve wallet + q (LP - entry) = |q| LP mmr - cum in the bracket that holds |q| LP."""
    for k, (lo, hi, mmr, cum) in enumerate(brackets):
        lp = (q * entry - wallet - cum) / (q - abs(q) * mmr)
        if lp > 0 and lo <= abs(q) * lp and (abs(q) * lp < hi or k == len(brackets) - 1):
            return lp
    return math.nan


def hedge_split(s, q):
    """(hedged spot, unhedged spot, hedged perp, unhedged perp) coins: legs of opposite signs
    hedge each other on ``min(|s|, |q|)`` coins, the rest of each leg is unhedged."""
    h = min(abs(s), abs(q)) if s * q < 0 else 0.0
    us = s - math.copysign(h, s)
    uq = q - math.copysign(h, q)
    return s - us, us, q - uq, uq


def first_breach(breached):
    """The first point ``lam`` of a bar's path (0: the open, 1: the adverse extreme) where
    ``breached(lam)``: 0 when the open already is (a gap), else bisection, 100 steps."""
    if breached(0.0):
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if breached(mid) else (mid, hi)
    return hi


def run_reference(market, targets, config, column_params=None, tiers=None):
    """Simulate; returns a dict: group_equity (T, G), comps {name: (T, C)}, spot, perp,
    margin_ratio (T, C), events (list of tuples, see the module docstring) and stopped
    {group: bar at which its equity reached zero, or None}."""
    from backtest.engine import tier_table
    from data.units import bar_hours

    cp = dict(column_params or {})
    T, C = targets.values.shape

    def setting(name):
        return getattr(config, name, DESK_DEFAULTS.get(name))

    def p(name, j, c):
        v = cp[name] if name in cp else setting(name)
        if v is None:
            return math.nan if name == "topup_margin_ratio" else math.inf
        a = np.asarray(v, dtype=float)
        if a.ndim == 0:
            return float(a)
        if a.ndim == 1:
            return float(a[c])
        return float(a[j if a.shape[0] > 1 else 0, c if a.shape[1] > 1 else 0])

    tiers = tiers or tier_table(market, config)
    # exchange limits per symbol (markets_path): the pair's common lot, least quantity and notional
    lot_of = min_qty_of = min_not_of = np.zeros(market.n_symbols)
    if getattr(config, "markets_path", None):
        from data.markets import load_markets

        rules = load_markets(config.markets_path, market.symbols, market.perp_symbols, multiplier=market.multiplier)
        lot_of, min_qty_of, min_not_of = rules.common_lot(), rules.pair_min_qty(), rules.pair_min_notional()

    def to_lot(x, n):
        """``x`` coins toward zero in whole lots (relative tolerance 1e-9); a lot of ``1 / k`` (0.01)
        gives ``lots / k``, the float nearest the decimal (61.57, not ``6157 * 0.01``)."""
        lot = lot_of[n]
        if not (lot > 0 and x != 0):
            return x
        lots = math.floor(abs(x) / lot * (1 + 1e-9))
        k = round(1 / lot)
        return math.copysign(lots / k if k >= 1 and abs(k * lot - 1) <= 1e-12 else lots * lot, x)

    def refused(dq, price, n):
        """An order an exchange refuses: below the least quantity or notional."""
        return dq != 0 and (abs(dq) < min_qty_of[n] * (1 - 1e-9) or abs(dq) * price < min_not_of[n] * (1 - 1e-9))

    hours = bar_hours(market)
    bar_ms = round(hours * HOUR_MS)
    assert abs(bar_ms - hours * HOUR_MS) < 1e-6 and bar_ms > 0, f"bar length {hours} h is not a whole number of ms"
    times = [int(ts.value // 1_000_000) for ts in market.index]  # bar open times, ms since the epoch
    cooldown_ms = round(setting("reentry_cooldown_hours") * HOUR_MS)  # whole ms: no float noise in the ceil
    cooldown_bars = max(1, -(-cooldown_ms // bar_ms))
    policy = setting("after_liquidation")
    spot_level = setting("spot_margin_liquidation_level")
    spot_liq_fee = setting("spot_liquidation_fee_rate")
    cross = config.margin_mode in ("cross", "portfolio")
    # portfolio margin: the spot wallet is collateral (long spot at 1 - h, short at 1 + h)
    haircut = config.spot_collateral_haircut if config.margin_mode == "portfolio" else None
    taker = config.order_type == "taker"
    delay = config.execution_delay_bars
    lag = max(delay, 1)
    groups = sorted(set(int(g) for g in targets.group))
    members = {g: [c for c in range(C) if targets.group[c] == g] for g in groups}
    cols = [Column(symbol=int(targets.column_symbol[c])) for c in range(C)]
    pf = {g: Portfolio(cash=config.initial_capital_quote) for g in groups}
    events = []
    out_eq = np.zeros((T, len(groups)))
    out = {k: np.zeros((T, C)) for k in COMPONENTS}
    out_spot = np.zeros((T, C))
    out_perp = np.zeros((T, C))
    out_mr = np.full((T, C), np.nan)
    M = market

    def ref_price(kind, j, n):
        if delay == 0:
            return (M.spot_close if kind == "spot" else M.perp_close)[j - 1, n]
        return (M.spot_open if kind == "spot" else M.perp_open)[j, n]

    def ref_ok(j, n):
        if delay == 0:
            return j > 0 and bool(M.valid[j - 1, n])
        return bool(M.valid[j, n])

    def wallet_add(g, c, amount):
        if cross:
            pf[g].wallet += amount
        else:
            cols[c].wallet += amount

    def revalue(col, sx, px):
        """Mark both legs from (spot_mark, perp_mark) to (sx, px): hedged coins into the legs'
        price components, unhedged coins into ``unhedged``."""
        hs, us, hq, uq = hedge_split(col.spot, col.perp)
        if col.spot:
            col.pnl["spot_price"] += hs * (sx - col.spot_mark)
            col.pnl["unhedged"] += us * (sx - col.spot_mark)
        if col.perp:
            col.pnl["perp_price"] += hq * (px - col.perp_mark)
            col.pnl["unhedged"] += uq * (px - col.perp_mark)
        col.spot_mark, col.perp_mark = sx, px

    def fill(j, g, c, leg, dq):
        col = cols[c]
        n = col.symbol
        ref = ref_price(leg, j, n)
        vol = (M.spot_volume if leg == "spot" else M.perp_volume)[j - 1, n] if j > 0 else 0.0
        slip = p("slippage_bps", j, c) / 1e4
        k = p("volume_participation_coefficient", j, c)
        if k > 0 and vol > 0:
            slip += k * abs(dq) / vol
        slip = min(slip, 0.5)  # the slippage cap (a fill at most 50% from its reference)
        price = ref * (1 + slip) if dq > 0 else ref * (1 - slip)
        rate = p(f"{leg}_{'taker' if taker else 'maker'}_fee_rate", j, c)
        fee = abs(dq) * price * rate
        col.pnl["fees"] -= fee
        col.pnl["slippage"] -= abs(dq) * abs(price - ref)
        if leg == "spot":
            pf[g].cash -= dq * price + fee
            col.spot += dq
            events.append((j, c, "fill", "spot", dq, price, -dq * price - fee))
            return
        q = col.perp
        realized = 0.0
        if q == 0 or (q > 0) == (dq > 0):  # open or add: average entry
            col.entry = (q * col.entry + dq * price) / (q + dq)
            col.perp = q + dq
        elif abs(dq) <= abs(q):  # reduce
            realized = -dq * (price - col.entry)
            col.perp = q + dq
            if col.perp == 0:
                col.entry = 0.0
        else:  # flip
            realized = q * (price - col.entry)
            col.perp = q + dq
            col.entry = price
        wallet_add(g, c, realized - fee)
        events.append((j, c, "fill", "perp", dq, price, realized - fee))

    def transfer(j, g, c, amount):
        pf[g].cash -= amount
        wallet_add(g, c, amount)
        events.append((j, c if not cross else -1 - g, "transfer", None, math.nan, math.nan, amount))

    def set_target_margin(j, g, cs):
        """After fills: bring the account's margin balance back to the initial margin
        ``|q| * mark / L``; an unrealized loss is refilled from cash, an unrealized profit stays
        in the wallet (it cannot leave before it is realized)."""
        need = sum(abs(cols[c].perp) * cols[c].perp_mark / p("perp_leverage", j, c) for c in cs if cols[c].perp)
        have = (pf[g].wallet if cross else cols[cs[0]].wallet) + min(sum(upnl(c) for c in cs), 0.0)
        if abs(need - have) > 1e-9:  # skip rounding noise, as the kernel does
            transfer(j, g, cs[0], need - have)

    def upnl(c):
        col = cols[c]
        return col.perp * (col.perp_mark - col.entry) if col.perp else 0.0

    def margin_shortfall(j, g, job):
        """Quote missing from the futures wallet of ``job`` (one isolated column, or all the
        portfolio's columns in cross) to hold ``|q| * mark / L`` of margin balance."""
        target = sum(abs(cols[c].perp) * cols[c].perp_mark / p("perp_leverage", j, c) for c in job if cols[c].perp)
        have = (pf[g].wallet if cross else cols[job[0]].wallet) + sum(upnl(c) for c in job)
        return target - have

    def order_due(j, c, P):
        """Whether column ``c`` has an order at bar ``j`` (step 3's priorities a-f)."""
        col = cols[c]
        if P.stopped != 0:
            return P.stopped == 1 and (col.spot != 0 or col.perp != 0)
        x = targets.values[j - lag, c]
        if not math.isnan(x) and x != col.last_target:
            return True
        if (col.reentry_bar >= 0 and j >= col.reentry_bar) or col.pend_close or col.rebalance_due:
            return True
        return col.spot != 0 and abs(col.spot + col.perp) > p("rebalance_delta_band", j, c) * abs(col.spot)

    def after_liquidation(j, c, g):
        """The after-liquidation policy of column ``c`` (its perp or its borrowed spot leg was
        liquidated at bar ``j``)."""
        col = cols[c]
        holding = col.spot != 0 or col.perp != 0
        col.rebalance_due = False  # a rebalance decided before the liquidation is void
        if policy == "close_and_reenter":
            col.pend_close = holding
            col.reentry_bar = j + cooldown_bars
        elif policy == "close_spot":
            col.pend_close = holding
            col.suspended = True
        elif policy == "hold_spot":
            col.suspended = True
        elif policy == "reenter":
            col.reentry_bar = j + 1
        else:
            raise ValueError(f"unknown after_liquidation {policy!r}")
        if cross:
            pf[g].topup_bar = -1
        else:
            col.topup_bar = -1

    def liquidate_perp(j, c, g, price):
        """Close the perp of ``c`` at ``price``: realized PnL, the clearance fee floored at the
        margin left, and (isolated) the insurance fund's cover of a negative wallet. Returns the
        index of its event."""
        col = cols[c]
        revalue(col, col.spot_mark, price)
        realized = col.perp * (price - col.entry)
        w = pf[g].wallet if cross else col.wallet
        fee = min(p("clearance_fee_rate", j, c) * abs(col.perp) * price, max(w + realized, 0.0))
        wallet_add(g, c, realized - fee)
        col.pnl["liquidation"] -= fee
        cover = 0.0
        if not cross and col.wallet < 0:  # a gap through the bankruptcy price
            cover = -col.wallet
            col.wallet = 0.0
            col.pnl["liquidation"] += cover
        events.append((j, c, "liquidation", "perp", -col.perp, price, realized - fee + cover, fee, cover))
        col.perp, col.entry = 0.0, 0.0
        return len(events) - 1

    for j in range(T):
        t = times[j]
        for g in groups:
            cs = members[g]
            P = pf[g]
            for c in cs:
                cols[c].borrowed_prev = max(-cols[c].spot, 0.0)
            # 1. open: mark both legs at the reference prices, where the open prices are used:
            # always in cross and portfolio margin, else when a top-up or an order of the
            # portfolio is due (a bar without either goes from the last close to this close;
            # with the hedged/unhedged split this decides where a liquidation bar's moves land)
            open_used = (
                cross
                or P.topup_bar == j
                or any(cols[c].topup_bar == j for c in cs)
                or (j >= lag and any(order_due(j, c, P) for c in cs))
            )
            for c in cs:
                col = cols[c]
                n = col.symbol
                if open_used and ref_ok(j, n):
                    revalue(col, ref_price("spot", j, n), ref_price("perp", j, n))
            if j >= lag:
                # 2. top-ups (none once the portfolio stops)
                jobs = []
                if P.stopped == 0:
                    if cross and P.topup_bar == j:
                        P.topup_bar = -1
                        jobs.append(list(cs))
                    for c in cs:
                        if not cross and cols[c].topup_bar == j:
                            cols[c].topup_bar = -1
                            if cols[c].perp == 0:
                                continue
                            if not ref_ok(j, cols[c].symbol):
                                cols[c].topup_bar = j + 1
                                continue
                            jobs.append([c])
                for job in jobs:
                    need = margin_shortfall(j, g, job)
                    if need <= 0:
                        continue
                    free = max(P.cash, 0.0)
                    if need > free:
                        # the cash is short: shrink the carries (long spot, short perp) on both
                        # legs by the same coins, in proportion to their spot coins
                        short = need - free
                        carries = [
                            c for c in job if cols[c].spot > 0 and cols[c].perp < 0 and ref_ok(j, cols[c].symbol)
                        ]
                        D = sum(
                            cols[c].spot
                            * (ref_price("spot", j, cols[c].symbol) + cols[c].perp_mark / p("perp_leverage", j, c))
                            for c in carries
                        )
                        if carries and D > 0:
                            f = min(1.0, short / D)
                            for c in carries:
                                d = min(cols[c].spot if f == 1.0 else f * cols[c].spot, -cols[c].perp)
                                lot = lot_of[cols[c].symbol]
                                if lot > 0 and d < min(cols[c].spot, -cols[c].perp):  # whole lots, rounded up
                                    d = min(math.ceil(d / lot * (1 - 1e-9)) * lot, cols[c].spot, -cols[c].perp)
                                fill(j, g, c, "spot", -d)
                                fill(j, g, c, "perp", d)
                        need = margin_shortfall(j, g, job)
                    amount = min(need, max(P.cash, 0.0))
                    if amount > 1e-9:
                        transfer(j, g, job[0], amount)
                # 3. orders
                equity = P.cash + sum(cols[c].spot * cols[c].spot_mark for c in cs if cols[c].spot)
                equity += (P.wallet if cross else sum(cols[c].wallet for c in cs)) + sum(upnl(c) for c in cs)
                i = j - lag
                traded_any = False

                # capital shares: weights among the group's active columns as they stand at the open
                def active(c2):
                    x2 = targets.values[i, c2]
                    return x2 != 0 if not math.isnan(x2) else (cols[c2].spot != 0 or cols[c2].perp != 0)

                wt = (lambda c2: 1.0) if targets.weights is None else (lambda c2: targets.weights[i, c2])
                total = sum(wt(c2) for c2 in cs if active(c2))
                for c in cs:
                    col = cols[c]
                    n = col.symbol
                    if not ref_ok(j, n) or P.stopped == 2:
                        continue
                    x = targets.values[i, c]
                    want_s, want_q = col.spot, col.perp
                    size_to = math.nan  # the exposure to size both legs to, if any
                    if P.stopped == 1:  # a. the portfolio stops: close every leg
                        want_s, want_q = 0.0, 0.0
                    elif not math.isnan(x) and x != col.last_target:  # b. a new target
                        size_to = x
                    elif (
                        col.reentry_bar >= 0
                        and j >= col.reentry_bar
                        and not (math.isnan(x) and math.isnan(col.last_target))
                    ):  # c. re-entry due
                        size_to = col.last_target if math.isnan(x) else x
                    elif col.pend_close:  # d. close what a liquidation left
                        want_s, want_q = 0.0, 0.0
                        col.pend_close = False
                    elif col.rebalance_due and not math.isnan(col.last_target):  # e. rebalance
                        size_to = col.last_target
                    elif col.spot != 0 and abs(col.spot + col.perp) > p("rebalance_delta_band", j, c) * abs(col.spot):
                        want_q = -col.spot  # f. delta band
                    if not math.isnan(size_to):
                        w = wt(c)
                        if size_to == 0:
                            share = 0.0
                        elif len(cs) == 1:
                            share = 1.0 if w > 0 else 0.0
                        else:
                            share = w / total if total > 0 else 0.0
                        L = p("perp_leverage", j, c)
                        notional = max(equity, 0.0) * share * abs(size_to) * L / (L + 1)  # nothing to invest when broke
                        want_s = math.copysign(notional, size_to) / ref_price("spot", j, n) if size_to != 0 else 0.0
                        want_s = to_lot(want_s, n)
                        want_q = -want_s
                        if want_s != 0 and refused(want_s - col.spot, ref_price("spot", j, n), n):
                            events.append((j, c, "skip", None, want_s - col.spot, ref_price("spot", j, n), 0.0))
                            want_s, want_q = col.spot, col.perp
                        col.share = share
                        col.last_target = size_to
                        col.pend_close = False
                        col.reentry_bar = -1
                        col.suspended = False
                        col.rebalance_due = False
                    traded = False
                    if want_s - col.spot != 0:
                        fill(j, g, c, "spot", want_s - col.spot)
                        col.spot = want_s
                        traded = True
                    if want_q - col.perp != 0:
                        fill(j, g, c, "perp", want_q - col.perp)
                        col.perp = want_q
                        if col.perp == 0:
                            col.entry = 0.0
                        traded = True
                    if traded and not cross:
                        set_target_margin(j, g, [c])
                    traded_any |= traded
                if cross and traded_any:
                    set_target_margin(j, g, cs)
                if P.stopped == 1 and all(cols[c].spot == 0 and cols[c].perp == 0 for c in cs):
                    P.stopped = 2
            for c in cs:
                cols[c].borrowed_open = max(-cols[c].spot, 0.0)

            # 4a. futures liquidation against the adverse mark extreme; the futures margin ratio
            # there (mr_fut) first, for the positions after the orders
            mr_fut = {}
            if not cross:
                for c in cs:
                    col = cols[c]
                    n = col.symbol
                    if col.perp == 0:
                        continue
                    if not M.valid[j, n]:
                        continue  # no prices: no check, no ratio
                    br = brackets_of(tiers, n)
                    worst = M.mark_high[j, n] if col.perp < 0 else M.mark_low[j, n]
                    mb = col.wallet + col.perp * (worst - col.entry)
                    mm = maintenance(br, abs(col.perp) * worst)
                    mr_fut[c] = mm / mb if mb > 0 else math.inf
                    if mb > mm:
                        continue
                    lp = liq_price_isolated(br, col.wallet, col.perp, col.entry)
                    lp = worst if math.isnan(lp) else lp
                    if col.perp < 0:
                        lp = min(max(lp, M.mark_open[j, n]), worst)
                    else:
                        lp = max(min(lp, M.mark_open[j, n]), worst)
                    liquidate_perp(j, c, g, lp)
                    after_liquidation(j, c, g)
            elif haircut is not None:
                open_cs = [c for c in cs if cols[c].perp != 0]

                def weight(col):  # spot collateral weight
                    return 1 - haircut if col.spot > 0 else 1 + haircut

                def rises_hurt(col):  # the column's net delta (spot at its weight) is short
                    eff = col.perp + col.spot * weight(col)
                    return eff < 0 or (eff == 0 and col.perp < 0)

                def pm_path(c, lam):
                    col = cols[c]
                    n = col.symbol
                    if not M.valid[j, n]:
                        return col.perp_mark, 1.0
                    mo = M.mark_open[j, n]
                    worst = M.mark_high[j, n] if rises_hurt(col) else M.mark_low[j, n]
                    m = mo + lam * (worst - mo)
                    return m, (m / mo if mo > 0 else 1.0)

                def pm_balance(lam):  # (margin balance, maintenance margin) of the unified account
                    mb, mm = P.wallet + P.cash, 0.0
                    for c in cs:
                        col = cols[c]
                        m, ratio = pm_path(c, lam)
                        if col.perp:
                            mb += col.perp * m - col.perp * col.entry
                            mm += maintenance(brackets_of(tiers, col.symbol), abs(col.perp) * m)
                        if col.spot:
                            mb += col.spot * col.spot_mark * ratio * weight(col)
                    return mb, mm

                def pm_breached(lam):
                    mb, mm = pm_balance(lam)
                    return mb <= mm

                if open_cs and any(M.valid[j, cols[c].symbol] for c in open_cs):
                    # the account's ratio, measured while one of its perps has prices, is every
                    # one of its perps' ratio
                    mb1, mm1 = pm_balance(1.0)
                    for c in open_cs:
                        mr_fut[c] = mm1 / mb1 if mb1 > 0 else math.inf
                if open_cs and pm_breached(1.0):
                    lam = first_breach(pm_breached)
                    prices = {c: pm_path(c, lam)[0] for c in open_cs}
                    for c in open_cs:
                        liquidate_perp(j, c, g, prices[c])  # no insurance cover: the account is one
                    for c in open_cs:
                        after_liquidation(j, c, g)
            else:
                open_cs = [c for c in cs if cols[c].perp != 0]

                def path(c, lam):
                    n = cols[c].symbol
                    if not M.valid[j, n]:
                        return cols[c].perp_mark
                    worst = M.mark_high[j, n] if cols[c].perp < 0 else M.mark_low[j, n]
                    return M.mark_open[j, n] + lam * (worst - M.mark_open[j, n])

                def cross_balance(lam, at_worst=False):  # (margin balance, maintenance margin)
                    mb, mm = P.wallet, 0.0
                    for c in open_cs:
                        col = cols[c]
                        n = col.symbol
                        if at_worst and M.valid[j, n]:
                            m = M.mark_high[j, n] if col.perp < 0 else M.mark_low[j, n]
                        elif at_worst:
                            m = col.perp_mark
                        else:
                            m = path(c, lam)
                        mb += col.perp * m - col.perp * col.entry
                        mm += maintenance(brackets_of(tiers, n), abs(col.perp) * m)
                    return mb, mm

                def breached(lam, at_worst=False):
                    mb, mm = cross_balance(lam, at_worst)
                    return mb <= mm

                if open_cs and any(M.valid[j, cols[c].symbol] for c in open_cs):
                    mbw, mmw = cross_balance(1.0, at_worst=True)
                    for c in open_cs:  # (as in portfolio margin: the account's ratio)
                        mr_fut[c] = mmw / mbw if mbw > 0 else math.inf
                if open_cs and breached(1.0, at_worst=True):
                    lam = first_breach(breached)
                    prices = {c: path(c, lam) for c in open_cs}
                    last = None
                    for c in open_cs:
                        last = liquidate_perp(j, c, g, prices[c])
                    if P.wallet < 0:  # the insurance fund covers the deficit, booked on the last column
                        cover = -P.wallet
                        P.wallet = 0.0
                        cols[open_cs[-1]].pnl["liquidation"] += cover
                        e = events[last]
                        events[last] = e[:6] + (e[6] + cover, e[7], cover)
                    for c in open_cs:
                        after_liquidation(j, c, g)
                    P.topup_bar = -1

            # 4b. the margin account of the borrowed spot legs (isolated and cross; Binance's cross
            # margin account): assets = the quote cash + the long spot coins, liabilities = the
            # borrowed coins' value; liquidated when assets <= level x liabilities on the path
            # from the spot opens to the adverse extremes (highs of the borrowed coins, lows of the
            # long ones; a long leg without prices stays at its valuation price)
            mr_spot = {}
            if haircut is None:
                short_cs = [c for c in cs if cols[c].spot < 0 and M.valid[j, cols[c].symbol]]
                long_cs = [c for c in cs if cols[c].spot > 0]

                def spot_path(c, lam):
                    col = cols[c]
                    n = col.symbol
                    if not M.valid[j, n]:
                        return col.spot_mark
                    worst = M.spot_high[j, n] if col.spot < 0 else M.spot_low[j, n]
                    return M.spot_open[j, n] + lam * (worst - M.spot_open[j, n])

                def long_value(lam):
                    return sum(cols[c].spot * spot_path(c, lam) for c in long_cs)

                def account(lam):  # (assets, liabilities)
                    liab = sum(abs(cols[c].spot) * spot_path(c, lam) for c in short_cs)
                    return P.cash + long_value(lam), liab

                def spot_breached(lam):
                    assets, liab = account(lam)
                    return assets <= spot_level * liab

                if short_cs:
                    assets1, liab1 = account(1.0)
                    for c in short_cs:
                        mr_spot[c] = spot_level * liab1 / assets1 if assets1 > 0 else math.inf
                if short_cs and spot_breached(1.0):
                    lam = first_breach(spot_breached)
                    prices = {c: spot_path(c, lam) for c in short_cs}
                    other = long_value(lam)  # the long coins, at the same point of the path
                    last = None
                    for c in short_cs:
                        col = cols[c]
                        price = prices[c]
                        revalue(col, price, col.perp_mark)
                        cost = abs(col.spot) * price
                        P.cash -= cost  # buy the borrowed coins back
                        fee = min(spot_liq_fee * cost, max(P.cash + other, 0.0))
                        P.cash -= fee
                        col.pnl["liquidation"] -= fee
                        events.append((j, c, "liquidation", "spot", -col.spot, price, -cost - fee, fee, 0.0))
                        last = len(events) - 1
                        col.spot = 0.0
                    if P.cash + other < 0:  # the insurance fund covers the deficit, booked on the last column
                        cover = -(P.cash + other)
                        P.cash += cover
                        cols[short_cs[-1]].pnl["liquidation"] += cover
                        e = events[last]
                        events[last] = e[:6] + (e[6] + cover, e[7], cover)
                    for c in short_cs:
                        after_liquidation(j, c, g)

            # 5-7. funding, close marks, borrow (whole hours)
            t_open_hour = t % HOUR_MS == 0
            first_hour, last_hour = t // HOUR_MS + 1, (t + bar_ms - 1) // HOUR_MS
            hours_inside = max(0, last_hour - first_hour + 1)  # full hours strictly inside the bar
            for c in cs:
                col = cols[c]
                n = col.symbol
                fv = M.funding_value[j, n]
                if col.perp != 0 and fv != 0 and np.isfinite(fv):
                    amount = -col.perp * fv
                    wallet_add(g, c, amount)
                    col.pnl["funding"] += amount
                    events.append((j, c, "funding", "perp", col.perp, math.nan, amount))
                if M.valid[j, n]:
                    revalue(col, M.spot_close[j, n], M.mark_close[j, n])
                elif ref_ok(j, n) and not open_used:  # an invalid bar: its reference prices
                    revalue(col, ref_price("spot", j, n), ref_price("perp", j, n))
                borrowed_close = max(-col.spot, 0.0)
                if t_open_hour:  # one hour on what is borrowed at a full-hour open
                    coin_hours = col.borrowed_open
                else:  # one hour at borrowing
                    coin_hours = max(col.borrowed_open - col.borrowed_prev, 0.0)
                coin_hours += hours_inside * borrowed_close
                if coin_hours != 0:
                    if config.borrow_rate_source == "market":
                        series = M.borrow_hourly_rate[: j + 1, n]
                        ok = series[np.isfinite(series)]
                        hourly = ok[-1] if len(ok) else 0.0
                    else:
                        hourly = p("borrow_annual_rate", j, c) / (365 * 24)
                    interest = hourly * col.spot_mark * coin_hours
                    if interest != 0:
                        P.cash -= interest
                        col.pnl["borrow"] -= interest
                        events.append((j, c, "borrow", "spot", col.spot, col.spot_mark, -interest))
            # 8. outputs, margin ratio, top-up detection, the stop, rebalancing detection
            eq = P.cash + P.wallet
            for c in cs:
                col = cols[c]
                eq += col.spot * col.spot_mark if col.spot else 0.0
                eq += col.wallet + upnl(c)
                ratios = [r for r in (mr_fut.get(c), mr_spot.get(c)) if r is not None]
                if ratios:
                    out_mr[j, c] = max(ratios)
                if not cross and c in mr_fut and col.perp != 0:  # not re-armed by a liquidated perp
                    if mr_fut[c] >= p("topup_margin_ratio", j, c) and col.topup_bar < 0:
                        col.topup_bar = j + 1 + config.topup_delay_bars
                for k in COMPONENTS:
                    out[k][j, c] = col.pnl[k]
                out_spot[j, c] = col.spot
                out_perp[j, c] = col.perp
            # cross: one ratio for the portfolio (measured if any of its perps has prices), while it
            # still holds a perp (a liquidation's cancelled top-up is not re-armed)
            if cross and mr_fut and any(cols[c].perp != 0 for c in cs):
                ratio = next(iter(mr_fut.values()))
                if ratio >= p("topup_margin_ratio", j, cs[0]) and P.topup_bar < 0:
                    P.topup_bar = j + 1 + config.topup_delay_bars
            if eq <= 0 and P.stopped == 0:  # bankrupt: stop trading
                P.stopped = 1 if any(cols[c].spot != 0 or cols[c].perp != 0 for c in cs) else 2
                P.stopped_bar = j
                events.append((j, -1 - g, "stop", None, math.nan, math.nan, eq))
            for c in cs:
                col = cols[c]
                if (
                    P.stopped != 0
                    or col.suspended
                    or col.reentry_bar >= 0
                    or col.pend_close
                    or math.isnan(col.last_target)
                    or col.last_target == 0
                ):
                    continue
                every = p("rebalance_every_hours", j, c)  # inf: no schedule
                band = p("rebalance_notional_band", j, c)  # inf: no band
                # the schedule: bar j + 1 starts a new UTC-aligned period
                sched = math.isfinite(every) and (
                    math.floor((t + bar_ms) / (every * HOUR_MS)) > math.floor(t / (every * HOUR_MS))
                )
                if not sched and math.isinf(band):
                    continue
                L = p("perp_leverage", j, c)
                target = max(eq, 0.0) * col.share * abs(col.last_target) * L / (L + 1)
                held = abs(col.spot) * col.spot_mark if col.spot else 0.0
                drift = abs(held - target)
                if refused(drift / col.spot_mark, col.spot_mark, col.symbol):  # a trade the exchange refuses
                    continue
                if drift > band * target or (sched and drift > 0):
                    col.rebalance_due = True
            out_eq[j, groups.index(g)] = eq
    return {
        "group_equity": out_eq,
        "comps": out,
        "spot": out_spot,
        "perp": out_perp,
        "margin_ratio": out_mr,
        "events": events,
        "stopped": {g: pf[g].stopped_bar for g in groups},
    }


FRAMES = ("equity", "group_equity", "spot_qty", "perp_qty", "margin_ratio", "distance_to_liquidation")


def assert_identical(a, b):
    """Two BacktestResults are equal bit for bit: every frame, component and event, and the
    engine state they end in (every array of ``result.state`` byte for byte, and its scalars)."""
    import dataclasses

    import pandas as pd

    from backtest.result import COMPONENTS

    sa, sb = getattr(a, "state", None), getattr(b, "state", None)
    assert (sa is None) == (sb is None), "state"
    for f in dataclasses.fields(sa) if sa is not None else ():
        x, y = getattr(sa, f.name), getattr(sb, f.name)
        if isinstance(x, np.ndarray) or isinstance(y, np.ndarray):
            assert isinstance(x, np.ndarray) and isinstance(y, np.ndarray), f"state.{f.name}"
            assert x.dtype == y.dtype and x.shape == y.shape, f"state.{f.name}"
            assert x.tobytes() == y.tobytes(), f"state.{f.name}"
        else:
            assert x == y, f"state.{f.name}"

    for name in FRAMES:
        x, y = getattr(a, name), getattr(b, name)
        assert x.shape == y.shape, name
        assert list(x.columns) == list(y.columns), name
        assert np.array_equal(x.to_numpy(), y.to_numpy(), equal_nan=True), name
    for k in COMPONENTS:
        assert np.array_equal(a.components[k].to_numpy(), b.components[k].to_numpy(), equal_nan=True), k
    ra, rb = np.asarray(a.records), np.asarray(b.records)
    assert ra.shape == rb.shape, "events"
    assert np.array_equal(ra, rb, equal_nan=True), "events"
    pd.testing.assert_frame_equal(a.events, b.events)

"""A slow, plain-Python reference of the cross-venue spread hedge (``backtest/spread.py``'s rules).

Written for reading, not speed: one object per leg (its venue's wallet, position, entry price
and valuation price), one per column, every cash flow booked in a named component, the rules
of the ``backtest.spread`` module docstring applied step by step per bar. It is the oracle the
numba kernel is compared with and shares no code with ``backtest/kernels``; it reuses only the
small pure helpers of ``tests/reference_engine.py`` (maintenance brackets, the isolated
liquidation price, the hedged/unhedged split).

``run_reference_spread(leg_a, leg_b, targets, column_symbol, settings) -> dict``; see its
docstring for the settings and the outputs. Events are tuples
``(bar, column, kind, leg, qty, price, cash, fee, venue)``, kind in ``fill, funding, transfer,
liquidation, borrow``, leg ``"A"`` or ``"B"``, venue the index of the leg's venue (0 unless the
legs switch venues).

Where the statement leaves room, this reference chooses:

* with ``lag`` 0 a bar is ref-valid where the previous bar is valid (its perp close is the
  reference price), as in the single-venue engine; bar 0 never is;
* a pending close (b) is cleared once it has closed both legs;
* a sizing (a) does not clear a collateral rebalance due: it is done at the next order bar;
* ``capped`` (a sizing held short by ``L * min(mb_A, mb_B)`` by more than ``DUST`` of its
  notional: less is a rounding residue, as of a split at a quote rate) is set at every sizing, True or
  False, and cleared when a collateral rebalance resizes both legs to the target, when one
  with a flat leg sends its transfer (which schedules the sizing at the transfer's arrival
  bar) and by a liquidation (the after-liquidation policy then decides what comes next);
* a cap leaving less than ``DUST`` (1e-9) of the equity or of the initial capital opens nothing (a wallet left at
  maintenance minus the clearance fee is a rounding residue of either sign), and an order of at
  most ``DUST`` of the leg's position is not sent (a resizing to the same size, up to rounding);
* a liquidation price without a solution (``liq_price_isolated`` NaN) is the adverse extreme;
* funding is booked where ``funding_value`` is finite and non-zero;
* the slippage's volume term is skipped unless the venue's previous volume is ``> 0`` (NaN
  volume: skipped);
* a band of ``inf`` never makes a rebalance due (whatever the sign of the margin balances);
* the margin ratio at the close is measured on every bar a leg is open (an invalid bar: at its
  kept valuation price);
* with quote rates, every amount of a venue (its wallet, margin, PnL, fees, funding) stays in
  its quote and is booked in the account currency at the venue's rate at that moment (the
  open's rate at the open, the close's from the liquidation check on); the revaluation of its
  margin balance when the rate moves (twice a bar: to the open's rate before the arrival, to
  the close's after the orders) is booked in ``unhedged``;
* venue switching (several markets per leg, ``settings["venues"]``): a switch is read from a
  row with a finite, non-zero target naming another venue for a leg; it waits (no sizing of any
  kind) while a transfer is in flight; closing, the wallets sent, and the sizing on the new
  venues as soon as nothing is in flight, at the same bar for delay 0. Each leg's departure
  event names the venue left, its arrival the venue reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from tests.reference_engine import brackets_of, hedge_split, liq_price_isolated, maintenance

COMPONENTS = ("funding", "fees", "slippage", "borrow", "spot_price", "perp_price", "liquidation", "unhedged")
POLICIES = ("close_and_reenter", "close_spot", "hold_spot", "reenter")
#: A sizing cap below this fraction of the equity opens nothing (a rounding residue).
DUST = 1e-9


@dataclass
class Leg:
    """One venue's side of a column: an isolated perp position and its futures wallet."""

    name: str  # "A" or "B"
    market: object
    brackets: list
    fee_rate: float
    wallet: float
    pos: float = 0.0  # coins
    entry: float = 0.0  # entry price (cost = pos * entry)
    val: float = math.nan  # valuation price (NaN: never priced)
    spot: bool = False  # spot coins bought with the venue's quote cash (``wallet``): entry stays 0
    rate: float = 1.0  # account currency per unit of the venue's quote, now
    venue: int = 0  # index of the venue among the leg's venues

    @property
    def cost(self):
        return self.pos * self.entry

    def upnl(self, price=None):
        """Unrealized PnL at ``price`` (default: the valuation price); 0 when flat."""
        if self.pos == 0:
            return 0.0
        return self.pos * (self.val if price is None else price) - self.cost

    def margin_balance(self, price=None):
        return self.wallet + self.upnl(price)


@dataclass
class Column:
    a: Leg
    b: Leg
    in_flight: float = 0.0  # quote on its way (net of the transfer fee)
    flight_a: float = 0.0  # the part of it going to leg A's venue (the rest: leg B's)
    arrival_bar: int = -1
    idle: float = 0.0  # balances left on venues no leg is on (not worth a transfer)
    last_x: float = math.nan
    pend_close: bool = False
    reentry_bar: int = -1
    reb_due: bool = False
    capped: bool = False  # the last sizing was held short by the margin the wallets hold
    pnl: dict = field(default_factory=lambda: {k: 0.0 for k in COMPONENTS})

    def leg(self, name):
        return self.a if name == "A" else self.b

    def other(self, leg):
        return self.b if leg is self.a else self.a

    def equity(self):
        if self.a.rate == 1.0 and self.b.rate == 1.0:
            return self.a.wallet + self.b.wallet + self.in_flight + self.a.upnl() + self.b.upnl() + self.idle
        mb = self.a.margin_balance() * self.a.rate + self.b.margin_balance() * self.b.rate
        return mb + self.in_flight + self.idle


def run_reference_spread(leg_a, leg_b, targets, column_symbol, settings) -> dict:
    """Simulate every column of ``targets`` (T, C) as a spread hedge: leg A on ``leg_a``'s
    perp, leg B on ``leg_b``'s, coin ``column_symbol[c]`` of both.

    ``settings``: ``capital`` (quote per column), ``leverage``, ``fee_a``, ``fee_b``,
    ``slippage_bps``, ``impact``, ``clearance``, ``lag``, ``transfer_delay_bars``,
    ``transfer_fee``, ``band``, ``after_liquidation``, ``cooldown_bars``, ``tiers_a``,
    ``tiers_b``; optional ``leg_a`` (``"perp"``, ``"spot"``), ``leverage_a`` (leg A's perp
    leverage, default ``leverage``), ``rates_a``/``rates_b`` (``(open, close)`` arrays (T,), or (T, venues) when the legs switch venues:
    the account currency per unit of that venue's quote; default 1) and, for a borrowed spot leg
    A (a negative target), ``borrow_h`` (hourly rate), ``spot_level`` (the margin call's level)
    and ``spot_liq_fee`` (the buy-back's fee rate); ``cross`` True with ``groups`` (C,): the
    columns of a group share each venue's account (cross margin, :func:`cross_liquidate`).

    Returns a dict: ``equity``, ``s``, ``q``, ``mr_a``, ``mr_b``, ``in_flight`` (T, C),
    ``capped`` (T, C) bool (the column's ``capped`` flag at the close), ``components``
    {name: (T, C) cumulative} and ``events`` (list of tuples, by bar, then column, then in the
    order they happened).
    """
    targets = np.asarray(targets, dtype=float)
    T, C = targets.shape
    # venue switching: a list of markets per leg, ``venues`` (T, C) per leg, fees and tiers per venue
    markets = {"A": list(leg_a) if isinstance(leg_a, list) else [leg_a]}
    markets["B"] = list(leg_b) if isinstance(leg_b, list) else [leg_b]
    leg_a, leg_b = markets["A"][0], markets["B"][0]
    fees = {k: settings["fee_" + k.lower()] for k in "AB"}
    fees = {k: list(v) if isinstance(v, list) else [v] * len(markets[k]) for k, v in fees.items()}
    tiers = {k: settings["tiers_" + k.lower()] for k in "AB"}
    tiers = {k: list(v) if isinstance(v, list) else [v] * len(markets[k]) for k, v in tiers.items()}
    venues = settings.get("venues")  # (A's, B's) venue per row and column, NaN: stay
    assert leg_a.n_bars == T and leg_b.n_bars == T, "targets and markets must have the same bars"
    assert leg_a.n_symbols == leg_b.n_symbols
    capital = float(settings["capital"])
    L = float(settings["leverage"])
    slip_bps = float(settings["slippage_bps"])
    impact = float(settings["impact"])
    clearance = float(settings["clearance"])
    lag = int(settings["lag"])
    delay = int(settings["transfer_delay_bars"])
    fee_t = float(settings["transfer_fee"])
    band = float(settings["band"])
    policy = settings["after_liquidation"]
    spot_a = settings.get("leg_a", "perp") == "spot"  # leg A: spot coins, long only
    LA = float(settings.get("leverage_a", L))  # leg A's perp leverage (L: leg B's)
    by_share = spot_a or LA != L  # venues weighted by what each leg needs, else halves

    def share_a():
        """Venue A's share of the two margin balances: spot L / (L + 1); perps L_B / (L_A + L_B)."""
        return L / (L + 1) if spot_a else L / (LA + L)

    def per_unit():
        """Each leg's notional per unit of equity at the target: spot L / (L + 1); two perps
        L / 2, or L_A * L_B / (L_A + L_B) when they differ."""
        if spot_a:
            return L / (L + 1)
        return L / 2 if LA == L else LA * L / (LA + L)

    ones = np.ones(T)
    rates = {"A": settings.get("rates_a") or (ones, ones), "B": settings.get("rates_b") or (ones, ones)}

    def rate_of(leg, which, j):
        """Leg ``leg``'s venue's rate at bar ``j``'s open (``which`` 0) or close (1): rates are
        (T,) arrays, or (T, venues) ones when the legs switch venues."""
        r = np.asarray(rates[leg.name][which])
        return float(r[j, leg.venue] if r.ndim == 2 else r[j])

    borrow_h = float(settings.get("borrow_h", 0.0))
    spot_level = float(settings.get("spot_level", 1.1))
    spot_liq_fee = float(settings.get("spot_liq_fee", 0.02))
    bar_ms = int((leg_a.index[1] - leg_a.index[0]) / np.timedelta64(1, "ms")) if T > 1 else 3_600_000
    times_ms = leg_a.index.as_unit("ms").asi8
    cooldown = int(settings["cooldown_bars"])
    assert policy in POLICIES, policy
    assert lag >= 0 and delay >= 0 and cooldown >= 1
    step = max(lag, 1)  # target row i executes at bar i + step

    events = []
    out_eq = np.zeros((T, C))
    out_comp = {k: np.zeros((T, C)) for k in COMPONENTS}
    out_s = np.zeros((T, C))
    out_q = np.zeros((T, C))
    out_mr_a = np.full((T, C), np.nan)
    out_mr_b = np.full((T, C), np.nan)
    out_flight = np.zeros((T, C))
    out_capped = np.zeros((T, C), dtype=bool)
    out_fx = np.zeros((T, C))

    def target_venue(name, i, c):
        """The venue row ``i`` names for leg ``name`` of column ``c`` (None: stay)."""
        if venues is None or i < 0:
            return None
        v = venues[0 if name == "A" else 1][i, c]
        return None if math.isnan(v) else int(v)

    def first_venue(name, c):
        """Where a column starts: the first row with a non-zero target naming a venue, else the
        first row naming one, else venue 0."""
        rows = range(T)
        for i in rows:
            x = targets[i, c]
            if not math.isnan(x) and x != 0 and target_venue(name, i, c) is not None:
                return target_venue(name, i, c)
        return next((target_venue(name, i, c) for i in rows if target_venue(name, i, c) is not None), 0)

    def move_leg(leg, v, n):
        """``leg`` onto venue ``v`` (its market, brackets and fee), flat, wallet empty."""
        leg.venue, leg.market = v, markets[leg.name][v]
        leg.brackets, leg.fee_rate = brackets_of(tiers[leg.name][v], n), float(fees[leg.name][v])
        leg.wallet, leg.pos, leg.entry, leg.val = 0.0, 0.0, 0.0, math.nan

    def column(c):
        """Column ``c``'s bars, a generator: it stops after the orders of each bar (step 1, the
        close's rates) and at the bar's end, so that a cross portfolio's accounts are checked
        between the two halves (:func:`cross_liquidate`)."""
        n = int(column_symbol[c])
        col = Column(a=Leg("A", leg_a, [], 0.0, 0.0), b=Leg("B", leg_b, [], 0.0, 0.0))
        for leg in (col.a, col.b):
            move_leg(leg, first_venue(leg.name, c), n)
            leg.wallet = capital / 2
        if spot_a:  # the spot's venue holds N, the perp's N / L: L / (L + 1) and 1 / (L + 1)
            col.a.spot = True
            col.a.wallet = capital * (L / (L + 1))
            col.b.wallet = capital - col.a.wallet
        elif LA != L:  # margins N / L_A and N / L_B: L_B / (L_A + L_B) to venue A
            col.a.wallet = capital * (L / (LA + L))
            col.b.wallet = capital - col.a.wallet
        for leg in (col.a, col.b):  # each venue's share in its own quote, at the first open's rate
            leg.rate = rate_of(leg, 0, 0)
            if leg.rate != 1.0:
                leg.wallet /= leg.rate
        fx_total = [0.0]

        def move_rates(j, which):
            """The venues' rates to bar ``j``'s ``which`` (0: open, 1: close): each margin balance's
            revaluation into ``unhedged``."""
            for leg in (col.a, col.b):
                new = rate_of(leg, which, j)
                d = leg.margin_balance() * (new - leg.rate) if (leg.pos != 0 or leg.wallet != 0) else 0.0
                col.pnl["unhedged"] += d
                fx_total[0] += d
                leg.rate = new

        # ---------------------------------------------------------------- helpers
        def ref_price(leg, j):
            M = leg.market
            if leg.spot:
                return M.spot_close[j - 1, n] if lag == 0 else M.spot_open[j, n]
            return M.perp_close[j - 1, n] if lag == 0 else M.perp_open[j, n]

        def ref_valid(leg, j):
            M = leg.market
            if lag == 0:
                return j > 0 and bool(M.valid[j - 1, n])
            return bool(M.valid[j, n])

        def revalue(new_a, new_b):
            """Move the legs' valuation prices to ``new_a``/``new_b`` (None: that leg stays):
            hedged coins into the leg's price component, the rest into ``unhedged``."""
            hs, us, hq, uq = hedge_split(col.a.pos, col.b.pos)
            ra, rb = col.a.rate, col.b.rate
            if new_a is not None:
                if col.a.pos != 0:
                    col.pnl["spot_price"] += hs * (new_a - col.a.val) * ra
                    col.pnl["unhedged"] += us * (new_a - col.a.val) * ra
                col.a.val = new_a
            if new_b is not None:
                if col.b.pos != 0:
                    col.pnl["perp_price"] += hq * (new_b - col.b.val) * rb
                    col.pnl["unhedged"] += uq * (new_b - col.b.val) * rb
                col.b.val = new_b

        def fill(j, leg, dq):
            """Trade ``dq`` coins of ``leg`` at its reference price plus slippage (an order of at
            most ``DUST`` of the position is a rounding residue: not sent)."""
            if dq == 0 or abs(dq) <= DUST * abs(leg.pos):
                return
            M = leg.market
            ref = ref_price(leg, j)
            sl = slip_bps / 1e4
            if j > 0:
                vol = (M.spot_volume if leg.spot else M.perp_volume)[j - 1, n]
                if vol > 0:
                    sl += impact * abs(dq) / vol
            sl = min(sl, 0.5)  # the slippage cap (a fill at most 50% from its reference)
            price = ref * (1 + sl) if dq > 0 else ref * (1 - sl)
            fee = abs(dq) * price * leg.fee_rate
            r = leg.rate  # (the venue's amounts in the account currency)
            col.pnl["slippage"] += dq * (ref - price) * r
            col.pnl["fees"] -= fee * r
            if leg.spot:  # bought (sold) for quote cash
                leg.wallet -= dq * price + fee
                leg.pos += dq
                cash = float((-dq * price - fee) * r)
                events.append((j, c, "fill", leg.name, float(dq), float(price), cash, float(fee * r), leg.venue))
                return
            p = leg.pos
            realized = 0.0
            if p == 0 or (p > 0) == (dq > 0):  # open or add: average the entry
                leg.entry = (p * leg.entry + dq * price) / (p + dq)
                leg.pos = p + dq
            elif abs(dq) <= abs(p):  # reduce (or close)
                realized = -dq * (price - leg.entry)
                leg.pos = p + dq
                if leg.pos == 0:
                    leg.entry = 0.0
            else:  # flip: close all, open the rest at the price
                realized = p * (price - leg.entry)
                leg.pos = p + dq
                leg.entry = price
            leg.wallet += realized - fee
            cash = float((realized - fee) * r)
            events.append((j, c, "fill", leg.name, float(dq), float(price), cash, float(fee * r), leg.venue))

        def trade_to(j, s_new, q_new):
            fill(j, col.a, s_new - col.a.pos)
            fill(j, col.b, q_new - col.b.pos)

        def rebalance_collateral(j):
            """(c): both legs back to the last target's size on the equity, then half the
            margin-balance gap from the richer venue to the poorer."""
            ra, rb = col.a.rate, col.b.rate  # (amounts below in the account currency)
            if col.a.pos != 0 and col.b.pos != 0 and not math.isnan(col.last_x):
                E = col.a.margin_balance() * ra + col.b.margin_balance() * rb + col.in_flight
                N = max(E, 0.0) * abs(col.last_x) * per_unit()
                s_new = math.copysign(N / (col.a.val * ra), col.last_x)
                trade_to(j, s_new, -s_new)
                col.capped = False  # at the target's size: no longer held short
            mb_a, mb_b = col.a.margin_balance() * ra, col.b.margin_balance() * rb
            if by_share:  # each venue against its share of the two
                t_a = share_a() * (mb_a + mb_b)
                rich, poor = (col.b, col.a) if mb_a < t_a else (col.a, col.b)
                need = t_a - mb_a if mb_a < t_a else mb_a - t_a
            else:
                rich, poor = (col.a, col.b) if mb_a >= mb_b else (col.b, col.a)
                need = abs(mb_a - mb_b) / 2

            def free():
                if rich.spot:  # a spot leg's free quote is its cash; borrowed, what keeps its margin level at 2
                    return (rich.wallet - (2 * abs(rich.pos) * rich.val if rich.pos < 0 else 0.0)) * rich.rate
                return (rich.wallet - abs(rich.pos) * rich.val / (LA if rich is col.a else L)) * rich.rate

            if free() < need and rich.upnl() > 0 and not rich.spot:  # re-strike: realize the profit
                p = rich.pos
                fill(j, rich, -p)
                fill(j, rich, p)
            amount = min(need, free())
            if amount > fee_t:
                rich.wallet -= amount / rich.rate
                send(j, rich.venue, rich.name, poor, amount)
                if col.capped:  # a capped sizing with a flat leg: size once the transfer is in (its arrival bar)
                    col.capped = False
                    col.reentry_bar = j + delay

        def send(j, venue, name, dest, amount):
            """``amount`` (account currency, taken from leg ``name``'s venue ``venue``) on its way to
            ``dest``'s venue: the fee is a cost; it arrives at ``j + delay`` (now for delay 0)."""
            col.pnl["fees"] -= fee_t
            events.append((j, c, "transfer", name, math.nan, math.nan, float(-amount), fee_t, venue))
            net = amount - fee_t
            if delay == 0:
                dest.wallet += net / dest.rate
                events.append((j, c, "transfer", dest.name, math.nan, math.nan, float(net), 0.0, dest.venue))
                return
            col.in_flight += net
            if dest is col.a:
                col.flight_a += net
            col.arrival_bar = j + delay

        def arrive(j):
            for leg, amount in ((col.a, col.flight_a), (col.b, col.in_flight - col.flight_a)):
                if amount != 0:
                    leg.wallet += amount / leg.rate
                    events.append((j, c, "transfer", leg.name, math.nan, math.nan, float(amount), 0.0, leg.venue))
            col.in_flight, col.flight_a, col.arrival_bar = 0.0, 0.0, -1

        def liquidate_if_breached(j, leg):
            M = leg.market
            p = leg.pos
            if p == 0 or not M.valid[j, n] or leg.spot:  # a long spot leg is never liquidated
                return
            adv = M.mark_low[j, n] if p > 0 else M.mark_high[j, n]
            mb = leg.wallet + p * adv - leg.cost
            if mb > maintenance(leg.brackets, abs(p) * adv):
                return
            lp = liq_price_isolated(leg.brackets, leg.wallet, p, leg.entry)
            if math.isnan(lp):
                lp = adv
            mo = M.mark_open[j, n]
            lp = min(max(lp, mo), adv) if p < 0 else max(min(lp, mo), adv)
            revalue(lp if leg is col.a else None, lp if leg is col.b else None)
            realized = p * lp - leg.cost
            leg.wallet += realized
            fee = min(clearance * abs(p) * lp, max(leg.wallet, 0.0))
            leg.wallet -= fee
            r = leg.rate
            col.pnl["liquidation"] -= fee * r
            cover = 0.0
            if leg.wallet < 0:  # the insurance fund covers a negative wallet
                cover = -leg.wallet
                leg.wallet = 0.0
                col.pnl["liquidation"] += cover * r
            events.append(
                (
                    j,
                    c,
                    "liquidation",
                    leg.name,
                    float(-p),
                    float(lp),
                    float((realized - fee + cover) * r),
                    float(fee * r),
                    leg.venue,
                )
            )
            leg.pos, leg.entry, leg.val = 0.0, 0.0, lp
            after_liquidation(j, leg)

        def margin_call(j):
            """A borrowed spot leg A: venue A's margin level (cash / borrowed value) at or below
            ``spot_level`` on the path from the spot open to the high: bought back there."""
            leg = col.a
            M = leg.market
            if not leg.spot or leg.pos >= 0 or not M.valid[j, n]:
                return
            b = -leg.pos
            so, sh = M.spot_open[j, n], M.spot_high[j, n]
            if leg.wallet > spot_level * b * sh:
                return
            p = so if leg.wallet <= spot_level * b * so else leg.wallet / (spot_level * b)
            revalue(p, None)
            leg.wallet -= b * p
            fee = min(spot_liq_fee * b * p, max(leg.wallet, 0.0))
            leg.wallet -= fee
            r = leg.rate
            col.pnl["liquidation"] -= fee * r
            cover = 0.0
            if leg.wallet < 0:  # the insurance fund covers what the buy-back left owed
                cover = -leg.wallet
                leg.wallet = 0.0
                col.pnl["liquidation"] += cover * r
            cash = float((-b * p - fee + cover) * r)
            events.append((j, c, "liquidation", "A", float(b), float(p), cash, float(fee * r), leg.venue))
            leg.pos, leg.val = 0.0, p
            after_liquidation(j, leg)

        def after_liquidation(j, leg):
            left = col.other(leg).pos != 0
            if policy == "close_and_reenter":
                col.pend_close = left
                col.reentry_bar = j + cooldown
            elif policy == "close_spot":
                col.pend_close = left
            elif policy == "reenter":
                col.reentry_bar = j + 1
            col.reb_due = False
            col.capped = False

        def size_to(j, x):
            """(a): both legs to target ``x`` on the equity at the open (their reference prices)."""
            px_a, px_b = ref_price(col.a, j), ref_price(col.b, j)
            revalue(px_a, px_b)
            col.reentry_bar = -1
            col.pend_close = False
            col.last_x = x
            # the equity at the open; each venue margins only what it holds: at most
            # L * the poorer margin balance (after a liquidation one wallet is nearly empty)
            mb_a, mb_b = col.a.margin_balance() * col.a.rate, col.b.margin_balance() * col.b.rate
            E = mb_a + mb_b + col.in_flight
            if spot_a:  # spot N and margin N / L: N = E * L / (L + 1); A buys only what it holds
                N = max(E, 0.0) * abs(x) * L / (L + 1)
                room = max(min(mb_a, mb_b * L), 0.0)
            elif LA == L:
                N = max(E, 0.0) * abs(x) * L / 2
                room = max(min(mb_a, mb_b), 0.0) * L
            else:  # margins N / L_A + N / L_B = E
                N = max(E, 0.0) * abs(x) * per_unit()
                room = max(min(mb_a * LA, mb_b * L), 0.0)
            if room <= DUST * max(E, capital):  # a rounding residue, not a wallet
                room = 0.0
            col.capped = room < N * (1 - DUST)  # short by more than a rounding residue
            N = min(N, room)
            s_new = math.copysign(N / (px_a * col.a.rate), x) if x != 0 else 0.0
            trade_to(j, s_new, -s_new if s_new != 0 else 0.0)

        def switch(j, x, to):
            """Target ``x`` on other venues: a leg changing venue or side closes; each venue left
            sends its wallet to the leg's new venue (a balance of at most the fee stays, idle); the
            column sizes on the new venues once nothing is in flight (now, if nothing is)."""
            side = 1.0 if x > 0 else -1.0
            moves = {"A": to[0] is not None and to[0] != col.a.venue, "B": to[1] is not None and to[1] != col.b.venue}
            keep = settings.get("switch_keeps_leg", True)
            if col.a.pos != 0 and (moves["A"] or (col.a.pos > 0) != (side > 0) or not keep):
                fill(j, col.a, -col.a.pos)
            if col.b.pos != 0 and (moves["B"] or (col.b.pos > 0) != (side < 0) or not keep):
                fill(j, col.b, -col.b.pos)
            for leg, v in ((col.a, to[0]), (col.b, to[1])):
                if not moves[leg.name]:
                    continue
                amount, left = leg.wallet * leg.rate, leg.venue  # (at the rate of the venue left)
                move_leg(leg, v, n)
                leg.rate = rate_of(leg, 0, j)  # (the new venue's, at this open: what arrives is credited at it)
                if amount > fee_t and amount > 0:
                    send(j, left, leg.name, leg, amount)
                else:
                    col.idle += amount
            col.last_x = x
            col.pend_close = col.reb_due = col.capped = False
            col.reentry_bar = col.arrival_bar if col.in_flight != 0 else j
            if col.reentry_bar == j and ref_valid(col.a, j) and ref_valid(col.b, j):
                size_to(j, x)

        def margin_ratio(leg):
            if leg.spot and leg.pos < 0:  # the call level over the margin level (1 at the call)
                return spot_level * -leg.pos * leg.val / leg.wallet if leg.wallet > 0 else math.inf
            if leg.pos == 0 or leg.spot:
                return math.nan
            mb = leg.margin_balance()
            mm = maintenance(leg.brackets, abs(leg.pos) * leg.val)
            return mm / mb if mb > 0 else math.inf

        # ---------------------------------------------------------------- bars
        handles[c] = {"c": c, "col": col, "n": n, "revalue": revalue, "after_liquidation": after_liquidation}
        for j in range(T):
            move_rates(j, 0)  # the venues' balances at the open's rates
            b_prev = max(-col.a.pos, 0.0) if spot_a else 0.0  # coins borrowed before the bar
            # 0. arrival
            if col.in_flight != 0 and j >= col.arrival_bar:
                arrive(j)

            # 1. orders
            if ref_valid(col.a, j) and ref_valid(col.b, j):
                i = j - step
                x = targets[i, c] if i >= 0 else math.nan
                to = None  # a switch of venues: (leg A's venue, leg B's), each None to stay
                if not math.isnan(x) and x != 0:
                    ta, tb = target_venue("A", i, c), target_venue("B", i, c)
                    if (ta is not None and ta != col.a.venue) or (tb is not None and tb != col.b.venue):
                        to = (ta, tb)
                kind = None
                if to is not None and col.in_flight == 0:
                    kind = "switch"
                elif to is None and not math.isnan(x) and x != col.last_x:
                    kind = "size"
                elif to is None and col.reentry_bar >= 0 and j >= col.reentry_bar:
                    kind = "size"
                    if math.isnan(x):
                        x = col.last_x
                    assert not math.isnan(x), "a re-entry without a target"
                elif col.pend_close:
                    kind = "close"
                elif col.reb_due:
                    kind = "rebalance"
                if kind is not None:
                    revalue(ref_price(col.a, j), ref_price(col.b, j))
                    if kind == "switch":
                        switch(j, x, to)
                    elif kind == "size":
                        size_to(j, x)
                    elif kind == "close":
                        trade_to(j, 0.0, 0.0)
                        col.pend_close = False
                    else:
                        rebalance_collateral(j)
                        col.reb_due = False

            move_rates(j, 1)  # the close's rates from here on
            yield  # (a cross portfolio's accounts are checked here)
            b_open = max(-col.a.pos, 0.0) if spot_a else 0.0  # (after the open's fills)
            # 2. liquidation, leg A (a borrowed spot leg's margin call) then leg B
            margin_call(j)
            if "A" not in cross_legs:  # (a cross account is checked as a whole)
                liquidate_if_breached(j, col.a)
            if "B" not in cross_legs:
                liquidate_if_breached(j, col.b)

            # 3. funding (also on invalid bars)
            for leg in (col.a, col.b):
                if leg.spot:
                    continue
                M = leg.market
                fv = M.funding_value[j, n]
                if leg.pos != 0 and fv != 0 and math.isfinite(fv):
                    amount = -leg.pos * fv
                    leg.wallet += amount
                    col.pnl["funding"] += amount * leg.rate
                    rate = M.funding_rate[j, n]
                    price = fv / rate if rate != 0 else math.nan
                    cash = float(amount * leg.rate)
                    events.append((j, c, "funding", leg.name, float(leg.pos), float(price), cash, 0.0, leg.venue))

            # 4. close: each leg to its mark close where its bar is valid
            va_ok, vb_ok = bool(col.a.market.valid[j, n]), bool(col.b.market.valid[j, n])
            close_a = col.a.market.spot_close if spot_a else col.a.market.mark_close
            revalue(close_a[j, n] if va_ok else None, col.b.market.mark_close[j, n] if vb_ok else None)

            # 4b. borrow interest of a borrowed spot leg A, in whole hours (Binance: one hour at
            # borrowing, one at each full hour the loan is outstanding)
            b_close = max(-col.a.pos, 0.0) if spot_a else 0.0
            if b_open > 0 or b_close > 0:
                t = int(times_ms[j])
                h_open = 1.0 if t % 3_600_000 == 0 else 0.0
                h_in = float((t + bar_ms - 1) // 3_600_000 - t // 3_600_000)
                coins = h_open * b_open + (1 - h_open) * max(b_open - b_prev, 0.0) + h_in * b_close
                amount = borrow_h * col.a.val * coins
                if amount != 0:
                    col.a.wallet -= amount
                    col.pnl["borrow"] -= amount * col.a.rate
                    cash = float(-amount * col.a.rate)
                    events.append((j, c, "borrow", "A", float(col.a.pos), float(col.a.val), cash, 0.0, col.a.venue))

            # 5. outputs
            eq = col.equity()
            total = sum(col.pnl.values())
            assert abs(eq - capital - total) <= 1e-9 * capital, (
                f"identity broken at bar {j} column {c}: equity {eq!r} - capital {capital!r} != {total!r}"
            )
            out_eq[j, c] = eq
            for k in COMPONENTS:
                out_comp[k][j, c] = col.pnl[k]
            out_s[j, c] = col.a.pos
            out_q[j, c] = col.b.pos
            out_mr_a[j, c] = margin_ratio(col.a)
            out_mr_b[j, c] = margin_ratio(col.b)
            out_flight[j, c] = col.in_flight
            out_capped[j, c] = col.capped
            out_fx[j, c] = fx_total[0]

            # 6. collateral check (decided at the close, done at the next order bar)
            # with both legs open, or after a capped sizing (a flat leg counts with mb = its wallet)
            both_open = col.a.pos != 0 and col.b.pos != 0
            if col.in_flight == 0 and (both_open or col.capped) and va_ok and vb_ok:
                mb_a, mb_b = col.a.margin_balance() * col.a.rate, col.b.margin_balance() * col.b.rate
                if by_share:
                    t_a = share_a() * (mb_a + mb_b)
                    low = mb_a < (1 - band) * t_a or mb_b < (1 - band) * (mb_a + mb_b - t_a)
                    col.reb_due = math.isfinite(band) and low
                else:
                    col.reb_due = math.isfinite(band) and min(mb_a, mb_b) < (1 - band) * (mb_a + mb_b) / 2
            yield

    # ---------------------------------------------------------------- cross margin per venue
    def price_on_path(h, leg, j, lam):
        """The leg's mark at the point ``lam`` of bar ``j``'s path from the open to its adverse
        extreme (an invalid bar: its valuation price)."""
        M, n = leg.market, h["n"]
        if not M.valid[j, n]:
            return leg.val
        adv = M.mark_low[j, n] if leg.pos > 0 else M.mark_high[j, n]
        return M.mark_open[j, n] + lam * (adv - M.mark_open[j, n])

    def cross_liquidate(j, cols, name):
        """A portfolio's account on leg ``name``'s venue: margin balance (every column's wallet
        there plus its perp's unrealized PnL) against the maintenance margin, each perp at its
        adverse extreme; breached: all its perps close at the first point of their paths where
        the two meet, the account paying each fee while it has money, the insurance fund covering
        a deficit (on the last leg closed), then the columns' negative wallets made whole by the
        others in proportion to their balances."""
        hs = [handles[c] for c in cols]
        legs = [(h, h["col"].leg(name)) for h in hs]
        open_ = [(h, leg) for h, leg in legs if leg.pos != 0 and not leg.spot]
        if not open_ or not any(leg.market.valid[j, h["n"]] for h, leg in open_):
            return

        def gap(lam):  # margin balance minus maintenance margin at ``lam``
            bal = sum(leg.wallet for _, leg in legs)
            upnl = sum(leg.pos * price_on_path(h, leg, j, lam) - leg.cost for h, leg in open_)
            mm = sum(maintenance(leg.brackets, abs(leg.pos) * price_on_path(h, leg, j, lam)) for h, leg in open_)
            return bal + upnl - mm

        if gap(1.0) > 0:
            return
        lam = 0.0
        if gap(0.0) > 0:
            lo, hi = 0.0, 1.0
            for _ in range(100):
                mid = 0.5 * (lo + hi)
                if gap(mid) <= 0:
                    hi = mid
                else:
                    lo = mid
            lam = hi
        account = sum(leg.wallet for _, leg in legs)
        last = None
        for h, leg in open_:
            col, p = h["col"], leg.pos
            lp = price_on_path(h, leg, j, lam)
            h["revalue"](lp if name == "A" else None, lp if name == "B" else None)
            realized = p * lp - leg.cost
            fee = min(clearance * abs(p) * lp, max(account + realized, 0.0))
            leg.wallet += realized - fee
            account += realized - fee
            col.pnl["liquidation"] -= fee * leg.rate
            events.append(
                [j, h["c"], "liquidation", name, float(-p), float(lp), (realized - fee) * leg.rate, fee * leg.rate, 0]
            )
            last = (h, leg, events[-1])
            leg.pos, leg.entry, leg.val = 0.0, 0.0, lp
            h["after_liquidation"](j, leg)
        if account < 0:  # the insurance fund
            h, leg, ev = last
            cover = -account
            leg.wallet += cover
            h["col"].pnl["liquidation"] += cover * leg.rate
            ev[6] += cover * leg.rate
        for k, ev in enumerate(events):
            if isinstance(ev, list):
                events[k] = tuple(ev)
        owed = sum(-leg.wallet for _, leg in legs if leg.wallet < 0)
        held = sum(leg.wallet for _, leg in legs if leg.wallet >= 0)
        if owed > 0 and held > 0:
            f = min(owed / held, 1.0)
            for h, leg in legs:
                d = -leg.wallet if leg.wallet < 0 else -leg.wallet * f
                if d != 0:
                    leg.wallet += d
                    h["col"].pnl["liquidation"] += d * leg.rate
                    events.append((j, h["c"], "transfer", name, math.nan, math.nan, d * leg.rate, 0.0, 0))

    def account_ratio(cols, name, j):
        """The account's margin ratio at the close, on each column holding a perp there."""
        legs = [handles[c]["col"].leg(name) for c in cols]
        open_ = [leg for leg in legs if leg.pos != 0 and not leg.spot]
        if not open_:
            return
        mb = sum(leg.wallet for leg in legs) + sum(leg.upnl() for leg in open_)
        mm = sum(maintenance(leg.brackets, abs(leg.pos) * leg.val) for leg in open_)
        out = out_mr_a if name == "A" else out_mr_b
        for c, leg in zip(cols, legs):
            out[j, c] = (mm / mb if mb > 0 else math.inf) if leg.pos != 0 else math.nan

    handles: dict = {}
    cross = bool(settings.get("cross", False))
    cross_legs = tuple(settings.get("cross_legs", ("B",) if spot_a else ("A", "B"))) if cross else ()
    groups = np.asarray(settings.get("groups", np.arange(C)))
    portfolios = [list(np.flatnonzero(groups == g)) for g in dict.fromkeys(groups.tolist())]
    runs = [column(c) for c in range(C)]
    for j in range(T):
        for r in runs:
            next(r)  # up to the orders
        if cross:
            for cols in portfolios:
                for name in cross_legs:
                    cross_liquidate(j, cols, name)
        for r in runs:
            next(r)  # the rest of the bar
        if cross:
            for cols in portfolios:
                for name in cross_legs:
                    account_ratio(cols, name, j)

    events.sort(key=lambda e: (e[0], e[1]))  # bar-major, column next; a stable sort keeps each bar's order
    return {
        "equity": out_eq,
        "components": out_comp,
        "s": out_s,
        "q": out_q,
        "mr_a": out_mr_a,
        "mr_b": out_mr_b,
        "in_flight": out_flight,
        "capped": out_capped,
        "quote_fx": out_fx,
        "events": events,
    }

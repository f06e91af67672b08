"""A slow, plain-Python reference of the engine's rules (README: "The rules carry follows"), for comparison tests.

Written for reading, not speed: one object per column, one per portfolio, explicit wallets,
an entry price (not a cost basis) for the perp, and every cash flow booked in a named
component. It follows the same order of operations as the kernel (see
``backtest/kernels/simulate.py``) but shares no code with it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

COMPONENTS = ("funding", "fees", "slippage", "borrow", "spot_price", "perp_price", "liquidation")


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
    close_spot_next: bool = False
    reenter_next: bool = False
    topup_bar: int = -1
    pnl: dict = field(default_factory=lambda: {k: 0.0 for k in COMPONENTS})


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


def run_reference(market, targets, config, column_params=None, tiers=None):
    """Simulate; returns dict with group_equity (T, G), comps {name: (T, C)}, spot, perp, events."""
    from backtest.engine import tier_table
    from data.units import bar_hours

    cp = dict(column_params or {})
    T, C = targets.values.shape

    def p(name, j, c):
        v = cp[name] if name in cp else getattr(config, name)
        if v is None:
            return math.nan if name == "topup_margin_ratio" else math.inf
        a = np.asarray(v, dtype=float)
        if a.ndim == 0:
            return float(a)
        if a.ndim == 1:
            return float(a[c])
        return float(a[j if a.shape[0] > 1 else 0, c if a.shape[1] > 1 else 0])

    tiers = tiers or tier_table(market, config)
    hours = bar_hours(market)
    cross = config.margin_mode in ("cross", "portfolio")
    # portfolio margin: the spot wallet is collateral (long spot at 1 - h, short at 1 + h)
    haircut = config.spot_collateral_haircut if config.margin_mode == "portfolio" else None
    taker = config.order_type == "taker"
    delay = config.execution_delay_bars
    lag = max(delay, 1)
    groups = sorted(set(int(g) for g in targets.group))
    members = {g: [c for c in range(C) if targets.group[c] == g] for g in groups}
    cols = [Column(symbol=int(targets.column_symbol[c])) for c in range(C)]
    cash = {g: config.initial_capital_quote for g in groups}
    xwallet = {g: 0.0 for g in groups}  # cross futures wallet
    xtopup = {g: -1 for g in groups}
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
            xwallet[g] += amount
        else:
            cols[c].wallet += amount

    def fill(j, g, c, leg, dq):
        col = cols[c]
        n = col.symbol
        ref = ref_price(leg, j, n)
        vol = (M.spot_volume if leg == "spot" else M.perp_volume)[j - 1, n] if j > 0 else 0.0
        slip = p("slippage_bps", j, c) / 1e4
        k = p("volume_participation_coefficient", j, c)
        if k > 0 and vol > 0:
            slip += k * abs(dq) / vol
        price = ref * (1 + slip) if dq > 0 else ref * (1 - slip)
        rate = p(f"{leg}_{'taker' if taker else 'maker'}_fee_rate", j, c)
        fee = abs(dq) * price * rate
        col.pnl["fees"] -= fee
        col.pnl["slippage"] -= abs(dq) * abs(price - ref)
        if leg == "spot":
            cash[g] -= dq * price + fee
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
        cash[g] -= amount
        wallet_add(g, c, amount)
        events.append((j, c if not cross else -1 - g, "transfer", None, math.nan, math.nan, amount))

    def set_target_margin(j, g, cs):
        need = sum(abs(cols[c].perp) * cols[c].perp_mark / p("perp_leverage", j, c) for c in cs if cols[c].perp)
        have = xwallet[g] if cross else cols[cs[0]].wallet
        if abs(need - have) > 1e-9:  # skip rounding noise, as the kernel does
            transfer(j, g, cs[0], need - have)

    def upnl(c):
        col = cols[c]
        return col.perp * (col.perp_mark - col.entry) if col.perp else 0.0

    def liquidate(j, c, g, price):
        col = cols[c]
        col.pnl["perp_price"] += col.perp * (price - col.perp_mark)
        realized = col.perp * (price - col.entry)
        fee = p("clearance_fee_rate", j, c) * abs(col.perp) * price
        wallet_add(g, c, realized - fee)
        col.pnl["liquidation"] -= fee
        events.append((j, c, "liquidation", "perp", -col.perp, price, realized - fee))
        col.perp, col.entry, col.perp_mark = 0.0, 0.0, price
        if config.after_liquidation == "close_spot":
            col.close_spot_next = col.spot != 0
        elif config.after_liquidation == "reenter":
            col.reenter_next = True

    for j in range(T):
        for g in groups:
            cs = members[g]
            # 1. open: mark both legs at the reference prices
            for c in cs:
                col = cols[c]
                n = col.symbol
                if ref_ok(j, n):
                    s_ref, p_ref = ref_price("spot", j, n), ref_price("perp", j, n)
                    if col.spot:
                        col.pnl["spot_price"] += col.spot * (s_ref - col.spot_mark)
                    if col.perp:
                        col.pnl["perp_price"] += col.perp * (p_ref - col.perp_mark)
                    col.spot_mark, col.perp_mark = s_ref, p_ref
            if j >= lag:
                # 2. top-ups
                jobs = []
                if cross and xtopup[g] == j:
                    xtopup[g] = -1
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
                    have = (xwallet[g] if cross else cols[job[0]].wallet) + sum(upnl(c) for c in job)
                    need = (
                        sum(
                            abs(cols[c].perp) * cols[c].perp_mark / p("perp_leverage", j, c)
                            for c in job
                            if cols[c].perp
                        )
                        - have
                    )
                    if need <= 0:
                        continue
                    for c in job:
                        short = need - max(cash[g], 0.0)
                        if short <= 0:
                            break
                        if cols[c].spot > 0 and ref_ok(j, cols[c].symbol):
                            fill(j, g, c, "spot", -min(cols[c].spot, short / ref_price("spot", j, cols[c].symbol)))
                    amount = min(need, max(cash[g], 0.0))
                    if amount > 1e-9:
                        transfer(j, g, job[0], amount)
                # 3. orders
                equity = cash[g] + sum(cols[c].spot * cols[c].spot_mark for c in cs if cols[c].spot)
                equity += (xwallet[g] if cross else sum(cols[c].wallet for c in cs)) + sum(upnl(c) for c in cs)
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
                    if not ref_ok(j, n):
                        continue
                    x = targets.values[i, c]
                    if col.reenter_next:  # policy 'reenter': trade back to the last target now
                        x = col.last_target if math.isnan(x) else x
                        col.last_target = math.nan
                        col.reenter_next = False
                    want_s, want_q = col.spot, col.perp
                    if not math.isnan(x) and x != col.last_target:
                        share = wt(c) / total if (x != 0 and total > 0) else 0.0
                        L = p("perp_leverage", j, c)
                        notional = max(equity, 0.0) * share * abs(x) * L / (L + 1)  # nothing to invest when broke
                        want_s = math.copysign(notional, x) / ref_price("spot", j, n) if x != 0 else 0.0
                        want_q = -want_s
                        col.last_target = x
                        col.close_spot_next = False
                    elif col.close_spot_next:
                        want_s = 0.0
                        col.close_spot_next = False
                    elif col.spot != 0 and abs(col.spot + col.perp) > p("rebalance_delta_band", j, c) * abs(col.spot):
                        want_q = -col.spot
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
            # 4. liquidation against the adverse mark extreme
            if not cross:
                for c in cs:
                    col = cols[c]
                    n = col.symbol
                    if col.perp == 0 or not M.valid[j, n]:
                        continue
                    br = brackets_of(tiers, n)
                    worst = M.mark_high[j, n] if col.perp < 0 else M.mark_low[j, n]
                    if col.wallet + col.perp * (worst - col.entry) > maintenance(br, abs(col.perp) * worst):
                        continue
                    lp = liq_price_isolated(br, col.wallet, col.perp, col.entry)
                    lp = worst if math.isnan(lp) else lp
                    if col.perp < 0:
                        lp = min(max(lp, M.mark_open[j, n]), worst)
                    else:
                        lp = max(min(lp, M.mark_open[j, n]), worst)
                    liquidate(j, c, g, lp)
                    col.topup_bar = -1
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

                def pm_breached(lam):
                    mb, mm = xwallet[g] + cash[g], 0.0
                    for c in cs:
                        col = cols[c]
                        m, ratio = pm_path(c, lam)
                        if col.perp:
                            mb += col.perp * m - col.perp * col.entry
                            mm += maintenance(brackets_of(tiers, col.symbol), abs(col.perp) * m)
                        if col.spot:
                            mb += col.spot * col.spot_mark * ratio * weight(col)
                    return mb <= mm

                if open_cs and pm_breached(1.0):
                    if pm_breached(0.0):
                        lam = 0.0
                    else:
                        lo, hi = 0.0, 1.0
                        for _ in range(100):
                            mid = 0.5 * (lo + hi)
                            lo, hi = (lo, mid) if pm_breached(mid) else (mid, hi)
                        lam = hi
                    prices = {c: pm_path(c, lam)[0] for c in open_cs}
                    for c in open_cs:
                        liquidate(j, c, g, prices[c])
            else:
                open_cs = [c for c in cs if cols[c].perp != 0]

                def path(c, lam):
                    n = cols[c].symbol
                    if not M.valid[j, n]:
                        return cols[c].perp_mark
                    worst = M.mark_high[j, n] if cols[c].perp < 0 else M.mark_low[j, n]
                    return M.mark_open[j, n] + lam * (worst - M.mark_open[j, n])

                def breached(lam, at_worst=False):
                    mb, mm = xwallet[g], 0.0
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
                    return mb <= mm

                if open_cs and breached(1.0, at_worst=True):
                    if breached(0.0):
                        lam = 0.0
                    else:
                        lo, hi = 0.0, 1.0
                        for _ in range(100):
                            mid = 0.5 * (lo + hi)
                            lo, hi = (lo, mid) if breached(mid) else (mid, hi)
                        lam = hi
                    for c in open_cs:
                        liquidate(j, c, g, path(c, lam))
                    xtopup[g] = -1
            # 5-7. funding, close marks, borrow
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
                    if col.spot:
                        col.pnl["spot_price"] += col.spot * (M.spot_close[j, n] - col.spot_mark)
                    if col.perp:
                        col.pnl["perp_price"] += col.perp * (M.mark_close[j, n] - col.perp_mark)
                    col.spot_mark, col.perp_mark = M.spot_close[j, n], M.mark_close[j, n]
                if col.spot < 0:
                    if config.borrow_rate_source == "market":
                        series = M.borrow_hourly_rate[: j + 1, n]
                        ok = series[np.isfinite(series)]
                        hourly = ok[-1] if len(ok) else 0.0
                    else:
                        hourly = p("borrow_annual_rate", j, c) / (365 * 24)
                    interest = -col.spot * col.spot_mark * hourly * hours
                    if interest != 0:
                        cash[g] -= interest
                        col.pnl["borrow"] -= interest
                        events.append((j, c, "borrow", "spot", col.spot, col.spot_mark, -interest))
            # 8. margin ratio, top-up detection, outputs
            eq = cash[g] + xwallet[g]
            gmb, gmm = xwallet[g], 0.0
            for c in cs:
                col = cols[c]
                eq += col.spot * col.spot_mark if col.spot else 0.0
                eq += col.wallet + upnl(c)
                if col.perp:
                    mm = maintenance(brackets_of(tiers, col.symbol), abs(col.perp) * col.perp_mark)
                    if cross:
                        gmb += upnl(c)
                        gmm += mm
                    else:
                        mb = col.wallet + upnl(c)
                        ratio = mm / mb if mb > 0 else math.inf
                        out_mr[j, c] = ratio
                        if ratio >= p("topup_margin_ratio", j, c) and col.topup_bar < 0:
                            col.topup_bar = j + 1 + config.topup_delay_bars
                for k in COMPONENTS:
                    out[k][j, c] = col.pnl[k]
                out_spot[j, c] = col.spot
                out_perp[j, c] = col.perp
            if haircut is not None:  # the spot wallet is collateral too
                gmb += cash[g] + sum(
                    cols[c].spot * cols[c].spot_mark * (1 - haircut if cols[c].spot > 0 else 1 + haircut)
                    for c in cs
                    if cols[c].spot
                )
            if cross and any(cols[c].perp for c in cs):
                ratio = gmm / gmb if gmb > 0 else math.inf
                for c in cs:
                    if cols[c].perp:
                        out_mr[j, c] = ratio
                if ratio >= p("topup_margin_ratio", j, cs[0]) and xtopup[g] < 0:
                    xtopup[g] = j + 1 + config.topup_delay_bars
            out_eq[j, groups.index(g)] = eq
    return {
        "group_equity": out_eq,
        "comps": out,
        "spot": out_spot,
        "perp": out_perp,
        "margin_ratio": out_mr,
        "events": events,
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

"""Hand-computed desk position rules (issue 12): rebalancing on a schedule and on a band, the
hedge-keeping top-up, re-entry after a cool-down, the borrowed spot leg's margin account, the
clearance fee floored at the margin left and the insurance cover, the bankruptcy stop,
whole-hour borrow, the ``unhedged`` component and the margin ratio at a liquidation bar.

Each case is a tiny market built here with numbers worked out by hand (written below as
arithmetic). Each runs twice: against the plain-Python reference (``tests/reference_engine.py``,
``test_*``) and against the engine (``test_*_engine``), where the engine must also agree with
the reference on every output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from backtest.targets import Targets
from data.market import Market
from tests.reference_engine import COMPONENTS, run_reference

#: No costs, no rebalancing: each case turns on what it tests.
BASE = dict(
    initial_capital_quote=10_000.0,
    spot_taker_fee_rate=0.0,
    perp_taker_fee_rate=0.0,
    slippage_bps=0.0,
    borrow_annual_rate=0.0,
    maintenance_margin_rate=0.005,
    clearance_fee_rate=0.0,
    rebalance_every_hours=None,
    rebalance_notional_band=None,
)
EVENT_FIELDS = ("bar", "column", "kind", "leg", "qty", "price", "cash", "fee", "rate")


# --------------------------------------------------------------------------- helpers
def config(cfg_kwargs):
    """The engine config of a case."""
    return BacktestConfig(**{**BASE, **cfg_kwargs})


def market(T, freq="1h", spot=100.0, perp=None, mark=None, start="2024-01-01", **kw):
    """One symbol, bars of ``freq`` from ``start`` (UTC). Each leg is a price (flat), a (T,) path
    (open = high = low = close) or a dict of (T,) paths (open required; mark defaults to perp)."""
    idx = pd.date_range(start, periods=T, freq=freq, tz="UTC")

    def leg(x):
        if x is None:
            return None
        if isinstance(x, dict):
            return {k: np.asarray(v, float).reshape(T, 1) for k, v in x.items()}
        return np.broadcast_to(np.asarray(x, float), (T,)).reshape(T, 1).copy()

    return Market.from_arrays(
        idx, ["BTCUSDT"], freq=freq, spot=leg(spot), perp=leg(spot if perp is None else perp), mark=leg(mark), **kw
    )


def path(T, base, **changes):
    """A (T,) price path at ``base`` with ``{bar: price}`` overrides given as ``b<bar>=price``."""
    a = np.full(T, float(base))
    for k, v in changes.items():
        a[int(k[1:])] = v
    return a


@dataclass
class View:
    """The outputs of one run (reference or engine) in one shape: arrays (T, C) or (T, G) and
    events as a frame with the bar position."""

    spot: np.ndarray
    perp: np.ndarray
    comps: dict
    equity: np.ndarray  # group equity (T, G)
    mr: np.ndarray
    events: pd.DataFrame
    stopped: dict

    def comp(self, name, c=0):
        return self.comps[name][:, c]

    def ev(self, kind, leg=None, bar=None):
        e = self.events[self.events.kind == kind]
        if leg is not None:
            e = e[e.leg == leg]
        if bar is not None:
            e = e[e.bar == bar]
        return e.reset_index(drop=True)

    def fill_bars(self, leg):
        return sorted(set(self.ev("fill", leg).bar))


def reference_view(m, tg, cfg):
    """The reference's run, which keeps the identity: equity - initial = the sum of the 8
    components, at every bar."""
    ref = run_reference(m, tg, cfg)
    total = sum(ref["comps"][k] for k in COMPONENTS).sum(axis=1)
    assert ref["group_equity"][:, 0] - cfg.initial_capital_quote == approx(total), "identity"
    rows = [(*e[:7], *(e[7:] if len(e) > 7 else (math.nan, math.nan))) for e in ref["events"]]
    return View(
        spot=ref["spot"],
        perp=ref["perp"],
        comps=ref["comps"],
        equity=ref["group_equity"],
        mr=ref["margin_ratio"],
        events=pd.DataFrame(rows, columns=list(EVENT_FIELDS)),
        stopped=ref["stopped"],
    )


def engine_view(m, tg, cfg):
    res = run_backtest(m, tg, cfg)
    ev = res.events
    frame = pd.DataFrame(
        {
            "bar": m.index.get_indexer(ev.bar),
            "column": ev.column.to_numpy(),
            "kind": ev.kind.to_numpy(),
            "leg": ev.leg.to_numpy(),
            **{k: ev[k].to_numpy() for k in ("qty", "price", "cash", "fee", "rate")},
        }
    )
    stops = frame[frame.kind == "stop"]
    return View(
        spot=res.spot_qty.to_numpy(),
        perp=res.perp_qty.to_numpy(),
        comps={k: res.components[k].to_numpy() for k in COMPONENTS},
        equity=res.group_equity.to_numpy(),
        mr=res.margin_ratio.to_numpy(),
        events=frame,
        stopped={int(g): (int(stops.bar.iloc[0]) if len(stops) else None) for g in res.group_ids},
    )


class Runs:
    """The reference run, and the engine run on first access (checked against the reference on
    every output)."""

    def __init__(self, m, tg, cfg):
        self.m, self.tg, self.cfg = m, tg, cfg
        self.reference = reference_view(m, tg, cfg)
        self._engine = None

    @property
    def engine(self):
        if self._engine is None:
            self._engine = engine_view(self.m, self.tg, self.cfg)
            assert_agree(self._engine, self.reference)
        return self._engine

    def __getitem__(self, side):
        return self.reference if side == "reference" else self.engine


def both(m, targets, cfg_kwargs):
    """Run the reference now and the engine (when it knows the issue-12 settings) on demand:
    ``both(...)["reference"]``, ``both(...)["engine"]``."""
    tg = targets if isinstance(targets, Targets) else Targets.from_array(m, targets)
    return Runs(m, tg, config(cfg_kwargs))


def close(a, b, scale):
    a, b = np.asarray(a, float), np.asarray(b, float)
    same = (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & np.isinf(b) & (np.sign(a) == np.sign(b)))
    with np.errstate(invalid="ignore"):
        return same | (np.abs(a - b) <= 1e-9 * np.maximum(scale, np.maximum(np.abs(a), np.abs(b))))


def assert_agree(eng, ref):
    """The engine and the reference agree on every output of a run."""
    pairs = [("spot", eng.spot, ref.spot, 1.0), ("perp", eng.perp, ref.perp, 1.0)]
    pairs += [("group equity", eng.equity, ref.equity, 1e4), ("margin ratio", eng.mr, ref.mr, 1e-3)]
    pairs += [(k, eng.comps[k], ref.comps[k], 1e4) for k in COMPONENTS]
    for what, a, b, scale in pairs:
        ok = close(a, b, scale)
        assert ok.all(), f"{what}: engine {a[~ok][0]!r} vs reference {b[~ok][0]!r} at {np.argwhere(~ok)[0]}"
    key = ["bar", "kind", "leg", "column"]
    for kind in ("fill", "liquidation", "borrow", "stop", "skip"):
        a = eng.ev(kind).sort_values(key, kind="stable").reset_index(drop=True)
        b = ref.ev(kind).sort_values(key, kind="stable").reset_index(drop=True)
        assert len(a) == len(b), f"{kind} events: engine {len(a)} vs reference {len(b)}"
        cols = ["qty", "price", "cash"] + (["fee", "rate"] if kind == "liquidation" else [])
        for f in cols:
            assert close(a[f], b[f], 1e4).all(), f"{kind} events, {f}: engine {list(a[f])} vs reference {list(b[f])}"


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-9)


# --------------------------------------------------------------------------- rebalance on schedule
def case_rebalance_on_schedule(side):
    """6h bars, rebalance every 24h (schedule only: any drift at a period start), target 0.8 at
    leverage 3.

    Entry at bar 1 (06:00): 10,000 x 0.8 x 3/4 = 6,000 of spot at 100 = 60 coins, margin
    6,000 / 3 = 2,000. The price moves to 120 at bar 2 and 125 at bar 6; the hedged equity stays
    10,000, so the target notional stays 6,000: the first bars of day 2 (bar 4) and day 3
    (bar 8) size back to 6,000 / 120 = 50 and 6,000 / 125 = 48 coins; nothing trades in between."""
    T = 10
    px = path(T, 100.0, b2=120.0, b3=120.0, b4=120.0, b5=120.0, b6=125.0, b7=125.0, b8=125.0, b9=125.0)
    m = market(T, "6h", spot=px)
    v = both(m, 0.8, dict(perp_leverage=3.0, rebalance_every_hours=24.0))[side]
    want = np.array([0, 60, 60, 60, 50, 50, 50, 50, 48, 48], float)  # 10_000 * 0.8 * 3 / 4 / price
    assert v.spot[:, 0] == approx(want)
    assert v.perp[:, 0] == approx(-want)
    assert v.fill_bars("spot") == [1, 4, 8] and v.fill_bars("perp") == [1, 4, 8]
    # day 2: sell 10 spot at 120, buy back 10 perp (realized 10 x (100 - 120) = -200); the
    # margin balance back to 50 x 120 / 3 = 2,000: wallet 2,000 - 200 = 1,800, unrealized
    # 50 x (100 - 120) = -1,000 (a loss: refilled) -> 2,000 - (1,800 - 1,000) = 1,200 moved in
    assert v.ev("fill", "spot", 4).qty[0] == approx(-10.0)
    assert v.ev("fill", "perp", 4).cash[0] == approx(-200.0)
    tr = v.ev("transfer", bar=4)
    assert len(tr) == 1 and tr.cash[0] == approx(1_200.0)
    # day 3: 2 coins at 125, realized 2 x (100 - 125) = -50: wallet 3,000 - 50 = 2,950,
    # unrealized 48 x (100 - 125) = -1,200, margin 48 x 125 / 3 = 2,000: 2,000 - 1,750 = 250 in
    assert v.ev("fill", "spot", 8).qty[0] == approx(-2.0)
    assert v.ev("transfer", bar=8).cash[0] == approx(250.0)
    # the margin ratio after day 2's orders, at the mark high 120: 0.005 x 50 x 120 / 2,000
    assert v.mr[4, 0] == approx(0.005 * 50 * 120 / 2_000)
    assert v.equity[:, 0] == approx(np.full(T, 10_000.0))


def test_rebalance_on_schedule():
    case_rebalance_on_schedule("reference")


def test_rebalance_on_schedule_engine():
    case_rebalance_on_schedule("engine")


def case_schedule_periods_are_utc_days(side):
    """Started at 12:00 on 6h bars: entered at bar 1 (18:00) at 100, the spot closes that bar at
    120. Bar 2 opens a new UTC day (00:00), so bar 1's close is a check: 50 x 120 = 6,000 held
    for a 5,000 target, and bar 2 sizes back to 5,000 / 120 coins, 6 hours after the entry."""
    T = 6
    px = {"open": path(T, 120.0, b0=100.0, b1=100.0), "close": path(T, 120.0, b0=100.0)}
    m = market(T, "6h", spot=px, perp=px, start="2024-01-01 12:00")
    v = both(m, 1.0, dict(rebalance_every_hours=24.0))[side]
    assert v.fill_bars("spot") == [1, 2]
    assert v.spot[1, 0] == approx(50.0) and v.spot[2:, 0] == approx(np.full(T - 2, 5_000 / 120))


def test_schedule_periods_are_utc_days_not_counted_from_the_start():
    case_schedule_periods_are_utc_days("reference")


def test_schedule_periods_are_utc_days_not_counted_from_the_start_engine():
    case_schedule_periods_are_utc_days("engine")


# --------------------------------------------------------------------------- rebalance on band
def case_rebalance_on_band(side):
    """1h bars, band 10% checked at every bar (no schedule), target 1 at leverage 1: 50 coins at
    100 (5,000 of 10,000). At 110 the drift is 50 x 110 - 5,000 = 500 = 10% of 5,000: at the
    band, no trade. At 125 (bar 5) it is 1,250 > 500: at bar 6 the spot goes to
    5,000 / 125 = 40 coins."""
    T = 8
    px = path(T, 100.0, b3=110.0, b4=110.0, b5=125.0, b6=125.0, b7=125.0)
    m = market(T, spot=px)
    v = both(m, 1.0, dict(rebalance_notional_band=0.10))[side]
    assert v.fill_bars("spot") == [1, 6] and v.fill_bars("perp") == [1, 6]
    want = np.array([0, 50, 50, 50, 50, 50, 40, 40], float)
    assert v.spot[:, 0] == approx(want)
    assert v.perp[:, 0] == approx(-want)
    assert v.ev("fill", "spot", 6).qty[0] == approx(-10.0)  # 40 - 50


def test_rebalance_on_band():
    case_rebalance_on_band("reference")


def test_rebalance_on_band_engine():
    case_rebalance_on_band("engine")


# --------------------------------------------------------------------------- hedge-keeping top-up
def case_hedge_keeping_topup(side):
    """Target 1 at leverage 1: 50 coins, futures wallet 5,000, no cash left. Flat mmr 5%, top-up
    at a margin ratio of 0.4. The price jumps to 180 at bar 3: at the mark high (180) the margin
    balance is 5,000 - 50 x 80 = 1,000 and the maintenance 0.05 x 50 x 180 = 450: ratio 0.45.

    Bar 4: need = 50 x 180 / 1 - 1,000 = 8,000, cash 0: short 8,000; D = 50 x (180 + 180 / 1) =
    18,000, f = 8,000 / 18,000 = 4/9: sell 50 x 4/9 = 200/9 spot coins and buy back as many perp
    coins (realized 200/9 x (100 - 180) = -16,000/9). New need: 250/9 x 180 - (5,000 - 16,000/9 -
    250/9 x 80) = 5,000 - 1,000 = 4,000, exactly the 4,000 the spot sale raised: moved in."""
    T = 7
    px = path(T, 100.0, b3=180.0, b4=180.0, b5=180.0, b6=180.0)
    m = market(T, spot=px)
    v = both(m, 1.0, dict(maintenance_margin_rate=0.05, topup_margin_ratio=0.4))[side]
    assert v.mr[3, 0] == approx(0.05 * 50 * 180 / (5_000 - 50 * 80))
    spot_fill, perp_fill = v.ev("fill", "spot", 4), v.ev("fill", "perp", 4)
    assert spot_fill.qty[0] == approx(-200 / 9) and perp_fill.qty[0] == approx(200 / 9)
    assert perp_fill.cash[0] == approx(200 / 9 * (100 - 180))
    tr = v.ev("transfer", bar=4)
    assert len(tr) == 1 and tr.cash[0] == approx(4_000.0)
    assert v.spot[4:, 0] == approx(np.full(T - 4, 250 / 9))
    assert v.perp[4:, 0] == approx(np.full(T - 4, -250 / 9))  # spot + perp stays 0 coins
    assert v.equity[:, 0] == approx(np.full(T, 10_000.0))  # hedged, no costs
    # after the top-up the margin balance is 250/9 x 180 = 5,000: ratio 0.05 x 5,000 / 5,000
    assert v.mr[4, 0] == approx(0.05)
    assert v.fill_bars("spot") == [1, 4]


def test_hedge_keeping_topup():
    case_hedge_keeping_topup("reference")


def test_hedge_keeping_topup_engine():
    case_hedge_keeping_topup("engine")


# --------------------------------------------------------------------------- liquidations
#: A carry of 100 coins at 100 with 1,000 of margin (11,000 at leverage 10), flat mmr 0.5%:
#: isolated liquidation price 11,000 / 100.5 (1,000 - 100 (LP - 100) = 0.005 x 100 x LP). The
#: clearance fee (1%) takes the margin left there: the liquidation leaves 11,000 - 1,000.
LIQ = dict(initial_capital_quote=11_000.0, perp_leverage=10.0, clearance_fee_rate=0.01)
LP = 11_000 / 100.5


def case_reentry_after_cooldown(side):
    """The mark's high reaches 110 at bar 5: liquidated at LP. close_and_reenter with a 3-hour
    cool-down on 1h bars: the spot leg is sold at bar 6's open, the column stays flat at bar 7 and
    re-enters its standing target at bar 5 + 3 = 8 with the equity left: 11,000 - 1,000 of
    margin = 10,000 -> 10,000 x 10 / 11 of spot at 100."""
    T = 12
    m = market(T, mark={"open": path(T, 100.0), "high": path(T, 100.0, b5=110.0), "close": path(T, 100.0)})
    v = both(m, 1.0, dict(LIQ, after_liquidation="close_and_reenter", reentry_cooldown_hours=3.0))[side]
    liq = v.ev("liquidation")
    assert list(liq.bar) == [5] and liq.price[0] == approx(LP)
    assert v.fill_bars("spot") == [1, 6, 8] and v.fill_bars("perp") == [1, 8]
    assert v.ev("fill", "spot", 6).qty[0] == approx(-100.0)
    assert v.spot[6:8, 0] == approx([0.0, 0.0]) and v.perp[5:8, 0] == approx([0.0, 0.0, 0.0])
    reentry = 10_000 * 10 / 11 / 100
    assert v.ev("fill", "spot", 8).qty[0] == approx(reentry)
    assert v.ev("fill", "perp", 8).qty[0] == approx(-reentry)
    assert v.spot[8:, 0] == approx(np.full(T - 8, reentry))


def test_reentry_after_cooldown():
    case_reentry_after_cooldown("reference")


def test_reentry_after_cooldown_engine():
    case_reentry_after_cooldown("engine")


def case_cooldown_rounds_up(side, hours, bar):
    """A 90-minute cool-down on 1h bars is 2 bars (re-entry at 5 + 2); 0 hours is 1 bar (the next
    open, straight back to the target without closing the spot leg first)."""
    T = 12
    m = market(T, mark={"open": path(T, 100.0), "high": path(T, 100.0, b5=110.0), "close": path(T, 100.0)})
    v = both(m, 1.0, dict(LIQ, reentry_cooldown_hours=hours))[side]
    assert v.ev("fill", "perp").bar.tolist() == [1, bar]
    assert v.fill_bars("spot") == ([1, 6, 7] if bar == 7 else [1, 6])


COOLDOWNS = ("hours,bar", [(1.5, 7), (0.0, 6)])


@pytest.mark.parametrize(*COOLDOWNS)
def test_cooldown_is_at_least_one_bar_and_rounds_up(hours, bar):
    case_cooldown_rounds_up("reference", hours, bar)


@pytest.mark.parametrize(*COOLDOWNS)
def test_cooldown_is_at_least_one_bar_and_rounds_up_engine(hours, bar):
    case_cooldown_rounds_up("engine", hours, bar)


def case_spot_margin_liquidation(side, gap):
    """A reverse carry at leverage 1: 50 coins borrowed and sold at 100 (cash 10,000 - 5,000 of
    margin + 5,000 = 10,000), long 50 perp coins; mark flat at 100. The margin account is
    liquidated when 10,000 <= 1.1 x 50 x price: price 10,000 / 55.

    Wick (spot open 100, high 200 at bar 5): bought back at 10,000 / 55 = 181.82, fee 2% of
    50 x 181.82 = 9,090.91 -> 181.82, cash left 10,000 - 9,090.91 - 181.82 = 727.27.
    Gap (spot opens at 250): bought back at 250 for 12,500: cash -2,500, no fee (nothing left),
    the insurance fund covers the 2,500 (the event's rate; its cash -12,500 + 2,500)."""
    T = 8
    if gap:
        spot = {"open": path(T, 100.0, b5=250.0), "high": path(T, 100.0, b5=250.0), "close": path(T, 100.0)}
    else:
        spot = {"open": path(T, 100.0), "high": path(T, 100.0, b5=200.0), "close": path(T, 100.0)}
    m = market(T, spot=spot, perp=100.0)
    v = both(m, -1.0, dict(perp_leverage=1.0))[side]
    liq = v.ev("liquidation")
    assert list(liq.bar) == [5] and list(liq.leg) == ["spot"] and liq.qty[0] == approx(50.0)
    price = 250.0 if gap else 10_000 / 55
    fee = 0.0 if gap else 0.02 * 50 * price
    cover = 50 * 250.0 - 10_000 if gap else 0.0
    assert liq.price[0] == approx(price)
    assert liq.fee[0] == approx(fee) and liq.rate[0] == approx(cover)
    assert liq.cash[0] == approx(-50 * price - fee + cover)
    assert v.comp("liquidation")[5] == approx(cover - fee)
    # the margin ratio: 1.1 x 50 x spot high / cash, >= 1 at the liquidation bar
    assert v.mr[4, 0] == approx(1.1 * 50 * 100 / 10_000)
    assert v.mr[5, 0] == approx(1.1 * 50 * (250.0 if gap else 200.0) / 10_000) and v.mr[5, 0] >= 1
    # spot loss: the 50 borrowed coins from 100 to the price; equity: what is left of the cash
    # plus the 5,000 of perp margin (the perp's mark did not move)
    assert v.comp("spot_price")[5] == approx(-50 * (price - 100))
    left = 0.0 if gap else 10_000 - 50 * price - fee
    assert v.equity[5, 0] == approx(left + 5_000.0)
    # default policy: the unhedged perp is closed at the next open
    assert v.spot[5:, 0] == approx(np.zeros(T - 5))
    assert v.ev("fill", "perp", 6).qty[0] == approx(-50.0) and v.perp[6:, 0] == approx(np.zeros(T - 6))


@pytest.mark.parametrize("gap", [False, True])
def test_spot_margin_liquidation(gap):
    case_spot_margin_liquidation("reference", gap)


@pytest.mark.parametrize("gap", [False, True])
def test_spot_margin_liquidation_engine(gap):
    case_spot_margin_liquidation("engine", gap)


def case_long_coins_are_margin_assets(side, high):
    """A carry on A and a reverse carry on B in one portfolio (20,000, leverage 1, half each):
    50 A coins bought, 50 B coins borrowed and sold at 100, 5,000 of margin each: cash 10,000.
    The margin account's assets are the cash and the 50 long A coins (A flat at 100): 15,000.

    B's high 200: 1.1 x 50 x 200 = 11,000 < 15,000, no liquidation (the cash alone would have
    been breached at 10,000 / 55 = 181.8). B's high 300: liquidated where 15,000 = 1.1 x 50 x p,
    p = 15,000 / 55; bought back for 50 p, cash 10,000 - 50 p < 0; the fee 2% of 50 p is floored
    at cash + long coins = 15,000 - 50 p (positive: paid in full), no cover."""
    T = 8
    a = np.full(T, 100.0)
    spot = {"open": np.c_[a, a], "high": np.c_[a, path(T, 100.0, b5=high)], "close": np.c_[a, a]}
    idx = pd.date_range("2024-01-01", periods=T, freq="1h", tz="UTC")
    m = Market.from_arrays(idx, ["AUSDT", "BUSDT"], spot=spot, perp=np.full((T, 2), 100.0))
    v = both(m, np.tile([1.0, -1.0], (T, 1)), dict(initial_capital_quote=20_000.0))[side]
    assert v.spot[4] == approx([50.0, -50.0])
    assert v.mr[4, 1] == approx(1.1 * 50 * 100 / 15_000)
    assert v.mr[5, 1] == approx(1.1 * 50 * high / 15_000)
    liq = v.ev("liquidation")
    if high == 200.0:
        assert len(liq) == 0 and v.spot[-1] == approx([50.0, -50.0])
        return
    p = 15_000 / 55
    assert list(liq.bar) == [5] and list(liq.column) == [1] and list(liq.leg) == ["spot"]
    assert liq.price[0] == approx(p) and liq.fee[0] == approx(0.02 * 50 * p) and liq.rate[0] == 0.0
    assert v.comp("liquidation", 1)[5] == approx(-0.02 * 50 * p)
    # equity: 20,000 - 50 x (p - 100) on B's spot - the fee
    assert v.equity[5, 0] == approx(20_000 - 50 * (p - 100) - 0.02 * 50 * p)


@pytest.mark.parametrize("high", [200.0, 300.0])
def test_long_coins_are_margin_assets(high):
    case_long_coins_are_margin_assets("reference", high)


@pytest.mark.parametrize("high", [200.0, 300.0])
def test_long_coins_are_margin_assets_engine(high):
    case_long_coins_are_margin_assets("engine", high)


def case_clearance_fee_and_cover(side, gap, mode):
    """Clearance fee 1% of the liquidated notional.

    Wick (mark high 112 at bar 5): closed at LP, where the margin left is the maintenance
    0.5% x 100 x LP: the fee is floored there (0.5%, not 1%) and the wallet ends at 0.
    Gap (mark opens at 115, above the bankruptcy price 110): closed at 115, realized
    -100 x 15 = -1,500 against a 1,000 wallet: no fee, the insurance fund covers the 500."""
    T = 8
    if gap:
        mark = {"open": path(T, 100.0, b5=115.0), "high": path(T, 100.0, b5=115.0), "close": path(T, 100.0)}
    else:
        mark = {"open": path(T, 100.0), "high": path(T, 100.0, b5=112.0), "close": path(T, 100.0)}
    m = market(T, mark=mark)
    v = both(m, 1.0, dict(LIQ, clearance_fee_rate=0.01, margin_mode=mode, after_liquidation="hold_spot"))[side]
    liq = v.ev("liquidation")
    assert list(liq.bar) == [5] and list(liq.leg) == ["perp"] and liq.qty[0] == approx(100.0)
    price = 115.0 if gap else LP
    fee = 0.0 if gap else 0.005 * 100 * LP  # min(1% x 100 x LP, 1,000 - 100 x (LP - 100))
    cover = 100 * 15 - 1_000 if gap else 0.0
    assert liq.price[0] == approx(price)
    assert liq.fee[0] == approx(fee) and liq.rate[0] == approx(cover)
    assert liq.cash[0] == approx(-100 * (price - 100) - fee + cover)  # what the wallet received
    assert v.comp("liquidation")[5] == approx(cover - fee)
    # the 1,000 of margin is all that is lost: equity = the 100 spot coins at 100
    assert v.equity[5:, 0] == approx(np.full(T - 5, 10_000.0))


@pytest.mark.parametrize("mode", ["isolated", "cross"])
@pytest.mark.parametrize("gap", [False, True])
def test_clearance_fee_floored_and_insurance_cover(gap, mode):
    case_clearance_fee_and_cover("reference", gap, mode)


@pytest.mark.parametrize("mode", ["isolated", "cross"])
@pytest.mark.parametrize("gap", [False, True])
def test_clearance_fee_floored_and_insurance_cover_engine(gap, mode):
    case_clearance_fee_and_cover("engine", gap, mode)


def test_insurance_cover_is_flagged_and_warned():
    T = 8
    mark = {"open": path(T, 100.0, b5=115.0), "high": path(T, 100.0, b5=115.0), "close": path(T, 100.0)}
    cfg = config(dict(LIQ, clearance_fee_rate=0.01, after_liquidation="hold_spot"))
    with pytest.warns(UserWarning, match="insurance fund covered 500.00 quote"):
        res = run_backtest(market(T, mark=mark), 1.0, cfg)
    assert "insurance_cover" in res.flags


# --------------------------------------------------------------------------- bankruptcy
def case_bankruptcy_stop(side):
    """Target 1 at leverage 1: 50 coins, wallet 5,000, cash 0. A settlement at bar 4 of -300 per
    coin (absurd, to break the account) costs the short perp 50 x 300 = 15,000: wallet -10,000,
    equity 5,000 - 10,000 = -5,000 at bar 4's close: the portfolio stops. Bar 5 closes both
    legs (spot sold for 5,000, the wallet brought back to 0 with 10,000 of cash: cash -5,000)
    and it never trades again, though the target changes at bar 6."""
    T = 10
    value = np.zeros((T, 1))
    value[4, 0] = -300.0
    m = market(T, funding_rate=value / 100.0, funding_value=value)
    targets = np.ones((T, 1))
    targets[6:, 0] = 0.5
    v = both(m, targets, dict(perp_leverage=1.0))[side]
    assert v.stopped == {0: 4}
    assert v.equity[4, 0] == approx(10_000 - 50 * 300)
    assert v.ev("fill", "spot", 5).qty[0] == approx(-50.0) and v.ev("fill", "perp", 5).qty[0] == approx(50.0)
    assert v.ev("transfer", bar=5).cash[0] == approx(10_000.0)
    assert v.fill_bars("spot") == [1, 5] and v.fill_bars("perp") == [1, 5]
    assert (v.spot[5:, 0] == 0).all() and (v.perp[5:, 0] == 0).all()
    assert v.equity[5:, 0] == approx(np.full(T - 5, -5_000.0))
    assert len(v.ev("stop")) == 1 and v.ev("stop").cash[0] == approx(-5_000.0)


def test_bankruptcy_stop():
    case_bankruptcy_stop("reference")


@pytest.mark.filterwarnings("ignore:.*reached zero equity:UserWarning")
def test_bankruptcy_stop_engine():
    case_bankruptcy_stop("engine")


# --------------------------------------------------------------------------- whole-hour borrow
#: 50 borrowed coins at 100 (reverse carry, target -1 at leverage 1), 8.76% a year = 1e-5 an
#: hour: one coin-hour of the 50 coins costs 50 x 100 x 1e-5 = 0.05.
HOUR = 50 * 100 * 0.0876 / 8760


BORROW_CASES = (
    "freq,T,hours_per_bar",
    [
        # 1h bars: borrowed at the 01:00 open, one hour at each open: as pro rata
        ("1h", 6, [0, 1, 1, 1, 1, 1]),
        # 15m bars: borrowed at 00:15 (one hour then), then one hour at 01:00 and 02:00 only
        ("15min", 12, [0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0]),
        # 4h bars: borrowed at the 04:00 open, plus the hours 05:00, 06:00, 07:00 inside: 4 hours
        ("4h", 4, [0, 4, 4, 4]),
    ],
)


def case_whole_hour_borrow(side, freq, T, hours_per_bar):
    m = market(T, freq)
    v = both(m, -1.0, dict(borrow_annual_rate=0.0876))[side]
    want = -HOUR * np.cumsum(hours_per_bar)
    assert v.comp("borrow") == approx(want)
    ev = v.ev("borrow")
    assert list(ev.bar) == [j for j, h in enumerate(hours_per_bar) if h]
    assert ev.cash.to_numpy() == approx(-HOUR * np.array([h for h in hours_per_bar if h], float))


@pytest.mark.parametrize(*BORROW_CASES)
def test_whole_hour_borrow(freq, T, hours_per_bar):
    case_whole_hour_borrow("reference", freq, T, hours_per_bar)


@pytest.mark.parametrize(*BORROW_CASES)
def test_whole_hour_borrow_engine(freq, T, hours_per_bar):
    case_whole_hour_borrow("engine", freq, T, hours_per_bar)


# --------------------------------------------------------------------------- unhedged component
def case_unhedged_component(side):
    """After the perp's liquidation at bar 5 (hold_spot keeps the 100 spot coins), the spot falls
    from 100 to 90 at bar 7: -1,000 lands in ``unhedged``, not in ``spot_price``. Before it,
    the hedged legs' price moves were in spot_price / perp_price only (spot and perp rose to 101
    at bar 3 and fell back at bar 4)."""
    T = 12
    spot = path(T, 100.0, b3=101.0, b7=90.0, b8=90.0, b9=90.0, b10=90.0, b11=90.0)
    perp = path(T, 100.0, b3=101.0)
    mark = {"open": perp, "high": path(T, 100.0, b3=101.0, b5=110.0), "close": perp}
    m = market(T, spot=spot, perp=perp, mark=mark)
    v = both(m, 1.0, dict(LIQ, after_liquidation="hold_spot"))[side]
    assert list(v.ev("liquidation").bar) == [5]
    lp = 11_000 / 100.5
    assert v.comp("unhedged")[:7] == approx(np.zeros(7))
    assert v.comp("unhedged")[7:] == approx(np.full(T - 7, 100 * (90 - 100)))
    # bar 3: +100 on spot, -100 on the perp; back at bar 4
    assert v.comp("spot_price")[3] == approx(100.0) and v.comp("perp_price")[3] == approx(-100.0)
    assert v.comp("spot_price")[4:] == approx(np.zeros(T - 4))
    assert v.comp("perp_price")[5:] == approx(np.full(T - 5, -100 * (lp - 100)))
    assert v.spot[-1, 0] == approx(100.0) and v.perp[-1, 0] == 0.0


def test_unhedged_component():
    case_unhedged_component("reference")


def test_unhedged_component_engine():
    case_unhedged_component("engine")


def test_partly_hedged_legs_split_the_move():
    """Split rule: 30 spot coins against -20 perp coins: 20 hedged, 10 of spot unhedged. Checked on
    the reference's split function directly."""
    from tests.reference_engine import hedge_split

    assert hedge_split(30.0, -20.0) == (20.0, 10.0, -20.0, 0.0)
    assert hedge_split(-20.0, 30.0) == (-20.0, 0.0, 20.0, 10.0)
    assert hedge_split(30.0, 20.0) == (0.0, 30.0, 0.0, 20.0)  # same sign: nothing hedged
    assert hedge_split(0.0, -5.0) == (0.0, 0.0, 0.0, -5.0)


# --------------------------------------------------------------------------- margin ratio
def case_margin_ratio_at_liquidation(side):
    """The mark's high reaches 109.6 (> LP = 109.45) at bar 5. The ratio is taken at the adverse
    extreme for the position before the liquidation: maintenance 0.005 x 100 x 109.6 = 54.8 over
    the balance 1,000 - 100 x 9.6 = 40: 1.37. Calm bars (high 100): 0.005 x 100 x 100 / 1,000."""
    T = 8
    m = market(T, mark={"open": path(T, 100.0), "high": path(T, 100.0, b5=109.6), "close": path(T, 100.0)})
    v = both(m, 1.0, dict(LIQ, after_liquidation="close_spot"))[side]
    assert list(v.ev("liquidation").bar) == [5]
    assert v.mr[5, 0] == approx(0.005 * 100 * 109.6 / (1_000 - 100 * 9.6)) and v.mr[5, 0] >= 1
    assert v.mr[1:5, 0] == approx(np.full(4, 0.005 * 100 * 100 / 1_000))
    assert np.isnan(v.mr[0, 0]) and np.isnan(v.mr[6:, 0]).all()  # flat (the spot closed at bar 6)


def test_margin_ratio_at_liquidation_bar():
    case_margin_ratio_at_liquidation("reference")


def test_margin_ratio_at_liquidation_bar_engine():
    case_margin_ratio_at_liquidation("engine")


# --------------------------------------------------------------------------- lot size and minimums
FIXTURE_MARKETS = str(Path(__file__).parent / "fixtures" / "binance_markets.json")


def case_lot_and_minimum(side):
    """Binance's BTCUSDT rules (tests/fixtures/binance_markets.json): both legs trade whole lots of
    0.001 coins (the perp's lot; the spot's 0.00001 divides it), the least order is 0.001 coins
    and 5 quote.

    Capital 16 at leverage 1 and price 1,000: 16 x 1/2 = 8 quote = 0.008 coins (8 whole lots).
    Target 0.8 at bar 3: 6.4 quote = 0.0064 -> 0.006 coins, an order of 0.002 coins = 2 quote,
    below the 5 minimum: skipped (a ``skip`` event), the legs stay at 0.008. Target 0 at bar 6
    closes the position (a full close always goes through)."""
    T = 9
    m = market(T, spot=1_000.0)
    tg = np.full((T, 1), np.nan)
    tg[0], tg[3], tg[6] = 1.0, 0.8, 0.0
    v = both(m, tg, dict(initial_capital_quote=16.0, markets_path=FIXTURE_MARKETS))[side]
    assert v.spot[:, 0] == approx(np.array([0, 0.008, 0.008, 0.008, 0.008, 0.008, 0.008, 0, 0]))
    assert v.perp[:, 0] == approx(-v.spot[:, 0])
    skip = v.ev("skip")
    assert list(skip.bar) == [4] and skip.qty[0] == approx(-0.002) and skip.price[0] == approx(1_000.0)
    assert v.fill_bars("spot") == [1, 7]


def test_lot_and_minimum():
    case_lot_and_minimum("reference")


def test_lot_and_minimum_engine():
    case_lot_and_minimum("engine")
    m = market(3, spot=30_000.0)  # 5,000 / 30,000 = 0.16666... coins -> 0.166 (166 lots, rounded down)
    res = run_backtest(m, 1.0, config(dict(markets_path=FIXTURE_MARKETS)))
    assert res.spot_qty.iloc[-1, 0] == approx(0.166) and res.perp_qty.iloc[-1, 0] == approx(-0.166)


def test_leverage_above_the_top_bracket_is_refused(tmp_path):
    from data.errors import ConfigError
    from data.synthetic import write_tiers

    m = market(3)
    tiers = write_tiers(tmp_path / "tiers.json", m.symbols)  # maxLeverage 50 in the top bracket
    run_backtest(m, 1.0, config(dict(tiers_path=tiers, maintenance_margin_rate=None, perp_leverage=50.0)))
    with pytest.raises(ConfigError, match="perp_leverage 60 .*above BTCUSDT's maximum 50"):
        run_backtest(m, 1.0, config(dict(tiers_path=tiers, maintenance_margin_rate=None, perp_leverage=60.0)))

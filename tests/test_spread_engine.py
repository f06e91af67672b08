"""The numba spread kernel (``backtest.spread.run_spread``) against the plain-Python reference
(``tests/reference_spread.py``) on random two-venue markets: equity, every component,
positions, margin ratios, the amount in flight and every event, bar by bar, for each execution
lag, after-liquidation policy, transfer delay, band and maintenance source (flat rate, the
venue's flat rate per symbol, a two-bracket tiers file); then the totals, threads and lean
outputs."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig, SpreadConfig
from backtest.engine import hold_only_where_tradable
from backtest.spread import COMPONENTS, run_spread, venue_tiers
from backtest.targets import Targets
from data.errors import ConfigError
from data.market import Market
from tests.reference_spread import run_reference_spread

CAPITAL = 1000.0
T, N = 300, 2
COLUMN_SYMBOL = np.array([0, 1, 1, 0])
LEVERAGE = np.array([5.0, 10.0, 15.0, 20.0])  # per column (column_params)
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def _leg(rng, base, hours, invalid, funding_mean, every):
    """A random market of ``N`` symbols: a 2%-per-bar walk, wicks, volumes > 0 (small impact),
    NaN prices on ``invalid`` bars and funding every ``every`` bars around ``funding_mean``."""
    o = base * np.exp(np.cumsum(rng.normal(0, 0.02, (T + 1, N)), axis=0))
    opn, close = o[:-1], o[1:]
    high = np.maximum(opn, close) * np.exp(np.abs(rng.normal(0, 0.01, (T, N))))
    low = np.minimum(opn, close) * np.exp(-np.abs(rng.normal(0, 0.01, (T, N))))
    px = {"open": opn, "high": high, "low": low, "close": close, "volume": rng.uniform(1e4, 1e5, (T, N))}
    for k in ("open", "high", "low", "close"):
        px[k] = np.where(invalid, np.nan, px[k])
    rate = np.where(np.arange(T)[:, None] % every == every - 1, rng.normal(funding_mean, 0.0005, (T, N)), 0.0)
    index = pd.date_range("2024-01-01", periods=T, freq=f"{hours}h", tz="UTC")
    return Market.from_arrays(index, SYMBOLS, freq=f"{hours}h", spot=px, perp=px, funding_rate=rate)


def _markets(seed, hours):
    rng = np.random.default_rng(seed)
    base = rng.uniform(10, 1000, N)
    a = _leg(rng, base, hours, rng.random((T, N)) < 0.03, 0.0001, 8)
    b = _leg(rng, base * 1.001, hours, rng.random((T, N)) < 0.03, -0.0002, 4)
    choices = np.array([-1, -0.5, 0, 0.5, 1, np.nan])
    x = choices[rng.integers(0, len(choices), (T, len(COLUMN_SYMBOL)))]
    x[rng.random(x.shape) < 0.85] = np.nan
    return a, b, x


def _targets(a, x):
    C = x.shape[1]
    cols = pd.DataFrame({"symbol": [a.symbols[n] for n in COLUMN_SYMBOL], "group": np.arange(C)})
    return Targets(x, COLUMN_SYMBOL, np.arange(C), cols)


def _two_bracket_tiers(folder):
    """A ccxt tiers file for binance with two brackets per symbol (``cum`` continuous)."""
    data = {
        "BTC/USDT:USDT": [
            {"minNotional": 0, "maxNotional": 2500, "maintenanceMarginRate": 0.01, "info": {"cum": "0"}},
            {"minNotional": 2500, "maxNotional": 1e9, "maintenanceMarginRate": 0.03, "info": {"cum": "50"}},
        ],
        "ETH/USDT:USDT": [
            {"minNotional": 0, "maxNotional": 4000, "maintenanceMarginRate": 0.02, "info": {"cum": "0"}},
            {"minNotional": 4000, "maxNotional": 1e9, "maintenanceMarginRate": 0.04, "info": {"cum": "80"}},
        ],
    }
    (folder / "binance_leverage_tiers.json").write_text(json.dumps(data))
    return str(folder)


# (seed, bar hours, lag, after_liquidation, transfer delay in bars, transfer fee, band, cooldown
#  hours, maintenance: a flat rate, "venue" (binance's flat rate per symbol) or "tiers")
CASES = [
    (1, 1, 0, "close_and_reenter", 0, 1.0, 0.2, 3.0, 0.02),
    (2, 1, 1, "close_spot", 1, 0.5, 0.3, 5.0, 0.01),
    (3, 4, 2, "hold_spot", 2, 2.0, 0.1, 10.0, "venue"),
    (4, 1, 1, "reenter", 3, 1.0, None, 1.0, 0.02),
    (5, 2, 1, "close_and_reenter", 3, 0.0, 0.25, 5.0, "tiers"),
    (6, 1, 2, "reenter", 1, 1.0, 0.15, 2.0, "tiers"),
    (7, 1, 0, "close_spot", 2, 3.0, 0.4, 4.0, "venue"),
    (8, 2, 1, "close_and_reenter", 1, 1.0, 0.05, 7.0, 0.03),
]


def case_config(lag, policy, cool_h, maint) -> BacktestConfig:
    """The engine settings of a random case: execution delay ``lag``, the after-liquidation
    ``policy``, a cool-down of ``cool_h`` hours and a flat maintenance rate ``maint`` (None: the
    venues' own)."""
    return BacktestConfig(
        initial_capital_quote=CAPITAL,
        execution_delay_bars=lag,
        allow_same_bar_execution=lag == 0,
        slippage_bps=2.0,
        volume_participation_coefficient=0.1,
        # unlike every maintenance rate of the cases: at a clearance fee equal to the maintenance
        # rate a liquidation inside the bar leaves the wallet a rounding residue (maintenance -
        # fee), whose sign decides between a dust re-entry (~1e-16 coins) and none
        clearance_fee_rate=0.015,
        after_liquidation=policy,
        reentry_cooldown_hours=cool_h,
        maintenance_margin_rate=maint,
    )


def reference_settings(config, delay, fee_t, band, fees, tiers, cooldown_bars) -> dict:
    """``run_reference_spread``'s settings for ``config`` with a transfer delay of ``delay`` bars,
    a transfer fee ``fee_t``, the collateral ``band`` (None: never) and the legs' ``fees`` and
    ``tiers`` (each a value, or a list per venue when the legs switch venues)."""
    return dict(
        capital=config.initial_capital_quote,
        fee_a=fees[0],
        fee_b=fees[1],
        slippage_bps=config.slippage_bps,
        impact=config.volume_participation_coefficient,
        clearance=config.clearance_fee_rate,
        lag=config.execution_delay_bars,
        transfer_delay_bars=delay,
        transfer_fee=fee_t,
        band=math.inf if band is None else band,
        after_liquidation=config.after_liquidation,
        cooldown_bars=cooldown_bars,
        tiers_a=tiers[0],
        tiers_b=tiers[1],
    )


def _setup(case, tmp_path):
    seed, hours, lag, policy, delay, fee_t, band, cool_h, maint = case
    a, b, x = _markets(seed, hours)
    config = case_config(lag, policy, cool_h, maint if isinstance(maint, float) else None)
    spread = SpreadConfig(
        venue_transfer_delay_hours=delay * hours,
        venue_transfer_fee_quote=fee_t,
        venue_rebalance_band=band,
        fee_a_rate=0.0004,
        fee_b_rate=0.0005,
        tiers_dir=_two_bracket_tiers(tmp_path) if maint == "tiers" else None,
    )
    tiers_a, tiers_b = venue_tiers(a, config, spread)[0], venue_tiers(b, config, spread)[0]
    if maint == "tiers":
        assert (tiers_a.n_tiers == 2).all() and (tiers_b.n_tiers == 2).all()
    fees = (spread.fee_a_rate, spread.fee_b_rate)
    settings = reference_settings(config, delay, fee_t, band, fees, (tiers_a, tiers_b), math.ceil(cool_h / hours))
    # the API zeroes rows executing outside the legs' tradable spans: none in these markets
    tradable = a.tradable & b.tradable
    assert tradable.all()
    np.testing.assert_array_equal(hold_only_where_tradable(tradable, COLUMN_SYMBOL, x, 0, max(lag, 1)), x)
    return a, b, x, config, spread, settings


def _reference(a, b, x, settings, leverage_a=None):
    """The reference, one column at a time (each with its own leverage, and ``leverage_a[c]`` for
    leg A when given), merged like the API's."""
    parts = []
    for c in range(x.shape[1]):
        own = dict(settings, leverage=LEVERAGE[c])
        if leverage_a is not None:
            own["leverage_a"] = leverage_a[c]
        r = run_reference_spread(a, b, x[:, [c]], COLUMN_SYMBOL[[c]], own)
        r["events"] = [(e[0], c, *e[2:]) for e in r["events"]]
        parts.append(r)
    keys = ("equity", "s", "q", "mr_a", "mr_b", "in_flight", "capped", "quote_fx")
    out = {k: np.hstack([p[k] for p in parts]) for k in keys}
    out["components"] = {k: np.hstack([p["components"][k] for p in parts]) for k in COMPONENTS}
    out["events"] = sorted((e for p in parts for e in p["events"]), key=lambda e: (e[0], e[1]))  # stable
    return out


def _run(a, b, x, config, spread, **kw):
    return run_spread(a, b, _targets(a, x), config, spread, column_params={"perp_leverage": LEVERAGE}, **kw)


def _close(name, got, want, atol, rtol=0.0):
    """(T, C) arrays equal within ``atol + rtol * |want|`` (NaN and inf where the other is)."""
    got, want = np.asarray(got, float), np.asarray(want, float)
    assert got.shape == want.shape, name
    same = (got == want) | (np.isnan(got) & np.isnan(want))
    ok = same | (np.abs(got - want) <= atol + rtol * np.abs(want))
    if not ok.all():
        j, c = np.argwhere(~ok)[0]
        raise AssertionError(
            f"{name}: {int((~ok).sum())} values differ; first at bar {j} column {c}: "
            f"kernel {got[j, c]!r}, reference {want[j, c]!r}"
        )


def _assert_equals_reference(res, ref, a, b):
    """The kernel's run equals the reference's bar by bar: equity, every component, positions,
    margin ratios, the amount in flight (1e-9) and every event."""
    assert_arrays_equal_reference(res, ref)
    _compare_events(res, ref, a, b)


def assert_arrays_equal_reference(res, ref):
    """Equity, every component, positions, margin ratios and the amount in flight, bar by bar."""
    atol = 1e-9 * CAPITAL
    _close("equity", res.equity.values, ref["equity"], atol)
    for name in COMPONENTS:
        _close(name, res.components[name].values, ref["components"][name], atol)
    _close("position A", res.positions["A"].values, ref["s"], 1e-12, 1e-9)
    _close("position B", res.positions["B"].values, ref["q"], 1e-12, 1e-9)
    _close("margin ratio A", res.margin_ratio["A"].values, ref["mr_a"], 1e-12, 1e-9)
    _close("margin ratio B", res.margin_ratio["B"].values, ref["mr_b"], 1e-12, 1e-9)
    _close("in flight", res.in_flight.values, ref["in_flight"], atol)


def _compare_events(res, ref, a, b):
    ev = res.events
    bars = a.index.get_indexer(ev["time"])
    assert (bars >= 0).all()
    assert len(ev) == len(ref["events"]), (
        len(ev),
        len(ref["events"]),
        Counter(ev["kind"]),
        Counter(e[2] for e in ref["events"]),
    )
    assert set(ev["venue"]) <= {"binance"}
    atol = 1e-9 * CAPITAL
    for k, (row, e) in enumerate(zip(ev.itertuples(index=False), ref["events"], strict=True)):
        where = f"event {k} (bar {e[0]}, column {e[1]}, {e[2]} {e[3]})"
        assert (int(bars[k]), int(row.column), row.kind, row.leg) == e[:4], f"{where}: kernel {row}"
        for field, got, want, tol in (
            ("qty", row.qty, e[4], 1e-9 * abs(e[4])),
            ("price", row.price, e[5], 1e-9 * abs(e[5])),
            ("cash", row.cash, e[6], atol),
            ("fee", row.fee, e[7], atol),
        ):
            if math.isnan(want):
                assert math.isnan(got), f"{where}: {field} kernel {got!r}, reference NaN"
            else:
                assert abs(got - want) <= tol, f"{where}: {field} kernel {got!r}, reference {want!r}"
        if row.kind == "funding":  # rate: the venue's funding rate
            m = a if row.leg == "A" else b
            assert row.rate == m.funding_rate[e[0], COLUMN_SYMBOL[e[1]]], where
        elif row.kind == "liquidation":  # rate: the insurance cover
            assert row.rate >= 0, where
        elif row.kind == "borrow":  # rate: the hourly borrow rate
            assert row.rate > 0 and row.leg == "A", where
        elif row.kind == "fill":  # rate: the slippage cap where it bound
            assert math.isnan(row.rate) or row.rate == 0.5, where
        else:
            assert math.isnan(row.rate), where


def _counts(ref):
    """What happened in the reference: liquidations, transfers (departures), re-strikes, capped
    sizings and transfers sent for a capped sizing."""
    ev = ref["events"]
    departures = [e for e in ev if e[2] == "transfer" and e[6] < 0]
    restrikes = sum(
        1 for e, f in zip(ev, ev[1:]) if e[2] == f[2] == "fill" and e[:2] == f[:2] and e[3] == f[3] and e[4] == -f[4]
    )
    capped = ref["capped"]
    return {
        "liquidations": sum(e[2] == "liquidation" for e in ev),
        "transfers": len(departures),
        "restrikes": restrikes,
        "capped_sizings": int((capped[1:] & ~capped[:-1]).sum() + capped[0].sum()),
        "capped_transfers": sum(1 for e in departures if e[0] > 0 and capped[e[0] - 1, e[1]]),
    }


@pytest.mark.parametrize("case", CASES, ids=[f"seed{c[0]}-{c[3]}-lag{c[2]}-delay{c[4]}-{c[8]}" for c in CASES])
def test_kernel_matches_reference(case, tmp_path):
    a, b, x, config, spread, settings = _setup(case, tmp_path)
    res = _run(a, b, x, config, spread)
    ref = _reference(a, b, x, settings)
    _assert_equals_reference(res, ref, a, b)
    atol = 1e-9 * CAPITAL

    # totals: per-leg funding, fee split, transfer count
    tot = res.totals
    np.testing.assert_allclose(tot["funding_a"] + tot["funding_b"], tot["funding"], rtol=0, atol=atol)
    np.testing.assert_allclose(tot["trading_fees"] + tot["transfer_fees"], tot["fees"], rtol=0, atol=atol)
    cnt = _counts(ref)
    dep = res.events[(res.events["kind"] == "transfer") & (res.events["cash"] < 0)]
    assert tot["transfers"].sum() == cnt["transfers"]
    assert (tot["transfers"].to_numpy() == np.bincount(dep["column"], minlength=x.shape[1])).all()
    for leg, key in (("A", "funding_a"), ("B", "funding_b")):
        f = res.events[(res.events["kind"] == "funding") & (res.events["leg"] == leg)]
        np.testing.assert_allclose(
            f.groupby("column")["cash"].sum().reindex(range(x.shape[1]), fill_value=0.0), tot[key], atol=atol
        )
    np.testing.assert_allclose(tot["final_equity"], ref["equity"][-1], rtol=0, atol=atol)

    # not vacuous: the rules under test fired
    assert cnt["liquidations"] > 0 and cnt["capped_sizings"] > 0, cnt
    if case[6] is None:  # an infinite band never rebalances, capped or not
        assert cnt["transfers"] == 0, cnt
    else:
        assert cnt["transfers"] > 0 and cnt["capped_transfers"] > 0, cnt


def test_events_of_every_kind_and_restrikes_happen_over_the_cases(tmp_path):
    total = Counter()
    for case in CASES[:3]:
        a, b, x, _config, _spread, settings = _setup(case, tmp_path)
        total.update(_counts(_reference(a, b, x, settings)))
    assert all(total[k] > 0 for k in ("liquidations", "transfers", "restrikes", "capped_transfers")), total


def test_threads_are_bit_identical_and_lean_outputs_keep_the_totals(tmp_path):
    a, b, x, config, spread, _settings = _setup(CASES[4], tmp_path)
    serial = _run(a, b, x, config, spread)
    threads = _run(a, b, x, config, spread, parallel=2)
    for name in ("equity", "in_flight"):
        pd.testing.assert_frame_equal(getattr(threads, name), getattr(serial, name), check_exact=True)
    for name in COMPONENTS:
        pd.testing.assert_frame_equal(threads.components[name], serial.components[name], check_exact=True)
    for leg in ("A", "B"):
        pd.testing.assert_frame_equal(threads.positions[leg], serial.positions[leg], check_exact=True)
        pd.testing.assert_frame_equal(threads.margin_ratio[leg], serial.margin_ratio[leg], check_exact=True)
    pd.testing.assert_frame_equal(threads.events, serial.events, check_exact=True)
    pd.testing.assert_frame_equal(threads.totals, serial.totals, check_exact=True)

    lean = _run(a, b, x, config, spread, outputs=("equity",))
    pd.testing.assert_frame_equal(lean.equity, serial.equity, check_exact=True)
    pd.testing.assert_frame_equal(lean.totals, serial.totals, check_exact=True)
    for leg in ("A", "B"):
        np.testing.assert_array_equal(lean.positions[leg].values[-1], serial.positions[leg].values[-1])
    for name in COMPONENTS:
        np.testing.assert_array_equal(lean.components[name].values[-1], serial.components[name].values[-1])
    # without "events" no funding rows are kept; the fills, liquidations and transfers still are
    assert not (lean.events["kind"] == "funding").any()
    pd.testing.assert_frame_equal(
        lean.events.reset_index(drop=True),
        serial.events[serial.events["kind"] != "funding"].reset_index(drop=True),
        check_exact=True,
    )


@pytest.mark.parametrize("policy", ["close_spot", "close_and_reenter"])
def test_the_after_liquidation_policy_decides_what_follows_a_liquidation(policy):
    """A rally liquidates the short leg B; the sizing before it was capped by nothing, and the
    liquidation clears any cap: ``close_spot`` closes leg A at the next open and stays flat while
    the target stays 1; ``close_and_reenter`` re-enters only after the cool-down (24 bars)."""
    n = 120
    idx = pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC")
    p = np.linspace(100.0, 200.0, n).reshape(-1, 1)
    a = Market.from_arrays(idx, ["BTCUSDT"], spot=p, perp=p)
    b = Market.from_arrays(idx, ["BTCUSDT"], spot=p, perp=p)
    cfg = BacktestConfig(perp_leverage=10, after_liquidation=policy, maintenance_margin_rate=0.005)
    res = run_spread(a, b, 1.0, cfg, SpreadConfig(venue_rebalance_band=None))
    ev = res.events
    liq = ev[ev.kind == "liquidation"]
    assert len(liq) >= 1
    first = idx.get_loc(liq.time.iloc[0])
    fills = ev[(ev.kind == "fill") & (ev.time > liq.time.iloc[0])]
    assert fills.time.iloc[0] == idx[first + 1] and fills.leg.iloc[0] == "A"  # the other leg closed
    later = fills[fills.time > idx[first + 1]]
    if policy == "close_spot":
        assert later.empty and (res.positions["A"].iloc[first + 1 :] == 0).all().all()
    else:  # (with no collateral moves the emptied wallet margins nothing: no re-entry at all)
        assert later.empty or later.time.min() >= idx[first + 24]


def assert_chain_equals(parts, whole) -> None:
    """Consecutive resumed runs joined (SpreadResult.chain) equal one run over all the bars, bit
    for bit: every per-bar frame (the legs' venues too, when they switch), event and total."""
    joined = type(whole).chain(parts)
    pd.testing.assert_frame_equal(joined.equity, whole.equity)
    pd.testing.assert_frame_equal(joined.in_flight, whole.in_flight)
    for name in COMPONENTS:
        pd.testing.assert_frame_equal(joined.components[name], whole.components[name])
    for leg in ("A", "B"):
        pd.testing.assert_frame_equal(joined.positions[leg], whole.positions[leg])
        pd.testing.assert_frame_equal(joined.margin_ratio[leg], whole.margin_ratio[leg])
    assert list(joined.venues) == list(whole.venues)
    for leg in whole.venues:
        pd.testing.assert_frame_equal(joined.venues[leg], whole.venues[leg])
    pd.testing.assert_frame_equal(joined.events, whole.events)
    pd.testing.assert_frame_equal(joined.totals, whole.totals)


@pytest.mark.parametrize("delay", [0, 1, 2])
def test_resumed_chunks_equal_one_run_bit_for_bit(delay):
    """Three consecutive chunks, each resumed from the state the one before ended in, joined with
    SpreadResult.chain: every frame, event and total equal one run over all the bars."""
    a, b, x = _markets(11, 1)
    cfg = BacktestConfig(
        initial_capital_quote=CAPITAL,
        execution_delay_bars=delay,
        allow_same_bar_execution=delay == 0,
        maintenance_margin_rate=0.01,
        clearance_fee_rate=0.015,
        volume_participation_coefficient=0.05,
        slippage_bps=1.0,
    )
    spread = SpreadConfig(venue_transfer_delay_hours=3, venue_transfer_fee_quote=0.5, venue_rebalance_band=0.1)
    kw = {"column_params": {"perp_leverage": LEVERAGE}}
    whole = run_spread(a, b, _targets(a, x), cfg, spread, **kw)
    parts, state = [], None
    for lo, hi in ((0, 97), (97, 211), (211, T)):
        sa, sb = a.select(start=a.index[lo], end=a.index[hi - 1] + pd.Timedelta(hours=1)), None
        sb = b.select(start=b.index[lo], end=b.index[hi - 1] + pd.Timedelta(hours=1))
        res = run_spread(sa, sb, _targets(sa, x[lo:hi]), cfg, spread, resume=state, **kw)
        parts.append(res)
        state = res.state
    assert_chain_equals(parts, whole)
    kinds = Counter(whole.events.kind)
    assert kinds["transfer"] and kinds["liquidation"] and kinds["fill"]  # the chunks cut through all of it
    # a state only continues its own run
    with pytest.raises(ConfigError, match="start"):
        run_spread(a, b, _targets(a, x), cfg, spread, resume=parts[0].state, **kw)
    with pytest.raises(ConfigError, match="settings"):
        sa = a.select(start=a.index[97])
        sb = b.select(start=b.index[97])
        run_spread(sa, sb, _targets(sa, x[97:]), cfg.replace(slippage_bps=2.0), spread, resume=parts[0].state, **kw)


@pytest.mark.parametrize("case", CASES[:4], ids=[f"seed{c[0]}-lag{c[2]}-delay{c[4]}" for c in CASES[:4]])
def test_spot_leg_on_one_venue_against_the_perp_on_another(case, tmp_path):
    """Leg A spot coins bought with venue A's cash (its own prices, 0.2% below the perp's), leg B
    the perp on venue B: the kernel equals the reference, leg A pays no funding, is never
    liquidated and has no margin ratio; the capital starts split L / (L + 1) to the spot venue."""
    import dataclasses

    a, b, x, config, spread, settings = _setup(case, tmp_path)
    a = dataclasses.replace(
        a, **{f"spot_{k}": getattr(a, f"spot_{k}") * 0.998 for k in ("open", "high", "low", "close")}
    )
    x = np.abs(x)  # long only
    spread = dataclasses.replace(spread, leg_a="spot")
    res = _run(a, b, x, config, spread)
    _assert_equals_reference(res, _reference(a, b, x, dict(settings, leg_a="spot")), a, b)
    assert res.margin_ratio["A"].isna().all().all() and (res.totals.funding_a == 0).all()
    ev = res.events
    assert not ((ev.kind == "liquidation") & (ev.leg == "A")).any()
    assert ((ev.kind == "liquidation") & (ev.leg == "B")).any()
    assert (ev.kind == "transfer").any() == (case[6] is not None)  # (no band: no collateral moves)
    first = ev[(ev.kind == "fill") & (ev.leg == "A")].iloc[0]  # a spot buy: cash out = coins x price + fee
    assert first.cash == pytest.approx(-first.qty * first.price - first.fee, rel=1e-12)


def _borrowed(case, tmp_path):
    """A reverse carry across venues on a random case (leg A short spot, leg B long perp), the
    kernel's run and the reference's: a borrow rate of 50%/yr and a call level of 1.9 (reached
    by the random walks)."""
    import dataclasses

    a, b, x, config, spread, settings = _setup(case, tmp_path)
    config = config.replace(borrow_annual_rate=0.5, spot_margin_liquidation_level=1.9, spot_liquidation_fee_rate=0.02)
    x = -np.abs(x)  # short spot, long perp
    spread = dataclasses.replace(spread, leg_a="spot")
    own = dict(settings, leg_a="spot", borrow_h=0.5 / 8760, spot_level=1.9, spot_liq_fee=0.02)
    return a, b, x, _run(a, b, x, config, spread), _reference(a, b, x, own)


@pytest.mark.parametrize("case", CASES[:4], ids=[f"seed{c[0]}-lag{c[2]}-delay{c[4]}" for c in CASES[:4]])
def test_a_borrowed_spot_leg_against_the_perp_on_another_venue(case, tmp_path):
    """A reverse carry across venues: leg A sells borrowed coins in venue A's margin account, leg B
    holds the perp long. The kernel equals the reference: the borrow interest in whole hours,
    the margin call at the spot high, the buy-back's fee, the rebalance's free quote; the
    identity holds (the reference checks it every bar)."""
    a, b, x, res, ref = _borrowed(case, tmp_path)
    _assert_equals_reference(res, ref, a, b)
    borrow = res.events[res.events.kind == "borrow"]
    assert len(borrow) > 100 and (borrow.cash < 0).all() and (res.totals.borrow < 0).any()
    np.testing.assert_allclose(
        borrow.groupby("column").cash.sum().reindex(range(x.shape[1]), fill_value=0.0),
        res.totals.borrow,
        rtol=0,
        atol=1e-9 * CAPITAL,
    )
    ratio = res.margin_ratio["A"].to_numpy()
    short = res.positions["A"].to_numpy() < 0
    assert np.isfinite(ratio[short]).all() and np.isnan(ratio[~short]).all()


def test_borrowed_spot_legs_are_margin_called_over_the_cases(tmp_path):
    """Not vacuous: over the cases venue A's margin account is called (a buy-back event of leg A)."""
    calls = 0
    for k, case in enumerate(CASES[:4]):
        ev = _borrowed(case, tmp_path / str(k))[3].events
        calls += int(((ev.kind == "liquidation") & (ev.leg == "A")).sum())
    assert calls > 0


def test_legs_of_different_coins_are_refused():
    """Symbol n of both legs must be one coin: BTC against ETH is no hedge (a silent mismatch would
    price a spread of two coins)."""
    a, b, x = _markets(3, 1)
    swapped = b.select(symbols=list(reversed(b.symbols)))
    with pytest.raises(ConfigError, match="BTCUSDT against ETHUSDT"):
        run_spread(a, swapped, 1.0)
    # the same coins quoted differently (USDT against USDC, a thousands prefix) are one coin
    from data.symbols import coin_of

    assert coin_of("BTCUSDT") == coin_of("BTCUSDC") and coin_of("1000PEPEUSDT") == coin_of("kPEPEUSDC") == "PEPE"


@pytest.mark.parametrize("case", CASES[:3], ids=[f"seed{c[0]}-lag{c[2]}-delay{c[4]}" for c in CASES[:3]])
def test_each_perp_at_its_own_leverage(case, tmp_path):
    """Leg A's perp at another leverage than leg B's (``leverage_a``, per column here): the kernel
    equals the reference; the capital starts split L_B / (L_A + L_B) to venue A and the first
    sizing holds ``E * L_A * L_B / (L_A + L_B)`` per leg."""
    a, b, x, config, spread, settings = _setup(case, tmp_path)
    lev_a = np.array([2.0, 5.0, 15.0, 20.0])  # against LEVERAGE = 5, 10, 15, 20: two differ, two equal
    res = run_spread(
        a, b, _targets(a, x), config, spread, column_params={"perp_leverage": LEVERAGE, "leverage_a": lev_a}
    )
    _assert_equals_reference(res, _reference(a, b, x, settings, leverage_a=lev_a), a, b)
    # the first sizing of column 0 (L_A 2, L_B 5): notional E * 10 / 7, from a wallet split 5/7 to A
    ev = res.events[(res.events.column == 0) & (res.events.kind == "fill")]
    first = ev.iloc[0]
    j = a.index.get_loc(first.time)
    size = abs(x[j - max(settings["lag"], 1), 0])  # the target that bar executes
    notional = abs(first.qty) * (
        a.perp_open[j, COLUMN_SYMBOL[0]] if settings["lag"] else a.perp_close[j - 1, COLUMN_SYMBOL[0]]
    )
    assert first.leg == "A" and notional == pytest.approx(CAPITAL * size * 10 / 7, rel=1e-9)
    with pytest.raises(ConfigError, match="leverage_a"):
        SpreadConfig(leg_a="spot", leverage_a=3)


# --------------------------------------------------------------------------- quote currencies
def _quote_rates(index, seed):
    """A random USDT-per-USDC series: a 0.3%-per-bar walk around 0.999 (far wider than the real
    one, so that its moves show), with a jump between each close and the next open."""
    rng = np.random.default_rng(seed)
    close = 0.999 * np.exp(np.cumsum(rng.normal(0, 0.003, len(index))))
    opn = np.r_[close[0] * 1.002, close[:-1]] * np.exp(rng.normal(0, 0.001, len(index)))
    return pd.DataFrame({"open": opn, "close": close}, index=index)


@pytest.mark.parametrize(
    "case, leg, spot",
    [(CASES[0], "B", False), (CASES[2], "A", False), (CASES[4], "B", False), (CASES[1], "A", True)],
    ids=["seed1-B", "seed3-A", "seed5-B-tiers", "seed2-A-spot"],
)
def test_a_leg_quoted_in_another_currency_matches_the_reference(case, leg, spot, tmp_path):
    """One venue's quote valued at a rate series: its wallet, PnL, fees, funding and liquidations
    stay in its quote and count at the rate of the moment, a move of the rate revalues its margin
    balance (in ``unhedged``; ``totals.quote_fx``), transfers convert at each end; the kernel
    equals the reference (which checks the identity in the account currency at every bar)."""
    import dataclasses

    a, b, x, config, spread, settings = _setup(case, tmp_path)
    if spot:
        x = np.abs(x)
        spread = dataclasses.replace(spread, leg_a="spot")
        settings = dict(settings, leg_a="spot")
    rates = _quote_rates(a.index, case[0])
    res = _run(a, b, x, config, spread, quote_rates={leg: rates})
    key = "rates_a" if leg == "A" else "rates_b"
    ref = _reference(a, b, x, dict(settings, **{key: (rates["open"].to_numpy(), rates["close"].to_numpy())}))
    _assert_equals_reference(res, ref, a, b)
    np.testing.assert_allclose(res.totals["quote_fx"], ref["quote_fx"][-1], rtol=0, atol=1e-9 * CAPITAL)
    assert (res.totals["quote_fx"].abs() > 1e-3).all() and "quote_rate" in res.flags
    cnt = _counts(ref)
    assert cnt["transfers"] > 0 and (cnt["liquidations"] > 0 or spot), cnt
    # the same run with the rate at 1 everywhere: the unconverted run's figures (to rounding)
    flat = rates.assign(open=1.0, close=1.0)
    one = _run(a, b, x, config, spread, quote_rates={leg: flat})
    plain = _run(a, b, x, config, spread)
    _close("equity at rate 1", one.equity.values, plain.equity.values, 1e-9 * CAPITAL)
    assert (one.totals["quote_fx"] == 0).all() and "usdc_usdt_parity" not in one.flags


def test_a_move_of_the_rate_revalues_the_venue_by_hand():
    """A held hedge on flat prices without funding or fees: when venue B's quote loses 10%
    against the account currency, the equity falls by 10% of venue B's margin balance, all of
    it in ``quote_fx`` (inside ``unhedged``); a transfer then buys 1/0.9 of the quote per unit sent."""
    T2 = 6
    index = pd.date_range("2024-01-01", periods=T2, freq="1h", tz="UTC")
    px = {k: np.full((T2, 1), 100.0) for k in ("open", "high", "low", "close")}
    px["volume"] = np.full((T2, 1), 1e9)
    m = Market.from_arrays(index, ["BTCUSDT"], freq="1h", spot=px, perp=px, funding_rate=np.zeros((T2, 1)))
    rate = pd.DataFrame({"open": [1.0, 1.0, 1.0, 0.9, 0.9, 0.9], "close": [1.0, 1.0, 0.9, 0.9, 0.9, 0.9]}, index=index)
    cfg = BacktestConfig(initial_capital_quote=1000.0, perp_leverage=2, slippage_bps=0.0, execution_delay_bars=1)
    spread = SpreadConfig(fee_a_rate=0.0, fee_b_rate=0.0, venue_rebalance_band=0.05, venue_transfer_fee_quote=0.0)
    res = run_spread(m, m, 1.0, cfg, spread, quote_rates={"B": rate})
    eq = res.equity[0].to_numpy()
    assert eq[1] == pytest.approx(1000.0, abs=1e-9)
    assert eq[2] == pytest.approx(1000.0 - 0.1 * 500.0, abs=1e-9)  # venue B held 500 of its quote
    assert res.totals["quote_fx"][0] == pytest.approx(-50.0, abs=1e-9)
    assert res.components["unhedged"][0].iloc[-1] == pytest.approx(-50.0, abs=1e-9)
    assert eq[-1] == pytest.approx(950.0, abs=1e-9)  # afterwards the transfers move value, not make it
    tr = res.events[res.events.kind == "transfer"]
    # the rebalance at bar 3 (B at 450 of 950: below 0.95 of the mean) sends A's 25 (account currency)
    assert len(tr) == 2 and tr.cash.iloc[0] == pytest.approx(-25.0, abs=1e-9)
    assert tr.cash.iloc[1] == pytest.approx(25.0, abs=1e-9)


def test_quote_rates_resume_bit_for_bit_and_bad_rates_are_refused():
    a, b, x = _markets(11, 1)
    cfg = BacktestConfig(initial_capital_quote=CAPITAL, maintenance_margin_rate=0.01, clearance_fee_rate=0.015)
    spread = SpreadConfig(venue_transfer_delay_hours=2, venue_rebalance_band=0.1)
    rates = _quote_rates(a.index, 4)
    kw = {"column_params": {"perp_leverage": LEVERAGE}}
    whole = run_spread(a, b, _targets(a, x), cfg, spread, quote_rates={"B": rates}, **kw)
    parts, state = [], None
    for lo, hi in ((0, 120), (120, T)):
        sa = a.select(start=a.index[lo], end=a.index[hi - 1] + pd.Timedelta(hours=1))
        sb = b.select(start=b.index[lo], end=b.index[hi - 1] + pd.Timedelta(hours=1))
        res = run_spread(
            sa, sb, _targets(sa, x[lo:hi]), cfg, spread, resume=state, quote_rates={"B": rates[lo:hi]}, **kw
        )
        parts.append(res)
        state = res.state
    joined = type(whole).chain(parts)
    pd.testing.assert_frame_equal(joined.equity, whole.equity)
    pd.testing.assert_frame_equal(joined.events, whole.events)
    pd.testing.assert_frame_equal(joined.totals, whole.totals)
    for bad, says in (
        (rates.assign(close=0.0), "finite rate > 0"),
        (rates.iloc[1:], "indexed like the legs"),
        (rates[["open"]], "columns 'open' and 'close'"),
    ):
        with pytest.raises(ConfigError, match=says):
            run_spread(a, b, _targets(a, x), cfg, spread, quote_rates={"B": bad}, **kw)
    with pytest.raises(ConfigError, match="keys are the legs"):
        run_spread(a, b, _targets(a, x), cfg, spread, quote_rates={"C": rates}, **kw)


def test_fills_beyond_the_slippage_cap_match_the_reference_and_are_flagged(tmp_path):
    """Volumes a millionth of the random markets': the participation term would price sales at or
    below zero; fills are priced at the cap (50% from the reference), their events say so, the run
    is flagged, and the kernel still equals the reference."""
    import dataclasses

    a, b, x, config, spread, settings = _setup(CASES[1], tmp_path)
    a = dataclasses.replace(a, perp_volume=a.perp_volume * 1e-6)
    b = dataclasses.replace(b, perp_volume=b.perp_volume * 1e-6)
    with pytest.warns(UserWarning, match="priced at the slippage cap, 50%"):
        res = _run(a, b, x, config, spread)
    _assert_equals_reference(res, _reference(a, b, x, settings), a, b)
    fills = res.events[res.events.kind == "fill"]
    capped = fills[fills.rate == 0.5]
    assert "slippage_capped" in res.flags and len(capped) >= 5
    assert (fills.price > 0).all()  # (uncapped, a sale of that size would be priced below zero)
    plain = _run(*_setup(CASES[1], tmp_path / "plain")[:5])
    assert "slippage_capped" not in plain.flags and plain.events[plain.events.kind == "fill"].rate.isna().all()

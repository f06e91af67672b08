"""Strategies: look-ahead for every registered strategy, bounds/shape properties, behaviour."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import strategies as S
from backtest.targets import Targets
from data.market import Market

YEAR_8H = 365 * 3  # settlements per year at 8h


# --------------------------------------------------------------------------- builders
def synthetic_market(T: int = 400, N: int = 4, seed: int = 0, gaps: bool = True) -> Market:
    """Hourly market with random walks, a rich/cheap basis, 8h -> 4h -> 1h funding, gaps."""
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2025-09-10", periods=T, freq="1h", tz="UTC")
    spot = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, N)), axis=0))
    basis = 0.001 * np.sin(np.arange(T)[:, None] / 17.0 + np.arange(N)) + rng.normal(0, 3e-4, (T, N))
    perp = spot * (1 + basis)
    mark = perp * (1 + rng.normal(0, 1e-4, (T, N)))
    hour = np.arange(T)
    interval = np.where(hour < T // 3, 8.0, np.where(hour < 2 * T // 3, 4.0, 1.0))
    settle = ((hour + 1) % interval.astype(int)) == 0
    mask = np.broadcast_to(settle[:, None], (T, N)).copy()
    regime = np.where(np.arange(N) % 2 == 0, 1.0, -1.0) * 3e-4
    rate = np.where(mask, regime + rng.normal(0, 3e-4, (T, N)), 0.0)
    if gaps:
        spot[:6, 1] = np.nan  # symbol 1 listed late
        if N > 2 and T > 104:
            spot[100:104, 2] = np.nan  # outage
    m = Market.from_arrays(
        idx,
        [f"S{j}USDT" for j in range(N)],
        spot=spot,
        perp=perp,
        mark=mark,
        funding_rate=rate,
        funding_mask=mask,
        funding_interval_hours=np.broadcast_to(interval[:, None], (T, N)),
        borrow_hourly_rate=np.full((T, N), 0.05 / 8760),
    )
    return m


def market_fields(m: Market) -> dict:
    return {f.name: getattr(m, f.name) for f in fields(m)}


def perturb_after(m: Market, t: int, seed: int) -> Market:
    """Same market up to bar t; everything after t replaced with random data."""
    rng = np.random.default_rng(seed)
    kw = market_fields(m)
    T, N = m.shape
    k = T - t - 1
    if k <= 0:
        return m
    for name, v in list(kw.items()):
        if not (isinstance(v, np.ndarray) and v.ndim == 2):
            continue
        a = np.array(v, copy=True)
        if a.dtype == bool:
            a[t + 1 :] = rng.random((k, N)) < 0.5
        elif a.dtype == np.int32:
            a[t + 1 :] = rng.integers(0, 3, (k, N))
        elif name == "funding_interval_hours":
            a[t + 1 :] = rng.choice([1.0, 4.0, 8.0, np.nan], (k, N))
        elif name.startswith("funding") or name == "borrow_hourly_rate":
            a[t + 1 :] = rng.normal(0, 0.01, (k, N))
        else:
            a[t + 1 :] = rng.uniform(1, 1000, (k, N))
        kw[name] = a
    for name in ("spot_close", "perp_close"):
        kw[name][t + 1 :][~kw["valid"][t + 1 :]] = np.nan
    return Market(**kw)


VARIANTS = {
    "funding_threshold": [{}, {"signal": "predicted", "min_hold_hours": 12.0}],
    "funding_sign": [{}, {"signal": "predicted"}, {"use_market_borrow": True, "min_hold_hours": 8.0}],
    "basis_aware": [{"window_hours": 24.0}, {"window_hours": 24.0, "allow_reverse": True, "min_edge_bps": 0.0}],
    "rotation": [{"top_k": 2, "rebalance_hours": 8.0}, {"signal": "predicted", "weighting": "strength", "top_k": 1}],
}


def _variants(name):
    return VARIANTS.get(name, [{}])


# --------------------------------------------------------------------------- look-ahead
@pytest.mark.parametrize("name", S.available_strategies())
def test_no_look_ahead_every_registered_strategy(name):
    base = synthetic_market()
    for params in _variants(name):
        ref = S.run_strategy(name, base, params)
        assert (ref.values[np.isfinite(ref.values)] != 0).any(), (
            f"{name} {params} never trades: the check proves nothing"
        )
        for t in (0, 37, 150, 260, 398):
            alt = S.run_strategy(name, perturb_after(base, t, seed=t), params)
            np.testing.assert_array_equal(ref.values[: t + 1], alt.values[: t + 1], err_msg=f"{name} {params} t={t}")
            if ref.weights is not None:
                np.testing.assert_array_equal(ref.weights[: t + 1], alt.weights[: t + 1])


def test_look_ahead_test_detects_a_cheater():
    """The perturbation harness catches a strategy that peeks one bar ahead."""

    def cheater(market):
        nxt = np.vstack([market.funding_rate[1:], np.zeros((1, market.n_symbols))])
        return S.mask_targets(market, np.sign(nxt))

    base = synthetic_market()
    ref = S.run_strategy(cheater, base).values
    alt = S.run_strategy(cheater, perturb_after(base, 150, 1)).values
    assert not np.array_equal(ref[:151], alt[:151])


# --------------------------------------------------------------------------- properties
@st.composite
def random_market(draw):
    T = draw(st.integers(1, 60))
    N = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2025-01-01", periods=T, freq="1h", tz="UTC")
    spot = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), axis=0))
    spot[rng.random((T, N)) < 0.1] = np.nan
    perp = spot * (1 + rng.normal(0, 2e-3, (T, N)))
    mask = rng.random((T, N)) < 0.3
    rate = np.where(mask, rng.normal(0, 1e-3, (T, N)), 0.0)
    hours = rng.choice([1.0, 4.0, 8.0], (T, N))
    return Market.from_arrays(
        idx,
        [f"X{j}" for j in range(N)],
        spot=spot,
        perp=perp,
        funding_rate=rate,
        funding_mask=mask,
        funding_interval_hours=hours,
    )


PARAM_CHOICES = {
    "always_carry": [{}, {"exposure": 0.5}],
    "always_reverse": [{}, {"exposure": 0.25}],
    "funding_threshold": [
        {"window_settlements": 1},
        {"entry_annualized": -0.5, "exit_annualized": -1.0},
        {"signal": "predicted", "min_hold_hours": 3.0},
    ],
    "funding_sign": [
        {"window_settlements": 2},
        {"entry_annualized": 0.0, "signal": "predicted"},
        {"allow_reverse": False, "exposure": 0.3},
    ],
    "basis_aware": [{"window_hours": 4.0, "min_edge_bps": 0.0, "allow_reverse": True}, {"window_hours": 12.0}],
    "rotation": [{"top_k": 1, "rebalance_hours": 1.0, "min_annualized": -5.0}, {"weighting": "strength", "buffer": 0}],
}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(m=random_market(), pick=st.integers(0, 100))
def test_targets_bounded_and_shaped(m, pick):
    for name in S.available_strategies():
        choices = PARAM_CHOICES.get(name, [{}])
        params = choices[pick % len(choices)]
        t = S.run_strategy(name, m, params)
        assert isinstance(t, Targets)
        assert t.values.shape == m.shape
        finite = t.values[np.isfinite(t.values)]
        assert ((finite >= -1) & (finite <= 1)).all()
        # NaN only where the bar is invalid
        assert not np.isnan(t.values[m.valid]).any(), name
        if t.weights is not None:
            assert (t.weights >= 0).all() and t.weights.shape == m.shape


@settings(max_examples=20, deadline=None)
@given(m=random_market())
def test_grid_shapes(m):
    t = S.run_strategy("funding_sign", m, {"entry": [0.0, 0.1], "window_settlements": [1, 3, 5]})
    assert t.values.shape == (m.n_bars, 6 * m.n_symbols)
    assert list(np.unique(t.group)) == list(range(6))
    assert (t.column_symbol == np.tile(np.arange(m.n_symbols), 6)).all()


# --------------------------------------------------------------------------- building blocks
def _funding_market(rates_per_settlement, interval_hours=8, N=1, spot=None, basis=None):
    """Hourly market whose settlements (every interval_hours) carry the given rates."""
    rates = np.atleast_2d(np.asarray(rates_per_settlement, float))
    if rates.shape[0] == 1 and N > 1:
        rates = np.repeat(rates, N, axis=0)
    rates = rates.T if rates.shape[0] == N and rates.ndim == 2 else rates
    K = rates.shape[0]
    T = K * interval_hours
    rate = np.zeros((T, N))
    mask = np.zeros((T, N), bool)
    rows = np.arange(K) * interval_hours + interval_hours - 1
    rate[rows] = rates
    mask[rows] = True
    idx = pd.date_range("2024-01-01", periods=T, freq="1h", tz="UTC")
    s = np.full((T, N), 100.0) if spot is None else spot
    p = s * (1 + (0.0 if basis is None else basis))
    return Market.from_arrays(
        idx,
        [f"S{j}" for j in range(N)],
        spot=s,
        perp=p,
        funding_rate=rate,
        funding_mask=mask,
        funding_interval_hours=float(interval_hours),
    ), rows


def test_trailing_funding_annualizes_per_settlement_interval():
    T = 12
    idx = pd.date_range("2024-01-01", periods=T, freq="1h", tz="UTC")
    rate = np.zeros((T, 1))
    mask = np.zeros((T, 1), bool)
    hours = np.full((T, 1), np.nan)
    # an 8h settlement of 0.0001 at bar 3, then 1h settlements of 0.00002 at bars 4 and 5
    for i, r, h in ((3, 1e-4, 8.0), (4, 2e-5, 1.0), (5, 2e-5, 1.0)):
        rate[i], mask[i], hours[i] = r, True, h
    m = Market.from_arrays(
        idx, ["A"], spot=100.0, perp=100.0, funding_rate=rate, funding_mask=mask, funding_interval_hours=hours
    )
    f = S.trailing_funding_annualized(m, 2)
    assert np.isnan(f[:4]).all()
    assert f[4, 0] == pytest.approx((1e-4 * 1095 + 2e-5 * 8760) / 2)
    assert f[5, 0] == pytest.approx(2e-5 * 8760)
    assert f[11, 0] == f[5, 0]
    f1 = S.trailing_funding_annualized(m, 3, min_settlements=1)
    assert f1[3, 0] == pytest.approx(0.1095)
    assert S.trailing_funding_annualized(m, 2) is f  # cached: computed once per market


def test_hysteresis_kernel():
    score = np.array([[0.0], [0.2], [0.1], [0.05], [0.01], [np.nan], [0.3], [-0.5], [-0.5]])
    s = S.hysteresis(score, enter_long=0.15, exit_long=0.02, enter_short=-0.4, exit_short=-0.1)
    assert s[:, 0].tolist() == [0, 1, 1, 1, 0, 0, 1, -1, -1]
    held = S.hysteresis(score, enter_long=0.15, exit_long=0.02, min_hold_bars=4)
    assert held[:, 0].tolist() == [0, 1, 1, 1, 1, 1, 1, 0, 0]


def test_rolling_zscore_is_trailing():
    x = np.arange(10, dtype=float)[:, None]
    z = S.rolling_zscore(x, 4, 2)
    assert np.isnan(z[0, 0])
    w = x[2:6, 0]
    assert z[5, 0] == pytest.approx((5 - w.mean()) / w.std(ddof=1))


# --------------------------------------------------------------------------- behaviour
def test_always_carry_and_reverse_follow_validity():
    m = synthetic_market(T=50, N=3)
    c = S.always_carry(m, S.AlwaysCarryParams())
    r = S.always_reverse(m, S.AlwaysReverseParams(exposure=0.5))
    assert (c[:6, 1] == 0).all() and (c[6:, 1] == 1).all()  # symbol 1 listed at bar 6: flat before
    assert (c[:, 0] == 1).all() and (r[:, 0] == -0.5).all()
    big = synthetic_market(T=200, N=3)
    assert np.isnan(S.always_carry(big, S.AlwaysCarryParams())[100:104, 2]).all()  # outage: keep


def test_funding_threshold_enters_after_cross_and_exits_below_exit():
    hi = 0.2 / YEAR_8H  # 20%/yr per 8h settlement
    rates = [0.0] * 5 + [hi] * 5 + [0.0] * 5
    m, rows = _funding_market(rates)
    t = S.funding_threshold(
        m, S.FundingThresholdParams(entry_annualized=0.10, exit_annualized=0.02, window_settlements=3)
    )[:, 0]
    # trailing mean of 3: after 1 high settlement 0.067 (< entry), after 2: 0.133 -> enter
    assert (t[: rows[6]] == 0).all() and t[rows[6]] == 1
    # after the regime ends: 0.133, 0.067 (still >= exit), then 0 -> exit at the 3rd zero settlement
    assert (t[rows[6] : rows[12]] == 1).all() and t[rows[12]] == 0 and (t[rows[12] :] == 0).all()
    # a minimum holding time delays the exit: held from rows[6] for at least 60 hours
    t2 = S.funding_threshold(
        m,
        S.FundingThresholdParams(entry_annualized=0.10, exit_annualized=0.02, window_settlements=3, min_hold_hours=60),
    )[:, 0]
    assert t2[rows[12]] == 1 and t2[rows[6] + 60] == 0 and t2[rows[6] + 59] == 1


def test_funding_sign_goes_reverse_in_negative_regime_net_of_borrow():
    deep, shallow, pos = -0.30 / YEAR_8H, -0.08 / YEAR_8H, 0.20 / YEAR_8H
    m, rows = _funding_market([pos] * 4 + [deep] * 4 + [shallow] * 4, N=1)
    p = S.FundingSignParams(entry_annualized=0.05, exit_annualized=0.0, borrow_annual_rate=0.05, window_settlements=1)
    t = S.funding_sign(m, p)[:, 0]
    assert t[rows[0]] == 1 and t[rows[3]] == 1
    assert t[rows[4]] == -1  # -0.30 < -(0.05 + 0.05)
    # -0.08: reverse edge is 0.08 - 0.05 = 0.03: below entry (0.05) but above exit (0): keep holding
    assert t[rows[8]] == -1
    fresh = S.funding_sign(m.select(start=m.index[rows[7] + 1]), p)[:, 0]
    assert (fresh == 0).all()  # not entered from flat: 0.03 net edge < 0.05 entry
    # with an expensive borrow the shallow regime is exited: -0.08 + 0.10 > -0.0
    t_exp = S.funding_sign(
        m,
        S.FundingSignParams(entry_annualized=0.05, exit_annualized=0.0, borrow_annual_rate=0.10, window_settlements=1),
    )[:, 0]
    assert t_exp[rows[4]] == -1 and t_exp[rows[8]] == 0
    no_rev = S.funding_sign(m, S.FundingSignParams(allow_reverse=False, window_settlements=1))[:, 0]
    assert (no_rev >= 0).all() and no_rev[rows[4]] == 0


def test_rotation_picks_top_k_with_direction_and_weights():
    ann = np.array([0.30, 0.10, -0.40, 0.02])
    m, rows = _funding_market(np.tile(ann[:, None] / YEAR_8H, (1, 6)), N=4)
    out = S.rotation(
        m,
        S.RotationParams(
            top_k=2,
            rebalance_hours=24,
            buffer=0,
            min_annualized=0.0,
            borrow_annual_rate=0.05,
            window_settlements=1,
            weighting="strength",
        ),
    )
    last = out.targets[-1]
    assert last.tolist() == [1, 0, -1, 0]  # strengths 0.30, 0.10, 0.35, 0.02
    assert out.weights[-1] == pytest.approx([0.30, 0, 0.35, 0], rel=1e-9)
    tg = S.run_strategy("rotation", m, {"top_k": [1, 2], "window_settlements": 1, "rebalance_hours": 24})
    assert tg.weights is not None and tg.values.shape == (m.n_bars, 8)
    assert tg.values[-1, :4].tolist() == [0, 0, -1, 0]


def test_rotation_rebalances_on_schedule_with_buffer():
    # symbol 0 starts best; after settlement 6 symbol 1 edges past it
    a = np.array([[0.30] * 6 + [0.20] * 9, [0.10] * 6 + [0.25] * 9, [0.05] * 15])
    m, rows = _funding_market(a / YEAR_8H, N=3)
    kw = dict(top_k=1, rebalance_hours=24, window_settlements=1, min_annualized=0.0)
    with_buffer = S.rotation(m, S.RotationParams(buffer=1, **kw)).targets
    no_buffer = S.rotation(m, S.RotationParams(buffer=0, **kw)).targets
    first = 23  # first daily rebalance (bar 23 closes at 00:00 UTC) after the first settlement
    assert (with_buffer[:first] == 0).all()
    assert (with_buffer[first:, 0] == 1).all()  # incumbent kept while ranked 2nd (< top_k + buffer)
    assert no_buffer[-1].tolist() == [0, 1, 0]
    switch = np.flatnonzero(np.diff(no_buffer[:, 1]) != 0) + 1
    close_hours = (m.index[switch] + pd.Timedelta(hours=1)).hour
    assert (close_hours == 0).all()  # only at daily rebalances (bar close 00:00 UTC)


def test_basis_aware_enters_rich_basis_and_exits_on_convergence():
    T = 200
    rng = np.random.default_rng(3)
    b = rng.normal(0, 1e-4, (T, 1))
    b[120:130] = 0.004  # perp 40 bps rich
    m, _ = _funding_market([0.0001] * (T // 8), basis=b)
    t = S.basis_aware(m, S.BasisAwareParams(window_hours=48, entry_z=2.0, exit_z=0.0, min_edge_bps=5.0))[:, 0]
    assert (t[:120] == 0).all()
    assert t[120] == 1
    assert t[135] == 0  # converged back below the rolling mean
    neg, _ = _funding_market([-0.001] * (T // 8), basis=b)  # funding argues against carry
    assert (S.basis_aware(neg, S.BasisAwareParams(window_hours=48))[:, 0] == 0).all()


def test_run_strategy_grid_columns_and_custom_function():
    m = synthetic_market(T=100, N=2)
    t = S.run_strategy("funding_threshold", m, {"entry_annualized": [0.05, 0.1], "exit": 0.0})
    assert t.n_columns == 4
    assert set(["strategy", "symbol", "group", "entry_annualized", "exit_annualized"]) <= set(t.columns.columns)
    assert t.columns["entry_annualized"].tolist() == [0.05, 0.05, 0.1, 0.1]
    assert t.group.tolist() == [0, 0, 1, 1]

    def flat_half(market):
        return np.full(market.shape, 0.5)

    assert (S.run_strategy(flat_half, m).values == 0.5).all()

    def bad(market):
        return np.full(market.shape, 2.0)

    with pytest.raises(S.base.ConfigError, match=r"\[-1, 1\]"):
        S.run_strategy(bad, m)
    with pytest.raises(S.base.ConfigError):
        S.run_strategy("funding_threshold", m, {"entry_annualized": [0.01], "exit_annualized": 0.05})

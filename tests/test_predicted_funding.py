"""Predicted funding: the exchange formula on hand-computed inputs, causality, real-data accuracy."""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import pandas as pd
import pytest

import strategies as S
from data.market import Market
from strategies.predicted_funding import funding_formula, predicted_funding_rate, prediction_accuracy
from tests.conftest import SHARED_DATA as DATA


def _market(T, start="2024-01-01", interval=8, N=1, premium_rows=None, rate=None):
    idx = pd.date_range(start, periods=T, freq="1h", tz="UTC")
    mask = np.zeros((T, N), bool)
    mask[interval - 1 :: interval] = True
    r = np.where(mask, 1e-4, 0.0) if rate is None else rate
    return Market.from_arrays(
        idx,
        [f"S{j}" for j in range(N)],
        spot=100.0,
        perp=100.0,
        funding_rate=r,
        funding_mask=mask,
        funding_interval_hours=float(interval),
    )


def test_formula_hand_computed():
    # flat zone: premium within [-0.04%, +0.06%] gives exactly the interest 0.01%
    assert funding_formula(0.0002, 8.0) == pytest.approx(1e-4)
    assert funding_formula(-0.0004, 8.0) == pytest.approx(1e-4)
    assert funding_formula(0.0008, 8.0) == pytest.approx(0.0008 - 0.0005)
    assert funding_formula(-0.0010, 8.0) == pytest.approx(-0.0010 + 0.0005)
    assert funding_formula(0.01, 8.0) == pytest.approx(0.003)  # capped at BTC's 0.3%
    assert funding_formula(0.01, 8.0, cap=0.02) == pytest.approx(0.0095)
    # 4h before 2025-09-18: interest 0.005%, premium unscaled
    assert funding_formula(0.0002, 4.0) == pytest.approx(5e-5)
    assert funding_formula(0.0010, 4.0) == pytest.approx(0.0005)
    # 4h since 2025-09-18: whole rate x 4/8
    assert funding_formula(0.0010, 4.0, scale_whole_rate=True) == pytest.approx(0.5 * 0.0005)
    assert funding_formula(0.0002, 1.0, scale_whole_rate=True) == pytest.approx(1e-4 / 8)


def test_time_weighted_average_over_interval():
    T = 16
    m = _market(T)
    k = np.tile(np.arange(1, 9, dtype=float), 2)[:, None]
    premium = 0.001 * k  # premium rising through each 8h interval
    rate, hours, pos = predicted_funding_rate(m, premium=premium, cap=0.01, debias_settlements=0, return_details=True)
    # full interval: weights k - 0.5: sum = 32, sum(k (k - 0.5)) = 186
    pbar = 0.001 * 186 / 32
    assert rate[7, 0] == pytest.approx(pbar - 0.0005)
    assert rate[15, 0] == pytest.approx(pbar - 0.0005)
    # after 2 bars of the second interval: (0.5 * 0.001 + 1.5 * 0.002) / 2
    assert rate[9, 0] == pytest.approx((0.5 * 0.001 + 1.5 * 0.002) / 2.0 - 0.0005)
    assert pos[:, 0].tolist() == list(range(1, 9)) * 2
    assert (hours == 8).all()
    # 1h interval: equal weights, interest 0.01% / 8; one bar per interval here
    m1 = _market(6, interval=1)
    r1 = predicted_funding_rate(m1, premium=np.full((6, 1), 0.0002), debias_settlements=0)
    assert r1[3, 0] == pytest.approx(1.25e-5)
    # post-2025-09-18 scaling is applied by settlement time
    mp = _market(16, start="2025-09-17 16:00", interval=4)
    rp = predicted_funding_rate(mp, premium=np.full((16, 1), 0.0010), debias_settlements=0, cap=0.01)
    assert rp[3, 0] == pytest.approx(0.0010 - 0.0005 * 1)  # default 8h before the first settlement
    assert rp[5, 0] == pytest.approx(0.0010 - 0.0005)  # 4h, settles 2025-09-17 22:00: premium unscaled
    assert rp[7, 0] == pytest.approx((0.0010 - 0.0005) * 0.5)  # settles 2025-09-18 00:00: whole rate x 4/8


def test_prediction_is_causal_and_never_reads_the_rate_it_predicts():
    rng = np.random.default_rng(1)
    T, N = 200, 2
    idx = pd.date_range("2025-09-01", periods=T, freq="1h", tz="UTC")
    spot = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, N)), axis=0))
    mark = spot * (1 + rng.normal(3e-4, 5e-4, (T, N)))
    mask = np.zeros((T, N), bool)
    mask[7::8] = True
    rate = np.where(mask, rng.normal(1e-4, 2e-4, (T, N)), 0.0)
    m = Market.from_arrays(idx, ["A", "B"], spot=spot, perp=mark, mark=mark, funding_rate=rate, funding_mask=mask)
    ref = predicted_funding_rate(m)
    for t in (0, 7, 8, 100, 151):
        kw = {f.name: getattr(m, f.name) for f in fields(m)}
        for name in ("spot_open", "spot_close", "mark_open", "mark_close", "funding_rate", "funding_interval_hours"):
            a = np.array(kw[name], copy=True)
            a[t + 1 :] = rng.uniform(0.5, 2, a[t + 1 :].shape) * (1e-3 if name.startswith("funding") else 100)
            kw[name] = a
        c = np.array(kw["funding_count"], copy=True)
        c[t + 1 :] = rng.integers(0, 2, c[t + 1 :].shape)
        kw["funding_count"] = c
        alt = predicted_funding_rate(Market(**kw))
        np.testing.assert_array_equal(ref[: t + 1], alt[: t + 1])
    # changing the settled rate at bar j leaves the prediction of that settlement unchanged
    j = 103
    kw = {f.name: getattr(m, f.name) for f in fields(m)}
    r = np.array(m.funding_rate, copy=True)
    r[j] = 0.05
    kw["funding_rate"] = r
    alt = predicted_funding_rate(Market(**kw))
    np.testing.assert_array_equal(ref[: j + 1], alt[: j + 1])
    assert not np.array_equal(ref[j + 1 :], alt[j + 1 :])  # but later predictions learn from it


def test_caps_from_leverage_tiers():
    tiers = {
        "BTC/USDT:USDT": [
            {"minNotional": 50000, "maintenanceMarginRate": 0.005},
            {"minNotional": 0, "maintenanceMarginRate": 0.004},
        ]
    }
    caps = S.caps_from_leverage_tiers(tiers, ["BTCUSDT", "FOOUSDT"], default=0.02)
    assert caps == {"BTCUSDT": pytest.approx(0.003), "FOOUSDT": 0.02}
    m = _market(16)
    rate = predicted_funding_rate(m, premium=np.full((16, 1), 0.05), cap={"S0": 0.0075}, debias_settlements=0)
    assert rate.max() == pytest.approx(0.0075)


def test_prediction_accuracy_on_synthetic_exact_data():
    """With the premium the exchange used, the formula reproduces the settled rate exactly."""
    T = 80
    rng = np.random.default_rng(5)
    prem = rng.normal(0, 8e-4, (T, 1))
    m0 = _market(T)
    exact = predicted_funding_rate(m0, premium=prem, debias_settlements=0)
    settled = np.where(m0.funding_mask, exact, 0.0)
    m = _market(T, rate=settled)
    acc = prediction_accuracy(m, premium=prem, debias_settlements=0)
    assert acc.loc["S0", "n"] == 10
    assert acc.loc["S0", "mae_bps"] == pytest.approx(0.0, abs=1e-9)
    assert acc.loc["S0", "sign_accuracy"] == 1.0


# --------------------------------------------------------------------------- real data
def _real_market(base: str, start: str | None = None) -> Market:
    b = DATA / "binance"
    f = b / "futures"

    def bars(path):
        d = pd.read_feather(path)
        d.index = pd.DatetimeIndex(d.pop("date")).as_unit("ns").tz_convert("UTC")
        return d

    spot, perp = bars(b / f"{base}_USDT-1h.feather"), bars(f / f"{base}_USDT_USDT-1h-futures.feather")
    mark = bars(f / f"{base}_USDT_USDT-1h-mark.feather")
    fr = pd.read_feather(f / f"{base}_USDT_USDT-1h-funding_rate.feather")
    when = pd.DatetimeIndex(fr["date"]).as_unit("ns").tz_convert("UTC").floor("min")  # ms jitter
    lo = max(spot.index[0], perp.index[0], mark.index[0])
    if start is not None:
        lo = max(lo, pd.Timestamp(start, tz="UTC"))
    hi = min(spot.index[-1], perp.index[-1], mark.index[-1])
    idx = pd.date_range(lo, hi, freq="1h")
    # a settlement at s is known at the close of the bar (s - 1h, s]
    bar = when.ceil("h") - pd.Timedelta(hours=1)
    interval = pd.Series(when).diff().dt.total_seconds().div(3600).fillna(8.0).to_numpy()
    per_bar = (
        pd.DataFrame({"bar": bar, "rate": fr["open"].to_numpy(), "h": interval})
        .groupby("bar")
        .agg(rate=("rate", "sum"), n=("rate", "size"), h=("h", "last"))
        .reindex(idx)
    )

    def px(d):
        return {k: d[k].reindex(idx).to_numpy()[:, None] for k in ("open", "high", "low", "close")}

    return Market.from_arrays(
        idx,
        [f"{base}USDT"],
        spot=px(spot),
        perp=px(perp),
        mark=px(mark),
        funding_rate=per_bar["rate"].fillna(0.0).to_numpy()[:, None],
        funding_mask=(per_bar["n"].fillna(0) > 0).to_numpy()[:, None],
        funding_interval_hours=per_bar["h"].to_numpy()[:, None],
    )


@pytest.mark.shared_data
@pytest.mark.skipif(
    not (DATA / "binance" / "futures").exists(),
    reason=f"shared Binance data not found at {DATA} (set CARRY_SHARED_DATA to its folder)",
)
@pytest.mark.parametrize("base,start", [("BTC", "2020-01-01"), ("XTZ", None)])
def test_accuracy_on_real_data(base, start, capsys):
    m = _real_market(base, start)
    acc = prediction_accuracy(m)
    raw = prediction_accuracy(m, debias_settlements=0)
    early = prediction_accuracy(m, lead_bars=3)
    with capsys.disabled():
        for label, a in (("debiased", acc), ("pure formula", raw), ("3 bars before", early)):
            r = a.iloc[0]
            print(
                f"\n{base}USDT {label}: n={int(r.n)} MAE={r.mae_bps:.3f} bps sign accuracy={r.sign_accuracy:.3f} "
                f"(naive last-rate: MAE={r.naive_mae_bps:.3f} bps, sign={r.naive_sign_accuracy:.3f})"
            )
    r = acc.iloc[0]
    assert r.n > 1000
    assert r.sign_accuracy > 0.6
    assert r.mae_bps < 5.0
    assert raw.iloc[0].mae_bps < 10.0
    # the predicted signal is usable by strategies
    t = S.run_strategy("funding_sign", m, {"signal": "predicted"})
    assert np.isfinite(t.values).mean() > 0.9

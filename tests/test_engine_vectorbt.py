"""Each leg's price PnL, slippage and fees equal vectorbt's Portfolio.from_orders on the same fills
(funding, borrow and liquidation off)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from backtest.targets import Targets


@pytest.mark.seed(5)
@pytest.mark.parametrize("leverage,slip", [(1.0, 0.0), (3.0, 5.0)])
def test_legs_match_vectorbt_from_orders(leverage, slip, rng, random_market_factory):
    vbt = pytest.importorskip("vectorbt")
    T, N = 300, 2
    m = random_market_factory(T, N, vol=0.01, wick=0.0)
    m = type(m).from_arrays(
        m.index,
        m.symbols,
        spot={k: getattr(m, f"spot_{k}") for k in ("open", "high", "low", "close", "volume")},
        perp={k: getattr(m, f"perp_{k}") for k in ("open", "high", "low", "close", "volume")},
        mark={k: getattr(m, f"mark_{k}") for k in ("open", "high", "low", "close")},
    )  # no funding
    tg = np.where(rng.random((T, N)) < 0.05, rng.choice([-1.0, -0.4, 0.0, 0.6, 1.0], (T, N)), np.nan)
    tg = dataclasses.replace(Targets.from_array(m, tg), group=np.arange(N))  # a portfolio per symbol: no shared cash
    cfg = BacktestConfig(
        rebalance_every_hours=None,  # fills on target changes only
        rebalance_notional_band=None,
        perp_leverage=leverage,
        slippage_bps=slip,
        spot_taker_fee_rate=0.001,
        perp_taker_fee_rate=0.0005,
        borrow_annual_rate=0.0,
        maintenance_margin_rate=0.0,
        volume_participation_coefficient=0.001,
    )
    res = run_backtest(m, tg, cfg)
    assert (res.events.kind == "fill").sum() > 20
    assert not (res.events.kind.isin(["funding", "borrow", "liquidation"])).any()

    fills = res.events[res.events.kind == "fill"]
    bar = m.index.get_indexer(fills.time)
    size = np.full((T, 2 * N), np.nan)
    price = np.full((T, 2 * N), np.nan)
    for b, c, leg, qty, px in zip(bar, fills.column, fills.leg, fills.qty, fills.price):
        k = 2 * c + (leg == "perp")
        assert np.isnan(size[b, k])  # one fill per leg and bar
        size[b, k], price[b, k] = qty, px
    close = np.empty((T, 2 * N))
    close[:, 0::2], close[:, 1::2] = m.spot_close, m.mark_close
    fees = np.tile([0.001, 0.0005], N)
    pf = vbt.Portfolio.from_orders(
        close=close,
        size=size,
        price=price,
        fees=fees,
        size_type="amount",
        direction="both",
        init_cash=1e9,
        cash_sharing=False,
        freq="1h",
    )
    vbt_pnl = pf.value().to_numpy() - 1e9
    vbt_fees = np.zeros((T, 2 * N))
    ours_slip = np.zeros((T, 2 * N))
    for b, c, leg, qty, px, fee in zip(bar, fills.column, fills.leg, fills.qty, fills.price, fills.fee):
        k = 2 * c + (leg == "perp")
        vbt_fees[b, k] += fee
        ref = (m.spot_open if leg == "spot" else m.perp_open)[b, c]
        ours_slip[b, k] += qty * (ref - px)
    ours_slip = ours_slip.cumsum(axis=0)
    ours_fees = -vbt_fees.cumsum(axis=0)
    # vectorbt's own fee records agree with ours
    rec = pf.orders.records_readable
    assert np.isclose(rec["Fees"].sum(), vbt_fees.sum(), rtol=1e-12)
    for c in range(N):
        spot = res.pnl("spot_price").iloc[:, c].to_numpy()
        perp = res.pnl("perp_price").iloc[:, c].to_numpy()
        np.testing.assert_allclose(
            spot + ours_slip[:, 2 * c] + ours_fees[:, 2 * c], vbt_pnl[:, 2 * c], rtol=1e-9, atol=1e-6
        )
        np.testing.assert_allclose(
            perp + ours_slip[:, 2 * c + 1] + ours_fees[:, 2 * c + 1], vbt_pnl[:, 2 * c + 1], rtol=1e-9, atol=1e-6
        )
    total_fees = res.pnl("fees").iloc[-1].sum()
    assert total_fees == pytest.approx(-rec["Fees"].sum(), rel=1e-12)
    total_slip = res.pnl("slippage").iloc[-1].sum()
    assert total_slip == pytest.approx(ours_slip[-1].sum(), rel=1e-9)

"""The slippage cap of the single-venue engine (``backtest.kernels.rules.MAX_SLIPPAGE``): an
order many times the previous bar's volume is priced at most 50% from its reference, the fill's
event carries the cap in ``rate``, the run is flagged ``slippage_capped`` with a warning, the
identity still holds, and the plain-Python reference prices it the same."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest import BacktestConfig, run_backtest
from data.market import Market


def _market(volume: float) -> Market:
    T = 48
    index = pd.date_range("2024-01-01", periods=T, freq="1h", tz="UTC")
    px = {k: np.full((T, 1), 100.0) for k in ("open", "high", "low", "close")}
    px["volume"] = np.full((T, 1), volume)
    return Market.from_arrays(index, ["BTCUSDT"], freq="1h", spot=px, perp=px, funding_rate=np.zeros((T, 1)))


def test_an_order_of_many_times_the_volume_is_priced_at_the_cap_and_flagged():
    cfg = BacktestConfig(initial_capital_quote=10_000.0, perp_leverage=1.0, volume_participation_coefficient=0.1)
    with pytest.warns(UserWarning, match="priced at the slippage cap, 50%"):
        res = run_backtest(_market(volume=1.0), 1.0, cfg)  # 50 coins against 1 coin of volume
    fills = res.events[res.events.kind == "fill"]
    spot, perp = fills[fills.leg == "spot"].iloc[0], fills[fills.leg == "perp"].iloc[0]
    # uncapped: 0.1 x 50 / 1 = 500% of the price; the sale of the perp would fill at -400
    assert spot.price == pytest.approx(150.0) and perp.price == pytest.approx(50.0)
    assert spot.rate == perp.rate == 0.5 and "slippage_capped" in res.flags
    comps = sum(res.pnl(k) for k in ("funding", "fees", "slippage", "borrow", "spot_price", "perp_price"))
    comps = comps + res.pnl("liquidation") + res.pnl("unhedged")
    np.testing.assert_allclose((res.equity - 10_000.0).to_numpy(), comps.to_numpy(), atol=1e-7)
    quiet = run_backtest(_market(volume=1e9), 1.0, cfg)
    assert "slippage_capped" not in quiet.flags and quiet.events[quiet.events.kind == "fill"].rate.isna().all()

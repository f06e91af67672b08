"""Real Binance data (../shared/data, freqtrade layout): funding received by a carry equals an
independent sum over the raw settlement file. Skipped with a reason where the data is absent."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from data.market import Market
from reports.metrics import stats
from tests.conftest import shared_data_path
from tests.test_engine_reference import check_identity

pytestmark = pytest.mark.shared_data
HOUR = pd.Timedelta(hours=1)


def _bars(path: Path, index: pd.DatetimeIndex) -> pd.DataFrame:
    df = pd.read_feather(path)
    df["date"] = pd.to_datetime(df["date"], utc=True)
    return df.drop_duplicates("date").set_index("date")[["open", "high", "low", "close", "volume"]].reindex(index)


def _funding(base: str) -> pd.DataFrame:
    raw = pd.read_feather(shared_data_path("binance", "futures", f"{base}_USDT_USDT-1h-funding_rate.feather"))
    raw["time"] = pd.to_datetime(raw["date"], utc=True).dt.floor("min")
    return raw.drop_duplicates("time")[["time", "open"]].rename(columns={"open": "rate"})


def build_market(base: str, start: str, end: str) -> Market:
    """A one-symbol hourly Market straight from the feather files (not via data.loader)."""
    index = pd.date_range(start, end, freq="h", tz="UTC", inclusive="left")
    spot = _bars(shared_data_path("binance", f"{base}_USDT-1h.feather"), index)
    perp = _bars(shared_data_path("binance", "futures", f"{base}_USDT_USDT-1h-futures.feather"), index)
    mark = _bars(shared_data_path("binance", "futures", f"{base}_USDT_USDT-1h-mark.feather"), index)
    fund = _funding(base)
    # a settlement at t is paid in the bar (t - 1h, t]: the bar stamped ceil(t) - 1h
    fund["bar"] = fund["time"].dt.ceil("h") - HOUR
    fund = fund[(fund["bar"] >= index[0]) & (fund["bar"] <= index[-1])]
    # mark at the settlement instant = open of the mark bar stamped t (may lie just past the window)
    full_mark = _bars(
        shared_data_path("binance", "futures", f"{base}_USDT_USDT-1h-mark.feather"),
        pd.DatetimeIndex(fund["time"].dt.floor("h")),
    )
    mark_at = full_mark["open"].to_numpy()
    fund["value"] = fund["rate"].to_numpy() * mark_at
    rate = fund.groupby("bar")["rate"].sum().reindex(index, fill_value=0.0).to_numpy()[:, None]
    value = fund.groupby("bar")["value"].sum().reindex(index, fill_value=0.0).to_numpy()[:, None]
    mask = fund.groupby("bar").size().reindex(index, fill_value=0).to_numpy()[:, None] > 0

    def d(df):
        return {k: df[k].to_numpy()[:, None] for k in ("open", "high", "low", "close", "volume")}

    return Market.from_arrays(
        index,
        [f"{base}USDT"],
        spot=d(spot),
        perp=d(perp),
        mark=d(mark),
        funding_rate=rate,
        funding_value=value,
        funding_mask=mask,
    )


def independent_funding_per_coin(base: str, first_fill: pd.Timestamp, end: pd.Timestamp) -> tuple[float, int, int]:
    """sum(mark_t * r_t) over settlements in (first_fill, end], straight from the raw files."""
    fund = _funding(base)
    mark = pd.read_feather(shared_data_path("binance", "futures", f"{base}_USDT_USDT-1h-mark.feather"))
    mark["date"] = pd.to_datetime(mark["date"], utc=True)
    merged = fund.merge(mark.rename(columns={"date": "time"})[["time", "open"]], on="time", how="left")
    sel = merged[(merged["time"] > first_fill) & (merged["time"] <= end)]
    assert sel["open"].notna().all(), "mark price missing at a settlement"
    return float((sel["open"] * sel["rate"]).sum()), len(sel), int((sel["rate"] < 0).sum())


@pytest.mark.parametrize("base,start,end", [("BTC", "2021-01-01", "2022-01-01"), ("XTZ", "2025-05-01", "2026-05-01")])
def test_carry_funding_matches_raw_files(base, start, end):
    m = build_market(base, start, end)
    # margin 2x notional: no liquidation; a constant position (no rebalancing) to compare with
    cfg = BacktestConfig(
        perp_leverage=0.5, maintenance_margin_rate=0.0, rebalance_every_hours=None, rebalance_notional_band=None
    )
    carry = run_backtest(m, 1.0, cfg)
    # the reverse carry's borrowed leg would be margin-called by BTC's x2.4 of 2021 in a margin
    # account of its own: in portfolio margin (one account) it is held throughout
    rev = run_backtest(m, -1.0, cfg.replace(margin_mode="portfolio"))
    q = carry.spot_qty.iloc[-1, 0]
    per_coin, n, n_neg = independent_funding_per_coin(base, m.index[1], m.index[-1] + HOUR)
    assert n > 300
    assert carry.pnl("funding").iloc[-1, 0] == pytest.approx(q * per_coin, rel=1e-9)
    assert rev.pnl("funding").iloc[-1, 0] == pytest.approx(-q * per_coin, rel=1e-9)
    assert rev.pnl("borrow").iloc[-1, 0] < 0
    assert len(carry.events[carry.events.kind == "funding"]) == n
    if base == "XTZ":
        # negative regime: the carry (short perp) pays, the reverse carry receives
        assert per_coin < 0 and n_neg > 100
        assert stats(carry)["funding_pnl"] < 0 < stats(rev)["funding_pnl"]
    else:
        assert per_coin > 0
    check_identity(carry)
    check_identity(rev)

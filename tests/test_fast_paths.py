"""The faster ways of computing what a run prints and writes (issue 17) give what the plain
ways give: labels, thinned curves, daily components, joined results, against straightforward
reference implementations written here."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest import BacktestConfig, BacktestResult, load_market, run_backtest
from backtest.targets import Targets, split_by_group
from reports import frames
from reports.html import thin
from strategies import run_strategy

SYMBOLS = ["DEMOAUSDT", "DEMOBUSDT", "DEMOCUSDT"]


@pytest.fixture(scope="module")
def market(demo_catalog):
    return load_market(demo_catalog.root, SYMBOLS, freq="1h")


def _labels_reference(tab: pd.DataFrame) -> dict[int, str]:
    """Portfolio labels, one portfolio at a time (the rule of reports.frames.portfolio_labels)."""
    params = [c for c in tab.columns if c not in ("strategy", "symbol", "group", "param_id")]
    sizes = tab.groupby("group")["symbol"].size()
    out = {}
    for g, rows in tab.groupby("group", sort=True):
        first = rows.iloc[0]
        same = tab[tab["strategy"] == first["strategy"]]
        varying = [p for p in params if same[p].nunique(dropna=False) > 1 and pd.notna(first[p])]
        inner = ",".join(f"{p}={first[p]:g}" if isinstance(first[p], float) else f"{p}={first[p]}" for p in varying)
        label = f"{first['strategy']}[{inner}]" if inner else str(first["strategy"])
        one = (sizes[same["group"].unique()] == 1).all() and same["symbol"].nunique() > 1
        out[int(g)] = f"{label}:{first['symbol']}" if one else label
    if len(set(out.values())) != len(out):
        out = {g: f"{lab}#{g}" for g, lab in out.items()}
    return out


def test_labels_are_the_one_portfolio_at_a_time_rule(market):
    grid = run_strategy("funding_threshold", market, {"entry_annualized": [0.05, 0.1], "exit_annualized": [0, 0.02]})
    cases = [
        grid,
        run_strategy("always_carry", market, {}),
        Targets.concat(
            [
                run_strategy("always_carry", market, {}),
                run_strategy("funding_sign", market, {"entry_annualized": 0.05}),
                run_strategy("rotation", market, {}),
            ]
        ),
        grid.per_symbol(),
        Targets.concat([run_strategy("always_carry", market, {}), run_strategy("always_carry", market, {})]),
        Targets.concat([grid, run_strategy("funding_threshold", market, {"entry_annualized": [0.05]}).per_symbol()]),
    ]
    for tg in cases:
        assert frames.portfolio_labels(tg) == _labels_reference(tg.columns)
    assert "funding_threshold[entry_annualized=0.1,exit_annualized=0.02]" in frames.portfolio_labels(grid).values()


def _thin_reference(frame: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """Per stride: its first row and each column's first maximum and minimum (NaN as the mean)."""
    n = len(frame)
    if n <= max_points:
        return frame
    stride = int(np.ceil(n / (max_points / 3)))
    keep = np.zeros(n, dtype=bool)
    keep[::stride] = True
    keep[-1] = True
    for col in frame.to_numpy(dtype=float).T:
        if np.isnan(col).all():
            continue
        col = np.where(np.isnan(col), np.nanmean(col), col)
        for s in range(0, n, stride):
            keep[s + int(np.argmax(col[s : s + stride]))] = True
            keep[s + int(np.argmin(col[s : s + stride]))] = True
    return frame.iloc[np.flatnonzero(keep)]


@pytest.mark.parametrize("seed", range(40))
def test_thin_keeps_each_strides_extremes(seed):
    rng = np.random.default_rng(seed)
    n, c, points = int(rng.integers(1, 4000)), int(rng.integers(1, 5)), int(rng.integers(3, 600))
    v = rng.normal(size=(n, c)).cumsum(axis=0)
    if seed % 2:
        v[rng.random((n, c)) < 0.2] = np.nan
    if seed % 5 == 0:
        v[:, 0] = np.nan
    if seed % 3 == 0:
        v = np.round(v)  # ties: the first extreme of a stride
    frame = pd.DataFrame(v, index=pd.date_range("2024-01-01", periods=n, freq="h"))
    assert thin(frame, points).index.equals(_thin_reference(frame, points).index)


def test_daily_components_are_the_per_bar_ones_summed_by_day(market, monkeypatch):
    tg = run_strategy("funding_threshold", market, {"entry_annualized": [0.05, 0.2]})
    res = run_backtest(market, tg, BacktestConfig(perp_leverage=2, slippage_bps=2))
    per_bar, granularity = frames.components_frame(res, tg, market)
    assert granularity == "bar"
    monkeypatch.setattr(frames, "LEAN_BAR_COLUMNS", 10)
    daily, granularity = frames.components_frame(res, tg, market)
    assert granularity == "day"
    keys = [c for c in per_bar.columns if c.endswith("_pnl")]
    want = per_bar.assign(time=per_bar["time"].dt.floor("1D")).groupby(["time", "column"], as_index=False)[keys].sum()
    got = daily.sort_values(["time", "column"], kind="stable").reset_index(drop=True)
    assert (got["time"].to_numpy() == want["time"].to_numpy()).all()
    np.testing.assert_allclose(got[keys].to_numpy(), want[keys].to_numpy(), rtol=1e-12, atol=1e-9)
    # the days add up to the run's final components
    last = {k: res.components[v].iloc[-1].sum() for k, v in frames.COMPONENT_KEYS.items()}
    for k, total in last.items():
        assert daily[k].sum() == pytest.approx(total, rel=1e-12, abs=1e-9)


def test_joined_results_are_one_block_each_and_equal_one_run(market):
    tg = run_strategy("funding_threshold", market, {"entry_annualized": [0.02, 0.05, 0.1, 0.2]})
    cfg = BacktestConfig(perp_leverage=2)
    whole = run_backtest(market, tg, cfg)
    joined = BacktestResult.concat([run_backtest(market, p, cfg) for p in split_by_group(tg, 1)])
    cut = market.n_bars // 2
    first = run_backtest(market.select(end=market.index[cut]), tg.bars(0, cut), cfg)
    second = run_backtest(market.select(start=market.index[cut]), tg.bars(cut, market.n_bars), cfg, resume=first.state)
    chained = BacktestResult.chain([first, second])
    for res in (joined, chained):
        for frame in (res.equity, res.group_equity, res.components["funding"], res.margin_ratio, res.spot_qty):
            assert frame._mgr.nblocks == 1  # to_numpy() is a view, not a copy per call
            assert np.shares_memory(frame.to_numpy(), frame.to_numpy())
        pd.testing.assert_frame_equal(res.equity, whole.equity)
        pd.testing.assert_frame_equal(res.group_equity, whole.group_equity)
        for k in whole.components:
            pd.testing.assert_frame_equal(res.components[k], whole.components[k])


def test_a_large_grids_report_is_bounded_and_keeps_every_portfolio(demo_catalog, tmp_path):
    """200 portfolios: the all-portfolio charts draw the best and worst 10 and the band of all;
    every portfolio is still in the select with its data; the file stays a few MB."""
    import json
    import re

    from backtest.app.cli import main
    from reports.html import MAX_LINES

    out = tmp_path / "big"
    entries = ",".join(f"{v:.4f}" for v in np.linspace(0.0, 0.5, 20))
    exits = ",".join(f"{v:.4f}" for v in np.linspace(-0.05, 0.0, 10))
    code = main(
        [
            "-q", "sweep", "--data", str(demo_catalog.root), "--symbols", ",".join(SYMBOLS), "--strategy",
            "funding_threshold", "--grid", f"entry={entries}", "--grid", f"exit={exits}", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    page = (out / "report.html").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["portfolios"]) == 200
    assert page.count('"name":"all 200: median"') == 2  # equity and drawdown
    assert f"the best and worst {MAX_LINES // 2} of 200" in page
    payload = json.loads(re.search(r"<script type='application/json' id='detail-data'>(.*?)</script>", page, re.S)[1])
    assert len(payload["labels"]) == 200 and all(p["tx"] for p in payload["p"])
    assert len(page) < 12e6, len(page)

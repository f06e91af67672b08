"""The stitched walk-forward run (backtest.app.commands.stitched_out_of_sample): one portfolio
that trades, in each test window, the set chosen before it, from flat at the first test window,
switching at the usual costs; against independent runs of the engine."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backtest import BacktestConfig, load_market, run_backtest
from backtest.app.cli import main
from backtest.app.commands import RunOutcome, stitched_out_of_sample, walk_forward
from backtest.app.runs import DataSpec, RunConfig, StrategySpec
from reports.frames import portfolio_labels
from reports.metrics import stats
from strategies import run_strategy

SYMBOLS = ["DEMOAUSDT", "DEMOBUSDT"]


def _outcome(market, targets, config) -> RunOutcome:
    cfg = RunConfig(DataSpec(symbols=tuple(market.symbols)), config, (StrategySpec("funding_threshold"),))
    return RunOutcome(cfg, market, targets, run_backtest(market, targets, config), pd.DataFrame(), pd.DataFrame())


@pytest.fixture(scope="module")
def market(demo_catalog):
    return load_market(demo_catalog.root, SYMBOLS, freq="1h")


def test_one_set_chosen_throughout_is_that_set_run_from_flat(market):
    config = BacktestConfig(perp_leverage=2, slippage_bps=2)
    targets = run_strategy("funding_threshold", market, {"entry_annualized": [0.1]})
    run = _outcome(market, targets, config)
    folds, _ = walk_forward(run, "60d:30d")
    assert len(folds) >= 5 and set(folds["chosen"]) == {"funding_threshold"}
    got = stitched_out_of_sample(run, folds)
    lo = int(market.index.searchsorted(folds.index[0]))
    hi = int(market.index.searchsorted(folds["test_end"].iloc[-1]))
    want = run_backtest(
        market.select(start=folds.index[0], end=folds["test_end"].iloc[-1]), targets.bars(lo, hi), config
    )
    np.testing.assert_allclose(got.frame["equity"].to_numpy(), want.group_equity.iloc[:, 0].to_numpy(), rtol=1e-12)
    assert got.stats["final_equity"] == pytest.approx(stats(want)["final_equity"], rel=1e-12)
    # the run starts flat with the initial capital, not with the set's equity at that date
    assert got.frame["equity"].iloc[0] == pytest.approx(config.initial_capital_quote, rel=1e-3)
    assert got.hindsight["portfolio"] == "funding_threshold"


def test_switching_sets_follows_each_windows_choice_and_pays_to_switch(market):
    config = BacktestConfig(perp_leverage=2)
    # set 0 is always in (entry below any funding), set 1 never enters
    targets = run_strategy("funding_threshold", market, {"entry_annualized": [-4.0, 4.0], "exit_annualized": -4.5})
    warm = targets.values[500:]
    assert (warm[:, :2] == 1).all() and (np.nan_to_num(warm[:, 2:]) == 0).all()
    run = _outcome(market, targets, config)
    labels = list(portfolio_labels(targets).values())
    folds, _ = walk_forward(run, "60d:30d")
    folds["chosen"] = [labels[k % 2] for k in range(len(folds))]  # alternate: in, out, in, ...
    got = stitched_out_of_sample(run, folds)
    lo = int(market.index.searchsorted(folds.index[0]))
    hi = int(market.index.searchsorted(folds["test_end"].iloc[-1]))
    span = market.select(start=folds.index[0], end=folds["test_end"].iloc[-1])
    # independent oracle: the same choices written as one target array by hand
    want_values = np.zeros((hi - lo, 2))
    for k, (start, fold) in enumerate(folds.iterrows()):
        rows = (span.index >= start) & (span.index < fold["test_end"])
        want_values[rows] = targets.values[lo:hi][rows][:, [2 * (k % 2), 2 * (k % 2) + 1]]
    from backtest.targets import Targets

    want = run_backtest(span, Targets.from_array(span, want_values), config)
    np.testing.assert_allclose(got.frame["equity"].to_numpy(), want.group_equity.iloc[:, 0].to_numpy(), rtol=1e-12)
    assert (
        got.frame["chosen"]
        == np.repeat(
            folds["chosen"].to_numpy(),
            np.diff([span.index.searchsorted(t) for t in [*folds.index, folds["test_end"].iloc[-1]]]),
        )
    ).all()
    # in during the "in" windows, flat in the others; every switch is a round of fills
    n_trades = stats(want)["n_trades"]
    assert got.stats["n_trades"] == n_trades >= 2 * (len(folds) // 2)
    assert got.stats["fee_pnl"] < 0


def test_sweep_writes_the_stitched_run(demo_catalog, tmp_path, capsys):
    out = tmp_path / "wf"
    code = main(
        [
            "sweep", "--data", str(demo_catalog.root), "--symbols", ",".join(SYMBOLS), "--strategy",
            "funding_threshold", "--grid", "entry=0.05,0.1,0.2", "--walk-forward", "90d:30d", "--out", str(out),
        ]
    )  # fmt: skip
    assert code == 0
    stdout = capsys.readouterr().out
    assert "stitched out-of-sample run (switching costs included)" in stdout
    summary = json.loads((out / "summary.json").read_text())
    st = summary["walk_forward"]["stitched"]
    frame = pd.read_parquet(out / "walk_forward.parquet")
    assert list(frame.columns) == ["time", "equity", "chosen", "hindsight"]
    assert st["final_equity"] == pytest.approx(frame["equity"].iloc[-1], rel=1e-12)
    assert set(frame["chosen"]) <= {p["portfolio"] for p in summary["portfolios"]}
    assert set(frame["chosen"]) == set(
        summary["walk_forward"]["folds"][k]["chosen"] for k in range(len(summary["walk_forward"]["folds"]))
    )
    assert st["hindsight_best"]["portfolio"] in {p["portfolio"] for p in summary["portfolios"]}
    assert pd.Timestamp(st["start"]) == frame["time"].iloc[0]
    html = (out / "report.html").read_text()
    assert "stitched out-of-sample run" in html and "best set in hindsight" in html

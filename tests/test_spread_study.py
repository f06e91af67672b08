"""Spread grids and their scale-out (backtest.app.spread_study) on the real Binance, Bybit and
Hyperliquid files: a grid computed in one process, split over two worker processes, in tasks of
one set and on a Dask ``LocalCluster`` gives the same rows, curves, components, margin ratios
and events cell for cell; each set of a grid equals its own run; ``carry spread``'s grid flags
as a user types them, and their refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from backtest.app.spread_study import SpreadSet, SpreadStudy, expand_sets, run_study
from backtest.config import BacktestConfig, SpreadConfig
from tests.conftest import local_cluster
from tests.test_cli_refusals import carry, one_line_error
from tests.test_venue_pair import venues_catalog  # noqa: F401  (the session catalog fixture)

pytestmark = pytest.mark.shared_data

WINDOW = ("2024-09-04", "2025-01-04")


def _study(catalog, **kw) -> SpreadStudy:
    base = dict(
        catalog=str(catalog.root),
        venues=("binance", "bybit", "hyperliquid"),
        coins=("BTC", "ETH"),
        start=WINDOW[0],
        end=WINDOW[1],
        freq="1h",
        funding_gaps="error",
        leg_a="perp",
        strategy="funding_spread",
        config=BacktestConfig().to_dict(),
        spread=SpreadConfig().to_dict(),
    )
    return SpreadStudy(**{**base, **kw})


def _same(a, b) -> None:
    """Two studies' parts equal cell for cell (the mode notes aside)."""
    pd.testing.assert_frame_equal(a.rows[0], b.rows[0], check_exact=True)
    assert list(a.curves) == list(b.curves)
    for label in a.curves:
        pd.testing.assert_series_equal(a.curves[label], b.curves[label], check_exact=True)
        pd.testing.assert_frame_equal(a.components[label], b.components[label], check_exact=True)
    pd.testing.assert_frame_equal(a.ratios[0], b.ratios[0], check_exact=True)
    pd.testing.assert_frame_equal(a.events[0], b.events[0], check_exact=True)
    assert a.notes == b.notes and a.flags == b.flags


@pytest.fixture(scope="module")
def grid(venues_catalog):  # noqa: F811
    study = _study(venues_catalog)
    sets = expand_sets({"entry_annualized": [0.03, 0.1], "window_hours": [24.0, 72.0]}, [2.0, 3.0])
    return study, sets, run_study(study, sets)


def test_a_grid_runs_every_set_pair_and_coin(grid):
    study, sets, (parts, mode, tasks) = grid
    assert (mode, tasks, len(sets)) == ("serial", 1, 8)
    rows = parts.rows[0]
    # per set: 3 pairs x 2 coins, and the strategy's own row per coin ("widest of" the three venues)
    assert len(rows) == 8 * (6 + 2) and list(rows.set.unique()) == list(range(8))
    assert rows.groupby("set").leverage.first().tolist() == [2.0] * 4 + [3.0] * 4
    assert rows.groupby("set").entry_annualized.first().tolist() == [0.03, 0.03, 0.1, 0.1] * 2
    assert len(parts.curves) == 8 * (6 + 2) and {
        "BTC binance/hyperliquid #5",
        "ETH widest of binance/bybit/hyperliquid #5",
    } <= set(parts.curves)
    nets = rows[rows.venue_a == "widest"].groupby("set").net.sum()
    assert nets.nunique() == 8  # every set trades differently (the grid is not vacuous)
    # what a row says it earned is what its curve ended at (the strategy's own rows too)
    ends = np.array([parts.curves[label].iloc[-1] for label in rows.label])
    np.testing.assert_allclose(rows.net.to_numpy() + 10_000.0, ends, rtol=0, atol=1e-9)
    assert set(parts.events[0].set) == set(range(8))
    # the strategy's own hedge moves its legs between venues: transfers at its switches, on each venue
    ev = parts.events[0]
    own = ev[ev.venue_a.astype(str) == "widest"]
    moved = own[(own.kind == "transfer") & (own.cash < 0)]
    assert len(moved) > 0 and moved.venue.nunique() >= 2
    assert set(own[own.kind == "funding"].venue) == {"binance", "bybit", "hyperliquid"}


def test_split_over_processes_tasks_and_dask_equals_one_process(grid):
    study, sets, (one, _, _) = grid
    two, mode, tasks = run_study(study, sets, workers=2)
    assert mode == "processes[2]" and tasks == 4
    _same(one, two)
    singles, mode, tasks = run_study(study, sets, param_chunk=1)  # one set per task, here
    assert (mode, tasks) == ("serial", 8)
    _same(one, singles)
    with local_cluster() as cluster:
        on_dask, mode, tasks = run_study(study, sets, scheduler=cluster, param_chunk=3)
    assert mode.startswith("dask[tcp://127.0.0.1") and tasks == 3
    _same(one, on_dask)


def test_each_set_of_a_grid_equals_its_own_run(grid):
    study, sets, (parts, _, _) = grid
    rows = parts.rows[0]
    for s in (sets[1], sets[6]):
        alone, _, _ = run_study(study, [SpreadSet(0, s.strategy, s.leverage)])
        mine = rows[rows.set == s.index].drop(columns=["set", "label"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(mine, alone.rows[0].drop(columns=["set", "label"]), check_exact=True)
        label = "BTC binance/hyperliquid"
        pd.testing.assert_series_equal(
            parts.curves[f"{label} #{s.index}"], alone.curves[label], check_exact=True, check_names=False
        )


def test_a_spot_leg_grid_over_leverage_splits_the_same(venues_catalog):  # noqa: F811
    study = _study(venues_catalog, leg_a="spot", strategy="hold", venues=("binance", "bybit", "hyperliquid"))
    sets = expand_sets({}, [1.0, 2.0, 4.0])
    one, _, _ = run_study(study, sets)
    two, mode, _ = run_study(study, sets, workers=2)
    assert mode == "processes[2]"
    _same(one, two)
    rows = one.rows[0]
    assert set(rows.venue_a) == {"binance"} and set(rows.venue_b) == {"bybit", "hyperliquid"}
    # a spot carry at leverage L holds L / (L + 1) of the capital in spot: more perp funding at higher leverage
    btc = rows[(rows.coin == "BTC") & (rows.venue_b == "bybit")].set_index("leverage")
    assert btc.funding_b[1.0] < btc.funding_b[2.0] < btc.funding_b[4.0]


def test_cli_grid_on_two_workers(venues_catalog, tmp_path):  # noqa: F811
    base = ["spread", "--data", venues_catalog.root, "--venues", "binance,hyperliquid", "--symbols", "BTC"]
    base += ["--start", WINDOW[0], "--end", WINDOW[1], "--entry", "0.03,0.1", "--leverage", "2,3", "-q"]
    runs = {}
    for name, extra in (("one", []), ("two", ["--workers", "2"])):
        r = carry(*base, *extra, "--out", tmp_path / name)
        assert r.returncode == 0, r.stderr
        runs[name] = json.loads((tmp_path / name / "spread.json").read_text())
    one, two = runs["one"], runs["two"]
    assert one["sets"] == 4 and one["grid"] == {"entry_annualized": [0.03, 0.1], "perp_leverage": [2.0, 3.0]}
    assert (one["mode"], two["mode"]) == ("serial", "processes[2]")
    assert one["rows"] == two["rows"] and [r["label"] for r in one["rows"]] == [
        f"BTC binance/hyperliquid #{k}" for k in range(4)
    ]
    for name in ("equity.parquet", "events.parquet"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "one" / name), pd.read_parquet(tmp_path / "two" / name), check_exact=True
        )


@pytest.mark.parametrize(
    "flags, code, says",
    [
        (["--strategy", "hold", "--entry", "0.05,0.1"], 2, "--strategy hold has no thresholds: --entry"),
        (["--param-chunk", "2"], 2, "--param-chunk splits a grid's parameter sets"),
        (["--leverage", "2,0"], 2, "--leverage 0 (perp_leverage)"),
        (["--entry", "0.05,,0.1"], 2, "expected a number or numbers separated by commas"),
        (["--entry", "0.1", "--exit", "0.2,0"], 2, "exit"),
        (["--direction", "reverse"], 2, "--direction reverse is --strategy hold's"),
    ],
)
def test_cli_grid_refusals(venues_catalog, tmp_path, flags, code, says):  # noqa: F811
    r = carry(
        "spread",
        "--data",
        venues_catalog.root,
        "--venues",
        "binance,bybit",
        "--symbols",
        "BTC",
        *flags,
        "--out",
        tmp_path / "x",
    )
    if code == 2 and "commas" in says:  # argparse's usage error
        assert r.returncode == 2 and says in r.stderr and "Traceback" not in r.stderr
    else:
        assert says in one_line_error(r, code)
    assert not (tmp_path / "x").exists()


def test_readme_grid_figures(venues_catalog, tmp_path):  # noqa: F811
    """The README's grid example: its table, from the command it shows."""
    from tests.conftest import REPO
    from tests.test_cli_spread import _printed

    flags = ["--venues", "binance,hyperliquid", "--start", "2024-09-04", "--end", "2025-07-26"]
    flags += ["--entry", "0.02,0.05,0.1", "--window-hours", "24,72,168", "--workers", "2", "-q"]
    r = carry("spread", "--data", venues_catalog.root, "--symbols", "BTC,ETH", *flags, "--out", tmp_path / "g")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "g" / "spread.json").read_text())["rows"]
    text = (REPO / "README.md").read_text()
    block = text[text.index("```\nset", text.index("**Grids and scale-out.**")) + 4 :]
    shown = [line.split() for line in block[: block.index("```")].strip().splitlines()[1:]]
    assert shown == [
        [str(row["set"]), f"{row['entry_annualized']:g}", f"{row['window_hours']:g}", *_printed(row)] for row in rows
    ]
    eth = rows[0 * 2 + 1]  # set 0, ETH: a day's window at a 2% entry
    assert (round(-eth["trading_fees"]), round(eth["funding_a"] + eth["funding_b"]), round(eth["net"])) == (
        1037,
        485,
        -407,
    )


def test_a_large_grid_prints_its_best_and_worst_sets(venues_catalog, tmp_path):  # noqa: F811
    """Beyond ten sets the terminal shows the five best and the five worst by net (best first);
    spread.json keeps every row."""
    flags = ["--venues", "binance,hyperliquid", "--symbols", "BTC", "--start", WINDOW[0], "--end", WINDOW[1]]
    flags += ["--entry", "0.01,0.02,0.05,0.1,0.2", "--window-hours", "24,72,168"]
    r = carry("spread", "--data", venues_catalog.root, *flags, "--out", tmp_path / "g")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "g" / "spread.json").read_text())["rows"]
    assert len(rows) == 15
    assert "the 5 best and 5 worst of 15 sets by net (all in spread.json)" in " ".join(r.stdout.split())
    by_net = sorted(rows, key=lambda row: -row["net"])
    want = [row["set"] for row in by_net[:5] + by_net[-5:]]
    shown = [int(line.split()[1]) for line in r.stdout.splitlines() if line.startswith("│") and "BTC" in line]
    assert shown == want


def test_cli_reverse_carry_across_venues(venues_catalog, tmp_path):  # noqa: F811
    """``--leg-a spot --strategy hold --direction reverse``: Binance spot sold short with borrowed
    coins against Bybit's perp held long; the borrow interest is its own part of the row, the
    parts add up to the net, and the per-trade parts of the report to the equity."""
    from backtest.config import SpreadConfig as SC
    from backtest.spread import run_spread
    from data.venue_pair import load_venue_pair
    from reports.spread_run import trade_components

    flags = ["--venues", "binance,bybit", "--leg-a", "spot", "--strategy", "hold", "--direction", "reverse"]
    flags += ["--symbols", "BTC", "--start", WINDOW[0], "--end", WINDOW[1], "-q"]
    r = carry("spread", "--data", venues_catalog.root, *flags, "--out", tmp_path / "rev")
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "rev" / "spread.json").read_text())
    row = summary["rows"][0]
    assert summary["direction"] == "reverse" and row["borrow"] < -50 and row["in_trade"] > 0.99
    parts = ("funding_a", "funding_b", "trading_fees", "transfer_fees", "slippage", "borrow", "basis", "liquidation")
    assert sum(row[k] for k in parts) == pytest.approx(row["net"], abs=1e-6)
    events = pd.read_parquet(tmp_path / "rev" / "events.parquet")
    first = events[(events.kind == "fill") & (events.leg == "A")].iloc[0]
    assert first.qty < 0 and (events[events.kind == "borrow"].leg == "A").all()
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pair = load_venue_pair(venues_catalog, "BTC", "binance", "bybit", *WINDOW, leg_a="spot")
        res = run_spread(pair.leg_a, pair.leg_b, -1.0, BacktestConfig(perp_leverage=2), SC(leg_a="spot"))
    comps, _ = trade_components(res, ["BTC"])
    np.testing.assert_allclose(
        comps["BTC"].sum(axis=1).to_numpy(), (res.equity[0] - res.initial_capital).to_numpy(), rtol=0, atol=1e-7
    )
    assert res.totals.borrow[0] == pytest.approx(row["borrow"], rel=1e-12)


def test_a_cross_margin_grid_splits_the_same_and_adds_each_sets_portfolio(venues_catalog):  # noqa: F811
    """``margin_mode="cross"``: each set's coins on a pair are one portfolio (one account per
    venue): its row adds up its coins', a set alone computes what it computes in the grid, and
    processes compute what one process does."""
    config = BacktestConfig(perp_leverage=10.0, margin_mode="cross").to_dict()
    study = _study(venues_catalog, strategy="hold", venues=("binance", "bybit"), config=config)
    sets = expand_sets({}, [5.0, 10.0, 20.0])
    one, _, _ = run_study(study, sets)
    two, mode, _ = run_study(study, sets, workers=2)
    assert mode == "processes[2]"
    _same(one, two)
    rows = one.rows[0]
    assert rows.coin.tolist() == ["BTC", "ETH", "BTC+ETH"] * 3 and rows.set.tolist() == [0] * 3 + [1] * 3 + [2] * 3
    for s in range(3):
        mine = rows[rows.set == s]
        assert mine.net.iloc[2] == pytest.approx(mine.net.iloc[0] + mine.net.iloc[1], abs=1e-9)
        label = f"BTC+ETH binance/bybit #{s}"
        np.testing.assert_allclose(one.curves[label].iloc[-1], 20_000 + mine.net.iloc[2], rtol=1e-12)
    alone, _, _ = run_study(study, [SpreadSet(0, {}, 20.0)])
    pd.testing.assert_frame_equal(
        rows[rows.set == 2].drop(columns=["set", "label"]).reset_index(drop=True),
        alone.rows[0].drop(columns=["set", "label"]),
        check_exact=True,
    )
    assert (rows.liquidations > 0).any()  # (20x over four months: the accounts were liquidated)

"""``carry spread`` run as a user would (a subprocess) on the real Binance, Bybit and Hyperliquid
files: its outputs, its figures against :func:`backtest.spread.run_spread` in this process, the
report in headless Chromium, and its refusals (one line, no traceback, nothing written)."""

from __future__ import annotations

import json
import subprocess
import warnings

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig, SpreadConfig
from backtest.spread import run_spread
from data.loader import DataWarning
from data.venue_pair import load_venue_pair
from strategies import FundingSpreadParams, funding_spread_pairs
from tests.conftest import shared_data_path
from tests.test_cli_refusals import carry, one_line_error
from tests.test_report_browser import CHROMIUM, FLAGS, console_errors
from tests.test_venue_pair import venues_catalog  # noqa: F401  (the session catalog fixture)

pytestmark = pytest.mark.shared_data

WINDOW = ("2024-09-04", "2025-07-26")


def spread(catalog, out, *flags: object) -> tuple[dict, subprocess.CompletedProcess]:
    """``carry spread --data catalog --symbols BTC,ETH [flags] --out out`` as a subprocess: its
    spread.json (asserting it ran) and the process."""
    r = carry("spread", "--data", catalog.root, "--symbols", "BTC,ETH", *flags, "--out", out)
    assert r.returncode == 0, r.stderr
    return json.loads((out / "spread.json").read_text()), r


@pytest.fixture(scope="module")
def spread_run(venues_catalog, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("spread") / "run"
    _, r = spread(
        venues_catalog, out, "--venues", "binance,bybit,hyperliquid", "--start", WINDOW[0], "--end", WINDOW[1]
    )
    return out, r


def test_writes_every_pair_and_coin(spread_run):
    out, r = spread_run
    assert sorted(p.name for p in out.iterdir()) == ["equity.parquet", "events.parquet", "report.html", "spread.json"]
    summary = json.loads((out / "spread.json").read_text())
    pairs = [(row["coin"], row["venue_a"], row["venue_b"]) for row in summary["rows"]]
    assert pairs == [
        (c, a, b)
        for a, b in (("binance", "bybit"), ("binance", "hyperliquid"), ("bybit", "hyperliquid"))
        for c in ("BTC", "ETH")
    ] + [(c, "widest", "binance/bybit/hyperliquid") for c in ("BTC", "ETH")]
    assert "usdc_usdt_parity" in summary["flags"] and "oracle_price_stand_in" in summary["flags"]
    equity = pd.read_parquet(out / "equity.parquet")
    assert list(equity.columns) == [f"{c} {a}/{b}" for c, a, b in pairs[:6]] + [
        f"{c} widest of binance/bybit/hyperliquid" for c in ("BTC", "ETH")
    ]
    events = pd.read_parquet(out / "events.parquet")
    assert {"fill", "funding", "transfer"} <= set(events.kind)
    for row in summary["rows"]:  # the row's parts add up to its net
        parts = ("funding_a", "funding_b", "trading_fees", "transfer_fees", "slippage", "basis", "liquidation")
        assert sum(row[k] for k in parts) == pytest.approx(row["net"], abs=1e-6)
    assert "BTC" in r.stdout and "hyperliquid" in r.stdout and "wrote" in r.stdout


def test_figures_equal_the_engine_in_process(spread_run, venues_catalog):  # noqa: F811
    out, _ = spread_run
    summary = json.loads((out / "spread.json").read_text())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        pair = load_venue_pair(venues_catalog, "BTC,ETH", "binance", "hyperliquid", *WINDOW)
        bybit = load_venue_pair(venues_catalog, "BTC,ETH", "binance", "bybit", *WINDOW).leg_b
    # the widest pair per coin among the three venues (their base-tier taker fees then)
    picked = funding_spread_pairs([pair.leg_a, bybit, pair.leg_b], FundingSpreadParams(), [0.0005, 0.00055, 0.00035])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_spread(pair.leg_a, pair.leg_b, picked[(0, 2)], BacktestConfig(perp_leverage=2), SpreadConfig())
    rows = [r for r in summary["rows"] if r["venue_b"] == "hyperliquid" and r["venue_a"] == "binance"]
    got = np.array([r["net"] for r in rows])
    np.testing.assert_allclose(got, (res.totals.final_equity - 10_000).to_numpy(), rtol=1e-12)
    np.testing.assert_allclose([r["funding_b"] for r in rows], res.totals.funding_b.to_numpy(), rtol=1e-12)


def test_report_in_a_browser(spread_run, tmp_path):
    """The report drawn in headless Chromium: the equity figure, the table of every trade, no
    console error."""
    if CHROMIUM is None:
        pytest.skip("chromium not installed (apt-get install chromium)")
    out, _ = spread_run
    r = subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0"]
        + ["--virtual-time-budget=20000", "--dump-dom", (out / "report.html").as_uri()],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    errors = console_errors(r.stderr)
    assert not errors, errors
    dom = r.stdout
    assert 'data-figure="equity"' in dom and "main-svg" in dom and "scatterlayer" in dom
    assert "What each spread trade earned" in dom and "BTC binance/hyperliquid" in dom
    # each trade's PnL by part and its margin, behind the portfolio select
    assert 'data-figure="components"' in dom and 'data-figure="margin"' in dom
    assert "funding A" in dom and "transfer fees" in dom


@pytest.mark.parametrize(
    ("flags", "code", "named"),
    [
        (["--venues", "binance", "--symbols", "BTC"], 2, "--venues binance: name at least two different venues"),
        (["--venues", "binance,bybit", "--symbols", "DOGE"], 1, "coin DOGE has no perp on venue binance"),
        (["--venues", "binance,bybit", "--symbols", "BTC", "--rebalance-band", "2"], 2, "--rebalance-band"),
        (["--venues", "binance,hyperliquid", "--symbols", "BTC", "--start", "2026-01-01"], 1, "empty time range"),
        (
            ["--venues", "binance,bybit", "--symbols", "BTC", "--leg-a", "spot"],
            2,
            "--strategy funding_spread trades two",
        ),
        (["--venues", "binance,bybit", "--symbols", "BTC", "--strategy", "best_venue_carry"], 2, "add --leg-a spot"),
        # without tiers files, each venue's maximum leverage from its rules (Bybit's BTCUSDT: 100x)
        (
            ["--venues", "binance,bybit", "--symbols", "BTC", "--leverage", "101"],
            2,
            "--leverage 101 is above bybit BTCUSDT's maximum 100 (venue rules bybit.toml, first bracket)",
        ),
        (
            ["--venues", "binance,bybit,hyperliquid", "--symbols", "BTC", "--margin-mode", "cross"],
            2,
            "--margin-mode cross shares each venue's account among a set's coins on one venue pair",
        ),
        (
            ["--venues", "binance,bybit", "--symbols", "BTC", "--leverage", "2", "--leverage-a", "126"],
            2,
            "--leverage-a 126 is above binance BTCUSDT's maximum 125 (venue rules binance.toml, first bracket)",
        ),
    ],
)
def test_refusals_name_the_flag_or_the_data_and_write_nothing(venues_catalog, tmp_path, flags, code, named):  # noqa: F811
    out = tmp_path / "out"
    r = carry("spread", "--data", venues_catalog.root, *flags, "--out", out)
    if r.returncode == 2 and "usage:" in r.stderr:  # argparse's own refusal: usage, then the error line
        assert named in r.stderr.strip().splitlines()[-1] and "Traceback" not in r.stderr
    else:
        assert named in one_line_error(r, code)
    assert not out.exists()


def _readme_table(title_line: str) -> list[list[str]]:
    """The rows of the README's code block right after the paragraph holding ``title_line``."""
    from tests.conftest import REPO

    text = (REPO / "README.md").read_text()
    start = text.index(title_line)
    block = text[text.index("```\ncoin", start) + 4 :]
    block = block[: block.index("```")]
    return [line.split() for line in block.strip().splitlines()[1:]]


def _printed(row: dict) -> list[str]:
    """A spread.json row as the table prints it (coin .. ann.)."""
    return [
        row["coin"],
        row["venue_a"],
        *row["venue_b"].split(),
        f"{row['in_trade']:.0%}",
        f"{row['funding_a']:,.2f}",
        f"{row['funding_b']:,.2f}",
        f"{row['trading_fees'] + row['slippage']:,.2f}",
        f"{row['transfer_fees']:,.2f}",
        f"({row['transfers']})",
        f"{row['basis']:,.2f}",
        f"{row['liquidation']:,.2f}",
        f"({row['liquidations']})",
        f"{row['net']:,.2f}",
        f"{row['annualized']:.2%}",
    ]


def test_readme_figures(spread_run, venues_catalog, tmp_path):  # noqa: F811
    """Every figure of the README's ``carry spread`` example, from the commands it shows."""
    out, _ = spread_run
    rows = json.loads((out / "spread.json").read_text())["rows"]
    assert _readme_table("## Example: a funding-spread trade in the engine") == [_printed(r) for r in rows]
    runs = {}
    for name, flags in (
        ("hold", ["--venues", "binance,hyperliquid", "--strategy", "hold", "--start", WINDOW[0], "--end", WINDOW[1]]),
        ("pair", ["--venues", "binance,hyperliquid", "--start", WINDOW[0], "--end", WINDOW[1]]),
        ("okx", ["--venues", "binance,bybit,okx", "--start", "2025-10-06", "--end", "2026-01-09"]),
        ("closes", ["--venues", "binance,bybit,hyperliquid", "--start", WINDOW[0], "--end", WINDOW[1]]),
    ):
        flags += ["--switch-closes-both"] if name == "closes" else []
        runs[name] = spread(venues_catalog, tmp_path / name, *flags)[0]["rows"]
    assert _readme_table("In the later window, with OKX") == [_printed(r) for r in runs["okx"]]
    btc = runs["hold"][0]
    assert (round(btc["net"]), f"{btc['annualized']:.1%}", btc["transfers"], btc["liquidations"]) == (681, "7.7%", 9, 0)
    assert (round(btc["funding_a"] + btc["funding_b"]), round(-btc["trading_fees"]), round(btc["basis"])) == (
        785,
        83,
        -12,
    )
    pair = runs["pair"][0]  # the Binance/Hyperliquid pair alone
    assert (round(pair["net"]), f"{pair['annualized']:.1%}", pair["transfers"]) == (389, "4.4%", 4)
    assert (round(pair["funding_a"] + pair["funding_b"]), round(-pair["trading_fees"]), round(pair["basis"])) == (
        639,
        301,
        55,
    )
    widest = next(r for r in rows if r["coin"] == "BTC" and r["venue_a"] == "widest")
    assert (f"{widest['in_trade']:.0%}", round(widest["funding_a"] + widest["funding_b"])) == ("74%", 614)
    assert (round(-widest["trading_fees"]), widest["transfers"], round(widest["net"])) == (524, 28, 155)
    assert (f"{widest['annualized']:.1%}", round(widest["unhedged"])) == ("1.7%", 13)
    closes = {r["coin"]: r for r in runs["closes"] if r["venue_a"] == "widest"}  # --switch-closes-both
    assert (
        round(closes["BTC"]["net"]),
        f"{closes['BTC']['annualized']:.1%}",
        round(-closes["BTC"]["trading_fees"]),
    ) == (
        92,
        "1.0%",
        577,
    )
    assert (round(closes["ETH"]["net"]), f"{closes['ETH']['annualized']:.1%}") == (3, "0.0%")
    assert all(r["unhedged"] == 0.0 for r in closes.values())
    # one pair at a time, on one capital: in the trade a little less than the pairs' sum (waiting
    # for the collateral at each switch), and fewer fees (the leg that stays is not traded)
    held = [r for r in rows if r["coin"] == "BTC" and r["venue_a"] != "widest"]
    assert 0 < sum(r["in_trade"] for r in held) - widest["in_trade"] < 0.02
    assert -widest["trading_fees"] < -sum(r["trading_fees"] for r in held)
    eo = [r for r in runs["okx"] if r["coin"] == "ETH" and r["venue_b"] == "okx" and r["venue_a"] == "binance"][0]
    assert (f"{eo['in_trade']:.0%}", round(eo["funding_a"] + eo["funding_b"]), round(-eo["trading_fees"])) == (
        "41%",
        43,
        108,
    )


def test_spot_on_one_venue_and_the_best_perp_venue(venues_catalog, tmp_path):  # noqa: F811
    """``--leg-a spot --strategy best_venue_carry``: Binance spot against the perp of Bybit or
    Hyperliquid, whichever pays most; one row per pair and one for the strategy: one carry on one
    capital whose perp moves venue (the spot stays: fewer fees than the pairs' round trips)."""
    summary, r = spread(
        venues_catalog,
        tmp_path / "best",
        "--venues",
        "binance,bybit,hyperliquid",
        "--leg-a",
        "spot",
        "--strategy",
        "best_venue_carry",
    )
    rows = summary["rows"]
    assert summary["leg_a"] == "spot" and [(x["venue_a"], x["venue_b"]) for x in rows] == [
        ("binance", "bybit"),
        ("binance", "bybit"),
        ("binance", "hyperliquid"),
        ("binance", "hyperliquid"),
        ("binance", "best of bybit/hyperliquid"),
        ("binance", "best of bybit/hyperliquid"),
    ]
    assert "one window for every venue" in r.stderr
    for coin in ("BTC", "ETH"):
        pairs = [x for x in rows if x["coin"] == coin and not x["venue_b"].startswith("best")]
        best = next(x for x in rows if x["coin"] == coin and x["venue_b"].startswith("best"))
        assert -best["trading_fees"] < -sum(x["trading_fees"] for x in pairs)
        assert best["transfers"] > sum(x["transfers"] for x in pairs)  # the perp's collateral moves at a switch
        assert best["in_trade"] <= sum(x["in_trade"] for x in pairs) + 1e-12 and best["funding_a"] == 0.0
        assert best["return"] == pytest.approx(best["net"] / 10_000, rel=1e-12)
    events = pd.read_parquet(tmp_path / "best" / "events.parquet")
    assert set(events[events.kind == "funding"].leg) == {"B"}


def test_readme_figures_of_the_spot_leg(venues_catalog, tmp_path):  # noqa: F811
    """The README's ``--leg-a spot`` example: its table, and the held carry it compares with."""
    runs = {}
    for name in ("best_venue_carry", "hold"):
        flags = ("--venues", "binance,bybit,hyperliquid", "--leg-a", "spot", "--strategy", name)
        runs[name] = spread(venues_catalog, tmp_path / name, *flags, "--start", WINDOW[0], "--end", WINDOW[1])[0][
            "rows"
        ]
    assert _readme_table("A cash-and-carry can split across venues too") == [
        _printed(r) for r in runs["best_venue_carry"]
    ]
    held = next(r for r in runs["hold"] if r["coin"] == "BTC" and r["venue_b"] == "hyperliquid")
    assert (round(held["net"]), f"{held['annualized']:.1%}", round(-held["trading_fees"])) == (906, "10.2%", 15)
    best = next(r for r in runs["best_venue_carry"] if r["coin"] == "BTC" and r["venue_b"].startswith("best"))
    assert (f"{best['in_trade']:.0%}", f"{best['annualized']:.1%}", round(-best["trading_fees"])) == (
        "86%",
        "7.9%",
        142,
    )


def test_readme_figures_of_the_reverse_carry(venues_catalog, tmp_path):  # noqa: F811
    """The README's reverse carry across venues: Binance spot sold short, Bybit's perp long, BTC."""
    flags = ("--venues", "binance,bybit", "--leg-a", "spot", "--strategy", "hold", "--direction", "reverse")
    row = spread(venues_catalog, tmp_path / "rev", *flags, "--start", WINDOW[0], "--end", WINDOW[1])[0]["rows"][0]
    assert (row["coin"], round(-row["net"]), f"{-row['annualized']:.1%}") == ("BTC", 799, "8.9%")
    assert (round(-row["funding_b"]), round(-row["borrow"]), round(-row["trading_fees"] - row["transfer_fees"])) == (
        461,
        300,
        46,
    )


def test_readme_figures_of_cross_margin(venues_catalog, tmp_path):  # noqa: F811
    """The README's cross margin example: the portfolio's table, its row the sum of its coins', its
    figures against the engine in this process, and the isolated run it compares with (ETH's
    Binance leg liquidated on 2025-02-03 alone, not in the shared account)."""
    base = ("--venues", "binance,hyperliquid", "--strategy", "hold", "--leverage", "5", "--start", WINDOW[0])
    base += ("--end", WINDOW[1], "--tiers-dir", str(shared_data_path()))
    cross = spread(venues_catalog, tmp_path / "cross", *base, "--margin-mode", "cross")[0]
    iso = spread(venues_catalog, tmp_path / "iso", *base)[0]["rows"]
    rows = cross["rows"]
    assert _readme_table("**Cross margin per venue.**") == [_printed(r) for r in rows]
    assert [r["coin"] for r in rows] == ["BTC", "ETH", "BTC+ETH"]
    for k in ("funding_a", "funding_b", "trading_fees", "transfers", "basis", "liquidation", "net"):
        assert rows[2][k] == pytest.approx(rows[0][k] + rows[1][k], abs=1e-9)
    assert rows[2]["return"] == pytest.approx(rows[2]["net"] / 20_000, rel=1e-12)
    eth = iso[1]
    assert (round(eth["net"]), round(-eth["basis"]), round(-eth["liquidation"]), eth["liquidations"]) == (
        -1030,
        943,
        101,
        1,
    )
    assert round(iso[0]["net"] + iso[1]["net"]) == 263 and round(rows[2]["net"]) == 1290
    assert iso[0] == rows[0]
    mixed = spread(venues_catalog, tmp_path / "mixed", *base, "--margin-mode", "isolated,cross")[0]["rows"]
    assert [round(r["net"], 2) for r in mixed] == [round(r["net"], 2) for r in iso] + [262.83]
    ev = pd.read_parquet(tmp_path / "iso" / "events.parquet")
    liq = ev[ev.kind == "liquidation"]
    assert len(liq) == 1 and str(liq.time.iloc[0]) == "2025-02-03 02:00:00+00:00" and liq.coin.iloc[0] == "ETH"
    assert f"{liq.price.iloc[0]:,.2f}" == "2,407.72" and liq.venue.iloc[0] == "binance"
    # the engine in this process: one portfolio of both coins, Binance's tiers file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pair = load_venue_pair(venues_catalog, "BTC,ETH", "binance", "hyperliquid", *WINDOW)
        cfg = BacktestConfig(perp_leverage=5, margin_mode="cross")
        res = run_spread(pair.leg_a, pair.leg_b, 1.0, cfg, SpreadConfig(tiers_dir=str(shared_data_path())))
    np.testing.assert_allclose([r["net"] for r in rows[:2]], res.totals.final_equity - 10_000, rtol=1e-12)

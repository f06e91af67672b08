"""The README's table of desk position rules on real data ("Holding a position like a desk").

``python -m backtest.app.desk_figures [--data ../shared/data/binance]`` ingests BTCUSDT and
ETHUSDT from a freqtrade data directory into a temporary catalog, runs the carry and reverse
carry under the default rules and their alternatives (1h bars, default fees, 10,000 of
capital), and prints the Markdown table the README shows. ``tests/test_readme.py`` checks that
the README's rows are these.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

#: (label, symbol, start, end, target, engine settings) of each row.
RUNS: tuple[tuple[str, str, str, str, float, dict], ...] = (
    ("carry 1×, defaults", "BTCUSDT", "2020-01-08", "2024-03-12", 1.0, {}),
    ("carry 1×, daily + band", "BTCUSDT", "2020-01-08", "2024-03-12", 1.0, {"rebalance_every_hours": 24.0}),
    ("carry 3×, defaults", "BTCUSDT", "2020-01-08", "2024-03-12", 1.0, {"perp_leverage": 3.0}),
    (
        "carry 3×, daily + band",
        "BTCUSDT",
        "2020-01-08",
        "2024-03-12",
        1.0,
        {"perp_leverage": 3.0, "rebalance_every_hours": 24.0},
    ),
    (
        "carry 1×, no rebalancing, `close_spot`",
        "BTCUSDT",
        "2020-01-08",
        "2024-03-12",
        1.0,
        {"rebalance_notional_band": None, "after_liquidation": "close_spot"},
    ),
    ("carry 1×, defaults", "ETHUSDT", "2020-01-08", "2024-03-12", 1.0, {}),
    ("carry 3×, defaults", "ETHUSDT", "2020-01-08", "2024-03-12", 1.0, {"perp_leverage": 3.0}),
    (
        "carry 3×, daily + band",
        "ETHUSDT",
        "2020-01-08",
        "2024-03-12",
        1.0,
        {"perp_leverage": 3.0, "rebalance_every_hours": 24.0},
    ),
    (
        "carry 2×, top-ups at 0.05, no rebalancing",
        "BTCUSDT",
        "2020-01-08",
        "2024-03-12",
        1.0,
        {"perp_leverage": 2.0, "topup_margin_ratio": 0.05, "rebalance_notional_band": None},
    ),
    ("reverse 1×, defaults", "BTCUSDT", "2020-01-01", "2021-12-31", -1.0, {}),
    ("reverse 1×, no rebalancing", "BTCUSDT", "2020-01-01", "2021-12-31", -1.0, {"rebalance_notional_band": None}),
)
HEADER = (
    "| run | symbol | annualized | max drawdown | liquidations | fills | fees | funding | lowest equity |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _money(x: float) -> str:
    return f"{x:,.0f}".replace("-", "−")


def _pct(x: float) -> str:
    return f"{x:.1%}".replace("-", "−")


def table(data_dir: str | Path) -> str:
    """The Markdown table (header and one row per :data:`RUNS` entry) from ``data_dir``."""
    from backtest.config import BacktestConfig
    from backtest.engine import run_backtest
    from data.catalog import Catalog
    from data.ingest.freqtrade import ingest_freqtrade
    from data.loader import load_market
    from reports.metrics import stats

    rows = [HEADER]
    seen: set[tuple[str, str, str]] = set()
    with tempfile.TemporaryDirectory() as tmp:
        cat = Catalog(Path(tmp) / "catalog")
        ingest_freqtrade(Path(data_dir), cat, symbols=sorted({r[1] for r in RUNS}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # data notes and late top-up warnings: the table says it
            for label, symbol, start, end, target, settings in RUNS:
                market = load_market(cat, [symbol], start=start, end=end)
                res = run_backtest(market, target, BacktestConfig(**settings))
                f = stats(res)
                fills = int((res.events["kind"] == "fill").sum())
                first = (symbol, start, end) not in seen
                seen.add((symbol, start, end))
                where = f"{symbol} {start}..{end}" if first else symbol
                rows.append(
                    f"| {label} | {where} | {_pct(f['annualized_return'])} | {_pct(f['max_drawdown'])} "
                    f"| {int(f['n_liquidations'])} | {fills:,} | {_money(f['fee_pnl'])} | {_money(f['funding_pnl'])} "
                    f"| {_money(res.group_equity.iloc[:, 0].min())} |"
                )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m backtest.app.desk_figures", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="../shared/data/binance", help="freqtrade data directory (Binance)")
    args = parser.parse_args(argv)
    out = table(args.data)
    print(out)
    return out


if __name__ == "__main__":
    main()

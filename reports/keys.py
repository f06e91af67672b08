"""The summary keys: one table of every figure a run reports, read by everything that shows one.

Each :class:`SummaryKey` has the key (stable snake_case, the name in ``summary.json``,
``columns.parquet`` and the frames of :mod:`reports.metrics`), its unit, its meaning (the text
of the README's ``summary.json`` table, checked by ``tests/test_readme.py``), a display label
and a format. The JSON writer (``summary.json`` lists :data:`SUMMARY_KEYS` in this order), the
terminal table of the commands, the HTML report (:mod:`reports.html`) and the README all read
this table; there is no other list of keys.

Units: ``quote`` (quote currency, USDT), ``fraction`` (0.01 = 1 %), ``ratio`` (a
dimensionless ratio), ``count``, ``multiple`` (times the initial capital).
Formats: ``money`` (quote amounts), ``percent`` (fractions shown as %), ``ratio``, ``count``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SummaryKey:
    """One summary figure: key, unit, meaning (README text), display label, format."""

    key: str
    unit: str
    meaning: str
    label: str
    format: str
    #: shown in the short terminal table the commands print
    terminal: bool = False


#: Every summary figure, in the order of ``summary.json`` (and of the README's table).
KEYS: tuple[SummaryKey, ...] = (
    SummaryKey(
        "initial_capital",
        "quote",
        "capital at the start; a column's share of its portfolio's capital",
        "Initial capital",
        "money",
    ),
    SummaryKey("final_equity", "quote", "equity at the last bar", "Final equity", "money"),
    SummaryKey("total_return", "fraction", "final / initial − 1", "Total return", "percent", terminal=True),
    SummaryKey(
        "annualized_return",
        "fraction",
        "compound growth per 365-day year",
        "Annualized return",
        "percent",
        terminal=True,
    ),
    SummaryKey(
        "sharpe",
        "ratio",
        "annualized Sharpe ratio of daily returns (risk-free 0); null when the daily returns never vary",
        "Sharpe",
        "ratio",
        terminal=True,
    ),
    SummaryKey(
        "sortino",
        "ratio",
        "annualized Sortino ratio of daily returns (required return 0); null when the daily returns never vary or no day loses",
        "Sortino",
        "ratio",
    ),
    SummaryKey(
        "max_drawdown",
        "fraction",
        "worst peak-to-trough equity loss (negative; 0 without a drawdown)",
        "Max drawdown",
        "percent",
        terminal=True,
    ),
    SummaryKey(
        "calmar",
        "ratio",
        "annualized return / abs(max drawdown); null without a drawdown",
        "Calmar",
        "ratio",
    ),
    SummaryKey(
        "funding_pnl",
        "quote",
        "funding received minus paid at every settlement, at the mark",
        "Funding",
        "money",
        terminal=True,
    ),
    SummaryKey("fee_pnl", "quote", "trading fees of both legs (negative)", "Fees", "money", terminal=True),
    SummaryKey("slippage_pnl", "quote", "slippage against the reference price (negative)", "Slippage", "money"),
    SummaryKey(
        "borrow_pnl",
        "quote",
        "interest on borrowed spot coins for reverse carry (negative)",
        "Borrow",
        "money",
        terminal=True,
    ),
    SummaryKey("spot_pnl", "quote", "price PnL of the hedged spot coins", "Spot price", "money"),
    SummaryKey("perp_pnl", "quote", "price PnL of the hedged perp coins, mark-to-market", "Perp price", "money"),
    SummaryKey(
        "basis_pnl",
        "quote",
        "`spot_pnl + perp_pnl`: what basis moves did to the hedge",
        "Basis",
        "money",
        terminal=True,
    ),
    SummaryKey(
        "unhedged_pnl",
        "quote",
        "price PnL of a leg's coins without a matching opposite leg (after a liquidation, before the re-entry)",
        "Unhedged",
        "money",
    ),
    SummaryKey(
        "liquidation_pnl",
        "quote",
        "fees of perp and margin-account liquidations (negative), net of any insurance-fund cover",
        "Liquidation",
        "money",
    ),
    SummaryKey(
        "n_liquidations",
        "count",
        "number of liquidations (perp legs and borrowed spot legs)",
        "Liquidations",
        "count",
        terminal=True,
    ),
    SummaryKey("n_trades", "count", "number of fills (each leg counts)", "Trades", "count"),
    SummaryKey(
        "n_skipped_orders",
        "count",
        "orders not sent because they were below the pair's minimum quantity or notional (markets_path)",
        "Skipped orders",
        "count",
    ),
    SummaryKey("turnover", "multiple", "traded notional / initial capital", "Turnover", "ratio"),
    SummaryKey(
        "time_in_market",
        "fraction",
        "fraction of bars with an open position",
        "Time in market",
        "percent",
        terminal=True,
    ),
    SummaryKey(
        "worst_margin_ratio",
        "ratio",
        "highest margin ratio seen, at each bar's adverse extreme: maintenance margin / margin balance of the "
        "perp, or 1.1 x borrowed value / margin-account assets of a borrowed spot leg (1 = liquidation; 1000 when the balance "
        "was gone at a bar's extreme); null without per-bar margin (runs with lean outputs)",
        "Worst margin ratio",
        "ratio",
    ),
)

#: The keys, in order.
SUMMARY_KEYS: tuple[str, ...] = tuple(k.key for k in KEYS)
#: Key -> :class:`SummaryKey`.
BY_KEY: dict[str, SummaryKey] = {k.key: k for k in KEYS}
#: The keys of the short terminal table.
TERMINAL_KEYS: tuple[str, ...] = tuple(k.key for k in KEYS if k.terminal)
#: Summary key of each PnL component -> the result's component name (``BacktestResult.components``).
COMPONENT_KEYS: dict[str, str] = {
    "funding_pnl": "funding",
    "fee_pnl": "fees",
    "slippage_pnl": "slippage",
    "borrow_pnl": "borrow",
    "spot_pnl": "spot_price",
    "perp_pnl": "perp_price",
    "liquidation_pnl": "liquidation",
    "unhedged_pnl": "unhedged",
}


def label(key: str) -> str:
    """Display label of ``key`` (the key itself for figures outside the table)."""
    k = BY_KEY.get(key)
    return k.label if k is not None else key


def format_value(key: str, value, *, terminal: bool = False) -> str:
    """``value`` of ``key`` as text: ``–`` for missing values (None, NaN, inf), percent for
    fractions, thousands separators for quote amounts and counts (2 decimals in reports, none
    in the terminal), 3 decimals for ratios (2 in the terminal). Figures outside the table:
    integers with separators, ``*_pnl`` as quote amounts, other floats with 3 decimals, anything
    else as ``str``."""
    if value is None or (isinstance(value, (float, np.floating)) and not math.isfinite(value)):
        return "–"
    k = BY_KEY.get(key)
    fmt = k.format if k is not None else ("money" if key.endswith("_pnl") else None)
    if fmt == "count" or (isinstance(value, (int, np.integer)) and not isinstance(value, bool)):
        return f"{int(value):,}"
    if not isinstance(value, (int, float, np.integer, np.floating)) or isinstance(value, bool):
        return str(value)
    if fmt == "percent":
        return f"{value:.2%}"
    if fmt == "money":
        return f"{value:,.0f}" if terminal else f"{value:,.2f}"
    return f"{value:.2f}" if terminal else f"{value:.3f}"

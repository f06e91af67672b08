"""``carry scan`` output: what carry and reverse carry earned per funding regime, and the
scan's directory (``scan.json``, ``regimes.parquet``, ``report.html``, ``config.toml``).

Every figure covers each symbol's *funded span* only (:mod:`reports.regimes`): from the first
bar whose funding is known to the bar holding its last settlement, inside ``Market.tradable``,
with funding holes cut out. Bars of the grid before a symbol's first settlement (the grid
starts with the earliest symbol of the run) and the days of a hole count nowhere, so a
symbol's figures do not depend on which other symbols are scanned with it. Rates and returns
are fractions; ``*_annualized`` figures are per 365-day year of the funded days they cover.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from reports.frames import funding_annualized_frame
from reports.html import ReportData, render_report
from reports.outputs import coverage, json_ready, write_output_dir
from reports.regimes import funded_bars


def regime_earnings(market, result, regimes) -> pd.DataFrame:
    """What a carry and a reverse carry entered at each regime's start and closed at its end earned.

    ``result``: a run with one carry column per regime, then one reverse-carry column per
    regime (each its own portfolio). Returns per regime: funding facts, the spot move, and per
    side the PnL (quote), the return (fraction of the capital) and the funding, borrow, fee and
    liquidation parts (quote), entry and exit costs included.

    ``days`` is the regime's own funded days (a regime lies inside one segment of its symbol's
    funded span, never across a hole or before the symbol's first settlement), and
    ``funding_annualized`` is ``funding_sum`` per 365-day year of those days.
    """
    n = len(regimes)
    init = result.config.initial_capital_quote
    final = result.equity.iloc[-1].to_numpy()
    comp = {k: result.components[k].iloc[-1].to_numpy() for k in ("funding", "borrow", "fees", "liquidation")}
    rows = []
    for k, r in enumerate(regimes):
        row = {
            "symbol": r.symbol,
            "sign": "positive" if r.sign > 0 else "negative",
            "start": r.start,
            "end": r.end,
            "days": r.days,
            "settlements": r.settlements,
            "funding_sum": r.funding_sum,
            "funding_annualized": r.funding_annualized,
            "spot_return": r.spot_return,
        }
        for side, c in (("carry", k), ("reverse", n + k)):
            row[f"{side}_pnl"] = float(final[c] - init)
            row[f"{side}_return"] = float((final[c] - init) / init)
            for name, v in comp.items():
                row[f"{side}_{name}_pnl"] = float(v[c])
        rows.append(row)
    return pd.DataFrame(rows)


def write_scan(
    out: Path,
    *,
    header: dict,
    config_toml: str,
    market,
    stats: pd.DataFrame,
    earnings: pd.DataFrame,
    totals: pd.DataFrame,
    overwrite: bool = False,
) -> Path:
    """Write a scan's directory atomically.

    ``header``: ``run_hash`` and ``config`` (first keys of scan.json); ``stats``: funding
    statistics per symbol (index ``symbol``); ``earnings``: :func:`regime_earnings`;
    ``totals``: the whole-span summary of carry and reverse carry per symbol. The report's
    funding charts show each symbol over its funded span only (blank before it and in holes).
    """
    summary = {
        **header,
        "coverage": coverage(market),
        "symbols": stats.reset_index().to_dict(orient="records"),
        "regimes": earnings.assign(start=earnings["start"].astype(str), end=earnings["end"].astype(str)).to_dict(
            orient="records"
        ),
        "totals": totals.reset_index().to_dict(orient="records"),
    }
    text = json.dumps(json_ready(summary), indent=2, allow_nan=False)
    # the headline chart of a scan: cumulative funding (sum of rates) per symbol, over its funded span
    funded = funded_bars(market)
    cumulative = np.where(funded, np.cumsum(np.where(funded, market.funding_rate, 0.0), axis=0), np.nan)
    equity = pd.DataFrame(cumulative, index=market.index, columns=list(market.symbols))
    report = ReportData(
        title="carry scan: funding regimes",
        metrics=totals,
        equity=equity,
        funding_annualized=funding_annualized_frame(market).where(funded),
        basis=pd.DataFrame(market.basis, index=market.index, columns=list(market.symbols)),
        tables=[("Funding by symbol", stats), ("Regimes (carry vs reverse carry)", earnings.set_index("symbol"))],
        notes=list(market.notes),
        meta={"run": header.get("run_hash", ""), "data": f"{len(market.symbols)} symbols, {market.freq}"},
        equity_title="Cumulative funding (sum of rates, fraction)",
        drawdown=False,
    )
    html = render_report(report)
    return write_output_dir(
        out,
        {
            "scan.json": lambda p: p.write_text(text),
            "regimes.parquet": lambda p: earnings.to_parquet(p, index=False),
            "report.html": lambda p: p.write_text(html),
            "config.toml": lambda p: p.write_text(config_toml),
        },
        overwrite=overwrite,
    )


def write_venue_scan(
    out: Path,
    *,
    header: dict,
    stats: pd.DataFrame,
    regimes: pd.DataFrame,
    daily: pd.DataFrame,
    notes: list[str],
    overwrite: bool = False,
) -> Path:
    """Write a venue scan's directory atomically: ``venue_spread.json`` (``header`` keys, then
    ``pairs``: :class:`reports.venue_spread.PairStats` rows, ``regimes``:
    :class:`~reports.venue_spread.SpreadRegime` rows, ``notes``), ``venue_funding.parquet``
    (every venue's funding per UTC day and whether it is known) and ``report.html`` (the
    cumulative spread of every pair over the days both venues have, and both tables)."""
    summary = {
        **header,
        "pairs": stats.to_dict(orient="records"),
        "regimes": regimes.to_dict(orient="records"),
        "notes": notes,
    }
    text = json.dumps(json_ready(summary), indent=2, allow_nan=False)
    curves = {}
    for (coin, a, b), _ in stats.groupby(["coin", "venue_a", "venue_b"], sort=False):
        fa = daily[(daily.coin == coin) & (daily.venue == a)].set_index("day")
        fb = daily[(daily.coin == coin) & (daily.venue == b)].set_index("day")
        both = fa.known & fb.known
        spread = (fb.funding - fa.funding).where(both, 0.0).cumsum()
        curves[f"{coin} {b} - {a}"] = spread.where(both)
    report = ReportData(
        title="carry scan: funding spreads between venues",
        metrics=pd.DataFrame(),
        equity=pd.DataFrame(curves),
        tables=[
            ("Funding spread by coin and venue pair (B - A; annualized per 365 days)", _percent(stats, 2)),
            (
                "Spread regimes: funding collected, basis PnL and taker fees (per unit of the long leg's notional)",
                _percent(regimes, 3),
            ),
        ],
        notes=notes,
        meta={"run": header.get("run_hash", ""), "data": f"{stats.coin.nunique()} coins, daily funding"},
        equity_title="Cumulative funding spread (B - A, sum of daily rates, fraction)",
        drawdown=False,
    )
    html = render_report(report)
    return write_output_dir(
        out,
        {
            "venue_spread.json": lambda p: p.write_text(text),
            "venue_funding.parquet": lambda p: daily.to_parquet(p, index=False),
            "report.html": lambda p: p.write_text(html),
        },
        overwrite=overwrite,
    )


#: Columns of fractions a venue scan's tables show as percentages.
_PERCENT_COLUMNS = (
    "funding_a_annualized",
    "funding_b_annualized",
    "spread_annualized",
    "share_days_b_higher",
    "collected",
    "basis",
    "fees",
    "net",
)


def _percent(frame: pd.DataFrame, digits: int) -> pd.DataFrame:
    """``frame`` indexed by coin, its fraction columns as text percentages (``digits`` decimals)."""
    shown = frame.set_index("coin")
    for c in _PERCENT_COLUMNS:
        if c in shown:
            shown[c] = [f"{v:.{digits}%}" if np.isfinite(v) else "" for v in shown[c].astype(float)]
    return shown

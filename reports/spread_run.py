"""What a cross-venue spread backtest earned, per coin and pair of venues: ``carry spread``'s outputs.

:func:`spread_rows` turns a :class:`backtest.spread.SpreadResult` into one row per column (quote
amounts, plus the return as fractions of the column's capital); :func:`write_spread_run` writes
a run's directory atomically: ``spread.json`` (settings, rows, notes, flags), ``equity.parquet``
(equity per bar, one column per coin and pair), ``events.parquet`` (fills, transfers,
liquidations and every funding settlement of each leg) and ``report.html``.

Row fields: ``funding_a``/``funding_b`` what each leg received (negative: paid), ``trading_fees``
and ``transfer_fees`` (negative: costs), ``transfers`` sent, ``slippage``, ``basis`` the legs'
price PnL (leg A's + leg B's + any unhedged leg's), ``unhedged`` the part of ``basis`` earned by
coins without their other leg (after a liquidation, or while a switch of venues waits for its
transfer), ``borrow`` a borrowed spot leg's interest
(a reverse carry; negative: a cost), ``quote_fx`` the revaluation of a venue
quoted in USDC at the USDC/USDT rate (0 without one), ``liquidation`` (clearance fees and
insurance covers), ``liquidations``, ``net`` (the sum: equity change), ``return`` (net / capital)
and ``annualized`` (per 365-day year over the window), ``in_trade`` the share of bars with a
position. In cross margin per venue a portfolio of several coins adds a row of its own
(:func:`portfolio_rows`; ``coin`` e.g. ``BTC+ETH``): its coins' rows are their ledgers in the
shared accounts (a liquidated account's loss shared among them), the portfolio's is what it earned.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.spread import SpreadResult
from reports.html import ReportData, render_report
from reports.outputs import json_ready, write_output_dir

#: Row fields shown as percentages.
PERCENT = ("return", "annualized", "in_trade")


#: The fields of a row (:func:`spread_rows`).
ROW_FIELDS = (
    "coin",
    "venue_a",
    "venue_b",
    "strategy",
    "in_trade",
    "funding_a",
    "funding_b",
    "trading_fees",
    "transfer_fees",
    "transfers",
    "slippage",
    "borrow",
    "basis",
    "unhedged",
    "quote_fx",
    "liquidation",
    "liquidations",
    "net",
    "return",
    "annualized",
)


def _years(res: SpreadResult) -> float:
    """The run's window in 365-day years (its bars and one more bar's length)."""
    return (res.index[-1] - res.index[0] + (res.index[1] - res.index[0])).total_seconds() / (365 * 86400)


def _annualized(ret, years: float):
    """A return (fraction) over ``years`` per 365-day year (NaN for an empty window)."""
    return (1.0 + ret) ** (1.0 / years) - 1.0 if years > 0 else np.nan


def spread_rows(res: SpreadResult, strategy: str) -> pd.DataFrame:
    """One row per column of ``res`` (see the module docstring)."""
    t = res.totals
    cols = res.columns
    years = _years(res)
    held = res.positions["A"].ne(0).mean() if len(res.positions["A"]) == len(res.index) else np.nan
    net = t.final_equity - res.initial_capital
    ret = net / res.initial_capital
    rows = pd.DataFrame(
        {
            "coin": cols.coin.str.replace(r"(USDT|USDC)$", "", regex=True),
            "venue_a": cols.venue_a,
            "venue_b": cols.venue_b,
            "strategy": strategy,
            "in_trade": held,
            "funding_a": t.funding_a,
            "funding_b": t.funding_b,
            "trading_fees": t.trading_fees,
            "transfer_fees": t.transfer_fees,
            "transfers": t.transfers,
            "slippage": t.slippage,
            "borrow": t.borrow,
            "basis": t.spot_price + t.perp_price + t.unhedged - t.quote_fx,
            "unhedged": t.unhedged - t.quote_fx,
            "quote_fx": t.quote_fx,
            "liquidation": t.liquidation,
            "liquidations": t.liquidations,
            "net": net,
            "return": ret,
            "annualized": _annualized(ret, years),
        }
    )
    return rows[list(ROW_FIELDS)].reset_index(drop=True)


#: Row fields summed over a portfolio's columns (its amounts).
SUMMED = tuple(
    f
    for f in ROW_FIELDS
    if f not in ("coin", "venue_a", "venue_b", "strategy", "in_trade", "liquidations", "return", "annualized")
)


def portfolio_rows(rows: pd.DataFrame, res: SpreadResult) -> pd.DataFrame:
    """One row per portfolio of several columns of ``res`` (cross margin per venue: its coins share
    each venue's account, so a coin's row is its ledger and the portfolio's is what the accounts
    earned): ``coin`` the coins joined by ``+``, the amounts summed, ``in_trade`` the share of
    bars with any position, ``liquidations`` the accounts' (one per bar and venue), ``return``
    over the portfolio's capital (its columns' sum), ``annualized`` as the rows'. Empty when every
    column is its own portfolio."""
    group = res.columns["group"].to_numpy()
    years = _years(res)
    ev = res.events
    liq = ev[ev["kind"] == "liquidation"]
    out = []
    for g in dict.fromkeys(group.tolist()):
        cols = np.flatnonzero(group == g)
        if len(cols) < 2:
            continue
        part = rows.iloc[cols]
        row = {k: part[k].sum() for k in SUMMED}
        held = res.positions["A"][cols].ne(0).any(axis=1)
        ret = row["net"] / (res.initial_capital * len(cols))
        on = liq[liq["column"].isin(cols)]
        row.update(
            coin="+".join(part["coin"]),
            venue_a=part["venue_a"].iloc[0],
            venue_b=part["venue_b"].iloc[0],
            strategy=part["strategy"].iloc[0],
            in_trade=held.mean() if len(held) == len(res.index) else np.nan,
            liquidations=len(on[["time", "leg"]].drop_duplicates()),
            **{"return": ret},
            annualized=_annualized(ret, years),
        )
        out.append({k: row[k] for k in ROW_FIELDS})
    return pd.DataFrame(out, columns=list(ROW_FIELDS))


def trade_components(res: SpreadResult, labels: list[str]) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Per column of ``res`` (named by ``labels``): its cumulative PnL by part per bar (quote):
    each leg's funding, trading fees, transfer fees, slippage, a borrowed spot leg's interest,
    each leg's price PnL, the unhedged coins' (with a USDC venue's revaluation at the quote
    rate) and liquidation; and the worse of its two legs' margin ratios per bar (maintenance /
    margin balance; a borrowed spot leg's: the call level over its margin level; NaN when
    flat). ``res`` must keep components and events per bar (:func:`backtest.spread.run_spread`'s
    default outputs)."""
    ev = res.events
    bar = res.index.get_indexer(ev["time"])

    def per_bar(mask: np.ndarray, values: np.ndarray, c: int) -> np.ndarray:
        out = np.zeros(len(res.index))
        sel = mask & (ev["column"].to_numpy() == c)
        np.add.at(out, bar[sel], values[sel])
        return np.cumsum(out)

    kind, leg = ev["kind"].astype(str).to_numpy(), ev["leg"].astype(str).to_numpy()
    cash, fee = ev["cash"].to_numpy(), ev["fee"].to_numpy()
    comps = {}
    for c, label in enumerate(labels):
        funding_a = per_bar((kind == "funding") & (leg == "A"), cash, c)
        transfer_fees = -per_bar(kind == "transfer", fee, c)
        comp = res.components
        comps[label] = pd.DataFrame(
            {
                "funding A": funding_a,
                "funding B": comp["funding"][c].to_numpy() - funding_a,
                "fees": comp["fees"][c].to_numpy() - transfer_fees,
                "transfer fees": transfer_fees,
                "slippage": comp["slippage"][c].to_numpy(),
                "borrow": comp["borrow"][c].to_numpy(),
                "leg A price": comp["spot_price"][c].to_numpy(),
                "leg B price": comp["perp_price"][c].to_numpy(),
                "unhedged": comp["unhedged"][c].to_numpy(),
                "liquidation": comp["liquidation"][c].to_numpy(),
            },
            index=res.index,
        )
    ratio = np.fmax(res.margin_ratio["A"].to_numpy(), res.margin_ratio["B"].to_numpy())
    return comps, pd.DataFrame(ratio, index=res.index, columns=labels)


def write_spread_run(
    out: Path,
    *,
    header: dict,
    rows: pd.DataFrame,
    equity: pd.DataFrame,
    events: pd.DataFrame,
    notes: list[str],
    overwrite: bool = False,
    components: dict[str, pd.DataFrame] | None = None,
    margin_ratio: pd.DataFrame | None = None,
) -> Path:
    """Write a spread run's directory atomically (see the module docstring); ``components`` and
    ``margin_ratio`` (:func:`trade_components`) add each trade's stacked PnL by part and margin
    chart to the report."""
    summary = {**header, "rows": rows.to_dict(orient="records"), "notes": notes}
    text = json.dumps(json_ready(summary), indent=2, allow_nan=False)
    shown = rows.copy()
    for c in PERCENT:
        shown[c] = [f"{v:.2%}" if np.isfinite(v) else "" for v in shown[c].astype(float)]
    for c in (
        "funding_a",
        "funding_b",
        "trading_fees",
        "transfer_fees",
        "slippage",
        "borrow",
        "basis",
        "quote_fx",
        "liquidation",
        "net",
    ):
        shown[c] = [f"{v:,.2f}" for v in shown[c].astype(float)]
    report = ReportData(
        title="carry spread: funding-spread hedges between venues",
        metrics=pd.DataFrame(),
        equity=equity,
        tables=[("What each spread trade earned (quote; A long when the target is +1)", shown.set_index("coin"))],
        notes=notes,
        meta={"run": header.get("run", ""), "data": f"{rows.coin.nunique()} coins, {len(rows)} trades"},
        equity_title="Equity per coin and venue pair (quote)",
        drawdown=True,
        components=components or {},
        margin_ratio=margin_ratio,
    )
    html = render_report(report)
    ev = events.assign(time=events.time.astype("datetime64[ns, UTC]"))
    return write_output_dir(
        out,
        {
            "spread.json": lambda p: p.write_text(text),
            "equity.parquet": lambda p: equity.to_parquet(p),
            "events.parquet": lambda p: ev.to_parquet(p, index=False),
            "report.html": lambda p: p.write_text(html),
        },
        overwrite=overwrite,
    )

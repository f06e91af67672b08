"""What the HTML report of a run shows: :class:`~reports.html.ReportData` built from a result.

:func:`report_data` (``carry backtest``, ``compare``, ``sweep``, ``demo``), :func:`sweep_heatmaps`
(parameter heatmaps of a sweep) and :func:`scaled_report_data` (scale-out sweeps, from their
compact results).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd

from data.errors import ConfigError, did_you_mean
from reports.benchmarks import benchmarks
from reports.frames import funding_annualized_frame, portfolio_labels, trades_table
from reports.html import COMPONENT_BARS, ReportData
from reports.keys import SUMMARY_KEYS
from reports.outputs import json_ready
from reports.periods import period_returns
from reports.trades import per_bar, round_trips


def ranked(frame: pd.DataFrame, by: str | None) -> list:
    """Row labels of ``frame``, best first by column ``by`` (higher is better, NaN last), or
    in their order without ``by``."""
    if by is None:
        return list(frame.index)
    if by not in frame.columns:
        raise ConfigError(f"cannot rank by {by!r}: not a summary figure{did_you_mean(by, frame.columns)}")
    return list(frame.sort_values(by, ascending=False, kind="stable", na_position="last").index)


def report_data(
    title: str,
    market,
    targets,
    result,
    portfolios: pd.DataFrame,
    columns: pd.DataFrame,
    *,
    engine,
    run_id: str,
    ranking_by: str | None = None,
    heatmaps: list | None = None,
    extra_tables: list | None = None,
) -> ReportData:
    """Assemble the report of a run.

    ``portfolios``/``columns``: the labelled summaries (:func:`reports.frames.portfolio_summary`,
    :func:`reports.frames.column_summary`); ``engine``: the run's
    :class:`~backtest.config.BacktestConfig`; ``run_id``: the run's hash.

    Every portfolio gets its component chart, margin lines, round trips
    (:func:`reports.trades.round_trips`) and monthly and yearly returns
    (:func:`reports.periods.period_returns`), in the order of ``ranking_by`` (best first; the
    portfolios' order without it): the report's select shows the best one first. The trade
    markers of the funding chart are the best one's.
    """
    plabels = portfolio_labels(targets)
    equity = result.group_equity.copy()
    equity.columns = [plabels[int(g)] for g in equity.columns]
    order = ranked(portfolios, ranking_by)
    label_to_group = {v: k for k, v in plabels.items()}
    notes = list(market.notes) + [f"engine flag: {f}" for f in result.flags]
    detail = per_bar(result, "components") and per_bar(result, "group_equity")
    components: dict[str, pd.DataFrame] = {}
    totals = mr = dl = None
    if detail:
        components = component_samples(result, plabels, order)
        totals = equity[order] - float(engine.initial_capital_quote)
    if per_bar(result, "margin_ratio"):
        mr, dl = margin_frames(result, plabels, order)
    trips = monthly = yearly = None
    if detail and per_bar(result, "positions"):
        trips = round_trips(result, targets)
    elif detail:
        notes.append("no round-trip table: the run kept no per-bar positions")
    if detail:
        monthly = period_returns(result, targets, "month")
        yearly = period_returns(result, targets, "year")
    best_cols = result.group_columns(label_to_group[order[0]])
    if getattr(engine, "allow_same_bar_execution", False) and engine.execution_delay_bars == 0:
        notes.insert(0, "SAME-BAR EXECUTION: fills at the close of the bar that produced the signal (look-ahead).")
    meta = {
        "run": run_id,
        "engine config": engine.config_hash(),
        "data": f"{', '.join(market.symbols)} · {market.index[0]:%Y-%m-%d} .. {market.index[-1]:%Y-%m-%d} · {market.freq}",
        "capital": f"{engine.initial_capital_quote:,.0f} quote per portfolio",
        "leverage": f"{engine.perp_leverage:g}x {engine.margin_mode}",
    }
    return ReportData(
        title=title,
        metrics=portfolios,
        equity=equity,
        components=components,
        component_totals=totals,
        funding_annualized=funding_annualized_frame(market),
        basis=pd.DataFrame(market.basis, index=market.index, columns=list(market.symbols)),
        trades=trades_table(result, targets, best_cols) if per_bar(result, "positions") else None,
        trades_of=order[0],
        margin_ratio=mr,
        liquidation_distance=dl,
        round_trips=trips,
        monthly=monthly,
        yearly=yearly,
        benchmarks=benchmarks(market, float(engine.initial_capital_quote)),
        heatmaps=heatmaps or [],
        ranking_by=ranking_by,
        notes=notes,
        meta=meta,
        tables=[("Per column (symbol x parameters)", columns)] + (extra_tables or []),
    )


#: The components of a portfolio's chart (quote): chart name -> the result's components summed.
CHART_COMPONENTS: dict[str, tuple[str, ...]] = {
    "funding": ("funding",),
    "fees": ("fees",),
    "slippage": ("slippage",),
    "borrow": ("borrow",),
    "basis": ("spot_price", "perp_price"),
    "unhedged": ("unhedged",),
    "liquidation": ("liquidation",),
}


def portfolio_members(result) -> np.ndarray:
    """(C, G) one-hot: column -> its portfolio's position in ``result.group_ids``."""
    member = np.zeros((len(result.column_group), len(result.group_ids)))
    member[np.arange(len(result.column_group)), result.column_group] = 1.0
    return member


def component_samples(result, plabels: dict[int, str], order: list[str], bars: int = COMPONENT_BARS) -> dict:
    """Per portfolio label (in ``order``): its cumulative components of :data:`CHART_COMPONENTS`
    (quote, summed over its columns) at ``bars`` + 1 evenly spaced bars at most (first and last
    included), the stacked bars of its chart."""
    T = len(result.index)
    rows = np.unique(np.linspace(0, T - 1, min(T, bars)).astype(int))
    member = portfolio_members(result)
    sums = {
        name: sum(result.components[c].to_numpy()[rows] for c in parts) @ member
        for name, parts in CHART_COMPONENTS.items()
    }
    pos = {plabels[int(g)]: k for k, g in enumerate(result.group_ids)}
    index = result.index[rows]
    return {lab: pd.DataFrame({n: v[:, pos[lab]] for n, v in sums.items()}, index=index) for lab in order}


def margin_frames(result, plabels: dict[int, str], order: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bars x portfolio labels (in ``order``): the highest margin ratio and the smallest
    distance to liquidation over each portfolio's columns (NaN while flat)."""
    ratio = result.margin_ratio.to_numpy()
    dist = result.distance_to_liquidation.to_numpy()
    mr, dl = {}, {}
    group_of = {plabels[int(g)]: g for g in result.group_ids}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: flat bars
        for lab in order:
            cols = result.group_columns(group_of[lab])
            mr[lab] = np.nanmax(ratio[:, cols], axis=1)
            dl[lab] = np.nanmin(dist[:, cols], axis=1)
    return pd.DataFrame(mr, index=result.index), pd.DataFrame(dl, index=result.index)


def sweep_heatmaps(targets, portfolios: pd.DataFrame, grid_names: list[str], metric: str = "sharpe") -> list:
    """Heatmaps of ``metric`` over the first two swept parameters (best over the others)."""
    tab = targets.columns.drop_duplicates("group").set_index("group")
    labels = portfolio_labels(targets)
    values = pd.Series({g: portfolios.loc[labels[int(g)], metric] for g in tab.index}, dtype=float)
    frame = tab[grid_names].copy()
    frame[metric] = values
    if len(grid_names) == 1:
        p = grid_names[0]
        heat = frame.groupby(p)[metric].max().to_frame().T
        heat.index = [metric]
        heat.columns.name = p
        return [(f"{metric} by {p}", heat)]
    a, b = grid_names[:2]
    heat = frame.pivot_table(index=a, columns=b, values=metric, aggfunc="max")
    return [(f"{metric} by {a} x {b}" + (" (best over other parameters)" if len(grid_names) > 2 else ""), heat)]


def scaled_report_data(
    portfolios: pd.DataFrame,
    equity: pd.DataFrame | None,
    *,
    strategy: str,
    params: dict,
    run_id: str,
    data: str,
    mode: str = "",
    rank: str = "sharpe",
    top: int = 10,
    per_symbol: bool = False,
) -> ReportData:
    """The report of a memory-bounded sweep, from its compact results.

    ``portfolios``: one row per portfolio, indexed by its label, with the parameters and the
    summary figures; ``equity``: sampled portfolio equity with the same labels as columns, or
    None. Shows the ranking of the best 50 portfolios by ``rank``, the best ``top`` portfolios'
    equity, and ``rank`` on the first two swept parameters (averaged over symbols with
    ``per_symbol``); no per-bar components or margin (lean runs).
    """
    swept = [k for k, v in params.items() if isinstance(v, (list, tuple))]
    metrics = portfolios[list(SUMMARY_KEYS)]
    metrics = metrics.loc[ranked(metrics, rank)].head(50)
    metrics.index.name = "portfolio"
    if equity is not None:
        curves = equity[[c for c in metrics.index[:top] if c in equity.columns]]
    else:
        curves = pd.DataFrame({"final_equity": metrics["final_equity"].to_numpy()[:1]})
    heatmaps = []
    if swept:
        what = f"mean {rank} over symbols" if per_symbol else rank
        per_set = portfolios.groupby("param_id").agg({**{p: "first" for p in swept}, rank: "mean"})
        if len(swept) == 1:
            heat = per_set.groupby(swept[0])[rank].max().to_frame().T
            heat.index = [what]
            heat.columns.name = swept[0]
        else:
            heat = per_set.pivot_table(index=swept[0], columns=swept[1], values=rank, aggfunc="max")
        heatmaps.append((f"{what} by {' x '.join(swept[:2])}", heat))
    meta = {
        "run": run_id,
        "strategy": strategy,
        "grid": json.dumps(json_ready(dict(params))),
        "data": data,
        "mode": mode,
    }
    notes = [
        "Memory-bounded sweep: "
        + (
            "each (symbol, parameter set) is its own portfolio with the full capital; "
            if per_symbol
            else "each parameter set is one portfolio, its symbols sharing the capital; "
        )
        + "equity curves are sampled, and per-bar components and margin are not kept (lean runs)."
    ]
    return ReportData(
        title=f"carry sweep (scale-out): {strategy}",
        metrics=metrics,
        equity=curves,
        heatmaps=heatmaps,
        ranking_by=rank,
        notes=notes,
        meta=meta,
        drawdown=equity is not None,
    )

"""Self-contained HTML reports: Plotly figures embedded inline, tables, notes, how to read them.

The report layer takes plain pandas objects (see :class:`ReportData`) and returns one HTML
string that works offline: plotly.js is embedded once, no CDN, no external fonts. Long series
are thinned for the browser (at most ``max_points`` per trace, fewer when a figure has many
lines, keeping each stride's extremes so drawdowns and spikes survive); the Parquet files
beside the report hold the full data.

A run's report has one part per portfolio, chosen with a select (best first by the ranking):
its component and margin charts and its round-trip, monthly and yearly tables. Every
portfolio's data is embedded once as JSON (series as base64 float arrays) and a small script
redraws the two charts and the tables when the select changes; the address
``report.html#portfolio=LABEL`` opens one portfolio. Nothing in the file depends on the time
or place it was written: the same run writes the same bytes.
"""

from __future__ import annotations

import base64
import html
import json
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from reports.keys import format_value
from reports.keys import label as key_label

COMPONENT_COLORS = {
    "funding": "#2ca02c",
    "fees": "#d62728",
    "slippage": "#ff7f0e",
    "borrow": "#9467bd",
    "basis": "#1f77b4",
    "spot_price": "#17becf",
    "perp_price": "#bcbd22",
    "liquidation": "#000000",
    "unhedged": "#e377c2",
}


@dataclass
class ReportData:
    """Everything a report shows, as plain pandas objects.

    Attributes
    ----------
    title : str
    metrics : DataFrame
        One row per run/column (index = label), columns = summary keys (labels and formats
        from :mod:`reports.keys`).
    equity : DataFrame
        Bars x labels, equity in quote currency.
    components : dict of DataFrame
        Portfolio label -> cumulative PnL by component (quote), one row per bar or at sampled
        bars (the stacked bars of the portfolio's chart, at most ~120 of them). Every label
        here is an option of the report's portfolio select, in this order (the first shown
        first): the per-portfolio part (component and margin charts, round trips, monthly
        and yearly returns) follows the select.
    component_totals : DataFrame or None
        Bars x portfolio labels: cumulative total PnL (equity - initial capital, quote), the
        line over the stacked bars; None: the sum of ``components``.
    funding_annualized : DataFrame or None
        Bars x symbols, trailing annualized funding rate (fraction per 365-day year) at settlements.
    basis : DataFrame or None
        Bars x symbols, perp/spot - 1 (fraction).
    trades : DataFrame or None
        Rows with ``time``, ``symbol``, ``action`` (``entry``/``exit``/``liquidation``) to mark.
    trades_of : str or None
        Whose entries and exits ``trades`` are (a portfolio label), said in the chart's title.
    margin_ratio, liquidation_distance : DataFrame or None
        Bars x portfolio labels: maintenance margin / margin balance, and the fractional mark
        move to liquidation.
    round_trips : DataFrame or None
        Every trip (:func:`reports.trades.round_trips`), with a ``portfolio`` column.
    monthly, yearly : DataFrame or None
        Returns and component PnL per portfolio and calendar period
        (:func:`reports.periods.period_returns`), with a ``portfolio`` column.
    benchmarks : DataFrame or None
        Per symbol: spot buy-and-hold and the funding of a hedge held throughout
        (:func:`reports.benchmarks.benchmarks`).
    max_trips : int
        Trips listed per portfolio (the count of all of them is shown).
    heatmaps : list of (title, DataFrame)
        Parameter heatmaps (rows x columns of parameter values, cell = metric).
    notes : list of str
        Warnings and facts to show at the top (data fills, same-bar execution, ...).
    meta : dict
        Key facts (config hash, data coverage) shown in the header.
    walk_forward : DataFrame or None
        A walk-forward's stitched out-of-sample run, per bar of the test windows: ``equity``
        (quote), ``chosen`` (the set traded), ``hindsight`` (the set best over the span in
        hindsight, same start and capital; quote).
    """

    title: str
    metrics: pd.DataFrame
    equity: pd.DataFrame
    components: dict[str, pd.DataFrame] = field(default_factory=dict)
    component_totals: pd.DataFrame | None = None
    funding_annualized: pd.DataFrame | None = None
    basis: pd.DataFrame | None = None
    trades: pd.DataFrame | None = None
    trades_of: str | None = None
    margin_ratio: pd.DataFrame | None = None
    liquidation_distance: pd.DataFrame | None = None
    round_trips: pd.DataFrame | None = None
    monthly: pd.DataFrame | None = None
    yearly: pd.DataFrame | None = None
    benchmarks: pd.DataFrame | None = None
    max_trips: int = 500
    heatmaps: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    ranking_by: str | None = None
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    equity_title: str = "Equity (quote)"
    drawdown: bool = True
    walk_forward: pd.DataFrame | None = None


def thin(frame: pd.DataFrame, max_points: int = 4000) -> pd.DataFrame:
    """At most ~``max_points`` rows: per stride, the first row plus each column's min and max rows."""
    n = len(frame)
    if n <= max_points:
        return frame
    stride = int(np.ceil(n / (max_points / 3)))
    values = frame.to_numpy(dtype=float, na_value=np.nan)
    keep = np.zeros(n, dtype=bool)
    keep[::stride] = True
    keep[-1] = True
    starts = np.arange(0, n, stride)
    drawn = ~np.isnan(values).all(axis=0)  # all-NaN columns keep no extremes
    if drawn.any():
        v = values[:, drawn]
        v = np.where(np.isnan(v), np.nanmean(v, axis=0), v)  # gaps never an extreme of their stride
        pad = len(starts) * stride - n  # the last stride padded with values never chosen
        for fill, arg in ((-np.inf, np.argmax), (np.inf, np.argmin)):
            strides = np.concatenate([v, np.full((pad, v.shape[1]), fill)]).reshape(len(starts), stride, -1)
            keep[(starts[:, None] + arg(strides, axis=1)).ravel()] = True  # each stride's first extreme
    return frame.iloc[np.flatnonzero(keep)]


def _fmt(key: str, value, percent: bool = False) -> str:
    if percent and isinstance(value, (float, np.floating)) and math.isfinite(value):
        return f"{value:.2%}"
    return html.escape(format_value(str(key), value))


def metrics_table(
    metrics: pd.DataFrame,
    table_id: str = "metrics",
    percent: tuple[str, ...] = (),
    first: str = "run",
    labels: dict[str, str] | None = None,
) -> str:
    """The metrics as an HTML table (rows = runs, columns = result keys, display labels).

    ``percent``: columns of fractions to show as % (the summary keys' own formats apply to the
    others); ``first``: the header of the row labels; ``labels``: headers of columns outside
    the summary keys."""
    cols = [c for c in metrics.columns]
    names = {str(c): (labels or {}).get(str(c)) or key_label(str(c)) for c in cols}
    head = "".join(f"<th title='{html.escape(str(c))}'>{html.escape(names[str(c)])}</th>" for c in cols)
    rows = []
    for name, row in metrics.iterrows():
        cells = "".join(f"<td>{_fmt(c, row[c], c in percent)}</td>" for c in cols)
        rows.append(f"<tr><th scope='row'>{html.escape(str(name))}</th>{cells}</tr>")
    return (
        f"<table id='{table_id}' class='metrics'><thead><tr><th>{html.escape(first)}</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


#: Points drawn per figure over all its lines (each line gets its share, between 500 and
#: ``max_points``): 20 lines draw 1,200 points each, not 4,000.
FIGURE_POINTS = 24_000
#: Points per line of the per-portfolio charts (their data is embedded once per portfolio).
DETAIL_POINTS = 1_500
#: The stacked bars of a component chart.
COMPONENT_BARS = 120
#: Lines of an all-portfolio chart (equity, drawdown): beyond it, the best and the worst half
#: of them by the ranking, and the band (lowest, median, highest) of every portfolio.
MAX_LINES = 20
#: Points of all the per-portfolio lines of a report together: each portfolio's lines get their
#: share (at most ``DETAIL_POINTS``, at least ``DETAIL_MIN_POINTS``), so a report of 1,000
#: portfolios stays a few MB and still has every portfolio's charts.
DETAIL_BUDGET_POINTS = 40_000
DETAIL_MIN_POINTS = 40
#: Stacked bars of all the component charts together (each portfolio its share, 24 to
#: :data:`COMPONENT_BARS`).
COMPONENT_BUDGET_BARS = 12_000
#: Round trips listed in the report over all portfolios (each its share, 10 to ``max_trips``;
#: every trip is in trades.parquet).
TRIP_BUDGET_ROWS = 10_000

#: The layout of every line chart (white template, legend below, unified hover).
LAYOUT = dict(
    template="plotly_white",
    height=420,
    margin=dict(l=60, r=20, t=50, b=40),
    legend=dict(orientation="h", y=-0.15),
    hovermode="x unified",
)


def _line_points(n_lines: int, max_points: int) -> int:
    return max(min(max_points, 500), min(max_points, FIGURE_POINTS // max(n_lines, 1)))


def _lines(frame: pd.DataFrame, max_points: int, **kw) -> list:
    """One line per column of ``frame``, each thinned on its own to its share of the figure's points."""
    import plotly.graph_objects as go

    pts = _line_points(frame.shape[1], max_points)
    out = []
    for j, c in enumerate(frame.columns):
        s = thin(frame.iloc[:, [j]], pts).iloc[:, 0]
        x = _ms(s.index) if isinstance(s.index, pd.DatetimeIndex) else s.index
        out.append(go.Scatter(x=x, y=s.to_numpy(), name=str(c), mode="lines", **kw))
    return out


def _ranking_order(data: ReportData) -> list:
    """Portfolio labels best first: the select's order, else by the ranking figure, else as given."""
    if data.components:
        return list(data.components)
    if data.ranking_by and data.ranking_by in data.metrics.columns:
        return list(data.metrics.sort_values(data.ranking_by, ascending=False, na_position="last").index)
    return list(data.equity.columns)


def _band_note(frame: pd.DataFrame, data: ReportData) -> str:
    if frame.shape[1] <= MAX_LINES:
        return ""
    by = key_label(data.ranking_by) if data.ranking_by else "their order"
    return (
        f": the best and worst {MAX_LINES // 2} of {frame.shape[1]} by {by}, and the band of all "
        "(every portfolio's own chart: the select below)"
    )


def _ranked_lines(frame: pd.DataFrame, order: list, max_points: int, **kw) -> list:
    """One line per column of ``frame`` up to :data:`MAX_LINES`; beyond, the best and the worst
    :data:`MAX_LINES` / 2 by ``order`` and the band of every column per bar (lowest, median,
    highest), so the chart stays readable and its size bounded whatever the grid."""
    import plotly.graph_objects as go

    if frame.shape[1] <= MAX_LINES:
        return _lines(frame, max_points, **kw)
    ranked = [c for c in order if c in frame.columns] + [c for c in frame.columns if c not in set(order)]
    half = MAX_LINES // 2
    shown = frame[ranked[:half] + ranked[-half:]]
    values = frame.to_numpy(dtype=float)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # bars where every portfolio is NaN
        band = pd.DataFrame(
            {
                f"all {frame.shape[1]}: lowest": np.nanmin(values, axis=1),
                f"all {frame.shape[1]}: highest": np.nanmax(values, axis=1),
                f"all {frame.shape[1]}: median": np.nanmedian(values, axis=1),
            },
            index=frame.index,
        )
    band = thin(band, max_points)
    x = _ms(band.index) if isinstance(band.index, pd.DatetimeIndex) else band.index
    grey = dict(color="rgba(120,120,120,0.5)", width=1)
    cols = list(band.columns)
    traces = [
        go.Scatter(x=x, y=band[cols[0]].to_numpy(), name=cols[0], mode="lines", line=grey),
        go.Scatter(
            x=x, y=band[cols[1]].to_numpy(), name=cols[1], mode="lines", line=grey, fill="tonexty",
            fillcolor="rgba(160,160,160,0.15)",
        ),
        go.Scatter(x=x, y=band[cols[2]].to_numpy(), name=cols[2], mode="lines", line=dict(color="#555", dash="dot")),
    ]  # fmt: skip
    return traces + _lines(shown, max_points, **kw)


def _figures(data: ReportData, max_points: int) -> list[tuple[str, object]]:
    """The report's figures over all portfolios: equity, drawdown, heatmaps, funding and basis."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figs: list[tuple[str, object]] = []
    layout = LAYOUT

    order = _ranking_order(data)
    fig = go.Figure(_ranked_lines(data.equity, order, max_points))
    fig.update_layout(title=data.equity_title + _band_note(data.equity, data), **layout)
    if isinstance(data.equity.index, pd.DatetimeIndex):
        fig.update_xaxes(type="date")
    figs.append(("equity", fig))

    if data.drawdown:
        dd = data.equity / data.equity.cummax() - 1.0
        fig = go.Figure(_ranked_lines(dd, order, max_points, fill="tozeroy"))
        fig.update_layout(title="Drawdown" + _band_note(dd, data), yaxis_tickformat=".1%", **layout)
        if isinstance(dd.index, pd.DatetimeIndex):
            fig.update_xaxes(type="date")
        figs.append(("drawdown", fig))

    if data.walk_forward is not None and len(data.walk_forward):
        figs.append(("walk-forward", _walk_forward_figure(data.walk_forward, max_points)))

    for title, table in data.heatmaps:
        fig = go.Figure(
            go.Heatmap(
                z=table.to_numpy(dtype=float),
                x=[str(c) for c in table.columns],
                y=[str(i) for i in table.index],
                colorscale="RdYlGn",
                text=np.round(table.to_numpy(dtype=float), 3),
                texttemplate="%{text}",
            )
        )
        fig.update_layout(
            title=title,
            template="plotly_white",
            height=420,
            xaxis_title=str(table.columns.name or ""),
            yaxis_title=str(table.index.name or ""),
        )
        figs.append((f"heatmap-{title}", fig))

    if data.funding_annualized is not None or data.basis is not None:
        fig = make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            vertical_spacing=0.08,
            subplot_titles=("Funding, annualized (trailing mean of 21 settlements)", "Basis (perp/spot - 1)"),
        )
        if data.funding_annualized is not None:
            for c in data.funding_annualized.columns:
                s = data.funding_annualized[c].dropna()
                s = thin(s.to_frame(), max_points)[c]
                fig.add_trace(
                    go.Scatter(x=_ms(s.index), y=s.to_numpy(), name=f"{c} funding", mode="lines"), row=1, col=1
                )
        if data.basis is not None:
            b = thin(data.basis, max_points)
            for c in b.columns:
                fig.add_trace(
                    go.Scatter(x=_ms(b.index), y=b[c].to_numpy(), name=f"{c} basis", mode="lines"), row=2, col=1
                )
        marked = False
        if data.trades is not None and len(data.trades) and data.funding_annualized is not None:
            symbols = [s for s in data.trades["symbol"].unique() if s in data.funding_annualized.columns]
            marker = {
                "entry": ("triangle-up", "#2ca02c"),
                "exit": ("triangle-down", "#d62728"),
                "liquidation": ("x", "#000000"),
            }
            for action, (symbol_shape, color) in marker.items():
                t = data.trades[(data.trades["action"] == action) & data.trades["symbol"].isin(symbols)]
                if len(t) == 0:
                    continue
                marked = True
                t = t.iloc[:: max(1, len(t) // 500)]
                y = [_value_at(data.funding_annualized[s].ffill(), tm) for s, tm in zip(t["symbol"], t["time"])]
                fig.add_trace(
                    go.Scatter(
                        x=_ms(pd.DatetimeIndex(t["time"])),
                        y=y,
                        mode="markers",
                        name=action,
                        marker=dict(symbol=symbol_shape, size=9, color=color),
                    ),
                    row=1,
                    col=1,
                )
        title = "Funding and basis"
        if marked:
            title += (
                f", with the entries and exits of {data.trades_of}" if data.trades_of else ", with entries and exits"
            )
        fig.update_layout(title=title, **{**layout, "height": 560})
        fig.update_xaxes(type="date")
        fig.update_yaxes(tickformat=".1%", row=1, col=1)
        fig.update_yaxes(tickformat=".2%", row=2, col=1)
        figs.append(("funding-basis", fig))
    return figs


def margin_figure(margin: pd.DataFrame, title: str):
    """A portfolio's margin chart: ``margin`` (bars x ``ratio``, ``distance``) drawn as the margin
    ratio over the distance to liquidation (fraction, as %)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=(
            "Margin ratio (maintenance / margin balance, highest over the portfolio's symbols; 1 = liquidation)",
            "Distance to liquidation (adverse mark move, fraction; smallest over its symbols)",
        ),
    )
    x = _ms(margin.index)
    fig.add_trace(go.Scatter(x=x, y=margin["ratio"].to_numpy(), name="margin ratio", mode="lines"), row=1, col=1)
    fig.add_trace(
        go.Scatter(x=x, y=margin["distance"].to_numpy(), name="distance to liquidation", mode="lines"), row=2, col=1
    )
    fig.update_layout(title=title, **{**LAYOUT, "height": 560})
    fig.update_xaxes(type="date")
    fig.update_yaxes(tickformat=".0%", row=2, col=1)
    return fig


def _walk_forward_figure(frame: pd.DataFrame, max_points: int):
    """The stitched out-of-sample equity, the best set in hindsight, and where the choice changed."""
    import plotly.graph_objects as go

    lines = frame[["equity", "hindsight"]].rename(
        columns={"equity": "stitched out-of-sample run", "hindsight": "best set in hindsight"}
    )
    fig = go.Figure(_lines(lines, max_points))
    change = frame["chosen"].ne(frame["chosen"].shift())
    for when, label in frame.loc[change, "chosen"].items():
        fig.add_vline(x=float(_ms(pd.DatetimeIndex([when]))[0]), line=dict(color="#999", width=1, dash="dot"))
        fig.add_annotation(
            x=float(_ms(pd.DatetimeIndex([when]))[0]),
            y=1,
            yref="paper",
            text=html.escape(str(label)),
            showarrow=False,
            textangle=-90,
            xanchor="left",
            yanchor="top",
            font=dict(size=9, color="#666"),
        )
    fig.update_layout(
        title="Walk-forward: the stitched out-of-sample run (each test window traded with the set chosen "
        "before it, switching costs included) vs the best set in hindsight (quote)",
        **LAYOUT,
    )
    fig.update_xaxes(type="date")
    return fig


def _value_at(series: pd.Series, when) -> float:
    pos = series.index.searchsorted(when, side="right") - 1
    return float(series.iloc[pos]) if pos >= 0 else float("nan")


# --------------------------------------------------------------------------- per-portfolio part
#: The PnL columns of the round-trip and period tables: each component and their total (quote).
_PNL_VIEW = (
    ("funding_pnl", "Funding", "m"),
    ("fee_pnl", "Fees", "m"),
    ("slippage_pnl", "Slippage", "m"),
    ("borrow_pnl", "Borrow", "m"),
    ("basis_pnl", "Basis", "m"),
    ("unhedged_pnl", "Unhedged", "m"),
    ("liquidation_pnl", "Liquidation", "m"),
    ("total_pnl", "Total", "m"),
)
#: The columns of the round-trip table: key of :func:`reports.trades.round_trips`, header,
#: format (t text, m quote, p percent, h hours, c count).
TRIP_VIEW = (
    ("symbol", "Symbol", "t"),
    ("side", "Side", "t"),
    ("entry_time", "Entry (UTC)", "t"),
    ("exit_time", "Exit (UTC)", "t"),
    ("exit", "Ended by", "t"),
    ("holding_hours", "Hours held", "h"),
    ("entry_notional", "Entry notional", "m"),
    *_PNL_VIEW,
    ("liquidations", "Liquidations", "c"),
)
#: The columns of the monthly and yearly tables (:func:`reports.periods.period_returns`).
PERIOD_VIEW = (
    ("period", "Period", "t"),
    ("start_equity", "Start equity", "m"),
    ("return", "Return", "p"),
    *_PNL_VIEW,
)


def _b64(values, dtype: str) -> str:
    """Little-endian float32 (``"<f4"``) or float64 (``"<f8"``) values as base64 text."""
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _minutes(index: pd.Index, t0: float) -> str:
    """Times as whole minutes after ``t0`` (ms since the epoch), little-endian uint32 in base64:
    half the bytes of float64 milliseconds (bars are whole minutes; the page adds ``t0`` back)."""
    minutes = np.round((_ms(index) - t0) / 60_000.0)
    if len(minutes) and (minutes.min() < 0 or minutes.max() >= 2**32):
        raise ValueError("times before the report's first bar")
    return _b64(minutes, "<u4")


def _ms(index: pd.Index) -> np.ndarray:
    """Times as float milliseconds since the epoch (UTC), the numbers of a plotly date axis."""
    return pd.DatetimeIndex(index).as_unit("ns").asi8 / 1e6


def _cells(frame: pd.DataFrame, view: tuple) -> list[list]:
    """The rows of ``frame`` as JSON-ready lists in ``view``'s column order: times as
    ``YYYY-MM-DD HH:MM`` text, numbers rounded (2 decimals, 6 for fractions), NaN as None."""
    cols = []
    for key, _, f in view:
        s = frame[key]
        if pd.api.types.is_datetime64_any_dtype(s):
            cols.append(s.dt.strftime("%Y-%m-%d %H:%M").tolist())
        elif f in ("m", "h", "p", "c"):
            v = np.round(s.to_numpy(dtype=float), 6 if f == "p" else 2)
            cols.append([None if not math.isfinite(x) else (int(x) if f == "c" else x) for x in v.tolist()])
        else:
            cols.append([str(x) for x in s.tolist()])
    return [list(r) for r in zip(*cols)] if cols else []


def _component_series(data: ReportData, label: str, n_bars: int = COMPONENT_BARS) -> tuple[pd.DataFrame, pd.Series]:
    """The stacked bars (at most ``n_bars`` + 1 dates) and the total line of a portfolio."""
    comp = data.components[label]
    rows = np.unique(np.linspace(0, len(comp) - 1, min(len(comp), n_bars)).astype(int))
    bars = comp.iloc[rows] if len(comp) > n_bars + 1 else comp
    if data.component_totals is not None and label in data.component_totals.columns:
        total = data.component_totals[label]
    else:
        total = comp.sum(axis=1)
    return bars, total


def _margin_frame(data: ReportData, label: str) -> pd.DataFrame | None:
    parts = {}
    for name, frame in (("ratio", data.margin_ratio), ("distance", data.liquidation_distance)):
        if frame is not None and label in frame.columns:
            parts[name] = frame[label]
    if not parts:
        return None
    out = pd.DataFrame(parts)
    for name in ("ratio", "distance"):
        if name not in out:
            out[name] = np.nan
    return out[["ratio", "distance"]]


def _trips_listed(data: ReportData) -> int:
    """Round trips listed per portfolio: ``max_trips``, or the portfolio's share of
    :data:`TRIP_BUDGET_ROWS` when there are many portfolios (at least 10)."""
    return min(data.max_trips, max(10, TRIP_BUDGET_ROWS // max(len(data.components), 1)))


def _by_portfolio(frame: pd.DataFrame | None, labels: list[str], sort_by: list[str] | None = None) -> dict:
    """``frame``'s rows per portfolio label (positions, in order), for the labels of the select."""
    if frame is None or "portfolio" not in frame.columns:
        return {}
    if sort_by:
        frame = frame.sort_values(sort_by, kind="stable")
    groups = frame.groupby("portfolio", sort=False).indices
    return {lab: frame.iloc[groups[lab]] for lab in labels if lab in groups}


def _detail(data: ReportData, max_points: int) -> tuple[list, list[str], str]:
    """The per-portfolio part: its figures (drawn with the first portfolio's data), its HTML
    (select, tables) and the JSON of every portfolio's data that the select switches to."""
    import plotly.graph_objects as go

    labels = list(data.components)
    pts = min(max_points, DETAIL_POINTS, max(DETAIL_MIN_POINTS, DETAIL_BUDGET_POINTS // len(labels)))
    max_trips = _trips_listed(data)
    n_bars = min(COMPONENT_BARS, max(24, COMPONENT_BUDGET_BARS // len(labels)))
    t0 = float(_ms(data.components[labels[0]].index[:1])[0])  # times: whole minutes after it
    trips = _by_portfolio(data.round_trips, labels, ["entry_time", "symbol"])
    monthly = _by_portfolio(data.monthly, labels)
    yearly = _by_portfolio(data.yearly, labels)
    names = list(data.components[labels[0]].columns)
    payload: list[dict] = []
    for lab in labels:
        bars, total = _component_series(data, lab, n_bars)
        total = thin(total.to_frame("total"), pts)["total"]
        p: dict = {
            "cx": _minutes(bars.index, t0),
            "c": [_b64(bars[c].to_numpy(dtype=float) if c in bars else np.zeros(len(bars)), "<f4") for c in names],
            "tx": _minutes(total.index, t0),
            "ty": _b64(total.to_numpy(dtype=float), "<f4"),
        }
        margin = _margin_frame(data, lab)
        if margin is not None:
            m = thin(margin, pts)
            p.update(
                mx=_minutes(m.index, t0),
                mr=_b64(m["ratio"].to_numpy(dtype=float), "<f4"),
                md=_b64(m["distance"].to_numpy(dtype=float), "<f4"),
            )
        if data.round_trips is not None:
            t = trips.get(lab)
            p["trips"] = {
                "n": 0 if t is None else len(t),
                "rows": [] if t is None else _cells(t.head(max_trips), TRIP_VIEW),
            }
        if data.monthly is not None:
            p["months"] = _cells(monthly[lab], PERIOD_VIEW) if lab in monthly else []
        if data.yearly is not None:
            p["years"] = _cells(yearly[lab], PERIOD_VIEW) if lab in yearly else []
        payload.append(p)

    first = labels[0]
    figs: list[tuple[str, object]] = []
    bars, total = _component_series(data, first, n_bars)
    total = thin(total.to_frame("total"), pts)["total"]
    fig = go.Figure()
    for c in names:
        y = bars[c] if c in bars else pd.Series(0.0, index=bars.index)
        fig.add_trace(
            go.Bar(x=_ms(bars.index), y=y.to_numpy(dtype=float), name=c, marker_color=COMPONENT_COLORS.get(c))
        )
    fig.add_trace(
        go.Scatter(
            x=_ms(total.index),
            y=total.to_numpy(dtype=float),
            name="total",
            mode="lines",
            line=dict(color="black", width=2),
        )
    )
    comp_title = "Cumulative PnL by component (quote): "
    fig.update_layout(title=comp_title + first, barmode="relative", bargap=0, **LAYOUT)
    fig.update_xaxes(type="date")
    figs.append(("components", fig))
    margin = _margin_frame(data, first)
    margin_title = "Margin: "
    if margin is not None:
        fig = margin_figure(thin(margin, pts), margin_title + first)
        figs.append(("margin", fig))

    metric = data.ranking_by if data.ranking_by in data.metrics.columns else None
    options = []
    for i, lab in enumerate(labels):
        text = f"{i + 1}. {lab}"
        if metric is not None and lab in data.metrics.index:
            text += f" ({key_label(metric)} {format_value(metric, data.metrics.loc[lab, metric])})"
        options.append(f"<option value='{i}'>{html.escape(text)}</option>")
    by = f", best first by {html.escape(key_label(metric))}" if metric else ""
    parts = [
        "<h2 id='portfolio'>Portfolio</h2>",
        f"<p class='pick'><label for='portfolio-select'>Portfolio ({len(labels)}{by}): </label>"
        f"<select id='portfolio-select'>{''.join(options)}</select></p>",
    ]
    tables = []
    if data.round_trips is not None:
        tables.append(f"<h3>Round trips</h3><p class='count' id='trips-count'></p>{_table_shell('trips', TRIP_VIEW)}")
    if data.monthly is not None:
        tables.append(f"<h3>Monthly returns and PnL by component</h3>{_table_shell('monthly', PERIOD_VIEW)}")
    if data.yearly is not None:
        tables.append(f"<h3>Yearly returns and PnL by component</h3>{_table_shell('yearly', PERIOD_VIEW)}")
    doc = {
        "labels": labels,
        "names": names,
        "ct": comp_title,
        "mt": margin_title,
        "max_trips": _trips_listed(data),
        "views": {
            "trips": [list(v) for v in TRIP_VIEW],
            "monthly": [list(v) for v in PERIOD_VIEW],
            "yearly": [list(v) for v in PERIOD_VIEW],
        },
        "p": payload,
        "t0": t0,
    }
    text = json.dumps(doc, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
    return figs, parts + ["@FIGURES@"] + tables, text


def _table_shell(table_id: str, view: tuple) -> str:
    head = "".join(
        f"<th data-col='{j}' title='click to sort'>{html.escape(h)}</th>" for j, (_, h, _) in enumerate(view)
    )
    return f"<table id='{table_id}' class='metrics data'><thead><tr>{head}</tr></thead><tbody></tbody></table>"


DETAIL_JS = r"""
(function () {
  var el = document.getElementById('detail-data');
  if (!el) return;
  var D = JSON.parse(el.textContent);
  var sel = document.getElementById('portfolio-select');
  function dec(s, wide) {
    var b = atob(s), u = new Uint8Array(b.length);
    for (var i = 0; i < b.length; i++) u[i] = b.charCodeAt(i);
    if (!wide) return new Float32Array(u.buffer);
    var m = new Uint32Array(u.buffer), t = new Array(m.length);  // minutes after D.t0 -> ms
    for (var k = 0; k < m.length; k++) t[k] = D.t0 + m[k] * 60000;
    return t;
  }
  function esc(s) {
    return String(s).replace(/[&<>"']/g, function (c) {
      return {'&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;'}[c];
    });
  }
  function fmt(v, f) {
    if (v === null || v === undefined) return '\u2013';
    if (f === 'm') return v.toLocaleString('en-US', {minimumFractionDigits: 2, maximumFractionDigits: 2});
    if (f === 'p') return (v * 100).toFixed(2) + '%';
    if (f === 'h') return v.toLocaleString('en-US', {minimumFractionDigits: 1, maximumFractionDigits: 1});
    if (f === 'c') return v.toLocaleString('en-US');
    return String(v);
  }
  var state = {};
  function render(id) {
    var t = document.getElementById(id), s = state[id];
    if (!t || !s) return;
    var view = D.views[id], out = [];
    for (var i = 0; i < s.rows.length; i++) {
      var r = s.rows[i], cells = [];
      for (var j = 0; j < view.length; j++) {
        var f = view[j][2], v = r[j];
        cells.push('<td' + ((f === 'm' || f === 'p') && v < 0 ? ' class="neg"' : '') + '>' + esc(fmt(v, f)) + '</td>');
      }
      out.push('<tr>' + cells.join('') + '</tr>');
    }
    t.tBodies[0].innerHTML = out.join('');
  }
  function sortBy(id, j) {
    var s = state[id];
    if (!s) return;
    s.asc = s.key === j ? !s.asc : true;
    s.key = j;
    var dir = s.asc ? 1 : -1;
    s.rows = s.rows.map(function (r, i) { return [r, i]; }).sort(function (a, b) {
      var x = a[0][j], y = b[0][j];
      if (x === y) return a[1] - b[1];
      if (x === null) return 1;
      if (y === null) return -1;
      return (x < y ? -1 : 1) * dir;
    }).map(function (p) { return p[0]; });
    render(id);
  }
  Object.keys(D.views).forEach(function (id) {
    var t = document.getElementById(id);
    if (!t) return;
    var ths = t.tHead.rows[0].cells;
    for (var j = 0; j < ths.length; j++) {
      ths[j].addEventListener('click', (function (k) { return function () { sortBy(id, k); }; })(j));
    }
  });
  function tables(i) {
    var p = D.p[i];
    if (p.trips) {
      state.trips = {rows: p.trips.rows.slice(), key: -1, asc: true};
      var c = document.getElementById('trips-count');
      if (c) {
        c.textContent = p.trips.n > p.trips.rows.length
          ? p.trips.n.toLocaleString('en-US') + ' trips; the first ' + p.trips.rows.length.toLocaleString('en-US') + ' by entry time are listed'
          : p.trips.n.toLocaleString('en-US') + (p.trips.n === 1 ? ' trip' : ' trips');
      }
    }
    if (p.months) state.monthly = {rows: p.months.slice(), key: -1, asc: true};
    if (p.years) state.yearly = {rows: p.years.slice(), key: -1, asc: true};
    ['trips', 'monthly', 'yearly'].forEach(render);
  }
  function charts(i) {
    if (!window.Plotly) return;
    var p = D.p[i], label = D.labels[i];
    var c = document.getElementById('fig-components');
    if (c && c.data) {
      var xs = [], ys = [], idx = [], cx = dec(p.cx, true);
      for (var k = 0; k < D.names.length; k++) { xs.push(cx); ys.push(dec(p.c[k])); idx.push(k); }
      xs.push(dec(p.tx, true)); ys.push(dec(p.ty)); idx.push(D.names.length);
      // x as ms since the epoch: a new x makes plotly guess the axis type again, so it is set with it
      Plotly.update(c, {x: xs, y: ys}, {'title.text': D.ct + label, 'xaxis.type': 'date'}, idx);
    }
    var m = document.getElementById('fig-margin');
    if (m && m.data && p.mx) {
      var mx = dec(p.mx, true);
      Plotly.update(m, {x: [mx, mx], y: [dec(p.mr), dec(p.md)]},
        {'title.text': D.mt + label, 'xaxis.type': 'date', 'xaxis2.type': 'date'}, [0, 1]);
    }
  }
  function pick() {
    var m = /portfolio=([^&]*)/.exec(window.location.hash || '');
    if (!m) return 0;
    var i = D.labels.indexOf(decodeURIComponent(m[1]));
    return i >= 0 ? i : 0;
  }
  var first = pick();
  sel.selectedIndex = first;
  tables(first);
  if (first) window.addEventListener('load', function () { charts(first); });
  sel.addEventListener('change', function () {
    var i = sel.selectedIndex;
    tables(i);
    charts(i);
    try { history.replaceState(null, '', '#portfolio=' + encodeURIComponent(D.labels[i])); } catch (e) {}
  });
})();
"""


def _how_to_read(data: ReportData, detail: bool) -> str:
    """The "How to read this" section: how each figure is computed, with units."""
    items = [
        "<b>Units.</b> Money is in the quote currency (USDT), as amounts; returns, drawdowns, rates and "
        "basis are fractions shown as %. <i>Annualized</i> means per 365-day year: compounded for "
        "returns, simple (mean rate × 8,760 / interval hours) for funding. Hover a table header for the key "
        "of the figure (the names of summary.json).",
    ]
    if data.ranking_by:
        items.append(
            f"<b>Ranking.</b> Portfolios are ordered by {html.escape(key_label(data.ranking_by))}, highest first"
            + ("; the order decides where a portfolio appears, never whether." if detail else ".")
        )
    if data.equity_title == "Equity (quote)":
        items.append(
            "<b>Equity</b> is each portfolio's equity at every bar close (spot wallet at the spot price + futures "
            "margin balance − borrowed coins − unpaid interest), quote"
            + ("; <b>drawdown</b> = equity / its running peak − 1" if data.drawdown else "")
            + ". Lines are thinned for the browser (each stride keeps its first, lowest and highest point); the "
            "Parquet files hold every bar."
        )
    else:
        items.append(
            f"<b>{html.escape(data.equity_title)}</b>: the first chart. Lines are thinned for the browser (each "
            "stride keeps its first, lowest and highest point)."
        )
    if data.walk_forward is not None:
        items.append(
            "<b>Walk-forward.</b> Each fold picks the set with the best ranking figure over its training window "
            "and scores it on the test window after it (the table: in-sample vs out-of-sample, next to the best "
            "any set reached there). The <i>stitched out-of-sample run</i> is one portfolio run by the engine from "
            "the first test window's start (flat, the initial capital) to the last one's end, holding in each "
            "test window the targets and capital weights of the set chosen before it: switching sets trades at "
            "the usual fees and slippage, so it is what following the walk-forward would have earned (quote; "
            "its figures are in summary.json <code>walk_forward.stitched</code>, its bars in "
            "walk_forward.parquet). The <i>best set in hindsight</i> is the set with the best ranking figure over "
            "the same span, started there with the same capital: the gap between them is the cost of not "
            "knowing the future. Dotted lines mark where the chosen set changes."
        )
    if data.equity.shape[1] > MAX_LINES:
        items.append(
            f"<b>Many portfolios.</b> The equity and drawdown charts draw the best and the worst {MAX_LINES // 2} "
            "by the ranking and, in grey, the band of all of them at each bar (lowest, median, highest); every "
            "portfolio's own curve is its PnL chart below (equity − initial capital)."
        )
    if data.funding_annualized is not None:
        items.append(
            "<b>Funding</b> is the trailing mean of 21 settlements, annualized; <b>basis</b> = perp price / "
            "spot price − 1 at the bar close."
        )
    if detail:
        items += [
            "<b>Portfolio.</b> The select chooses the portfolio whose charts and tables are shown below it "
            "(every portfolio of the run is there; the address <code>#portfolio=LABEL</code> opens one).",
            "<b>PnL by component</b> (quote, cumulative from the start): funding received − paid at each "
            "settlement at the mark; fees and slippage of both legs (negative); borrow interest of a short "
            "spot leg; <i>basis</i> = spot price PnL + perp price PnL of the hedged coins; <i>unhedged</i> = "
            "price PnL of a leg without its opposite (after a liquidation); <i>liquidation</i> = fees of "
            "liquidations. The stacked bars show them at up to 120 dates (fewer, down to 24, when the run has "
            "many portfolios; gains above zero, costs below); "
            "the black line, their sum, is the equity − the initial capital.",
            "<b>Margin ratio</b> = maintenance margin / margin balance at the bar close, the highest of the "
            "portfolio's symbols (1 = liquidation); <b>distance to liquidation</b> = the adverse mark move, "
            "as a fraction, that would reach it, the smallest of its symbols. Empty while flat.",
        ]
    if data.round_trips is not None:
        items.append(
            "<b>Round trips.</b> A trip is one symbol's position of one side (carry = long spot, short perp; "
            "reverse carry = short spot, long perp) from the bar of its entry fill to the bar of its exit fill "
            "(<i>exit</i>), to the run's last bar close (<i>end</i>, still open) or to a switch of side "
            "without going flat (<i>flip</i>; the switch's bar belongs to the next trip). A leg left alone by "
            "a liquidation stays in its trip until it is closed. Times are bar opens, UTC; hours held = exit − "
            "entry; entry notional = the spot coins held × their entry fill price (quote; the perp's when "
            "there is no spot leg). Each component of a trip (quote) is the change of the symbol's cumulative "
            "component from the bar before the entry to the exit bar, so the components sum to the trip's "
            f"total, and the trips plus the flat bars sum to the run's components. The first {_trips_listed(data):,} "
            "trips of a portfolio by entry time are listed (every trip is in trades.parquet); click a header "
            "to sort."
        )
    if data.monthly is not None or data.yearly is not None:
        items.append(
            "<b>Monthly and yearly.</b> Calendar periods in UTC (a bar counts to the period of its open; the "
            "first and last periods cover only the run's bars in them). Return = equity at the period's last "
            "bar close / equity at the period's start − 1 (a fraction, not annualized; the start is the "
            "previous period's end, the initial capital for the first); the components are the PnL booked in "
            "the period (quote), summing to the equity change (Total)."
        )
    if data.benchmarks is not None:
        items.append(
            "<b>Benchmarks</b> (per symbol, over its tradable span in the run, the run's capital per "
            "portfolio, no fees): <i>spot buy-and-hold</i> buys the capital's worth of spot at the open of the "
            "first bar and sells at the close of the last (return, fraction; PnL, quote); <i>hedge funding</i> "
            "is the funding a short perp of q = capital / first open coins, hedged by q spot coins and held "
            "throughout without rebalancing, margin or liquidation, would have received: q × Σ mark × rate "
            "over the settlements (quote; as a fraction of the capital, and per 365-day year, simple)."
        )
    return (
        "<h2 id='how-to-read'>How to read this</h2><ul class='how'>" + "".join(f"<li>{i}</li>" for i in items) + "</ul>"
    )


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px} h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:1.05em;margin-top:20px}
.meta{color:#555;font-size:.9em} .notes{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px;font-size:.9em}
table.metrics{border-collapse:collapse;font-size:.82em;display:block;overflow-x:auto;max-width:100%}
table.metrics th,table.metrics td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
table.metrics thead th{background:#f5f5f5;position:sticky;top:0} table.metrics tbody th{text-align:left}
table.data{max-height:520px;overflow-y:auto} table.data thead th{cursor:pointer}
table.data td:nth-child(-n+5){text-align:left} td.neg{color:#b00020}
.pick select{font-size:1em;max-width:100%} .count,.defs{color:#555;font-size:.9em} ul.how{font-size:.9em;line-height:1.45}
.figure{margin:12px 0} footer{margin-top:32px;color:#777;font-size:.8em}
"""


def _benchmark_section(frame: pd.DataFrame) -> str:
    shown = frame.copy()
    for c in ("from", "to"):
        if c in shown:
            shown[c] = [t.strftime("%Y-%m-%d %H:%M") if isinstance(t, pd.Timestamp) else "–" for t in shown[c]]
    labels = {
        "from": "from (UTC)",
        "to": "to (UTC)",
        "spot_return": "spot buy-and-hold return",
        "spot_pnl": "spot buy-and-hold PnL",
        "hedge_funding_pnl": "hedge funding PnL",
        "hedge_funding_return": "hedge funding (fraction of capital)",
        "hedge_funding_annualized": "hedge funding, annualized",
    }
    percent = ("spot_return", "hedge_funding_return", "hedge_funding_annualized")
    return (
        "<h2 id='benchmarks'>Benchmarks</h2>"
        + metrics_table(shown, table_id="benchmarks", percent=percent, first="symbol", labels=labels)
        + "<p class='defs'><b>Spot buy-and-hold</b>: the run's capital in spot from the open of the symbol's first "
        "tradable bar to the close of its last, no fees (PnL in quote). <b>Hedge funding</b>: the funding a 1x "
        "hedge of the capital (short perp of capital / first open coins, long as many spot coins) held throughout "
        "would have received, without fees, margin or liquidation: Σ coins × mark × rate over the settlements "
        "(quote; fraction of the capital; per 365-day year, simple). The spot and perp price moves of that hedge "
        "(its basis) are not counted.</p>"
    )


def _fig_div(fig, name: str, with_plotly: bool) -> str:
    import plotly.io as pio

    div = pio.to_html(
        fig,
        include_plotlyjs=True if with_plotly else False,
        full_html=False,
        div_id=f"fig-{_slug(name)}",
        config={"displaylogo": False, "responsive": True},
    )
    return f"<div class='figure' data-figure='{html.escape(name)}'>{div}</div>"


def render_report(data: ReportData, max_points: int = 4000) -> str:
    """Render ``data`` as one self-contained HTML document (plotly.js inline, no CDN).

    The figures over all portfolios come first; then, when ``data.components`` has
    portfolios, one component chart, one margin chart and the round-trip, monthly and yearly
    tables of the portfolio chosen in a select (the first one first), with every portfolio's
    data embedded once as JSON; then the benchmarks and how each figure is computed."""
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{html.escape(data.title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(data.title)}</h1>",
    ]
    if data.meta:
        parts.append(
            "<p class='meta'>"
            + " · ".join(f"<b>{html.escape(str(k))}</b>: {html.escape(str(v))}" for k, v in data.meta.items())
            + "</p>"
        )
    parts.append("<p class='meta'><a href='#how-to-read'>How to read this report</a> (units, definitions)</p>")
    if data.notes:
        parts.append(
            "<div class='notes'><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in data.notes) + "</ul></div>"
        )
    metrics = data.metrics
    if data.ranking_by and data.ranking_by in metrics.columns:
        metrics = metrics.sort_values(data.ranking_by, ascending=False)
        parts.append(f"<h2>Ranking (by {html.escape(key_label(data.ranking_by))})</h2>")
        parts.append(metrics_table(metrics))
    elif len(metrics.columns):  # (a report of tables only, e.g. a venue scan, has none)
        parts.append("<h2>Metrics</h2>")
        parts.append(metrics_table(metrics))
    for i, (title, table) in enumerate(data.tables):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(metrics_table(table, table_id=f"table-{i}", first=str(table.index.name or "run")))
    if data.benchmarks is not None and len(data.benchmarks):
        parts.append(_benchmark_section(data.benchmarks))
    parts.append("<h2>Charts</h2>")
    first = True
    for name, fig in _figures(data, max_points):
        parts.append(_fig_div(fig, name, first))
        first = False
    detail = bool(data.components)
    script = ""
    if detail:
        figs, section, payload = _detail(data, max_points)
        for piece in section:
            if piece == "@FIGURES@":
                for name, fig in figs:
                    parts.append(_fig_div(fig, name, first))
                    first = False
            else:
                parts.append(piece)
        script = f"<script type='application/json' id='detail-data'>{payload}</script><script>{DETAIL_JS}</script>"
    parts.append(_how_to_read(data, detail))
    parts.append(
        "<footer>Generated by carry. PnL in quote currency; returns as fractions; "
        "annualized on a 365-day year. Charts are thinned for display; the Parquet files hold every bar."
        f"</footer>{script}</body></html>"
    )
    return "\n".join(parts)


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s).strip("-").lower()

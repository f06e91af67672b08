"""Self-contained HTML reports: Plotly figures embedded inline, a metrics table, notes.

The report layer takes plain pandas objects (see :class:`ReportData`) and returns one HTML
string that works offline: plotly.js is embedded once, no CDN, no external fonts. Long series
are thinned for the browser (at most ``max_points`` per trace, keeping each stride's extremes
so drawdowns and spikes survive); the Parquet files beside the report hold the full data.
"""

from __future__ import annotations

import html
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
        Label -> bars x component, cumulative PnL in quote currency (stacked in the report).
    funding_annualized : DataFrame or None
        Bars x symbols, trailing annualized funding rate (fraction per 365-day year) at settlements.
    basis : DataFrame or None
        Bars x symbols, perp/spot - 1 (fraction).
    trades : DataFrame or None
        Rows with ``time``, ``symbol``, ``action`` (``entry``/``exit``/``liquidation``) to mark.
    margin_ratio, liquidation_distance : DataFrame or None
        Bars x labels: maintenance margin / margin balance, and the fractional mark move to
        liquidation.
    heatmaps : list of (title, DataFrame)
        Parameter heatmaps (rows x columns of parameter values, cell = metric).
    notes : list of str
        Warnings and facts to show at the top (data fills, same-bar execution, ...).
    meta : dict
        Key facts (config hash, data coverage) shown in the header.
    """

    title: str
    metrics: pd.DataFrame
    equity: pd.DataFrame
    components: dict[str, pd.DataFrame] = field(default_factory=dict)
    funding_annualized: pd.DataFrame | None = None
    basis: pd.DataFrame | None = None
    trades: pd.DataFrame | None = None
    margin_ratio: pd.DataFrame | None = None
    liquidation_distance: pd.DataFrame | None = None
    heatmaps: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    ranking_by: str | None = None
    tables: list[tuple[str, pd.DataFrame]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    equity_title: str = "Equity (quote)"
    drawdown: bool = True


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
    for j in range(values.shape[1]):
        col = values[:, j]
        if np.isnan(col).all():
            continue
        filled = np.where(np.isnan(col), np.nanmean(col), col)
        keep[starts + _argreduce(filled, starts, np.argmax)] = True
        keep[starts + _argreduce(filled, starts, np.argmin)] = True
    return frame.iloc[np.flatnonzero(keep)]


def _argreduce(col: np.ndarray, starts: np.ndarray, fn) -> np.ndarray:
    out = np.empty(len(starts), dtype=np.int64)
    bounds = np.append(starts, len(col))
    for k in range(len(starts)):
        out[k] = fn(col[bounds[k] : bounds[k + 1]])
    return out


def _fmt(key: str, value) -> str:
    return html.escape(format_value(str(key), value))


def metrics_table(metrics: pd.DataFrame, table_id: str = "metrics") -> str:
    """The metrics as an HTML table (rows = runs, columns = result keys, display labels)."""
    cols = [c for c in metrics.columns]
    head = "".join(f"<th title='{html.escape(str(c))}'>{html.escape(key_label(str(c)))}</th>" for c in cols)
    rows = []
    for name, row in metrics.iterrows():
        cells = "".join(f"<td>{_fmt(c, row[c])}</td>" for c in cols)
        rows.append(f"<tr><th scope='row'>{html.escape(str(name))}</th>{cells}</tr>")
    return (
        f"<table id='{table_id}' class='metrics'><thead><tr><th>run</th>{head}</tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _figures(data: ReportData, max_points: int) -> list[tuple[str, object]]:
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figs: list[tuple[str, object]] = []
    layout = dict(
        template="plotly_white",
        height=420,
        margin=dict(l=60, r=20, t=50, b=40),
        legend=dict(orientation="h", y=-0.15),
        hovermode="x unified",
    )

    eq = thin(data.equity, max_points)
    fig = go.Figure([go.Scatter(x=eq.index, y=eq[c], name=str(c), mode="lines") for c in eq.columns])
    fig.update_layout(title=data.equity_title, **layout)
    figs.append(("equity", fig))

    if data.drawdown:
        dd = data.equity / data.equity.cummax() - 1.0
        dd = thin(dd, max_points)
        fig = go.Figure(
            [go.Scatter(x=dd.index, y=dd[c], name=str(c), mode="lines", fill="tozeroy") for c in dd.columns]
        )
        fig.update_layout(title="Drawdown", yaxis_tickformat=".1%", **layout)
        figs.append(("drawdown", fig))

    for label, comp in data.components.items():
        # cumulative components stacked as bars at up to 120 dates: gains stack above zero,
        # costs below (barmode "relative"), and the black line is their sum, the equity change
        rows = np.unique(np.linspace(0, len(comp) - 1, min(len(comp), 120)).astype(int))
        sampled = comp.iloc[rows]
        fig = go.Figure()
        for c in sampled.columns:
            fig.add_trace(go.Bar(x=sampled.index, y=sampled[c], name=c, marker_color=COMPONENT_COLORS.get(c)))
        total = thin(comp.sum(axis=1).to_frame("total"), max_points)["total"]
        fig.add_trace(go.Scatter(x=total.index, y=total, name="total", mode="lines", line=dict(color="black", width=2)))
        fig.update_layout(title=f"Cumulative PnL by component (quote): {label}", barmode="relative", bargap=0, **layout)
        figs.append((f"components-{label}", fig))

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
                fig.add_trace(go.Scatter(x=s.index, y=s, name=f"{c} funding", mode="lines"), row=1, col=1)
        if data.basis is not None:
            b = thin(data.basis, max_points)
            for c in b.columns:
                fig.add_trace(go.Scatter(x=b.index, y=b[c], name=f"{c} basis", mode="lines"), row=2, col=1)
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
                t = t.iloc[:: max(1, len(t) // 500)]
                y = [_value_at(data.funding_annualized[s].ffill(), tm) for s, tm in zip(t["symbol"], t["time"])]
                fig.add_trace(
                    go.Scatter(
                        x=t["time"],
                        y=y,
                        mode="markers",
                        name=action,
                        marker=dict(symbol=symbol_shape, size=9, color=color),
                    ),
                    row=1,
                    col=1,
                )
        fig.update_layout(title="Funding and basis, with entries and exits", **{**layout, "height": 560})
        fig.update_yaxes(tickformat=".1%", row=1, col=1)
        fig.update_yaxes(tickformat=".2%", row=2, col=1)
        figs.append(("funding-basis", fig))

    if data.margin_ratio is not None or data.liquidation_distance is not None:
        fig = make_subplots(
            rows=2,
            cols=1,
            shared_xaxes=True,
            vertical_spacing=0.08,
            subplot_titles=(
                "Margin ratio (maintenance / margin balance; 1 = liquidation)",
                "Distance to liquidation (mark move, fraction)",
            ),
        )
        for row, frame in ((1, data.margin_ratio), (2, data.liquidation_distance)):
            if frame is None:
                continue
            f = thin(frame, max_points)
            for c in f.columns:
                fig.add_trace(
                    go.Scatter(x=f.index, y=f[c], name=f"{c}", mode="lines", showlegend=row == 1), row=row, col=1
                )
        fig.update_layout(title="Margin", **{**layout, "height": 560})
        fig.update_yaxes(tickformat=".0%", row=2, col=1)
        figs.append(("margin", fig))

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
    return figs


def _value_at(series: pd.Series, when) -> float:
    pos = series.index.searchsorted(when, side="right") - 1
    return float(series.iloc[pos]) if pos >= 0 else float("nan")


CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px} h2{font-size:1.2em;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
.meta{color:#555;font-size:.9em} .notes{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px;font-size:.9em}
table.metrics{border-collapse:collapse;font-size:.82em;display:block;overflow-x:auto;max-width:100%}
table.metrics th,table.metrics td{padding:4px 8px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
table.metrics thead th{background:#f5f5f5;position:sticky;top:0} table.metrics tbody th{text-align:left}
.figure{margin:12px 0} footer{margin-top:32px;color:#777;font-size:.8em}
"""


def render_report(data: ReportData, max_points: int = 4000) -> str:
    """Render ``data`` as one self-contained HTML document (plotly.js inline, no CDN)."""
    import plotly.io as pio

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
    if data.notes:
        parts.append(
            "<div class='notes'><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in data.notes) + "</ul></div>"
        )
    metrics = data.metrics
    if data.ranking_by and data.ranking_by in metrics.columns:
        metrics = metrics.sort_values(data.ranking_by, ascending=False)
        parts.append(f"<h2>Ranking (by {html.escape(key_label(data.ranking_by))})</h2>")
    else:
        parts.append("<h2>Metrics</h2>")
    parts.append(metrics_table(metrics))
    for i, (title, table) in enumerate(data.tables):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        parts.append(metrics_table(table, table_id=f"table-{i}"))
    parts.append("<h2>Charts</h2>")
    first = True
    for name, fig in _figures(data, max_points):
        div = pio.to_html(
            fig,
            include_plotlyjs=True if first else False,
            full_html=False,
            div_id=f"fig-{_slug(name)}",
            config={"displaylogo": False, "responsive": True},
        )
        parts.append(f"<div class='figure' data-figure='{html.escape(name)}'>{div}</div>")
        first = False
    parts.append(
        "<footer>Generated by carry. PnL in quote currency; returns as fractions; "
        "annualized on a 365-day year. Charts are thinned for display; the Parquet files hold every bar."
        "</footer></body></html>"
    )
    return "\n".join(parts)


def _slug(s: str) -> str:
    return "".join(ch if ch.isalnum() else "-" for ch in s).strip("-").lower()

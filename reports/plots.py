"""Figures of one result from Python, and its notebook display.

:meth:`backtest.result.BacktestResult.plot` and ``BacktestResult._repr_html_`` call
:func:`plot` and :func:`summary_html` here (the engine names this module and imports it only
when asked, as pandas does with its plotting backend; ``import backtest`` never loads plotly).

Kinds of :func:`plot` (every figure a :class:`plotly.graph_objects.Figure`, money in quote):

``equity``
    Each portfolio's equity from its wallets (spot + futures), one line per portfolio.
``components``
    One portfolio's cumulative PnL by component (stacked bars at evenly spaced bars) and its
    total: the accounting identity drawn (their sum is equity minus initial capital).
``margin``
    One portfolio's margin ratio (maintenance / margin balance, highest over its symbols; 1 =
    liquidation) and distance to liquidation (adverse mark move, fraction; smallest over them).
``funding_basis``
    Cumulative funding PnL against cumulative basis PnL (spot leg + perp leg price PnL) per
    portfolio: what the carry earned and what the basis moves gave back.

Portfolios are named by the labels of the run's reports (``strategy[param=value]``); pass
``portfolio=`` a label or a group id where one portfolio is drawn.
"""

from __future__ import annotations

import html

import numpy as np
import pandas as pd

from data.errors import ConfigError, did_you_mean
from reports.frames import portfolio_labels, portfolio_summary
from reports.html import COMPONENT_COLORS, LAYOUT, margin_figure, metrics_table, thin
from reports.report_data import component_samples, margin_frames, portfolio_members

KINDS = ("equity", "components", "margin", "funding_basis")
#: Points per line (each line thinned on its own, extremes kept; see :func:`reports.html.thin`).
MAX_POINTS = 4_000
#: Portfolios shown in the notebook table (the best by Sharpe first when there are more).
HTML_ROWS = 30


def _labels(result) -> dict[int, str]:
    return portfolio_labels(result.column_table)


def _need_per_bar(result, output: str, frame: pd.DataFrame) -> None:
    """``frame`` (of ``run_backtest`` output ``output``) must have a row per bar."""
    if len(frame) != len(result.index):
        raise ConfigError(
            f"this plot needs {output!r} per bar; the run kept it for the last bar only: "
            f"run with outputs including {output!r} (or full=True)"
        )


def _one_portfolio(result, portfolio) -> str:
    """The label of the portfolio asked for (a label or a group id; the only one by default)."""
    labels = _labels(result)
    if portfolio is None:
        if len(labels) != 1:
            raise ConfigError(
                f"the result has {len(labels)} portfolios: pass portfolio= one of {list(labels.values())[:20]}"
            )
        return next(iter(labels.values()))
    if isinstance(portfolio, (int, np.integer)) and int(portfolio) in labels:
        return labels[int(portfolio)]
    if portfolio in labels.values():
        return str(portfolio)
    raise ConfigError(
        f"no portfolio {portfolio!r} in the result{did_you_mean(str(portfolio), labels.values())}; "
        f"its portfolios: {list(labels.values())[:20]}"
    )


def _portfolios(result, portfolio) -> list[str]:
    """Labels drawn: all portfolios by default, or the one asked for (or a list of them)."""
    if portfolio is None:
        return list(_labels(result).values())
    if isinstance(portfolio, (list, tuple)):
        return [_one_portfolio(result, p) for p in portfolio]
    return [_one_portfolio(result, portfolio)]


def _by_label(result, frame: pd.DataFrame) -> pd.DataFrame:
    """A time x group frame with the portfolio labels as columns."""
    labels = _labels(result)
    out = frame.copy()
    out.columns = [labels[int(g)] for g in frame.columns]
    return out


def _component_by_portfolio(result, names: tuple[str, ...]) -> pd.DataFrame:
    """Cumulative PnL of ``names`` summed over each portfolio's columns, time x portfolio label."""
    values = sum(result.components[n].to_numpy() for n in names) @ portfolio_members(result)
    return _by_label(result, pd.DataFrame(values, index=result.index, columns=result.group_ids))


def _lines(frame: pd.DataFrame, max_points: int, **kw) -> list:
    import plotly.graph_objects as go

    out = []
    for c in frame.columns:
        s = thin(frame[[c]], max_points)[c]
        out.append(go.Scatter(x=s.index, y=s.to_numpy(), name=str(c), mode="lines", **kw))
    return out


def _equity(result, portfolio, max_points: int):
    import plotly.graph_objects as go

    _need_per_bar(result, "group_equity", result.group_equity)
    frame = _by_label(result, result.group_equity)[_portfolios(result, portfolio)]
    fig = go.Figure(_lines(frame, max_points))
    fig.update_layout(title="Equity (quote)", yaxis_title="quote", **LAYOUT)
    return fig


def _components(result, portfolio, max_points: int):
    import plotly.graph_objects as go

    _need_per_bar(result, "components", result.components["funding"])
    label = _one_portfolio(result, portfolio)
    bars = component_samples(result, _labels(result), [label])[label]
    total = _component_by_portfolio(result, tuple(result.components))[[label]]
    total = thin(total, max_points)[label]
    fig = go.Figure()
    for c in bars.columns:
        fig.add_trace(go.Bar(x=bars.index, y=bars[c].to_numpy(), name=c, marker_color=COMPONENT_COLORS.get(c)))
    fig.add_trace(go.Scatter(x=total.index, y=total.to_numpy(), name="total", line=dict(color="black", width=2)))
    fig.update_layout(title=f"Cumulative PnL by component (quote): {label}", barmode="relative", bargap=0, **LAYOUT)
    return fig


def _margin(result, portfolio, max_points: int):
    _need_per_bar(result, "margin", result.margin_ratio)
    label = _one_portfolio(result, portfolio)
    ratio, dist = margin_frames(result, _labels(result), [label])
    margin = pd.DataFrame({"ratio": ratio[label], "distance": dist[label]})
    return margin_figure(thin(margin, max_points), f"Margin: {label}")


def _funding_basis(result, portfolio, max_points: int):
    from plotly.subplots import make_subplots

    _need_per_bar(result, "components", result.components["funding"])
    names = _portfolios(result, portfolio)
    funding = _component_by_portfolio(result, ("funding",))[names]
    basis = _component_by_portfolio(result, ("spot_price", "perp_price"))[names]
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.08,
        subplot_titles=("Cumulative funding PnL (quote)", "Cumulative basis PnL: spot + perp legs' price PnL (quote)"),
    )
    for row, frame in ((1, funding), (2, basis)):
        for trace in _lines(frame, max_points, legendgroup="", showlegend=row == 1):
            fig.add_trace(trace, row=row, col=1)
    fig.update_layout(title="Funding earned vs basis moves", **{**LAYOUT, "height": 560})
    return fig


_DRAW = {"equity": _equity, "components": _components, "margin": _margin, "funding_basis": _funding_basis}


def plot(result, kind: str = "equity", *, portfolio=None, max_points: int = MAX_POINTS):
    """A plotly figure of ``result``: ``kind`` one of :data:`KINDS` (see the module docstring).

    ``portfolio``: a label (``strategy[param=value]``) or group id; for ``equity`` and
    ``funding_basis`` also a list (default: every portfolio); for ``components`` and ``margin``
    the one portfolio drawn (default: the only one). ``max_points``: points per line at most."""
    if kind not in _DRAW:
        raise ConfigError(f"unknown plot kind {kind!r}{did_you_mean(kind, KINDS)}; kinds: {', '.join(KINDS)}")
    return _DRAW[kind](result, portfolio, int(max_points))


def summary_html(result) -> str:
    """The notebook display of a result: what was run, and the summary figures per portfolio
    (the report's table: units in the column tooltips), best first by Sharpe."""
    idx = result.index
    head = (
        f"{len(result.group_ids)} portfolio(s), {len(result.column_group)} column(s) over "
        f"{len(result.symbols)} symbol(s); {len(idx):,} bars of {result.bar_hours:g} h"
    )
    if len(idx):
        head += f", {idx[0]:%Y-%m-%d %H:%M} to {idx[-1]:%Y-%m-%d %H:%M} UTC"
    parts = [f"<div class='carry-result'><p><b>BacktestResult</b>: {html.escape(head)}</p>"]
    if result.flags:
        parts.append(f"<p>Flags: {html.escape(', '.join(result.flags))}</p>")
    if len(result.group_equity) == len(idx):
        table = portfolio_summary(result, result.column_table)
        table = table.sort_values("sharpe", ascending=False, kind="stable", na_position="last")
        shown = table.head(HTML_ROWS)
        parts.append(metrics_table(shown, table_id="carry-summary", first="portfolio"))
        if len(table) > len(shown):
            parts.append(f"<p>{len(table) - len(shown)} more portfolio(s): reports.frames.portfolio_summary.</p>")
    else:
        parts.append("<p>Group equity was kept for the last bar only: no summary figures.</p>")
    parts.append("</div>")
    return "".join(parts)

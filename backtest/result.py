"""BacktestResult: the pandas face of one engine run.

All money is quote currency (USDT), quantities are coins (base units), rates fractions.
Component PnLs are cumulative from the start, signed (+ = gain to the account):

``funding``, ``fees``, ``slippage``, ``borrow``, ``spot_price``, ``perp_price``,
``liquidation``; ``basis = spot_price + perp_price``. The accounting identity (README: "Accounting") holds
per portfolio at every bar: ``group_equity - initial_capital = sum of components``.

The result holds the run's outputs and views of them, no statistics: the summary figures
(Sharpe, drawdown, turnover, ...) are :func:`reports.metrics.stats` and
:func:`reports.metrics.stats_frame`.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from data.errors import ConfigError, unknown_name

#: Cumulative PnL components (quote): ``spot_price``/``perp_price`` are the price PnL of each
#: leg's hedged coins (their sum is the basis PnL), ``unhedged`` the price PnL of coins of one
#: leg without a matching opposite leg (after a liquidation, before the re-entry).
COMPONENTS = ("funding", "fees", "slippage", "borrow", "spot_price", "perp_price", "liquidation", "unhedged")
EVENT_KINDS = ("fill", "funding", "borrow", "transfer", "liquidation", "stop", "skip")
LEGS = {0: "spot", 1: "perp"}
#: The module that draws :meth:`BacktestResult.plot` and the notebook display: named here and
#: imported only when asked (pandas' ``plotting.backend`` pattern), so the engine never imports
#: the report layer or plotly; its functions ``plot(result, kind, **kw)`` and ``summary_html(result)``.
PLOT_BACKEND = "reports.plots"
#: Attributes of a :meth:`BacktestResult.from_kernel` result built on first access (pandas
#: wrapping costs milliseconds per run, which matters for many small runs).
_LAZY = (
    "columns",
    "column_table",
    "equity",
    "group_equity",
    "components",
    "spot_qty",
    "perp_qty",
    "margin_ratio",
    "distance_to_liquidation",
)


@dataclass(eq=False)
class BacktestResult:
    """Outputs of :func:`backtest.engine.run_backtest`.

    Attributes
    ----------
    equity : DataFrame (time x column)
        Column equity, quote: the column's initial capital share plus its cumulative PnL.
    group_equity : DataFrame (time x portfolio)
        Portfolio equity from the wallets (spot + futures), quote.
    components : dict of str -> DataFrame (time x column)
        Cumulative PnL per component (keys :data:`COMPONENTS`), quote.
    spot_qty, perp_qty : DataFrame (time x column)
        Positions at each bar close, coins (signed; short negative).
    margin_ratio : DataFrame (time x column)
        Maintenance margin / margin balance at the bar close (fraction; 1 = liquidation;
        NaN when flat). Cross margin: the portfolio's ratio on each column with a position.
    distance_to_liquidation : DataFrame (time x column)
        Adverse fractional mark move (all positions of a wallet together) that brings the
        margin balance to the maintenance margin, within the current bracket; NaN when flat.
    records : ndarray (n, 9)
        Raw event rows (see :attr:`events`).
    flags : tuple of str
        Warnings about the run (``same_bar_execution``).
    full : bool
        True when every output is kept per bar.
    outputs : tuple of str
        The per-bar outputs kept (``run_backtest(outputs=...)``); the others hold one row, the
        last bar's values (margin outputs: NaN).
    state : EngineState
        Where the run stopped: pass it as ``run_backtest(..., resume=state)`` to continue on
        the next bars (see :mod:`backtest.state` and :meth:`chain`).
    kernel : str
        The simulation kernel used (``"soa"``, ``"fast"`` or ``"general"``; see ``run_backtest(kernel=...)``).
    """

    index: pd.DatetimeIndex
    columns: pd.Index
    column_table: pd.DataFrame
    group_ids: np.ndarray
    column_group: np.ndarray
    symbols: tuple
    column_symbol: np.ndarray
    config: Any
    equity: pd.DataFrame
    group_equity: pd.DataFrame
    components: dict
    spot_qty: pd.DataFrame
    perp_qty: pd.DataFrame
    margin_ratio: pd.DataFrame
    distance_to_liquidation: pd.DataFrame
    records: np.ndarray
    flags: tuple = ()
    full: bool = True
    bar_hours: float = 1.0
    column_params: dict | None = field(default=None)
    outputs: tuple | None = None
    _events: pd.DataFrame | None = field(default=None, repr=False)
    state: Any = field(default=None, repr=False)
    kernel: str | None = None
    #: Wall time of the simulation kernel's calls in this run, seconds, with their compilation
    #: on a first call without the on-disk cache (the rest of ``run_backtest``'s time: input
    #: checks, output allocation, wrapping; None: not measured, as for a chain of runs).
    kernel_seconds: float | None = None
    #: (T, N) int64: the instant (ms) of the last funding settlement summed into each bar (the
    #: market's ``funding_time_ms``; None: stamp funding events at the bar's close).
    funding_time_ms: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_kernel(
        cls, market, targets, config, out, *, group_ids, flags, full, bar_hours, column_params=None, outputs=None
    ):
        """Wrap the kernel's arrays; the pandas objects are built on first access (see ``_LAZY``)."""
        equity, group_equity, comps, spot, perp, mr, dl, rec = out
        gidx = np.searchsorted(group_ids, targets.group)
        res = cls(
            index=market.index,
            columns=None,
            column_table=None,
            group_ids=group_ids,
            column_group=gidx,
            symbols=market.symbols,
            column_symbol=targets.column_symbol,
            config=config,
            equity=None,
            group_equity=None,
            components=None,
            spot_qty=None,
            perp_qty=None,
            margin_ratio=None,
            distance_to_liquidation=None,
            records=rec,
            flags=tuple(flags),
            full=full,
            bar_hours=bar_hours,
            column_params=column_params,
            outputs=tuple(outputs) if outputs is not None else None,
            funding_time_ms=getattr(market, "funding_time_ms", None),
        )
        d = res.__dict__
        for name in _LAZY:
            del d[name]
        d["_lazy"] = (targets.columns, market.index, market.n_bars, equity, group_equity, comps, spot, perp, mr, dl)
        return res

    def __getattr__(self, name):
        # only reached when normal lookup fails: the lazily built pandas attributes
        d = self.__dict__
        lazy = d.get("_lazy")
        if lazy is None or name not in _LAZY:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        self._build(lazy)
        return d[name]

    def _build(self, lazy) -> None:
        """Build the pandas attributes from the kernel's arrays (all at once, on first access)."""
        table, index, n_bars, equity, group_equity, comps, spot, perp, mr, dl = lazy
        tab = table.reset_index(drop=True)
        columns = pd.MultiIndex.from_frame(tab) if tab.shape[1] > 1 else pd.Index(tab.iloc[:, 0])
        last = index[-1:]

        def rows(a):  # per-bar outputs have one row per bar; the others only the last bar's
            return index if a.shape[0] == n_bars else last

        def df(a):
            return pd.DataFrame(a, index=rows(a), columns=columns, copy=False)

        d = self.__dict__
        d.update(
            column_table=tab,
            columns=columns,
            equity=df(equity),
            group_equity=pd.DataFrame(
                group_equity, index=rows(group_equity), columns=pd.Index(self.group_ids, name="group"), copy=False
            ),
            components={name: df(comps[k]) for k, name in enumerate(COMPONENTS)},
            spot_qty=df(spot),
            perp_qty=df(perp),
            margin_ratio=df(mr),
            distance_to_liquidation=df(dl),
        )
        del d["_lazy"]

    @classmethod
    def concat(cls, parts: list[BacktestResult]) -> BacktestResult:
        """Side by side: the results of runs over consecutive portfolio (group) chunks of one grid.

        The parts must share the market, config and output settings, and their group ids must
        increase from part to part (as when a :class:`~backtest.targets.Targets` is split by
        group). Portfolios are independent, so the result equals one run over every column.
        """
        first = parts[0]
        if len(parts) == 1:
            return first
        for p in parts[1:]:
            if not p.index.equals(first.index) or p.config != first.config or p.outputs != first.outputs:
                raise ConfigError("BacktestResult.concat needs parts from the same market, config and outputs")
        group_ids = np.concatenate([p.group_ids for p in parts])
        if len(group_ids) > 1 and not (np.diff(group_ids) > 0).all():
            raise ConfigError("BacktestResult.concat needs increasing group ids from part to part")
        tab = pd.concat([p.column_table for p in parts], ignore_index=True)
        columns = pd.MultiIndex.from_frame(tab) if tab.shape[1] > 1 else pd.Index(tab.iloc[:, 0])
        col_off = np.cumsum([0] + [len(p.column_table) for p in parts[:-1]])
        grp_off = np.cumsum([0] + [len(p.group_ids) for p in parts[:-1]])
        records = []
        for p, co, go in zip(parts, col_off, grp_off):
            r = np.array(p.records, copy=True)
            col = r[:, 1]
            r[:, 1] = np.where(col >= 0, col + co, col - go)  # cross transfers carry -1 - group position
            records.append(r)
        rec = np.concatenate(records) if records else first.records
        # chronological, and within a bar by portfolio, as one run writes them (whatever the chunks)
        col_group = np.concatenate([p.column_group + go for p, go in zip(parts, grp_off)])
        c = rec[:, 1].astype(np.int64)
        gpos = np.where(c >= 0, col_group[np.maximum(c, 0)] if len(col_group) else 0, -1 - c)
        rec = rec[np.lexsort((gpos, rec[:, 0]))]

        def side(frames, cols=columns):
            # one array, one pandas block: later ``to_numpy()`` calls are views, not copies
            values = np.hstack([f.to_numpy() for f in frames])
            return pd.DataFrame(values, index=frames[0].index, columns=cols, copy=False)

        return cls(
            index=first.index,
            columns=columns,
            column_table=tab,
            group_ids=group_ids,
            column_group=np.concatenate([p.column_group + go for p, go in zip(parts, grp_off)]),
            symbols=first.symbols,
            column_symbol=np.concatenate([p.column_symbol for p in parts]),
            config=first.config,
            equity=side([p.equity for p in parts]),
            group_equity=side([p.group_equity for p in parts], pd.Index(group_ids, name="group")),
            components={k: side([p.components[k] for p in parts]) for k in first.components},
            spot_qty=side([p.spot_qty for p in parts]),
            perp_qty=side([p.perp_qty for p in parts]),
            margin_ratio=side([p.margin_ratio for p in parts]),
            distance_to_liquidation=side([p.distance_to_liquidation for p in parts]),
            records=rec,
            flags=tuple(dict.fromkeys(f for p in parts for f in p.flags)),
            full=first.full,
            bar_hours=first.bar_hours,
            column_params=first.column_params,
            outputs=first.outputs,
            funding_time_ms=first.funding_time_ms,
        )

    @classmethod
    def chain(cls, parts: list[BacktestResult]) -> BacktestResult:
        """One after the other: the results of runs over consecutive time chunks, each started
        from the previous one's ``state`` (``run_backtest(..., resume=previous.state)``).

        Equals one run over the whole period bit for bit (per-bar outputs stacked, events with
        their bar positions in the joined index). Outputs kept as the last bar only come from
        the last part.
        """
        first = parts[0]
        if len(parts) == 1:
            return first
        for a, b in zip(parts[:-1], parts[1:]):
            if (
                a.state is None
                or b.state is None
                or len(b.index) == 0
                or a.state.next_time != b.index[0]
                or b.state.bars - len(b.index) != a.state.bars
            ):
                raise ConfigError(
                    "BacktestResult.chain needs consecutive runs: each part resumed from the previous "
                    f"part's state (a part ends before {a.state.next_time if a.state else '?'}, the next "
                    f"starts at {b.index[0] if len(b.index) else 'no bar'})"
                )
            if a.config != b.config or a.outputs != b.outputs or not a.columns.equals(b.columns):
                raise ConfigError("BacktestResult.chain needs parts with the same columns, config and outputs")
        index = first.index.append([p.index for p in parts[1:]])
        last = parts[-1]

        kept = set(first.outputs if first.outputs is not None else ())

        def rows(output, frames):  # per-bar outputs stacked; final-row-only outputs: the last part's
            if output not in kept:
                return frames[-1]
            # one array, one pandas block: later ``to_numpy()`` calls are views, not copies
            values = np.vstack([f.to_numpy() for f in frames])
            return pd.DataFrame(values, index=index, columns=frames[0].columns, copy=False)

        offsets = np.cumsum([0] + [len(p.index) for p in parts[:-1]])
        recs = []
        for p, off in zip(parts, offsets):
            r = np.array(p.records, copy=True)
            r[:, 0] += off
            recs.append(r)
        return cls(
            index=index,
            columns=first.columns,
            column_table=first.column_table,
            group_ids=first.group_ids,
            column_group=first.column_group,
            symbols=first.symbols,
            column_symbol=first.column_symbol,
            config=first.config,
            equity=rows("equity", [p.equity for p in parts]),
            group_equity=rows("group_equity", [p.group_equity for p in parts]),
            components={k: rows("components", [p.components[k] for p in parts]) for k in first.components},
            spot_qty=rows("positions", [p.spot_qty for p in parts]),
            perp_qty=rows("positions", [p.perp_qty for p in parts]),
            margin_ratio=rows("margin", [p.margin_ratio for p in parts]),
            distance_to_liquidation=rows("margin", [p.distance_to_liquidation for p in parts]),
            records=np.concatenate(recs),
            flags=tuple(dict.fromkeys(f for p in parts for f in p.flags)),
            full=first.full,
            bar_hours=first.bar_hours,
            column_params=first.column_params,
            outputs=first.outputs,
            state=last.state,
            kernel=last.kernel,
            funding_time_ms=(
                np.concatenate([p.funding_time_ms for p in parts])
                if all(p.funding_time_ms is not None for p in parts)
                else None
            ),
        )

    # ---------------------------------------------------------------- views
    def pnl(self, component: str) -> pd.DataFrame:
        """Cumulative PnL of one component (or ``"basis"``), time x column, quote."""
        if component == "basis":
            return self.components["spot_price"] + self.components["perp_price"]
        if component not in self.components:
            raise unknown_name("component", component, [*COMPONENTS, "basis"])
        return self.components[component]

    def pnl_per_bar(self, component: str) -> pd.DataFrame:
        """Per-bar increments of :meth:`pnl`, quote."""
        cum = self.pnl(component)
        return cum.diff().fillna(cum.iloc[:1])

    @property
    def events(self) -> pd.DataFrame:
        """Events: time, bar, column, group, symbol, kind, leg, qty, price, rate, cash, fee.

        ``time`` (UTC) is when the event happened: for ``funding``, the settlement instant (the
        last one summed into the bar, e.g. 08:00:00 for the hourly bar opening at 07:00; from
        the market's ``funding_time_ms``, else the bar's close); for every other kind, the bar's
        open, when the engine acts. ``bar`` (UTC) is the open of the bar the event belongs to
        (the row of the per-bar outputs; ``time == bar`` except for funding).
        ``kind`` is one of fill, funding, borrow, transfer, liquidation, stop, skip; ``leg``
        spot, perp or None; ``qty`` signed coins (fills: traded; funding: perp held; borrow:
        spot held; liquidation: closed; skip: the spot coins of the order not sent);
        ``price`` quote/coin (fill price; funding: mark at settlement; liquidation price; skip:
        the reference price); ``rate`` fraction (funding rate per interval, borrow rate per
        hour; liquidation: the insurance fund's cover, quote); ``cash`` signed quote to the
        account's wallet (spot fills: -qty*price - fee; perp fills and liquidations: realised
        PnL - fee + cover; spot liquidations: -|qty|*price - fee + cover; transfers: quote
        moved into the futures wallet; stop: the portfolio's equity); ``fee`` quote (clearance
        fee of a perp liquidation, liquidation fee of a borrowed leg's). ``stop`` marks a
        portfolio whose equity reached zero (it closes its legs and stops trading); ``skip`` an
        order below the pair's minimum (``markets_path``). Cross-margin transfers and stops
        have ``column`` -1 (the ``group`` column says which portfolio).
        """
        if self._events is None:
            r = self.records
            col = r[:, 1].astype(np.int64)
            bar = r[:, 0].astype(np.int64)
            kind = r[:, 2].astype(np.int64)
            is_col = col >= 0
            safe = np.where(is_col, col, 0)
            group = np.where(
                is_col,
                self.group_ids[self.column_group[safe]] if len(safe) else safe,
                self.group_ids[np.clip(-1 - col, 0, len(self.group_ids) - 1)] if len(col) else col,
            )
            sym = np.array(self.symbols, dtype=object)[self.column_symbol[safe]] if len(safe) else np.array([], object)
            leg = pd.Series(r[:, 3].astype(np.int64)).map(LEGS).astype(object)
            opens = self.index[bar]
            # funding: the settlement instant, from the market's funding_time_ms (T, N, ms; the
            # result's copy of it, when it carries one), else the bar's close
            funding = np.flatnonzero((kind == EVENT_KINDS.index("funding")) & is_col)
            times = opens.tz_convert(None).to_numpy().copy()  # datetime64, UTC
            close = times[funding] + np.timedelta64(round(self.bar_hours * 3_600_000), "ms")
            settled = getattr(self, "funding_time_ms", None)
            if settled is not None and len(funding):
                ms = np.asarray(settled)[bar[funding], self.column_symbol[col[funding]]]
                known = ms != np.iinfo(np.int64).min
                close[known] = ms[known].astype("datetime64[ms]")
            times[funding] = close
            time = pd.DatetimeIndex(times).tz_localize("UTC")
            ev = pd.DataFrame(
                {
                    "time": time,
                    "bar": opens,
                    "column": np.where(is_col, col, -1),
                    "group": group,
                    "symbol": np.where(is_col, sym, np.array(None, dtype=object)),
                    "kind": np.array(EVENT_KINDS, dtype=object)[kind] if len(r) else [],
                    "leg": leg.where(leg.notna(), None),
                    "qty": r[:, 4],
                    "price": r[:, 5],
                    "rate": r[:, 6],
                    "cash": r[:, 7],
                    "fee": r[:, 8],
                }
            )
            self._events = ev
        return self._events

    def group_columns(self, group) -> np.ndarray:
        """Column positions of one portfolio."""
        g = int(np.searchsorted(self.group_ids, group))
        return np.flatnonzero(self.column_group == g)

    def plot(self, kind: str = "equity", **kwargs):
        """A plotly figure of this result: ``kind`` one of ``"equity"``, ``"components"``,
        ``"margin"``, ``"funding_basis"``; ``portfolio=`` a label or group id (see
        :func:`reports.plots.plot`, drawn by the :data:`PLOT_BACKEND` module)."""
        return importlib.import_module(PLOT_BACKEND).plot(self, kind, **kwargs)

    def _repr_html_(self) -> str:
        """Notebook display: what was run and the summary figures per portfolio."""
        return importlib.import_module(PLOT_BACKEND).summary_html(self)

    def __repr__(self) -> str:
        idx = self.index
        span = f", {idx[0]:%Y-%m-%d %H:%M} to {idx[-1]:%Y-%m-%d %H:%M}" if len(idx) else ""
        flags = f", flags {list(self.flags)}" if self.flags else ""
        return (
            f"BacktestResult({len(self.group_ids)} portfolios, {len(self.column_group)} columns, "
            f"{len(idx):,} bars of {self.bar_hours:g} h{span}, kernel {self.kernel}{flags})"
        )

    @property
    def returns(self) -> pd.DataFrame:
        """Simple returns per bar of each portfolio's equity (fraction), time x portfolio: a plain
        view (the first bar's against the initial capital); statistics are in :mod:`reports.metrics`."""
        eq = self.group_equity
        prev = eq.shift(1)
        prev.iloc[0] = self.config.initial_capital_quote
        return eq / prev - 1.0

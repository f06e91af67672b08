"""The application layer behind the CLI: run configs, strategy runs, summaries, outputs.

This module glues the layers together (data -> strategies -> engine -> reports) and is the
only part of ``backtest`` that imports ``strategies``. Everything a command prints is
computed here from objects that are also written to the output directory, so a run can be
reproduced from its files.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from backtest.config import BacktestConfig
from backtest.targets import Targets
from data.errors import ConfigError, check_known_keys
from data.market import Market

#: Per-column figures written to summary.json, in order (units in the README).
SUMMARY_KEYS = (
    "initial_capital",
    "final_equity",
    "total_return",
    "annualized_return",
    "sharpe",
    "sortino",
    "max_drawdown",
    "calmar",
    "funding_pnl",
    "fee_pnl",
    "slippage_pnl",
    "borrow_pnl",
    "spot_pnl",
    "perp_pnl",
    "basis_pnl",
    "liquidation_pnl",
    "n_liquidations",
    "n_trades",
    "turnover",
    "time_in_market",
    "worst_margin_ratio",
)
#: Per-bar component columns of components.parquet (named as in summary.json) and the result keys.
COMPONENT_KEYS = {
    "funding_pnl": "funding",
    "fee_pnl": "fees",
    "slippage_pnl": "slippage",
    "borrow_pnl": "borrow",
    "spot_pnl": "spot_price",
    "perp_pnl": "perp_price",
    "liquidation_pnl": "liquidation",
}


# --------------------------------------------------------------------------- run config
@dataclass(frozen=True)
class DataSpec:
    """Which data a run reads (the ``[data]`` table of a run config)."""

    catalog: str = "data/catalog"
    symbols: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None
    freq: str = "1h"
    venue: str = "binance"
    gaps: str = "ffill"


@dataclass(frozen=True)
class StrategySpec:
    """One strategy and its parameters (scalars, or lists for a grid)."""

    name: str
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class RunConfig:
    """Everything a command needs: data, engine settings, strategies, walk-forward."""

    data: DataSpec
    engine: BacktestConfig
    strategies: tuple[StrategySpec, ...]
    walk_forward: str | None = None

    def to_dict(self) -> dict:
        return {
            "data": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.data.__dict__.items()},
            "engine": self.engine.to_dict(),
            "strategies": [{"name": s.name, "params": s.params} for s in self.strategies],
            "walk_forward": self.walk_forward,
        }


_TOP_KEYS = ("data", "engine", "strategy", "compare", "sweep")
_DATA_KEYS = tuple(DataSpec.__dataclass_fields__)


def read_run_toml(path: str | Path) -> dict:
    """Read and shape-check a run config file (see the README for its tables)."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    check_known_keys(raw, _TOP_KEYS, f"{path}")
    check_known_keys(raw.get("data", {}), _DATA_KEYS, f"{path} [data]")
    check_known_keys(raw.get("strategy", {}), ("name", "params"), f"{path} [strategy]")
    check_known_keys(raw.get("compare", {}), ("strategies", "params"), f"{path} [compare]")
    check_known_keys(raw.get("sweep", {}), ("grid", "walk_forward"), f"{path} [sweep]")
    BacktestConfig.from_dict(raw.get("engine", {}))  # unknown keys and bad units fail here
    return raw


def build_run_config(
    toml: dict | None = None,
    *,
    data_overrides: dict | None = None,
    engine_overrides: dict | None = None,
    strategies: list[StrategySpec] | None = None,
    walk_forward: str | None = None,
) -> RunConfig:
    """Merge a run config file with command-line overrides (flags win)."""
    toml = toml or {}
    data = dict(toml.get("data", {}))
    data.update({k: v for k, v in (data_overrides or {}).items() if v is not None})
    if isinstance(data.get("symbols"), str):
        data["symbols"] = [s.strip().upper() for s in data["symbols"].split(",") if s.strip()]
    data["symbols"] = tuple(data.get("symbols", ()))
    if not data["symbols"]:
        raise ConfigError("no symbols: pass --symbols BTCUSDT,ETHUSDT or set symbols in the [data] table")
    for k in ("start", "end"):
        if data.get(k) is not None:
            data[k] = str(data[k])
    engine = dict(toml.get("engine", {}))
    engine.update({k: v for k, v in (engine_overrides or {}).items() if v is not None})
    engine_cfg = BacktestConfig.from_dict(engine)
    if strategies is None:
        strategies = []
        if "strategy" in toml:
            strategies.append(StrategySpec(toml["strategy"]["name"], dict(toml["strategy"].get("params", {}))))
        for name in toml.get("compare", {}).get("strategies", []):
            strategies.append(StrategySpec(name, dict(toml.get("compare", {}).get("params", {}).get(name, {}))))
    if not strategies:
        raise ConfigError("no strategy: pass --strategy NAME or set [strategy] name in the config")
    wf = walk_forward or toml.get("sweep", {}).get("walk_forward")
    return RunConfig(DataSpec(**data), engine_cfg, tuple(strategies), wf)


def run_hash(cfg: RunConfig) -> str:
    """Stable id of a run: sha256 of its canonical JSON, first 12 hex chars."""
    import hashlib

    text = json.dumps(cfg.to_dict(), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


# --------------------------------------------------------------------------- running
def load_run_market(cfg: RunConfig) -> Market:
    """The market of a run, with catalog problems reported as one clear error."""
    import warnings

    from data.loader import DataWarning, load_market

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)  # recorded in market.notes and the report
        market = load_market(
            cfg.data.catalog,
            list(cfg.data.symbols),
            start=cfg.data.start,
            end=cfg.data.end,
            freq=cfg.data.freq,
            venue=cfg.data.venue,
            gaps=cfg.data.gaps,
        )
    if market.n_bars < 2 or not market.valid.any():
        raise ConfigError(
            f"no usable bars for {', '.join(cfg.data.symbols)} between {cfg.data.start or 'the start'} and "
            f"{cfg.data.end or 'the end'} in {cfg.data.catalog}"
        )
    return market


def build_targets(market: Market, specs: tuple[StrategySpec, ...] | list[StrategySpec]) -> Targets:
    """Every strategy (and every parameter set of a grid) as separate portfolios, side by side."""
    from strategies import parse_params, run_strategy

    parts = []
    for spec in specs:
        params = spec.params
        if params and all(isinstance(v, str) for v in params.values()):
            params = parse_params(spec.name, params)
        parts.append(run_strategy(spec.name, market, params or None))
    return Targets.concat(parts) if len(parts) > 1 else parts[0]


def portfolio_labels(targets: Targets) -> dict[int, str]:
    """Readable label per portfolio: ``strategy`` or ``strategy[p=v,...]`` when parameters vary."""
    tab = targets.columns
    params = [c for c in tab.columns if c not in ("strategy", "symbol", "group")]
    labels = {}
    for g, rows in tab.groupby("group", sort=True):
        first = rows.iloc[0]
        same = tab[tab["strategy"] == first["strategy"]]
        varying = [p for p in params if p in same and same[p].nunique(dropna=False) > 1 and pd.notna(first[p])]
        inner = ",".join(f"{p}={_fmt_param(first[p])}" for p in varying)
        labels[int(g)] = f"{first['strategy']}[{inner}]" if inner else str(first["strategy"])
    if len(set(labels.values())) != len(labels):  # same strategy twice with the same params
        labels = {g: f"{lab}#{g}" for g, lab in labels.items()}
    return labels


def _fmt_param(v) -> str:
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def column_labels(targets: Targets) -> list[str]:
    groups = portfolio_labels(targets)
    tab = targets.columns
    return [f"{groups[int(g)]}:{s}" for g, s in zip(tab["group"], tab["symbol"])]


# --------------------------------------------------------------------------- figures
def column_stats(result, targets: Targets) -> pd.DataFrame:
    """The :data:`SUMMARY_KEYS` figures for every column (symbol x parameter set).

    A column's capital is its share of the portfolio's initial capital; its returns are its
    equity's bar-to-bar changes. Ratios use vectorbt's returns accessor on a 365-day year.
    """
    import vectorbt as vbt  # noqa: F401  (registers the .vbt accessor)

    eq = result.equity.copy()
    labels = column_labels(targets)
    eq.columns = labels
    comps = {k: result.components[v].to_numpy() for k, v in COMPONENT_KEYS.items()}
    total0 = sum(c[0] for c in comps.values())
    initial = eq.iloc[0].to_numpy() - total0
    prev = eq.shift(1)
    prev.iloc[0] = initial
    with np.errstate(divide="ignore", invalid="ignore"):
        rets = (eq / prev - 1.0).where(prev > 0, 0.0)
    freq = pd.Timedelta(hours=result.bar_hours)
    acc = rets.vbt.returns(freq=freq, year_freq="365 days")
    out = pd.DataFrame(index=pd.Index(labels, name="column"))
    out["initial_capital"] = initial
    out["final_equity"] = eq.iloc[-1].to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        out["total_return"] = np.where(initial > 0, out["final_equity"] / initial - 1.0, np.nan)
    out["annualized_return"] = _series(acc.annualized(), labels)
    out["sharpe"] = _series(acc.sharpe_ratio(), labels)
    out["sortino"] = _series(acc.sortino_ratio(), labels)
    out["max_drawdown"] = _series(acc.max_drawdown(), labels)
    out["calmar"] = _series(acc.calmar_ratio(), labels)
    for k, c in comps.items():
        out[k] = c[-1]
        if k == "perp_pnl":
            out["basis_pnl"] = comps["spot_pnl"][-1] + comps["perp_pnl"][-1]
    ev = result.events
    col = ev["column"].to_numpy()
    kind = ev["kind"].to_numpy()
    fills = kind == "fill"
    n = len(labels)
    out["n_liquidations"] = np.bincount(col[(kind == "liquidation") & (col >= 0)], minlength=n)[:n]
    out["n_trades"] = np.bincount(col[fills & (col >= 0)], minlength=n)[:n]
    notional = np.bincount(
        col[fills & (col >= 0)], weights=(ev["qty"].abs() * ev["price"]).to_numpy()[fills & (col >= 0)], minlength=n
    )[:n]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["turnover"] = np.where(initial > 0, notional / initial, np.nan)
    held = (result.spot_qty.to_numpy() != 0) | (result.perp_qty.to_numpy() != 0)
    out["time_in_market"] = held.mean(axis=0)
    mr = result.margin_ratio.to_numpy()
    with np.errstate(all="ignore"):
        out["worst_margin_ratio"] = np.where(
            np.isnan(mr).all(axis=0), np.nan, np.nanmax(np.where(np.isnan(mr), -np.inf, mr), axis=0)
        )
    out = out[list(SUMMARY_KEYS)]
    return out


def _series(values, labels) -> np.ndarray:
    if isinstance(values, pd.Series):
        return values.reindex(labels).to_numpy(dtype=float)
    return np.full(len(labels), float(values))


def portfolio_stats(result, targets: Targets) -> pd.DataFrame:
    """The :data:`SUMMARY_KEYS` figures for every portfolio (one parameter set of a strategy)."""
    labels = portfolio_labels(targets)
    frame = result.stats_frame()
    frame.index = [labels[int(g)] for g in frame.index]
    frame.index.name = "portfolio"
    return frame[list(SUMMARY_KEYS)]


def coverage(market: Market) -> dict:
    """Data coverage facts for summary.json."""
    return {
        "symbols": list(market.symbols),
        "perp_symbols": list(market.perp_symbols),
        "freq": market.freq,
        "start": str(market.index[0]),
        "end": str(market.index[-1]),
        "bars": market.n_bars,
        "valid_bars": {s: int(market.valid[:, j].sum()) for j, s in enumerate(market.symbols)},
        "filled_bars": {s: int(market.filled[:, j].sum()) for j, s in enumerate(market.symbols)},
        "funding_settlements": {s: int(market.funding_count[:, j].sum()) for j, s in enumerate(market.symbols)},
        "notes": list(market.notes),
    }


def json_ready(obj: Any) -> Any:
    """NaN/inf -> None, NumPy scalars -> Python, recursively."""
    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_ready(v) for v in obj]
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    if isinstance(obj, (pd.Timestamp, pd.Timedelta, np.datetime64)):
        return str(obj)
    return obj


# --------------------------------------------------------------------------- outputs
MAX_LONG_ROWS = 5_000_000  # per-bar components beyond this many rows are written daily


def components_frame(result, targets: Targets, market: Market) -> tuple[pd.DataFrame, str]:
    """Per-bar PnL components in long form (time, column, symbol, portfolio, *_pnl), quote.

    Returns the frame and its granularity (``"bar"``, or ``"day"`` for very large runs).
    """
    labels = column_labels(targets)
    plabels = portfolio_labels(targets)
    per_bar = {k: np.diff(result.components[v].to_numpy(), axis=0, prepend=0.0) for k, v in COMPONENT_KEYS.items()}
    per_bar["basis_pnl"] = per_bar["spot_pnl"] + per_bar["perp_pnl"]
    T, C = per_bar["funding_pnl"].shape
    index = market.index
    granularity = "bar"
    if T * C > MAX_LONG_ROWS:
        granularity = "day"
        days = index.floor("1D")
        uniq, inv = np.unique(days.asi8, return_inverse=True)
        for k, a in per_bar.items():
            out = np.zeros((len(uniq), C))
            np.add.at(out, inv, a)
            per_bar[k] = out
        index = pd.DatetimeIndex(pd.to_datetime(uniq, utc=True))
        T = len(index)
    frame = pd.DataFrame(
        {
            "time": np.repeat(index.to_numpy(), C),
            "column": np.tile(np.arange(C), T),
            "label": np.tile(np.array(labels, dtype=object), T),
            "symbol": np.tile(targets.columns["symbol"].to_numpy(dtype=object), T),
            "portfolio": np.tile(np.array([plabels[int(g)] for g in targets.columns["group"]], dtype=object), T),
        }
    )
    frame["time"] = (
        pd.DatetimeIndex(frame["time"]).tz_localize("UTC")
        if pd.DatetimeIndex(frame["time"]).tz is None
        else frame["time"]
    )
    for k in (*COMPONENT_KEYS, "basis_pnl"):
        frame[k] = per_bar[k].reshape(-1)
    return frame, granularity


def events_frame(result, targets: Targets) -> pd.DataFrame:
    """The engine's events with readable labels: time, column, label, portfolio, symbol, kind, leg, qty, price, rate, cash, fee."""
    ev = result.events.copy()
    labels = np.array(column_labels(targets), dtype=object)
    plabels = portfolio_labels(targets)
    col = ev["column"].to_numpy()
    ev.insert(2, "label", np.where(col >= 0, labels[np.maximum(col, 0)] if len(labels) else None, None))
    ev.insert(3, "portfolio", [plabels.get(int(g)) for g in ev["group"]])
    ev = ev.drop(columns=["group"])
    for c in ("symbol", "kind", "leg", "label", "portfolio"):
        ev[c] = ev[c].astype(object)
    # qty only for fills (signed coins); rate only for funding and borrow (SPEC of events.parquet)
    kind = ev["kind"]
    ev["qty"] = ev["qty"].where(kind.isin(["fill", "liquidation"]))
    ev["rate"] = ev["rate"].where(kind.isin(["funding", "borrow"]))
    return ev


def equity_frame(result, targets: Targets) -> pd.DataFrame:
    """Equity per column and per portfolio (quote), one wide frame indexed by time."""
    col = result.equity.copy()
    col.columns = column_labels(targets)
    plabels = portfolio_labels(targets)
    port = result.group_equity.copy()
    port.columns = [f"portfolio:{plabels[int(g)]}" for g in port.columns]
    out = pd.concat([port, col], axis=1)
    out.index.name = "time"
    return out


def to_toml(data: dict) -> str:
    """A small TOML writer for the effective config (tables of scalars and lists)."""
    lines: list[str] = []

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    def table(prefix: str, d: dict) -> None:
        scalars = {k: v for k, v in d.items() if not isinstance(v, dict) and v is not None}
        nested = {k: v for k, v in d.items() if isinstance(v, dict)}
        if prefix:
            lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {value(v)}")
        lines.append("")
        for k, v in nested.items():
            table(f"{prefix}.{k}" if prefix else k, v)

    table("", data)
    return "\n".join(lines).strip() + "\n"


def effective_toml(cfg: RunConfig) -> str:
    """The run's effective config as a TOML file that ``--config`` reads back."""
    data = cfg.to_dict()
    doc: dict = {"data": {k: v for k, v in data["data"].items() if v is not None}, "engine": data["engine"]}
    specs = cfg.strategies
    if len(specs) == 1:
        doc["strategy"] = {"name": specs[0].name, "params": _plain(specs[0].params)}
    else:
        doc["compare"] = {
            "strategies": [s.name for s in specs],
            "params": {s.name: _plain(s.params) for s in specs if s.params},
        }
    if cfg.walk_forward:
        doc["sweep"] = {"walk_forward": cfg.walk_forward}
    return to_toml(doc)


def _plain(params: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}


# --------------------------------------------------------------------------- report
def funding_annualized_frame(market: Market, window_settlements: int = 21) -> pd.DataFrame:
    """Trailing mean of the annualized funding rate over ``window_settlements`` settlements.

    Bars x symbols, fraction per 365-day year, on settlement bars only (NaN elsewhere): the
    line the report draws (raw settlements are too noisy to read).
    """
    hours = market.funding_interval_hours
    with np.errstate(invalid="ignore", divide="ignore"):
        ann = np.where(
            market.funding_count > 0, market.funding_rate / market.funding_count * (24 * 365 / hours), np.nan
        )
    frame = pd.DataFrame(ann, index=market.index, columns=list(market.symbols))
    return frame.apply(lambda s: s.dropna().rolling(window_settlements, min_periods=1).mean().reindex(s.index))


def trades_table(result, targets: Targets, columns: np.ndarray) -> pd.DataFrame:
    """Entries, exits and liquidations of the given columns (for markers on the funding chart)."""
    rows = []
    spot = result.spot_qty.to_numpy()
    perp = result.perp_qty.to_numpy()
    index = result.index
    symbols = targets.columns["symbol"].to_numpy()
    for c in columns:
        held = (spot[:, c] != 0) | (perp[:, c] != 0)
        change = np.diff(held.astype(np.int8), prepend=0)
        for i in np.flatnonzero(change == 1):
            rows.append((index[i], symbols[c], "entry"))
        for i in np.flatnonzero(change == -1):
            rows.append((index[i], symbols[c], "exit"))
    ev = result.events
    liq = ev[(ev["kind"] == "liquidation") & ev["column"].isin(columns)]
    for t, c in zip(liq["time"], liq["column"]):
        rows.append((t, symbols[int(c)], "liquidation"))
    return pd.DataFrame(rows, columns=["time", "symbol", "action"])


def report_data(
    title: str,
    cfg: RunConfig,
    market: Market,
    targets: Targets,
    result,
    portfolios: pd.DataFrame,
    columns: pd.DataFrame,
    *,
    ranking_by: str | None = None,
    heatmaps: list | None = None,
    extra_tables: list | None = None,
    max_component_charts: int = 4,
):
    """Assemble a :class:`~reports.html.ReportData` from a run."""
    from reports.html import ReportData

    plabels = portfolio_labels(targets)
    equity = result.group_equity.copy()
    equity.columns = [plabels[int(g)] for g in equity.columns]
    order = list(portfolios.sort_values("sharpe", ascending=False).index) if ranking_by else list(portfolios.index)
    label_to_group = {v: k for k, v in plabels.items()}
    shown = order[:max_component_charts]
    components = {}
    for lab in shown:
        cols = result.group_columns(label_to_group[lab])
        comp = pd.DataFrame(
            {
                "funding": result.components["funding"].iloc[:, cols].sum(axis=1),
                "fees": result.components["fees"].iloc[:, cols].sum(axis=1),
                "slippage": result.components["slippage"].iloc[:, cols].sum(axis=1),
                "borrow": result.components["borrow"].iloc[:, cols].sum(axis=1),
                "basis": (
                    result.components["spot_price"].iloc[:, cols].sum(axis=1)
                    + result.components["perp_price"].iloc[:, cols].sum(axis=1)
                ),
                "liquidation": result.components["liquidation"].iloc[:, cols].sum(axis=1),
            }
        )
        components[lab] = comp
    funding_ann = funding_annualized_frame(market)
    basis = pd.DataFrame(market.basis, index=market.index, columns=list(market.symbols))
    best_cols = result.group_columns(label_to_group[order[0]])
    mr, dl = {}, {}
    for lab in order[:max_component_charts]:
        cols = result.group_columns(label_to_group[lab])
        mr[lab] = result.margin_ratio.iloc[:, cols].max(axis=1, skipna=True)
        dl[lab] = result.distance_to_liquidation.iloc[:, cols].min(axis=1, skipna=True)
    notes = list(market.notes) + [f"engine flag: {f}" for f in result.flags]
    if getattr(cfg.engine, "allow_same_bar_execution", False) and cfg.engine.execution_delay_bars == 0:
        notes.insert(0, "SAME-BAR EXECUTION: fills at the close of the bar that produced the signal (look-ahead).")
    meta = {
        "run": run_hash(cfg),
        "engine config": cfg.engine.config_hash(),
        "data": f"{', '.join(market.symbols)} · {market.index[0]:%Y-%m-%d} .. {market.index[-1]:%Y-%m-%d} · {market.freq}",
        "capital": f"{cfg.engine.initial_capital_quote:,.0f} quote per portfolio",
        "leverage": f"{cfg.engine.perp_leverage:g}x {cfg.engine.margin_mode}",
    }
    return ReportData(
        title=title,
        metrics=portfolios,
        equity=equity,
        components=components,
        funding_annualized=funding_ann,
        basis=basis,
        trades=trades_table(result, targets, best_cols),
        margin_ratio=pd.DataFrame(mr),
        liquidation_distance=pd.DataFrame(dl),
        heatmaps=heatmaps or [],
        ranking_by=ranking_by,
        notes=notes,
        meta=meta,
        tables=[("Per column (symbol x parameters)", columns)] + (extra_tables or []),
    )


def write_run(
    out: Path,
    *,
    cfg: RunConfig,
    market: Market,
    targets: Targets,
    result,
    portfolios: pd.DataFrame,
    columns: pd.DataFrame,
    report,
    overwrite: bool = False,
    extra: dict | None = None,
) -> Path:
    """Write summary.json, config.toml, equity/components/events Parquet and report.html, atomically."""
    from reports.html import render_report
    from reports.outputs import write_output_dir

    comps, granularity = components_frame(result, targets, market)
    summary = {
        "carry_version": _version(),
        "run_hash": run_hash(cfg),
        "config_hash": cfg.engine.config_hash(),
        "config": cfg.to_dict(),
        "coverage": coverage(market),
        "flags": list(result.flags),
        "components_granularity": granularity,
        "keys": list(SUMMARY_KEYS),
        "portfolios": [{"portfolio": k, **v} for k, v in portfolios.to_dict(orient="index").items()],
        "columns": [
            {"column": i, "label": lab, "symbol": sym, "portfolio": port, **columns.loc[lab].to_dict()}
            for i, (lab, sym, port) in enumerate(
                zip(
                    columns.index,
                    targets.columns["symbol"],
                    [portfolio_labels(targets)[int(g)] for g in targets.columns["group"]],
                )
            )
        ],
        **(extra or {}),
    }
    text = json.dumps(json_ready(summary), indent=2, allow_nan=False)
    html = render_report(report)
    writers = {
        "summary.json": lambda p: p.write_text(text),
        "config.toml": lambda p: p.write_text(effective_toml(cfg)),
        "equity.parquet": lambda p: equity_frame(result, targets).to_parquet(p),
        "components.parquet": lambda p: comps.to_parquet(p, index=False),
        "events.parquet": lambda p: events_frame(result, targets).to_parquet(p, index=False),
        "report.html": lambda p: p.write_text(html),
    }
    return write_output_dir(out, writers, overwrite=overwrite)


def _version() -> str:
    from backtest import __version__

    return __version__

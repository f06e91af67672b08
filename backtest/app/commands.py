"""The run commands behind ``carry backtest``, ``compare``, ``sweep``, ``scan`` and ``demo``.

Each command: build a :class:`~backtest.app.runs.RunConfig` (config file, then flags), refuse an
existing output directory before any work, load the market, compute, write every output
atomically, print a short table. Library code only; argument parsing lives in ``cli.py``.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from backtest.app import runs as app
from data.errors import ConfigError, did_you_mean
from reports.outputs import check_output_dir

#: Engine settings that have their own flag (all others: ``--set key=value``).
ENGINE_FLAGS = {
    "capital": "initial_capital_quote",
    "leverage": "perp_leverage",
    "margin_mode": "margin_mode",
    "tiers": "tiers_path",
    "mmr": "maintenance_margin_rate",
    "borrow_rate": "borrow_annual_rate",
    "delay": "execution_delay_bars",
    "slippage_bps": "slippage_bps",
    "order_type": "order_type",
}


def parse_set(items: list[str] | None) -> dict:
    """``["key=value", ...]`` engine overrides, values typed from the config field types."""
    from backtest.config import BacktestConfig

    out = {}
    types = {f.name: f.type for f in BacktestConfig.__dataclass_fields__.values()}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        key, raw = (s.strip() for s in item.split("=", 1))
        if key not in types:
            raise ConfigError(f"unknown engine setting {key!r}{did_you_mean(key, types)}")
        tp = str(types[key])
        if raw.lower() in ("none", "null"):
            out[key] = None
        elif "bool" in tp:
            out[key] = raw.lower() in ("1", "true", "yes", "on")
        elif "int" in tp and "float" not in tp:
            out[key] = _number(raw, key, int)
        elif "float" in tp:
            out[key] = _number(raw, key, float)
        else:
            out[key] = raw
    return out


def _number(raw: str, key: str, tp):
    try:
        return tp(raw)
    except ValueError:
        raise ConfigError(f"engine setting {key} expects a number, got {raw!r}") from None


def engine_overrides(args) -> dict:
    out = {field: getattr(args, flag) for flag, field in ENGINE_FLAGS.items() if getattr(args, flag, None) is not None}
    out.update(parse_set(getattr(args, "set", None)))
    return out


def data_overrides(args) -> dict:
    return {
        "catalog": str(args.data) if args.data else None,
        "symbols": args.symbols,
        "start": args.start,
        "end": args.end,
        "freq": args.freq,
    }


def _load_user_strategies(args) -> None:
    for path in getattr(args, "strategy_file", None) or []:
        from strategies import load_strategy_file

        load_strategy_file(path)


def _strategy_spec(name: str, items: list[str]) -> app.StrategySpec:
    from strategies import get_strategy, parse_params

    get_strategy(name)  # did-you-mean for unknown names
    return app.StrategySpec(name, parse_params(name, items) if items else {})


@dataclass
class RunOutcome:
    cfg: app.RunConfig
    market: object
    targets: object
    result: object
    portfolios: pd.DataFrame
    columns: pd.DataFrame


def execute(cfg: app.RunConfig, progress: bool = False) -> RunOutcome:
    """Load, run the strategies, run the engine, compute the figures."""
    steps = ["load market", "strategies", "engine", "figures"]
    bar = _progress(len(steps), progress)
    bar.set_description(steps[0])
    market = app.load_run_market(cfg)
    bar.update(1)
    bar.set_description(steps[1])
    targets = app.build_targets(market, cfg.strategies)
    bar.update(1)
    bar.set_description(steps[2])
    result = run_engine_chunked(market, targets, cfg.engine, progress)
    bar.update(1)
    bar.set_description(steps[3])
    portfolios = app.portfolio_stats(result, targets)
    columns = app.column_stats(result, targets)
    bar.update(1)
    bar.close()
    return RunOutcome(cfg, market, targets, result, portfolios, columns)


#: Portfolios per engine call in CLI runs: a long sweep runs in chunks with a progress bar.
GROUPS_PER_CALL = 16


def run_engine_chunked(market, targets, config, progress: bool = False):
    """:func:`run_backtest` over chunks of whole portfolios, with a progress bar for long grids.

    Portfolios are independent, so the joined result equals one call over every column.
    """
    from backtest.engine import run_backtest
    from backtest.result import BacktestResult
    from backtest.targets import split_by_group

    parts = split_by_group(targets, GROUPS_PER_CALL)
    if len(parts) == 1:
        return run_backtest(market, targets, config)
    bar = _progress(len(parts), progress)
    bar.set_description(f"engine ({len(np.unique(targets.group))} portfolios)")
    results = []
    for part in parts:
        results.append(run_backtest(market, part, config))
        bar.update(1)
    bar.close()
    return BacktestResult.concat(results)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, leave=False)


def print_table(frame: pd.DataFrame, title: str, max_rows: int = 20) -> None:
    """A short terminal table of the main figures (rich)."""
    from rich.console import Console
    from rich.table import Table

    keys = [
        "total_return",
        "annualized_return",
        "sharpe",
        "max_drawdown",
        "funding_pnl",
        "fee_pnl",
        "borrow_pnl",
        "basis_pnl",
        "n_liquidations",
        "time_in_market",
    ]
    table = Table(title=title, show_lines=False)
    table.add_column(frame.index.name or "run", overflow="fold")
    for k in keys:
        table.add_column(k.replace("_pnl", "").replace("_", " "), justify="right")
    for label, row in frame.head(max_rows).iterrows():
        cells = []
        for k in keys:
            v = row[k]
            if v is None or (isinstance(v, float) and not np.isfinite(v)):
                cells.append("–")
            elif k in ("total_return", "annualized_return", "max_drawdown", "time_in_market"):
                cells.append(f"{v:.2%}")
            elif k.endswith("_pnl"):
                cells.append(f"{v:,.0f}")
            elif k == "n_liquidations":
                cells.append(f"{int(v)}")
            else:
                cells.append(f"{v:.2f}")
        table.add_row(str(label), *cells)
    Console(file=sys.stdout, width=max(120, min(200, 40 + 12 * len(keys)))).print(table)
    if len(frame) > max_rows:
        print(f"... and {len(frame) - max_rows} more rows in summary.json")


# --------------------------------------------------------------------------- commands
def cmd_backtest(args) -> int:
    _load_user_strategies(args)
    toml = app.read_run_toml(args.config) if args.config else {}
    specs = [_strategy_spec(args.strategy, args.param or [])] if args.strategy else None
    cfg = app.build_run_config(
        toml, data_overrides=data_overrides(args), engine_overrides=engine_overrides(args), strategies=specs
    )
    check_output_dir(args.out, args.overwrite)
    run = execute(cfg, progress=not args.quiet and sys.stderr.isatty())
    title = f"carry backtest: {', '.join(s.name for s in cfg.strategies)}"
    report = app.report_data(title, cfg, run.market, run.targets, run.result, run.portfolios, run.columns)
    app.write_run(
        args.out,
        cfg=cfg,
        market=run.market,
        targets=run.targets,
        result=run.result,
        portfolios=run.portfolios,
        columns=run.columns,
        report=report,
        overwrite=args.overwrite,
    )
    print_table(run.portfolios, title)
    print(f"wrote {args.out}/ (summary.json, report.html, equity/components/events .parquet, config.toml)")
    return 0


def cmd_compare(args) -> int:
    _load_user_strategies(args)
    toml = app.read_run_toml(args.config) if args.config else {}
    specs = None
    if args.strategies:
        per: dict[str, list[str]] = {}
        for item in args.param or []:
            name, _, rest = item.partition(".")
            if not rest:
                raise ConfigError(f"compare --param expects STRATEGY.NAME=VALUE, got {item!r}")
            per.setdefault(name, []).append(rest)
        names = [s.strip() for s in args.strategies.split(",") if s.strip()]
        unknown = set(per) - set(names)
        if unknown:
            raise ConfigError(f"--param given for strategies not compared: {sorted(unknown)}")
        specs = [_strategy_spec(n, per.get(n, [])) for n in names]
    cfg = app.build_run_config(
        toml, data_overrides=data_overrides(args), engine_overrides=engine_overrides(args), strategies=specs
    )
    check_output_dir(args.out, args.overwrite)
    run = execute(cfg, progress=not args.quiet and sys.stderr.isatty())
    title = f"carry compare: {', '.join(s.name for s in cfg.strategies)}"
    report = app.report_data(
        title, cfg, run.market, run.targets, run.result, run.portfolios, run.columns, ranking_by="sharpe"
    )
    app.write_run(
        args.out,
        cfg=cfg,
        market=run.market,
        targets=run.targets,
        result=run.result,
        portfolios=run.portfolios,
        columns=run.columns,
        report=report,
        overwrite=args.overwrite,
    )
    print_table(run.portfolios.sort_values("sharpe", ascending=False), title)
    print(f"wrote {args.out}/")
    return 0


def cmd_sweep(args) -> int:
    _load_user_strategies(args)
    toml = app.read_run_toml(args.config) if args.config else {}
    name = args.strategy or toml.get("strategy", {}).get("name")
    if not name:
        raise ConfigError("sweep needs --strategy NAME (or [strategy] name in the config)")
    from strategies import parse_params

    fixed = parse_params(name, args.param or []) if args.param else dict(toml.get("strategy", {}).get("params", {}))
    grid = parse_params(name, args.grid or []) if args.grid else dict(toml.get("sweep", {}).get("grid", {}))
    grid = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    if not grid:
        raise ConfigError("sweep needs at least one --grid NAME=V1,V2,... (or a [sweep.grid] table)")
    overlap = set(grid) & set(fixed)
    if overlap:
        raise ConfigError(f"parameters both fixed and swept: {sorted(overlap)}")
    spec = app.StrategySpec(name, {**fixed, **grid})
    cfg = app.build_run_config(
        toml,
        data_overrides=data_overrides(args),
        engine_overrides=engine_overrides(args),
        strategies=[spec],
        walk_forward=args.walk_forward,
    )
    from backtest.app.scale import run_scaled_sweep_command, wants_scale

    if wants_scale(args):
        if cfg.walk_forward:
            raise ConfigError("--walk-forward cannot be combined with the scale-out options")
        return run_scaled_sweep_command(args, cfg)
    check_output_dir(args.out, args.overwrite)
    run = execute(cfg, progress=not args.quiet and sys.stderr.isatty())
    heatmaps = sweep_heatmaps(run.targets, run.portfolios, list(grid), metric=args.rank_by)
    extra_tables, extra = [], {}
    if cfg.walk_forward:
        folds, summary = walk_forward(run, cfg.walk_forward, metric=args.rank_by)
        extra_tables.append(("Walk-forward: in-sample choice vs out-of-sample result", folds))
        extra["walk_forward"] = {
            "spec": cfg.walk_forward,
            "metric": args.rank_by,
            **summary,
            "folds": app.json_ready(folds.reset_index().to_dict(orient="records")),
        }
    title = f"carry sweep: {name} over {', '.join(f'{k} ({len(v)})' for k, v in grid.items())}"
    report = app.report_data(
        title,
        cfg,
        run.market,
        run.targets,
        run.result,
        run.portfolios,
        run.columns,
        ranking_by=args.rank_by,
        heatmaps=heatmaps,
        extra_tables=extra_tables,
    )
    app.write_run(
        args.out,
        cfg=cfg,
        market=run.market,
        targets=run.targets,
        result=run.result,
        portfolios=run.portfolios,
        columns=run.columns,
        report=report,
        overwrite=args.overwrite,
        extra=extra,
    )
    print_table(run.portfolios.sort_values(args.rank_by, ascending=False), title)
    if cfg.walk_forward:
        s = extra["walk_forward"]
        print(
            f"walk-forward ({cfg.walk_forward}, by {args.rank_by}): in-sample {s['in_sample_mean']:.3f}, "
            f"out-of-sample {s['out_of_sample_mean']:.3f} over {s['n_folds']} folds"
        )
    print(f"wrote {args.out}/")
    return 0


def sweep_heatmaps(targets, portfolios: pd.DataFrame, grid_names: list[str], metric: str = "sharpe") -> list:
    """Heatmaps of ``metric`` over the first two swept parameters (best over the others)."""
    tab = targets.columns.drop_duplicates("group").set_index("group")
    labels = app.portfolio_labels(targets)
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


def _parse_window(text: str) -> pd.Timedelta:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([dhwm]|min)\s*", text)
    if not m:
        raise ConfigError(f"bad walk-forward window {text!r}: use e.g. 180d, 12w, 720h")
    unit = {"d": "D", "h": "h", "w": "W", "m": "min", "min": "min"}[m.group(2)]
    try:
        td = pd.Timedelta(float(m.group(1)), unit=unit)
    except ValueError:
        raise ConfigError(f"bad walk-forward window {text!r}: use e.g. 180d, 12w, 720h") from None
    if td <= pd.Timedelta(0):
        raise ConfigError(f"walk-forward window {text!r} must be positive")
    return td


def walk_forward(run: RunOutcome, spec: str, metric: str = "sharpe") -> tuple[pd.DataFrame, dict]:
    """Fit on a window, test on the next, roll: in-sample vs out-of-sample ``metric``.

    ``spec`` is ``TRAIN:TEST`` (e.g. ``180d:60d``). Each fold picks the parameter set with the
    best ``metric`` over the training window of the sweep's equity curves and reports that
    set's ``metric`` over the following test window, next to the in-sample best.
    """
    if ":" not in spec:
        raise ConfigError(f"walk-forward expects TRAIN:TEST windows such as 180d:60d, got {spec!r}")
    train, test = (_parse_window(s) for s in spec.split(":", 1))
    labels = app.portfolio_labels(run.targets)
    eq = run.result.group_equity.copy()
    eq.columns = [labels[int(g)] for g in eq.columns]
    rets = eq.pct_change().fillna(0.0)
    index = eq.index
    bar = pd.Timedelta(hours=run.result.bar_hours)
    folds = []
    start = index[0]
    while start + train + test <= index[-1] + bar:
        tr = (index >= start) & (index < start + train)
        te = (index >= start + train) & (index < start + train + test)
        ins = _window_metric(rets[tr], metric, bar)
        best = ins.idxmax() if ins.notna().any() else None
        if best is not None:
            oos = _window_metric(rets[te], metric, bar)
            folds.append(
                {
                    "train_start": start,
                    "test_start": start + train,
                    "test_end": start + train + test,
                    "chosen": best,
                    "in_sample": float(ins[best]),
                    "out_of_sample": float(oos[best]),
                    "oos_best_possible": float(oos.max()),
                }
            )
        start = start + test
    if not folds:
        raise ConfigError(
            f"walk-forward {spec}: the data ({index[0]:%Y-%m-%d} .. {index[-1]:%Y-%m-%d}) is shorter than one train+test window"
        )
    table = pd.DataFrame(folds).set_index("test_start")
    summary = {
        "n_folds": len(folds),
        "in_sample_mean": float(table["in_sample"].mean()),
        "out_of_sample_mean": float(table["out_of_sample"].mean()),
    }
    return table, summary


def _window_metric(rets: pd.DataFrame, metric: str, bar: pd.Timedelta) -> pd.Series:
    periods = pd.Timedelta(days=365) / bar
    if metric == "sharpe":
        sd = rets.std(ddof=1)
        return (rets.mean() / sd.where(sd > 0)) * np.sqrt(periods)
    if metric in ("total_return", "annualized_return"):
        growth = (1 + rets).prod()
        if metric == "total_return":
            return growth - 1
        return growth ** (periods / max(len(rets), 1)) - 1
    raise ConfigError(f"walk-forward supports --rank-by sharpe, total_return or annualized_return, not {metric!r}")


# --------------------------------------------------------------------------- scan
def scan_targets(market, regimes):
    """One carry and one reverse-carry column per regime: in at its start, out at its end.

    Every column is its own portfolio with the full capital, so each regime is judged on its
    own (a liquidation in one regime does not leak into the next).
    """
    from backtest.targets import Targets

    n = len(regimes)
    values = np.zeros((market.n_bars, 2 * n))
    col_symbol = np.zeros(2 * n, dtype=np.int64)
    rows = []
    for side, sign in ((0, 1.0), (1, -1.0)):
        for k, r in enumerate(regimes):
            c = side * n + k
            values[r.start_bar : r.end_bar, c] = sign
            col_symbol[c] = market.symbols.index(r.symbol)
            rows.append({"strategy": "carry" if side == 0 else "reverse", "symbol": r.symbol, "group": c, "regime": k})
    values[~market.valid[:, col_symbol]] = np.nan  # keep, never trade, on invalid bars
    return Targets(values, col_symbol, np.arange(2 * n), pd.DataFrame(rows))


def regime_earnings(market, result, regimes) -> pd.DataFrame:
    """What a carry and a reverse carry entered at each regime's start and closed at its end earned.

    Returns per regime: funding facts, the spot move, and per side the PnL (quote), the return
    (fraction of the capital) and the funding, borrow and fee parts (quote), entry and exit
    costs included.
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
            "days": (r.end - r.start).total_seconds() / 86400,
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


def cmd_scan(args) -> int:
    from backtest.engine import run_backtest
    from data.catalog import Catalog
    from data.loader import available_symbols
    from reports.regimes import funding_regimes, funding_stats

    toml = app.read_run_toml(args.config) if args.config else {}
    data = data_overrides(args)
    if not (data.get("symbols") or toml.get("data", {}).get("symbols")):
        catalog = data.get("catalog") or toml.get("data", {}).get("catalog") or "data/catalog"
        found = available_symbols(Catalog(catalog))
        if not found:
            raise ConfigError(f"catalog {catalog} has no symbol with both spot and perp data")
        data["symbols"] = found
    cfg = app.build_run_config(
        toml,
        data_overrides=data,
        engine_overrides=engine_overrides(args),
        strategies=[app.StrategySpec("always_carry"), app.StrategySpec("always_reverse")],
    )
    check_output_dir(args.out, args.overwrite)
    market = app.load_run_market(cfg)
    stats = pd.DataFrame([s.as_dict() for s in funding_stats(market)]).set_index("symbol")
    regimes = funding_regimes(market, window_settlements=args.window, min_days=args.min_days)
    if not regimes:
        raise ConfigError("no funding settlements in the selected data: nothing to scan")
    result = run_backtest(market, scan_targets(market, regimes), cfg.engine)
    earnings = regime_earnings(market, result, regimes)
    totals = _scan_totals(market, cfg)
    write_scan(args.out, cfg, market, stats, earnings, totals, overwrite=args.overwrite)
    _print_scan(stats, earnings)
    print(f"wrote {args.out}/ (scan.json, regimes.parquet, report.html)")
    return 0


def _scan_totals(market, cfg) -> pd.DataFrame:
    """Whole-span carry and reverse carry per symbol, each symbol its own portfolio."""
    from backtest.engine import run_backtest
    from backtest.targets import Targets
    from strategies import run_strategy

    targets = Targets.concat([run_strategy(name, market) for name in ("always_carry", "always_reverse")]).per_column()
    result = run_backtest(market, targets, cfg.engine)
    totals = app.portfolio_stats(result, targets)
    totals.index = [f"{name}:{sym}" for name in ("always_carry", "always_reverse") for sym in market.symbols]
    totals.index.name = "portfolio"
    return totals


def _print_scan(stats: pd.DataFrame, earnings: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Funding by symbol")
    for c in ("symbol", "settlements", "annualized", "negative share", "longest negative run", "intervals"):
        t.add_column(c, justify="left" if c in ("symbol", "intervals") else "right")
    for sym, r in stats.iterrows():
        t.add_row(
            sym,
            f"{r.settlements:,}",
            f"{r.funding_annualized:.2%}",
            f"{r.share_negative:.1%}",
            f"{r.longest_negative_run}",
            r.intervals_hours,
        )
    u = Table(title="Regimes: what carry and reverse carry earned")
    for c in ("symbol", "regime", "from", "days", "funding ann.", "spot", "carry", "reverse"):
        u.add_column(c, justify="left" if c in ("symbol", "regime", "from") else "right")
    for _, r in earnings.iterrows():
        u.add_row(
            r.symbol,
            r.sign,
            f"{r.start:%Y-%m-%d}",
            f"{r.days:.0f}",
            f"{r.funding_annualized:.2%}",
            f"{r.spot_return:.1%}",
            f"{r.carry_return:.2%}",
            f"{r.reverse_return:.2%}",
        )
    console = Console(file=sys.stdout, width=140)
    console.print(t)
    console.print(u)


def write_scan(
    out: Path, cfg, market, stats: pd.DataFrame, earnings: pd.DataFrame, totals: pd.DataFrame, overwrite: bool = False
) -> Path:
    import json

    from reports.html import ReportData, render_report
    from reports.outputs import write_output_dir

    summary = {
        "run_hash": app.run_hash(cfg),
        "config": cfg.to_dict(),
        "coverage": app.coverage(market),
        "symbols": stats.reset_index().to_dict(orient="records"),
        "regimes": earnings.assign(start=earnings["start"].astype(str), end=earnings["end"].astype(str)).to_dict(
            orient="records"
        ),
        "totals": totals.reset_index().to_dict(orient="records"),
    }
    text = json.dumps(app.json_ready(summary), indent=2, allow_nan=False)
    # the headline chart of a scan: cumulative funding (sum of rates) per symbol
    equity = pd.DataFrame(np.cumsum(market.funding_rate, axis=0), index=market.index, columns=list(market.symbols))
    report = ReportData(
        title="carry scan: funding regimes",
        metrics=totals,
        equity=equity,
        funding_annualized=app.funding_annualized_frame(market),
        basis=pd.DataFrame(market.basis, index=market.index, columns=list(market.symbols)),
        tables=[("Funding by symbol", stats), ("Regimes (carry vs reverse carry)", earnings.set_index("symbol"))],
        notes=list(market.notes),
        meta={"run": app.run_hash(cfg), "data": f"{len(market.symbols)} symbols, {market.freq}"},
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
            "config.toml": lambda p: p.write_text(app.effective_toml(cfg)),
        },
        overwrite=overwrite,
    )


def cmd_strategies(args) -> int:
    """List strategies with their parameters, defaults and units."""
    _load_user_strategies(args)
    from strategies import available_strategies, get_strategy

    for name in available_strategies():
        s = get_strategy(name)
        doc = (s.fn.__doc__ or "").strip().splitlines()
        print(f"{name}: {doc[0] if doc else ''}")
        for row in s.params_cls.describe().itertuples(index=False):
            unit = f" [{row.unit}]" if row.unit else ""
            print(f"    {row.name} = {row.default!r}{unit}  {row.help}".rstrip())
    return 0

"""The run commands behind ``carry backtest``, ``compare``, ``sweep``, ``scan`` and ``demo``.

Each command: build a :class:`~backtest.app.runs.RunConfig` (config file, then flags), refuse an
existing output directory before any work, load the market, run, then hand the result to
:mod:`reports` (figures, frames, report data, files written atomically) and print a short table.
Library code only; argument parsing lives in ``cli.py``.
"""

from __future__ import annotations

import re
import sys
import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from backtest.app import runs as app
from backtest.app.verbosity import flagged, quiet, show_progress, stage
from backtest.result import BacktestResult
from backtest.targets import Targets
from data.errors import ConfigError, did_you_mean, one_line
from data.market import Market
from reports.frames import column_summary, portfolio_labels, portfolio_summary
from reports.keys import TERMINAL_KEYS, format_value
from reports.keys import label as key_label
from reports.outputs import check_output_dir, json_ready
from reports.report_data import ranked, sweep_heatmaps

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

    out: dict[str, Any] = {}
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
            truth = {
                "1": True,
                "true": True,
                "yes": True,
                "on": True,
                "0": False,
                "false": False,
                "no": False,
                "off": False,
            }
            if raw.lower() not in truth:
                raise ConfigError(f"--set {key} expects true or false, got {raw!r}")
            out[key] = truth[raw.lower()]
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


#: The engine settings ``--fee`` sets (the taker fee of both legs).
FEE_FIELDS = ("spot_taker_fee_rate", "perp_taker_fee_rate")


def engine_overrides(args, toml: dict | None = None) -> dict:
    """The engine settings of the flags: the named flags, ``--fee`` and ``--set`` (which may not
    set what ``--fee`` sets). ``toml``: the run config file, for the order type ``--fee`` needs."""
    out = {field: getattr(args, flag) for flag, field in ENGINE_FLAGS.items() if getattr(args, flag, None) is not None}
    sets = parse_set(getattr(args, "set", None))
    fee = getattr(args, "fee", None)
    if fee is not None:
        out.update(fee_overrides(fee, sets, {**(toml or {}).get("engine", {}), **out, **sets}))
    out.update(sets)
    return out


def fee_overrides(text: str, sets: dict, engine: dict) -> dict:
    """``--fee TEXT``: both legs' taker fee rate (a fraction) from ``4bps`` or ``0.04%``, checked
    against the plausible range of :data:`backtest.config.PLAUSIBLE`; a ConfigError when ``--set``
    (``sets``) sets one of them too, or when the run's orders pay maker fees (``engine``: the
    engine settings of the config file and the other flags)."""
    from backtest.app.argtypes import fee_rate
    from backtest.config import PLAUSIBLE

    rate = fee_rate(text)
    top = min(PLAUSIBLE[k][0] for k in FEE_FIELDS)
    if rate > top:
        raise ConfigError(
            f"--fee {text} is {rate * 100:g}% of notional, beyond any plausible taker fee (at most {top * 1e4:g}bps "
            f"= {top * 100:g}%)"
        )
    both = [k for k in FEE_FIELDS if k in sets]
    if both:
        raise ConfigError(
            f"--fee {text} and --set {both[0]}={sets[both[0]]} both set {', '.join(both)}: give one of them"
        )
    if engine.get("order_type") == "maker":
        raise ConfigError(
            f"--fee {text} sets the taker fees, but this run's orders pay maker fees (order_type = maker): set "
            "--set spot_maker_fee_rate=... --set perp_maker_fee_rate=..., or use taker orders"
        )
    return dict.fromkeys(FEE_FIELDS, rate)


def data_overrides(args) -> dict:
    return {
        "catalog": str(args.data) if args.data else None,
        "symbols": args.symbols,
        "start": args.start,
        "end": args.end,
        "freq": args.freq,
        "venue": getattr(args, "venue", None),
        "funding_gaps": getattr(args, "funding_gaps", None),
        "allow_data_errors": getattr(args, "allow_data_errors", None),
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
    market: Market
    targets: Targets
    result: BacktestResult
    portfolios: pd.DataFrame
    columns: pd.DataFrame
    warnings: list[str] = field(default_factory=list)  #: one line per warning of the strategies and the engine
    data_errors_allowed: list[dict] = field(default_factory=list)  #: data-check errors let through on request
    #: where the run computed (summary.json ``plan`` of sweeps): ``path`` (in_process or
    #: portfolio_tasks), ``mode`` (serial, processes[N], dask[address]), tasks, portfolios
    plan: dict = field(default_factory=dict)

    @property
    def extra(self) -> dict:
        """What summary.json adds about the run's notes: warnings and the data errors allowed through."""
        return {"warnings": list(self.warnings), "data_errors_allowed": list(self.data_errors_allowed)}

    def write(
        self,
        out,
        report,
        *,
        overwrite: bool = False,
        extra: dict | None = None,
        frames=None,
        full_outputs: bool | None = None,
    ) -> None:
        """Write the run's directory (:func:`backtest.app.runs.write_run`): its files, ``report``,
        summary.json with the run's notes plus ``extra``, and ``frames`` (file name -> DataFrame);
        ``full_outputs`` as :func:`reports.outputs.write_run_outputs` (None: lean when large)."""
        app.write_run(
            out,
            cfg=self.cfg,
            market=self.market,
            targets=self.targets,
            result=self.result,
            portfolios=self.portfolios,
            columns=self.columns,
            report=report,
            overwrite=overwrite,
            extra={**self.extra, **(extra or {})},
            frames=frames,
            full_outputs=full_outputs,
        )

    def add_notes(self, report) -> None:
        """Show the warnings and the data errors allowed through at the top of the report."""
        report.notes.extend(self.warnings)
        report.notes.extend(
            f"data error allowed through (--allow-data-errors): {p['series']}: {p['check']}: {p['message']}"
            for p in self.data_errors_allowed
        )


def run_window(market: Market) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The ``[start, end)`` a market covers (the last bar's close as the end)."""
    step = market.index[1] - market.index[0] if market.n_bars > 1 else pd.Timedelta(0)
    return market.index[0], market.index[-1] + step


def note(text: str) -> None:
    """One note on stderr, one line, ``carry: note: ...`` (not at the quiet level: -q)."""
    from backtest.app.verbosity import note as log_note

    log_note(text)


def finish_run(args, flags, warnings, summary: str = "summary.json") -> None:
    """After a run's files are written: at the quiet level the one line a flagged result needs
    (:func:`backtest.app.verbosity.flagged`); with ``--open`` its report in the browser."""
    flagged(args.out / summary, flags, warnings)
    if getattr(args, "open", False):
        open_report(args.out / "report.html")


def open_report(path) -> None:
    """``--open``: show the written report ``path`` in the browser (:mod:`webbrowser`); where none
    can be opened, one ``carry: note:`` line names the file (at every level) and the command
    still succeeds."""
    import webbrowser
    from pathlib import Path

    from backtest.app.verbosity import always_note

    path = Path(path).resolve()
    try:
        opened = webbrowser.open(path.as_uri())
    except (webbrowser.Error, OSError):
        opened = False
    if not opened:
        always_note(f"no browser could be opened; the report is {path}")


class TooLargeForOneProcess(ConfigError):
    """A run whose estimated peak memory in one process exceeds what is available; ``need`` and
    ``free`` in bytes. ``carry sweep`` runs such a sweep in memory-bounded tasks instead."""

    def __init__(self, message: str, need: int, free: int):
        super().__init__(message)
        self.need = need
        self.free = free


def check_run_memory(cfg: app.RunConfig, market: Market) -> int:
    """Refuse, before anything large is allocated, a run whose estimated peak memory
    (:func:`backtest.app.scale.plan.in_process_bytes`) exceeds 80% of the memory available;
    the message names the size, the sizes it comes from and ``--max-memory``. Returns the estimate."""
    import math

    from backtest.app.scale.plan import available_memory, format_bytes, in_process_bytes
    from strategies import parse_params

    n_sets = 0
    for spec in cfg.strategies:
        params = spec.params
        if params and all(isinstance(v, str) for v in params.values()):
            params = parse_params(spec.name, params)
        n_sets += math.prod(len(v) for v in (params or {}).values() if isinstance(v, (list, tuple)))
    n_columns = n_sets * market.n_symbols
    need = in_process_bytes(market.n_bars, market.n_symbols, n_columns)
    free = available_memory()
    if need > 0.8 * free:
        raise TooLargeForOneProcess(
            f"this run needs about {format_bytes(need)} of memory ({n_sets:,} parameter set(s) x {market.n_symbols} "
            f"symbol(s) x {market.n_bars:,} bars, full outputs in one process), more than the {format_bytes(free)} "
            "available: choose fewer symbols or parameter sets, a shorter window or longer bars (--freq 4h); "
            "carry sweep runs a grid this large in memory-bounded tasks (--max-memory sets their budget)",
            need,
            free,
        )
    return need


def execute(cfg: app.RunConfig, progress: bool = False, scale: dict | None = None) -> RunOutcome:
    """Load and check the data, run the strategies and the engine, compute the figures.

    The market's notes (clipped spans, fills, fallbacks), the data errors allowed through and
    every warning of the strategies and the engine are printed as one-line notes on stderr
    and kept in the outcome for summary.json and the report. ``scale`` (``workers``,
    ``scheduler``, ``param_chunk``, ``strategy_files``) runs the strategies and the engine in
    portfolio tasks on a process pool or a Dask cluster
    (:func:`backtest.app.scale.portfolio.run_distributed`): the same targets and result."""
    steps = ["load market", "strategies", "engine", "figures"]
    bar = _progress(len(steps), progress)
    bar.set_description(steps[0])
    with stage("load data"):
        market = app.load_run_market(cfg)
        allowed = app.check_run_data(cfg, run_window(market))
        check_run_memory(cfg, market)
    bar.update(1)
    bar.set_description(steps[1])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        from data.venues import known_venues

        if cfg.data.venue not in known_venues():  # (a venue with rules takes its fees: runs.venue_fee_defaults)
            warnings.warn(
                f"venue {cfg.data.venue} has no rules file (data/venues/): the fees not set by the config or a flag "
                "are carry's defaults (Binance's base tier)",
                stacklevel=1,
            )
        if scale is None:
            plan = {"path": "in_process", "mode": "serial", "tasks": 1}
            with stage("strategies"):
                targets = app.build_targets(market, cfg.strategies, cfg.per_symbol)
            bar.update(1)
            bar.set_description(steps[2])
            with stage("engine"):
                result = run_engine_chunked(market, targets, cfg.engine, progress)
        else:
            from backtest.app.scale.portfolio import run_distributed

            with stage("strategies and engine in portfolio tasks"):
                targets, result, remote, mode, n_tasks = run_distributed(cfg, market, **scale)
            plan = {"path": "portfolio_tasks", "mode": mode, "tasks": n_tasks}
            for text in remote:
                warnings.warn(text, stacklevel=1)
            bar.update(1)
    bar.update(1)
    bar.set_description(steps[3])
    with stage("figures"):
        portfolios = portfolio_summary(result, targets)
        columns = column_summary(result, targets)
    bar.update(1)
    bar.close()
    said = list(dict.fromkeys(one_line(str(w.message)) for w in caught))
    for text in market.notes:
        note(text)
    for p in allowed:
        note(f"data error allowed through: {p['series']}: {p['check']}: {p['message']}")
    for text in said:
        note(text)
    plan.update(portfolios=len(portfolios), columns=len(columns), bars=market.n_bars)
    return RunOutcome(cfg, market, targets, result, portfolios, columns, said, allowed, plan)


#: Portfolios per engine call when a progress bar is drawn (a terminal): a long sweep runs in
#: chunks so the bar moves; otherwise the whole grid is one call (no joining copy).
GROUPS_PER_CALL = 32
#: Bar-columns from which a grid of several portfolios runs on every core (numba threads,
#: ``run_backtest(parallel=True)``: bit-identical results); below it threads cost more than they gain.
PARALLEL_BAR_COLUMNS = 2_000_000


def run_engine_chunked(market, targets, config, progress: bool = False):
    """:func:`run_backtest` over the grid: portfolios on every core when the grid is large
    enough (:data:`PARALLEL_BAR_COLUMNS`), in chunks of whole portfolios with a progress bar
    when ``progress``. Portfolios are independent, so the result equals one serial call."""
    from backtest.engine import run_backtest
    from backtest.result import BacktestResult
    from backtest.targets import split_by_group

    n_groups = len(np.unique(targets.group))
    parallel = n_groups > 1 and market.n_bars * targets.n_columns >= PARALLEL_BAR_COLUMNS
    parts = split_by_group(targets, GROUPS_PER_CALL) if progress else [targets]
    if len(parts) == 1:
        return run_backtest(market, targets, config, parallel=parallel)
    bar = _progress(len(parts), progress)
    bar.set_description(f"engine ({n_groups} portfolios)")
    results = []
    for part in parts:
        results.append(run_backtest(market, part, config, parallel=parallel))
        bar.update(1)
    bar.close()
    return BacktestResult.concat(results)


def _progress(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, disable=not enabled, file=sys.stderr, leave=False)


def print_table(frame: pd.DataFrame, title: str, max_rows: int = 20) -> None:
    """A short terminal table (rich) of the main figures: the keys marked ``terminal`` in
    :data:`reports.keys.KEYS`, with their labels and formats (none at the quiet level: -q)."""
    if quiet():
        return
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    keys = list(TERMINAL_KEYS)
    table = Table(title=title, show_lines=False)
    table.add_column(frame.index.name or "run", overflow="fold")
    for k in keys:
        table.add_column(key_label(k), justify="right")
    for label, row in frame.head(max_rows).iterrows():
        table.add_row(escape(str(label)), *(format_value(k, row[k], terminal=True) for k in keys))  # labels hold [...]
    Console(file=sys.stdout, width=max(120, min(200, 40 + 12 * len(keys)))).print(table)
    if len(frame) > max_rows:
        print(f"... and {len(frame) - max_rows} more rows in summary.json")


# --------------------------------------------------------------------------- commands
def cmd_backtest(args) -> int:
    _load_user_strategies(args)
    toml = app.read_run_toml(args.config) if args.config else {}
    specs = [_strategy_spec(args.strategy, args.param or [])] if args.strategy else None
    cfg = app.build_run_config(
        toml, data_overrides=data_overrides(args), engine_overrides=engine_overrides(args, toml), strategies=specs
    )
    check_output_dir(args.out, args.overwrite)
    run = execute(cfg, progress=show_progress(args))
    title = f"carry backtest: {', '.join(s.name for s in cfg.strategies)}"
    with stage("write outputs"):
        report = app.report_data(title, cfg, run.market, run.targets, run.result, run.portfolios, run.columns)
        run.add_notes(report)
        run.write(args.out, report, overwrite=args.overwrite, full_outputs=args.full_outputs)
    print_table(run.portfolios, title)
    print(f"wrote {args.out}/ (summary.json, report.html, equity/components/events/trades .parquet, config.toml)")
    finish_run(args, run.result.flags, run.warnings)
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
        toml, data_overrides=data_overrides(args), engine_overrides=engine_overrides(args, toml), strategies=specs
    )
    check_output_dir(args.out, args.overwrite)
    run = execute(cfg, progress=show_progress(args))
    title = f"carry compare: {', '.join(s.name for s in cfg.strategies)}"
    with stage("write outputs"):
        report = app.report_data(
            title, cfg, run.market, run.targets, run.result, run.portfolios, run.columns, ranking_by="sharpe"
        )
        run.add_notes(report)
        run.write(args.out, report, overwrite=args.overwrite, full_outputs=args.full_outputs)
    print_table(run.portfolios.loc[ranked(run.portfolios, "sharpe")], title)
    print(f"wrote {args.out}/")
    finish_run(args, run.result.flags, run.warnings)
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
        engine_overrides=engine_overrides(args, toml),
        strategies=[spec],
        walk_forward=args.walk_forward,
        per_symbol=True if getattr(args, "per_symbol", False) else None,
    )
    from backtest.app.scale import is_memory_bounded, wants_scale
    from reports.metrics import check_return_key

    if cfg.walk_forward:
        check_return_key(args.rank_by, "walk-forward --rank-by")  # before any work
    scale = None
    if wants_scale(args):
        if is_memory_bounded(args):
            if args.full_outputs:
                raise ConfigError(
                    "--full-outputs keeps every bar of every column, which the memory-bounded options "
                    "(--max-memory, --time-chunk, --symbol-chunk, --warmup) do not; spread the run with --workers "
                    "or --scheduler alone"
                )
            if cfg.walk_forward:
                raise ConfigError(
                    "--walk-forward needs every portfolio's equity at every bar, which the memory-bounded options "
                    "(--max-memory, --time-chunk, --symbol-chunk, --warmup) do not keep; spread it with --workers "
                    "or --scheduler alone"
                )
            return _memory_bounded_sweep(args, cfg)
        scale = {
            "workers": args.workers,
            "scheduler": args.scheduler,
            "param_chunk": args.param_chunk,
            "strategy_files": tuple(str(p) for p in getattr(args, "strategy_file", None) or []),
        }
    check_output_dir(args.out, args.overwrite)
    try:
        run = execute(cfg, progress=show_progress(args), scale=scale)
    except TooLargeForOneProcess as exc:
        from backtest.app.scale.plan import format_bytes

        if cfg.walk_forward or args.full_outputs:  # what needs one process: the advice that works for it
            why = (
                "--walk-forward needs every portfolio's equity at every bar in one process"
                if cfg.walk_forward
                else "--full-outputs writes every bar of every portfolio from one process"
            )
            instead = (
                "sweep fewer parameter sets or symbols, a shorter window or longer bars (--freq 4h)"
                if cfg.walk_forward
                else "drop --full-outputs (the sweep then runs in memory-bounded tasks, lean files), or sweep fewer "
                "parameter sets, a shorter window or longer bars (--freq 4h)"
            )
            raise TooLargeForOneProcess(
                f"{str(exc).split(': choose ')[0]}; {why}: {instead}", exc.need, exc.free
            ) from None

        note(
            f"this sweep needs about {format_bytes(exc.need)} in one process, more than the "
            f"{format_bytes(exc.free)} available: it runs in memory-bounded tasks instead (the same figures; "
            "summary.json 'lean' lists what the files keep less of; --max-memory sets the budget)"
        )
        return _memory_bounded_sweep(args, cfg)
    heatmaps = sweep_heatmaps(run.targets, run.portfolios, list(grid), metric=args.rank_by)
    extra_tables, extra, frames = [], {}, {}
    stitched = None
    if cfg.walk_forward:
        with stage("walk-forward"):
            folds, summary = walk_forward(run, cfg.walk_forward, metric=args.rank_by)
            stitched = stitched_out_of_sample(run, folds, metric=args.rank_by)
            extra_tables.append(("Walk-forward: in-sample choice vs out-of-sample result", folds))
            extra["walk_forward"] = {
                "spec": cfg.walk_forward,
                "metric": args.rank_by,
                **summary,
                "folds": json_ready(folds.reset_index().to_dict(orient="records")),
                "stitched": {
                    "start": stitched.frame.index[0],
                    "end": folds["test_end"].iloc[-1],
                    **stitched.stats,
                    "hindsight_best": stitched.hindsight,
                },
            }
            frames["walk_forward.parquet"] = stitched.frame.reset_index()
    title = f"carry sweep: {name} over {', '.join(f'{k} ({len(v)})' for k, v in grid.items())}"
    with stage("write outputs"):
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
        if stitched is not None:
            report.walk_forward = stitched.frame
        run.add_notes(report)
        run.write(
            args.out,
            report,
            overwrite=args.overwrite,
            extra={**extra, "plan": run.plan},
            frames=frames,
            full_outputs=args.full_outputs,
        )
    print_table(run.portfolios.loc[ranked(run.portfolios, args.rank_by)], title)
    if stitched is not None and not quiet():
        s = extra["walk_forward"]
        st, hs = stitched.stats, stitched.hindsight
        print(
            f"walk-forward ({cfg.walk_forward}, by {args.rank_by}): in-sample {s['in_sample_mean']:.3f}, "
            f"out-of-sample {s['out_of_sample_mean']:.3f} over {s['n_folds']} folds; stitched out-of-sample run "
            f"(switching costs included): total return {st['total_return']:.2%}, {args.rank_by} "
            f"{st[args.rank_by]:.3f}; best set in hindsight ({hs['portfolio']}): {args.rank_by} "
            f"{hs[args.rank_by]:.3f}"
        )
    print(f"wrote {args.out}/")
    finish_run(args, run.result.flags, run.warnings)
    return 0


def _memory_bounded_sweep(args, cfg: app.RunConfig) -> int:
    """``carry sweep`` in memory-bounded tasks (:func:`backtest.app.scale.run_scaled_sweep_command`),
    then ``--open``."""
    from backtest.app.scale import run_scaled_sweep_command

    code = run_scaled_sweep_command(args, cfg)
    if getattr(args, "open", False):
        open_report(args.out / "report.html")
    return code


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
    best ``metric`` (a return statistic of :mod:`reports.metrics`, computed on the window's
    portfolio equity, with the equity at the bar before the window as its start) over the
    training window and reports that set's ``metric`` over the following test window, next
    to the best any set reached there.
    """
    from reports.metrics import check_return_key

    check_return_key(metric, "walk-forward --rank-by")
    if ":" not in spec:
        raise ConfigError(f"walk-forward expects TRAIN:TEST windows such as 180d:60d, got {spec!r}")
    train, test = (_parse_window(s) for s in spec.split(":", 1))
    labels = portfolio_labels(run.targets)
    eq = run.result.group_equity
    names = [labels[int(g)] for g in eq.columns]
    values = eq.to_numpy(dtype=np.float64)
    start_equity = np.full(values.shape[1], float(run.result.config.initial_capital_quote))
    index = eq.index
    bar = pd.Timedelta(hours=run.result.bar_hours)
    folds = []
    start = index[0]
    while start + train + test <= index[-1] + bar:
        tr = (index >= start) & (index < start + train)
        te = (index >= start + train) & (index < start + train + test)
        ins = _window_metric(values, start_equity, tr, metric, run.result.bar_hours, names, run.result.index)
        best = ins.idxmax() if ins.notna().any() else None
        if best is not None:
            oos = _window_metric(values, start_equity, te, metric, run.result.bar_hours, names, run.result.index)
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


@dataclass(frozen=True)
class StitchedWalkForward:
    """What walk-forward would have traded (:func:`stitched_out_of_sample`).

    ``frame``: per bar of the test span, ``equity`` (the stitched run's portfolio equity,
    quote), ``chosen`` (the set traded in that window), ``hindsight`` (the equity of the set
    best over the whole span by the metric, started at the same time with the same capital,
    quote). ``stats``: the stitched run's summary figures; ``hindsight``: that set's label and
    ``metric`` over the span."""

    frame: pd.DataFrame
    stats: dict
    hindsight: dict


def stitched_out_of_sample(run: RunOutcome, folds: pd.DataFrame, metric: str = "sharpe") -> StitchedWalkForward:
    """Run, with the engine, the one portfolio that follows the walk-forward choices: from the
    first test window's start (flat, with the initial capital) to the last one's end, in each
    test window it holds the targets (and capital weights) of the set chosen on the training
    window before it, on that set's symbols. Switching sets trades toward the new targets at
    the usual costs (fees, slippage), so the curve is a tradable out-of-sample result, not the
    chosen sets' returns chained together.

    Targets are computed on the whole history (strategies see only the past at each bar;
    ``carry check-strategy`` proves it for a strategy), so a set entering mid-history enters
    with the position its signal holds then."""
    from backtest.engine import run_backtest
    from reports.metrics import return_stats, stats

    tg, market = run.targets, run.market
    labels = portfolio_labels(tg)
    group_of = {lab: g for g, lab in labels.items()}
    index = market.index
    values = np.zeros(market.shape)
    weights = np.zeros(market.shape)
    chosen = np.full(market.n_bars, None, dtype=object)
    for test_start, fold in folds.iterrows():
        rows = np.flatnonzero((index >= test_start) & (index < fold["test_end"]))
        cols = np.flatnonzero(tg.group == group_of[fold["chosen"]])
        for c in cols:
            j = int(tg.column_symbol[c])
            values[rows, j] = tg.values[rows, c]
            weights[rows, j] = 1.0 if tg.weights is None else tg.weights[rows, c]
        chosen[rows] = fold["chosen"]
    start, end = folds.index[0], folds["test_end"].iloc[-1]
    lo, hi = int(index.searchsorted(start)), int(index.searchsorted(end))
    span = market.select(start=start, end=end)
    targets = Targets.from_array(span, values[lo:hi], strategy="walk_forward", weights=weights[lo:hi])
    config = run.result.config
    result = run_backtest(span, targets, config)
    initial = float(config.initial_capital_quote)
    # the set best over the whole span in hindsight, started with the same capital at the same bar
    eq = run.result.group_equity
    values_eq = eq.to_numpy(dtype=np.float64)
    before = values_eq[lo - 1] if lo > 0 else np.full(values_eq.shape[1], initial)
    whole = return_stats(values_eq[lo:hi], before, run.result.bar_hours, index[lo:hi])[metric]
    best = int(np.nanargmax(whole)) if np.isfinite(whole).any() else 0
    frame = pd.DataFrame(
        {
            "equity": result.group_equity.iloc[:, 0].to_numpy(),
            "chosen": chosen[lo:hi].astype(str),
            "hindsight": values_eq[lo:hi, best] / before[best] * initial,
        },
        index=pd.DatetimeIndex(index[lo:hi], name="time"),
    )
    hindsight = {"portfolio": labels[int(eq.columns[best])], metric: float(whole[best])}
    return StitchedWalkForward(frame, stats(result), hindsight)


def _window_metric(
    equity: np.ndarray,
    start_equity: np.ndarray,
    mask: np.ndarray,
    metric: str,
    bar_hours: float,
    names: list,
    index: pd.DatetimeIndex,
) -> pd.Series:
    """``metric`` of every portfolio over the bars in ``mask`` (one contiguous window; ``index``:
    the bar open times, which place the window's days)."""
    from reports.metrics import return_stats

    rows = np.flatnonzero(mask)
    if not len(rows):
        return pd.Series(np.nan, index=names, dtype=float)
    before = equity[rows[0] - 1] if rows[0] > 0 else start_equity
    window = slice(rows[0], rows[-1] + 1)
    return pd.Series(return_stats(equity[window], before, bar_hours, index[window])[metric], index=names)


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


def cmd_scan(args) -> int:
    if getattr(args, "venues", None):
        return _scan_venues(args)
    from backtest.engine import run_backtest
    from data.catalog import Catalog
    from data.loader import available_symbols
    from reports.regimes import funding_regimes, funding_stats
    from reports.scan import regime_earnings, write_scan

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
        engine_overrides=engine_overrides(args, toml),
        strategies=[app.StrategySpec("always_carry"), app.StrategySpec("always_reverse")],
    )
    check_output_dir(args.out, args.overwrite)
    with stage("load data"):
        market = app.load_run_market(cfg)
        allowed = app.check_run_data(cfg, run_window(market))
    for text in market.notes:
        note(text)
    for p in allowed:
        note(f"data error allowed through: {p['series']}: {p['check']}: {p['message']}")
    stats = pd.DataFrame([s.as_dict() for s in funding_stats(market)]).set_index("symbol")
    regimes = funding_regimes(market, window_settlements=args.window, min_days=args.min_days)
    if not regimes:
        raise ConfigError("no funding settlements in the selected data: nothing to scan")
    with warnings.catch_warnings(record=True) as caught, stage("engine"):
        warnings.simplefilter("always")
        flags: list[str] = []
        parts = []
        for sym, sub, first in _tradable_markets(market):
            mine = [
                replace(r, start_bar=r.start_bar - first, end_bar=r.end_bar - first) for r in regimes if r.symbol == sym
            ]
            if mine:
                result = run_backtest(sub, scan_targets(sub, mine), cfg.engine)
                flags += [f for f in result.flags if f not in flags]
                parts.append(regime_earnings(sub, result, mine))
        earnings = pd.concat(parts, ignore_index=True)
        totals = _scan_totals(market, cfg)
    said = list(dict.fromkeys(one_line(str(w.message)) for w in caught))
    for text in said:
        note(text)
    with stage("write outputs"):
        write_scan(
            args.out,
            header={
                "run_hash": app.run_hash(cfg),
                "config": cfg.to_dict(),
                "warnings": said,
                "data_errors_allowed": allowed,
            },
            config_toml=app.effective_toml(cfg),
            market=market,
            stats=stats,
            earnings=earnings,
            totals=totals,
            overwrite=args.overwrite,
        )
    if not quiet():
        _print_scan(stats, earnings)
    print(f"wrote {args.out}/ (scan.json, regimes.parquet, report.html)")
    finish_run(args, flags, said, summary="scan.json")
    return 0


def _scan_venues(args) -> int:
    """``carry scan --venues A,B,...``: per coin and pair of venues, the funding spread, its
    regimes and what collecting it earned less fees (:mod:`reports.venue_spread`)."""
    from data.catalog import Catalog
    from data.symbols import split_symbol
    from data.venues import venue_rules
    from reports.scan import write_venue_scan
    from reports.venue_spread import venue_spreads

    venues = [v.strip().lower() for v in args.venues.split(",") if v.strip()]
    if len(set(venues)) != len(venues) or len(venues) < 2:
        raise ConfigError(f"--venues {args.venues}: name at least two different venues, e.g. binance,bybit")
    if args.venue:
        raise ConfigError("--venue reads one venue: with --venues, name every venue there instead")
    rules = {v: venue_rules(v) for v in venues}  # unknown venue: did-you-mean
    toml = app.read_run_toml(args.config) if args.config else {}
    catalog = Catalog(str(args.data) if args.data else toml.get("data", {}).get("catalog") or "data/catalog")
    present = {v: {k.symbol for k in catalog.keys() if k.venue == v and k.kind.value == "funding"} for v in venues}
    for v in venues:
        if not present[v]:
            raise ConfigError(
                f"catalog {catalog.root} has no funding on venue {v} "
                f"(ingest it, e.g. carry data ingest freqtrade DIR --venue {v} --out {catalog.root})"
            )
    if args.symbols:
        coins = []
        for name in args.symbols.split(","):
            name = name.strip().upper()
            coin = split_symbol(name)[0] if name.endswith(("USDT", "USDC")) else name
            if name and coin not in coins:
                coins.append(coin)
    else:  # every coin with funding on each venue
        coins = sorted(set.intersection(*({split_symbol(s)[0] for s in present[v]} for v in venues)))
        if not coins:
            raise ConfigError(f"no coin has funding on every one of {', '.join(venues)} in {catalog.root}")
    symbol_of = {c: {v: f"{c}{rules[v].quote}" for v in venues} for c in coins}
    for c in coins:
        missing = [f"{symbol_of[c][v]} on {v}" for v in venues if symbol_of[c][v] not in present[v]]
        if missing:
            raise ConfigError(f"{c}: no funding for {', '.join(missing)} in {catalog.root}")

    def fee_of(venue):  # the venue's perp taker fee in force on a day
        return lambda day: rules[venue].fees_at(day).perp_taker_fee_rate

    fees = {v: fee_of(v) for v in venues}
    check_output_dir(args.out, args.overwrite)
    with stage("funding spreads"):
        stats, regimes, daily = venue_spreads(
            catalog, coins, venues, symbol_of, fees, args.start, args.end, args.spread_window, int(args.min_days)
        )
    from backtest.config import BacktestConfig
    from reports.venue_spread import engine_regimes

    leverage = float(args.leverage) if args.leverage else 2.0
    with stage("spread trades in the engine"):
        regimes, engine_notes = engine_regimes(catalog, regimes, BacktestConfig(perp_leverage=leverage))
    notes = [
        "collected, basis, fees and net: funding and basis only (no slippage, margin, liquidation or transfers "
        f"between venues); engine: the same trade in the engine at {leverage:g}x (carry spread's rules: each leg's "
        "funding at its own settlements, taker fees, collateral rebalances through transfers of 1 USDT after 1 h, "
        "liquidation), net of everything, per unit of each leg's entry notional (venue_spread.json regimes[].engine_*)",
        "fees: each venue's perp taker fee in force on a regime's first day (data/venues/<venue>.toml; "
        "venue_spread.json regimes[].fees), charged to open and close both perps",
    ]
    quotes = {v: rules[v].quote for v in venues}
    if len(set(quotes.values())) > 1:
        notes.append(
            "quotes taken 1:1: "
            + ", ".join(f"{v} {q}" for v, q in quotes.items())
            + " (a basis between a USDT and a USDC perp includes the USDC/USDT rate's move)"
        )
    notes += [
        f"{r.coin}: no day whose funding is known on both {r.venue_a} and {r.venue_b} in the window"
        for r in stats.itertuples()
        if r.days == 0
    ]
    unpriced = regimes[~np.isfinite(regimes.basis.astype(float))]
    notes += [
        f"{coin} {a}/{b}: {n} regime(s) without perp prices on both venues at their start or end: basis and net "
        "unknown (ingest the perp bars)"
        for (coin, a, b), n in unpriced.groupby(["coin", "venue_a", "venue_b"]).size().items()
    ]
    notes += engine_notes
    for text in notes:
        note(text)
    write_venue_scan(
        args.out,
        header={"venues": venues, "coins": coins, "symbols": symbol_of},
        stats=stats,
        regimes=regimes,
        daily=daily,
        notes=notes,
        overwrite=args.overwrite,
    )
    if not quiet():
        _print_venue_scan(stats, regimes)
    print(f"wrote {args.out}/ (venue_spread.json, venue_funding.parquet, report.html)")
    if getattr(args, "open", False):
        open_report(args.out / "report.html")
    return 0


def _print_venue_scan(stats: pd.DataFrame, regimes: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="Funding spread by coin and venue pair (B - A)")
    for c in ("coin", "A", "B", "days", "A ann.", "B ann.", "spread ann.", "B higher", "longest run"):
        t.add_column(c, justify="left" if c in ("coin", "A", "B") else "right")
    for _, r in stats.iterrows():
        run = f"{r.longest_run_days} d ({r.longest_run_higher})" if r.days else "-"
        t.add_row(
            r.coin,
            r.venue_a,
            r.venue_b,
            f"{r.days:,}",
            f"{r.funding_a_annualized:.2%}",
            f"{r.funding_b_annualized:.2%}",
            f"{r.spread_annualized:+.2%}",
            f"{r.share_days_b_higher:.0%}",
            run,
        )
    u = Table(title="Spread regimes: short the perp paying more, long the other (funding + basis - taker fees)")
    for c in ("coin", "short", "long", "from", "days", "spread ann.", "collected", "basis", "fees", "net", "engine"):
        u.add_column(c, justify="left" if c in ("coin", "short", "long", "from") else "right")
    for _, r in regimes.iterrows():
        u.add_row(
            r.coin,
            r.short_venue,
            r.long_venue,
            r.start,
            f"{r.days}",
            f"{r.spread_annualized:+.2%}",
            f"{r.collected:.3%}",
            f"{r.basis:+.3%}" if np.isfinite(r.basis) else "-",
            f"{r.fees:.3%}",
            f"{r.net:+.3%}" if np.isfinite(r.net) else "-",
            f"{r.engine_net:+.3%}" if np.isfinite(r.engine_net) else "-",
        )
    console = Console()
    if not console.is_terminal:  # a pipe or a file: the whole tables, not an 80-column squeeze
        console = Console(width=160)
    console.print(t)
    console.print(u)


def _tradable_markets(market):
    """``(symbol, market of that symbol over its tradable span, the span's first bar in
    market)`` per symbol with a tradable bar: a scan runs each symbol on its own, so its figures
    (regime earnings and totals alike: entries, exits and the last bar held) do not depend on
    which other symbols, with other spans, are scanned with it."""
    step = market.index[1] - market.index[0] if market.n_bars > 1 else pd.Timedelta(0)
    for j, sym in enumerate(market.symbols):
        idx = np.flatnonzero(market.tradable[:, j])
        if idx.size:
            yield sym, market.select([sym], start=market.index[idx[0]], end=market.index[idx[-1]] + step), int(idx[0])


def _scan_totals(market, cfg) -> pd.DataFrame:
    """Carry and reverse carry per symbol over the symbol's own tradable span (``Market.tradable``:
    where its spot, perp, mark and funding all exist), each symbol its own portfolio, so a
    symbol's figures do not depend on which others are scanned."""
    from backtest.engine import run_backtest
    from backtest.targets import Targets
    from strategies import run_strategy

    parts = []
    for sym, sub, _first in _tradable_markets(market):
        targets = Targets.concat([run_strategy(name, sub) for name in ("always_carry", "always_reverse")]).per_column()
        totals = portfolio_summary(run_backtest(sub, targets, cfg.engine), targets)
        totals.index = [f"{name}:{sym}" for name in ("always_carry", "always_reverse")]
        parts.append(totals)
    out = pd.concat(parts)
    order = [f"{name}:{sym}" for name in ("always_carry", "always_reverse") for sym in market.symbols]
    out = out.loc[[k for k in order if k in out.index]]
    out.index.name = "portfolio"
    return out


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


def strategy_json(name: str) -> dict:
    """What the registry knows of strategy ``name``, JSON-ready: ``name``, ``doc`` (the first
    line of its docstring) and ``parameters``, one dict per field of its parameter class with
    ``name``, ``type``, ``default`` (null for a required one), ``unit``, ``help``, the bounds
    ``ge``, ``gt``, ``le``, ``lt`` (null where none) and ``choices`` (a list, or null)."""
    import dataclasses
    import typing

    from strategies import get_strategy

    s = get_strategy(name)
    doc = (s.fn.__doc__ or "").strip().splitlines()
    hints = typing.get_type_hints(s.params_cls)

    def default(f: dataclasses.Field) -> Any:
        if f.default is not dataclasses.MISSING:
            return f.default
        if f.default_factory is not dataclasses.MISSING:
            return f.default_factory()
        return None

    params = []
    for f in dataclasses.fields(s.params_cls):
        meta = f.metadata
        choices = meta.get("choices")
        tp = hints.get(f.name)
        params.append(
            {
                "name": f.name,
                "type": getattr(tp, "__name__", str(tp)),
                "default": default(f),
                "unit": meta.get("unit", ""),
                "help": meta.get("help", ""),
                **{k: meta.get(k) for k in ("ge", "gt", "le", "lt")},
                "choices": None if choices is None else list(choices),
            }
        )
    return json_ready({"name": s.name, "doc": doc[0] if doc else "", "parameters": params})


def cmd_strategies(args) -> int:
    """List strategies with their parameters, defaults and units (``--json``: :func:`strategy_json` of each)."""
    _load_user_strategies(args)
    import json

    from strategies import available_strategies, get_strategy

    if getattr(args, "json", False):
        print(json.dumps([strategy_json(name) for name in available_strategies()], indent=2, default=str))
        return 0
    for name in available_strategies():
        s = get_strategy(name)
        doc = (s.fn.__doc__ or "").strip().splitlines()
        print(f"{name}: {doc[0] if doc else ''}")
        for row in s.params_cls.describe().itertuples(index=False):
            unit = f" [{row.unit}]" if row.unit else ""
            print(f"    {row.name} = {row.default!r}{unit}  {row.help}".rstrip())
    return 0


def _leverage_by_flag(exc: ConfigError) -> ConfigError:
    """``run_spread``'s refusal of a leverage above a venue's maximum, named by the flag it came
    from: ``perp_leverage 150 in column 0 is above bybit BTCUSDT's maximum 100 (...)`` becomes
    ``--leverage 150 is above bybit BTCUSDT's maximum 100 (...)`` (``leverage_a``:
    ``--leverage-a``); any other error as it is."""
    m = re.match(r"(perp_leverage|leverage_a) (\S+)(?: in column \d+)? is above ", str(exc))
    if m is None:
        return exc
    flag = {"perp_leverage": "--leverage", "leverage_a": "--leverage-a"}[m.group(1)]
    return ConfigError(f"{flag} {m.group(2)} is above {str(exc)[m.end() :]}")


def cmd_spread(args) -> int:
    """``carry spread``: backtest hedges whose legs sit on different venues (:mod:`backtest.spread`):
    a perp long on one venue and short on another for each coin and pair of the named venues, or
    (``--leg-a spot``) spot on the first venue against the perp on each other one. Comma lists of
    the strategy's thresholds or of ``--leverage`` make a grid (:mod:`backtest.app.spread_study`),
    run here or on ``--workers`` processes or a Dask ``--scheduler`` with the same figures."""
    from backtest.app.argtypes import name_by_flag, plain
    from backtest.app.spread_study import SpreadStudy, expand_sets, run_study
    from backtest.config import BacktestConfig, SpreadConfig
    from reports.spread_run import write_spread_run

    venues = [v.strip().lower() for v in args.venues.split(",") if v.strip()]
    if len(set(venues)) != len(venues) or len(venues) < 2:
        raise ConfigError(f"--venues {args.venues}: name at least two different venues, e.g. binance,bybit")
    spot = args.leg_a == "spot"
    if spot and args.strategy == "funding_spread":
        raise ConfigError(
            "--strategy funding_spread trades two perps; with --leg-a spot use --strategy hold or best_venue_carry"
        )
    if args.strategy == "best_venue_carry" and not spot:
        raise ConfigError("--strategy best_venue_carry holds spot on the first venue: add --leg-a spot")
    coins = [c.strip().upper() for c in args.symbols.split(",") if c.strip()]
    coins = [c[:-4] if c.endswith(("USDT", "USDC")) and len(c) > 4 else c for c in coins]
    engine: dict = {"initial_capital_quote": args.capital}
    for name, value in (
        ("slippage_bps", args.slippage_bps),
        ("order_type", args.order_type),
        ("execution_delay_bars", args.delay),
        ("after_liquidation", args.after_liquidation),
    ):
        if value is not None:
            engine[name] = value
    margin_a, margin_b = args.margin_mode or (None, None)  # (leg A's venue's mode, leg B's)
    if spot and margin_a == "cross" and len(set(args.margin_mode)) > 1:
        raise ConfigError(
            "--margin-mode: with --leg-a spot the first venue holds spot, not perps: its mode is isolated"
        )
    if spot:
        margin_a = None  # (a spot leg has no futures account: --margin-mode cross means the perps' venues)
    if "cross" in (margin_a, margin_b) and (
        args.strategy == "best_venue_carry" or (args.strategy == "funding_spread" and len(venues) > 2)
    ):
        raise ConfigError(
            f"--margin-mode cross shares each venue's account among a set's coins on one venue pair; --strategy "
            f"{args.strategy} over {len(venues)} venues moves each coin between venues: name two venues "
            "(e.g. --venues binance,bybit) or use --strategy hold"
        )
    for lev in args.leverage:  # each leverage of the grid checked with the engine's rules
        values = {**engine, "perp_leverage": lev}
        try:
            BacktestConfig.from_dict({k: plain(v) for k, v in values.items()})
        except ConfigError as exc:
            flags = {"perp_leverage": "--leverage", "slippage_bps": "--slippage-bps", "execution_delay_bars": "--delay"}
            raise name_by_flag(exc, {**flags, "initial_capital_quote": "--capital"}, values) from None
    config = BacktestConfig.from_dict({k: plain(v) for k, v in {**engine, "perp_leverage": args.leverage[0]}.items()})
    spread = SpreadConfig(
        venue_transfer_delay_hours=args.transfer_delay_hours,
        venue_transfer_fee_quote=args.transfer_fee,
        venue_rebalance_band=args.rebalance_band,
        tiers_dir=str(args.tiers_dir) if args.tiers_dir else None,
        leg_a=args.leg_a,
        leverage_a=args.leverage_a,
        switch_keeps_leg=not args.switch_closes_both,
        margin_a=margin_a,
        margin_b=margin_b,
    )
    grid = {
        "entry_annualized": args.entry,
        "exit_annualized": args.exit,
        "window_hours": args.window_hours,
        "min_hold_hours": args.min_hold_hours,
        "switch_annualized": args.switch,
    }
    if args.direction == "reverse" and args.strategy != "hold":
        raise ConfigError(f"--direction reverse is --strategy hold's; {args.strategy} decides the side by the funding")
    if args.strategy == "hold":
        given = [f"--{k.replace('_annualized', '').replace('_', '-')}" for k, v in grid.items() if len(v) > 1]
        if given:
            raise ConfigError(f"--strategy hold has no thresholds: {', '.join(given)} would only repeat its figures")
    sets = expand_sets(
        {k: [float(x) for x in v] for k, v in grid.items()} if args.strategy != "hold" else {},
        [float(x) for x in args.leverage],
    )
    for s in sets if args.strategy != "hold" else ():  # each set checked with the strategy's rules now
        import strategies

        (strategies.BestVenueCarryParams if args.strategy == "best_venue_carry" else strategies.FundingSpreadParams)(
            **s.strategy
        )
    if args.scheduler is None and args.workers is None and args.param_chunk is not None and len(sets) == 1:
        raise ConfigError("--param-chunk splits a grid's parameter sets: give a grid (e.g. --entry 0.05,0.1)")
    study = SpreadStudy(
        catalog=str(args.data) if args.data else "data/catalog",
        venues=tuple(venues),
        coins=tuple(coins),
        start=args.start,
        end=args.end,
        freq=args.freq,
        funding_gaps=args.funding_gaps,
        leg_a=args.leg_a,
        strategy=args.strategy,
        config=config.to_dict(),
        spread=spread.to_dict(),
        quote_rate=args.quote_rate,
        direction=args.direction,
    )
    check_output_dir(args.out, args.overwrite)
    with stage("spread"):
        try:
            parts, mode, n_tasks = run_study(
                study, sets, workers=args.workers, scheduler=args.scheduler, param_chunk=args.param_chunk
            )
        except ConfigError as exc:
            raise _leverage_by_flag(exc) from None
    table = parts.rows[0]
    notes = parts.notes
    if mode != "serial":
        notes.append(f"{len(sets)} parameter sets in {n_tasks} tasks on {mode}: the same figures as one process")
    for text in notes:
        note(text)
    header = {
        "venues": venues,
        "leg_a": args.leg_a,
        "coins": coins,
        "start": str(args.start) if args.start else None,
        "end": str(args.end) if args.end else None,
        "strategy": args.strategy,
        "direction": args.direction,
        "strategy_params": sets[0].strategy if len(sets) == 1 else {},
        "grid": {k: [float(x) for x in v] for k, v in {**grid, "perp_leverage": args.leverage}.items() if len(v) > 1}
        if args.strategy != "hold"
        else ({"perp_leverage": [float(x) for x in args.leverage]} if len(args.leverage) > 1 else {}),
        "sets": len(sets),
        "engine": config.to_dict(),
        "spread": spread.to_dict(),
        "flags": parts.flags,
        "mode": mode,
    }
    write_spread_run(
        args.out,
        header=header,
        rows=table,
        equity=pd.DataFrame(parts.curves),
        events=pd.concat(parts.events, ignore_index=True),
        notes=notes,
        overwrite=args.overwrite,
        components=parts.components,
        margin_ratio=pd.concat(parts.ratios, axis=1) if parts.ratios else None,
    )
    if not quiet():
        _print_spread(table)
    print(f"wrote {args.out}/ (spread.json, equity.parquet, events.parquet, report.html)")
    return 0


#: Sets a grid's terminal table shows in full (the best and the worst by net); spread.json has all.
SHOWN_SETS = 5


def _print_spread(table: pd.DataFrame) -> None:
    from rich.console import Console
    from rich.table import Table

    grid = table["set"].nunique() > 1
    title = "Hedges across venues: what each coin and venue pair earned (quote)"
    if grid and table["set"].nunique() > 2 * SHOWN_SETS:  # the best and worst sets, by their trades' net
        own = table[~table.venue_a.isin(["widest"]) & ~table.venue_b.str.startswith("best of ")]
        mixed = len(own) < len(table)  # a strategy over venue pairs: its own rows are the trades
        by_set = (table[table.label.str.contains(" best of | widest of ")] if mixed else own).groupby("set").net.sum()
        ranked = by_set.sort_values(ascending=False, kind="stable").index
        keep = list(ranked[:SHOWN_SETS]) + list(ranked[-SHOWN_SETS:])
        title += f": the {SHOWN_SETS} best and {SHOWN_SETS} worst of {len(by_set)} sets by net (all in spread.json)"
        table = table[table.set.isin(keep)].assign(rank=lambda f: f.set.map({k: i for i, k in enumerate(keep)}))
        table = table.sort_values("rank", kind="stable")
    fx = bool((table["quote_fx"] != 0).any())  # a USDC venue valued at the catalog's rate
    borrow = bool((table["borrow"] != 0).any())  # a borrowed spot leg (a reverse carry)
    short = {"leverage": "lev.", "entry_annualized": "entry", "exit_annualized": "exit", "window_hours": "window h"}
    short |= {"min_hold_hours": "hold h", "switch_annualized": "switch"}
    varying = [k for k in short if k in table.columns and table[k].nunique() > 1]  # a grid's own axes
    t = Table(title=title)
    for h in ["set", *(short[k] for k in varying)] if grid else []:
        t.add_column(h, justify="right")
    heads = (
        "coin",
        "A",
        "B",
        "in trade",
        "funding A",
        "funding B",
        "fees",
        "transfers",
        *(["borrow"] if borrow else []),
        "basis",
        *(["quote fx"] if fx else []),
        "liq.",
        "net",
        "ann.",
    )
    for h in heads:
        t.add_column(h, justify="left" if h in ("coin", "A", "B") else "right")
    for r in table.itertuples():
        t.add_row(
            *([str(r.set), *(f"{getattr(r, k):g}" for k in varying)] if grid else []),
            r.coin,
            r.venue_a,
            r.venue_b,
            f"{r.in_trade:.0%}",
            f"{r.funding_a:,.2f}",
            f"{r.funding_b:,.2f}",
            f"{r.trading_fees + r.slippage:,.2f}",
            f"{r.transfer_fees:,.2f} ({r.transfers})",
            *([f"{r.borrow:,.2f}"] if borrow else []),
            f"{r.basis:,.2f}",
            *([f"{r.quote_fx:,.2f}"] if fx else []),
            f"{r.liquidation:,.2f} ({r.liquidations})",
            f"{r.net:,.2f}",
            f"{r.annualized:.2%}",
        )
    console = Console()
    if not console.is_terminal:  # a pipe or a file: the whole table, not an 80-column squeeze
        console = Console(width=220)
    console.print(t)

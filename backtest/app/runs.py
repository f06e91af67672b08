"""The application layer behind the CLI: run configs, strategy runs, and the calls that write them.

This module glues the layers together (data -> strategies -> engine -> reports). Run configs
(TOML and flags), loading a run's market, building its targets and its hash live here; the
figures, frames, report data and files are built by :mod:`reports` (``metrics``, ``frames``,
``report_data``, ``outputs``), called with the run's config.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from backtest.app.argtypes import flag_of, name_by_flag, plain
from backtest.config import BacktestConfig
from backtest.targets import Targets
from data.errors import ConfigError, DataError, check_known_keys
from data.market import Market


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
    funding_gaps: str = "error"  #: settlements missing inside a symbol's span: error, no_trade or zero
    allow_data_errors: tuple[str, ...] = ()  #: data-check names whose errors do not stop the run ("all": any)

    def load_options(self) -> dict:
        """The window and data policies as keyword arguments of :func:`backtest.load_market`
        (and of the scale-out tasks that load it themselves)."""
        return dict(
            start=self.start,
            end=self.end,
            freq=self.freq,
            venue=self.venue,
            gaps=self.gaps,
            funding_gaps=self.funding_gaps,
        )


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
    per_symbol: bool = False  #: every symbol its own portfolio (else a parameter set's symbols share capital)

    def to_dict(self) -> dict:
        return {
            "data": {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.data.__dict__.items()},
            "engine": self.engine.to_dict(),
            "strategies": [{"name": s.name, "params": s.params} for s in self.strategies],
            "walk_forward": self.walk_forward,
            "per_symbol": self.per_symbol,
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
    _check_shapes(raw, path)
    check_known_keys(raw.get("data", {}), _DATA_KEYS, f"{path} [data]")
    check_known_keys(raw.get("strategy", {}), ("name", "params"), f"{path} [strategy]")
    check_known_keys(raw.get("compare", {}), ("strategies", "params"), f"{path} [compare]")
    check_known_keys(raw.get("sweep", {}), ("grid", "walk_forward", "per_symbol"), f"{path} [sweep]")
    BacktestConfig.from_dict(raw.get("engine", {}))  # unknown keys and bad units fail here
    return raw


def _names(value: object) -> list[str] | None:
    """A list of names from a TOML value: a list of strings, or one comma-separated string."""
    if isinstance(value, str):
        return [s.strip() for s in value.split(",") if s.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _check_shapes(raw: dict, path: Path) -> None:
    """Tables are tables, names are strings: a one-line ConfigError naming the key otherwise."""

    def table(value: object, where: str) -> dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: {where} must be a table, got {type(value).__name__} {value!r}")
        return value

    for key in _TOP_KEYS:
        if key in raw:
            table(raw[key], f"[{key}]")
    data = raw.get("data", {})
    if "symbols" in data and not _names(data["symbols"]):
        raise ConfigError(f"{path} [data] symbols: a list of symbols or 'BTCUSDT,ETHUSDT', got {data['symbols']!r}")
    if "strategy" in raw:
        strat = raw["strategy"]
        if not isinstance(strat.get("name"), str) or not strat["name"]:
            raise ConfigError(f'{path} [strategy] needs name = "STRATEGY" (see `carry strategies`)')
        table(strat.get("params", {}), "[strategy] params")
    compare = raw.get("compare", {})
    if "strategies" in compare and _names(compare["strategies"]) is None:
        raise ConfigError(
            f"{path} [compare] strategies: a list of strategy names or 'a,b', got {compare['strategies']!r}"
        )
    for name, params in table(compare.get("params", {}), "[compare] params").items():
        table(params, f"[compare.params.{name}]")
    table(raw.get("sweep", {}).get("grid", {}), "[sweep] grid")


def build_run_config(
    toml: dict | None = None,
    *,
    data_overrides: dict | None = None,
    engine_overrides: dict | None = None,
    strategies: list[StrategySpec] | None = None,
    walk_forward: str | None = None,
    per_symbol: bool | None = None,
) -> RunConfig:
    """Merge a run config file with command-line overrides (flags win).

    A refused engine setting is named by the flag it came from when it came from its own flag
    (``--slippage-bps 1e+06 (slippage_bps): ...``; :func:`backtest.app.argtypes.name_by_flag`),
    and a leverage beyond any plausible value names the maximum of the tiers file, if one is
    given."""
    toml = toml or {}
    data = dict(toml.get("data", {}))
    data.update({k: v for k, v in (data_overrides or {}).items() if v is not None})
    if isinstance(data.get("symbols"), str):
        data["symbols"] = [s.strip().upper() for s in data["symbols"].split(",") if s.strip()]
    data["symbols"] = tuple(data.get("symbols", ()))
    allow = data.get("allow_data_errors", ())
    if isinstance(allow, str):
        allow = [s.strip() for s in allow.split(",") if s.strip()]
    if not isinstance(allow, (list, tuple)) or not all(isinstance(a, str) for a in allow):
        raise ConfigError(f"[data] allow_data_errors: a list of check names or 'a,b', got {allow!r}")
    data["allow_data_errors"] = tuple(allow)
    if not data["symbols"]:
        raise ConfigError("no symbols: pass --symbols BTCUSDT,ETHUSDT or set symbols in the [data] table")
    for k in ("start", "end"):
        if data.get(k) is not None:
            data[k] = str(data[k])
    engine = dict(toml.get("engine", {}))
    overrides = {k: v for k, v in (engine_overrides or {}).items() if v is not None}
    flags = {k: f for k, v in overrides.items() if (f := flag_of(v))}  # settings given by their own flag
    engine.update({k: plain(v) for k, v in overrides.items()})
    engine = {**venue_fee_defaults(data.get("venue") or DataSpec.venue), **engine}
    try:
        engine_cfg = BacktestConfig.from_dict(engine)
    except ConfigError as exc:
        raise _with_tiers_maximum(name_by_flag(exc, flags, engine), engine, data["symbols"]) from None
    if strategies is None:
        strategies = []
        if "strategy" in toml:
            strategies.append(StrategySpec(toml["strategy"]["name"], dict(toml["strategy"].get("params", {}))))
        for name in _names(toml.get("compare", {}).get("strategies", [])) or []:
            strategies.append(StrategySpec(name, dict(toml.get("compare", {}).get("params", {}).get(name, {}))))
    if not strategies:
        raise ConfigError("no strategy: pass --strategy NAME or set [strategy] name in the config")
    wf = walk_forward or toml.get("sweep", {}).get("walk_forward")
    per = per_symbol if per_symbol is not None else toml.get("sweep", {}).get("per_symbol", False)
    if not isinstance(per, bool):
        raise ConfigError(f"[sweep] per_symbol: true or false, got {per!r}")
    return RunConfig(DataSpec(**data), engine_cfg, tuple(strategies), wf, per)


def venue_fee_defaults(venue: str) -> dict[str, float]:
    """The fee settings a run on ``venue`` takes where neither its config file nor a flag sets
    them: the venue's current base-tier schedule (the last period of ``data/venues/<venue>.toml``,
    :mod:`data.venues`; Binance's is carry's defaults: spot 0.1%, perp 0.05% taker and 0.02%
    maker). Earlier schedules of the file are not applied to older windows (a run has one fee
    per setting); a venue without a rules file keeps carry's defaults (``{}``)."""
    from data.venues import known_venues, venue_rules

    if venue not in known_venues():
        return {}
    return venue_rules(venue).fees[-1].as_config()


def _with_tiers_maximum(exc: ConfigError, engine: dict, symbols: tuple[str, ...]) -> ConfigError:
    """A refused leverage's message with the highest leverage the run's tiers file allows."""
    path = engine.get("tiers_path")
    if "perp_leverage" not in str(exc) or not path:
        return exc
    from backtest.tiers import load_tiers
    from data.errors import CarryError

    try:
        limits = load_tiers(path, list(symbols)).max_leverages()
    except (CarryError, OSError):
        return exc
    if not len(limits) or not (limits < float("inf")).any():
        return exc
    i = int(limits.argmax())
    return ConfigError(f"{exc}; the tiers file {path} allows at most {limits[i]:g}x ({symbols[i]}'s top bracket)")


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
        market = load_market(cfg.data.catalog, list(cfg.data.symbols), **cfg.data.load_options())
    if market.n_bars < 2 or not market.valid.any():
        raise ConfigError(
            f"no usable bars for {', '.join(cfg.data.symbols)} between {cfg.data.start or 'the start'} and "
            f"{cfg.data.end or 'the end'} in {cfg.data.catalog}"
        )
    return market


#: Data-check warnings that stop a run covering them: a wick far beyond the bar's body is kept as
#: recorded at ingest, but liquidations are checked against highs and lows.
RUN_BLOCKING_WARNINGS = ("price_wick",)


def check_run_data(cfg: RunConfig, window: tuple[pd.Timestamp, pd.Timestamp] | None = None) -> list[dict]:
    """Run the catalog checks of ``carry data check`` on the run's symbols before it runs.

    Errors (``data.quality.check_catalog``: unreadable files, duplicates, NaN or non-positive
    prices, OHLC breaks, bad ticks, funding beyond +/-3% per interval or stored in the wrong
    unit or timezone, spot and perp systematically apart) and the warnings of
    :data:`RUN_BLOCKING_WARNINGS` stop the run with a :class:`DataError` naming the series, the
    check, the column, the catalog file and row of the first occurrence
    (:func:`data.quality.locate`) and the first rows' times, unless the check is named in
    ``allow_data_errors`` (``"all"``: any). A problem with one occurrence outside ``window`` (the run's ``[start, end)``) does not
    concern the run. Returns the problems allowed through, as dicts, for ``summary.json`` and
    the report."""
    from dataclasses import asdict

    from data.catalog import Catalog
    from data.quality import check_catalog, locate

    def concerns(p) -> bool:
        if window is None or p.time is None or p.count != 1:
            return True
        return bool(window[0] <= pd.Timestamp(p.time) < window[1])

    catalog = Catalog(cfg.data.catalog)
    problems = [
        p
        for p in check_catalog(catalog, list(cfg.data.symbols))
        if (p.severity == "error" or p.check in RUN_BLOCKING_WARNINGS)
        and p.check != "leftover"  # a stray file of an interrupted write is not data
        and concerns(p)
    ]
    allowed = set(cfg.data.allow_data_errors)
    blocking = [p for p in problems if p.check not in allowed and "all" not in allowed]
    if blocking:
        listed = "; ".join(
            f"{p.series}: {p.check}" + (f" ({where})" if (where := locate(catalog, p)) else "") + f": {p.message}"
            for p in blocking[:3]
        )
        more = f"; and {len(blocking) - 3} more" if len(blocking) > 3 else ""
        checks = ",".join(sorted({p.check for p in blocking}))
        raise DataError(
            f"the data check found {len(blocking)} error(s) in {cfg.data.catalog} for {', '.join(cfg.data.symbols)}: "
            f"{listed}{more}. Repair the source (carry data check {cfg.data.catalog} lists them), or pass "
            f"--allow-data-errors {checks} to run anyway (recorded in summary.json and the report)"
        )
    return [asdict(p) for p in problems]


def build_targets(
    market: Market, specs: tuple[StrategySpec, ...] | list[StrategySpec], per_symbol: bool = False
) -> Targets:
    """Every strategy (and every parameter set of a grid) as separate portfolios, side by side;
    with ``per_symbol`` every symbol of a parameter set is its own portfolio
    (:meth:`backtest.targets.Targets.per_symbol`)."""
    from strategies import parse_params, run_strategy

    parts = []
    for spec in specs:
        params = spec.params
        if params and all(isinstance(v, str) for v in params.values()):
            params = parse_params(spec.name, params)
        parts.append(run_strategy(spec.name, market, params or None))
    targets = Targets.concat(parts) if len(parts) > 1 else parts[0]
    return targets.per_symbol() if per_symbol else targets


# --------------------------------------------------------------------------- outputs
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


def engine_table(engine: dict) -> dict:
    """The engine settings as a config file writes them: a setting turned off (None) whose
    default is on is written as ``"none"`` (TOML has no null; a missing key means the default)."""
    from backtest.config import OPTIONAL_NUMBERS, BacktestConfig

    defaults = BacktestConfig().to_dict()
    return {
        k: "none" if (v is None and k in OPTIONAL_NUMBERS and defaults.get(k) is not None) else v
        for k, v in engine.items()
    }


def effective_toml(cfg: RunConfig) -> str:
    """The run's effective config as a TOML file that ``--config`` reads back."""
    data = cfg.to_dict()
    doc: dict = {
        "data": {k: v for k, v in data["data"].items() if v is not None},
        "engine": engine_table(data["engine"]),
    }
    specs = cfg.strategies
    if len(specs) == 1:
        doc["strategy"] = {"name": specs[0].name, "params": _plain(specs[0].params)}
    else:
        doc["compare"] = {
            "strategies": [s.name for s in specs],
            "params": {s.name: _plain(s.params) for s in specs if s.params},
        }
    sweep = {k: v for k, v in (("walk_forward", cfg.walk_forward), ("per_symbol", cfg.per_symbol)) if v}
    if sweep:
        doc["sweep"] = sweep
    return to_toml(doc)


def _plain(params: dict) -> dict:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}


# --------------------------------------------------------------------------- report and files
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
):
    """The :class:`~reports.html.ReportData` of a run (:func:`reports.report_data.report_data`
    with the run's engine config and hash)."""
    from backtest.app.verbosity import stage
    from reports.report_data import report_data as build

    with stage("report data"):
        return build(
            title,
            market,
            targets,
            result,
            portfolios,
            columns,
            engine=cfg.engine,
            run_id=run_hash(cfg),
            ranking_by=ranking_by,
            heatmaps=heatmaps,
            extra_tables=extra_tables,
        )


def summary_header(cfg: RunConfig) -> dict:
    """The first keys of summary.json: carry version, run and engine config hashes, the config."""
    return {
        "carry_version": _version(),
        "run_hash": run_hash(cfg),
        "config_hash": cfg.engine.config_hash(),
        "config": cfg.to_dict(),
    }


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
    frames: dict | None = None,
    full_outputs: bool | None = None,
) -> Path:
    """Write summary.json, config.toml, equity/components/events Parquet and report.html, and
    ``frames`` (file name -> DataFrame, as Parquet), atomically
    (:func:`reports.outputs.write_run_outputs`; ``full_outputs`` None: lean when large)."""
    from reports.outputs import write_run_outputs

    return write_run_outputs(
        out,
        header=summary_header(cfg),
        config_toml=effective_toml(cfg),
        market=market,
        targets=targets,
        result=result,
        portfolios=portfolios,
        columns=columns,
        report=report,
        overwrite=overwrite,
        extra=extra,
        frames=frames,
        full_outputs=full_outputs,
    )


def _version() -> str:
    from backtest import __version__

    return __version__

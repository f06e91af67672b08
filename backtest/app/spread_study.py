"""``carry spread``'s study: load the venue pairs, decide each parameter set's targets, run the
spread engine, here or spread over processes or a Dask cluster, with the same figures.

A *study* (:class:`SpreadStudy`, picklable, no arrays) names what is loaded: the catalog, the
venues, the coins, the window and the bar length, which leg A is (perp or spot), the strategy
and the engine and spread settings. A *parameter set* (:class:`SpreadSet`) is one point of the
grid: the strategy's thresholds and the perps' leverage. Every (parameter set, coin, venue pair)
is one column of the spread engine and its own portfolio (:func:`backtest.spread.run_spread`;
with ``margin_mode="cross"`` a set's coins on a pair are one portfolio sharing each venue's
account), so a study splits over tasks by parameter sets without changing a figure: a task
(:class:`SpreadTask`) loads the pairs from the catalog itself, decides its sets' targets, runs
each pair's columns in one engine call (the grid in one kernel call) and returns its rows,
curves, events and notes (:class:`SpreadParts`); the driver joins the parts in set order
(:func:`run_study`). Processes and Dask compute exactly what one process computes (tested
cell by cell).

Strategies that pick among venues (``funding_spread`` over three venues or more,
``best_venue_carry``) compare the venues bar by bar, so the driver first fixes one window where
every venue trades (:func:`resolve_window`) and every task loads that window.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from data.errors import ConfigError

#: The strategy parameters a spread grid may vary (``carry spread --entry 0.05,0.1`` ...).
STRATEGY_FIELDS = ("entry_annualized", "exit_annualized", "window_hours", "min_hold_hours", "switch_annualized")


@dataclass(frozen=True)
class SpreadSet:
    """One point of a spread study's grid: the strategy's parameters and the perps' leverage."""

    index: int  #: position in the study's grid (rows and labels are numbered by it)
    strategy: dict  #: :data:`STRATEGY_FIELDS` values (empty for ``hold``)
    leverage: float  #: ``perp_leverage`` of the set's columns


@dataclass(frozen=True)
class SpreadStudy:
    """What a spread study loads and how it trades (see the module docstring); picklable."""

    catalog: str
    venues: tuple[str, ...]
    coins: tuple[str, ...]
    start: str | None
    end: str | None
    freq: str
    funding_gaps: str
    leg_a: str  #: ``perp`` or ``spot``
    strategy: str  #: ``funding_spread``, ``hold`` or ``best_venue_carry``
    config: dict  #: :class:`backtest.config.BacktestConfig` as a dict
    spread: dict  #: :class:`backtest.config.SpreadConfig` as a dict
    quote_rate: str = "auto"  #: ``auto`` (the catalog's USDCUSDT rate where stored) or ``parity`` (1:1)
    direction: str = "carry"  #: ``hold``'s side: ``carry`` (+1: long A) or ``reverse`` (-1: short A, borrowed if spot)

    @property
    def pairs(self) -> list[tuple[str, str]]:
        """The venue pairs traded: the first venue's spot against each other venue's perp, or every pair of perps."""
        v = self.venues
        if self.leg_a == "spot":
            return [(v[0], b) for b in v[1:]]
        return [(a, b) for k, a in enumerate(v) for b in v[k + 1 :]]

    @property
    def picking(self) -> bool:
        """Whether the strategy picks one venue pair per coin at a time (it then needs one window)."""
        return self.strategy == "best_venue_carry" or (self.strategy == "funding_spread" and len(self.venues) > 2)


@dataclass
class SpreadParts:
    """What a study (or a task's part of it) computed, in set order; each row, curve and
    component frame is labelled ``"<coin> <A>/<B>"`` (``" #<set>"`` appended in a grid)."""

    rows: list[pd.DataFrame] = field(default_factory=list)
    curves: dict[str, pd.Series] = field(default_factory=dict)
    events: list[pd.DataFrame] = field(default_factory=list)
    components: dict[str, pd.DataFrame] = field(default_factory=dict)
    ratios: list[pd.DataFrame] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    def add_note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def extend(self, other: SpreadParts) -> None:
        self.rows += other.rows
        self.curves.update(other.curves)
        self.events += other.events
        self.components.update(other.components)
        self.ratios += other.ratios
        for n in other.notes:
            self.add_note(n)
        self.flags = list(dict.fromkeys([*self.flags, *other.flags]))


@dataclass(frozen=True)
class SpreadTask:
    """Some parameter sets of a study (picklable): what one worker computes."""

    task_id: int
    study: SpreadStudy
    sets: tuple[SpreadSet, ...]
    grid: bool  #: whether the study has more than one set (labels and rows then name the set)

    @property
    def catalog(self) -> str:  # (the Dask runner's task key)
        return self.study.catalog

    @property
    def symbols(self) -> tuple[str, ...]:
        return self.study.coins


def expand_sets(strategy: dict[str, list], leverages: list[float]) -> list[SpreadSet]:
    """The grid's parameter sets: every combination of the strategy values (in
    :data:`STRATEGY_FIELDS` order, the last varying fastest) for each leverage (outermost)."""
    import itertools

    names = [n for n in STRATEGY_FIELDS if n in strategy]
    combos = list(itertools.product(*(strategy[n] for n in names)))
    out: list[SpreadSet] = []
    for lev in leverages:
        for combo in combos:
            out.append(SpreadSet(len(out), dict(zip(names, combo)), float(lev)))
    return out


def _load(study: SpreadStudy) -> tuple[dict, list[str]]:
    """Every venue pair of the study on its window, and the data warnings' text."""
    from data.catalog import Catalog
    from data.loader import DataWarning
    from data.venue_pair import load_venue_pair

    catalog = Catalog(study.catalog)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        pairs = {
            (va, vb): load_venue_pair(
                catalog,
                list(study.coins),
                va,
                vb,
                study.start,
                study.end,
                study.freq,
                funding_gaps=study.funding_gaps,
                leg_a=study.leg_a,
                quote_rate=study.quote_rate,
            )
            for va, vb in study.pairs
        }
    return pairs, list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, DataWarning)))


def resolve_window(study: SpreadStudy) -> tuple[SpreadStudy, list[str]]:
    """The study with a fixed window where every venue trades when its strategy picks among
    venues and the window is open at either end (and a note saying so); else unchanged."""
    if not study.picking or (study.start is not None and study.end is not None):
        return study, []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        spans = [p.index for p in _load(study)[0].values()]
    step = spans[0][1] - spans[0][0] if len(spans[0]) > 1 else pd.Timedelta(hours=1)
    start = pd.Timestamp(study.start) if study.start else max(s[0] for s in spans)
    end = pd.Timestamp(study.end) if study.end else min(s[-1] for s in spans) + step
    if start >= end:
        raise ConfigError(f"the venues {', '.join(study.venues)} have no common window for {', '.join(study.coins)}")
    note = f"one window for every venue: {start} to {end} UTC"
    return replace(study, start=start.isoformat(), end=end.isoformat()), [note]


def _targets(study: SpreadStudy, pairs: dict, s: SpreadSet, config) -> tuple[dict, list[str], tuple | None]:
    """One set's targets per venue pair (a float or a (T, N) array), the strategy's notes and,
    for a strategy that picks among venues, its one hedge per coin: ``(legs_a, legs_b, x,
    venue_a, venue_b)`` (:func:`strategies.venue_schedule`)."""
    import strategies
    from backtest.spread import venue_fee

    if study.strategy == "hold":
        return {key: (-1.0 if study.direction == "reverse" else 1.0) for key in pairs}, [], None

    def fee(market, kind: str) -> float:
        # the strategy's hurdle: a venue's fee at the window's first bar (the engine charges each fill its bar's)
        return venue_fee(market, config.order_type, config, kind)[0]

    venues = list(study.venues)
    if study.strategy == "funding_spread":  # per coin the widest pair after fees, one at a time
        perps: dict = {}
        for p in pairs.values():
            perps.setdefault(p.venues[0], p.leg_a)
            perps.setdefault(p.venues[1], p.leg_b)
        params = strategies.FundingSpreadParams(**s.strategy)
        picked = strategies.funding_spread_pairs(
            [perps[v] for v in venues], params, [fee(perps[v], "perp") for v in venues]
        )
        notes, hedge = [], None
        if len(venues) > 2:
            notes.append(_switch_note(study))
            legs = [perps[v] for v in venues]
            hedge = (legs, legs, *strategies.venue_schedule(picked))
        return {(venues[i], venues[k]): x for (i, k), x in picked.items()}, notes, hedge
    keys = list(pairs)
    first = pairs[keys[0]]
    xs = strategies.best_venue_carry(
        [pairs[k].leg_b for k in keys],
        strategies.BestVenueCarryParams(**s.strategy),
        [fee(pairs[k].leg_b, "perp") for k in keys],
        fee(first.leg_a, "spot"),
    )
    hedge = (
        [first.leg_a],
        [pairs[k].leg_b for k in keys],
        *strategies.venue_schedule({(0, v): x for v, x in enumerate(xs)}, orient=False),
    )
    return dict(zip(keys, xs)), [_switch_note(study)], hedge


def _switch_note(study: SpreadStudy) -> str:
    """What the strategy's own rows are when it picks among venues (the notes say it)."""
    keep = study.spread.get("switch_keeps_leg", True)
    return (
        "a strategy that picks among venues: each pair's row is that pair traded alone, on its own capital, while "
        "the strategy held it; the strategy's own row (widest of / best of) is one hedge per coin on one capital, "
        "its legs moving venue at a switch: the leg leaving a venue closes there, that venue's wallet is sent to "
        "the new one (a transfer, its fee and delay), the hedge re-sizes there on arrival; "
        + (
            "a leg that keeps its venue and side (the spot) stays open meanwhile, unhedged (its 'unhedged' field; "
            "--switch-closes-both closes it too)"
            if keep
            else "the leg that keeps its venue closes too (--switch-closes-both) and reopens on arrival"
        )
    )


def set_label(s: SpreadSet, grid: bool) -> str:
    """The suffix that names a set in labels: empty for a single set, ``" #k"`` in a grid."""
    return f" #{s.index}" if grid else ""


def run_sets(study: SpreadStudy, sets: list[SpreadSet] | tuple[SpreadSet, ...], grid: bool) -> SpreadParts:
    """Run ``sets`` of ``study``: per venue pair, every set's columns in one engine call."""
    from backtest.config import BacktestConfig, SpreadConfig
    from backtest.spread import run_spread
    from data.loader import DataWarning
    from reports.spread_run import spread_rows

    parts = SpreadParts()
    pairs, said = _load(study)
    for text in said:
        parts.add_note(text)
    config = BacktestConfig.from_dict(study.config)
    spread = SpreadConfig(**study.spread)
    per_set, hedges = [], []
    for s in sets:
        targets, notes, hedge = _targets(study, pairs, s, config)
        per_set.append(targets)
        hedges.append(hedge)
        for n in notes:
            parts.add_note(n)
    # the strategy's own hedges first (their kernel compiles while another process may compile
    # the pairs' one: ``carry compile`` runs both at once), added after the pairs' rows
    switched = _run_switching(study, sets, hedges, config, spread, pairs) if study.picking else None
    for (va, vb), pair in pairs.items():
        T, N = pair.leg_a.shape
        values = np.hstack([np.broadcast_to(np.asarray(t[(va, vb)], float), (T, N)) for t in per_set])
        tg = _grid_targets(
            values, pair.leg_a.symbols, sets, study.strategy, cross=any(spread.cross(config.margin_mode))
        )
        leverage = np.repeat([s.leverage for s in sets], N)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            res = run_spread(
                pair.leg_a,
                pair.leg_b,
                tg,
                config,
                spread,
                column_params={"perp_leverage": leverage},
                quote_rates=pair.quote_rates,
            )
        for w in caught:
            parts.add_note(str(w.message))
        # (the pair's own note already says when the quotes differ)
        for n in res.notes:
            if not n.startswith("leg A ("):
                parts.add_note(f"{va}/{vb}: {n}")
        parts.flags = list(dict.fromkeys([*parts.flags, *res.flags, *pair.flags]))
        table = spread_rows(res, study.strategy)
        _add_run(parts, res, table, sets, grid, f"{va}/{vb}", va, vb)
    if study.picking:
        _add_switching(study, sets, hedges, grid, switched, parts)
    parts.rows = [pd.concat(parts.rows, ignore_index=True).sort_values(["set"], kind="stable", ignore_index=True)]
    return parts


def _run_switching(study: SpreadStudy, sets, hedges: list, config, spread, pairs: dict):
    """The strategy's own hedges when it picks among venues: one per (set, coin) on one capital
    whose legs switch venues (``run_spread(..., venues=...)``), in one engine call; each venue
    valued at the quote rate its pairs use (the catalog's, where one is stored)."""
    from backtest.spread import run_spread

    legs_a, legs_b = hedges[0][0], hedges[0][1]
    rate_of = {id(p.leg_a): p.quote_rates.get("A") for p in pairs.values()}
    rate_of.update({id(p.leg_b): p.quote_rates.get("B") for p in pairs.values()})
    rates = {side: [rate_of.get(id(m)) for m in legs] for side, legs in (("A", legs_a), ("B", legs_b))}
    N = legs_a[0].n_symbols
    x, va, vb = (np.hstack([h[k] for h in hedges]) for k in (2, 3, 4))
    tg = _grid_targets(x, legs_a[0].symbols, sets, study.strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (the pairs' runs said it)
        res = run_spread(
            legs_a,
            legs_b,
            tg,
            config,
            spread,
            column_params={"perp_leverage": np.repeat([s.leverage for s in sets], N)},
            venues=(va, vb),
            quote_rates={side: r for side, r in rates.items() if any(f is not None for f in r)},
        )
    return res


def _add_switching(study: SpreadStudy, sets, hedges: list, grid: bool, res, parts: SpreadParts) -> None:
    """The rows, curves, parts and events of :func:`_run_switching`'s hedges (``widest`` /
    ``best of``)."""
    from reports.spread_run import spread_rows

    legs_a, legs_b = hedges[0][0], hedges[0][1]
    parts.flags = list(dict.fromkeys([*parts.flags, *res.flags]))
    table = spread_rows(res, study.strategy)
    spot = study.strategy == "best_venue_carry"
    label = "best of" if spot else "widest of"
    names = "/".join(m.venue for m in legs_b)
    table["venue_a"] = legs_a[0].venue if spot else "widest"
    table["venue_b"] = f"{label} {names}" if spot else names
    table["strategy"] = f"{study.strategy} (all venues)"
    _add_run(parts, res, table, sets, grid, f"{label} {names}", table.venue_a.iloc[0], table.venue_b.iloc[0])


def _grid_targets(values: np.ndarray, symbols, sets, strategy: str, cross: bool = False):
    """A grid's targets: every set's columns (one per coin) side by side, each its own portfolio
    (``cross``: each set's coins one portfolio, sharing one account per venue)."""
    from backtest.targets import Targets

    n = len(symbols)
    cols = len(sets) * n
    names = pd.DataFrame({"strategy": strategy, "symbol": np.tile(list(symbols), len(sets))})
    group = np.repeat(np.arange(len(sets)), n) if cross else np.arange(cols)
    return Targets(values, np.tile(np.arange(n), len(sets)), group, names.assign(group=group))


def _add_run(parts: SpreadParts, res, table: pd.DataFrame, sets, grid: bool, name: str, venue_a, venue_b) -> None:
    """One engine call's rows (``table``, one per set and coin), curves, parts, margin ratios
    and events into ``parts``, labelled ``<coin> <name>[ #set]``."""
    from reports.spread_run import trade_components

    n = len(table) // len(sets)
    labels = [f"{coin} {name}{set_label(sets[c // n], grid)}" for c, coin in enumerate(table.coin)]
    table = _with_set(table, [sets[c // n] for c in range(len(table))], labels)
    parts.rows.append(table)
    for c, label in enumerate(labels):
        parts.curves[label] = res.equity[c].rename(label)
    comps, ratio = trade_components(res, labels)
    parts.components.update(comps)
    parts.ratios.append(ratio)
    col = res.events.column
    ev = res.events.assign(coin=table.coin.to_numpy()[col], set=table.set.to_numpy()[col])
    parts.events.append(ev.drop(columns="column").assign(venue_a=venue_a, venue_b=venue_b))
    _add_portfolios(parts, res, table, sets, grid, name, ratio)


def _add_portfolios(parts: SpreadParts, res, table: pd.DataFrame, sets, grid: bool, name: str, ratio) -> None:
    """In cross margin per venue, each set's portfolio of coins (``BTC+ETH``; group ``g`` is set
    ``sets[g]``, :func:`_grid_targets`): its row (:func:`reports.spread_run.portfolio_rows`), its
    equity (its coins' sum), its PnL by part and its worst margin ratio, labelled
    ``<coins> <name>[ #set]``."""
    from reports.spread_run import portfolio_rows

    rows = portfolio_rows(table, res)
    if rows.empty:
        return
    group = res.columns["group"].to_numpy()
    groups = [g for g in dict.fromkeys(group.tolist()) if (group == g).sum() > 1]
    picked = [sets[g] for g in groups]
    labels = [f"{coin} {name}{set_label(s, grid)}" for coin, s in zip(rows.coin, picked)]
    parts.rows.append(_with_set(rows, picked, labels))
    for g, label in zip(groups, labels):
        members = list(table.label.iloc[np.flatnonzero(group == g)])
        parts.curves[label] = sum(parts.curves[m] for m in members).rename(label)
        parts.components[label] = sum(parts.components[m] for m in members)
        parts.ratios.append(ratio[members].max(axis=1).rename(label).to_frame())


def _with_set(rows: pd.DataFrame, sets: list[SpreadSet], labels: list[str]) -> pd.DataFrame:
    """``rows`` (one per column) with each one's set: ``set`` first, then the rows' fields, the
    set's ``leverage`` and strategy parameters and the row's ``label``."""
    out = rows.copy()
    out.insert(0, "set", [s.index for s in sets])
    out["leverage"] = [s.leverage for s in sets]
    for name in sets[0].strategy if sets else ():
        out[name] = [s.strategy[name] for s in sets]
    out["label"] = labels
    return out


def run_spread_task(task: SpreadTask) -> tuple[int, SpreadParts]:
    """One worker's part of a study: ``(task_id, parts)``."""
    from backtest.app.memory import configure_hugepages

    configure_hugepages()
    return task.task_id, run_sets(task.study, task.sets, task.grid)


def run_study(
    study: SpreadStudy,
    sets: list[SpreadSet],
    *,
    workers: int | None = None,
    scheduler: Any = None,
    param_chunk: int | None = None,
    retries: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[SpreadParts, str, int]:
    """The whole study: ``(parts, mode, number of tasks)``; here (mode ``serial``), on a pool of
    ``workers`` processes or on a Dask ``scheduler`` (tasks of ``param_chunk`` sets, else about
    two per worker), the parts joined in set order: the same rows, curves and events wherever
    they were computed."""
    from backtest.app.scale.executors import run_tasks

    if not sets:
        raise ConfigError("a spread study needs at least one parameter set")
    study, notes = resolve_window(study)
    grid = len(sets) > 1
    slots = max(1, int(workers or 1)) if scheduler is None else 2
    if scheduler is None and slots == 1 and not param_chunk:
        parts = run_sets(study, sets, grid)
        mode, n_tasks = "serial", 1
    else:
        size = param_chunk or math.ceil(len(sets) / min(len(sets), 2 * slots))
        tasks = [SpreadTask(k, study, tuple(sets[i : i + size]), grid) for k, i in enumerate(range(0, len(sets), size))]
        results, mode = run_tasks(run_spread_task, tasks, workers, scheduler, retries, progress)
        by_id = dict(results)
        parts = SpreadParts()
        for t in tasks:
            parts.extend(by_id[t.task_id])
        parts.rows = [pd.concat(parts.rows, ignore_index=True)]
        n_tasks = len(tasks)
    parts.notes = list(dict.fromkeys([*notes, *parts.notes]))
    return _in_row_order(parts, study), mode, n_tasks


def _in_row_order(parts: SpreadParts, study: SpreadStudy) -> SpreadParts:
    """The curves, components and margin ratios in the rows' order (set, then venue pair, then
    coin) and the events by set and venue pair (each pair's in bar order): one order whichever
    tasks computed them."""
    labels = [label for label in parts.rows[0]["label"] if label in parts.curves]
    ratio = pd.concat(parts.ratios, axis=1) if parts.ratios else None
    pair_rank = {pair: k for k, pair in enumerate(study.pairs)}
    events = pd.concat(parts.events, ignore_index=True) if parts.events else pd.DataFrame()
    if len(events):
        # (the strategy's own hedges, on every venue, after the pairs)
        rank = np.array([pair_rank.get((a, b), len(pair_rank)) for a, b in zip(events.venue_a, events.venue_b)])
        order = np.lexsort((rank, events["set"].to_numpy()))
        events = events.iloc[order].reset_index(drop=True)
        for name in ("coin", "venue_a", "venue_b"):  # (in order of appearance: one dtype wherever they came from)
            text = events[name].astype(str).to_numpy()
            events[name] = pd.Categorical(text, categories=pd.unique(text))
    return replace(
        parts,
        curves={label: parts.curves[label] for label in labels},
        components={label: parts.components[label] for label in labels if label in parts.components},
        ratios=[] if ratio is None else [ratio[labels]],
        events=[events],
    )

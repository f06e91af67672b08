"""Look-ahead check for any strategy: does a target depend on data from after its bar?

A target at bar ``i`` is decided at bar ``i``'s close from row ``i`` of the market and the rows
before it (funding in ``funding_rate[i]`` settles at that close); the engine executes it at bar
``i + 1``'s open. A strategy *looks ahead* when a target (or a capital weight) at a bar ``<= t``
changes when the data after bar ``t`` changes, or when the data ends at ``t``.

:func:`check_lookahead` runs the strategy on the whole market, then, at several cut bars ``t``,
on two copies and compares bars ``0..t`` of every column (NaN, "keep", equals NaN):

* **truncation**: the market ending at bar ``t`` (:func:`truncate_after`): catches strategies
  that use the end of the data (a full-sample mean, a "last bar" rule, ``np.roll``);
* **perturbation**: the market identical up to bar ``t`` with every per-bar array after ``t``
  replaced by random but consistent data (:func:`perturb_after`): catches strategies that read
  the next bar, the next settlement or the next close.

::

    from strategies.lookahead import check_lookahead
    report = check_lookahead("funding_threshold", market, {"entry_annualized": [0.05, 0.1]})
    print(report)            # one-line verdict, then details
    report.clean             # False when a difference was found; report.first says where

A clean report proves the strategy's targets on *this* data do not move with the future at the
cuts checked; a strategy that never trades (every target 0 or NaN) proves little (``trades``).
The command line runs it as ``carry check-strategy``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from backtest.targets import Targets
from data.errors import CarryError, ConfigError, check_choice
from data.market import NO_FUNDING_TIME, PRICE_FIELDS, Market
from data.units import bar_hours, to_timestamp
from strategies.registry import as_strategy
from strategies.runner import expand_params, run_strategy

__all__ = [
    "MIN_BARS",
    "PROBES",
    "LookaheadDifference",
    "LookaheadReport",
    "check_lookahead",
    "cut_bars",
    "perturb_after",
    "truncate_after",
]

#: The shortest market the check accepts: cuts need bars on both sides.
MIN_BARS = 10
#: The probes run at every cut, in the order a tie on the first differing bar is reported.
PROBES = ("truncation", "perturbation")
_PROBE_TEXT = {
    "truncation": "the data ends at bar {t} ({time})",
    "perturbation": "the bars after bar {t} ({time}) are replaced with random data",
}


def _time_text(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%d %H:%M UTC") if ts.tz is not None else str(ts)


def _value_text(v: float) -> str:
    return "NaN (keep)" if np.isnan(v) else f"{v:.6g}"


# --------------------------------------------------------------------------- market copies
def truncate_after(market: Market, t: int) -> Market:
    """``market`` ending at bar ``t`` (bars ``0..t`` kept): ``market.select(end=index[t + 1])``."""
    t = _check_bar(market, t, "truncate_after")
    if t == market.n_bars - 1:
        return market
    return market.select(end=market.index[t + 1])


def _check_bar(market: Market, t: Any, what: str) -> int:
    if isinstance(t, (bool, np.bool_)) or not isinstance(t, (int, np.integer)):
        raise ConfigError(f"{what}: bar must be a whole number (a row of the market), got {t!r}")
    if not 0 <= int(t) < market.n_bars:
        raise ConfigError(f"{what}: bar {t} is outside the market's bars 0..{market.n_bars - 1}")
    return int(t)


def perturb_after(market: Market, t: int, seed: int = 0) -> Market:
    """A copy of ``market`` identical up to bar ``t``, every per-bar array after ``t`` replaced.

    Index, symbols, multipliers, freq, venue, notes and flags stay. After bar ``t``: ``valid``,
    ``tradable`` and ``mark_fallback`` are random masks; prices are random, positive and
    consistent (``low <= open, close <= high``; perp near spot, mark near perp), on invalid bars
    forward-filled flat from the previous close (``filled``) or NaN, following the market's own
    convention for gaps; settlements are random (``funding_count`` 0 or 1, a random
    ``funding_rate``, ``funding_value = rate * mark``, a 1/4/8 h interval, ``funding_time_ms`` at
    the bar's close); borrow rates and volumes random. Bar ``t + 1`` always differs from the
    original: its settlement flag and masks are the original's negated, so a strategy that peeks
    one bar ahead sees a change. The copy is built with :func:`dataclasses.replace`, so
    :class:`~data.market.Market` validates it.
    """
    t = _check_bar(market, t, "perturb_after")
    T, N = market.shape
    k = T - t - 1
    if k <= 0:
        return market
    rng = np.random.default_rng([int(seed), t])
    fut = slice(t + 1, None)
    changes: dict[str, Any] = {}

    def masked(name: str, p_true: float) -> np.ndarray:
        a = np.array(getattr(market, name), copy=True)
        a[fut] = rng.random((k, N)) < p_true
        a[t + 1] = ~getattr(market, name)[t + 1]
        return a

    valid = masked("valid", 0.85)
    changes["valid"] = valid
    changes["tradable"] = masked("tradable", 0.9)
    changes["mark_fallback"] = masked("mark_fallback", 0.1)
    v = valid[fut]

    # prices: around each symbol's last close at t, independent from bar to bar
    last = _last_close(market.spot_close[: t + 1])
    spot_c = last * np.exp(rng.normal(0.0, 0.1, (k, N)))
    spot_o = spot_c * np.exp(rng.normal(0.0, 0.02, (k, N)))
    perp_c = spot_c * (1.0 + rng.normal(0.0, 0.01, (k, N)))
    perp_o = spot_o * (1.0 + rng.normal(0.0, 0.01, (k, N)))
    mark_c = perp_c * (1.0 + rng.normal(0.0, 1e-3, (k, N)))
    mark_o = perp_o * (1.0 + rng.normal(0.0, 1e-3, (k, N)))
    gaps = market.spot_close[~market.valid]
    nan_gaps = bool(gaps.size and np.isnan(gaps).any())
    filled = np.array(market.filled, copy=True)
    filled[fut] = False if nan_gaps else ~v
    new: dict[str, np.ndarray] = {}
    for leg, o, c in (("spot", spot_o, spot_c), ("perp", perp_o, perp_c), ("mark", mark_o, mark_c)):
        wick = np.abs(rng.normal(0.0, 0.01, (k, N)))
        bar = {"open": o, "high": np.maximum(o, c) * (1 + wick), "low": np.minimum(o, c) / (1 + wick), "close": c}
        flat = None if nan_gaps else _ffill_closes(np.where(v, c, np.nan), getattr(market, f"{leg}_close")[t])
        for part, a in bar.items():
            if flat is not None:  # flat at the previous close on invalid bars
                a = np.where(v, a, flat)
            elif leg == "spot":  # NaN spot prices on invalid bars, as the market has them
                a = np.where(v, a, np.nan)
            new[f"{leg}_{part}"] = a
        new[f"{leg}_volume"] = np.where(v, rng.uniform(1.0, 1e6, (k, N)), 0.0)
    for name in PRICE_FIELDS + ("spot_volume", "perp_volume"):
        if name not in new:
            continue
        a = np.array(getattr(market, name), copy=True)
        a[fut] = new[name]
        changes[name] = a

    # settlements
    settle = rng.random((k, N)) < 0.3
    settle[0] = ~(market.funding_count[t + 1] > 0)
    rate = np.where(settle, rng.normal(0.0, 1e-3, (k, N)), 0.0)
    hours = np.where(settle, rng.choice([1.0, 4.0, 8.0], (k, N)), np.nan)
    for name, value in (
        ("funding_rate", rate),
        ("funding_value", rate * new["mark_close"]),
        ("funding_interval_hours", hours),
        ("funding_count", settle.astype(np.int32)),
    ):
        a = np.array(getattr(market, name), copy=True)
        a[fut] = value
        changes[name] = a
    if market.funding_time_ms is not None:
        close_ms = (market.index.asi8[fut] // 1_000_000 + _bar_ms(market))[:, None]
        a = np.array(market.funding_time_ms, copy=True)
        a[fut] = np.where(settle, close_ms, NO_FUNDING_TIME)
        changes["funding_time_ms"] = a
    if market.borrow_hourly_rate is not None:
        a = np.array(market.borrow_hourly_rate, copy=True)
        a[fut] = rng.uniform(0.0, 1e-4, (k, N))
        changes["borrow_hourly_rate"] = a
    changes["filled"] = filled
    # any other per-bar field (added to Market later): rows drawn at random from the market's own
    for f in dataclasses.fields(market):
        value = getattr(market, f.name)
        if f.name not in changes and isinstance(value, np.ndarray) and value.shape == market.shape:
            a = np.array(value, copy=True)
            a[fut] = value[rng.integers(0, T, k)]
            changes[f.name] = a
    return dataclasses.replace(market, **changes)


def _last_close(close: np.ndarray) -> np.ndarray:
    """(N,) the last finite close of each column (100 where there is none)."""
    out = np.full(close.shape[1], 100.0)
    for j in range(close.shape[1]):
        ok = np.flatnonzero(np.isfinite(close[:, j]) & (close[:, j] > 0))
        if ok.size:
            out[j] = close[ok[-1], j]
    return out


def _ffill_closes(close: np.ndarray, start: np.ndarray) -> np.ndarray:
    """``close`` (NaN on invalid bars) shifted one bar and forward-filled: the previous close of
    every bar, ``start`` (the close before the first row) where none came before."""
    prev = np.vstack([np.asarray(start, dtype=np.float64)[None, :], close[:-1]])
    filled = pd.DataFrame(prev).ffill().to_numpy()
    return np.where(np.isfinite(filled) & (filled > 0), filled, 100.0)


def _bar_ms(market: Market) -> int:
    if market.n_bars > 1:
        return int(np.median(np.diff(market.index.asi8))) // 1_000_000
    return int(round(bar_hours(market) * 3_600_000))


# --------------------------------------------------------------------------- report
@dataclass(frozen=True)
class LookaheadDifference:
    """Where a probe's run first differs from the full run (bars ``0..cut`` compared)."""

    probe: str  #: "truncation" or "perturbation"
    cut: int  #: the cut bar t: the data ends at t, or is replaced after t
    cut_time: pd.Timestamp  #: open time of bar ``cut``
    bar: int  #: the first bar (<= cut) whose target or weight differs
    bar_time: pd.Timestamp  #: open time of bar ``bar``
    column: int  #: column of the targets (parameter set ``param_set``, symbol ``symbol``)
    symbol: str
    param_set: int  #: index into ``LookaheadReport.param_sets``
    label: str  #: "SYMBOL [param=value, ...]"
    what: str  #: "target" or "weight"
    full_value: float  #: the value in the run on the whole market
    probe_value: float  #: the value in the probe's run

    def text(self) -> str:
        """One line: the bar, the column, the two values and the probe."""
        when = _PROBE_TEXT[self.probe].format(t=self.cut, time=_time_text(self.cut_time))
        return (
            f"the {self.what} of {self.label} at bar {self.bar} ({_time_text(self.bar_time)}) changes when {when} "
            f"({self.probe}): {_value_text(self.full_value)} on the whole data, {_value_text(self.probe_value)} "
            "in the probe"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "cut": self.cut,
            "cut_time": self.cut_time.isoformat(),
            "bar": self.bar,
            "bar_time": self.bar_time.isoformat(),
            "column": self.column,
            "symbol": self.symbol,
            "param_set": self.param_set,
            "label": self.label,
            "what": self.what,
            "full_value": None if np.isnan(self.full_value) else float(self.full_value),
            "probe_value": None if np.isnan(self.probe_value) else float(self.probe_value),
        }


@dataclass(frozen=True)
class LookaheadReport:
    """The verdict of :func:`check_lookahead`.

    ``clean`` is True when no probe changed any target or weight at a bar ``<= cut``; ``first``
    is the difference at the earliest bar (ties: the earliest cut, truncation before
    perturbation), ``differences`` the first difference of every (cut, probe) that found one.
    ``trades`` is False when every target of every parameter set is 0 or NaN: then a clean
    verdict proves little (``silent_param_sets`` lists the sets that never trade).
    """

    strategy: str
    clean: bool
    trades: bool
    first: LookaheadDifference | None
    differences: tuple[LookaheadDifference, ...]
    cuts: tuple[int, ...]
    cut_times: tuple[pd.Timestamp, ...]
    probes: tuple[str, ...]
    param_sets: tuple[dict[str, Any], ...]
    labels: tuple[str, ...]  #: one per parameter set: its parameters that differ from the defaults
    silent_param_sets: tuple[int, ...]
    symbols: tuple[str, ...]
    n_bars: int
    freq: str
    start: pd.Timestamp
    end: pd.Timestamp  #: open time of the last bar
    seed: int = 0
    atol: float = 0.0
    notes: tuple[str, ...] = field(default=())

    @property
    def verdict(self) -> str:
        """The first line of :meth:`text`."""
        if self.first is not None:
            return f"look-ahead in strategy {self.strategy!r}: {self.first.text()}"
        what = (
            f"{len(self.param_sets)} parameter set(s) x {len(self.symbols)} symbol(s), {len(self.cuts)} cut(s), "
            f"{self.n_bars} bars of {self.freq}"
        )
        if not self.trades:
            return (
                f"no look-ahead found in strategy {self.strategy!r} ({what}), but it never trades on this data "
                "(every target 0 or NaN): the check proves little; try parameters or data on which it trades"
            )
        return f"no look-ahead found in strategy {self.strategy!r} ({what})"

    def text(self) -> str:
        """A short human-readable verdict: one verdict line, then what was checked."""
        lines = [self.verdict]
        span = f"{_time_text(self.start)} .. {_time_text(self.end)}"
        cuts = ", ".join(f"{c} ({_time_text(ts)})" for c, ts in zip(self.cuts, self.cut_times))
        lines.append(f"  data: {self.n_bars} bars of {self.freq}, {span}, symbols {', '.join(self.symbols)}")
        lines.append(f"  cuts: {cuts}; probes: {', '.join(self.probes)} (bars 0..cut compared)")
        labels = "; ".join(self.labels[:6]) + (f"; ... ({len(self.labels)} in all)" if len(self.labels) > 6 else "")
        lines.append(f"  parameter sets: {labels}")
        if self.silent_param_sets and self.trades:
            silent = ", ".join(self.labels[g] for g in self.silent_param_sets[:6])
            lines.append(f"  never trade on this data (the check proves little for them): {silent}")
        if self.first is not None:
            others = [d for d in self.differences if d is not self.first]
            if others:
                caught = sorted({(d.probe, d.cut) for d in self.differences})
                lines.append(
                    f"  caught at {len(caught)} of {len(self.cuts) * len(self.probes)} probe runs: "
                    + ", ".join(f"{p}@{c}" for p, c in caught)
                )
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain types, times as ISO 8601 text, NaN as null."""
        return {
            "strategy": self.strategy,
            "clean": self.clean,
            "trades": self.trades,
            "verdict": self.verdict,
            "first": None if self.first is None else self.first.to_dict(),
            "differences": [d.to_dict() for d in self.differences],
            "cuts": list(self.cuts),
            "cut_times": [ts.isoformat() for ts in self.cut_times],
            "probes": list(self.probes),
            "param_sets": [_json_params(p) for p in self.param_sets],
            "labels": list(self.labels),
            "silent_param_sets": list(self.silent_param_sets),
            "symbols": list(self.symbols),
            "n_bars": self.n_bars,
            "freq": self.freq,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "seed": self.seed,
            "atol": self.atol,
            "notes": list(self.notes),
        }


def _json_params(p: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in p.items():
        if isinstance(v, np.generic):
            v = v.item()
        out[k] = v if isinstance(v, (bool, int, float, str)) or v is None else str(v)
    return out


# --------------------------------------------------------------------------- the check
def cut_bars(n_bars: int, n_cuts: int = 5, cuts: Any = None, index: pd.DatetimeIndex | None = None) -> list[int]:
    """The cut bars: ``n_cuts`` spread evenly over the bars, leaving out the first and last few
    (``max(3, n_bars // 20)`` each side), plus the user's ``cuts`` (bar numbers, or times when
    ``index`` is given: the bar containing the time), sorted, each in ``0 .. n_bars - 2``."""
    if n_bars < MIN_BARS:
        raise ConfigError(
            f"the market has {n_bars} bar(s): too short to cut (the look-ahead check needs at least {MIN_BARS})"
        )
    if isinstance(n_cuts, (bool, np.bool_)) or not isinstance(n_cuts, (int, np.integer)) or n_cuts < 0:
        raise ConfigError(f"n_cuts (--cuts) must be a whole number >= 0, got {n_cuts!r}")
    margin = max(3, n_bars // 20)
    lo, hi = margin, n_bars - 1 - margin
    out = set(np.unique(np.round(np.linspace(lo, hi, int(n_cuts))).astype(np.int64)).tolist()) if n_cuts else set()
    given = [] if cuts is None else ([cuts] if isinstance(cuts, (int, np.integer, str, pd.Timestamp)) else cuts)
    for c in given:
        if isinstance(c, (int, np.integer)) and not isinstance(c, (bool, np.bool_)):
            t = int(c)
        elif index is not None:
            ts = to_timestamp(c, "cut")
            t = int(index.searchsorted(ts, side="right")) - 1
            if t < 0:
                raise ConfigError(f"cut {c!r} is before the first bar ({index[0]})")
        else:
            raise ConfigError(f"a cut is a bar number (or a time), got {c!r}")
        if not 0 <= t <= n_bars - 2:
            raise ConfigError(
                f"cut bar {t} is outside 0..{n_bars - 2} (the market has {n_bars} bars; a cut needs a bar after it)"
            )
        out.add(t)
    if not out:
        raise ConfigError("no cut to check: give n_cuts >= 1 (--cuts N) or cut bars")
    return sorted(out)


def _run(strat: Any, market: Market, params: Any, where: str) -> Targets:
    try:
        return run_strategy(strat, market, params)
    except CarryError as exc:
        if where == "the whole data":
            raise
        try:
            err = type(exc)(f"strategy {strat.name!r} on {where}: {exc}")
        except Exception:  # a subclass with another constructor
            err = ConfigError(f"strategy {strat.name!r} on {where}: {exc}")
        raise err from exc
    except Exception as exc:  # the user's own code: one line naming the strategy and the copy
        raise ConfigError(f"strategy {strat.name!r} raised {type(exc).__name__} on {where}: {exc}") from exc


def _first_difference(a: np.ndarray, b: np.ndarray, atol: float) -> tuple[int, int] | None:
    """(row, column) of the first element where ``a`` and ``b`` differ (NaN equals NaN)."""
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    if atol > 0:
        same |= np.abs(a - b) <= atol
    if same.all():
        return None
    rows = np.flatnonzero(~same.all(axis=1))
    r = int(rows[0])
    return r, int(np.flatnonzero(~same[r])[0])


def _labels(strat: Any, sets: list[dict[str, Any]]) -> list[str]:
    """One label per parameter set: the parameters that differ from the defaults or between the
    sets (the same names for every set), or "defaults"."""
    try:
        defaults = strat.params_cls().to_dict()
    except (CarryError, TypeError):  # a parameter without a default: name every parameter
        defaults = {}
    names = [
        k
        for k in sets[0]
        if any(defaults.get(k, object()) != p.get(k) for p in sets) or len({repr(p.get(k)) for p in sets}) > 1
    ]
    return [", ".join(f"{k}={p.get(k)}" for k in names) or "defaults" for p in sets]


def check_lookahead(
    strategy: Any,
    market: Market,
    params: Any = None,
    *,
    cuts: Any = None,
    n_cuts: int = 5,
    seed: int = 0,
    atol: float = 0.0,
    probes: tuple[str, ...] | list[str] = PROBES,
) -> LookaheadReport:
    """Check that ``strategy``'s targets at a bar never depend on data after that bar.

    Parameters
    ----------
    strategy : str, Strategy or callable
        Anything :func:`strategies.run_strategy` accepts.
    market : data.market.Market
        At least :data:`MIN_BARS` bars.
    params : None, dict, grid dict, StrategyParams or list
        One parameter set or a grid, as :func:`strategies.run_strategy` takes; every set is
        checked (all in one run per probe).
    cuts : int, time or list of those, optional
        Extra cut bars (bar numbers, or times: the bar containing the time).
    n_cuts : int
        Cut bars spread over the market (see :func:`cut_bars`); 0 for the given ``cuts`` only.
    seed : int
        Seed of the random data of the perturbation probe.
    atol : float
        Largest difference taken as equal (default 0: exact, NaN equals NaN).
    probes : sequence of str
        The probes to run (default both, see :data:`PROBES`).

    Returns
    -------
    LookaheadReport
        ``clean``, the first difference (probe, cut, bar, column, values), what was checked.
    """
    strat = as_strategy(strategy)
    if not isinstance(market, Market):
        raise ConfigError(f"check_lookahead needs a data.market.Market, got {type(market).__name__}")
    if not (isinstance(atol, (int, float)) and np.isfinite(atol) and atol >= 0):
        raise ConfigError(f"atol must be a finite number >= 0, got {atol!r}")
    bars = cut_bars(market.n_bars, n_cuts, cuts, market.index)
    probes = (probes,) if isinstance(probes, str) else tuple(probes)
    for probe in probes:
        check_choice("probe", probe, PROBES)
    if not probes:
        raise ConfigError(f"no probe to run: give one or more of {', '.join(PROBES)}")
    probes = tuple(p for p in PROBES if p in probes)
    specs = expand_params(params)
    if not specs:
        raise ConfigError("empty parameter grid")
    sets = [strat.params(s).to_dict() for s in specs]
    labels = _labels(strat, sets)
    full = _run(strat, market, params, "the whole data")
    n = market.n_symbols
    traded = np.isfinite(full.values) & (full.values != 0)
    per_set = traded.any(axis=0).reshape(len(sets), n).any(axis=1) if full.values.size else np.zeros(len(sets), bool)
    silent = tuple(int(g) for g in np.flatnonzero(~per_set))

    found: list[LookaheadDifference] = []
    for t in bars:
        for probe in probes:
            copy = truncate_after(market, t) if probe == "truncation" else perturb_after(market, t, seed)
            where = "a copy where " + _PROBE_TEXT[probe].format(t=t, time=_time_text(market.index[t]))
            alt = _run(strat, copy, params, where)
            hits = []
            for what, a, b in (("target", full.values, alt.values), ("weight", full.weights, alt.weights)):
                if a is None and b is None:
                    continue
                a = np.ones(full.values.shape) if a is None else a
                b = np.ones(alt.values.shape) if b is None else b
                hit = _first_difference(a[: t + 1], b[: t + 1], atol)
                if hit is not None:
                    hits.append((hit[0], what, hit[1], a, b))
            if not hits:
                continue
            r, what, c, a, b = min(hits, key=lambda h: (h[0], h[1] != "target", h[2]))
            g, j = int(full.group[c]), int(full.column_symbol[c])
            found.append(
                LookaheadDifference(
                    probe=probe,
                    cut=t,
                    cut_time=market.index[t],
                    bar=r,
                    bar_time=market.index[r],
                    column=c,
                    symbol=market.symbols[j],
                    param_set=g,
                    label=f"{market.symbols[j]} [{labels[g]}]",
                    what=what,
                    full_value=float(a[r, c]),
                    probe_value=float(b[r, c]),
                )
            )
    first = min(found, key=lambda d: (d.bar, d.cut, PROBES.index(d.probe))) if found else None
    return LookaheadReport(
        strategy=strat.name,
        clean=first is None,
        trades=bool(per_set.any()),
        first=first,
        differences=tuple(found),
        cuts=tuple(bars),
        cut_times=tuple(market.index[t] for t in bars),
        probes=probes,
        param_sets=tuple(sets),
        labels=tuple(labels),
        silent_param_sets=silent,
        symbols=tuple(market.symbols),
        n_bars=market.n_bars,
        freq=market.freq,
        start=market.index[0],
        end=market.index[-1],
        seed=int(seed),
        atol=float(atol),
    )

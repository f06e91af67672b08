"""The strategy protocol, parameter dataclasses and :func:`run_strategy`.

A strategy is a pure function ``fn(market, params) -> targets`` where ``targets`` is a float
array of shape ``(T, N)`` (bars x market symbols) with values in ``[-1, 1]``: ``+1`` full carry
(long spot, short perp), ``-1`` full reverse carry (short spot on margin, long perp), ``0``
flat, NaN "keep what you hold". Target ``i`` may use only data known at bar ``i``'s close; the
engine applies the execution delay. A strategy may instead return :class:`WeightedTargets`
(targets plus non-negative capital weights, for cross-sectional strategies).

``params`` is an instance of a frozen, keyword-only dataclass deriving from
:class:`StrategyParams`. Declare fields with :func:`param` to state units and bounds; the
base class validates them on construction with messages that name the unit.

Conventions shared by the built-in strategies (see :func:`mask_targets`): on bars where
``market.valid`` is False the target is NaN ("keep"; the engine cannot trade there anyway, and
a transient data gap should not force a round trip), except before the symbol's first valid
bar, where it is 0 (flat).
"""

from __future__ import annotations

import difflib
import inspect
import json
import typing
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from numba import njit

from backtest.targets import Targets, param_grid
from data.errors import ConfigError
from data.market import Market
from data.units import bar_hours

__all__ = [
    "StrategyParams",
    "NoParams",
    "param",
    "Strategy",
    "WeightedTargets",
    "as_strategy",
    "run_strategy",
    "mask_targets",
    "bar_hours",
    "hours_to_bars",
]


# --------------------------------------------------------------------------- parameters
def param(
    default: Any,
    unit: str = "",
    *,
    ge: float | None = None,
    le: float | None = None,
    gt: float | None = None,
    lt: float | None = None,
    choices: tuple | None = None,
    help: str = "",
) -> Any:
    """A dataclass field with a unit, bounds and help text, validated by :class:`StrategyParams`.

    ``unit`` is shown in every error message (e.g. ``"annualized fraction (0.10 = 10%/yr)"``).
    """
    meta = {"unit": unit, "ge": ge, "le": le, "gt": gt, "lt": lt, "choices": choices, "help": help}
    return field(default=default, metadata=meta)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


@dataclass(frozen=True, kw_only=True)
class StrategyParams:
    """Base class of strategy parameter sets: frozen, keyword-only, validated.

    Subclasses are declared as ``@dataclass(frozen=True, kw_only=True)`` and may override
    :meth:`check` for cross-field rules (call ``super().check()`` first).
    """

    def __post_init__(self) -> None:
        self.check()

    # -- validation
    def check(self) -> None:
        """Validate types and bounds from the field metadata; raise ``ConfigError``."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            v = getattr(self, f.name)
            tp = hints.get(f.name, Any)
            unit = f.metadata.get("unit", "")
            where = f"{type(self).__name__}.{f.name}" + (f" [{unit}]" if unit else "")
            if tp is bool:
                if not isinstance(v, (bool, np.bool_)):
                    raise ConfigError(f"{where} must be true or false, got {v!r}")
                continue
            if tp in (int, float):
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
                    raise ConfigError(f"{where} must be a number, got {v!r}")
                if tp is int and float(v) != int(v):
                    raise ConfigError(f"{where} must be a whole number, got {v!r}")
                if not np.isfinite(v):
                    raise ConfigError(f"{where} must be finite, got {v!r}")
                object.__setattr__(self, f.name, tp(v))
            choices = f.metadata.get("choices")
            if choices is not None and v not in choices:
                raise ConfigError(f"{where} must be one of {list(choices)}, got {v!r}")
            for key, op, word in (
                ("ge", np.greater_equal, ">="),
                ("le", np.less_equal, "<="),
                ("gt", np.greater, ">"),
                ("lt", np.less, "<"),
            ):
                bound = f.metadata.get(key)
                if bound is not None and isinstance(v, (int, float)) and not op(v, bound):
                    hint = ""
                    if "annualized fraction" in unit and abs(v) > 1:
                        hint = f" (did you give a percentage? {v} would be {v * 100:g}%/yr; write {v / 100:g})"
                    raise ConfigError(f"{where} must be {word} {bound:g}, got {v!r}{hint}")

    # -- conversions
    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def resolve_name(cls, name: str) -> str:
        """The field ``name`` refers to: exact match or a unique prefix (``entry`` ->
        ``entry_annualized``); otherwise ``ConfigError`` with a did-you-mean hint."""
        names = cls.field_names()
        if name in names:
            return name
        prefixed = [n for n in names if n.startswith(name)]
        if len(prefixed) == 1:
            return prefixed[0]
        if len(prefixed) > 1:
            raise ConfigError(f"parameter {name!r} of {cls.__name__} is ambiguous: {prefixed}")
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        if not close:  # a misspelt abbreviation: compare with the names' leading words too
            heads = {n.split("_")[0]: n for n in names}
            close = [heads[h] for h in difflib.get_close_matches(name, list(heads), n=3, cutoff=0.6)]
        hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(f"unknown parameter {name!r} for {cls.__name__}{hint}; valid parameters: {', '.join(names)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None) -> StrategyParams:
        """Build from a mapping, resolving abbreviated names and rejecting unknown ones."""
        kwargs = {cls.resolve_name(k): v for k, v in (values or {}).items()}
        return cls(**kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def to_json(self) -> str:
        """Canonical JSON (sorted keys) of the parameter values."""
        return json.dumps(self.to_dict(), sort_keys=True, default=str)

    @classmethod
    def describe(cls) -> pd.DataFrame:
        """One row per parameter: name, type, default, unit, help."""
        hints = typing.get_type_hints(cls)
        rows = [
            {
                "name": f.name,
                "type": _type_name(hints.get(f.name)),
                "default": f.default,
                "unit": f.metadata.get("unit", ""),
                "help": f.metadata.get("help", ""),
            }
            for f in fields(cls)
        ]
        return pd.DataFrame(rows)

    # -- history needed
    def lookback_hours(self) -> float | None:
        """Hours of history the targets depend on (signal windows plus minimum holds), or None
        when unknown (the default). A time-chunked scale-out sweep loads at least this much
        history before each chunk (see ``backtest.app.scale.run_sweep(warmup=...)``); built-in
        strategies declare it, user strategies may.
        """
        return None


@dataclass(frozen=True, kw_only=True)
class NoParams(StrategyParams):
    """Parameters of a strategy that has none."""


# --------------------------------------------------------------------------- strategies
class WeightedTargets(NamedTuple):
    """What a cross-sectional strategy returns: targets and capital weights, both (T, N).

    ``weights`` are non-negative; the engine normalises them per portfolio and bar (see
    :class:`backtest.targets.Targets`).
    """

    targets: np.ndarray
    weights: np.ndarray


@dataclass(frozen=True)
class Strategy:
    """A named strategy: ``fn(market, params) -> ndarray (T, N) | WeightedTargets``."""

    name: str
    fn: Callable[..., Any]
    params_cls: type[StrategyParams] = NoParams

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.fn) or ""

    def params(self, values: StrategyParams | dict | None = None) -> StrategyParams:
        if isinstance(values, StrategyParams):
            if not isinstance(values, self.params_cls):
                raise ConfigError(
                    f"strategy {self.name!r} takes {self.params_cls.__name__}, got {type(values).__name__}"
                )
            return values
        return self.params_cls.from_dict(values)

    def __call__(self, market: Market, params: StrategyParams | dict | None = None):
        return self.fn(market, self.params(params))


def as_strategy(obj: Any, params_cls: type[StrategyParams] | None = None, name: str | None = None) -> Strategy:
    """Turn a registered name, a :class:`Strategy` or a plain function into a ``Strategy``.

    A plain function ``fn(market, params)`` gets its parameter class from ``params_cls`` or
    from the type annotation of its second argument; a one-argument ``fn(market)`` has none.
    """
    if isinstance(obj, Strategy):
        return obj
    if isinstance(obj, str):
        from strategies.registry import get_strategy

        return get_strategy(obj)
    if not callable(obj):
        raise ConfigError(f"a strategy must be a name, a Strategy or a function, got {type(obj).__name__}")
    sig = inspect.signature(obj)
    n_args = len(sig.parameters)
    if params_cls is None and n_args >= 2:
        second = list(sig.parameters)[1]
        try:
            hint = typing.get_type_hints(obj).get(second)
        except Exception:  # unresolved forward references: fall back to no parameters
            hint = None
        if isinstance(hint, type) and issubclass(hint, StrategyParams):
            params_cls = hint
    fn = obj
    if n_args == 1:

        def fn(market, params, _f=obj):
            return _f(market)

        fn.__doc__ = obj.__doc__
    return Strategy(name or getattr(obj, "__name__", "custom"), fn, params_cls or NoParams)


# --------------------------------------------------------------------------- helpers
def hours_to_bars(market: Market, hours: float) -> int:
    """Whole number of bars covering ``hours`` (rounded up; 0 hours -> 0 bars)."""
    return int(np.ceil(hours / bar_hours(market) - 1e-9)) if hours > 0 else 0


def mask_targets(market: Market, targets: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Apply the validity convention: NaN on invalid bars, 0 before a symbol's first valid bar.

    Causal: "first valid bar so far" is a running maximum, never a look at later bars.
    ``copy=False`` masks ``targets`` in place when it is already a float64 array (for a
    temporary the caller owns).
    """
    out = np.array(targets, dtype=np.float64, copy=copy)
    invalid, unseen = _validity_masks(market)
    if invalid is not None:
        out[invalid] = np.nan
    if unseen is not None:
        out[unseen] = 0.0
    return out


def _validity_masks(market: Market) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(invalid bars, bars before a symbol's first valid bar) of ``market``, None when empty;
    memoised per market."""
    from strategies.signals import cached

    def compute():
        invalid = ~market.valid
        seen = np.logical_or.accumulate(market.valid, axis=0) if market.n_bars else market.valid
        unseen = ~seen
        return (invalid if invalid.any() else None), (unseen if unseen.any() else None)

    return cached(market, ("validity_masks",), compute)


def _as_grid(params: Any) -> list[Any]:
    """Normalise ``params`` to a list of per-run specs (dicts or StrategyParams)."""
    if params is None:
        return [{}]
    if isinstance(params, StrategyParams):
        return [params]
    if isinstance(params, dict):
        if any(isinstance(v, (list, tuple, np.ndarray, range)) for v in params.values()):
            grid = {k: (list(v) if isinstance(v, (list, tuple, np.ndarray, range)) else [v]) for k, v in params.items()}
            return param_grid(grid)
        return [params]
    if isinstance(params, (list, tuple)):
        return list(params)
    raise ConfigError(
        f"params must be None, a dict, a grid dict of lists, a list or a StrategyParams; got {type(params).__name__}"
    )


def _check_output(name: str, out: Any, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray | None]:
    weights = None
    if isinstance(out, WeightedTargets) or (isinstance(out, tuple) and len(out) == 2):
        out, weights = out
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != shape:
            raise ConfigError(f"strategy {name!r} returned weights of shape {weights.shape}, expected {shape}")
    values = np.asarray(out, dtype=np.float64)
    if values.shape != shape:
        raise ConfigError(
            f"strategy {name!r} returned targets of shape {values.shape}, expected {shape} (bars x symbols)"
        )
    # fmin/fmax skip NaN ("keep") without temporaries; infinities show up as extremes
    lo = np.fmin.reduce(values, axis=None) if values.size else np.nan
    hi = np.fmax.reduce(values, axis=None) if values.size else np.nan
    if np.isinf(lo) or np.isinf(hi):
        raise ConfigError(f"strategy {name!r} returned infinite targets")
    if lo < -1 - 1e-9 or hi > 1 + 1e-9:
        raise ConfigError(f"strategy {name!r} returned targets outside [-1, 1] (+1 carry, -1 reverse carry)")
    if lo < -1.0 or hi > 1.0:  # rounding noise beyond the bounds
        values = np.clip(values, -1.0, 1.0)
    return values, weights


def _stack_columns(blocks: list[np.ndarray], n_rows: int) -> np.ndarray:
    """``np.hstack(blocks)`` of (T, n) float arrays (a blocked copy, see :func:`_stack_into_nb`)."""
    from numba.typed import List

    width = sum(b.shape[1] for b in blocks)
    out = np.empty((n_rows, width))
    if width and n_rows:
        typed = List()
        for b in blocks:
            typed.append(np.ascontiguousarray(b, dtype=np.float64))
        _stack_into_nb(typed, out, max(256, (2 << 20) // (8 * width)))
    return out


@njit(cache=True)
def _stack_into_nb(blocks, out, step):
    """Copy ``blocks`` side by side into ``out`` in row blocks of ``step`` rows, so the block of
    ``out`` stays in cache while each input, read sequentially, writes its columns into it (a
    plain hstack walks the whole output once per input: slow for many narrow inputs)."""
    T = out.shape[0]
    for r0 in range(0, T, step):
        r1 = min(T, r0 + step)
        c0 = 0
        for b in blocks:
            w = b.shape[1]
            for r in range(r0, r1):
                for k in range(w):
                    out[r, c0 + k] = b[r, k]
            c0 += w


def run_strategy(strategy: Any, market: Market, params: Any = None) -> Targets:
    """Evaluate a strategy on a market for one parameter set or a whole grid.

    Parameters
    ----------
    strategy : str, Strategy or callable
        A registered name (``"funding_threshold"``), a :class:`Strategy`, or a plain function
        ``fn(market, params)`` / ``fn(market)``.
    market : data.market.Market
    params : None, dict, grid dict, StrategyParams or list of those
        ``None``: defaults. A dict of scalars: one parameter set (names may be abbreviated to
        a unique prefix). A dict in which some values are lists: the Cartesian grid of those
        lists (other values fixed). A list: one run per element.

    Returns
    -------
    backtest.targets.Targets
        ``N`` columns (one per market symbol) per parameter set; parameter set ``g`` is
        portfolio ``group == g``. ``columns`` has ``strategy``, ``symbol``, ``group`` and one
        column per parameter. Signals shared between parameter sets (e.g. the trailing
        funding for one window) are computed once per market (see ``strategies.signals``).
    """
    strat = as_strategy(strategy)
    specs = _as_grid(params)
    if not specs:
        raise ConfigError("empty parameter grid")
    n = market.n_symbols
    values, weights, rows = [], [], []
    any_weights = False
    for g, spec in enumerate(specs):
        p = strat.params(spec)
        v, w = _check_output(strat.name, strat.fn(market, p), market.shape)
        values.append(v)
        weights.append(w)
        any_weights |= w is not None
        d = p.to_dict()
        for _j, sym in enumerate(market.symbols):
            rows.append({"strategy": strat.name, "symbol": sym, "group": g, **d})
    columns = pd.DataFrame(rows)
    w_all = None
    if any_weights:
        w_all = _stack_columns([w if w is not None else np.ones(market.shape) for w in weights], market.n_bars)
    return Targets(
        values=_stack_columns(values, market.n_bars),
        column_symbol=np.tile(np.arange(n, dtype=np.int64), len(specs)),
        group=np.repeat(np.arange(len(specs), dtype=np.int64), n),
        columns=columns,
        weights=w_all,
    )

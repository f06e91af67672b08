"""The strategy protocol, parameter dataclasses and the helpers every strategy shares.

(Names are registered and looked up in :mod:`strategies.registry`; a strategy is evaluated
over a parameter grid by :func:`strategies.runner.run_strategy`.)

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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from data.errors import ConfigError, UnknownNameError, check_choice
from data.market import Market
from data.units import bar_hours
from strategies.cache import cached

__all__ = [
    "StrategyParams",
    "NoParams",
    "param",
    "Strategy",
    "WeightedTargets",
    "strategy_of",
    "mask_targets",
    "bar_hours",
    "hours_to_bars",
    "check_entry_exit",
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
            if choices is not None:
                check_choice(where, v, choices)
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
        raise UnknownNameError(
            f"unknown parameter {name!r} for {cls.__name__}{hint}; valid parameters: {', '.join(names)}"
        )

    @classmethod
    def from_dict(cls, values: dict[str, Any] | None = None) -> StrategyParams:
        """Build from a mapping, resolving abbreviated names and rejecting unknown ones."""
        if values is not None and not isinstance(values, Mapping):
            raise ConfigError(f"{cls.__name__}: parameters must be a mapping of name -> value, got {values!r}")
        if values is not None and any(not isinstance(k, str) for k in values):
            raise ConfigError(f"{cls.__name__}: parameter names must be text, got {list(values)!r}")
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


def strategy_of(obj: Any, params_cls: type[StrategyParams] | None = None, name: str | None = None) -> Strategy:
    """Turn a :class:`Strategy` or a plain function into a ``Strategy`` (names are looked up by
    :func:`strategies.registry.as_strategy`, which accepts all three).

    A plain function ``fn(market, params)`` gets its parameter class from ``params_cls`` or
    from the type annotation of its second argument; a one-argument ``fn(market)`` has none.
    """
    if isinstance(obj, Strategy):
        return obj
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
    return Strategy(str(name or getattr(obj, "__name__", "custom")), fn, params_cls or NoParams)


# --------------------------------------------------------------------------- helpers
def check_entry_exit(params: StrategyParams) -> None:
    """Refuse an exit level above the entry level (``exit_annualized`` > ``entry_annualized``):
    the hysteresis of the threshold strategies would enter and leave on the same bar."""
    entry, exit_ = params.entry_annualized, params.exit_annualized  # type: ignore[attr-defined]
    if exit_ > entry:
        raise ConfigError(
            f"{type(params).__name__}: exit_annualized ({exit_:g}) must be <= entry_annualized ({entry:g}) "
            "(annualized fractions, 0.10 = 10%/yr)"
        )


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

    def compute():
        invalid = ~market.valid
        seen = np.logical_or.accumulate(market.valid, axis=0) if market.n_bars else market.valid
        unseen = ~seen
        return (invalid if invalid.any() else None), (unseen if unseen.any() else None)

    return cached(market, ("validity_masks",), compute)

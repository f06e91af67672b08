"""Name -> strategy registry for the CLI, parameter parsing from strings, user strategy files.

::

    from strategies import get_strategy, parse_params, run_strategy
    strat = get_strategy("funding_threshold")
    params = parse_params(strat, ["entry=0.10", "exit=0.02"])   # {'entry_annualized': 0.1, ...}
    targets = run_strategy(strat, market, params)

Values are converted from strings to each field's type; ``"10%"`` and ``"25bps"`` are accepted
for fraction fields (0.10 and 0.0025) and ``"5bps"`` for ``*_bps`` fields; a comma-separated
list (``"entry=0.05,0.10,0.20"``) makes a grid. Parameter names may be abbreviated to a unique
prefix (``entry`` -> ``entry_annualized``).
"""

from __future__ import annotations

import difflib
import importlib.util
import itertools
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

from data.errors import ConfigError, UnknownNameError
from strategies.always_carry import AlwaysCarryParams, always_carry
from strategies.always_reverse import AlwaysReverseParams, always_reverse
from strategies.base import NoParams, Strategy, StrategyParams, strategy_of
from strategies.basis_aware import BasisAwareParams, basis_aware
from strategies.funding_sign import FundingSignParams, funding_sign
from strategies.funding_threshold import FundingThresholdParams, funding_threshold
from strategies.rotation import RotationParams, rotation

__all__ = [
    "register",
    "get_strategy",
    "as_strategy",
    "available_strategies",
    "parse_params",
    "parse_value",
    "load_strategy_file",
]

_REGISTRY: dict[str, Strategy] = {}


def register(
    fn: Callable | Strategy | None = None,
    params_cls: type[StrategyParams] | None = None,
    name: str | None = None,
    *,
    overwrite: bool = False,
):
    """Register ``fn(market, params)`` under ``name`` (default: the function's name).

    Usable as a call, ``register(my_fn, MyParams, "mine")``, or a decorator,
    ``@register(params_cls=MyParams)``. Returns the :class:`Strategy` (the decorator returns
    the function unchanged). Re-registering a name raises unless ``overwrite=True``.
    """
    if fn is None:

        def deco(f):
            register(f, params_cls, name, overwrite=overwrite)
            return f

        return deco
    strat = strategy_of(fn, params_cls, name)
    if name is not None and strat.name != name:
        strat = Strategy(name, strat.fn, strat.params_cls)
    if not strat.name.isidentifier():
        raise ConfigError(f"strategy name must be an identifier (letters, digits, _), got {strat.name!r}")
    if strat.name in _REGISTRY and not overwrite and _REGISTRY[strat.name].fn is not strat.fn:
        raise ConfigError(f"a strategy named {strat.name!r} is already registered; pass overwrite=True to replace it")
    _REGISTRY[strat.name] = strat
    return strat


def available_strategies() -> list[str]:
    """Registered strategy names, sorted."""
    return sorted(_REGISTRY)


def get_strategy(name: str | Strategy) -> Strategy:
    """The strategy registered as ``name``; ``ConfigError`` with did-you-mean hints otherwise."""
    if isinstance(name, Strategy):
        return name
    if not isinstance(name, str):
        raise ConfigError(f"a strategy name must be text, got {type(name).__name__}")
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    raise UnknownNameError(f"unknown strategy {name!r}.{hint} Available: {available_strategies()}")


def as_strategy(obj: Any, params_cls: type[StrategyParams] | None = None, name: str | None = None) -> Strategy:
    """Turn a registered name, a :class:`~strategies.base.Strategy` or a plain function into a
    ``Strategy`` (a name through :func:`get_strategy`, the others through
    :func:`strategies.base.strategy_of`)."""
    if isinstance(obj, str):
        return get_strategy(obj)
    return strategy_of(obj, params_cls, name)


_SUFFIXES = (("bps", 1e-4), ("bp", 1e-4), ("%", 1e-2))


def parse_value(text: str, tp: Any, field_name: str = "", label: str | None = None) -> Any:
    """Convert one string to ``tp`` (bool, int, float, str). Numbers accept ``%``/``bps``
    suffixes: converted to a fraction, or to bps for fields named ``*_bps``."""
    t = text.strip()
    bps_field = field_name.endswith("_bps")
    field_name = label or field_name
    if tp is bool:
        low = t.lower()
        if low in ("1", "true", "yes", "on", "y", "t"):
            return True
        if low in ("0", "false", "no", "off", "n", "f"):
            return False
        raise ConfigError(f"{field_name} must be true or false, got {text!r}")
    if tp in (int, float):
        scale = 1.0
        low = t.lower()
        for suffix, factor in _SUFFIXES:
            if low.endswith(suffix):
                t = t[: -len(suffix)].strip()
                scale = factor
                if bps_field:
                    scale = factor / 1e-4
                break
        try:
            v = float(t) * scale
        except ValueError:
            raise ConfigError(f"{field_name} must be a number, got {text!r}") from None
        if tp is int:
            if v != int(v):
                raise ConfigError(f"{field_name} must be a whole number, got {text!r}")
            return int(v)
        return v
    return t


def parse_params(strategy: str | Strategy, items: Iterable[str] | dict[str, Any]) -> dict[str, Any]:
    """Parse ``["name=value", ...]`` for ``strategy`` into typed values, validated.

    Returns ``{field_name: value}``, or ``{field_name: [values]}`` for comma-separated lists
    (a grid for :func:`strategies.run_strategy`). Every combination is validated by building
    the parameter dataclass, so unit and range errors surface here with the unit named.
    """
    strat = get_strategy(strategy) if isinstance(strategy, str) else strategy
    cls = strat.params_cls
    hints = typing.get_type_hints(cls)
    units = {f.name: f.metadata.get("unit", "") for f in fields(cls)}
    pairs = items.items() if isinstance(items, dict) else [_split(item) for item in items]
    out: dict[str, Any] = {}
    for key, raw in pairs:
        if cls is NoParams:
            raise ConfigError(f"strategy {strat.name!r} takes no parameters, got {key!r}")
        name = cls.resolve_name(key.strip())
        if name in out:
            raise ConfigError(f"parameter {name!r} given twice")
        tp = hints.get(name, str)
        label = f"{name}" + (f" [{units[name]}]" if units.get(name) else "")
        if isinstance(raw, str):
            parts = [p for p in raw.split(",")] if "," in raw else [raw]
            vals = [parse_value(p, tp, name, label) for p in parts]
            out[name] = vals if len(vals) > 1 else vals[0]
        else:
            out[name] = raw
    lists = {k: v for k, v in out.items() if isinstance(v, list)}
    fixed = {k: v for k, v in out.items() if not isinstance(v, list)}
    for combo in itertools.product(*lists.values()):
        cls(**fixed, **dict(zip(lists, combo)))
    return out


def _split(item: str) -> tuple[str, str]:
    if not isinstance(item, str) or "=" not in item:
        raise ConfigError(f"parameters are written name=value, got {item!r}")
    k, v = item.split("=", 1)
    return k.strip(), v


def load_strategy_file(path: str | Path, *, overwrite: bool = False) -> list[str]:
    """Import a user's Python file and register the strategies it defines.

    The file may call :func:`register` itself (``from strategies import register``) or define
    module-level :class:`~strategies.base.Strategy` objects, or a ``STRATEGIES`` list of
    functions / ``(fn, ParamsClass)`` / ``(fn, ParamsClass, name)`` tuples. Returns the names
    registered.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"strategy file not found: {path}")
    before = {k: v.fn for k, v in _REGISTRY.items()}
    mod_name = f"carry_user_strategy_{abs(hash(str(path.resolve())))}"
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
    except ConfigError:
        raise
    except Exception as exc:  # surface the user's error with the file name
        raise ConfigError(f"error while importing strategy file {path}: {type(exc).__name__}: {exc}") from exc
    names = [k for k, v in _REGISTRY.items() if before.get(k) is not v.fn]
    for obj in vars(module).values():
        if isinstance(obj, Strategy) and obj.name not in names:
            register(obj, overwrite=overwrite)
            names.append(obj.name)
    for entry in getattr(module, "STRATEGIES", []):
        args = entry if isinstance(entry, tuple) else (entry,)
        s = register(*args, overwrite=overwrite)
        if s.name not in names:
            names.append(s.name)
    if not names:
        raise ConfigError(
            f"{path} defines no strategy: call strategies.register(fn, ParamsClass, 'name') in it, "
            "or define STRATEGIES = [fn, (fn, ParamsClass), ...]"
        )
    return names


def _register_builtins() -> None:
    for fn, cls in (
        (always_carry, AlwaysCarryParams),
        (always_reverse, AlwaysReverseParams),
        (funding_threshold, FundingThresholdParams),
        (funding_sign, FundingSignParams),
        (basis_aware, BasisAwareParams),
        (rotation, RotationParams),
    ):
        register(fn, cls, fn.__name__, overwrite=True)


_register_builtins()

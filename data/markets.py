"""Exchange frictions per symbol and leg: lot size, tick size, minimum quantity and minimum notional.

They come from a *ccxt markets file*: the JSON of ``exchange.load_markets()`` (a dict unified
symbol -> market, e.g. ``"BTC/USDT"`` for the spot pair and ``"BTC/USDT:USDT"`` for the linear
perpetual swap) or of ``exchange.fetch_markets()`` (a list of the same markets). Of each market
the loader reads:

- ``id`` (the exchange's name, ``"BTCUSDT"``, the name the engine knows the symbol by) and the
  type: ``spot`` (``type == "spot"`` or ``spot: true``) or a linear swap (``type == "swap"`` or
  ``swap: true``, with ``linear: true``; without a ``linear`` field, settled in its quote);
- ``precision.amount`` (the lot: quantities are whole multiples of it) and ``precision.price``
  (the tick);
- ``limits.amount.min`` (minimum quantity) and ``limits.cost.min`` (minimum notional, quote);
- ``contractSize`` of a swap (coins per contract; 1 when absent).

A missing or ``null`` value means no constraint (0).

Precision modes
---------------
ccxt gives ``precision`` in the exchange's ``precisionMode``, which the markets JSON does not
record: ``TICK_SIZE`` (the value *is* the step, ``0.00001``; Binance in current ccxt, and most
exchanges) or ``DECIMAL_PLACES`` (an integer count of digits after the point, ``5`` meaning a
step of ``1e-05``; Binance in older ccxt, e.g. ccxt's own static test snapshots).
``SIGNIFICANT_DIGITS`` (a few exchanges) has no fixed step and is not supported. With
``precision_mode="auto"`` the loader reads the mode off the file (ccxt uses one mode per
exchange):

1. any non-integer ``precision.amount`` or ``precision.price`` in the file: ``TICK_SIZE``;
2. else the exchange's raw filters in ``info`` (Binance's ``LOT_SIZE.stepSize`` and
   ``PRICE_FILTER.tickSize``) decide which reading of the integers they agree with;
3. else a ``0`` anywhere (a zero step is impossible): ``DECIMAL_PLACES``;
4. else the file does not say, and :class:`~data.errors.DataError` asks for ``precision_mode``.

Units
-----
All sizes are in the engine's units: coins (base units of the spot pair) and quote. A perp
quoted per 1,000 coins (``1000PEPEUSDT``, ``multiplier`` 1000) trades in units of 1,000 coins:
its lot and minimum quantity are multiplied by ``multiplier * contractSize`` and its tick (quote
per unit) divided by ``multiplier``, so every number is per coin.

Rounding
--------
:func:`common_step` gives the step both legs of a pair can trade (the least common multiple of
two decimal steps). The engine rounds quantities to it and refuses orders below the minimums
(``backtest.kernels.rules.lot_round_nb`` and ``too_small_nb``, the one home of those rules).
"""

from __future__ import annotations

import json
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import ConfigError, DataError, check_choice, did_you_mean

__all__ = [
    "PRECISION_MODES",
    "MarketRules",
    "load_markets",
    "common_step",
]

#: Accepted ``precision_mode`` values of :func:`load_markets`.
PRECISION_MODES = ("auto", "tick_size", "decimal_places")

#: The :class:`MarketRules` arrays, ``(N,)`` float each.
RULE_FIELDS = (
    "spot_lot",
    "perp_lot",
    "spot_min_qty",
    "perp_min_qty",
    "spot_min_notional",
    "perp_min_notional",
    "spot_tick",
    "perp_tick",
)


@dataclass(frozen=True, eq=False)
class MarketRules:
    """Lot, tick, minimum quantity and minimum notional of each symbol's spot and perp leg.

    Every array is ``(N,)`` float64, read-only, one value per symbol (the market's order); ``0``
    means no constraint.

    Attributes
    ----------
    symbols, perp_symbols : tuple of str
        The spot and perp names the rules were looked up by (``market.symbols``,
        ``market.perp_symbols``).
    spot_lot, perp_lot : ndarray
        Quantity step, coins.
    spot_min_qty, perp_min_qty : ndarray
        Minimum order quantity, coins.
    spot_min_notional, perp_min_notional : ndarray
        Minimum order notional (quantity times price), quote.
    spot_tick, perp_tick : ndarray
        Price step, quote per coin.
    source : str
        The markets file (``""`` for :meth:`none`).
    precision_mode : str
        ``"tick_size"`` or ``"decimal_places"``: how the file's precision was read.
    missing_spot, missing_perp : tuple of str
        Symbols absent from the file and left unconstrained (``missing="ignore"``).
    """

    symbols: tuple[str, ...]
    perp_symbols: tuple[str, ...]
    spot_lot: np.ndarray
    perp_lot: np.ndarray
    spot_min_qty: np.ndarray
    perp_min_qty: np.ndarray
    spot_min_notional: np.ndarray
    perp_min_notional: np.ndarray
    spot_tick: np.ndarray
    perp_tick: np.ndarray
    source: str = ""
    precision_mode: str = ""
    missing_spot: tuple[str, ...] = ()
    missing_perp: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "symbols", tuple(self.symbols))
        object.__setattr__(self, "perp_symbols", tuple(self.perp_symbols))
        n = len(self.symbols)
        if len(self.perp_symbols) != n:
            raise DataError(f"MarketRules: {n} spot symbols but {len(self.perp_symbols)} perp symbols")
        for name in RULE_FIELDS:
            a = np.array(getattr(self, name), dtype=np.float64).reshape(-1)
            if a.shape != (n,):
                raise DataError(f"MarketRules.{name} has shape {a.shape}, expected ({n},)")
            if not (np.isfinite(a) & (a >= 0)).all():
                raise DataError(f"MarketRules.{name} must be finite and >= 0")
            a.flags.writeable = False
            object.__setattr__(self, name, a)

    @classmethod
    def none(cls, symbols: Sequence[str], perp_symbols: Sequence[str] | None = None) -> MarketRules:
        """No constraint on any symbol (every array 0): the engine's behaviour without a markets file."""
        n = len(symbols)
        zeros: dict[str, Any] = {name: np.zeros(n) for name in RULE_FIELDS}
        return cls(tuple(symbols), tuple(perp_symbols if perp_symbols is not None else symbols), **zeros)

    @property
    def n_symbols(self) -> int:
        return len(self.symbols)

    def common_lot(self) -> np.ndarray:
        """``(N,)`` the step both legs can trade in the same number of coins (:func:`common_step`).

        The larger of the two lots when one divides the other (the usual case: ``0.00001`` spot,
        ``0.001`` perp gives ``0.001``), else their least common multiple (``0.04`` and ``0.06``
        give ``0.12``); a leg without a lot leaves the other's.
        """
        return np.array([common_step(a, b) for a, b in zip(self.spot_lot, self.perp_lot)], dtype=np.float64)

    def pair_min_notional(self) -> np.ndarray:
        """``(N,)`` the notional a pair's order must reach on both legs: the larger minimum, quote."""
        return np.maximum(self.spot_min_notional, self.perp_min_notional)

    def pair_min_qty(self) -> np.ndarray:
        """``(N,)`` the quantity a pair's order must reach on both legs: the larger minimum, coins."""
        return np.maximum(self.spot_min_qty, self.perp_min_qty)


# --------------------------------------------------------------------------- arithmetic


def _decimal(x: float) -> Decimal:
    """The shortest decimal that reads back as ``x`` (``0.1`` -> ``Decimal('0.1')``, not the binary value)."""
    return Decimal(repr(float(x)))


def _times(*xs: float) -> float:
    """The product of decimal numbers, computed on their decimals (``0.001 * 0.01`` is ``1e-05``)."""
    out = Decimal(1)
    for x in xs:
        out *= _decimal(x)
    return float(out)


def common_step(a: float, b: float) -> float:
    """The smallest positive step that is a whole multiple of both ``a`` and ``b``.

    ``0`` (no step) leaves the other. The steps are read as the shortest decimals that print
    them (``repr``: ``0.1`` is one tenth, not the binary float next to it), scaled to integers
    by the same power of ten, and their integer least common multiple is scaled back: exact for
    every decimal step (``common_step(0.1, 0.25) == 0.5``, ``common_step(0.00001, 0.001) ==
    0.001``), where a float ``a % b`` test would fail on ``0.3`` and ``0.1``.
    """
    a, b = float(a), float(b)
    for x in (a, b):
        if not math.isfinite(x) or x < 0:
            raise DataError(f"common_step: steps must be finite and >= 0, got {a} and {b}")
    if a == 0 or b == 0:
        return max(a, b)
    da, db = _decimal(a), _decimal(b)
    exp = min(int(da.as_tuple().exponent), int(db.as_tuple().exponent), 0)
    ia, ib = int(da.scaleb(-exp)), int(db.scaleb(-exp))
    return float(Decimal(math.lcm(ia, ib)).scaleb(exp))


# --------------------------------------------------------------------------- the file


def _read(path: Path) -> list[tuple[str, dict]]:
    """The file's markets as ``(key, market)`` pairs, the key naming the market in messages."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read ccxt markets file {path}: {exc}") from None
    if isinstance(data, dict):
        items = [(str(k), v) for k, v in data.items()]
    elif isinstance(data, list):
        items = [(f"[{i}]", v) for i, v in enumerate(data)]
    else:
        raise DataError(
            f"{path}: expected a JSON object of ccxt markets ({{'BTC/USDT': {{...}}}}) or a list of them, "
            f"got {type(data).__name__}"
        )
    for key, market in items:
        if not isinstance(market, dict):
            raise DataError(f"{path}: market {key!r} is a {type(market).__name__}, expected an object")
    return items


def _field(path: Path, key: str, market: dict, *names: str) -> Any:
    """``market[names[0]][names[1]]...``, None where absent; DataError naming the key where not an object."""
    value: Any = market
    for i, name in enumerate(names):
        if value is None:
            return None
        if not isinstance(value, dict):
            where = ".".join(names[:i])
            raise DataError(f"{path}: market {key!r} field {where!r} is a {type(value).__name__}, expected an object")
        value = value.get(name)
    return value


def _number(path: Path, key: str, value: Any, what: str) -> float:
    """``value`` as a float >= 0 (None: 0), or DataError naming the market and the field."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise DataError(f"{path}: market {key!r} {what} is {value!r}, expected a number")
    try:
        x = float(value)
    except ValueError:
        raise DataError(f"{path}: market {key!r} {what} is {value!r}, expected a number") from None
    if not math.isfinite(x) or x < 0:
        raise DataError(f"{path}: market {key!r} {what} is {value!r}, expected a finite number >= 0")
    return x


def _is_spot(market: dict) -> bool:
    return market.get("spot") is True or market.get("type") == "spot"


def _is_linear_swap(market: dict) -> bool:
    if not (market.get("swap") is True or market.get("type") == "swap"):
        return False
    linear = market.get("linear")
    if linear is None:  # older files: a swap settled in its quote currency is linear
        return market.get("settle") is not None and market.get("settle") == market.get("quote")
    return linear is True


def _precisions(market: dict) -> list[float]:
    """The numeric ``precision.amount``/``precision.price`` of a market (mode detection; never raises)."""
    prec = market.get("precision")
    if not isinstance(prec, dict):
        return []
    return [
        float(v)
        for v in (prec.get("amount"), prec.get("price"))
        if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
    ]


def _filter_steps(market: dict) -> list[tuple[float, float]]:
    """``(precision, exchange step)`` pairs from Binance-style raw filters in ``info`` (mode evidence)."""
    info = market.get("info")
    filters = info.get("filters") if isinstance(info, dict) else None
    if not isinstance(filters, list):
        return []
    prec = market.get("precision")
    if not isinstance(prec, dict):
        return []
    pairs = []
    for f in filters:
        if not isinstance(f, dict):
            continue
        for ftype, fkey, pkey in (("LOT_SIZE", "stepSize", "amount"), ("PRICE_FILTER", "tickSize", "price")):
            value = prec.get(pkey)
            if f.get("filterType") == ftype and isinstance(value, numbers.Real) and not isinstance(value, bool):
                try:
                    step = float(f[fkey])
                except (KeyError, TypeError, ValueError):
                    continue
                if step > 0 and math.isfinite(float(value)):
                    pairs.append((float(value), step))
    return pairs


def _detect_mode(path: Path, markets: list[tuple[str, dict]]) -> str:
    """ccxt's precision mode of the file (see the module docstring), or DataError."""
    values = [v for _, m in markets for v in _precisions(m)]
    if any(v != int(v) for v in values):
        return "tick_size"
    as_tick = as_digits = 0
    for _, m in markets:
        for p, step in _filter_steps(m):
            as_tick += math.isclose(p, step, rel_tol=1e-9)
            as_digits += math.isclose(10.0 ** -int(p), step, rel_tol=1e-9)
    if as_digits > as_tick:
        return "decimal_places"
    if as_tick > as_digits:
        return "tick_size"
    if any(v == 0 for v in values):
        return "decimal_places"
    raise DataError(
        f"{path}: cannot tell ccxt's precision mode (every precision is a whole number and the file gives "
        "no exchange filters to compare with); pass precision_mode='tick_size' (the numbers are steps) "
        "or 'decimal_places' (they count digits)"
    )


def _step(path: Path, key: str, value: Any, mode: str, what: str) -> float:
    """A precision value as a step: itself (tick size) or ``10 ** -value`` (decimal places); None: 0."""
    x = _number(path, key, value, what)
    if value is None or mode == "tick_size":
        return x
    if x != int(x):
        raise DataError(
            f"{path}: market {key!r} {what} is {value!r}, not a whole number of decimal places "
            "(precision_mode='decimal_places'; use 'tick_size' if it is the step)"
        )
    return float(Decimal(1).scaleb(-int(x)))


def load_markets(
    path: str | Path,
    spot_symbols: Sequence[str],
    perp_symbols: Sequence[str],
    *,
    multiplier: Sequence[float] | np.ndarray | None = None,
    missing: str = "raise",
    precision_mode: str = "auto",
) -> MarketRules:
    """Lot, tick and minimums of ``spot_symbols`` / ``perp_symbols`` from a ccxt markets file.

    Parameters
    ----------
    path : str or Path
        The JSON of ``exchange.load_markets()`` (or of ``fetch_markets()``).
    spot_symbols, perp_symbols : sequence of str
        The engine's names, one pair per symbol (``market.symbols``, ``market.perp_symbols``),
        matched against each market's ``id``: spot markets for the first, linear swaps for the
        second (the first such market of the file when an id repeats).
    multiplier : sequence of float, optional
        Coins per unit of each perp symbol (``market.multiplier``: 1000 for ``1000PEPEUSDT``); 1
        when not given. See the module docstring's Units.
    missing : {"raise", "ignore"}
        A symbol absent from the file raises; with ``"ignore"`` it gets no constraint (zeros)
        and is listed in ``missing_spot`` / ``missing_perp``.
    precision_mode : {"auto", "tick_size", "decimal_places"}
        How to read ``precision`` (see the module docstring).

    Raises
    ------
    DataError
        The file cannot be read or has the wrong shape, a field is not a number (the message
        names the file, the market and the field), a symbol is missing (with a did-you-mean), or
        the precision mode cannot be told.
    ConfigError
        ``missing`` or ``precision_mode`` is not one of the choices, or the symbols and the
        multiplier do not pair up.
    """
    check_choice("missing", missing, ("raise", "ignore"))
    check_choice("precision_mode", precision_mode, PRECISION_MODES)
    spot_symbols, perp_symbols = tuple(spot_symbols), tuple(perp_symbols)
    n = len(spot_symbols)
    if len(perp_symbols) != n:
        raise ConfigError(f"load_markets: {n} spot symbols but {len(perp_symbols)} perp symbols")
    mult = np.ones(n) if multiplier is None else np.asarray(multiplier, dtype=np.float64).reshape(-1)
    if mult.shape != (n,) or not (mult > 0).all():
        raise ConfigError(
            f"load_markets: multiplier must hold {n} numbers > 0 (one per perp symbol), got {multiplier!r}"
        )
    path = Path(path)
    markets = _read(path)
    mode = _detect_mode(path, markets) if precision_mode == "auto" else precision_mode

    by_leg: dict[str, dict[str, tuple[str, dict]]] = {"spot": {}, "perp": {}}
    for key, m in markets:
        mid = m.get("id")
        if not isinstance(mid, str):
            continue  # not a market the engine can name
        leg = "spot" if _is_spot(m) else "perp" if _is_linear_swap(m) else None
        if leg is not None:
            by_leg[leg].setdefault(mid, (key, m))

    out = {name: np.zeros(n) for name in RULE_FIELDS}
    absent: dict[str, list[str]] = {"spot": [], "perp": []}
    for leg, names in (("spot", spot_symbols), ("perp", perp_symbols)):
        found = by_leg[leg]
        for i, sym in enumerate(names):
            if sym not in found:
                absent[leg].append(sym)
                continue
            key, m = found[sym]
            lot = _step(path, key, _field(path, key, m, "precision", "amount"), mode, "precision.amount")
            tick = _step(path, key, _field(path, key, m, "precision", "price"), mode, "precision.price")
            min_qty = _number(path, key, _field(path, key, m, "limits", "amount", "min"), "limits.amount.min")
            min_cost = _number(path, key, _field(path, key, m, "limits", "cost", "min"), "limits.cost.min")
            if leg == "perp":
                size = _number(path, key, m.get("contractSize"), "contractSize") or 1.0
                lot, min_qty, tick = _times(lot, size, mult[i]), _times(min_qty, size, mult[i]), tick / mult[i]
            out[f"{leg}_lot"][i] = lot
            out[f"{leg}_tick"][i] = tick
            out[f"{leg}_min_qty"][i] = min_qty
            out[f"{leg}_min_notional"][i] = min_cost

    if missing == "raise":
        for leg, kind in (("spot", "spot market"), ("perp", "linear swap")):
            if absent[leg]:
                sym = absent[leg][0]
                other = by_leg["perp" if leg == "spot" else "spot"]
                also = (
                    f"; {sym!r} is there only as a {'linear swap' if leg == 'spot' else 'spot market'}"
                    if sym in other
                    else ""
                )
                more = (
                    f" ({len(absent[leg])} {leg} symbols missing: {', '.join(absent[leg])})"
                    if len(absent[leg]) > 1
                    else ""
                )
                raise DataError(
                    f"{path}: no {kind} with id {sym!r}{did_you_mean(sym, by_leg[leg])}{also}{more}; "
                    "pass missing='ignore' to trade it without lot and minimum limits"
                )
    return MarketRules(
        spot_symbols,
        perp_symbols,
        **out,
        source=str(path),
        precision_mode=mode,
        missing_spot=tuple(absent["spot"]),
        missing_perp=tuple(absent["perp"]),
    )

"""Venue rules as data: settlement interval, funding formula, caps, fees, maintenance margin.

Each venue has one TOML file in ``data/venues/`` (``binance.toml``, ``bybit.toml``, ``okx.toml``,
``hyperliquid.toml``; format and fields: ``data/README.md``, "Venue rules"). Every rule is a list
of periods, each with ``valid_from`` (included), an optional ``valid_to`` (excluded; absent = still
in force), the value(s) and a ``source``; a value that could not be sourced says so in its
source (``"assumed: ..."`` or ``"not found: ..."``). Example::

    from data.venues import venue_rules
    rules = venue_rules("hyperliquid")
    rules.fees_at("2025-06-01").perp_taker_fee_rate        # 0.00045 (fraction of notional)
    rules.interest_rate_per_interval_at("2025-06-01", 1)    # 1.25e-05 (fraction per 1h interval)
    rules.funding_price, rules.oracle_stand_in.pick({"perp"})  # ('oracle', 'perp')

Units: rates are fractions (0.0005 = 0.05% = 5 bps), funding rates, caps and floors are per
settlement interval, the interest is per 8 hours (scaled to the interval), times are UTC (a naive
time is read as UTC). The settlement interval of a venue is only a default: carry takes each
symbol's settlement times from its funding data.

Errors: an unknown venue is an :class:`~data.errors.UnknownNameError` listing the known venues; a
damaged file (unknown key, missing key, a value of the wrong type or out of its plausible range,
unordered, overlapping or gapped periods) is a :class:`~data.errors.DataError` naming the file
and the key (``fees[1].perp_taker_fee_rate``).
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import ConfigError, DataError, did_you_mean, unknown_name

__all__ = [
    "VENUES_DIR",
    "FeeSchedule",
    "FundingCap",
    "FundingFormula",
    "MaintenanceRate",
    "SettlementPeriod",
    "StandIn",
    "VenueRules",
    "known_venues",
    "venue_rules",
]

#: The folder of the shipped venue files.
VENUES_DIR = Path(__file__).with_name("venues")
FUNDING_PRICES = ("mark", "oracle")
STAND_IN_SERIES = ("index", "perp")
QUOTES = ("USDT", "USDC")
MARKETS = ("spot", "perp")


# --------------------------------------------------------------------------- the model
@dataclass(frozen=True, kw_only=True)
class _Period:
    """A rule's validity: from ``valid_from`` (included) to ``valid_to`` (excluded; None = open)."""

    valid_from: datetime
    valid_to: datetime | None
    source: str
    note: str = ""

    def covers(self, t: datetime) -> bool:
        return self.valid_from <= t and (self.valid_to is None or t < self.valid_to)


@dataclass(frozen=True, kw_only=True)
class SettlementPeriod(_Period):
    """The venue's default settlement interval, hours (per-symbol switches come from the data)."""

    interval_hours: float


@dataclass(frozen=True, kw_only=True)
class FundingFormula(_Period):
    """``rate = P + clamp(I - P, -clamp, +clamp)`` (no clamp term when ``premium_clamp`` is None),
    then multiplied by ``N / 8`` for an ``N``-hour interval when ``rate_scaled_by_interval``.

    ``interest_rate_per_8h`` is the interest ``I`` as a fraction per 8 hours; per interval it is
    ``I * N / 8`` (:meth:`interest_per_interval`). ``symbol`` None: every symbol without a row
    of its own.
    """

    symbol: str | None = None
    interest_rate_per_8h: float
    premium_clamp: float | None = None
    rate_scaled_by_interval: bool = False

    def interest_per_interval(self, interval_hours: float) -> float:
        """The interest component, fraction per ``interval_hours``-hour settlement interval."""
        return self.interest_rate_per_8h * float(interval_hours) / 8.0


@dataclass(frozen=True, kw_only=True)
class FundingCap(_Period):
    """Cap and floor of the settled rate, fraction per settlement interval.

    ``cap`` None: not known (the source says why), or given by ``mmr_multiple``: the cap is
    ``mmr_multiple x`` the maintenance margin rate of the symbol's top bracket (Binance: 0.75).
    """

    symbol: str | None = None
    cap: float | None = None
    floor: float | None = None
    mmr_multiple: float | None = None

    def bounds(self, top_bracket_mmr: float | None = None) -> tuple[float, float] | None:
        """``(floor, cap)``; from ``top_bracket_mmr`` (fraction) when the rule is a multiple of it;
        None when unknown."""
        if self.cap is not None:
            return (self.floor if self.floor is not None else -self.cap, self.cap)
        if self.mmr_multiple is not None and top_bracket_mmr is not None:
            c = self.mmr_multiple * float(top_bracket_mmr)
            return (-c, c)
        return None


@dataclass(frozen=True, kw_only=True)
class FeeSchedule(_Period):
    """Base-tier (VIP 0 / regular) trading fees, fraction of fill notional (a negative maker fee
    is a rebate)."""

    spot_taker_fee_rate: float
    spot_maker_fee_rate: float
    perp_taker_fee_rate: float
    perp_maker_fee_rate: float

    def as_config(self) -> dict[str, float]:
        """The four rates under :class:`backtest.config.BacktestConfig`'s field names."""
        return {
            "spot_taker_fee_rate": self.spot_taker_fee_rate,
            "spot_maker_fee_rate": self.spot_maker_fee_rate,
            "perp_taker_fee_rate": self.perp_taker_fee_rate,
            "perp_maker_fee_rate": self.perp_maker_fee_rate,
        }


@dataclass(frozen=True, kw_only=True)
class MaintenanceRate(_Period):
    """Flat maintenance margin rate (fraction of notional, no deduction) for when no tiers file is
    given: the symbol's first bracket, or the venue's default (``symbol`` None)."""

    symbol: str | None = None
    rate: float
    max_leverage: float | None = None


@dataclass(frozen=True)
class StandIn:
    """The catalog series that stands in for a price the data lacks (Hyperliquid's oracle price).

    ``series``: kinds in order of preference (``"index"``, ``"perp"``); ``flag``: the name a loader
    attaches to the result; ``note``: the one-line explanation for the report.
    """

    series: tuple[str, ...]
    flag: str
    note: str

    def pick(self, available: Iterable[str]) -> str | None:
        """The first of :attr:`series` among ``available`` catalog kinds, or None."""
        have = set(available)
        return next((s for s in self.series if s in have), None)


@dataclass(frozen=True)
class VenueRules:
    """One venue's rules (immutable), read from ``data/venues/<venue>.toml`` by :func:`venue_rules`.

    Attributes
    ----------
    venue, name : str
        The venue id (``"binance"``) and a readable name.
    quote : {'USDT', 'USDC'}
        Quote and margin currency of the venue's perps (and of its spot pairs carry reads).
    markets : tuple of str
        ``"spot"``, ``"perp"``.
    funding_price : {'mark', 'oracle'}
        The price funding is paid at (``-q x price x rate``).
    oracle_stand_in : StandIn or None
        For ``"oracle"``: which catalog series stands in for the oracle price, with its flag.
    tiers_file : str or None
        Name of a ccxt-format leverage tiers file for the venue (carry ships none); see
        :meth:`tiers_path`. ``tiers_note`` says where it comes from.
    path : Path
        The TOML file, named in errors.
    """

    venue: str
    name: str
    quote: str
    markets: tuple[str, ...]
    funding_price: str
    funding_price_source: str
    oracle_stand_in: StandIn | None
    tiers_file: str | None
    tiers_note: str
    settlement: tuple[SettlementPeriod, ...]
    funding_formula: tuple[FundingFormula, ...]
    funding_cap: tuple[FundingCap, ...]
    fees: tuple[FeeSchedule, ...]
    maintenance: tuple[MaintenanceRate, ...]
    path: Path

    # ---------------------------------------------------------------- lookups
    def _covering(self, rows: tuple[Any, ...], time: Any, symbol: str | None = None) -> Any:
        t = _utc(time)
        key = _symbol_key(symbol)
        for group in ((r for r in rows if key is not None and r.symbol == key), (r for r in rows if _venue_wide(r))):
            hit = next((r for r in group if r.covers(t)), None)
            if hit is not None:
                return hit
        return None

    def _required(self, table: str, rows: tuple[Any, ...], time: Any, symbol: str | None = None) -> Any:
        hit = self._covering(rows, time, symbol)
        if hit is None:
            wide = [r for r in rows if _venue_wide(r)]
            span = f"{_iso(wide[0].valid_from)} to {_iso(wide[-1].valid_to) if wide[-1].valid_to else 'now'}"
            raise DataError(
                f"{self.path}: no {table} period covers {_iso(_utc(time))} (the file covers {span}); "
                "pass the value explicitly or add a sourced period"
            )
        return hit

    def fees_at(self, time: Any) -> FeeSchedule:
        """The base-tier fee schedule in force at ``time`` (UTC)."""
        fees: FeeSchedule = self._required("fees", self.fees, time)
        return fees

    def settlement_at(self, time: Any) -> SettlementPeriod:
        """The default settlement period in force at ``time``."""
        period: SettlementPeriod = self._required("settlement", self.settlement, time)
        return period

    def interval_hours_at(self, time: Any) -> float:
        """The venue's default settlement interval at ``time``, hours (a fallback: per-symbol
        intervals come from the funding data)."""
        return self.settlement_at(time).interval_hours

    @property
    def default_interval_hours(self) -> float:
        """The default settlement interval in force now (the last period), hours."""
        return self.settlement[-1].interval_hours

    def funding_formula_at(self, time: Any, symbol: str | None = None) -> FundingFormula:
        """The funding formula at ``time`` (the symbol's own row if it has one)."""
        formula: FundingFormula = self._required("funding_formula", self.funding_formula, time, symbol)
        return formula

    def interest_rate_per_interval_at(self, time: Any, interval_hours: float, symbol: str | None = None) -> float:
        """The interest component at ``time``, fraction per ``interval_hours``-hour interval
        (Binance, Bybit, Hyperliquid: 0.0001 per 8h, so 1.25e-5 per hour)."""
        if isinstance(interval_hours, bool) or not isinstance(interval_hours, (int, float)) or not interval_hours > 0:
            raise ConfigError(f"interval_hours must be a number of hours > 0, got {interval_hours!r}")
        return self.funding_formula_at(time, symbol).interest_per_interval(interval_hours)

    def funding_cap_at(self, time: Any, symbol: str | None = None) -> FundingCap | None:
        """The cap/floor rule at ``time`` for ``symbol`` (its own row, else the venue's), or None
        when the file has none for that time; see :meth:`FundingCap.bounds`."""
        cap: FundingCap | None = self._covering(self.funding_cap, time, symbol)
        return cap

    def maintenance_fallback(self, symbol: str | None = None, time: Any = None) -> tuple[float, str]:
        """``(rate, source)``: the flat maintenance margin rate to use for ``symbol`` when no tiers
        file is given (the symbol's first bracket, else the venue default), at ``time`` (None:
        the rule in force now)."""
        rule = self.maintenance_rule(symbol, time)
        return rule.rate, rule.source

    def maintenance_rule(self, symbol: str | None = None, time: Any = None) -> MaintenanceRate:
        """The row of :meth:`maintenance_fallback` (its rate, source and, where the venue
        publishes it for the symbol, ``max_leverage``)."""
        if time is not None:
            hit: MaintenanceRate = self._required("maintenance", self.maintenance, time, symbol)
            return hit
        key = _symbol_key(symbol)
        for group in (
            [r for r in self.maintenance if key is not None and r.symbol == key],
            self._wide(self.maintenance),
        ):
            if group and group[-1].valid_to is None:
                return group[-1]
        return self._wide(self.maintenance)[-1]

    def tiers_path(self, data_dir: str | Path) -> Path | None:
        """``data_dir / tiers_file`` when the venue has a tiers file and it is there, else None
        (then use :meth:`maintenance_fallback`). carry ships no tiers file: the user passes the
        folder that holds it (e.g. ``../shared/data`` for ``binance_leverage_tiers.json``)."""
        if self.tiers_file is None:
            return None
        path = Path(data_dir) / self.tiers_file
        return path if path.is_file() else None

    @staticmethod
    def _wide(rows: tuple[Any, ...]) -> list[Any]:
        return [r for r in rows if _venue_wide(r)]


def _venue_wide(row: Any) -> bool:
    return getattr(row, "symbol", None) is None


# --------------------------------------------------------------------------- time and symbols
def _utc(time: Any) -> datetime:
    """``time`` (datetime, date, ISO text, pandas or NumPy timestamp) as an aware UTC datetime."""
    value = time
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    elif isinstance(value, np.datetime64):
        value = value.astype("datetime64[us]").item()
    elif isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ConfigError(f"not a date or time: {time!r} (expected ISO 8601, e.g. 2025-05-05T03:00Z)") from None
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise ConfigError(f"not a date or time: {time!r}")


def _iso(t: datetime | None) -> str:
    if t is None:
        return "open"
    return t.strftime("%Y-%m-%d") if (t.hour, t.minute, t.second) == (0, 0, 0) else t.strftime("%Y-%m-%dT%H:%MZ")


def _symbol_key(symbol: str | None) -> str | None:
    """``"BTC/USDT:USDT"`` -> ``"BTCUSDT"``; catalog names (``"BTCUSDT"``) unchanged."""
    if symbol is None:
        return None
    if not isinstance(symbol, str) or not symbol:
        raise ConfigError(f"symbol must be a non-empty text, got {symbol!r}")
    if "/" in symbol:
        base, rest = symbol.split("/", 1)
        return base + rest.split(":", 1)[0]
    return symbol


# --------------------------------------------------------------------------- reading and checking
@dataclass(frozen=True)
class _Num:
    """A numeric field: plausible range ``[lo, hi]`` (``lo_open``: ``lo`` excluded) and its unit."""

    lo: float
    hi: float
    unit: str
    lo_open: bool = False
    required: bool = True


_FRACTION = "fraction of notional"
_PER_INTERVAL = "fraction per settlement interval"
_COMMON = ("valid_from", "valid_to", "source", "note")
#: table -> (row class, fields, symbol rows allowed, venue-wide rows must be contiguous and present)
_TABLES: dict[str, tuple[type, dict[str, Any], bool, bool]] = {
    "settlement": (SettlementPeriod, {"interval_hours": _Num(0, 24, "hours", lo_open=True)}, False, True),
    "funding_formula": (
        FundingFormula,
        {
            "interest_rate_per_8h": _Num(0, 0.001, "fraction per 8 hours"),
            "premium_clamp": _Num(0, 0.01, _PER_INTERVAL, lo_open=True, required=False),
            "rate_scaled_by_interval": bool,
        },
        True,
        True,
    ),
    "funding_cap": (
        FundingCap,
        {
            "cap": _Num(0, 0.05, _PER_INTERVAL, lo_open=True, required=False),
            "floor": _Num(-0.05, 0, _PER_INTERVAL, required=False),
            "mmr_multiple": _Num(0, 1, "multiple of the top bracket's maintenance margin rate", True, False),
        },
        True,
        False,
    ),
    "fees": (
        FeeSchedule,
        {
            "spot_taker_fee_rate": _Num(0, 0.01, _FRACTION),
            "spot_maker_fee_rate": _Num(-0.001, 0.01, _FRACTION),
            "perp_taker_fee_rate": _Num(0, 0.01, _FRACTION),
            "perp_maker_fee_rate": _Num(-0.001, 0.01, _FRACTION),
        },
        False,
        True,
    ),
    "maintenance": (
        MaintenanceRate,
        {
            "rate": _Num(0, 0.5, _FRACTION, lo_open=True),
            "max_leverage": _Num(1, 200, "x", required=False),
        },
        True,
        True,
    ),
}
_TOP = ("venue", "name", "quote", "markets", "funding_price", "tiers", *_TABLES)
_FUNDING_PRICE_KEYS = ("price", "source", "stand_in", "flag", "note")
_TIERS_KEYS = ("file", "note")


def _unknown_keys(table: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    bad = [k for k in table if k not in known]
    if bad:
        hints = ", ".join(f"{k!r}{did_you_mean(k, known)}" for k in bad)
        raise DataError(f"{where}: unknown key(s) {hints}; valid: {', '.join(known)}")


def _text(table: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    v = table.get(key)
    if v is None and not required:
        return None
    if not isinstance(v, str) or not v.strip():
        got = "missing" if v is None else f"got {v!r}"
        raise DataError(f"{where}.{key} must be a non-empty text ({got})")
    return v.strip()


def _number(value: Any, spec: _Num, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise DataError(f"{where} must be a number ({spec.unit}), got {value!r}")
    v = float(value)
    low_ok = v > spec.lo if spec.lo_open else v >= spec.lo
    if low_ok and v <= spec.hi:
        return v
    hint = ""
    if spec.unit.startswith("fraction") and v > spec.hi:
        meant = [
            f"{v / d:g} if {label} were meant" for d, label in ((1e4, "bps"), (100, "percent")) if v / d <= spec.hi
        ]
        hint = f" ({'; '.join(meant)})" if meant else ""
    lo = f"> {spec.lo:g}" if spec.lo_open else f">= {spec.lo:g}"
    raise DataError(f"{where}={value!r} is not a plausible {spec.unit} (must be {lo} and <= {spec.hi:g}){hint}")


def _instant(value: Any, where: str) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise DataError(f"{where}={value.isoformat()} has no UTC offset (write it as {value.isoformat()}Z)")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    raise DataError(f"{where} must be a TOML date (2025-05-05) or UTC date-time (2025-05-05T03:00:00Z), got {value!r}")


def _row(table: str, raw: Any, i: int, path: Path) -> Any:
    cls, fields, per_symbol, _ = _TABLES[table]
    where = f"{path}: {table}[{i}]"
    if not isinstance(raw, Mapping):
        raise DataError(f"{where} must be a table ([[{table}]]), got {type(raw).__name__}")
    known = (*(("symbol",) if per_symbol else ()), *_COMMON, *fields)
    _unknown_keys(raw, known, where)
    if "valid_from" not in raw:
        raise DataError(f"{where}.valid_from is missing (the first date the rule holds)")
    kw: dict[str, Any] = {
        "valid_from": _instant(raw["valid_from"], f"{where}.valid_from"),
        "valid_to": _instant(raw["valid_to"], f"{where}.valid_to") if "valid_to" in raw else None,
        "source": _text(raw, "source", where),
        "note": _text(raw, "note", where, required=False) or "",
    }
    if kw["valid_to"] is not None and kw["valid_to"] <= kw["valid_from"]:
        raise DataError(f"{where}: valid_to {_iso(kw['valid_to'])} is not after valid_from {_iso(kw['valid_from'])}")
    if per_symbol and "symbol" in raw:
        kw["symbol"] = _symbol_key(_text(raw, "symbol", where))
    for key, spec in fields.items():
        if spec is bool:
            v = raw.get(key, False)
            if not isinstance(v, bool):
                raise DataError(f"{where}.{key} must be true or false, got {v!r}")
            kw[key] = v
        elif key in raw:
            kw[key] = _number(raw[key], spec, f"{where}.{key}")
        elif spec.required:
            raise DataError(f"{where}.{key} is missing ({spec.unit})")
    return cls(**kw)


def _check_periods(table: str, rows: list[Any], path: Path) -> None:
    """Within each symbol (and the venue-wide rows): ordered, not overlapping; venue-wide rows of
    the contiguous tables present and without gaps."""
    contiguous = _TABLES[table][3]
    index = {id(r): i for i, r in enumerate(rows)}
    groups: dict[str | None, list[Any]] = {}
    for r in rows:
        groups.setdefault(getattr(r, "symbol", None), []).append(r)
    if contiguous and None not in groups:
        raise DataError(f"{path}: {table} needs at least one row for every symbol (a row without 'symbol')")
    for sym, group in groups.items():
        for prev, cur in zip(group, group[1:]):
            where = f"{path}: {table}[{index[id(cur)]}]" + (f" ({sym})" if sym else "")
            if cur.valid_from < prev.valid_from:
                raise DataError(
                    f"{where}: periods out of order (valid_from {_iso(cur.valid_from)} before the previous "
                    f"{_iso(prev.valid_from)}); list them oldest first"
                )
            if prev.valid_to is None or prev.valid_to > cur.valid_from:
                raise DataError(
                    f"{where}: period from {_iso(cur.valid_from)} overlaps {table}[{index[id(prev)]}] "
                    f"(valid to {_iso(prev.valid_to)})"
                )
            if contiguous and sym is None and prev.valid_to != cur.valid_from:
                raise DataError(
                    f"{where}: gap from {_iso(prev.valid_to)} to {_iso(cur.valid_from)} "
                    f"(venue-wide {table} periods must follow on: valid_to = the next valid_from)"
                )


def _choice(value: Any, options: tuple[str, ...], where: str) -> str:
    if value not in options:
        hint = did_you_mean(value, options) if isinstance(value, str) else ""
        raise DataError(f"{where} must be one of {', '.join(options)}, got {value!r}{hint}")
    return str(value)


def _parse(data: dict[str, Any], path: Path) -> VenueRules:
    where = str(path)
    _unknown_keys(data, _TOP, where)
    venue = _text(data, "venue", where)
    if venue != path.stem:
        raise DataError(f"{where}.venue is {venue!r} but the file is named {path.name}: they must agree")
    quote = _choice(data.get("quote"), QUOTES, f"{where}.quote")
    markets = data.get("markets")
    if not isinstance(markets, list) or not markets:
        raise DataError(f"{where}.markets must be a list of {', '.join(MARKETS)}, got {markets!r}")
    markets_t = tuple(_choice(m, MARKETS, f"{where}.markets") for m in markets)

    fp = data.get("funding_price")
    if not isinstance(fp, Mapping):
        raise DataError(f"{where}.funding_price must be a table ([funding_price] with price and source)")
    fp_where = f"{where}: funding_price"
    _unknown_keys(fp, _FUNDING_PRICE_KEYS, fp_where)
    price = _choice(fp.get("price"), FUNDING_PRICES, f"{fp_where}.price")
    stand_in: StandIn | None = None
    if price == "oracle":
        series = fp.get("stand_in")
        if not isinstance(series, list) or not series:
            raise DataError(
                f"{fp_where}.stand_in must list the catalog series that stand in for the oracle price "
                f"({', '.join(STAND_IN_SERIES)}), got {series!r}"
            )
        stand_in = StandIn(
            tuple(_choice(s, STAND_IN_SERIES, f"{fp_where}.stand_in") for s in series),
            str(_text(fp, "flag", fp_where)),
            str(_text(fp, "note", fp_where)),
        )
    elif any(k in fp for k in ("stand_in", "flag")):
        raise DataError(f"{fp_where}: stand_in and flag apply only to price = 'oracle' (price is {price!r})")

    tiers = data.get("tiers")
    if not isinstance(tiers, Mapping):
        raise DataError(f"{where}.tiers must be a table ([tiers] with note, and file when the venue has one)")
    _unknown_keys(tiers, _TIERS_KEYS, f"{where}: tiers")

    tables: dict[str, tuple[Any, ...]] = {}
    for table in _TABLES:
        raw = data.get(table, [])
        if not isinstance(raw, list):
            raise DataError(f"{where}.{table} must be an array of tables ([[{table}]]), got {type(raw).__name__}")
        rows = [_row(table, r, i, path) for i, r in enumerate(raw)]
        _check_periods(table, rows, path)
        tables[table] = tuple(rows)
    return VenueRules(
        venue=str(venue),
        name=str(_text(data, "name", where)),
        quote=quote,
        markets=markets_t,
        funding_price=price,
        funding_price_source=str(_text(fp, "source", fp_where)),
        oracle_stand_in=stand_in,
        tiers_file=_text(tiers, "file", f"{where}: tiers", required=False),
        tiers_note=str(_text(tiers, "note", f"{where}: tiers")),
        settlement=tables["settlement"],
        funding_formula=tables["funding_formula"],
        funding_cap=tables["funding_cap"],
        fees=tables["fees"],
        maintenance=tables["maintenance"],
        path=path,
    )


@functools.lru_cache(maxsize=64)
def _load(path_text: str, stamp: tuple[int, int]) -> VenueRules:
    path = Path(path_text)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read venue rules {path}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{path} is not valid TOML: {exc}") from None
    return _parse(data, path)


def known_venues(root: str | Path | None = None) -> tuple[str, ...]:
    """The venues with a rules file in ``root`` (default: the shipped ``data/venues``), sorted."""
    folder = Path(root) if root is not None else VENUES_DIR
    return tuple(sorted(p.stem for p in folder.glob("*.toml"))) if folder.is_dir() else ()


def venue_rules(venue: str, root: str | Path | None = None) -> VenueRules:
    """The rules of ``venue`` (``"binance"``, ``"bybit"``, ``"okx"``, ``"hyperliquid"``), read from
    ``<root>/<venue>.toml`` (default root: the shipped ``data/venues``) and checked.

    Raises
    ------
    UnknownNameError
        No file for ``venue``: names the file looked for and the known venues, with a hint.
    DataError
        The file is unreadable or damaged (names the file and the key).
    """
    folder = Path(root) if root is not None else VENUES_DIR
    known = known_venues(folder)
    if not isinstance(venue, str) or venue not in known:
        raise unknown_name("venue", venue, known, where=f" (no {folder / f'{venue}.toml'})")
    path = folder / f"{venue}.toml"
    st = path.stat()
    return _load(str(path), (st.st_mtime_ns, st.st_size))

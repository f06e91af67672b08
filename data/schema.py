"""The on-disk data contract: one explicit Arrow schema per kind of market data.

Every table in the catalog follows one of the schemas below. Conventions:

* ``time`` is a UTC timestamp (``timestamp[ms, tz=UTC]``). Bars are stamped at their
  **open**; funding settlements at the settlement instant floored to the minute.
* Prices are in quote currency per one unit of base (e.g. USDT per BTC). Perpetuals quoted
  per 1000 coins on the exchange (``1000PEPEUSDT``) are stored as the exchange quotes them;
  :mod:`data.symbols` converts them at load time.
* Volumes are in base units; ``quote_volume`` in quote units.
* Rates are plain fractions (0.0001 = 0.01% = 1 bp), never percent or bps. Funding rates are
  per settlement interval; borrow rates per hour.

Units are written into each field's metadata (key ``unit``) and the schema version into the
schema metadata (key ``carry.schema_version``), so a file explains itself.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

import pyarrow as pa

from data.errors import ConfigError, unknown_name

SCHEMA_VERSION = "1"
TIME_TYPE = pa.timestamp("ms", tz="UTC")


class Kind(str, Enum):
    """The kinds of data the catalog holds."""

    SPOT = "spot"  #: spot klines (last trade price)
    PERP = "perp"  #: perpetual klines (last trade price)
    MARK = "mark"  #: perpetual mark-price klines (used for funding and liquidation)
    INDEX = "index"  #: index-price klines (the exchange's spot index)
    PREMIUM = "premium"  #: premium-index klines (fraction of the index)
    FUNDING = "funding"  #: funding settlements
    BORROW = "borrow"  #: margin borrow rates of the base asset

    @property
    def is_bar(self) -> bool:
        return self not in (Kind.FUNDING, Kind.BORROW)

    @classmethod
    def _missing_(cls, value: object) -> Kind:
        """``Kind("SPOT")`` is ``Kind.SPOT``; an unknown kind is an ``UnknownNameError`` with a hint."""
        if isinstance(value, str):
            for k in cls:
                if k.value == value.strip().lower():
                    return k
        raise unknown_name("kind", value, [k.value for k in cls])


def _field(name: str, type_: pa.DataType, unit: str, doc: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"unit": unit, "doc": doc})


def _schema(kind: Kind, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={"carry.schema_version": SCHEMA_VERSION, "carry.kind": kind.value})


_TIME_BAR = _field("time", TIME_TYPE, "UTC", "bar open time")


def _price_fields(unit: str, what: str) -> list[pa.Field]:
    return [
        _field("open", pa.float64(), unit, f"{what} at the bar open"),
        _field("high", pa.float64(), unit, f"highest {what} in the bar"),
        _field("low", pa.float64(), unit, f"lowest {what} in the bar"),
        _field("close", pa.float64(), unit, f"{what} at the bar close"),
    ]


_TRADED_BAR_FIELDS = [
    _TIME_BAR,
    *_price_fields("quote/base", "trade price"),
    _field("volume", pa.float64(), "base", "traded volume in base units"),
    _field("quote_volume", pa.float64(), "quote", "traded volume in quote units", nullable=True),
    _field("trades", pa.int64(), "count", "number of trades", nullable=True),
]

SCHEMAS: dict[Kind, pa.Schema] = {
    Kind.SPOT: _schema(Kind.SPOT, _TRADED_BAR_FIELDS),
    Kind.PERP: _schema(Kind.PERP, _TRADED_BAR_FIELDS),
    Kind.MARK: _schema(Kind.MARK, [_TIME_BAR, *_price_fields("quote/base", "mark price")]),
    Kind.INDEX: _schema(Kind.INDEX, [_TIME_BAR, *_price_fields("quote/base", "index price")]),
    Kind.PREMIUM: _schema(Kind.PREMIUM, [_TIME_BAR, *_price_fields("fraction", "premium index (perp/index - 1)")]),
    Kind.FUNDING: _schema(
        Kind.FUNDING,
        [
            _field("time", TIME_TYPE, "UTC", "settlement time, floored to the minute"),
            _field("rate", pa.float64(), "fraction/interval", "funding rate per settlement interval"),
            _field(
                "interval_hours",
                pa.float64(),
                "hours",
                "settlement interval (from the source, or derived from consecutive settlements)",
                nullable=True,
            ),
            _field("mark_price", pa.float64(), "quote/base", "mark price at settlement", nullable=True),
        ],
    ),
    Kind.BORROW: _schema(
        Kind.BORROW,
        [
            _field("time", TIME_TYPE, "UTC", "start of the hour the rate applies to"),
            _field("hourly_rate", pa.float64(), "fraction/hour", "margin borrow interest rate per hour"),
        ],
    ),
}

#: Columns that hold prices which must be finite and strictly positive.
PRICE_COLUMNS: dict[Kind, tuple[str, ...]] = {
    Kind.SPOT: ("open", "high", "low", "close"),
    Kind.PERP: ("open", "high", "low", "close"),
    Kind.MARK: ("open", "high", "low", "close"),
    Kind.INDEX: ("open", "high", "low", "close"),
    Kind.PREMIUM: (),
    Kind.FUNDING: (),
    Kind.BORROW: (),
}

#: Funding rates above this absolute value (a fraction per interval) are taken as a sign
#: that the source holds percent, not fractions. No exchange cap is anywhere near it.
MAX_ABS_FUNDING_RATE = 0.5

#: Hourly borrow rates above this absolute value are rejected as a units error (1%/hour).
MAX_ABS_HOURLY_BORROW_RATE = 0.01


def schema_for(kind: Kind | str) -> pa.Schema:
    """The Arrow schema of ``kind``."""
    return SCHEMAS[Kind(kind)]


def field_units(kind: Kind | str) -> dict[str, str]:
    """``{column: unit}`` for ``kind``, read from the schema's field metadata."""
    return {f.name: f.metadata[b"unit"].decode() for f in schema_for(kind)}


@dataclass(frozen=True)
class Timeframe:
    """A bar length such as ``1m``, ``1h``, ``4h`` or ``1d``."""

    label: str

    @property
    def minutes(self) -> int:
        return timeframe_minutes(self.label)


_TF_UNITS = {"m": 1, "h": 60, "d": 1440, "w": 10080}


def timeframe_minutes(label: str | None, what: str = "timeframe") -> int:
    """Minutes in a timeframe label (``"1m"`` -> 1, ``"4h"`` -> 240, ``"1d"`` -> 1440).

    Raises :class:`~data.errors.ConfigError` (a ``ValueError``) naming ``what`` (e.g. ``"freq"``)
    and the label when it is not a positive number followed by m, h, d or w.
    """
    bad = f"bad {what} {label!r}: expected a number and one of m, h, d, w (e.g. 1m, 1h, 4h, 1d)"
    if not isinstance(label, str):
        raise ConfigError(bad)
    alias = re.fullmatch(r"\s*(\d+)\s*(min(ute)?s?|h(ou)?rs?|hours?|H|days?|D|weeks?|W|T)\s*", label)
    if alias:  # pandas-style or spelt-out units: say what to write
        unit = {"T": "m", "mi": "m"}.get(alias.group(2)[:2], alias.group(2)[0].lower())
        bad = (
            f"bad {what} {label!r} (did you mean '{int(alias.group(1))}{unit}'?): write a number and one of m, h, d, w"
        )
    text = label.strip()
    try:
        minutes = int(text[:-1]) * _TF_UNITS[text[-1:]]
    except (ValueError, KeyError):
        raise ConfigError(bad) from None
    if minutes <= 0:
        raise ConfigError(f"bad {what} {label!r}: must be positive")
    return minutes

"""Ingest a generic table (CSV, Parquet or Feather) into the catalog, with every unit explicit.

A table from any source (an exchange's export, a spreadsheet, another tool's database) becomes
one catalog series: one ``kind`` (funding, spot, perp, mark, index or premium bars), one
``symbol``, one ``venue``. Nothing about its units is guessed:

Columns
    ``columns`` (``--map time=Date,rate=Funding Rate``) names the file's column for each field
    of the kind. A field without a mapping is read from a column of exactly that name, if the
    file has one. Funding needs ``time`` and ``rate`` (optional: ``interval_hours``,
    ``mark_price``); spot and perp bars need ``time, open, high, low, close, volume`` (optional:
    ``quote_volume``, ``trades``); mark, index and premium bars need ``time, open, high, low,
    close``. There is no flat-bar shortcut: a file without highs and lows is not bar data.
Times
    Date-time text is read as ISO 8601 (``2024-01-31 08:00``, ``2024-01-31T08:00:00+03:00``);
    text with an offset (``Z``, ``+03:00``) keeps it, naive text is read in ``tz`` (an IANA zone
    such as ``Europe/Istanbul``, ``UTC``, or a fixed offset such as ``+03:00``; default UTC).
    A wall-clock time that a daylight-saving change makes ambiguous or skips is an error.
    Numbers are epoch times and need ``time_unit`` (``s``, ``ms``, ``us`` or ``ns``): a number
    alone does not say its unit, so none is guessed. Parquet and Feather timestamp columns
    carry their unit (and zone, when UTC-aware; naive ones are read in ``tz``).
    Bars are stamped at their open; funding settlements are floored to the hour they settle for
    (see :func:`data.ingest.floor_settlements`: a file whose settlements are mostly off the hour is refused).
Rates
    Funding needs ``rate_unit``: ``fraction`` (0.0001 = 0.01%), ``percent`` (0.01 = 0.01%) or
    ``bps`` (1 = 0.01%); the catalog stores fractions per settlement interval. The interval is
    the ``interval_hours`` column, else the constant ``interval_hours``, else derived from
    consecutive settlements with :func:`data.ingest.freqtrade.derive_interval_hours`.
Bars
    Need ``timeframe`` (``1h``); the times must lie on its grid and be that far apart (gaps of
    whole bars are allowed). A last bar that was still open when the file was written (its
    end after the file's modification time) is dropped with a warning.

Several files feed the same series and are merged by time: rows that agree are kept once, two
different rows at one time are an error naming both files and rows. Every error names the
file, the column and the row (numbered from 0, the first data row, as everywhere in carry) and
nothing is written: all files are read and checked before the catalog is touched, and the
writes go through :meth:`data.catalog.Catalog.write` (which checks the contract again, and a
new funding source against the stored settlement schedule) inside one
:meth:`~data.catalog.Catalog.transaction`, whose verification runs ``carry data check``'s error
checks on the series as they will be stored (:func:`data.quality.ingest_checks`; ``allow_errors``
accepts named ones): all of the ingest is committed, or none of it.
"""

from __future__ import annotations

import difflib
import gzip
import os
import re
import zoneinfo
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.feather as feather
import pyarrow.parquet as pq

from data.catalog import Catalog, PartitionKey, Transaction, WriteReport
from data.errors import ConfigError, DataError, UnknownNameError, check_choice, did_you_mean, one_line, unknown_name
from data.ingest import IngestReport, floor_settlements
from data.ingest.freqtrade import derive_interval_hours
from data.quality import ingest_checks
from data.schema import MAX_ABS_FUNDING_RATE, PRICE_COLUMNS, TIME_TYPE, Kind, timeframe_minutes
from data.symbols import canonical_symbol as _catalog_symbol
from data.validate import conform

__all__ = [
    "ingest_table",
    "parse_column_map",
    "canonical_symbol",
    "fields_of",
    "TABLE_KINDS",
    "TIME_UNITS",
    "RATE_UNITS",
    "TABLE_SUFFIXES",
]

#: Kinds a generic table can hold.
TABLE_KINDS = ("funding", "spot", "perp", "mark", "index", "premium")
#: Epoch units of numeric times, and ``iso`` for date-time text.
TIME_UNITS = ("s", "ms", "us", "ns", "iso")
#: Funding-rate units and the divisor that makes each a fraction.
RATE_UNITS = {"fraction": 1.0, "percent": 100.0, "bps": 10_000.0}
#: File name endings read (CSV may be gzipped).
TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".parquet", ".pq", ".feather", ".arrow")

_MS = {"s": 1000, "ms": 1, "us": 1, "ns": 1}  # multiply epoch by ... (s) or divide by _DIV
_DIV = {"s": 1, "ms": 1, "us": 1_000, "ns": 1_000_000}
#: Epoch times outside 2000-01-01 .. 2100-01-01 are taken as a wrong unit.
_PLAUSIBLE_MS = (946_684_800_000, 4_102_444_800_000)
_NUMBER_RE = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_OFFSET_RE = re.compile(r"\d{1,2}:\d{2}(?::\d{2}(?:\.\d*)?)?\s*(?:Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)$", re.IGNORECASE)
_FIXED_TZ_RE = re.compile(r"^(?:UTC|GMT)?\s*([+-])(\d{1,2})(?::?(\d{2}))?$", re.IGNORECASE)
_VENUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")

_BAR_PRICES = ("open", "high", "low", "close")
_TRADED_ONLY = ("volume", "quote_volume", "trades")  # fields of spot and perp bars only


def fields_of(kind: Kind) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``(required, optional)`` fields of a table of ``kind`` (``time`` first)."""
    if kind is Kind.FUNDING:
        return ("time", "rate"), ("interval_hours", "mark_price")
    if kind in (Kind.SPOT, Kind.PERP):
        return ("time", *_BAR_PRICES, "volume"), ("quote_volume", "trades")
    return ("time", *_BAR_PRICES), ()


# --------------------------------------------------------------------------- options
def parse_column_map(spec: str | Sequence[str] | None) -> dict[str, str]:
    """``"time=Date,rate=Funding Rate"`` (or a list of such strings) -> ``{field: column}``.

    Column names keep inner spaces; a field given twice, or an item without ``=``, is a
    :class:`~data.errors.ConfigError` naming ``--map`` and the item.
    """
    if spec is None:
        return {}
    items = [spec] if isinstance(spec, str) else list(spec)
    out: dict[str, str] = {}
    for text in items:
        for item in str(text).split(","):
            if not item.strip():
                continue
            field, sep, column = item.partition("=")
            field, column = field.strip().lower(), column.strip()
            if not sep or not field or not column:
                raise ConfigError(
                    f"bad --map item {item.strip()!r}: expected FIELD=COLUMN, e.g. time=Date,rate=Funding"
                )
            if field in out and out[field] != column:
                raise ConfigError(f"--map gives field {field!r} twice ({out[field]!r} and {column!r})")
            out[field] = column
    return out


def canonical_symbol(text: str, what: str = "--symbol") -> str:
    """The catalog's symbol of an exchange or ccxt symbol: ``BTC/USDT:USDT`` -> ``BTCUSDT``,
    ``btc-usdt`` -> ``BTCUSDT``, ``1000PEPE/USDT:USDT`` -> ``1000PEPEUSDT``.

    Hyperliquid's lower-case thousands prefix becomes ``1000`` (``kPEPE/USDC:USDC`` ->
    ``1000PEPEUSDC``), as the freqtrade ingest stores it. A dated future
    (``BTC/USDT:USDT-241227``) is refused: it is not a perpetual.
    """
    raw = str(text).strip()
    settle = raw.partition(":")[2]
    if "/" in raw and "-" in settle:
        raise ConfigError(f"{what} {text!r} is a dated future (expiry {settle.split('-', 1)[1]}), not a perpetual")
    symbol = _catalog_symbol(raw)  # data.symbols' spelling, as every ingest stores it
    if not re.fullmatch(r"[A-Z0-9]{2,30}", symbol):
        raise ConfigError(f"bad {what} {text!r}: expected a symbol such as BTCUSDT or BTC/USDT:USDT")
    return symbol


@dataclass(frozen=True)
class Zone:
    """The zone naive times are read in: a :class:`datetime.tzinfo` and its name."""

    tz: tzinfo
    label: str

    @property
    def is_utc(self) -> bool:
        return self.tz.utcoffset(None) == timedelta(0) and self.label.upper() in ("UTC", "Z", "+00:00", "GMT")


def resolve_zone(tz: str | None) -> Zone:
    """``tz`` as a :class:`Zone`: ``None``/``UTC``, an IANA name (``Europe/Istanbul``) or a fixed
    offset (``+03:00``, ``UTC+3``); anything else is an :class:`~data.errors.UnknownNameError`
    with a did-you-mean hint."""
    if tz is None or str(tz).strip().upper() in ("UTC", "Z", "GMT", "ETC/UTC"):
        return Zone(UTC, "UTC")
    text = str(tz).strip()
    m = _FIXED_TZ_RE.match(text)
    if m:
        minutes = int(m.group(2)) * 60 + int(m.group(3) or 0)
        if minutes > 14 * 60:
            raise ConfigError(f"bad --tz {tz!r}: an offset from UTC is at most 14 hours")
        sign = -1 if m.group(1) == "-" else 1
        label = f"{m.group(1)}{minutes // 60:02d}:{minutes % 60:02d}"
        return Zone(timezone(timedelta(minutes=sign * minutes)), "UTC" if minutes == 0 else label)
    try:
        return Zone(zoneinfo.ZoneInfo(text), text)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zones = sorted(zoneinfo.available_timezones())
        raise UnknownNameError(
            f"unknown --tz {tz!r}{did_you_mean(text, zones)}: expected a time zone name such as Europe/Istanbul or "
            "America/New_York, UTC, or an offset such as +03:00"
        ) from None


def _kind(kind: Kind | str, allowed: Iterable[str], what: str = "--kind") -> Kind:
    value = kind.value if isinstance(kind, Kind) else str(kind).strip().lower()
    return Kind(check_choice(what, value, list(allowed)))


def check_venue(venue: str) -> str:
    if not isinstance(venue, str) or not _VENUE_RE.match(venue):
        raise ConfigError(f"bad --venue {venue!r}: expected a name such as binance, bybit or okx")
    return venue


def check_interval(hours: float | None) -> float | None:
    if hours is None:
        return None
    try:
        value = float(hours)
    except (TypeError, ValueError):
        raise ConfigError(f"bad --interval-hours {hours!r}: expected hours, e.g. 8") from None
    if not (0 < value <= 24):
        raise ConfigError(f"bad --interval-hours {hours!r}: a funding interval is more than 0 and at most 24 hours")
    return value


# --------------------------------------------------------------------------- reading files
def expand_paths(paths: Iterable[Path | str], suffixes: Sequence[str], what: str) -> list[Path]:
    """Files of ``paths`` (a directory stands for its files ending in one of ``suffixes``).

    Raises :class:`~data.errors.DataError` for a missing path, a directory without such files,
    or no paths at all.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(tuple(suffixes)))
            if not found:
                raise DataError(f"{p}: no {what} files in this folder (expected names ending in {', '.join(suffixes)})")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(f"{p}: no such file")
    if not out:
        raise DataError(f"no {what} files given")
    return list(dict.fromkeys(out))


def _sniff_sep(path: Path) -> str:
    opener: Callable[..., Any] = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", errors="replace") as fh:
            first = fh.readline()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    counts = {sep: first.count(sep) for sep in (",", ";", "\t", "|")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] else ","


def read_table_file(path: Path, header: bool = True) -> pa.Table:
    """Read a CSV (every column as text), Parquet or Feather file as an Arrow table.

    CSV files may be comma-, semicolon-, tab- or pipe-separated (read from the first line) and
    gzipped. ``header=False`` reads a CSV without a header row (columns ``0``, ``1``, ...).
    """
    name = path.name.lower()
    src = str(path)
    if name.endswith((".parquet", ".pq")):
        try:
            return pq.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{src}: cannot read Parquet file ({exc}); it may be truncated or corrupt") from None
    if name.endswith((".feather", ".arrow", ".ipc")):
        try:
            return feather.read_table(path)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{src}: cannot read Feather file ({exc}); it may be truncated or corrupt") from None
    if not name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt")):
        raise DataError(f"{src}: unsupported file type (expected {', '.join(TABLE_SUFFIXES)})")
    sep = _sniff_sep(path)
    try:  # the header through pandas (quotes, a BOM), the rows through Arrow, every column as text
        first = pd.read_csv(path, sep=sep, nrows=0 if header else 1, header=0 if header else None, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{src}: the file is empty") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, EOFError, ValueError) as exc:
        raise DataError(f"{src}: cannot read CSV ({exc})") from None
    names = [str(c).strip() for c in first.columns]
    try:
        return pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=names, skip_rows=1 if header else 0),
            parse_options=pacsv.ParseOptions(delimiter=sep),
            convert_options=pacsv.ConvertOptions(
                column_types={n: pa.string() for n in names}, strings_can_be_null=False
            ),
        )
    except (pa.ArrowException, OSError, EOFError) as exc:
        raise DataError(f"{src}: cannot read CSV ({one_line(str(exc))})") from None


# --------------------------------------------------------------------------- columns
def _fmt_time(ms: int) -> str:
    text = str(np.datetime64(int(ms), "ms")).replace("T", " ")
    return (text[:16] if int(ms) % 60_000 == 0 else text) + " UTC"


@dataclass
class Where:
    """Names a place in a file for error messages: ``FILE: column 'Close' (--map close), row 3 (time)``."""

    source: str
    times: np.ndarray | None = None
    via_map: bool = True  #: fields came from ``--map`` (say so), else the source's own layout

    def __call__(self, column: str, row: int, field: str | None = None) -> str:
        mapped = f" ({'--map ' if self.via_map else ''}{field})" if field and field != column else ""
        at = ""
        if self.times is not None and 0 <= row < len(self.times):
            at = f" ({_fmt_time(int(self.times[row]))})"
        return f"{self.source}: column {column!r}{mapped}, row {row}{at}"


def column_of(table: pa.Table, name: str) -> pa.Array:
    col = table.column(name)
    return col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col


def _trimmed(arr: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """A text column with blanks trimmed, and where it is empty (or null)."""
    text = pc.utf8_trim_whitespace(arr.cast(pa.string()))
    empty = pc.or_kleene(pc.is_null(text), pc.equal(text, "")).fill_null(True)
    return text, empty.to_numpy(zero_copy_only=False)


def numbers(arr: pa.Array, where: Where, column: str, field: str | None = None, nullable: bool = False) -> np.ndarray:
    """A column as float64 numbers; null (or empty text) is NaN where ``nullable``, else an error.

    Raises :class:`~data.errors.DataError` naming the row of the first missing value, text that
    is not a number, NaN or infinite value.
    """
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        values = pc.cast(arr, pa.float64()).to_numpy(zero_copy_only=False)
        null = arr.is_null().to_numpy(zero_copy_only=False)
    elif pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t):
        text, null = _trimmed(arr)
        try:  # fast path: every value is a number Arrow reads
            values = pc.cast(pc.if_else(pa.array(null), pa.scalar(None, pa.string()), text), pa.float64())
            values = values.to_numpy(zero_copy_only=False)
        except pa.ArrowInvalid:
            series = pd.Series(text.to_numpy(zero_copy_only=False), dtype=object)
            values = pd.to_numeric(series.where(~null, None), errors="coerce").to_numpy(
                dtype=np.float64, na_value=np.nan
            )
            nan_text = series.str.lower().isin(["nan", "+nan", "-nan"]).to_numpy()
            bad = np.flatnonzero(~null & np.isnan(values) & ~nan_text)
            if bad.size:
                row = int(bad[0])
                raise DataError(f"{where(column, row, field)}: {series.iloc[row]!r} is not a number") from None
    else:
        raise DataError(f"{where.source}: column {column!r} has type {t}, expected numbers")
    if null.any() and not nullable:
        raise DataError(f"{where(column, int(np.flatnonzero(null)[0]), field)}: missing value")
    values = np.array(values, dtype=np.float64)  # a writable copy
    nonfinite = ~null & ~np.isfinite(values)
    if nonfinite.any():
        row = int(np.flatnonzero(nonfinite)[0])
        what = "NaN value" if np.isnan(values[row]) else "infinite value"
        raise DataError(f"{where(column, row, field)}: {what}")
    values[null] = np.nan
    return values


def _guess_unit(value: float) -> str:
    mag = abs(value)
    for lo, unit in ((1e17, "ns"), (1e14, "us"), (1e11, "ms"), (1e8, "s")):
        if mag >= lo:
            return unit
    return "no epoch unit"


def epoch_ms(values: np.ndarray, unit: str, where: Where, column: str, raw: pa.Array | None = None) -> np.ndarray:
    """Epoch numbers in ``unit`` (s, ms, us, ns) -> int64 UTC milliseconds (floored).

    A time outside 2000-2100 is a :class:`~data.errors.DataError` naming the row and the unit
    its magnitude suggests.
    """
    v = np.asarray(values)
    if v.dtype.kind in "iu":
        ms = v.astype(np.int64) * _MS[unit] // _DIV[unit]
    else:
        f = np.asarray(v, dtype=np.float64)
        if (f != np.floor(f)).any() or np.abs(f).max(initial=0) > 2**53:
            ms = np.floor(f * _MS[unit] / _DIV[unit]).astype(np.int64)
        else:
            ms = f.astype(np.int64) * _MS[unit] // _DIV[unit]
    bad = (ms < _PLAUSIBLE_MS[0]) | (ms >= _PLAUSIBLE_MS[1])
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        shown = raw[row].as_py() if raw is not None else repr(v[row].item())
        guess = _guess_unit(float(v[row]))
        raise DataError(
            f"{where(column, row, 'time')}: {shown} read as epoch {unit} is not a date between 2000 and 2100; "
            f"is --time-unit {unit} right? (the number looks like {guess})"
        )
    return ms


def _index_ms(idx: pd.DatetimeIndex) -> np.ndarray:
    """Int64 UTC milliseconds of a tz-aware index (floored below the millisecond)."""
    utc = idx.tz_convert("UTC")
    unit = utc.unit
    i8 = utc.asi8
    return i8 * 1000 if unit == "s" else i8 // {"ms": 1, "us": 1_000, "ns": 1_000_000}[unit]


def _localize(naive: pd.DatetimeIndex, zone: Zone, where: Where, column: str, shown: Sequence[str]) -> np.ndarray:
    loc = naive.tz_localize(zone.tz, ambiguous="NaT", nonexistent="NaT")
    bad = np.asarray(loc.isna()) & ~np.asarray(naive.isna())
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where(column, row, 'time')}: {shown[row]} is ambiguous or does not exist in {zone.label} "
            "(a daylight-saving change); give such times with their offset (+01:00) or in UTC"
        )
    return _index_ms(loc)


def times_ms(
    arr: pa.Array,
    where: Where,
    column: str,
    *,
    time_unit: str | None,
    zone: Zone,
    notes: list[str],
) -> np.ndarray:
    """A time column as int64 UTC milliseconds (see the module docstring for the rules).

    ``notes`` receives a line when ``zone`` is not used (epoch numbers, times with an offset).
    Raises :class:`~data.errors.ConfigError` when numbers come without ``time_unit`` or a
    ``time_unit`` does not fit the column, :class:`~data.errors.DataError` naming the row of a
    missing or unreadable time.
    """
    t = arr.type
    if arr.null_count:
        raise DataError(
            f"{where(column, int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0]))}: missing time"
        )
    zone_unused = f"{where.source}: --tz {zone.label} not used for column {column!r}"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        ts = arr.cast(pa.timestamp("ms")) if pa.types.is_date(t) else arr
        if ts.type.tz is not None:
            if not zone.is_utc:
                notes.append(f"{zone_unused}: its timestamps are {ts.type.tz}-aware")
            return _index_ms(pd.DatetimeIndex(ts.to_pandas()))
        naive = pd.DatetimeIndex(ts.cast(pa.int64()).to_numpy().astype(f"datetime64[{ts.type.unit}]"))
        return _localize(naive, zone, where, column, [str(x) for x in naive])
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        values = arr.to_numpy(zero_copy_only=False)
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            raise DataError(
                f"{where(column, int(np.flatnonzero(~np.isfinite(values))[0]))}: missing or non-finite time"
            )
        raw = None
    elif pa.types.is_string(t) or pa.types.is_large_string(t):
        text, empty = _trimmed(arr)
        if empty.any():
            raise DataError(f"{where(column, int(np.flatnonzero(empty)[0]))}: missing time")
        numeric = pc.match_substring_regex(text, f"^{_NUMBER_RE}$").to_numpy(zero_copy_only=False)
        if not numeric.all():
            if time_unit not in (None, "iso"):
                row = int(np.flatnonzero(~numeric)[0])
                raise ConfigError(
                    f"{where.source}: column {column!r} holds date-time text (row {row}: {text[row].as_py()!r}), "
                    f"but --time-unit {time_unit} is for epoch numbers: drop it (or pass --time-unit iso)"
                )
            return _iso_ms(text, where, column, zone, notes)
        try:
            values = pc.cast(text, pa.int64()).to_numpy()
        except pa.ArrowInvalid:  # decimals or exponents
            values = pc.cast(text, pa.float64()).to_numpy()
        raw = text
    else:
        raise DataError(f"{where.source}: column {column!r} has type {t}, expected times")
    shown = raw[0].as_py() if raw is not None else repr(values[0].item()) if len(values) else "?"
    if time_unit in (None, "iso"):
        guess = _guess_unit(float(values[0])) if len(values) else "?"
        raise ConfigError(
            f"{where.source}: column {column!r} holds numbers (row 0: {shown}), not date-time text: pass "
            f"--time-unit s, ms, us or ns to say their epoch unit (the magnitude looks like {guess})"
        )
    if not zone.is_utc:
        notes.append(f"{zone_unused}: epoch times are UTC by definition")
    return epoch_ms(values, time_unit, where, column, raw)


def _iso_ms(arr: pa.Array, where: Where, column: str, zone: Zone, notes: list[str]) -> np.ndarray:
    text = pd.Series(arr.to_numpy(zero_copy_only=False), dtype=object)
    has_offset = pc.match_substring_regex(arr, _OFFSET_RE.pattern, ignore_case=True).to_numpy(zero_copy_only=False)
    if has_offset.any() and not has_offset.all():
        row = int(np.flatnonzero(has_offset != has_offset[0])[0])
        raise DataError(
            f"{where(column, row, 'time')}: {text.iloc[row]!r} {'has' if has_offset[row] else 'lacks'} a UTC offset "
            f"but row 0 ({text.iloc[0]!r}) {'does' if has_offset[0] else 'does not'}: the column mixes zones"
        )
    cleaned = text.str.replace(r"\s*(UTC|GMT)$", "Z", regex=True, case=False) if has_offset.any() else text
    parsed = pd.to_datetime(cleaned, format="ISO8601", errors="coerce", utc=bool(has_offset.any()))
    bad = parsed.isna().to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where(column, row, 'time')}: {text.iloc[row]!r} is not an ISO 8601 date-time "
            "(e.g. 2024-01-31 08:00, 2024-01-31T08:00:00+03:00)"
        )
    if has_offset.any():
        if not zone.is_utc:
            notes.append(f"{where.source}: --tz {zone.label} not used for column {column!r}: its times carry an offset")
        return _index_ms(pd.DatetimeIndex(parsed))
    return _localize(pd.DatetimeIndex(parsed), zone, where, column, list(text))


# --------------------------------------------------------------------------- rows of one file
@dataclass
class SeriesPart:
    """The rows one file gives a series, in file order.

    ``times`` are int64 UTC milliseconds; ``values`` maps each stored column to float64 (NaN
    only in nullable columns, where it means null); ``rows`` is each element's row in the file.
    """

    source: str
    times: np.ndarray
    values: dict[str, np.ndarray]
    rows: np.ndarray
    written_ms: int | None = None  #: when the file was last modified (for the still-open last bar)
    names: dict[str, str] | None = None  #: ``{field: the file's column}`` where they differ (for messages)

    def __len__(self) -> int:
        return len(self.times)


def file_written_ms(path: Path) -> int | None:
    try:
        return int(os.stat(path).st_mtime * 1000)
    except OSError:
        return None


def check_part(part: SeriesPart, kind: Kind, where: Where, names: Mapping[str, str] | None = None) -> None:
    """Row rules of the data contract, in file order, so an error names the file's own row:
    positive prices, consistent bars, non-negative volumes, fractional funding rates and
    plausible intervals. ``names`` maps a field to the file's column (for the message)."""
    names = names or {}

    def at(field: str, row: int) -> str:
        return where(names.get(field, field), row, field)

    for field in PRICE_COLUMNS[kind]:
        v = part.values[field]
        bad = np.flatnonzero(~(v > 0))
        if bad.size:
            row = int(bad[0])
            raise DataError(f"{at(field, row)}: non-positive price {float(v[row])!r}")
    mark = part.values.get("mark_price")
    if mark is not None:
        bad = np.flatnonzero(~np.isnan(mark) & ~(mark > 0))
        if bad.size:
            raise DataError(f"{at('mark_price', int(bad[0]))}: non-positive price {float(mark[bad[0]])!r}")
    if kind.is_bar:
        o, h, l, c = (part.values[f] for f in _BAR_PRICES)
        bad = np.flatnonzero((h < o) | (h < c) | (l > o) | (l > c) | (h < l))
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{at('high', row)}: inconsistent bar open={float(o[row])!r} high={float(h[row])!r} "
                f"low={float(l[row])!r} close={float(c[row])!r} (high must be the highest, low the lowest)"
            )
    for field in ("volume", "quote_volume", "trades"):
        if field in part.values:
            v = part.values[field]
            bad = np.flatnonzero(v < 0)
            if bad.size:
                raise DataError(f"{at(field, int(bad[0]))}: negative {field} {float(v[bad[0]])!r}")
    if "trades" in part.values:
        v = part.values["trades"]
        bad = np.flatnonzero(~np.isnan(v) & (v != np.floor(v)))
        if bad.size:
            raise DataError(f"{at('trades', int(bad[0]))}: a trade count must be a whole number, got {v[bad[0]]!r}")
    if kind is Kind.FUNDING:
        rate = part.values["rate"]
        bad = np.flatnonzero(np.abs(rate) > MAX_ABS_FUNDING_RATE)
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{at('rate', row)}: funding rate {float(rate[row])!r} (as a fraction) is beyond "
                f"+/-{MAX_ABS_FUNDING_RATE} per interval; is --rate-unit right? (percent: 0.01 = 0.01%, "
                "bps: 1 = 0.01%)"
            )
        hours = part.values.get("interval_hours")
        if hours is not None:
            bad = np.flatnonzero(~np.isnan(hours) & ((hours <= 0) | (hours > 24)))
            if bad.size:
                row = int(bad[0])
                raise DataError(
                    f"{at('interval_hours', row)}: funding interval {float(hours[row])!r} h is not in (0, 24]"
                )


# --------------------------------------------------------------------------- merging files
@dataclass
class Series:
    """The merged rows of one series, sorted by time, with where each row came from."""

    key: PartitionKey
    times: np.ndarray
    values: dict[str, np.ndarray]
    part: np.ndarray  #: index into ``parts`` of each row
    rows: np.ndarray  #: row in that part's file
    parts: list[SeriesPart]

    def origin(self, i: int, field: str = "time") -> str:
        """``FILE: column 'Date', row 7`` of merged row ``i``."""
        part = self.parts[int(self.part[i])]
        column = (part.names or {}).get(field, field)
        return f"{part.source}: column {column!r}, row {int(self.rows[i])}"

    @property
    def sources(self) -> str:
        return " + ".join(dict.fromkeys(p.source for p in self.parts))


def combine_parts(parts: list[SeriesPart], key: PartitionKey, report: IngestReport) -> Series:
    """Merge the files of one series by time (stable: ties keep file order).

    Rows at one time that agree on every value are kept once (a warning counts them); rows
    that differ are a :class:`~data.errors.DataError` naming both files and rows.
    """
    fields = list(parts[0].values)
    for p in parts:
        if len(p) > 1 and (np.diff(p.times) < 0).any():
            report.warnings.append(f"{p.source}: rows were not sorted by time; sorted them")
    times = np.concatenate([p.times for p in parts])
    values = {f: np.concatenate([p.values[f] for p in parts]) for f in fields}
    part = np.concatenate([np.full(len(p), i, dtype=np.int64) for i, p in enumerate(parts)])
    rows = np.concatenate([p.rows for p in parts])
    order = np.argsort(times, kind="stable")
    times, part, rows = times[order], part[order], rows[order]
    values = {f: v[order] for f, v in values.items()}
    series = Series(key, times, values, part, rows, parts)
    if len(times) < 2:
        return series
    dup = np.flatnonzero(np.diff(times) == 0)  # row dup + 1 repeats the time of row dup
    if dup.size:
        for f, v in values.items():
            a, b = v[dup], v[dup + 1]
            differs = ~((a == b) | (np.isnan(a) & np.isnan(b)))
            if differs.any():
                j = int(np.flatnonzero(differs)[0])
                i = int(dup[j])
                raise DataError(
                    f"{key}: two different rows at {_fmt_time(int(times[i]))}: {series.origin(i, f)} holds "
                    f"{float(a[j])!r}, {series.origin(i + 1, f)} holds {float(b[j])!r}; keep one of them. "
                    "Nothing was written."
                )
        within = part[dup] == part[dup + 1]  # files that overlap and agree are the normal case: no warning
        for i in np.unique(part[dup][within]):
            n = int((part[dup][within] == i).sum())
            report.warnings.append(f"{parts[int(i)].source}: {n} exactly repeated row(s) kept once")
        keep = np.ones(len(times), dtype=bool)
        keep[dup + 1] = False
        series = Series(key, times[keep], {f: v[keep] for f, v in values.items()}, part[keep], rows[keep], parts)
    return series


def check_timeframe(series: Series, timeframe: str) -> None:
    """Bars must lie on the ``timeframe`` grid (for timeframes that divide a day) and be whole
    bars apart, mostly one: a :class:`~data.errors.DataError` names the first offending row."""
    tf_ms = timeframe_minutes(timeframe, "--timeframe") * 60_000
    t = series.times
    if 86_400_000 % tf_ms == 0:
        off = t % tf_ms
        bad = np.flatnonzero(off != 0)
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"{series.origin(i)} ({_fmt_time(int(t[i]))}): not on the {timeframe} grid (off by "
                f"{_duration(int(off[i]))}); bars are stamped at their open in UTC: are the times in another "
                "zone (--tz), or is --timeframe wrong?"
            )
    if len(t) < 2:
        return
    gaps = np.diff(t)
    bad = np.flatnonzero((gaps < tf_ms) | (gaps % tf_ms != 0))
    if bad.size:
        i = int(bad[0]) + 1
        raise DataError(
            f"{series.origin(i)} ({_fmt_time(int(t[i]))}): {_duration(int(gaps[i - 1]))} after the bar before, "
            f"not a whole number of --timeframe {timeframe} bars; is --timeframe right?"
        )
    typical = int(np.median(gaps))
    if typical != tf_ms:
        raise DataError(
            f"{series.sources}: --timeframe {timeframe}, but the bars are mostly {_duration(typical)} apart "
            f"(median spacing); pass --timeframe {_duration(typical).replace(' ', '')}?"
        )


def _duration(ms: int) -> str:
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms % size == 0 and ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def drop_open_last_bar(series: Series, timeframe: str, report: IngestReport) -> Series:
    """Drop the last bar when it had not closed yet when its file was written: it opens at or
    before the file's modification time and ends after it (an exchange returns the running bar
    as the last one). A last bar opening after that time means the modification time is not
    when the data was fetched (the file was touched, or extracted with an older stamp): then
    nothing can be told, the bar is kept and a warning says so (the freqtrade ingest's rule)."""
    if not len(series.times):
        return series
    tf_ms = timeframe_minutes(timeframe, "--timeframe") * 60_000
    last = len(series.times) - 1
    written = series.parts[int(series.part[last])].written_ms
    end = int(series.times[last]) + tf_ms
    if written is None or end <= written:
        return series
    if int(series.times[last]) > written:
        report.warnings.append(
            f"{series.origin(last)}: the file's modification time ({_fmt_time(written)}) is before its last bar "
            f"({_fmt_time(int(series.times[last]))}), so it is not when the data was fetched: whether the last "
            f"{timeframe} bar was complete cannot be told; kept"
        )
        return series
    report.warnings.append(
        f"{series.origin(last)}: the last bar ({_fmt_time(int(series.times[last]))}) was still open when the file "
        f"was written ({_fmt_time(written)}); dropped it"
    )
    keep = slice(0, last)
    return Series(
        series.key,
        series.times[keep],
        {f: v[keep] for f, v in series.values.items()},
        series.part[keep],
        series.rows[keep],
        series.parts,
    )


# --------------------------------------------------------------------------- building and writing
def series_table(series: Series, interval_hours: float | None, report: IngestReport) -> pa.Table:
    """The catalog table of a merged series; funding intervals come from the ``interval_hours``
    column, else the constant ``interval_hours``, else :func:`derive_interval_hours`."""
    key = series.key
    time_arr = pa.array(series.times, type=pa.int64()).cast(TIME_TYPE)
    cols: dict[str, pa.Array] = {"time": time_arr}
    for f, v in series.values.items():
        if f == "trades":
            cols[f] = pa.array(np.where(np.isnan(v), 0, v).astype(np.int64), type=pa.int64(), mask=np.isnan(v))
        else:
            cols[f] = pa.array(v, type=pa.float64(), from_pandas=True)  # NaN (nullable columns) -> null
    if key.kind is Kind.FUNDING and "interval_hours" not in series.values:
        if interval_hours is not None:
            cols["interval_hours"] = pa.array(np.full(len(series.times), interval_hours))
        else:
            hours, notes = derive_interval_hours(series.times)
            report.warnings += [f"{key}: {n}" for n in notes]
            unknown = int(np.isnan(hours).sum())
            if unknown:
                report.warnings.append(
                    f"{key}: funding interval unknown for {unknown} settlement(s) (a single settlement, or only "
                    "holes around it); stored as null: pass --interval-hours to give it"
                )
            cols["interval_hours"] = pa.array(hours, type=pa.float64(), from_pandas=True)
    return pa.table(cols)


def write_all(
    catalog: Catalog,
    items: list[tuple[PartitionKey, pa.Table, str]],
    report: IngestReport,
    verify: Callable[[Transaction], None] | None = None,
) -> None:
    """Write every series in one catalog transaction: all of them or none.

    Each table is conformed first; the writes are staged (a funding write checks the stored
    settlement schedule and may refuse), ``verify`` (:func:`data.quality.ingest_checks`) checks
    the staged series as they will be stored, and only then is everything committed together.
    Errors the checks were told to allow are listed as warnings."""
    staged = [(key, conform(table, key.kind, source), source) for key, table, source in items]
    writes: list[WriteReport] = []
    with catalog.transaction(verify=verify):
        for key, table, source in staged:
            writes.append(catalog.write(key, table, source=source))
    report.writes += writes
    report.warnings += [f"{w.key}: allowed error {o}" for w in writes for o in w.overridden]


# --------------------------------------------------------------------------- generic tables
def _resolve_columns(table: pa.Table, path: Path, kind: Kind, columns: Mapping[str, str]) -> dict[str, str]:
    """``{field: file column}`` for ``table``; errors name the file, the field and the columns."""
    required, optional = fields_of(kind)
    present = table.column_names
    out: dict[str, str] = {}
    for field in (*required, *optional):
        if field in columns:
            col = columns[field]
            if col not in present:
                raise unknown_name("column", col, present, where=f" in {path} (--map {field}={col})")
            out[field] = col
        elif field in present:
            out[field] = field
        elif field in required:
            free = [c for c in present if c not in out.values()]
            words = field.replace("_", " ")
            close = [c for c in free if words in c.lower().replace("_", " ")]
            lower = {c.lower(): c for c in free}
            close += [lower[c] for c in difflib.get_close_matches(field, list(lower), n=1, cutoff=0.75)]
            hint = f" (perhaps --map {field}={close[0]})" if close else ""
            raise ConfigError(
                f"{path}: no column for {field!r}, which {kind.value} data needs ({', '.join(required)}): "
                f"pass --map {field}=COLUMN{hint}; columns in the file: {', '.join(present) or 'none'}"
            )
    return out


def _read_part(
    path: Path,
    kind: Kind,
    columns: Mapping[str, str],
    *,
    time_unit: str | None,
    zone: Zone,
    rate_divisor: float,
    report: IngestReport,
) -> SeriesPart | None:
    table = read_table_file(path)
    report.files_read += 1
    src = str(path)
    names = _resolve_columns(table, path, kind, columns)
    if table.num_rows == 0:
        report.warnings.append(f"{src}: the file holds no rows; skipped")
        return None
    where = Where(src)
    notes: list[str] = []
    times = times_ms(column_of(table, names["time"]), where, names["time"], time_unit=time_unit, zone=zone, notes=notes)
    report.warnings += notes
    where.times = times
    _, optional = fields_of(kind)
    values = {
        f: numbers(column_of(table, col), where, col, f, nullable=f in optional)
        for f, col in names.items()
        if f != "time"
    }
    if kind is Kind.FUNDING:
        times = floor_settlements(times, where.source, names["time"], report)
        values["rate"] = values["rate"] / rate_divisor
    part = SeriesPart(src, times, values, np.arange(len(times)), file_written_ms(path), names)
    check_part(part, kind, where, names)
    return part


def ingest_table(
    paths: Path | str | Iterable[Path | str],
    catalog: Catalog,
    *,
    kind: Kind | str,
    symbol: str,
    venue: str,
    columns: Mapping[str, str] | str | None = None,
    time_unit: str | None = None,
    tz: str | None = None,
    rate_unit: str | None = None,
    interval_hours: float | None = None,
    timeframe: str | None = None,
    allow_errors: Iterable[str] | str = (),
) -> IngestReport:
    """Ingest CSV, Parquet or Feather tables of one series into ``catalog``.

    Parameters
    ----------
    paths:
        Files (``.csv``, ``.csv.gz``, ``.tsv``, ``.parquet``, ``.feather``), or folders standing
        for the such files in them. All feed the one series; they are merged by time.
    catalog:
        Destination catalog; re-ingesting the same rows adds nothing.
    kind:
        ``funding``, ``spot``, ``perp``, ``mark``, ``index`` or ``premium``.
    symbol:
        The series' symbol as the exchange writes it (``BTCUSDT``; a ccxt symbol such as
        ``BTC/USDT:USDT`` is accepted and stored as ``BTCUSDT``).
    venue:
        Venue name stored with the series (``binance``, ``bybit``, ``okx``).
    columns:
        ``{field: file column}`` (or the ``--map`` text ``time=Date,rate=Funding``). Fields
        not given are read from a column of the same name. See the module docstring for the
        fields of each kind.
    time_unit:
        Epoch unit of numeric times: ``s``, ``ms``, ``us`` or ``ns`` (required for numbers);
        ``iso`` or ``None`` for date-time text.
    tz:
        Zone of naive date-time text (IANA name, ``UTC`` or ``+03:00``); default UTC. Times with
        an offset, UTC-aware timestamps and epoch numbers do not use it (a warning says so).
    rate_unit:
        Funding only, required: ``fraction`` (0.0001 = 0.01% per interval), ``percent``
        (0.01 = 0.01%) or ``bps`` (1 = 0.01%).
    interval_hours:
        Funding only: the settlement interval in hours, in (0, 24], when the file has no
        ``interval_hours`` column; ``None`` derives it from consecutive settlements.
    timeframe:
        Bar kinds only, required: the bar length (``1m``, ``1h``, ``4h``, ``1d``); the times are
        checked against it.
    allow_errors:
        Error checks of ``carry data check`` to accept (:data:`data.quality.ERROR_CHECKS`, e.g.
        ``funding_outlier``): the series are checked as they will be stored before the commit,
        and any other error refuses the whole ingest. Allowed errors are listed as warnings.

    Returns
    -------
    IngestReport
        The series written (rows added / already present) and warnings (skipped empty files,
        sorted files, repeated rows, derived-interval notes, a dropped still-open last bar,
        an unused ``tz``).

    Raises
    ------
    ConfigError
        A bad or missing option (``kind``, ``rate_unit``, ``timeframe``, ``time_unit`` for
        numbers, ``tz``, a ``columns`` field or a column the file lacks, with a did-you-mean
        hint and the file's columns).
    DataError
        A missing or unreadable file, or a row that breaks the data contract (the message names
        the file, column and row). Nothing is written on any error.
    """
    kind = _kind(kind, TABLE_KINDS)
    verify = ingest_checks(allow_errors)  # a misspelt check name fails before any file is read
    venue = check_venue(venue)
    sym = canonical_symbol(symbol)
    if time_unit is not None:
        check_choice("--time-unit", time_unit, TIME_UNITS)
    zone = resolve_zone(tz)
    column_map = parse_column_map(columns) if isinstance(columns, str) else dict(columns or {})
    required, optional = fields_of(kind)
    unused = [f for f in column_map if kind.is_bar and f not in required + optional and f in _TRADED_ONLY]
    for f in column_map:
        if f not in required + optional + tuple(unused):
            raise unknown_name("--map field", f, required + optional, where=f" for {kind.value} data")
    for f in unused:  # an OHLCV file of mark or index prices may have a volume column: not stored
        del column_map[f]
    if kind is Kind.FUNDING:
        if rate_unit is None:
            raise ConfigError(
                "funding needs --rate-unit fraction, percent or bps: the unit of the rates is not guessed "
                "(0.0001 as a fraction, 0.01 in percent and 1 in bps are all 0.01% per interval)"
            )
        check_choice("--rate-unit", rate_unit, list(RATE_UNITS))
        if timeframe is not None:
            raise ConfigError("--timeframe is for bar kinds; funding settlements have an interval (--interval-hours)")
        hours = check_interval(interval_hours)
        if hours is not None and "interval_hours" in column_map:
            raise ConfigError("give the funding interval either as --interval-hours or as --map interval_hours=COL")
        key = PartitionKey(venue, kind, sym)
    else:
        if rate_unit is not None or interval_hours is not None:
            flag = "--rate-unit" if rate_unit is not None else "--interval-hours"
            raise ConfigError(f"{flag} is for funding; {kind.value} bars have no rates")
        if timeframe is None:
            raise ConfigError(f"{kind.value} bars need --timeframe (e.g. 1h): it is checked against the times")
        timeframe_minutes(timeframe, "--timeframe")
        hours = None
        key = PartitionKey(venue, kind, sym, timeframe.strip())
    report = IngestReport()
    if unused:
        report.warnings.append(f"{kind.value} bars store no {', '.join(unused)}: --map {', '.join(unused)} not used")
    files = expand_paths([paths] if isinstance(paths, (str, Path)) else paths, TABLE_SUFFIXES, "table")
    divisor = RATE_UNITS[rate_unit] if rate_unit is not None else 1.0
    parts = [
        p
        for p in (
            _read_part(f, kind, column_map, time_unit=time_unit, zone=zone, rate_divisor=divisor, report=report)
            for f in files
        )
        if p is not None
    ]
    if not parts:
        raise DataError(f"{', '.join(map(str, files))}: no rows to ingest (every file is empty)")
    series = combine_parts(parts, key, report)
    if key.timeframe is not None:
        check_timeframe(series, key.timeframe)
        series = drop_open_last_bar(series, key.timeframe, report)
    write_all(catalog, [(key, series_table(series, hours, report), series.sources)], report, verify)
    return report

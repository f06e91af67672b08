"""Ingest dumps of ccxt's ``fetch_funding_rate_history`` and ``fetch_ohlcv`` into the catalog.

What a dump is (ccxt's unified structures, as its manual documents them):

* ``exchange.fetch_funding_rate_history(symbol, ...)`` returns a list of dicts
  ``{"info": {...}, "symbol": "BTC/USDT:USDT", "fundingRate": 0.0001, "timestamp":
  1704067200000, "datetime": "2024-01-01T00:00:00.000Z"}``: the rate is a fraction per
  settlement interval, ``timestamp`` the settlement time in UTC milliseconds, ``datetime`` the
  same time as ISO 8601 text.
* ``exchange.fetch_ohlcv(symbol, timeframe, ...)`` returns a list of rows ``[timestamp, open,
  high, low, close, volume]``: bar open time in UTC milliseconds, prices in quote currency,
  volume in base units (some exchanges count contracts; check the exchange). With
  ``params={"price": "mark"}`` (or ``fetch_mark_ohlcv``) the rows are mark-price bars, with
  ``"index"`` index-price bars: a dump does not say which, so ``kind`` is required for OHLCV.

A dump is a JSON file (``json.dump(result, fh)``) or a CSV file: funding as a table with a
``fundingRate`` column and ``timestamp`` (epoch ms) or ``datetime`` (ISO 8601; naive text is
read in ``tz``) columns (``pandas.DataFrame(result).to_csv()``), OHLCV with or without a
header (``timestamp,open,high,low,close,volume``, or the positional ``0..5`` columns pandas
writes). The kind of each file (funding or OHLCV) is read from its shape.

Checks beyond the data contract: every funding row's ``symbol`` must be ``symbol`` (ccxt's
``BTC/USDT:USDT`` is the catalog's ``BTCUSDT``; a dated future is refused), OHLCV times must lie
on the ``timeframe`` grid, and the last bar of a dump, when it had not closed by the time the
file was written (ccxt returns the running bar), is dropped with a warning. Errors name the
file, the column and the row (the position in the JSON list, or the CSV data row, from 0); all
files are read and checked before anything is written, and the ingest is one catalog
transaction checked like ``carry data check`` before its commit (see :mod:`data.ingest.table`).
Settlement times are floored to the hour (:func:`data.ingest.floor_settlements`).
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from data.catalog import Catalog, PartitionKey
from data.errors import ConfigError, DataError, check_choice
from data.ingest import IngestReport, floor_settlements
from data.ingest.table import (
    SeriesPart,
    Where,
    Zone,
    canonical_symbol,
    check_interval,
    check_part,
    check_timeframe,
    check_venue,
    column_of,
    combine_parts,
    drop_open_last_bar,
    expand_paths,
    file_written_ms,
    numbers,
    read_table_file,
    resolve_zone,
    series_table,
    times_ms,
    write_all,
)
from data.quality import ingest_checks
from data.schema import Kind, timeframe_minutes

__all__ = ["ingest_ccxt", "CCXT_OHLCV_KINDS", "CCXT_SUFFIXES"]

#: Kinds an OHLCV dump may hold (``fetch_ohlcv`` with ``params={"price": ...}``).
CCXT_OHLCV_KINDS = ("spot", "perp", "mark", "index")
#: File name endings read.
CCXT_SUFFIXES = (".json", ".json.gz", ".csv", ".csv.gz")

_OHLCV = ("timestamp", "open", "high", "low", "close", "volume")
_TIME_NAMES = ("timestamp", "time", "date", "datetime")
_SHAPES = (
    "expected a ccxt dump: fetch_funding_rate_history rows (symbol, fundingRate, timestamp, datetime) "
    "or fetch_ohlcv rows [timestamp, open, high, low, close, volume]"
)


# --------------------------------------------------------------------------- reading dumps
def _text_column(values: list[Any]) -> pa.Array:
    """JSON values as text (numbers keep their repr), ``None`` as null: parsed like a CSV column."""
    return pa.array([None if v is None else v if isinstance(v, str) else json.dumps(v) for v in values], pa.string())


def _read_json(path: Path) -> pa.Table:
    src = str(path)
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                rows = json.load(fh)
        else:
            with open(path, encoding="utf-8") as fh:
                rows = json.load(fh)
    except (OSError, ValueError, EOFError, zlib.error) as exc:
        raise DataError(f"{src}: cannot read JSON ({exc}); it may be truncated or corrupt") from None
    if not isinstance(rows, list):
        raise DataError(f"{src}: holds a JSON {type(rows).__name__}, {_SHAPES} in a JSON list")
    if not rows:
        return pa.table({})
    if isinstance(rows[0], dict):
        for i, r in enumerate(rows):
            if not isinstance(r, dict):
                raise DataError(f"{src}: row {i} is a {type(r).__name__}, but row 0 is a funding-rate dict")
        names = list(dict.fromkeys(k for r in rows for k in r if k != "info"))
        return pa.table({str(k): _text_column([r.get(k) for r in rows]) for k in names})
    if isinstance(rows[0], list):
        for i, r in enumerate(rows):
            if not isinstance(r, list) or len(r) < 6:
                raise DataError(
                    f"{src}: row {i} is not an OHLCV row [timestamp, open, high, low, close, volume]: {r!r}"
                )
        return pa.table({str(j): _text_column([r[j] for r in rows]) for j in range(6)})
    raise DataError(f"{src}: row 0 is a {type(rows[0]).__name__}; {_SHAPES}")


def _read_dump(path: Path) -> pa.Table:
    if path.name.lower().endswith((".json", ".json.gz")):
        return _read_json(path)
    table = read_table_file(path)
    names = table.column_names
    if names and all(_is_number(n) for n in names):  # no header row: the first line is data
        table = read_table_file(path, header=False)
    return table


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _shape(table: pa.Table, src: str) -> tuple[str, dict[str, str]]:
    """``("funding" | "ohlcv", {field: column})`` of a dump, from its columns."""
    lower = {c.lower(): c for c in table.column_names}
    if "fundingrate" in lower:
        names = {"rate": lower["fundingrate"]}
        for f in ("timestamp", "datetime", "symbol"):
            if f in lower:
                names[f] = lower[f]
        if "timestamp" not in names and "datetime" not in names:
            raise DataError(
                f"{src}: a funding-rate dump needs a 'timestamp' or 'datetime' column (columns: "
                f"{', '.join(table.column_names)})"
            )
        return "funding", names
    if all(str(j) in table.column_names for j in range(6)):
        return "ohlcv", {f: str(j) for j, f in enumerate(_OHLCV)}
    time_col = next((lower[n] for n in _TIME_NAMES if n in lower), None)
    if time_col is not None and all(f in lower for f in _OHLCV[1:5]):
        names = {"timestamp": time_col, **{f: lower[f] for f in _OHLCV[1:] if f in lower}}
        return "ohlcv", names
    raise DataError(f"{src}: {_SHAPES}; columns present: {', '.join(table.column_names) or 'none'}")


def _funding_part(
    table: pa.Table,
    names: dict[str, str],
    path: Path,
    wanted: str,
    symbol: str,
    time_unit: str,
    zone: Zone,
    report: IngestReport,
) -> SeriesPart:
    src = str(path)
    where = Where(src, via_map=False)
    if "symbol" in names:
        col = column_of(table, names["symbol"]).to_pylist()
        for i, raw in enumerate(col):
            if raw in (None, ""):
                continue
            try:
                got = canonical_symbol(raw, "symbol")
            except ConfigError as exc:
                raise DataError(f"{where(names['symbol'], i)}: {exc}") from None
            if got != wanted:
                raise DataError(
                    f"{where(names['symbol'], i)}: the dump holds {raw!r}{_aka(raw, got)}, not --symbol "
                    f"{symbol}{_aka(symbol, wanted)}; "
                    "nothing was written"
                )
    notes: list[str] = []
    use = "timestamp"
    if "timestamp" not in names or column_of(table, names["timestamp"]).null_count:
        use = "datetime"
        if "datetime" not in names:
            raise DataError(f"{where(names['timestamp'], _first_null(table, names['timestamp']))}: missing time")
    times = times_ms(
        column_of(table, names[use]),
        where,
        names[use],
        time_unit=time_unit if use == "timestamp" else None,
        zone=zone,
        notes=notes,
    )
    report.warnings += notes
    where.times = times
    rate = numbers(column_of(table, names["rate"]), where, names["rate"], "rate")
    times = floor_settlements(times, where.source, names[use], report)
    part = SeriesPart(
        src, times, {"rate": rate}, np.arange(len(times)), file_written_ms(path), {"time": names[use], **names}
    )
    check_part(part, Kind.FUNDING, where, part.names)
    return part


def _aka(raw: str, canonical: str) -> str:
    return "" if str(raw).strip() == canonical else f" ({canonical})"


def _first_null(table: pa.Table, column: str) -> int:
    return int(np.flatnonzero(column_of(table, column).is_null().to_numpy(zero_copy_only=False))[0])


def _ohlcv_part(
    table: pa.Table, names: dict[str, str], path: Path, kind: Kind, time_unit: str, zone: Zone, report: IngestReport
) -> SeriesPart:
    src = str(path)
    where = Where(src, via_map=False)
    notes: list[str] = []
    tcol = names["timestamp"]
    times = times_ms(column_of(table, tcol), where, tcol, time_unit=time_unit, zone=zone, notes=notes)
    report.warnings += notes
    where.times = times
    fields = (
        ("open", "high", "low", "close", "volume")
        if kind in (Kind.SPOT, Kind.PERP)
        else ("open", "high", "low", "close")
    )
    if "volume" in fields and "volume" not in names:
        raise DataError(f"{src}: {kind.value} bars need a 'volume' column (columns: {', '.join(table.column_names)})")
    values = {f: numbers(column_of(table, names[f]), where, names[f], f) for f in fields}
    part = SeriesPart(src, times, values, np.arange(len(times)), file_written_ms(path), {"time": tcol, **names})
    check_part(part, kind, where, part.names)
    return part


# --------------------------------------------------------------------------- main entry
def ingest_ccxt(
    paths: Path | str | Iterable[Path | str],
    catalog: Catalog,
    *,
    symbol: str,
    venue: str,
    kind: Kind | str | None = None,
    timeframe: str | None = None,
    interval_hours: float | None = None,
    time_unit: str = "ms",
    tz: str | None = None,
    allow_errors: Iterable[str] | str = (),
) -> IngestReport:
    """Ingest JSON or CSV dumps of ccxt's funding-rate history and OHLCV into ``catalog``.

    Parameters
    ----------
    paths:
        Dump files (``.json``, ``.json.gz``, ``.csv``, ``.csv.gz``) or folders holding them.
        Funding dumps feed the symbol's funding series, OHLCV dumps its ``kind`` bars; files of
        one series are merged by time.
    catalog:
        Destination catalog; re-ingesting the same rows adds nothing.
    symbol:
        The symbol of the dumps (``BTCUSDT`` or ccxt's ``BTC/USDT:USDT``; stored as ``BTCUSDT``).
        A funding row of another symbol is an error naming both.
    venue:
        Venue name stored with the series (``binance``, ``bybit``, ``okx``).
    kind:
        What OHLCV dumps hold: ``spot``, ``perp``, ``mark`` or ``index`` (required for OHLCV:
        ``fetch_ohlcv`` gives last-trade bars of the market passed, ``params={"price": "mark"}``
        mark bars). ``funding`` or ``None`` for funding dumps.
    timeframe:
        Bar length of OHLCV dumps (``1h``; the ``timeframe`` passed to ``fetch_ohlcv``),
        required for them and checked against their times.
    interval_hours:
        Funding interval in hours, in (0, 24]; ``None`` derives it from consecutive settlements
        (ccxt's history does not carry it).
    time_unit:
        Epoch unit of the dumps' numeric times: ``ms`` (ccxt's unit) unless a tool converted them.
    tz:
        Zone of naive date-time text, for CSV dumps with a ``datetime`` column and no
        ``timestamp`` (default UTC; ccxt's own ``datetime`` ends in ``Z``).
    allow_errors:
        Error checks of ``carry data check`` to accept (see :func:`data.ingest.table.ingest_table`).

    Returns
    -------
    IngestReport
        Series written and warnings (empty dumps skipped, sorted files, derived-interval notes,
        a still-open last bar dropped).

    Raises
    ------
    ConfigError
        A missing or contradictory option (``kind`` or ``timeframe`` for OHLCV, a ``kind`` that
        does not fit the dump, a bad ``tz``).
    DataError
        A file that is not a ccxt dump, a row of another symbol, or a row that breaks the data
        contract (naming the file, column and row). Nothing is written on any error.
    """
    verify = ingest_checks(allow_errors)  # a misspelt check name fails before any file is read
    venue = check_venue(venue)
    wanted = canonical_symbol(symbol)
    bar_kind: Kind | None = None
    kind_is_funding = False
    if kind is not None:
        value = kind.value if isinstance(kind, Kind) else str(kind).strip().lower()
        check_choice("--kind", value, ["funding", *CCXT_OHLCV_KINDS])
        kind_is_funding = value == "funding"
        bar_kind = None if kind_is_funding else Kind(value)
    if timeframe is not None:
        timeframe = timeframe.strip()
        timeframe_minutes(timeframe, "--timeframe")
    hours = check_interval(interval_hours)
    check_choice("--time-unit", time_unit, ["s", "ms", "us", "ns"])
    zone = resolve_zone(tz)
    report = IngestReport()
    funding: list[SeriesPart] = []
    bars: list[SeriesPart] = []
    for path in expand_paths([paths] if isinstance(paths, (str, Path)) else paths, CCXT_SUFFIXES, "ccxt dump"):
        table = _read_dump(path)
        report.files_read += 1
        if table.num_rows == 0:
            report.warnings.append(f"{path}: the dump holds no rows; skipped")
            continue
        shape, names = _shape(table, str(path))
        if shape == "funding":
            funding.append(_funding_part(table, names, path, wanted, symbol, time_unit, zone, report))
            continue
        if kind_is_funding:
            raise ConfigError(f"{path} is a ccxt OHLCV dump, not funding: pass --kind spot, perp, mark or index")
        if bar_kind is None:
            raise ConfigError(
                f"{path} is a ccxt OHLCV dump, which does not say what prices it holds: pass --kind spot, perp, "
                "mark or index (fetch_ohlcv(..., params={'price': 'mark'}) gives mark bars)"
            )
        if timeframe is None:
            raise ConfigError(
                f"{path} is a ccxt OHLCV dump: pass --timeframe, the timeframe it was fetched with (e.g. 1h)"
            )
        bars.append(_ohlcv_part(table, names, path, bar_kind, time_unit, zone, report))
    if not funding and not bars:
        raise DataError(f"{paths if isinstance(paths, (str, Path)) else ', '.join(map(str, paths))}: no rows to ingest")
    if hours is not None and not funding:
        raise ConfigError("--interval-hours is for funding dumps, and none was given")
    if bar_kind is not None and not bars:
        raise ConfigError(
            f"--kind {bar_kind.value} is for OHLCV dumps, and none was given (funding dumps say their kind)"
        )
    if timeframe is not None and not bars:
        raise ConfigError("--timeframe is for OHLCV dumps, and none was given")
    items = []
    if funding:
        series = combine_parts(funding, PartitionKey(venue, Kind.FUNDING, wanted), report)
        items.append((series.key, series_table(series, hours, report), series.sources))
    if bars:
        assert bar_kind is not None and timeframe is not None
        series = combine_parts(bars, PartitionKey(venue, bar_kind, wanted, timeframe), report)
        check_timeframe(series, timeframe)
        series = drop_open_last_bar(series, timeframe, report)
        items.append((series.key, series_table(series, None, report), series.sources))
    write_all(catalog, items, report, verify)
    return report

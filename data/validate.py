"""Conform tables to the data contract, or say exactly what is wrong and where.

:func:`conform` is the single gate every table passes before it is written to the catalog:
it checks columns and types, converts times to UTC milliseconds, and rejects unsorted or
duplicate times, NaN or non-positive prices, inconsistent OHLC bars and funding rates that
look like percent. Errors name the source, the column, the row number and the bar time.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from data.errors import DataError
from data.schema import (
    MAX_ABS_FUNDING_RATE,
    MAX_ABS_HOURLY_BORROW_RATE,
    PRICE_COLUMNS,
    TIME_TYPE,
    Kind,
    schema_for,
)


def _fmt_time(ms: int) -> str:
    return str(np.datetime64(int(ms), "ms")).replace("T", " ") + " UTC"


def _where(source: str, column: str, row: int, times_ms: np.ndarray | None) -> str:
    at = f" ({_fmt_time(times_ms[row])})" if times_ms is not None and 0 <= row < len(times_ms) else ""
    return f"{source}: column {column!r}, row {row}{at}"


def _time_column(table: pa.Table, source: str) -> pa.Array:
    if "time" not in table.column_names:
        raise DataError(f"{source}: missing column 'time' (columns present: {', '.join(table.column_names)})")
    col = table.column("time").combine_chunks()
    if not pa.types.is_timestamp(col.type):
        raise DataError(f"{source}: column 'time' has type {col.type}, expected a UTC timestamp")
    if col.type.tz is None:
        raise DataError(f"{source}: column 'time' is timezone-naive ({col.type}); carry only accepts UTC-aware times")
    if col.null_count:
        row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{source}: column 'time', row {row}: missing time")
    return pc.cast(col, TIME_TYPE, safe=False)  # ns -> ms truncates sub-ms jitter, never changes tz


def conform(table: pa.Table, kind: Kind | str, source: str) -> pa.Table:
    """Return ``table`` cast to the schema of ``kind`` after checking every rule.

    Parameters
    ----------
    table:
        Input with at least the schema's non-nullable columns. Extra columns are dropped;
        missing nullable columns are filled with nulls.
    kind:
        The kind of data.
    source:
        Where the data came from (a file path, a zip member, a catalog partition); used in
        error messages.

    Raises
    ------
    DataError
        On any violation, naming ``source``, the column, the row and the time.
    """
    kind = Kind(kind)
    schema = schema_for(kind)
    if not isinstance(table, pa.Table):
        raise DataError(f"{source}: expected a pyarrow.Table, got {type(table).__name__}")
    times = _time_column(table, source)
    times_ms = times.cast(pa.int64()).to_numpy()
    columns: list[pa.Array] = []
    for field in schema:
        if field.name == "time":
            columns.append(times)
            continue
        if field.name not in table.column_names:
            if field.nullable:
                columns.append(pa.nulls(len(table), field.type))
                continue
            raise DataError(
                f"{source}: missing column {field.name!r} required for {kind.value} data "
                f"(columns present: {', '.join(table.column_names)})"
            )
        col = table.column(field.name).combine_chunks()
        try:
            col = pc.cast(col, field.type)
        except pa.ArrowException as exc:
            raise DataError(
                f"{source}: column {field.name!r} has type {col.type}, expected {field.type} ({exc})"
            ) from None
        if not field.nullable and col.null_count:
            row = int(np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{_where(source, field.name, row, times_ms)}: missing value")
        columns.append(col)
    out = pa.Table.from_arrays(columns, schema=schema)
    _check_times(times_ms, source)
    _check_values(out, kind, source, times_ms)
    return out


def _check_times(times_ms: np.ndarray, source: str) -> None:
    if len(times_ms) < 2:
        return
    step = np.diff(times_ms)
    bad = np.flatnonzero(step <= 0)
    if bad.size:
        row = int(bad[0]) + 1
        what = "duplicate time" if step[bad[0]] == 0 else "time goes backwards (rows are not sorted)"
        raise DataError(f"{_where(source, 'time', row, times_ms)}: {what}")


def _check_values(table: pa.Table, kind: Kind, source: str, times_ms: np.ndarray) -> None:
    for name in table.column_names:
        if name == "time" or not pa.types.is_floating(table.schema.field(name).type):
            continue
        col = table.column(name)
        values = col.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        if col.null_count == 0 and np.isfinite(values).all():
            continue  # the common case, checked in one pass
        nan_rows = np.flatnonzero(np.isnan(values) & ~col.is_null().to_numpy(zero_copy_only=False))
        if nan_rows.size:
            raise DataError(f"{_where(source, name, int(nan_rows[0]), times_ms)}: NaN value")
        inf_rows = np.flatnonzero(np.isinf(values))
        if inf_rows.size:
            raise DataError(f"{_where(source, name, int(inf_rows[0]), times_ms)}: infinite value")
    for name in PRICE_COLUMNS[kind]:
        values = table.column(name).to_numpy()
        if (values > 0).all():
            continue
        bad = np.flatnonzero(values <= 0)
        if bad.size:
            row = int(bad[0])
            raise DataError(f"{_where(source, name, row, times_ms)}: non-positive price {float(values[row])!r}")
    if PRICE_COLUMNS[kind]:
        o, h, l, c = (table.column(n).to_numpy() for n in ("open", "high", "low", "close"))
        bad = np.flatnonzero((h < o) | (h < c) | (l > o) | (l > c))
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{_where(source, 'high/low', row, times_ms)}: inconsistent bar "
                f"open={float(o[row])!r} high={float(h[row])!r} low={float(l[row])!r} close={float(c[row])!r}"
            )
    if kind is Kind.FUNDING:
        rate = table.column("rate").to_numpy()
        bad = np.flatnonzero(np.abs(rate) > MAX_ABS_FUNDING_RATE)
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{_where(source, 'rate', row, times_ms)}: funding rate {float(rate[row])!r} is beyond "
                f"+/-{MAX_ABS_FUNDING_RATE}; rates must be fractions per interval "
                f"(0.0001 = 0.01%), this looks like percent"
            )
        hours = table.column("interval_hours").to_numpy(zero_copy_only=False)
        bad = np.flatnonzero(~np.isnan(hours) & ((hours <= 0) | (hours > 24)))
        if bad.size:
            row = int(bad[0])
            raise DataError(f"{_where(source, 'interval_hours', row, times_ms)}: bad interval {float(hours[row])!r} h")
    if kind is Kind.BORROW:
        rate = table.column("hourly_rate").to_numpy()
        bad = np.flatnonzero((rate < 0) | (rate > MAX_ABS_HOURLY_BORROW_RATE))
        if bad.size:
            row = int(bad[0])
            raise DataError(
                f"{_where(source, 'hourly_rate', row, times_ms)}: hourly borrow rate {float(rate[row])!r} is "
                f"outside [0, {MAX_ABS_HOURLY_BORROW_RATE}]; rates must be fractions per hour"
            )

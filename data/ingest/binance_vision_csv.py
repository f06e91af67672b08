"""Read one Binance bulk zip (data.binance.vision) into a table of the catalog schema.

All kline files share one 12-column CSV layout (:data:`KLINE_COLUMNS`); funding files have
:data:`FUNDING_COLUMNS`. A header row is detected (first field not numeric); the unit of
every file's times (s, ms, us or ns) is detected from their magnitude, never guessed.
Errors name the zip, the CSV member, the column and the row.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from data.errors import DataError
from data.ingest.binance_vision_files import BinanceFile
from data.schema import TIME_TYPE, Kind
from data.validate import conform

#: Column names of every Binance kline CSV (spot, um klines, mark, index, premium index).
KLINE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_volume",
    "taker_buy_quote_volume",
    "ignore",
)
#: Column names of Binance ``fundingRate`` CSVs.
FUNDING_COLUMNS: tuple[str, ...] = ("calc_time", "funding_interval_hours", "last_funding_rate")

#: Plausible epoch range (2000-01-01 .. 2100-01-01) in seconds, and the units we recognise.
_EPOCH_LO_S, _EPOCH_HI_S = 946_684_800, 4_102_444_800
_UNITS: tuple[tuple[str, int], ...] = (("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _open_member(zip_path: Path, expected_stem: str) -> tuple[str, bytes]:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            names = [n for n in zf.namelist() if not n.endswith("/")]
            csvs = [n for n in names if n.lower().endswith(".csv")]
            want = f"{expected_stem}.csv"
            member = next((n for n in csvs if Path(n).name == want), None)
            if member is None:
                if len(csvs) == 1:
                    member = csvs[0]
                elif not csvs:
                    raise DataError(
                        f"{zip_path}: no CSV member in the zip (expected {want}; members: {', '.join(names) or 'none'})"
                    )
                else:
                    raise DataError(f"{zip_path}: several CSV members and none named {want}: {', '.join(csvs)}")
            data = zf.read(member)
    except DataError:
        raise
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        zlib.error,
        EOFError,
        OSError,
        ValueError,
        NotImplementedError,
    ) as exc:
        raise DataError(f"{zip_path}: corrupt or unreadable zip file ({exc})") from None
    return member, data


def _diagnose(
    data: bytes, src: str, names: Sequence[str], numeric: dict[str, str], skip: int, arrow_msg: str
) -> DataError:
    """Find the first bad row/column after the fast parser failed; slow, only on errors."""
    reader = csv.reader(io.StringIO(data.decode("utf-8", errors="replace")))
    row = -1
    for line_no, fields in enumerate(reader, start=1):
        if line_no <= skip or not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        row += 1
        if len(fields) != len(names):
            return DataError(
                f"{src}: row {row} (line {line_no}): expected {len(names)} columns "
                f"({','.join(names)}), found {len(fields)}"
            )
        for name, value in zip(names, fields):
            kind = numeric.get(name)
            if kind is None or value.strip() == "":
                continue
            v = value.strip()
            ok = re.fullmatch(r"[+-]?\d+", v) is not None if kind == "int" else _is_number(v)
            if not ok:
                what = "an integer" if kind == "int" else "a number"
                return DataError(
                    f"{src}: column {name!r}, row {row} (line {line_no}): cannot parse {value!r} as {what}"
                )
    return DataError(f"{src}: cannot parse the CSV ({arrow_msg})")


def _read_csv(data: bytes, src: str, names: Sequence[str], types: dict[str, pa.DataType]) -> tuple[pa.Table, int]:
    """Parse ``data`` with pyarrow; returns the table and the number of header lines skipped."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    first_line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    if not first_line:
        return pa.table({n: pa.array([], types.get(n, pa.string())) for n in types}), 0
    first_field = first_line.split(",", 1)[0].strip()
    skip = 0 if _is_number(first_field) else 1
    try:
        table = pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=list(names), skip_rows=skip, use_threads=False),
            parse_options=pacsv.ParseOptions(newlines_in_values=False),
            convert_options=pacsv.ConvertOptions(column_types=types, include_columns=list(types)),
        )
    except pa.ArrowException as exc:
        numeric = {n: ("int" if pa.types.is_integer(t) else "float") for n, t in types.items()}
        raise _diagnose(data, src, names, numeric, skip, str(exc)) from None
    return table, skip


def _epoch_to_ms(values: pa.ChunkedArray, src: str, column: str, skip: int) -> np.ndarray:
    """Detect the unit of epoch integers from their magnitude and convert to milliseconds.

    The unit (s, ms, us or ns) is the one that puts the time between 2000 and 2100; every
    row of a file must have the same unit. Returns UTC epoch milliseconds (int64).
    """
    arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
    if arr.null_count:
        row = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{src}: column {column!r}, row {row} (line {row + 1 + skip}): missing timestamp")
    v = np.asarray(arr.to_numpy(zero_copy_only=False), dtype=np.int64)
    if len(v) == 0:
        return v
    unit_idx = np.full(len(v), -1, dtype=np.int8)
    for i, (_, factor) in enumerate(_UNITS):
        lo, hi = _EPOCH_LO_S * factor, _EPOCH_HI_S * factor
        unit_idx[(v >= lo) & (v < hi)] = i
    first = int(unit_idx[0])
    bad = np.flatnonzero(unit_idx != first) if first >= 0 else np.array([0])
    if bad.size:
        row = int(bad[0])
        if first >= 0 and unit_idx[row] >= 0:
            why = (
                f"its unit ({_UNITS[unit_idx[row]][0]}) differs from row 0's ({_UNITS[first][0]}); "
                f"a file must use one unit"
            )
        else:
            why = (
                "not an epoch timestamp in seconds, milliseconds, microseconds or nanoseconds "
                "for a date between 2000 and 2100"
            )
        raise DataError(
            f"{src}: column {column!r}, row {row} (line {row + 1 + skip}): timestamp {int(v[row])} is {why}"
        )
    unit, factor = _UNITS[first]
    if factor == 1:
        return v * 1000
    if factor == 1000:
        return v
    return v // (factor // 1000)


def _to_time(ms: np.ndarray) -> pa.Array:
    return pa.array(ms, type=pa.int64()).cast(TIME_TYPE)


def read_binance_zip(f: BinanceFile) -> tuple[pa.Table, list[str]]:
    """Read one Binance bulk zip into a table of the catalog schema of ``f.kind``.

    Returns
    -------
    (table, warnings)
        ``table`` has ``time`` as ``timestamp[ms, UTC]`` (bar open time, or the settlement
        time floored to the minute for funding) and the schema's columns in their units
        (prices in quote per base, volumes in base units, rates as fractions). Funding
        ``interval_hours`` may be null here when the file lacks it.

    Raises
    ------
    DataError
        Naming the zip, the CSV member, the column and the row.
    """
    member, data = _open_member(f.path, f.path.name[:-4])
    src = f"{f.path}:{member}"
    warnings: list[str] = []
    if f.kind is Kind.FUNDING:
        table, skip = _read_funding(data, src)
        ms = _epoch_to_ms(table.column("calc_time"), src, "calc_time", skip)
        ms = (ms // 60_000) * 60_000
        out = pa.table(
            {
                "time": _to_time(ms),
                "rate": table.column("last_funding_rate").cast(pa.float64()),
                "interval_hours": table.column("funding_interval_hours").cast(pa.float64()),
                "mark_price": pa.nulls(len(table), pa.float64()),
            }
        )
    else:
        types = {
            "open_time": pa.int64(),
            "open": pa.float64(),
            "high": pa.float64(),
            "low": pa.float64(),
            "close": pa.float64(),
        }
        if f.kind in (Kind.SPOT, Kind.PERP):
            types.update({"volume": pa.float64(), "quote_volume": pa.float64(), "count": pa.int64()})
        table, skip = _read_csv(data, src, KLINE_COLUMNS, types)
        ms = _epoch_to_ms(table.column("open_time"), src, "open_time", skip)
        cols = {"time": _to_time(ms)}
        for name in ("open", "high", "low", "close"):
            cols[name] = table.column(name)
        if f.kind in (Kind.SPOT, Kind.PERP):
            cols["volume"] = table.column("volume")
            cols["quote_volume"] = table.column("quote_volume")
            cols["trades"] = table.column("count")
        out = pa.table(cols)
    if len(out) == 0:
        warnings.append(f"{src}: no rows")
        return conform(out, f.kind, src), warnings
    # Rows are sorted in Binance files (conform rejects unsorted ones, naming the row). A row
    # repeated verbatim right after itself is dropped with a warning; a repeated time with
    # different values is left for conform to reject.
    t = out.column("time").cast(pa.int64()).to_numpy()
    rep = np.flatnonzero(np.diff(t) == 0) + 1
    if rep.size:
        same = np.ones(rep.size, dtype=bool)
        for name in out.column_names[1:]:
            col = out.column(name).to_numpy(zero_copy_only=False)
            a, b = col[rep], col[rep - 1]
            same &= np.asarray((a == b) | (np.isnan(a) & np.isnan(b)) if a.dtype.kind == "f" else a == b, dtype=bool)
        if same.all():
            keep = np.ones(len(t), dtype=bool)
            keep[rep] = False
            out = out.filter(pa.array(keep))
            t = t[keep]
            warnings.append(f"{src}: dropped {rep.size} rows repeated verbatim (first at row {int(rep[0])})")
    lo, hi = f.period_bounds_ms()
    outside = int(((t < lo) | (t >= hi)).sum())
    if outside and f.kind.is_bar:
        warnings.append(f"{src}: {outside} rows lie outside the file's period {f.period}")
    out = conform(out, f.kind, src)
    return out, warnings


def _read_funding(data: bytes, src: str) -> tuple[pa.Table, int]:
    text_head = data[:512].lstrip(b"\xef\xbb\xbf").split(b"\n", 1)[0].decode("utf-8", errors="replace").strip()
    fields = [x.strip() for x in text_head.split(",")] if text_head else []
    has_header = bool(fields) and not _is_number(fields[0])
    if has_header:
        names = fields
        unknown = [n for n in names if n not in FUNDING_COLUMNS]
        if "calc_time" not in names or "last_funding_rate" not in names or unknown:
            raise DataError(
                f"{src}: funding header {','.join(names)!r} does not match Binance's "
                f"{','.join(FUNDING_COLUMNS)} (missing calc_time/last_funding_rate or unknown columns)"
            )
    else:
        names = list(FUNDING_COLUMNS) if len(fields) != 2 else ["calc_time", "last_funding_rate"]
    types = {"calc_time": pa.int64(), "last_funding_rate": pa.float64()}
    if "funding_interval_hours" in names:
        types["funding_interval_hours"] = pa.float64()
    table, skip = _read_csv(data, src, names, types)
    if "funding_interval_hours" not in table.column_names:
        table = table.append_column("funding_interval_hours", pa.nulls(len(table), pa.float64()))
    return table, skip

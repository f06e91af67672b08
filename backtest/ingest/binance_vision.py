"""Ingest Binance's public bulk files (https://data.binance.vision) into the catalog.

Binance publishes zipped CSVs, one per symbol and month (``monthly``) or day (``daily``),
each with a ``<zip>.CHECKSUM`` sibling holding its sha256. The site's layout is::

    data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip
    data/futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip
    data/futures/um/monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip
    data/futures/um/monthly/indexPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip
    data/futures/um/monthly/premiumIndexKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip
    data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip
    data/.../daily/.../BTCUSDT-1h-2024-01-15.zip

All kline files share one 12-column CSV layout (``open_time, open, high, low, close,
volume, close_time, quote_volume, count, taker_buy_volume, taker_buy_quote_volume,
ignore``); funding files have ``calc_time, funding_interval_hours, last_funding_rate``.
Quirks handled here:

* Newer futures files start with a header row, spot files do not: the header is detected
  (first field not numeric).
* Spot timestamps are in microseconds from 2025-01-01, futures in milliseconds. The unit of
  every file is detected from the magnitude of its times (s, ms, us or ns for a date between
  2000 and 2100); anything else, or a file mixing units, is an error, never a guess.
* Kline file names do not say whether they hold spot, perp, mark, index or premium-index
  bars; the directory layout does. For files outside that layout pass ``market=`` (and
  ``kind=`` for mark/index/premium files).
* Funding settlement times carry millisecond jitter: they are floored to the minute. When a
  file lacks interval hours they are derived from consecutive settlements.

Every zip is verified against its ``.CHECKSUM`` sibling when present. Errors name the zip,
the CSV member, the column and the row.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import zipfile
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from ..catalog import Catalog, PartitionKey
from ..errors import ChecksumError, DataError
from ..schema import TIME_TYPE, Kind, timeframe_minutes
from ..validate import conform
from . import IngestReport

__all__ = [
    "KLINE_COLUMNS",
    "FUNDING_COLUMNS",
    "BinanceFile",
    "parse_file_name",
    "read_binance_zip",
    "verify_checksum_file",
    "ingest_binance_vision",
]

#: Column names of every Binance kline CSV (spot, um klines, mark, index, premium index).
KLINE_COLUMNS: tuple[str, ...] = (
    "open_time", "open", "high", "low", "close", "volume", "close_time",
    "quote_volume", "count", "taker_buy_volume", "taker_buy_quote_volume", "ignore",
)
#: Column names of Binance ``fundingRate`` CSVs.
FUNDING_COLUMNS: tuple[str, ...] = ("calc_time", "funding_interval_hours", "last_funding_rate")

#: Directory name of each data type on the site -> catalog kind (um futures only, except klines).
_DATA_TYPES: dict[str, Kind] = {
    "klines": Kind.PERP,  # Kind.SPOT under data/spot
    "markPriceKlines": Kind.MARK,
    "indexPriceKlines": Kind.INDEX,
    "premiumIndexKlines": Kind.PREMIUM,
    "fundingRate": Kind.FUNDING,
}
_KIND_ALIASES: dict[str, Kind] = {
    "spot": Kind.SPOT, "perp": Kind.PERP, "klines": Kind.PERP, "mark": Kind.MARK,
    "markpriceklines": Kind.MARK, "index": Kind.INDEX, "indexpriceklines": Kind.INDEX,
    "premium": Kind.PREMIUM, "premiumindexklines": Kind.PREMIUM, "funding": Kind.FUNDING,
    "fundingrate": Kind.FUNDING,
}
_MARKETS = {"spot": "spot", "um": "um", "futures": "um", "usdm": "um"}

_DATE = r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)"
_KLINE_NAME_RE = re.compile(rf"^(?P<symbol>[A-Z0-9]+)-(?P<tf>\d+[a-zA-Z]+)-{_DATE}\.zip$")
_FUNDING_NAME_RE = re.compile(rf"^(?P<symbol>[A-Z0-9]+)-fundingRate-{_DATE}\.zip$")

#: Plausible epoch range (2000-01-01 .. 2100-01-01) in seconds, and the units we recognise.
_EPOCH_LO_S, _EPOCH_HI_S = 946_684_800, 4_102_444_800
_UNITS: tuple[tuple[str, int], ...] = (("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000))


@dataclass(frozen=True)
class BinanceFile:
    """One Binance bulk file and what its name and path say about it.

    Attributes
    ----------
    path:
        The zip file.
    kind:
        Catalog kind (spot, perp, mark, index, premium or funding).
    symbol:
        Exchange symbol, e.g. ``BTCUSDT``.
    timeframe:
        Bar length (``1h``) for klines, ``None`` for funding.
    period:
        ``YYYY-MM`` (monthly file) or ``YYYY-MM-DD`` (daily file), UTC.
    """

    path: Path
    kind: Kind
    symbol: str
    timeframe: str | None
    period: str

    @property
    def key(self) -> tuple[Kind, str, str | None]:
        return (self.kind, self.symbol, self.timeframe)

    @property
    def is_daily(self) -> bool:
        return len(self.period) == 10

    def period_bounds_ms(self) -> tuple[int, int]:
        """``[start, end)`` of the file's period in UTC epoch milliseconds."""
        if self.is_daily:
            start = np.datetime64(self.period, "D")
            end = start + np.timedelta64(1, "D")
        else:
            m = np.datetime64(self.period, "M")
            start, end = m.astype("datetime64[D]"), (m + np.timedelta64(1, "M")).astype("datetime64[D]")
        return int(start.astype("datetime64[ms]").astype(np.int64)), int(end.astype("datetime64[ms]").astype(np.int64))


def _norm_kind(kind: Kind | str | None) -> Kind | None:
    if kind is None or isinstance(kind, Kind):
        return kind
    k = _KIND_ALIASES.get(str(kind).strip().lower())
    if k is None:
        raise ValueError(
            f"unknown Binance data kind {kind!r}: expected one of spot, perp, mark, index, premium, funding"
        )
    return k


def _norm_market(market: str | None) -> str | None:
    if market is None:
        return None
    m = _MARKETS.get(str(market).strip().lower())
    if m is None:
        raise ValueError(f"unknown market {market!r}: expected 'spot' or 'um' (USDT-M futures)")
    return m


def _layout_hints(path: Path) -> tuple[Kind | None, str | None, int | None]:
    """``(kind, market, index of the data-type directory)`` read from Binance's layout.

    The layout is ``.../<spot|futures/um>/<monthly|daily>/<data type>/<SYMBOL>/[<tf>/]<file>``;
    only directories at those positions count, so a ``spot`` folder elsewhere in a user's
    path says nothing.
    """
    parts = path.parent.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in _DATA_TYPES:
            kind = _DATA_TYPES[parts[i]]
            market = None
            if i >= 2 and parts[i - 1] in ("monthly", "daily"):
                market = parts[i - 2]
                if market in ("cm", "option"):
                    raise DataError(f"{path}: {market} data is not supported; carry ingests spot and USDT-M (um) files")
                if market not in ("spot", "um"):
                    market = None
            if kind is Kind.PERP and market == "spot":
                kind = Kind.SPOT
            return kind, market, i
    return None, None, None


def parse_file_name(
    path: Path | str, *, market: str | None = None, kind: Kind | str | None = None
) -> BinanceFile:
    """Work out kind, symbol, timeframe and period of a Binance bulk zip.

    The file name gives symbol, timeframe and period (and says ``fundingRate`` for funding
    files). Whether a kline file holds spot, perp, mark, index or premium-index bars comes
    from Binance's directory layout (``data/spot/monthly/klines/...``,
    ``data/futures/um/monthly/markPriceKlines/...``) when present; for files outside that
    layout from ``market`` (``"spot"`` or ``"um"``) and ``kind``.

    Raises
    ------
    DataError
        If the name is not a Binance bulk file name, the layout contradicts the name, or a
        kline file's market cannot be known (no layout and no ``market``/``kind``).
    """
    path = Path(path)
    name = path.name
    kind_arg, market_arg = _norm_kind(kind), _norm_market(market)
    dir_kind, dir_market, type_idx = _layout_hints(path)

    m = _FUNDING_NAME_RE.match(name)
    if m:
        symbol, tf, period = m.group("symbol"), None, m.group("date")
        if dir_kind not in (None, Kind.FUNDING):
            raise DataError(f"{path}: a fundingRate file inside a {path.parent.parts[type_idx]} directory")
        k = Kind.FUNDING
    else:
        m = _KLINE_NAME_RE.match(name)
        if not m:
            raise DataError(
                f"{path}: not a Binance bulk file name; expected <SYMBOL>-<interval>-<YYYY-MM[-DD]>.zip "
                f"(klines) or <SYMBOL>-fundingRate-<YYYY-MM>.zip"
            )
        symbol, tf, period = m.group("symbol"), m.group("tf"), m.group("date")
        try:
            minutes = 0 if tf.endswith("mo") else timeframe_minutes(tf)
        except ValueError:
            minutes = 0
        if minutes <= 0:
            raise DataError(
                f"{path}: timeframe {tf!r} is not supported (use minutes, hours, days or weeks, e.g. 1m, 1h, 1d)"
            )
        if dir_kind is Kind.FUNDING:
            raise DataError(f"{path}: a kline file name inside a fundingRate directory")
        if dir_kind is not None and (dir_kind is not Kind.PERP or dir_market is not None):
            k = dir_kind  # the layout says it all
        elif kind_arg is not None and kind_arg is not Kind.FUNDING:
            k = kind_arg
            if k in (Kind.MARK, Kind.INDEX, Kind.PREMIUM, Kind.PERP) and market_arg == "spot":
                raise DataError(f"{path}: {k.value} bars exist only for futures, but market='spot' was given")
            if k is Kind.SPOT and market_arg == "um":
                raise DataError(f"{path}: kind='spot' contradicts market='um'")
        elif kind_arg is Kind.FUNDING:
            raise DataError(f"{path}: a kline file name, but kind='funding' was given")
        elif market_arg is not None:
            k = Kind.SPOT if market_arg == "spot" else Kind.PERP
        else:
            raise DataError(
                f"{path}: cannot tell whether this kline file holds spot or perpetual bars: the file "
                f"name is the same for both. Keep Binance's directory layout "
                f"(data/spot/monthly/klines/... or data/futures/um/monthly/klines/...) or pass "
                f"market='spot' or market='um' (and kind='mark', 'index' or 'premium' for those files)"
            )

    # The site's layout repeats symbol (and timeframe) as directories: they must agree.
    if type_idx is not None:
        parts = path.parent.parts
        after = list(parts[type_idx + 1:])
        expect = [symbol, tf] if tf else [symbol]
        if after and after != expect:
            raise DataError(
                f"{path}: directories {'/'.join(after)} disagree with the file name "
                f"(expected {'/'.join(expect)} after {parts[type_idx]}/)"
            )
    return BinanceFile(path=path, kind=k, symbol=symbol, timeframe=tf, period=period)


# ---------------------------------------------------------------------------- checksums
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_checksum_text(text: str, source: str) -> str:
    """The sha256 hex digest from a Binance ``.CHECKSUM`` file (``"<sha256>  <filename>"``)."""
    fields = text.strip().split()
    if not fields or not re.fullmatch(r"[0-9a-fA-F]{64}", fields[0]):
        raise ChecksumError(f"{source}: not a checksum file (expected '<sha256>  <filename>', got {text[:80]!r})")
    return fields[0].lower()


def verify_checksum_file(zip_path: Path) -> bool:
    """Check ``zip_path`` against its ``<zip>.CHECKSUM`` sibling.

    Returns
    -------
    bool
        ``True`` if verified, ``False`` if there is no ``.CHECKSUM`` file.

    Raises
    ------
    ChecksumError
        If the sha256 differs, naming the file and both digests.
    """
    ck = zip_path.with_name(zip_path.name + ".CHECKSUM")
    if not ck.is_file():
        return False
    expected = read_checksum_text(ck.read_text(errors="replace"), str(ck))
    actual = _sha256(zip_path)
    if actual != expected:
        raise ChecksumError(
            f"{zip_path}: sha256 {actual} does not match {ck.name} ({expected}); "
            f"the file is corrupt or incomplete, download it again"
        )
    return True


# ---------------------------------------------------------------------------- CSV parsing
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
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
            NotImplementedError) as exc:
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
                return DataError(f"{src}: column {name!r}, row {row} (line {line_no}): cannot parse {value!r} as {what}")
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
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
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
            why = (f"its unit ({_UNITS[unit_idx[row]][0]}) differs from row 0's ({_UNITS[first][0]}); "
                   f"a file must use one unit")
        else:
            why = ("not an epoch timestamp in seconds, milliseconds, microseconds or nanoseconds "
                   "for a date between 2000 and 2100")
        raise DataError(f"{src}: column {column!r}, row {row} (line {row + 1 + skip}): timestamp {int(v[row])} is {why}")
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
        out = pa.table({
            "time": _to_time(ms),
            "rate": table.column("last_funding_rate").cast(pa.float64()),
            "interval_hours": table.column("funding_interval_hours").cast(pa.float64()),
            "mark_price": pa.nulls(len(table), pa.float64()),
        })
    else:
        types = {
            "open_time": pa.int64(), "open": pa.float64(), "high": pa.float64(), "low": pa.float64(),
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


# ---------------------------------------------------------------------------- combining
def _derive_interval_hours(table: pa.Table) -> pa.Table:
    """Fill null ``interval_hours`` from the spacing of consecutive settlements.

    The interval of the settlement at ``t[i]`` is ``t[i] - t[i-1]`` (the period it pays
    for); the first row, or a row after a gap longer than 24 h, takes the next spacing.
    """
    hours = table.column("interval_hours").to_numpy(zero_copy_only=False).astype(np.float64)
    missing = np.isnan(hours)
    if not missing.any():
        return table
    t = table.column("time").cast(pa.int64()).to_numpy()
    if len(t) < 2:
        return table
    d = np.diff(t) / 3_600_000.0
    prev = np.concatenate([[np.nan], d])
    nxt = np.concatenate([d, [np.nan]])
    ok = lambda x: (x > 0) & (x <= 24)  # noqa: E731
    derived = np.where(ok(prev), prev, np.where(ok(nxt), nxt, np.nan))
    hours = np.where(missing, derived, hours)
    idx = table.schema.get_field_index("interval_hours")
    return table.set_column(idx, table.schema.field(idx), pa.array(hours, mask=np.isnan(hours)))


def _combine(parts: list[tuple[BinanceFile, pa.Table]], kind: Kind) -> tuple[pa.Table, list[str]]:
    """Concatenate the tables of one series, sort by time and drop overlapping duplicates.

    Files are taken in the order given (monthly before daily, oldest first); where two files
    hold the same time, the first one wins and disagreeing values are reported.
    """
    conflicts: list[str] = []
    tables = [t for _, t in parts if len(t)]
    if not tables:
        return parts[0][1], conflicts
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        order = np.argsort(table.column("time").cast(pa.int64()).to_numpy(), kind="stable")
        table = table.take(pa.array(order))
        t = table.column("time").cast(pa.int64()).to_numpy()
        dup = np.flatnonzero(np.diff(t) == 0) + 1
        if dup.size:
            keep = np.ones(len(t), dtype=bool)
            # Row dup[i] repeats an earlier row with the same time: compare against the first.
            first = np.searchsorted(t, t[dup], side="left")
            differ = np.zeros(dup.size, dtype=bool)
            for name in table.column_names:
                if name == "time":
                    continue
                col = table.column(name).to_numpy(zero_copy_only=False)
                a, b = col[dup], col[first]
                if a.dtype.kind == "f":
                    eq = (a == b) | (np.isnan(a) & np.isnan(b))
                else:
                    eq = a == b
                differ |= ~np.asarray(eq, dtype=bool)
            keep[dup] = False
            table = table.filter(pa.array(keep))
            src = f"{parts[0][0].symbol} {kind.value}"
            for i in np.flatnonzero(differ)[:5]:
                conflicts.append(
                    f"{src} at {np.datetime64(int(t[dup[i]]), 'ms')} UTC: overlapping files disagree; kept the first "
                    f"(monthly before daily)"
                )
            if differ.sum() > 5:
                conflicts.append(f"... and {int(differ.sum()) - 5} more overlapping rows that disagree in {src}")
    if kind is Kind.FUNDING:
        table = _derive_interval_hours(table)
    return table, conflicts


def _iter_zip_paths(paths: Iterable[Path | str]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(q for q in p.rglob("*.zip") if q.is_file() and not q.name.startswith(".")))
        elif p.is_file():
            out.append(p)
        elif not p.exists():
            raise DataError(f"{p}: no such file or directory")
        else:
            raise DataError(f"{p}: not a file or directory")
    seen: set[Path] = set()
    unique = []
    for p in out:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(p)
    return unique


def ingest_binance_vision(
    paths: list[Path | str],
    catalog: Catalog,
    venue: str = "binance",
    verify_checksum: bool = True,
    *,
    market: str | None = None,
    kind: Kind | str | None = None,
    workers: int | None = None,
) -> IngestReport:
    """Ingest Binance bulk zips (data.binance.vision) into ``catalog``.

    Parameters
    ----------
    paths:
        Zip files, or directories searched recursively for ``*.zip``. Keep Binance's
        directory layout (``data/spot/monthly/klines/BTCUSDT/1h/...``) so the kind of each
        kline file is known; otherwise pass ``market`` (and ``kind``).
    catalog:
        Destination catalog.
    venue:
        Venue name stored in the partition key.
    verify_checksum:
        Check each zip against its ``<zip>.CHECKSUM`` sibling (sha256) when one exists.
    market:
        ``"spot"`` or ``"um"``: the market of kline files whose path does not say it.
    kind:
        Force the kind (``spot``, ``perp``, ``mark``, ``index``, ``premium``) of kline files
        whose path does not say it (mark/index/premium files have the same names as klines).
    workers:
        Threads used to read zips (default: one per CPU, at most 4).

    Returns
    -------
    IngestReport
        Series written (rows added / already present), warnings and conflicts.

    Notes
    -----
    Stored units: ``time`` UTC epoch milliseconds (bar open; funding settlement floored to
    the minute); prices in quote per base (USDT per coin); ``volume`` in base units,
    ``quote_volume`` in quote units, ``trades`` a count; premium-index bars as fractions;
    funding ``rate`` as a fraction per interval, ``interval_hours`` in hours (from the file,
    else derived from consecutive settlements), ``mark_price`` null.

    Every file is read and validated before anything is written, so one bad file leaves
    the catalog untouched. All files of one series are combined into one table and written
    once (atomic per year file, idempotent: a re-ingest adds 0 rows).

    Raises
    ------
    ChecksumError
        A zip does not match its ``.CHECKSUM``.
    DataError
        Bad file name or layout, corrupt zip, missing CSV member, wrong column count,
        unparseable number, unknown timestamp unit or any contract violation (see
        :func:`backtest.validate.conform`); the message names the zip, member, column and row.
    """
    report = IngestReport()
    zips = _iter_zip_paths(paths)
    files = [parse_file_name(p, market=market, kind=kind) for p in zips]
    if not files:
        report.warnings.append("no Binance zip files found in " + ", ".join(str(p) for p in paths))
        return report

    def load(f: BinanceFile) -> tuple[pa.Table, list[str], bool]:
        verified = verify_checksum_file(f.path) if verify_checksum else False
        table, warns = read_binance_zip(f)
        if f.kind in (Kind.SPOT, Kind.PERP) and kind is None and len(table) and _layout_hints(f.path)[1] is None:
            vol = table.column("volume").to_numpy()
            trades = table.column("trades").to_numpy(zero_copy_only=False)
            if np.all(vol == 0) and np.all(np.nan_to_num(trades.astype(float)) == 0):
                raise DataError(
                    f"{f.path}: every row has zero volume and zero trades: this looks like mark, index "
                    f"or premium-index bars, not {f.kind.value} klines; pass kind='mark', 'index' or 'premium'"
                )
        return table, warns, verified

    n_workers = workers or min(4, os.cpu_count() or 1)
    if n_workers > 1 and len(files) > 1:
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            futures = [pool.submit(load, f) for f in files]
            results = []
            for fut in futures:  # in input order: the first bad file is reported
                try:
                    results.append(fut.result())
                except BaseException:
                    for other in futures:
                        other.cancel()
                    raise
    else:
        results = [load(f) for f in files]

    unverified = 0
    groups: dict[tuple[Kind, str, str | None], list[tuple[BinanceFile, pa.Table]]] = {}
    for f, (table, warns, verified) in zip(files, results):
        report.files_read += 1
        report.warnings.extend(warns)
        unverified += verify_checksum and not verified
        groups.setdefault(f.key, []).append((f, table))
    if unverified:
        report.warnings.append(f"{unverified} of {len(files)} zips have no .CHECKSUM file and were not verified")

    prepared = []
    for (k, symbol, tf), parts in groups.items():
        parts.sort(key=lambda ft: (ft[0].period[:7], ft[0].is_daily, ft[0].period, str(ft[0].path)))
        table, conflicts = _combine(parts, k)
        report.conflicts.extend(conflicts)
        key = PartitionKey(venue, k, symbol, tf)
        first, last = parts[0][0].path, parts[-1][0].path
        source = str(first) if len(parts) == 1 else f"{len(parts)} files {first.name} .. {last.name} in {first.parent}"
        table = conform(table, k, source)  # validate the combined series before any write
        if k is Kind.FUNDING:
            n_null = table.column("interval_hours").null_count
            if n_null:
                report.warnings.append(f"{key}: interval hours unknown for {n_null} settlements (isolated by gaps)")
        prepared.append((key, table, source))

    for key, table, source in sorted(prepared, key=lambda x: str(x[0])):
        report.writes.append(catalog.write(key, table, source=source))
    return report

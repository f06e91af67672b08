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

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from data.catalog import Catalog, PartitionKey, WriteReport
from data.errors import DataError
from data.ingest import IngestReport
from data.ingest.binance_vision_csv import FUNDING_COLUMNS, KLINE_COLUMNS, read_binance_zip
from data.ingest.binance_vision_files import (
    BinanceFile,
    layout_hints,
    parse_file_name,
    read_checksum_text,
    sha256_file,
    verify_checksum_file,
)
from data.quality import ingest_checks
from data.schema import Kind
from data.validate import conform

__all__ = [
    "KLINE_COLUMNS",
    "FUNDING_COLUMNS",
    "BinanceFile",
    "parse_file_name",
    "read_binance_zip",
    "read_checksum_text",
    "sha256_file",
    "verify_checksum_file",
    "ingest_binance_vision",
]


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
    paths: Sequence[Path | str],
    catalog: Catalog,
    venue: str = "binance",
    verify_checksum: bool = True,
    *,
    market: str | None = None,
    kind: Kind | str | None = None,
    workers: int | None = None,
    allow_errors: Iterable[str] = (),
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
    allow_errors:
        Names of error checks (:data:`data.quality.ERROR_CHECKS`, e.g. ``"funding_outlier"``)
        to accept: before the commit every series written is checked as it will be stored
        (old and new rows) with the checks of ``carry data check``; an error of another check
        refuses the whole ingest. Allowed errors are recorded in each series'
        ``WriteReport.overridden`` and listed as warnings.

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

    The ingest is one catalog transaction (:meth:`data.catalog.Catalog.transaction`): every
    file is read and validated, every series merged, staged and checked before anything is
    committed, and then all series are committed together. A bad file, a failed check or an
    interrupted process (even ``kill -9``: the next open of the catalog finishes or rolls back
    the commit) leaves the catalog as it was or with the whole ingest, never a part of it.
    All files of one series are combined into one table and written once (idempotent: a
    re-ingest adds 0 rows).

    Raises
    ------
    ChecksumError
        A zip does not match its ``.CHECKSUM``.
    DataError
        Bad file name or layout, corrupt zip, missing CSV member, wrong column count,
        unparseable number, unknown timestamp unit or any contract violation (see
        :func:`data.validate.conform`); the message names the zip, member, column and row.
        A series that would fail a check of ``carry data check`` (funding beyond any cap,
        spot and perp apart, ...), naming the files, the series, the check and the time.
    ConfigError
        An unknown name in ``allow_errors``.
    """
    verify = ingest_checks(allow_errors)  # a misspelt check name fails before any file is read
    report = IngestReport()
    if isinstance(paths, (str, os.PathLike)):  # one path, not a sequence of characters
        paths = [paths]
    zips = _iter_zip_paths(paths)
    files = [parse_file_name(p, market=market, kind=kind) for p in zips]
    if not files:  # nothing to ingest is a mistake, not a success
        raise DataError(
            "no Binance zip files (e.g. BTCUSDT-1h-2024-01.zip) found in " + ", ".join(str(p) for p in paths)
        )

    def load(f: BinanceFile) -> tuple[pa.Table, list[str], bool]:
        verified = verify_checksum_file(f.path) if verify_checksum else False
        table, warns = read_binance_zip(f)
        if f.kind in (Kind.SPOT, Kind.PERP) and kind is None and len(table) and layout_hints(f.path)[1] is None:
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

    writes: list[WriteReport] = []
    with catalog.transaction(verify=verify):
        for key, table, source in sorted(prepared, key=lambda x: str(x[0])):
            writes.append(catalog.write(key, table, source=source))
    report.writes += writes
    report.warnings += [f"{w.key}: allowed error {o}" for w in writes for o in w.overridden]
    return report

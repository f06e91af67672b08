"""Ingest a freqtrade data directory (``freqtrade download-data``) into the catalog.

Layout read (freqtrade's own conventions)::

    DIR/<BASE>_<QUOTE>-<tf>.feather                            spot klines
    DIR/spot/<BASE>_<QUOTE>-<tf>.feather                       spot klines (some setups keep them here)
    DIR/futures/<BASE>_<QUOTE>_<SETTLE>-<tf>-futures.feather   perpetual klines (last price)
    DIR/futures/<BASE>_<QUOTE>_<SETTLE>-<tf>-mark.feather      mark-price klines
    DIR/futures/<BASE>_<QUOTE>_<SETTLE>-<tf>-index.feather     index-price klines
    DIR/futures/<BASE>_<QUOTE>_<SETTLE>-<tf>-premiumIndex...   premium-index klines
    DIR/futures/<BASE>_<QUOTE>_<SETTLE>-<tf>-funding_rate...   funding settlements

Each file may be ``.feather``, ``.parquet``, ``.json`` or ``.json.gz`` (freqtrade's json is a
list of ``[ms, open, high, low, close, volume]`` rows). A directory that directly holds the
futures files (no ``futures/`` sub-folder) is read too. The kind of a file comes from its name
(a ``<BASE>_<QUOTE>_<SETTLE>`` pair is a futures pair wherever it sits). Nothing is skipped
without a word: every other file (trades files, hidden files, other names or extensions) and
every other sub-folder is listed in ``IngestReport.warnings`` with the reason, one line each.

Conversions
-----------
* Symbol: ``BASE + QUOTE`` (``BTC_USDT_USDT`` -> ``BTCUSDT``, Hyperliquid's ``BTC_USDC_USDC`` ->
  ``BTCUSDC``). Multiplied perps keep the exchange's name (``1000PEPE_USDT_USDT`` ->
  ``1000PEPEUSDT``, ``1MBABYDOGE_USDT_USDT`` -> ``1MBABYDOGEUSDT``), except Hyperliquid's
  lower-case thousands (``kPEPE_USDC_USDC`` -> ``1000PEPEUSDC``: catalog symbols are
  upper-case); :mod:`data.symbols` maps them to the spot pair (``PEPEUSDT``) and the price
  unit at load time. Its rule for names such as ``1000SATS`` (a token of its own when the
  source has a ``1000SATS`` spot pair) is applied to the ``symbols=`` filter with the
  directory's spot files as the context.
* Times: any Arrow timestamp unit (freqtrade writes ms in some files, ns in others) or integer
  epochs (unit detected from the magnitude: s, ms, us or ns) become UTC milliseconds.
  Timezone-naive times are rejected (freqtrade always writes UTC-aware dates).
* Bars keep their times and values (volume in base units; ``quote_volume`` and ``trades``
  null). Zero-volume constant-price bars are real (early perps) and kept.
* A last candle still open when the file was written is dropped (freqtrade writes the running
  candle when ``download-data`` runs mid-bar). The evidence is the file's modification time
  ``W``, the moment freqtrade wrote it: the last bar, opening at ``O`` with timeframe ``tf``,
  is dropped, with a warning naming the file and the bar, when ``O <= W < O + tf`` (it had
  not closed when written). A last bar that opens after ``W`` means the modification time is
  not the download time (the file was touched or extracted with an older stamp): the check is
  not possible, nothing is dropped, and a warning says so. A file copied without keeping its
  time (``cp``, ``git clone``) carries a later time, and an open candle in it cannot be told
  from a closed one. Funding rows are settlements, never partial, and are not checked.
* Funding: the rate (a fraction per interval) is freqtrade's ``open`` column; ``mark_price``
  is left null (the loader takes it from the mark bars). Times are floored **to the hour**:
  every venue read here (Binance, Bybit, OKX, Hyperliquid) settles on whole hours, and the
  stamps run late, never early: Binance's by milliseconds (``00:00:00.017``), Hyperliquid's by
  milliseconds and, for a few settlements, minutes (``08:23:53.040`` is the 08:00
  settlement). Flooring to the minute would leave those off the schedule (gaps of 8.38 h and
  7.62 h around 2023-05-23 08:23, of 1.07 h and 0.93 h around 2023-12-17 22:04). A file with settlements 1 minute or more past the hour gets a
  warning (count, latest delay); a file where most settlements (three or more) are is
  refused: its schedule is not on the hour, or its times are shifted. See
  :func:`derive_interval_hours` for how ``interval_hours`` is derived; a settlement whose
  interval cannot be derived (a series of one settlement, or one between holes of more than
  24 h) keeps a null interval, with a warning naming the file.

Overlapping files
-----------------
Several files may feed one series: freqtrade labels funding files ``-8h-`` (older versions) or
``-1h-`` (current), often both are present and overlap, likewise ``-8h-mark``. Mark bars keep
their own timeframe (an ``-8h-mark`` file holds real 8-hour bars and is stored at ``8h``).
Files of the same series are merged by time: rows that agree exactly are kept once; where they
disagree the row of the preferred file wins and the conflict is listed in
``IngestReport.conflicts``. The preferred file is the one whose history **ends later** (the
more recent download); on a tie the finer label (``1h`` before ``8h``, freqtrade's current
convention), then feather before parquet before json. In the shared Binance data the
``-1h-`` funding files end later in every case and no rates conflict.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.parquet as pq

from data.catalog import Catalog, PartitionKey
from data.errors import ConfigError, DataError, did_you_mean
from data.ingest import IngestReport, floor_settlements
from data.quality import ingest_checks
from data.schema import TIME_TYPE, Kind, timeframe_minutes
from data.symbols import canonical_symbol, spot_symbol

__all__ = ["ingest_freqtrade", "derive_interval_hours", "parse_filename", "FreqtradeFile"]

_CANDLE_KINDS = {
    "": Kind.SPOT,
    "spot": Kind.SPOT,
    "futures": Kind.PERP,
    "mark": Kind.MARK,
    "index": Kind.INDEX,
    "premiumIndex": Kind.PREMIUM,
    "funding_rate": Kind.FUNDING,
}
_EXTS = (".feather", ".parquet", ".json.gz", ".json")
_EXT_RANK = {".feather": 0, ".parquet": 1, ".json": 2, ".json.gz": 3}
_NAME_RE = re.compile(
    r"^(?P<pair>[A-Za-z0-9]+(?:_[A-Za-z0-9]+){1,2})-(?P<tf>\d+[mhdw])"
    r"(?:-(?P<ct>futures|mark|index|premiumIndex|funding_rate|spot))?$"
)
_COLUMNS = ("date", "open", "high", "low", "close", "volume")

#: Funding intervals (hours) an exchange schedules; a gap equal to one of these is taken as a
#: genuine interval even when it is a multiple of the one before.
STANDARD_INTERVALS_H = (1.0, 2.0, 4.0, 8.0)
#: Gaps longer than this (hours) are missing data, never an interval.
MAX_INTERVAL_H = 24.0
_MS_PER_HOUR = 3_600_000


@dataclass(frozen=True)
class FreqtradeFile:
    """One data file of a freqtrade directory, parsed from its name."""

    path: Path
    symbol: str  #: canonical exchange symbol, e.g. ``BTCUSDT`` or ``1000PEPEUSDT``
    kind: Kind
    label: str  #: freqtrade's timeframe label from the file name (``1h``, ``8h``, ``5m``)
    ext: str

    @property
    def timeframe(self) -> str | None:
        """The bar timeframe (``None`` for funding, whose label is not an interval)."""
        return None if self.kind is Kind.FUNDING else self.label


def parse_filename(path: Path | str) -> FreqtradeFile | None:
    """Parse a freqtrade data file name; ``None`` if it is not one.

    ``BTC_USDT-1h.feather`` -> spot ``BTCUSDT`` 1h; ``1000PEPE_USDT_USDT-8h-funding_rate.json``
    -> funding ``1000PEPEUSDT`` (label ``8h``); ``kPEPE_USDC_USDC-1h-futures.feather`` -> perp
    ``1000PEPEUSDC`` (Hyperliquid's thousands, see :func:`data.symbols.canonical_symbol`).
    """
    path = Path(path)
    name = path.name
    ext = next((e for e in _EXTS if name.endswith(e)), None)
    if ext is None:
        return None
    m = _NAME_RE.match(name[: -len(ext)])
    if m is None:
        return None
    parts = m.group("pair").split("_")
    ct = m.group("ct") or ""
    kind = _CANDLE_KINDS[ct]
    if kind is Kind.SPOT and len(parts) == 3:
        kind = Kind.PERP  # a settle currency only exists on futures pairs
    return FreqtradeFile(path, canonical_symbol(parts[0]) + parts[1].upper(), kind, m.group("tf"), ext)


# --------------------------------------------------------------------------- reading
def _epoch_to_ms(values: np.ndarray, source: str) -> np.ndarray:
    """Integer or float epochs in s, ms, us or ns (detected from the magnitude) -> int64 ms."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return v.astype(np.int64)
    if not np.isfinite(v).all():
        row = int(np.flatnonzero(~np.isfinite(v))[0])
        raise DataError(f"{source}: column 'date', row {row}: missing or non-finite time")
    mag = float(np.nanmax(np.abs(v)))
    # 2001..2286 in each unit: s ~1e9, ms ~1e12, us ~1e15, ns ~1e18.
    for lo, div in ((1e17, 1e6), (1e14, 1e3), (1e11, 1.0), (1e8, 1e-3)):
        if mag >= lo:
            return np.floor(v / div).astype(np.int64)
    raise DataError(f"{source}: column 'date' holds numbers ({mag:g}) too small to be epoch times")


def _read_raw(f: FreqtradeFile) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Read one file: (times as int64 UTC ms, {column: float64 values})."""
    src = str(f.path)
    if f.ext in (".json", ".json.gz"):
        opener = gzip.open if f.ext == ".json.gz" else open
        try:
            with opener(f.path, "rt") as fh:
                rows = json.load(fh)
        except (OSError, ValueError, EOFError, zlib.error) as exc:
            raise DataError(f"{src}: cannot read freqtrade json ({exc}); it may be truncated or corrupt") from None
        if not isinstance(rows, list) or any(not isinstance(r, list) or len(r) < 6 for r in rows[:1]):
            raise DataError(f"{src}: expected a json list of [ms, open, high, low, close, volume] rows")
        try:
            arr = np.array([r[:6] for r in rows], dtype=np.float64).reshape(-1, 6)
        except (TypeError, ValueError) as exc:
            raise DataError(f"{src}: json rows are not all numeric [ms, o, h, l, c, v] ({exc})") from None
        return _epoch_to_ms(arr[:, 0], src), {c: arr[:, i] for i, c in enumerate(_COLUMNS) if i}
    try:
        table = feather.read_table(f.path) if f.ext == ".feather" else pq.read_table(f.path)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{src}: cannot read {f.ext[1:]} file ({exc}); it may be truncated or corrupt") from None
    missing = [c for c in _COLUMNS if c not in table.column_names]
    if missing:
        raise DataError(
            f"{src}: missing column(s) {', '.join(map(repr, missing))} "
            f"(columns present: {', '.join(table.column_names)})"
        )
    date = table.column("date").combine_chunks()
    if pa.types.is_timestamp(date.type):
        if date.type.tz is None:
            raise DataError(
                f"{src}: column 'date' is timezone-naive ({date.type}); freqtrade writes UTC-aware "
                "dates, so this file's time zone is unknown"
            )
        if date.null_count:
            row = int(np.flatnonzero(date.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(f"{src}: column 'date', row {row}: missing time")
        times = pc.cast(pc.cast(date, pa.timestamp(date.type.unit, tz="UTC")), pa.int64()).to_numpy()
        unit_div = {"s": 1e-3, "ms": 1, "us": 1_000, "ns": 1_000_000}[date.type.unit]
        times = np.floor_divide(times, int(unit_div)) if unit_div >= 1 else times * 1000
    elif pa.types.is_integer(date.type) or pa.types.is_floating(date.type):
        times = _epoch_to_ms(date.to_numpy(zero_copy_only=False), src)
    else:
        raise DataError(f"{src}: column 'date' has type {date.type}, expected a UTC timestamp")
    cols = {}
    for c in _COLUMNS[1:]:
        col = table.column(c)
        try:
            cols[c] = col.cast(pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowException as exc:
            raise DataError(f"{src}: column {c!r} has type {col.type}, expected numbers ({exc})") from None
    return times.astype(np.int64), cols


# --------------------------------------------------------------------------- merging
def _fmt(ms: int) -> str:
    unit = "s" if int(ms) % 1000 == 0 else "ms"
    return str(np.datetime64(int(ms), "ms").astype(f"datetime64[{unit}]")).replace("T", " ") + " UTC"


def _clean_one(
    times: np.ndarray, vals: np.ndarray, f: FreqtradeFile, report: IngestReport, key: PartitionKey
) -> tuple[np.ndarray, np.ndarray]:
    """Sort one file's rows by time and collapse duplicate times (last row wins, reported)."""
    if len(times) > 1 and (np.diff(times) < 0).any():
        order = np.argsort(times, kind="stable")
        times, vals = times[order], vals[order]
        report.warnings.append(f"{f.path}: rows were not sorted by time; sorted them")
    if len(times) > 1:
        dup = np.flatnonzero(np.diff(times) == 0)
        if dup.size:
            same = np.all((vals[dup] == vals[dup + 1]) | (np.isnan(vals[dup]) & np.isnan(vals[dup + 1])), axis=1)
            if same.sum():
                report.warnings.append(f"{f.path}: {int(same.sum())} exactly repeated rows dropped")
            for i in dup[~same][:5]:
                report.conflicts.append(
                    f"{key}: {f.path.name} holds two different rows at {_fmt(times[i])}; kept the later row"
                )
            if (~same).sum() > 5:
                report.conflicts.append(f"{key}: ... and {int((~same).sum()) - 5} more repeated times in {f.path.name}")
            keep = np.ones(len(times), dtype=bool)
            keep[dup] = False  # of each run of equal times keep the last
            times, vals = times[keep], vals[keep]
    return times, vals


def _merge_files(
    parts: list[tuple[FreqtradeFile, np.ndarray, np.ndarray]], key: PartitionKey, report: IngestReport
) -> tuple[np.ndarray, np.ndarray]:
    """Merge several files of one series; ``parts`` is ordered most preferred first."""
    if len(parts) == 1:
        return parts[0][1], parts[0][2]
    times = np.concatenate([p[1] for p in parts])
    vals = np.concatenate([p[2] for p in parts])
    rank = np.concatenate([np.full(len(p[1]), i) for i, p in enumerate(parts)])
    order = np.lexsort((rank, times))  # by time, then preferred file first
    times, vals, rank = times[order], vals[order], rank[order]
    first = np.ones(len(times), dtype=bool)
    first[1:] = times[1:] != times[:-1]
    start = np.flatnonzero(first)
    win = np.repeat(start, np.diff(np.append(start, len(times))))  # index of each time's winner
    dup = np.flatnonzero(~first)
    differs = ~np.all((vals[dup] == vals[win[dup]]) | (np.isnan(vals[dup]) & np.isnan(vals[win[dup]])), axis=1)
    bad = dup[differs]
    col = "rate" if key.kind is Kind.FUNDING else "open/high/low/close/volume"
    for i in bad:
        w, loser = int(win[i]), int(i)
        report.conflicts.append(
            f"{key} at {_fmt(times[i])}: {parts[rank[w]][0].path.name} has {col} "
            f"{_vals_str(vals[w], key)} but {parts[rank[loser]][0].path.name} has {_vals_str(vals[loser], key)}; "
            f"kept {parts[rank[w]][0].path.name}"
        )
    return times[first], vals[first]


def _vals_str(v: np.ndarray, key: PartitionKey) -> str:
    return repr(float(v[0])) if key.kind is Kind.FUNDING else "(" + ", ".join(f"{x:g}" for x in v) + ")"


# --------------------------------------------------------------------------- funding intervals
def derive_interval_hours(times_ms: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Funding interval (hours) of each settlement, from the settlement times.

    Rule (documented for users):

    1. The interval of a settlement is the time since the previous settlement: the rate
       settled at ``t_i`` accrues over ``(t_{i-1}, t_i]``.
    2. The first settlement has no predecessor; it takes the interval derived for the second.
       A single settlement gets null (unknown).
    3. A gap longer than 24 h is missing data: the settlement keeps the interval in force
       before it (a warning says how long the hole is).
    4. A gap that is a whole multiple ``k >= 2`` of the interval in force before it is a
       missing settlement (``k - 1`` missing), and keeps that interval, when the gap is not a
       standard interval (1, 2, 4, 8 h; e.g. 16 h after 8 h) or the next gap returns to the
       previous interval (8, 8, 16, 8). Otherwise it is a genuine change (8 h -> 4 h, 1 h -> 4 h).
    5. Any other gap (e.g. 5 h, a schedule shift) is kept as measured, with a warning.

    On the shared real data (times floored to the hour) every schedule change comes out as a
    change, not as missing settlements: Bybit WIF 8 h -> 4 h (2025-01-15 12:00), Binance XTZ
    8 h -> 1 h -> 4 h (2025-07-20 09:00, 2025-07-22 16:00), OKX AVAX 8 h -> 1 h -> 8 h (the
    2025-10-11 crash), Hyperliquid 8 h -> 1 h (2023-06-08 01:00; hourly rates since). The
    only gaps noted are real: Hyperliquid's 2-hour gaps (settlements missing on 2023-07-02,
    2023-08-23 and 2024-08-15 across its coins) and the 166-day holes of three Binance files.

    Parameters
    ----------
    times_ms:
        Sorted, unique settlement times, int64 UTC milliseconds.

    Returns
    -------
    (interval_hours, notes)
        float64 hours per settlement (NaN where unknown), and one note per anomaly.
    """
    t = np.asarray(times_ms, dtype=np.int64)
    n = len(t)
    out = np.full(n, np.nan)
    notes: list[str] = []
    if n < 2:
        return out, notes
    g = np.diff(t) / 3_600_000.0  # gap before row i+1, hours
    out[1:] = g
    standard = np.isin(g, STANDARD_INTERVALS_H)
    prev = np.nan
    for i in range(1, n):
        gi = g[i - 1]
        nxt = g[i] if i < n - 1 else np.nan
        ref = prev if not np.isnan(prev) else nxt  # interval in force before this gap
        if gi > MAX_INTERVAL_H:
            val = ref if not np.isnan(ref) and ref <= MAX_INTERVAL_H else np.nan
            notes.append(
                f"{gi:g} h without a settlement before {_fmt(t[i])} (missing data); interval taken as {val:g} h"
            )
        elif (
            not np.isnan(ref)
            and gi > ref
            and _is_multiple(gi, ref)
            and (not standard[i - 1] or (not np.isnan(nxt) and nxt == ref and nxt == prev))
        ):
            val = ref
            notes.append(
                f"{int(round(gi / ref)) - 1} settlement(s) missing before {_fmt(t[i])} "
                f"(gap {gi:g} h, interval {ref:g} h)"
            )
        else:
            val = gi
            if not standard[i - 1]:
                notes.append(f"irregular funding gap of {gi:g} h before {_fmt(t[i])}; kept as the interval")
        out[i] = val
        prev = val
    out[0] = out[1]
    return out, notes


def _is_multiple(a: float, b: float) -> bool:
    k = a / b
    return k >= 2 - 1e-9 and abs(k - round(k)) < 1e-6


# --------------------------------------------------------------------------- main entry
def _wanted(symbols: list[str] | None) -> set[str] | None:
    if symbols is None:
        return None
    return {canonical_symbol(s) for s in symbols}


def _spot_or_self(symbol: str, spots: Collection[str]) -> str:
    """The spot pair of ``symbol`` (``1000PEPEUSDT`` -> ``PEPEUSDT``; ``1000SATSUSDT`` stays when
    ``spots`` holds it), or ``symbol`` for an unknown quote."""
    try:
        return spot_symbol(symbol, spots)
    except ConfigError:
        return symbol


#: Sub-folders of a freqtrade exchange directory that hold data files (freqtrade writes
#: ``futures/``; some setups keep spot files in ``spot/``).
DATA_SUBFOLDERS = ("futures", "spot")
_TRADES_RE = re.compile(r"-trades\.(?:feather|parquet|json|json\.gz|h5)$")


def _skip_reason(path: Path) -> str:
    """Why a file of a freqtrade directory is not read (for the report)."""
    name = path.name
    if name.startswith("."):
        return "hidden file, not a freqtrade data file"
    if _TRADES_RE.search(name):
        return "a trades (tick) file; only candles and funding are ingested"
    if name.endswith(".h5"):
        return (
            "freqtrade's hdf5 format is not read; convert it with "
            "'freqtrade convert-data --format-from hdf5 --format-to feather'"
        )
    if any(name.endswith(e) for e in _EXTS):
        return "name is not in freqtrade's layout (<BASE>_<QUOTE>[_<SETTLE>]-<tf>[-<type>])"
    return f"not a freqtrade data file (expected {', '.join(_EXTS)})"


def _discover(directory: Path, report: IngestReport) -> list[FreqtradeFile]:
    """Every data file of ``directory`` and of its ``futures/`` and ``spot/`` sub-folders; every
    other file and sub-folder is listed in ``report.warnings`` with the reason."""
    files: list[FreqtradeFile] = []
    dirs = [directory]
    for p in sorted(directory.iterdir()):
        if not p.is_dir():
            continue
        if p.name in DATA_SUBFOLDERS:
            dirs.append(p)
        else:
            report.warnings.append(
                f"{p}: sub-folder not read (freqtrade data sits at the top and in "
                f"{' and '.join(d + '/' for d in DATA_SUBFOLDERS)}); skipped"
            )
    for d in dirs:
        for p in sorted(d.iterdir()):
            if p.is_dir():
                if d is not directory:
                    report.warnings.append(f"{p}: sub-folder of {d.name}/ not read; skipped")
                continue
            f = parse_filename(p)
            if f is None:
                report.warnings.append(f"{p}: {_skip_reason(p)}; skipped")
                continue
            try:
                timeframe_minutes(f.label)
            except ConfigError as exc:
                report.warnings.append(f"{p}: {exc}; skipped")
                continue
            files.append(f)
    return files


def ingest_freqtrade(
    directory: Path | str,
    catalog: Catalog,
    venue: str = "binance",
    symbols: list[str] | None = None,
    allow_errors: Iterable[str] = (),
) -> IngestReport:
    """Ingest every recognised file of a freqtrade data directory into ``catalog``.

    The ingest is one catalog transaction (:meth:`data.catalog.Catalog.transaction`): every
    series is staged, the checks of ``carry data check`` run on the staged series as they will
    be stored (:func:`data.quality.ingest_checks`), and only then is everything committed
    together; a rejected file, a failed check or a crash leaves the catalog as it was.

    Parameters
    ----------
    directory:
        A freqtrade exchange data directory (``user_data/data/binance``: spot files at the top
        or in ``spot/``, futures under ``futures/``) or a directory holding futures files
        directly.
    catalog:
        Destination catalog; rows are merged idempotently (re-running adds nothing).
    venue:
        Venue name stored with every series (``"binance"``).
    symbols:
        Only these symbols (``["BTCUSDT", "PEPEUSDT"]``, ``"BTC/USDC:USDC"``, ``"kPEPEUSDC"``;
        a spot symbol also selects its multiplied perp ``1000PEPEUSDT``, unless the directory
        has a spot file under the multiplied name, as for ``1000SATSUSDT``). ``None`` ingests
        everything.
    allow_errors:
        Names of data checks (``carry data check``) whose errors do not refuse the ingest;
        each one let through is listed in the report's warnings ("allowed error ...").

    Returns
    -------
    IngestReport
        Series written (rows added / already present), warnings (one line per skipped file or
        sub-folder with the reason, dropped open candles, settlements stamped minutes late,
        unknown or missing funding settlements, irregular gaps) and conflicts (overlapping
        files that disagree).

    Raises
    ------
    DataError
        If ``directory`` is missing or holds no freqtrade data, or a file is unreadable or
        breaks the data contract (the message names the file, column and row), or a check
        of ``carry data check`` finds an error in a staged series that ``allow_errors`` (check
        names, e.g. ``("funding_outlier",)``) does not let through; nothing is written.
    """
    verify = ingest_checks(allow_errors)  # a misspelt check name fails before any file is read
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: no such directory (expected a freqtrade data directory)")
    report = IngestReport()
    files = _discover(directory, report)
    if not files:
        raise DataError(
            f"{directory}: no freqtrade data files found (expected e.g. BTC_USDT-1h.feather or "
            "futures/BTC_USDT_USDT-1h-futures.feather)"
            + (f"; {len(report.warnings)} other entries: " + "; ".join(report.warnings[:3]) if report.warnings else "")
        )
    spots = {f.symbol for f in files if f.kind is Kind.SPOT}
    wanted = _wanted(symbols)
    groups: dict[PartitionKey, list[FreqtradeFile]] = defaultdict(list)
    for f in files:
        if wanted is not None and f.symbol not in wanted and _spot_or_self(f.symbol, spots) not in wanted:
            continue
        groups[PartitionKey(venue, f.kind, f.symbol, f.timeframe)].append(f)
    if wanted is not None:
        found = {k.symbol for k in groups} | {_spot_or_self(k.symbol, spots) for k in groups}
        present = sorted({f.symbol for f in files} | {_spot_or_self(f.symbol, spots) for f in files})
        for s in sorted(wanted - found):
            report.warnings.append(f"{directory}: no files for symbol {s}{did_you_mean(s, present)}")
    writes_before = len(report.writes)
    with catalog.transaction(verify=verify):
        for key in sorted(groups, key=str):
            _ingest_series(key, groups[key], catalog, report)
    report.warnings += [f"{w.key}: allowed error {o}" for w in report.writes[writes_before:] for o in w.overridden]
    return report


def _drop_open_candle(
    times: np.ndarray, vals: np.ndarray, f: FreqtradeFile, report: IngestReport
) -> tuple[np.ndarray, np.ndarray]:
    """Drop the last bar of a file written before that bar closed (see the module docstring)."""
    if not len(times) or f.timeframe is None:
        return times, vals
    written = f.path.stat().st_mtime_ns // 1_000_000
    last = int(times[-1])
    close = last + timeframe_minutes(f.timeframe) * 60_000
    if close <= written:
        return times, vals
    if last > written:
        late = int((times > written).sum())
        report.warnings.append(
            f"{f.path}: the file's modification time ({_fmt(written)}) is before its last {late} bar(s) "
            f"(last opens {_fmt(last)}), so it is not the download time: whether the last {f.timeframe} "
            "candle was complete cannot be told; kept"
        )
        return times, vals
    report.warnings.append(
        f"{f.path}: last {f.timeframe} candle {_fmt(last)} closes at {_fmt(close)}, after the file was "
        f"written ({_fmt(written)}): it was still open when downloaded; dropped"
    )
    return times[:-1], vals[:-1]


def _ingest_series(key: PartitionKey, files: list[FreqtradeFile], catalog: Catalog, report: IngestReport) -> None:
    value_cols = ["open"] if key.kind is Kind.FUNDING else ["open", "high", "low", "close", "volume"]
    parts = []
    for f in files:
        times, cols = _read_raw(f)
        report.files_read += 1
        if len(times) == 0:
            report.warnings.append(f"{f.path}: file holds no rows; skipped")
            continue
        if key.kind is Kind.FUNDING:
            times = floor_settlements(times, str(f.path), "date", report)
        vals = np.column_stack([cols[c] for c in value_cols])
        times, vals = _clean_one(times, vals, f, report, key)
        if key.kind is not Kind.FUNDING:
            times, vals = _drop_open_candle(times, vals, f, report)
            if not len(times):
                continue
        parts.append((f, times, vals))
    if not parts:
        return
    # most preferred first: ends later, then finer label, then format
    parts.sort(key=lambda p: (-int(p[1][-1]), timeframe_minutes(p[0].label), _EXT_RANK[p[0].ext], p[0].path.name))
    times, vals = _merge_files(parts, key, report)
    source = " + ".join(str(p[0].path) for p in parts)
    time_arr = pa.array(times, type=pa.int64()).cast(TIME_TYPE)
    if key.kind is Kind.FUNDING:
        hours, notes = derive_interval_hours(times)
        report.warnings += [f"{key}: {n}" for n in notes]
        unknown = int(np.isnan(hours).sum())
        if unknown:
            why = "a single settlement" if len(times) == 1 else "settlements more than 24 h apart"
            report.warnings.append(
                f"{key}: interval unknown for {unknown} settlement(s) ({why} in {source}); "
                "interval_hours stored as null"
            )
        table = pa.table({"time": time_arr, "rate": vals[:, 0], "interval_hours": pa.array(hours, from_pandas=True)})
    else:
        table = pa.table({"time": time_arr, **{c: vals[:, i] for i, c in enumerate(value_cols)}})
        if key.kind not in (Kind.SPOT, Kind.PERP):
            table = table.drop_columns(["volume"])
    report.writes.append(catalog.write(key, table, source=source))

"""Data-quality report on a catalog: coverage (``carry data info``) and checks (``carry data check``).

:func:`catalog_info` summarises each series; :func:`check_catalog` reads every Parquet file
raw (not through the write gate, so it also finds damage done after writing) and returns a
list of :class:`Problem`. Severity ``error`` means the data is wrong or unreadable (the CLI
exits 1); ``warning`` means it is real but needs a policy (exchange outages, missing funding
settlements, brief spot/perp dislocations).

The same series checks run at ingest (:func:`ingest_checks`, the verification step of the
ingest's :meth:`~data.catalog.Catalog.transaction`) on the series written, as they will be
stored: an error stops the ingest before anything is committed unless its check is allowed
(``allow_errors``); :func:`check_series` runs them on given files or tables.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data.catalog import Catalog, PartitionKey, Transaction
from data.check_cache import cached_problems
from data.errors import ConfigError, DataError, UnknownNameError, did_you_mean, unknown_name
from data.schema import PRICE_COLUMNS, Kind, timeframe_minutes
from data.symbols import split_multiplier, split_symbol, spot_symbol
from data.validate import conform

__all__ = [
    "Problem",
    "CHECKS",
    "ERROR_CHECKS",
    "allowed_checks",
    "catalog_info",
    "check_catalog",
    "check_series",
    "format_info",
    "format_problems",
    "ingest_checks",
    "locate",
    "problem_column",
    "spike_runs",
    "verify_transaction",
]

#: The data of one series for :func:`check_series`: its year files, or one table.
SeriesData: TypeAlias = Sequence[Path] | pa.Table

#: |rate| above this (fraction per settlement interval) is beyond any Binance funding cap.
FUNDING_RATE_LIMIT = 0.03
#: |perp / spot - 1| above this (a fraction) on a bar counts as a spot/perp divergence.
BASIS_LIMIT = 0.10
#: A close this many times away from both neighbouring closes (up or down) is a bad tick.
SPIKE_FACTOR = 5.0
#: The longest run of consecutive bad-tick bars :func:`spike_runs` finds (a bar, or two or three,
#: stored x1000); a longer run is not told apart from a real move that came back.
SPIKE_RUN = 3
#: A high (low) this many times above (below) the bar's body is a bad tick in the wick.
WICK_FACTOR = 10.0
#: A funding series whose median |rate| exceeds this (fraction per interval) is stored in the
#: wrong unit: real medians are about 0.0001 (0.01%); 0.003 is the +/-0.3% cap of BTC/ETH.
FUNDING_MEDIAN_LIMIT = 0.003
#: Gap ranges listed in a message.
MAX_LISTED = 5

_MS_H = 3_600_000


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`check_catalog`.

    Attributes
    ----------
    severity:
        ``"error"`` (wrong or unreadable data) or ``"warning"`` (real but needs a policy).
    series:
        The series, ``venue/kind[/timeframe]/SYMBOL`` (or a file path for unreadable files).
    check:
        Name of the check (``gaps``, ``duplicates``, ``non_monotonic``, ``nan``,
        ``non_positive_price``, ``ohlc``, ``unreadable``, ``invalid``, ``off_grid``,
        ``misaligned``, ``basis_divergence``, ``funding_outlier``, ``funding_scale``,
        ``funding_schedule``, ``price_spike``, ``price_wick``, ``funding_off_hour``,
        ``funding_spacing``, ``funding_interval_unknown``, ``wrong_partition``).
    message:
        What is wrong, with the first few occurrences.
    time:
        UTC time of the first occurrence (ISO), or ``None``.
    count:
        Number of occurrences (rows, bars or settlements).
    """

    severity: str
    series: str
    check: str
    message: str
    time: str | None = None
    count: int = 1


def _iso(ms: int | np.integer) -> str:
    ms = int(ms)
    unit = "s" if ms % 1000 == 0 else "ms"
    return str(np.datetime64(ms, "ms").astype(f"datetime64[{unit}]")) + "Z"


def _short(ms: int | np.integer) -> str:
    return _iso(ms).replace("T", " ").removesuffix(":00Z").removesuffix("Z")


def _hours_label(h: float) -> str:
    return f"{h:g}h"


# --------------------------------------------------------------------------- info
def catalog_info(catalog: Catalog, symbols: Sequence[str] | None = None) -> list[dict]:
    """Coverage of every series in ``catalog`` (or of ``symbols``' series only: as in
    :func:`check_catalog`, a spot symbol also selects its multiplied perp, and a symbol the
    catalog does not hold is an :class:`~data.errors.UnknownNameError` naming it and listing the
    catalog's symbols).

    Returns
    -------
    list of dict
        One dict per series, sorted by venue, kind, timeframe, symbol, with keys ``venue``,
        ``kind``, ``timeframe`` (``None`` for funding), ``symbol``, ``rows``, ``first`` and
        ``last`` (ISO 8601 UTC), ``files`` (Parquet files). Bars add ``missing_bars`` (bars
        absent from the timeframe grid between first and last). Funding adds ``settlements``,
        ``rate_sum`` (sum of rates, a fraction) and ``intervals`` (``{"8h": count, ...}``,
        hours per settlement). A series whose files cannot be read has ``error`` instead.
    """
    with catalog.reading():  # one committed state, even while an ingest commits
        return _catalog_info(catalog, symbols)


def select_symbols(catalog: Catalog, keys: list[PartitionKey], symbols: Sequence[str] | None) -> list[PartitionKey]:
    """The ``keys`` of ``symbols`` (all for None; ``BTC/USDT`` and ``btc_usdt`` read as
    ``BTCUSDT``; a spot symbol also selects its multiplied perp, ``PEPEUSDT`` -> ``1000PEPEUSDT``).
    A symbol with no series is an :class:`UnknownNameError` naming it, with a did-you-mean hint
    and (some of) the symbols the catalog holds."""
    if symbols is None:
        return list(keys)
    if isinstance(symbols, str):
        symbols = [s for s in symbols.split(",") if s.strip()]
    wanted = {s.strip().upper().replace("/", "").replace("_", "") for s in symbols}
    stored = {k.symbol for k in keys} | {spot_symbol_safe(k.symbol) for k in keys}
    unknown = sorted(wanted - stored)
    if unknown:
        hints = ", ".join(f"{s!r}{did_you_mean(s, stored)}" for s in unknown)
        held = sorted({k.symbol for k in keys})
        listing = ", ".join(held[:10]) + (f", ... ({len(held)} in all)" if len(held) > 10 else "")
        raise UnknownNameError(
            f"catalog {catalog.root} has no series for symbol(s) {hints}; it holds {listing or 'no series'}"
        )
    return [k for k in keys if k.symbol in wanted or spot_symbol_safe(k.symbol) in wanted]


def _catalog_info(catalog: Catalog, symbols: Sequence[str] | None = None) -> list[dict]:
    out: list[dict] = []
    for key in select_symbols(catalog, list(catalog.keys()), symbols):
        row: dict = {
            "venue": key.venue,
            "kind": key.kind.value,
            "timeframe": key.timeframe,
            "symbol": key.symbol,
            "files": len(catalog.files(key)),
        }
        try:
            table = catalog.read(key)
        except DataError as exc:
            row.update(rows=None, first=None, last=None, error=str(exc))
            out.append(row)
            continue
        t = table.column("time").cast(pa.int64()).to_numpy()
        row.update(rows=len(t), first=_iso(t[0]) if len(t) else None, last=_iso(t[-1]) if len(t) else None)
        if key.kind.is_bar and len(t):
            try:
                step = timeframe_minutes(key.timeframe) * 60_000
            except ConfigError as exc:
                row["error"] = f"{key}: {exc}"
            else:
                row["missing_bars"] = int((t[-1] - t[0]) // step + 1 - len(np.unique(t)))
        if key.kind is Kind.FUNDING:
            rate = table.column("rate").to_numpy()
            hours = table.column("interval_hours").to_numpy(zero_copy_only=False)
            labels, counts = np.unique(np.where(np.isnan(hours), -1.0, hours), return_counts=True)
            row["settlements"] = len(t)
            row["rate_sum"] = float(rate.sum())
            row["intervals"] = {("unknown" if h < 0 else _hours_label(h)): int(n) for h, n in zip(labels, counts)}
        out.append(row)
    return out


# --------------------------------------------------------------------------- checks
def _read_raw(path: Path) -> pa.Table:
    return pq.read_table(path)


def _file_checks(key: PartitionKey, path: Path, table: pa.Table, problems: list[Problem]) -> bool:
    """Counted row checks on one raw file. Returns True if it found anything."""
    series = str(key)
    before = len(problems)
    if "time" not in table.column_names or not pa.types.is_timestamp(table.schema.field("time").type):
        return False
    ttype = table.schema.field("time").type
    t = (
        table.column("time")
        .cast(pa.timestamp("ms", tz=ttype.tz), safe=False)
        .cast(pa.int64())
        .to_numpy(zero_copy_only=False)
    )
    d = np.diff(t)
    for mask, check, what in (
        (d == 0, "duplicates", "duplicate times"),
        (d < 0, "non_monotonic", "times going backwards"),
    ):
        idx = np.flatnonzero(mask)
        if idx.size:
            problems.append(
                Problem(
                    "error",
                    series,
                    check,
                    f"{path.name}: {idx.size} {what}, first at row {idx[0] + 1}",
                    _iso(t[idx[0] + 1]),
                    int(idx.size),
                )
            )
    names = [c for c in (*PRICE_COLUMNS[key.kind], "rate") if c in table.column_names]
    vals = {}
    for c in names:
        try:
            vals[c] = table.column(c).cast(pa.float64()).to_numpy(zero_copy_only=False)
        except pa.ArrowException:
            continue
        nan = np.flatnonzero(np.isnan(vals[c]))
        if nan.size:
            problems.append(
                Problem(
                    "error",
                    series,
                    "nan",
                    f"{path.name}: column {c!r} has {nan.size} NaN/missing values, first at row {nan[0]}",
                    _iso(t[nan[0]]),
                    int(nan.size),
                )
            )
        if c in PRICE_COLUMNS[key.kind]:
            bad = np.flatnonzero(vals[c] <= 0)
            if bad.size:
                problems.append(
                    Problem(
                        "error",
                        series,
                        "non_positive_price",
                        f"{path.name}: column {c!r} has {bad.size} prices <= 0, first at row {bad[0]} ({vals[c][bad[0]]!r})",
                        _iso(t[bad[0]]),
                        int(bad.size),
                    )
                )
    if all(c in vals for c in ("open", "high", "low", "close")) and PRICE_COLUMNS[key.kind]:
        o, h, lo, c = vals["open"], vals["high"], vals["low"], vals["close"]
        with np.errstate(invalid="ignore"):
            bad = np.flatnonzero((h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (lo > h))
        if bad.size:
            r = bad[0]
            problems.append(
                Problem(
                    "error",
                    series,
                    "ohlc",
                    f"{path.name}: {bad.size} bars with high/low not enclosing open/close, first at row {r} "
                    f"(open={o[r]!r} high={h[r]!r} low={lo[r]!r} close={c[r]!r})",
                    _iso(t[r]),
                    int(bad.size),
                )
            )
    return len(problems) > before


def _load_series(key: PartitionKey, data: SeriesData, problems: list[Problem]) -> pa.Table | None:
    """Read every file of ``key`` raw (or take the given table), report per-file damage; return
    the valid rows, sorted."""
    good: list[pa.Table] = []
    parts: list[tuple[Path, pa.Table | None]] = (
        [(Path("<table>"), data)] if isinstance(data, pa.Table) else [(Path(p), None) for p in data]
    )
    for path, given in parts:
        if given is not None:
            raw = given
        else:
            try:
                raw = _read_raw(path)
            except (pa.ArrowException, OSError) as exc:
                problems.append(
                    Problem(
                        "error",
                        str(key),
                        "unreadable",
                        f"{path}: cannot read Parquet file ({exc}); it may be truncated or corrupt",
                    )
                )
                continue
        found = _file_checks(key, path, raw, problems)
        try:
            table = conform(raw, key.kind, str(path))
        except DataError as exc:
            if not found:
                problems.append(Problem("error", str(key), "invalid", str(exc)))
            continue
        if given is not None:
            good.append(table)
            continue
        t = table.column("time").cast(pa.int64()).to_numpy()
        year = int(path.stem.split("=")[1])
        years = t.astype("datetime64[ms]").astype("datetime64[Y]").astype(np.int64) + 1970
        off = np.flatnonzero(years != year)
        if off.size:
            problems.append(
                Problem(
                    "warning",
                    str(key),
                    "wrong_partition",
                    f"{path.name}: {off.size} rows are not in year {year}",
                    _iso(t[off[0]]),
                    int(off.size),
                )
            )
        good.append(table)
    if not good:
        return None
    table = pa.concat_tables(good)
    t = table.column("time").cast(pa.int64()).to_numpy()
    if len(t) > 1 and (np.diff(t) <= 0).any():
        dup = int((np.diff(np.sort(t)) == 0).sum())
        if dup:
            problems.append(
                Problem("error", str(key), "duplicates", f"{dup} times stored in more than one year file", count=dup)
            )
        order = np.argsort(t, kind="stable")
        table = table.take(order)
    return table


def _gaps(key: PartitionKey, t: np.ndarray, problems: list[Problem]) -> None:
    step = timeframe_minutes(key.timeframe) * 60_000
    if step <= 1440 * 60_000 and 86_400_000 % step == 0:
        off = np.flatnonzero(t % step)
        if off.size:
            problems.append(
                Problem(
                    "warning",
                    str(key),
                    "off_grid",
                    f"{off.size} bar times are not on the {key.timeframe} grid, first {_short(t[off[0]])}",
                    _iso(t[off[0]]),
                    int(off.size),
                )
            )
    u = np.unique(t)
    d = np.diff(u)
    idx = np.flatnonzero(d > step)
    missing = (d[idx] // step - 1).astype(np.int64)
    for i, m in zip(idx, missing):  # one problem per gap, so --json lists every range
        start, end = u[i] + step, u[i + 1] - step
        problems.append(
            Problem(
                "warning",
                str(key),
                "gaps",
                f"{m} missing {key.timeframe} bar{'s' if m != 1 else ''}: {_short(start)}"
                + (f" .. {_short(end)}" if end != start else ""),
                _iso(start),
                int(m),
            )
        )


def spike_runs(close: np.ndarray, factor: float = SPIKE_FACTOR, longest: int = SPIKE_RUN) -> np.ndarray:
    """Mask of the bars that are bad ticks: a run of 1 to ``longest`` consecutive bars whose closes
    are all over ``factor`` times away (up or down) from the close before the run and from the
    close after it, while those two are within ``factor`` of each other. A whole bar (or two,
    three) stored x1000 comes back within the run; a real move that lasts (a crash that stays
    down) leaves the closes before and after apart, so it is never flagged. One rule for every
    run length, vectorized over the bars (a loop over the lengths and the run's positions only);
    the first and last bars, which lack a side, are never flagged."""
    c = np.asarray(close, dtype=float)
    n = len(c)
    bad = np.zeros(n, dtype=bool)

    def far(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a > factor * b) | (b > factor * a)  # NaN compares False: never far, never flagged

    with np.errstate(invalid="ignore", over="ignore"):
        for length in range(1, longest + 1):
            if n < length + 2:
                break
            # runs start at bar i = 1 .. n - length - 1: before = c[i - 1], after = c[i + length]
            before, after = c[: n - length - 1], c[length + 1 :]
            hit = ~far(before, after) & np.isfinite(before) & np.isfinite(after)
            for k in range(length):
                x = c[1 + k : n - length + k]
                hit &= far(x, before) & far(x, after)
            for k in range(length):
                bad[1 + k : n - length + k] |= hit
    return bad


def _spikes(key: PartitionKey, table: pa.Table, problems: list[Problem]) -> None:
    """Bad ticks: runs of 1 to :data:`SPIKE_RUN` bars whose closes are :data:`SPIKE_FACTOR` times
    away from the closes on both sides of the run (:func:`spike_runs`; a whole bar stored x1000:
    an error; a real move does not come back within a few bars), and wicks :data:`WICK_FACTOR`
    times beyond the bar's body (a warning: the data is kept as recorded, but the engine checks
    liquidations against highs and lows, so a run that covers the bar is stopped by its data
    check unless allowed)."""
    names = set(table.column_names)
    if not {"open", "high", "low", "close"} <= names or len(table) < 2:
        return
    t = table.column("time").cast(pa.int64()).to_numpy()
    o, h, lo, c = (
        table.column(n).to_numpy(zero_copy_only=False).astype(float) for n in ("open", "high", "low", "close")
    )
    bad = spike_runs(c)
    with np.errstate(invalid="ignore"):
        wick = np.flatnonzero((h > WICK_FACTOR * np.maximum(o, c)) | (lo * WICK_FACTOR < np.minimum(o, c)))
    if bad.any():
        edges = np.diff(np.concatenate([[0], bad.astype(np.int8), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)  # run = starts[j] .. ends[j] - 1

        def run(i: int, j: int) -> str:
            closes = ", ".join(f"{x:.6g}" for x in c[i:j])
            span = _short(t[i]) if j - i == 1 else f"{_short(t[i])} .. {_short(t[j - 1])}"
            return f"{span} close{'s' if j - i > 1 else ''} {closes} between {c[i - 1]:.6g} and {c[j]:.6g}"

        listed = ", ".join(run(int(i), int(j)) for i, j in zip(starts[:MAX_LISTED], ends[:MAX_LISTED]))
        more = f", and {len(starts) - MAX_LISTED} more" if len(starts) > MAX_LISTED else ""
        problems.append(
            Problem(
                "error",
                str(key),
                "price_spike",
                f"{int(bad.sum())} bar(s) in {len(starts)} run(s) of 1 to {SPIKE_RUN} bars whose close is over "
                f"{SPIKE_FACTOR:g}x away from the closes on both sides of the run, which are within "
                f"{SPIKE_FACTOR:g}x of each other (a bad tick or a unit error, not a move): {listed}{more}",
                _iso(t[starts[0]]),
                len(starts),
            )
        )
    if wick.size:
        listed = ", ".join(
            f"{_short(t[i])} high {h[i]:.6g} low {lo[i]:.6g} for open {o[i]:.6g} close {c[i]:.6g}"
            for i in wick[:MAX_LISTED]
        )
        problems.append(
            Problem(
                "warning",
                str(key),
                "price_wick",
                f"{wick.size} bar(s) with a high or low over {WICK_FACTOR:g}x beyond the bar's open/close (a bad "
                f"tick? liquidations are checked against highs and lows): {listed}",
                _iso(t[wick[0]]),
                int(wick.size),
            )
        )


def _funding_checks(key: PartitionKey, table: pa.Table, problems: list[Problem]) -> None:
    series = str(key)
    t = table.column("time").cast(pa.int64()).to_numpy()
    rate = table.column("rate").to_numpy()
    hours = table.column("interval_hours").to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(np.abs(rate) > FUNDING_RATE_LIMIT)
    if bad.size:
        listed = ", ".join(f"{_short(t[i])} rate {rate[i]:.6g}" for i in bad[:MAX_LISTED])
        problems.append(
            Problem(
                "error",
                series,
                "funding_outlier",
                f"{bad.size} settlements with |rate| > {FUNDING_RATE_LIMIT} per interval (beyond any "
                f"exchange cap; percent instead of fraction?): {listed}",
                _iso(t[bad[0]]),
                int(bad.size),
            )
        )
    median = float(np.median(np.abs(rate))) if len(rate) >= 10 else 0.0
    if median > FUNDING_MEDIAN_LIMIT:
        problems.append(
            Problem(
                "error",
                series,
                "funding_scale",
                f"the median |rate| is {median:.6g} per interval over {len(rate)} settlements, beyond "
                f"{FUNDING_MEDIAN_LIMIT} (real medians are about 0.0001): stored in percent or bps instead of "
                f"a fraction? x{median / 1e-4:.0f} the usual level",
                _iso(t[0]),
                len(rate),
            )
        )
    with np.errstate(invalid="ignore"):
        h_ms = (hours * _MS_H).astype(np.float64)
        known = np.isfinite(h_ms) & (h_ms >= 2 * _MS_H) & (h_ms <= 24 * _MS_H)
    if known.sum() >= 10:
        phase = (t[known] % h_ms[known].astype(np.int64)) // _MS_H
        off_sched = np.flatnonzero(phase != 0)
        if off_sched.size * 2 > known.sum():
            shift = int(np.bincount(phase[off_sched].astype(np.int64)).argmax())
            problems.append(
                Problem(
                    "error",
                    series,
                    "funding_schedule",
                    f"{off_sched.size} of {int(known.sum())} settlements fall off their interval's UTC schedule "
                    f"(every venue settles at 00:00 + k x interval; these sit {shift}h later, first "
                    f"{_short(t[known][off_sched[0]])}): times in another timezone? shift them by {-shift:+d}h",
                    _iso(t[known][off_sched[0]]),
                    int(off_sched.size),
                )
            )
    off = np.flatnonzero(t % _MS_H)
    if off.size:
        problems.append(
            Problem(
                "warning",
                series,
                "funding_off_hour",
                f"{off.size} settlement times not on the hour, first {_iso(t[off[0]])}",
                _iso(t[off[0]]),
                int(off.size),
            )
        )
    unknown = np.flatnonzero(np.isnan(hours))
    if unknown.size:
        problems.append(
            Problem(
                "warning",
                series,
                "funding_interval_unknown",
                f"{unknown.size} settlements without interval_hours",
                _iso(t[unknown[0]]),
                int(unknown.size),
            )
        )
    if len(t) > 1:
        gap_h = np.diff(t) / _MS_H
        with np.errstate(invalid="ignore"):
            irregular = np.flatnonzero(~np.isclose(gap_h, hours[1:]) & ~np.isnan(hours[1:]))
        if irregular.size:
            listed = ", ".join(
                f"{gap_h[i]:g}h before {_short(t[i + 1])} (interval {hours[i + 1]:g}h)" for i in irregular[:MAX_LISTED]
            )
            more = f", and {irregular.size - MAX_LISTED} more" if irregular.size > MAX_LISTED else ""
            problems.append(
                Problem(
                    "warning",
                    series,
                    "funding_spacing",
                    f"{irregular.size} settlement gaps differ from the interval (missing settlements): {listed}{more}",
                    _iso(t[irregular[0] + 1]),
                    int(irregular.size),
                )
            )


def _pair_checks(
    spot_key: PartitionKey, spot: pa.Table, perp_key: PartitionKey, perp: pa.Table, problems: list[Problem]
) -> None:
    series = f"{perp_key} vs {spot_key.symbol}"
    step = timeframe_minutes(perp_key.timeframe) * 60_000
    ts = spot.column("time").cast(pa.int64()).to_numpy()
    tp = perp.column("time").cast(pa.int64()).to_numpy()
    if not len(ts) or not len(tp):
        return
    phase_s, phase_p = np.unique(ts % step), np.unique(tp % step)
    if len(phase_s) == 1 and len(phase_p) == 1 and phase_s[0] != phase_p[0]:
        problems.append(
            Problem(
                "error",
                series,
                "misaligned",
                f"spot and perp bars are on different {perp_key.timeframe} grids "
                f"(spot offset {phase_s[0] // 60_000} min, perp {phase_p[0] // 60_000} min)",
            )
        )
        return
    common, i_s, i_p = np.intersect1d(ts, tp, assume_unique=True, return_indices=True)
    overlap = (max(ts[0], tp[0]), min(ts[-1], tp[-1]))
    if overlap[1] >= overlap[0] and not len(common):
        problems.append(
            Problem(
                "error",
                series,
                "misaligned",
                "spot and perp overlap in time but share no bar timestamps",
                _iso(overlap[0]),
            )
        )
        return
    if not len(common):
        return
    mult = split_multiplier(split_symbol(perp_key.symbol)[0])[1]
    basis = perp.column("close").to_numpy()[i_p] / (mult * spot.column("close").to_numpy()[i_s]) - 1.0
    median = float(np.median(basis))
    if abs(median) > BASIS_LIMIT:
        problems.append(
            Problem(
                "error",
                series,
                "basis_divergence",
                f"perp/spot - 1 has median {median:+.2%} over {len(common)} common bars (limit "
                f"{BASIS_LIMIT:.0%}): wrong symbol, multiplier ({mult}x assumed) or price unit?",
                _iso(common[0]),
                len(common),
            )
        )
        return
    bad = np.flatnonzero(np.abs(basis) > BASIS_LIMIT)
    if bad.size:
        worst = int(bad[np.argmax(np.abs(basis[bad]))])
        problems.append(
            Problem(
                "warning",
                series,
                "basis_divergence",
                f"{bad.size} of {len(common)} bars with |perp/spot - 1| > {BASIS_LIMIT:.0%} "
                f"(first {_short(common[bad[0]])}, worst {basis[worst]:+.2%} at {_short(common[worst])})",
                _iso(common[bad[0]]),
                int(bad.size),
            )
        )


def check_series(
    series: Mapping[PartitionKey, SeriesData],
    only: Collection[PartitionKey] | None = None,
    root: Path | str | None = None,
) -> list[Problem]:
    """The per-series and spot/perp checks of :func:`check_catalog`, on given series.

    Parameters
    ----------
    series:
        Each series' data: its Parquet year files (oldest first; each file is checked raw and
        its rows against its ``year=YYYY`` name) or one table (a :class:`pyarrow.Table`).
    only:
        Report only the problems of these series (and of the spot/perp pairs where one of them
        takes part); the other series of ``series`` serve as the other side of a pair.
        ``None`` reports every series.
    root:
        The catalog folder, named in messages about bad timeframe folders.

    Returns
    -------
    list of Problem
        As :func:`check_catalog` (without its leftover checks).
    """
    problems: list[Problem] = []
    tables: dict[PartitionKey, pa.Table] = {}
    wanted = None if only is None else set(only)
    for key, data in series.items():
        own = wanted is None or key in wanted
        sink = problems if own else []
        table = _load_series(key, data, sink)
        if table is None or not len(table):
            continue
        if key.kind.is_bar:
            try:
                timeframe_minutes(key.timeframe)
            except ConfigError as exc:
                where = key.directory(Path(root)) if root is not None else str(key)
                sink.append(Problem("error", str(key), "invalid", f"{where}: {exc}"))
                continue
        tables[key] = table
        if not own:
            continue
        if key.kind.is_bar:
            _gaps(key, table.column("time").cast(pa.int64()).to_numpy(), problems)
            if key.kind is not Kind.PREMIUM:  # premium-index bars are fractions around 0, not prices
                _spikes(key, table, problems)
        elif key.kind is Kind.FUNDING:
            _funding_checks(key, table, problems)
    for key, table in tables.items():
        if key.kind is not Kind.PERP:
            continue
        spot_key = PartitionKey(key.venue, Kind.SPOT, spot_symbol_safe(key.symbol), key.timeframe)
        if spot_key in tables and (wanted is None or key in wanted or spot_key in wanted):
            _pair_checks(spot_key, tables[spot_key], key, table, problems)
    return problems


def _leftover_problems(catalog: Catalog) -> list[Problem]:
    """Leftovers of interrupted writes (errors; warnings while their ingest still runs), and
    what opening the catalog recovered (warnings)."""
    root = Path(catalog.root)
    out = [Problem("warning", str(root), "recovered", note) for note in getattr(catalog, "recovered", [])]
    for lo in catalog.leftovers():
        if lo.live:
            out.append(
                Problem(
                    "warning",
                    str(root),
                    "leftover",
                    f"{lo.path}: an ingest is writing to this catalog now (its {lo.what}); the committed "
                    "series are consistent: check again when it has finished",
                )
            )
            continue
        what = {
            "journal": "the commit journal of an ingest killed while committing: some of its files are in place, "
            "others not; opening the catalog with write access finishes the commit (run carry data check again "
            "as a user who can write the folder)",
            "staging": "the staging folder of an ingest that was interrupted before committing (none of its data "
            "is in the catalog); opening the catalog with write access removes it (or delete the folder), then "
            "run that ingest again",
            "tmp": "a stray temporary file of an interrupted write; the catalog's own files are intact: delete it",
        }[lo.what]
        out.append(Problem("error", str(root), "leftover", f"{lo.path}: {what}"))
    return out


def check_catalog(catalog: Catalog, symbols: list[str] | None = None) -> list[Problem]:
    """Check every series of ``catalog`` (or only ``symbols``) and list the problems found.

    Parameters
    ----------
    catalog:
        The catalog to check.
    symbols:
        Canonical symbols to check (``["BTCUSDT", "PEPEUSDT"]``; a spot symbol also selects
        its multiplied perp). ``None`` checks every series.

    Returns
    -------
    list of Problem
        Errors: unreadable or invalid files, duplicates, non-monotonic times, NaN or
        non-positive prices, OHLC inconsistencies, spot/perp bars on different grids or
        systematically apart (median ``|perp/(m*spot) - 1| > 10%``, ``m`` the contract
        multiplier), funding rates beyond +/-0.03 per interval, and leftovers of interrupted
        writes (``leftover``: a commit journal, a staging folder, a stray ``*.tmp`` file; see
        :class:`data.catalog.Catalog`). Warnings: missing bars (gaps, the first few listed),
        bars off the timeframe grid, isolated spot/perp divergences above 10%, funding times
        not on the hour, settlement gaps that differ from the interval (missing settlements),
        unknown intervals, the leftovers of an ingest still running, and what opening the
        catalog recovered (``recovered``: an interrupted commit finished or rolled back).
        The series are read in one committed state (:meth:`Catalog.reading`).
    """
    root = Path(catalog.root)
    if not root.exists():
        raise DataError(f"catalog {root} does not exist")
    if not root.is_dir():
        raise DataError(f"{root} is a file, not a catalog folder (carry data ingest ... --out FOLDER writes one)")
    with catalog.reading():
        problems = _leftover_problems(catalog)
        keys = list(catalog.keys())
        if not keys:  # a check that passes on nothing would say "no problems" about nothing
            if any(p.check == "leftover" for p in problems):
                return problems
            raise DataError(
                f"{root} holds no catalog series (no venue=.../kind=... folders): "
                "is it a catalog? carry data ingest ... --out FOLDER writes one"
            )
        selected = select_symbols(catalog, keys, symbols)
        files = {k: catalog.files(k) for k in selected}
        # the same files checked by the same code before: their problems from the cache
        problems += cached_problems(files, Problem, lambda: check_series(files, root=root))
    return problems


#: Every check name :func:`check_catalog` reports.
CHECKS = (
    "unreadable",
    "invalid",
    "duplicates",
    "non_monotonic",
    "nan",
    "non_positive_price",
    "ohlc",
    "wrong_partition",
    "gaps",
    "off_grid",
    "misaligned",
    "basis_divergence",
    "funding_outlier",
    "funding_scale",
    "funding_schedule",
    "price_spike",
    "price_wick",
    "funding_off_hour",
    "funding_spacing",
    "funding_interval_unknown",
    "leftover",
    "recovered",
)
#: The checks that can report an error on a series: what an ingest may be told to allow.
ERROR_CHECKS = (
    "unreadable",
    "invalid",
    "duplicates",
    "non_monotonic",
    "nan",
    "non_positive_price",
    "ohlc",
    "misaligned",
    "basis_divergence",
    "funding_outlier",
    "funding_scale",
    "funding_schedule",
    "price_spike",
)
#: The column a check's message is about, where the message does not name it.
_CHECK_COLUMN = {
    "funding_outlier": "rate",
    "funding_scale": "rate",
    "funding_schedule": "time",
    "price_spike": "close",
    "basis_divergence": "close",
    "misaligned": "time",
    "duplicates": "time",
    "non_monotonic": "time",
}


def problem_column(problem: Problem) -> str | None:
    """The column ``problem`` is about: named in its message (``column 'rate'``), else the
    column its check reads (``rate`` for the funding checks, ``close`` for price spikes and
    spot/perp divergences, ``time`` for schedules and duplicates); None for a whole file."""
    named = re.search(r"column '(\w+)'", problem.message)
    return named.group(1) if named else _CHECK_COLUMN.get(problem.check)


def locate(catalog: Catalog, problem: Problem) -> str:
    """Where ``problem`` (of :func:`check_catalog` on ``catalog``) sits: the column, then the
    catalog file (relative to its root) holding its first occurrence and the row in that file,
    e.g. ``column 'rate', first in venue=binance/kind=funding/symbol=BTCUSDT/year=2019.parquet
    row 212``; for a spot/perp pair, the perp's file. Without a time, the series' files. ""
    when the problem is not about one stored series (a leftover, a folder)."""
    series = problem.series.split(" vs ", 1)[0]
    key = next((k for k in catalog.keys() if str(k) == series), None)
    column = problem_column(problem)
    parts = [f"column {column!r}"] if column else []
    if key is None:
        return ", ".join(parts)
    files = catalog.files(key)
    root = Path(catalog.root)
    if problem.time is not None and files:
        ms = int(np.datetime64(problem.time.removesuffix("Z"), "ms").astype(np.int64))
        year = int(np.datetime64(ms, "ms").astype("datetime64[Y]").astype(np.int64)) + 1970
        named = [f for f in files if f.name == f"year={year}.parquet"]
        if named:
            where = f"first in {named[0].relative_to(root)}"
            try:
                t = pq.read_table(named[0], columns=["time"]).column("time")
                times = t.cast(pa.timestamp("ms", tz=t.type.tz), safe=False).cast(pa.int64()).to_numpy()
                row = np.flatnonzero(times == ms)
                where += f" row {int(row[0])}" if row.size else ""
            except (pa.ArrowException, OSError, KeyError):
                pass
            return ", ".join([*parts, where])
    if files:
        shown = ", ".join(str(f.relative_to(root)) for f in files[:3])
        parts.append(f"in {shown}" + (f" (and {len(files) - 3} more)" if len(files) > 3 else ""))
    return ", ".join(parts)


def allowed_checks(allow: Iterable[str] | str | None) -> frozenset[str]:
    """``allow`` (names of error checks, or one comma-separated string) as a set; an unknown
    name, or a check that is never an error, is a :class:`ConfigError` with a hint."""
    if allow is None:
        return frozenset()
    names = [s.strip() for s in allow.split(",")] if isinstance(allow, str) else [str(s).strip() for s in allow]
    out = set()
    for name in filter(None, names):
        if name in ERROR_CHECKS:
            out.add(name)
        elif name in CHECKS:
            raise ConfigError(
                f"allow_errors: {name!r} is never an error at ingest (a warning, or not a series check), so there "
                f"is nothing to allow; the error checks are {', '.join(ERROR_CHECKS)}"
            )
        else:
            raise unknown_name("error check in allow_errors", name, ERROR_CHECKS)
    return frozenset(out)


def _pair_keys(txn: Transaction, written: list[PartitionKey]) -> list[PartitionKey]:
    """The other side of each spot/perp pair a written series is part of."""
    stored = list(txn.catalog.keys())
    out: list[PartitionKey] = []
    for key in written:
        if key.kind is Kind.PERP:
            out.append(PartitionKey(key.venue, Kind.SPOT, spot_symbol_safe(key.symbol), key.timeframe))
        elif key.kind is Kind.SPOT:
            out += [
                k
                for k in [*stored, *written]
                if k.kind is Kind.PERP
                and k.venue == key.venue
                and k.timeframe == key.timeframe
                and spot_symbol_safe(k.symbol) == key.symbol
            ]
    return [k for k in dict.fromkeys(out) if k not in written]


def verify_transaction(txn: Transaction, allow: Iterable[str] | str | None = ()) -> list[Problem]:
    """Run :func:`check_catalog`'s series checks on the series ``txn`` writes, as they will be
    after its commit (stored rows and new rows), before the commit.

    Errors whose check is in ``allow`` are recorded in the series' :class:`~data.catalog.WriteReport`
    (``overridden``) and returned; any other error raises :class:`DataError` naming the source
    file(s), the series, the check, the column and the first time, and how to allow it; the
    transaction is then not committed. Warnings (gaps, missing settlements) pass.
    """
    allowed = allowed_checks(allow)
    written = txn.keys()
    if not written:
        return []
    series: dict[PartitionKey, SeriesData] = {k: txn.files(k) for k in written}
    for k in _pair_keys(txn, written):
        files = txn.files(k)
        if files:
            series[k] = files
    problems = check_series(series, only=written, root=txn.catalog.root)
    errors = [p for p in problems if p.severity == "error"]
    blocked = [p for p in errors if p.check not in allowed]
    if blocked:
        p = blocked[0]
        key = next(iter(_written_keys_of(txn, p)), written[0])
        sources = txn.sources.get(key, [])
        source = "; ".join(sources) if sources else str(txn.catalog.root)
        column = _CHECK_COLUMN.get(p.check)
        col = f"column {column!r}: " if column and f"'{column}'" not in p.message else ""
        at = f" (first at {p.time})" if p.time else ""
        more = f"; {len(blocked) - 1} more error(s) in this ingest" if len(blocked) > 1 else ""
        raise DataError(
            f"{source}: {p.series}: check {p.check!r} failed: {col}{p.message}{at}{more}. Nothing was written. "
            f"If the data is right, allow it: allow_errors=('{p.check}',) (carry data ingest ... "
            f"--allow-errors {p.check})"
        )
    for p in errors:
        for key in _written_keys_of(txn, p)[:1]:
            report = txn.report_for(key)
            if report is not None:
                report.overridden.append(f"{p.check}: {p.message}" + (f" (first at {p.time})" if p.time else ""))
    return errors


def _written_keys_of(txn: Transaction, p: Problem) -> list[PartitionKey]:
    """The written series ``p`` is about: the series itself, or of a spot/perp pair
    (``venue/perp/tf/SYMBOL vs SPOT``) the perp first, then the spot."""
    names = [p.series]
    if " vs " in p.series:
        perp, spot = p.series.split(" vs ", 1)
        parts = perp.split("/")
        names = [perp] + ([f"{parts[0]}/spot/{parts[2]}/{spot}"] if len(parts) == 4 else [])
    by_name = {str(k): k for k in txn.keys()}
    return [by_name[n] for n in names if n in by_name]


@dataclass(frozen=True)
class IngestChecks:
    """The verification step of an ingest's transaction (:func:`ingest_checks`): calling it runs
    :func:`verify_transaction` with the ``allowed`` check names. A value, not a closure: two
    ingests that join one transaction with the same allowed checks add one verification
    (:meth:`data.catalog.Catalog.transaction` skips an equal verifier), so the staged series
    are checked once at the commit, not once per ingest."""

    allowed: frozenset[str]

    def __call__(self, txn: Transaction) -> None:
        verify_transaction(txn, self.allowed)


def ingest_checks(allow: Iterable[str] | str | None = ()) -> IngestChecks:
    """The verification step of an ingest's transaction: ``catalog.transaction(verify=
    ingest_checks(allow))``. ``allow`` is checked now, so a misspelt name fails before any
    file is read; see :func:`verify_transaction`."""
    return IngestChecks(allowed_checks(allow))


def spot_symbol_safe(symbol: str) -> str:
    """:func:`data.symbols.spot_symbol`, or ``symbol`` itself for an unknown quote."""
    try:
        return spot_symbol(symbol)
    except ConfigError:
        return symbol


# --------------------------------------------------------------------------- formatting
def _table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join(lines)


def format_info(rows: list[dict]) -> str:
    """Plain-text table of :func:`catalog_info` rows (times in UTC)."""
    if not rows:
        return "catalog is empty"
    out = []
    for r in rows:
        if "error" in r:
            extra = "ERROR: " + r["error"]
        elif r["kind"] == "funding":
            iv = ", ".join(f"{k} x{v}" for k, v in r.get("intervals", {}).items())
            extra = f"sum {r['rate_sum']:+.8f}; intervals {iv}"
        else:
            extra = f"{r.get('missing_bars', 0)} missing bars" if r.get("missing_bars") else ""
        out.append(
            [
                r["venue"],
                r["kind"],
                r["timeframe"] or "-",
                r["symbol"],
                str(r["rows"]),
                (r["first"] or "-").replace("T", " ").removesuffix("Z"),
                (r["last"] or "-").replace("T", " ").removesuffix("Z"),
                str(r["files"]),
                extra,
            ]
        )
    return _table(["venue", "kind", "tf", "symbol", "rows", "first (UTC)", "last (UTC)", "files", "notes"], out)


def format_problems(problems: list[Problem], max_per_check: int = MAX_LISTED) -> str:
    """Plain-text table of :func:`check_catalog` problems, errors first, with a summary line.

    Problems of the same series and check (e.g. each gap of a series) are listed up to
    ``max_per_check`` times, then summarised in one line (how many more, how many rows).
    """
    if not problems:
        return "no problems found"
    n_err = sum(p.severity == "error" for p in problems)
    summary = f"{n_err} error(s), {len(problems) - n_err} warning(s)"
    ordered = sorted(problems, key=lambda p: (p.severity != "error", p.series, p.check, p.time or ""))
    rows: list[list[str]] = []
    seen: dict[tuple[str, str, str], int] = {}
    for p in ordered:
        group = (p.severity, p.series, p.check)
        seen[group] = seen.get(group, 0) + 1
        if seen[group] <= max_per_check:
            rows.append([p.severity, p.series, p.check, str(p.count), p.message])
    for group, n in seen.items():
        if n > max_per_check:
            rest = [p for p in ordered if (p.severity, p.series, p.check) == group][max_per_check:]
            at = next(i for i, r in enumerate(rows) if tuple(r[:3]) == group) + max_per_check
            rows.insert(
                at,
                [
                    group[0],
                    group[1],
                    group[2],
                    str(sum(p.count for p in rest)),
                    f"... and {len(rest)} more ({group[2]}; count is their total)",
                ],
            )
    return _table(["severity", "series", "check", "count", "message"], rows) + "\n" + summary

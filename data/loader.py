"""Turn a catalog into an aligned :class:`~data.market.Market` for the engine.

:func:`load_market` reads spot, perp, mark and funding series per symbol, puts them on one
common UTC bar grid, resamples to a coarser bar if asked (``1h -> 4h, 1d``) without losing a
single funding settlement, and applies an explicit gap policy. Everything it fills or falls
back on is marked in the market's masks and listed in ``Market.notes``; nothing is silent.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from enum import Enum
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data.catalog import Catalog, PartitionKey, file_time_bounds
from data.errors import ConfigError, DataError, did_you_mean, unknown_name
from data.market import NO_FUNDING_TIME, PRICE_FIELDS, Market
from data.schema import Kind, timeframe_minutes
from data.symbols import perp_candidates, split_symbol, spot_symbol
from data.units import to_ms

_MS_PER_MIN = 60_000


class DataWarning(UserWarning):
    """Data was filled, replaced by a fallback, or is otherwise not exactly as recorded."""


class GapPolicy(str, Enum):
    """What to do with missing bars inside a series' coverage."""

    ERROR = "error"  #: raise DataError naming the symbol, the series and the first gap
    FFILL = "ffill"  #: forward-fill flat bars at the last close, up to ``max_fill_bars``

    @classmethod
    def _missing_(cls, value: object) -> GapPolicy:
        """An unknown policy is an ``UnknownNameError`` naming ``gaps`` with a did-you-mean hint."""
        if isinstance(value, str):
            for p in cls:
                if p.value == value.strip().lower():
                    return p
        raise unknown_name("gap policy (gaps=)", value, [p.value for p in cls])


class FundingGapPolicy(str, Enum):
    """What to do where settlements are missing inside a symbol's funding span (a *hole*: two
    settlements further apart than the interval in force), e.g. 167 days of ENA in 2025."""

    ERROR = "error"  #: raise DataError naming the symbol, the series and the hole (default)
    NO_TRADE = "no_trade"  #: hold no position through the hole (Market.tradable False there)
    ZERO = "zero"  #: count the missing settlements as zero; Market.data_flags gets "funding_gap_zero"

    @classmethod
    def _missing_(cls, value: object) -> FundingGapPolicy:
        """An unknown policy is an ``UnknownNameError`` naming ``funding_gaps`` with a did-you-mean hint."""
        if isinstance(value, str):
            for p in cls:
                if p.value == value.strip().lower().replace("-", "_"):
                    return p
        raise unknown_name("funding gap policy (funding_gaps=)", value, [p.value for p in cls])


class _Plan(NamedTuple):
    """Where one symbol's series come from."""

    canonical: str  #: the spot pair name, e.g. PEPEUSDT
    perp_symbol: str  #: the exchange's perp, e.g. 1000PEPEUSDT
    multiplier: int  #: coins per perp price unit (1000)
    src_minutes: int  #: the stored timeframe the bars are built from
    keys: dict[str, PartitionKey | None]  #: spot, perp and mark (None: no mark data) bars
    funding: PartitionKey


@dataclass(frozen=True)
class _Series:
    """One bar series on the source grid: float arrays of length T_src, NaN where missing."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    present: np.ndarray  # bool: a real bar exists
    filled: np.ndarray  # bool: forward-filled bar


def _minutes_or_none(label: str) -> int | None:
    """Minutes of a stored timeframe directory's label; None for a label that is not one."""
    try:
        return timeframe_minutes(label)
    except ConfigError:
        return None


def _timeframes(catalog: Catalog, venue: str, symbol: str, kind: Kind, freq_min: int) -> list[str]:
    """Timeframes stored for a series that divide the requested bar length."""
    base = catalog.root / f"venue={venue}" / f"kind={kind.value}"
    out = []
    for tdir in base.glob("timeframe=*"):
        tf = tdir.name.split("=", 1)[1]
        m = _minutes_or_none(tf)
        if m is None:
            continue
        if freq_min % m == 0 and (tdir / f"symbol={symbol}").is_dir():
            out.append(tf)
    return out


def _place(table: pa.Table, t0: int, step: int, n: int, source: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Positions of a bar table's rows on the grid ``t0 + k*step`` (rows off the grid are an error)."""
    t = table.column("time").cast(pa.int64()).to_numpy()
    inside = (t >= t0) & (t < t0 + n * step)
    t = t[inside]
    off = (t - t0) % step
    if off.any():
        bad = int(np.flatnonzero(off)[0])
        raise DataError(
            f"{source}: bar at {pd.Timestamp(int(t[bad]), unit='ms', tz='UTC')} is not on the "
            f"{step // _MS_PER_MIN}-minute grid (bars must be stamped at their open)"
        )
    pos = (t - t0) // step
    cols = {c: table.column(c).to_numpy(zero_copy_only=False)[inside] for c in table.column_names if c != "time"}
    return pos.astype(np.int64), cols


def _read_bars(catalog, key, t0, step, n, lo, hi) -> _Series | None:
    if not catalog.has(key):
        return None
    table = catalog.read(key, np.datetime64(lo, "ms"), np.datetime64(hi, "ms"))
    pos, cols = _place(table, t0, step, n, str(key))
    out = {}
    for name in ("open", "high", "low", "close", "volume"):
        a = np.full(n, np.nan)
        if name in cols:
            a[pos] = cols[name]
        elif name == "volume":
            a[pos] = 0.0
        out[name] = a
    present = np.zeros(n, dtype=bool)
    present[pos] = True
    return _Series(**out, present=present, filled=np.zeros(n, dtype=bool))


def _gaps(present: np.ndarray) -> list[tuple[int, int]]:
    """Interior runs of missing bars as (first, length), between the first and last real bar."""
    idx = np.flatnonzero(present)
    if idx.size < 2:
        return []
    d = np.diff(idx)
    at = np.flatnonzero(d > 1)
    return [(int(idx[j] + 1), int(d[j] - 1)) for j in at]


def _apply_gap_policy(
    series: _Series, label: str, policy: GapPolicy, max_fill: int, times_ms, notes: list[str]
) -> _Series:
    gaps = _gaps(series.present)
    if not gaps:
        return series

    def when(i):
        return pd.Timestamp(int(times_ms[i]), unit="ms", tz="UTC")

    if policy is GapPolicy.ERROR:
        first, length = gaps[0]
        raise DataError(
            f"{label}: {len(gaps)} gap(s) in the data, the first {length} bar(s) missing from "
            f"{when(first)}; pass gaps='ffill' to forward-fill gaps up to max_fill_bars, or repair the source"
        )
    o, h, l, c, v = (a.copy() for a in (series.open, series.high, series.low, series.close, series.volume))
    filled = series.filled.copy()
    long_gaps = []
    for first, length in gaps:
        if length > max_fill:
            long_gaps.append((first, length))
            continue
        prev = c[first - 1]
        sl = slice(first, first + length)
        o[sl] = h[sl] = l[sl] = c[sl] = prev
        v[sl] = 0.0
        filled[sl] = True
    n_filled = sum(n for _, n in gaps if n <= max_fill)
    if n_filled:
        notes.append(f"{label}: forward-filled {n_filled} missing bar(s) in {len(gaps) - len(long_gaps)} gap(s)")
    for first, length in long_gaps:
        notes.append(
            f"{label}: gap of {length} bars from {when(first)} exceeds max_fill_bars={max_fill}; "
            "bars left invalid (no trading there)"
        )
    return _Series(o, h, l, c, v, series.present, filled)


def _resample(a: np.ndarray, k: int, how: str) -> np.ndarray:
    if k == 1:
        return a
    r = a.reshape(-1, k)
    if how == "first":
        return r[:, 0]
    if how == "last":
        return r[:, -1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if how == "max":
            return np.max(r, axis=1)
        if how == "min":
            return np.min(r, axis=1)
        return np.sum(r, axis=1)


def _resample_series(s: _Series, k: int) -> tuple[np.ndarray, ...]:
    ok = s.present | s.filled
    all_ok = _resample(ok.astype(np.int8), k, "min").astype(bool)
    o = np.where(all_ok, _resample(s.open, k, "first"), np.nan)
    h = np.where(all_ok, _resample(s.high, k, "max"), np.nan)
    l = np.where(all_ok, _resample(s.low, k, "min"), np.nan)
    c = np.where(all_ok, _resample(s.close, k, "last"), np.nan)
    v = np.where(all_ok, _resample(np.nan_to_num(s.volume), k, "sum"), np.nan)
    any_filled = _resample(s.filled.astype(np.int8), k, "max").astype(bool)
    return o, h, l, c, v, all_ok, any_filled


def _read_times(path) -> np.ndarray:
    """The ``time`` column of one partition file (int64 ms); ``DataError`` naming the file if unreadable."""
    try:
        return pq.read_table(path, columns=["time"]).column("time").cast(pa.int64()).to_numpy()
    except (pa.ArrowException, OSError, KeyError) as exc:
        raise DataError(
            f"{path}: cannot read the 'time' column ({exc}); the file may be truncated or corrupt"
        ) from None


def _time_bounds(path) -> tuple[int, int] | None:
    """First and last time (ms) of a partition file: from its footer statistics, else read."""
    bounds = file_time_bounds(path)
    if bounds is not None:
        return bounds
    t = _read_times(path)
    return (int(t[0]), int(t[-1])) if t.size else None


def _ts(ms: int | np.integer) -> str:
    """A UTC instant as ``2025-07-17 12:00``."""
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").strftime("%Y-%m-%d %H:%M")


def funded_interval(
    first_ms: int, first_hours: float, last_ms: int, last_hours: float, data_end_ms: int | None = None
) -> tuple[float, float]:
    """``(lo, hi)`` in ms: the settlements a position held over ``(a, b]`` receives are known
    for ``lo <= a`` and ``b <= hi`` (the rule of :func:`funding_span`, from the first and last
    settlement and their intervals in hours, NaN = unknown)."""
    lo = float(first_ms) - (float(first_hours) * 3_600_000.0 if np.isfinite(first_hours) else 0.0)
    hi = float(last_ms)
    if data_end_ms is not None and np.isfinite(last_hours):
        due = hi + float(last_hours) * 3_600_000.0  # the next settlement
        if data_end_ms < due:  # the download ended inside the last interval: nothing is missing
            hi = float(data_end_ms)
        elif data_end_ms == due:  # due at the data's end, which a bar's (open, close] holds: not in the data
            hi = float(data_end_ms) - 1.0
    return lo, hi


def funding_span(
    times_ms: np.ndarray, hours: np.ndarray, bar_open_ms: np.ndarray, bar_ms: int, data_end_ms: int | None = None
) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """Bars whose funding is known, and the holes between settlements.

    A settlement at ``t_k`` of interval ``h_k`` follows one at ``t_k - h_k``, so which
    settlements a position held over ``(a, b]`` receives is known from ``t_first - h_first``
    (``t_first`` when the interval is unknown) to ``t_last``. A bar ``[t_i, t_i + bar)`` is
    *funded* when its funding span ``(t_i, t_i + bar]`` lies inside that. The end of the data
    (``data_end_ms``, the close of the last priced bar) less than one interval after ``t_last``
    is the download's boundary, not missing funding: the bars up to it count as funded (the
    next settlement, due at ``t_last + h_last``, is after the data's end: not in the run). When
    it is due exactly at the data's end, the last bar's span holds it and the data does not:
    that bar's funding is unknown (not funded), the bars before it are funded. A *hole* is a pair of consecutive settlements further
    apart than the interval in force at the second (``interval_hours`` keeps the interval in
    force across missing settlements, see :func:`data.ingest.freqtrade.derive_interval_hours`):
    the funding over ``(t_k, t_{k+1} - h_{k+1}]`` is unknown.

    Parameters
    ----------
    times_ms, hours:
        Sorted settlement times (int64 ms UTC) and their intervals (hours, NaN = unknown).
    bar_open_ms, bar_ms:
        Bar open times (int64 ms UTC) and the bar length (ms).

    Returns
    -------
    (funded, holes)
        ``funded``: (T,) bool. ``holes``: ``(start_ms, end_ms, n_missing)`` per hole that
        overlaps a funded bar, the unknown span ``(start, end]`` and the settlements missing in it.
    """
    funded = np.zeros(len(bar_open_ms), dtype=bool)
    if not len(times_ms):
        return funded, []
    h_ms = np.asarray(hours, dtype=float) * 3_600_000.0
    first, last = funded_interval(int(times_ms[0]), hours[0], int(times_ms[-1]), hours[-1], data_end_ms)
    funded = (bar_open_ms >= first) & (bar_open_ms + bar_ms <= last)
    gap = np.diff(times_ms).astype(float)
    with np.errstate(invalid="ignore"):
        at = np.flatnonzero(np.isfinite(h_ms[1:]) & (gap > h_ms[1:] + 60_000.0))
    holes = []
    for k in at:
        lo, hi = int(times_ms[k]), int(times_ms[k + 1] - h_ms[k + 1])
        if (funded & (bar_open_ms + bar_ms > lo) & (bar_open_ms < hi)).any():
            holes.append((lo, hi, int(round((hi - lo) / h_ms[k + 1]))))
    return funded, holes


def _coverage(catalog: Catalog, keys: list[PartitionKey]) -> tuple[int, int] | None:
    """First and last time (ms) over the given series, from their first and last year files."""
    lo, hi = None, None
    for key in keys:
        files = catalog.files(key)
        if not files:
            continue
        head, tail = _time_bounds(files[0]), _time_bounds(files[-1])
        if head is not None:
            lo = head[0] if lo is None else min(lo, head[0])
        if tail is not None:
            hi = tail[1] if hi is None else max(hi, tail[1])
    return None if lo is None or hi is None else (lo, hi)


def load_market(
    catalog: Catalog | str,
    symbols: list[str] | tuple[str, ...] | str,
    start=None,
    end=None,
    freq: str = "1h",
    venue: str = "binance",
    *,
    gaps: GapPolicy | str = GapPolicy.FFILL,
    max_fill_bars: int | None = None,
    require_mark: bool = False,
    funding_gaps: FundingGapPolicy | str = FundingGapPolicy.ERROR,
    run_end=None,
    spot: bool = True,
) -> Market:
    """Load an aligned :class:`Market` from a catalog.

    Parameters
    ----------
    catalog:
        A :class:`~data.catalog.Catalog` or its root directory.
    symbols:
        Canonical symbols (spot pair names such as ``"BTCUSDT"``; ``"1000PEPEUSDT"`` is
        accepted and mapped to ``"PEPEUSDT"``), a list or a comma-separated string.
    start, end:
        Optional UTC bounds (anything :class:`pandas.Timestamp` accepts; naive = UTC). Bars in
        ``[start, end)`` are kept. Default: the union of the symbols' coverage.
    freq:
        Bar length of the market (``"1h"``, ``"4h"``, ``"1d"``, ``"1m"``...). Bars are built from
        the coarsest stored timeframe that divides it and holds spot, perp and mark bars (only
        where no such timeframe exists, the coarsest with spot and perp bars, perp prices
        standing in for the mark; without spot under ``spot=False``); funding settlements are summed into the
        bar whose span ``(open, close]`` holds them (``funding_count`` says how many,
        ``funding_time_ms`` when the last one settled).
    venue:
        Venue partition to read (``"binance"``).
    gaps:
        ``"ffill"`` (default): missing bars inside a series are forward-filled flat at the last
        close for up to ``max_fill_bars`` bars, marked in ``Market.filled`` and listed in
        ``Market.notes`` (a :class:`DataWarning` is issued); longer gaps stay invalid.
        ``"error"``: any gap raises :class:`DataError` naming the series and the first gap.
    max_fill_bars:
        Longest gap to fill, in source bars (default: one day's worth).
    require_mark:
        If True a symbol without mark-price data is an error; otherwise perp last prices stand
        in for the mark (``Market.mark_fallback``) with a warning.
    funding_gaps:
        Settlements missing inside a symbol's funding span (see :func:`funding_span`):
        ``"error"`` (default) raises :class:`DataError` naming the symbol, the series and the
        hole; ``"no_trade"`` holds no position through it; ``"zero"`` counts it as zero
        funding and flags the market (``Market.data_flags``: ``"funding_gap_zero"``).
    run_end:
        The end of the whole run when this load is one time chunk of it (scale-out sweeps):
        a symbol without a tradable bar in the chunk is kept (``tradable`` all False) instead
        of raising, and a symbol whose stored prices end at the chunk's last bar closes there
        as it would in one pass over the run.
    spot:
        True (default): every symbol needs spot bars (a cash-and-carry market). False: a
        *perp-only* market, built from the perp, mark (or the perp standing in for it, as
        above) and funding series alone, for venues without spot data (Bybit here) and
        cross-venue perp pairs (:func:`data.venue_pair.load_venue_pair`). Each symbol is
        resolved from its perp bars (``"BTCUSDT"``, Hyperliquid's ``"BTCUSDC"``; a multiplied
        perp as above) at the coarsest timeframe dividing ``freq`` that holds perp and mark
        bars, else perp bars; no spot series is read, the ``spot_*`` arrays are all NaN,
        ``valid`` is perp and mark present, the tradable span below leaves spot out, and
        ``Market.data_flags`` gets ``"perp_only"`` (a result from such a market has no spot
        leg: anything needing spot prices, such as ``Market.basis``, is NaN). Gap and funding
        policies, funding placement and valuation, notes and the window are as with spot.

    Tradable span
    -------------
    A symbol is tradable only where its spot (unless ``spot=False``), perp and mark bars (or
    the announced perp stand-in for the mark) and its funding all exist: from its first to its last valid bar
    (the last one excluded when its prices end inside the window: a position is closed at
    that bar's open, the last price there is), and only on bars whose funding is known
    (:func:`funding_span`). ``Market.tradable`` says
    where; the engine holds no position outside it. Each symbol whose priced bars are cut by
    its funding span gets a note; a symbol without a single tradable bar in the window is a
    :class:`DataError` naming what each of its series covers. Settlements outside the span
    (e.g. past the last perp bar) are not used.

    Returns
    -------
    Market
        Read-only (T, N) arrays on one UTC bar grid.
    """
    catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    if not catalog.root.is_dir():
        raise DataError(f"catalog {catalog.root} does not exist; ingest data first (carry data ingest ...)")
    with catalog.reading():  # every series from one committed state, even while another process ingests
        return _load_market(
            catalog, symbols, start, end, freq, venue, gaps, max_fill_bars, require_mark, funding_gaps, run_end, spot
        )


def _load_market(
    catalog: Catalog,
    symbols,
    start,
    end,
    freq: str,
    venue: str,
    gaps: GapPolicy | str,
    max_fill_bars: int | None,
    require_mark: bool,
    funding_gaps: FundingGapPolicy | str,
    run_end,
    spot: bool = True,
) -> Market:
    """:func:`load_market` on an open catalog."""
    if isinstance(symbols, str):
        symbols = [s.strip() for s in symbols.split(",") if s.strip()]
    if not symbols:
        raise DataError("no symbols requested")
    bad = [s for s in symbols if not isinstance(s, str)]
    if bad:
        raise ConfigError(f"symbols must be strings such as 'BTCUSDT', got {bad[0]!r}")
    policy = GapPolicy(gaps)
    gap_policy = FundingGapPolicy(funding_gaps)
    freq_min = timeframe_minutes(freq, "freq")
    step_t = freq_min * _MS_PER_MIN
    start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
    run_end_ms = to_ms(run_end, "run_end")
    if max_fill_bars is not None and (
        isinstance(max_fill_bars, bool) or not isinstance(max_fill_bars, int) or max_fill_bars < 0
    ):
        raise ConfigError(f"max_fill_bars must be a whole number of bars >= 0, got {max_fill_bars!r}")
    if not isinstance(spot, bool):
        raise ConfigError(f"spot must be True or False, got {spot!r}")
    venues = sorted(d.name.split("=", 1)[1] for d in catalog.root.glob("venue=*") if d.is_dir())
    if venue not in venues:
        raise unknown_name("venue", venue, venues, f" in catalog {catalog.root}")
    notes: list[str] = []
    funding_clipped: set[str] = set()  # symbols whose note says their funding clips them

    # Resolve every symbol's series and source timeframe.
    spots = _spot_names(catalog, venue)  # 1000SATSUSDT with a spot of that name is a token, not SATS x 1000
    plans = []
    for sym in symbols:
        try:
            split_symbol(sym)
        except ConfigError as exc:
            raise DataError(f"{exc}{did_you_mean(sym, available_symbols(catalog, venue, spot=spot))}") from None
        canonical = spot_symbol(sym, spots)
        perp_names = perp_candidates(sym, spots)
        if spot:
            perp_sym, mult, src_tf = _resolve_spot_perp(catalog, venue, sym, canonical, perp_names, freq, freq_min)
        else:
            perp_sym, mult, src_tf = _resolve_perp(catalog, venue, sym, perp_names, freq, freq_min)
        mark_tf = src_tf if src_tf in _timeframes(catalog, venue, perp_sym, Kind.MARK, freq_min) else None
        src_min = timeframe_minutes(src_tf)
        keys: dict[str, PartitionKey | None] = {
            "spot": PartitionKey(venue, Kind.SPOT, canonical, src_tf) if spot else None,
            "perp": PartitionKey(venue, Kind.PERP, perp_sym, src_tf),
            "mark": PartitionKey(venue, Kind.MARK, perp_sym, mark_tf) if mark_tf else None,
        }
        funding_key = PartitionKey(venue, Kind.FUNDING, perp_sym)
        if keys["mark"] is None:
            if require_mark:
                raise DataError(
                    f"catalog {catalog.root}: no mark-price bars for {perp_sym} at {src_tf} (require_mark=True)"
                )
            notes.append(
                f"{canonical}: no mark-price data at {src_tf}; perp last prices stand in for the mark "
                "(funding is still valued at the mark where any stored mark bar opens at the settlement)"
            )
        if not catalog.has(funding_key):
            raise DataError(f"catalog {catalog.root}: no funding settlements for {perp_sym} on venue {venue}")
        plans.append(_Plan(canonical, perp_sym, mult, src_min, keys, funding_key))

    names = [p.canonical for p in plans]
    priced_by = "spot, perp and mark" if spot else "perp and mark"  # the series a bar needs to be valid
    if len(set(names)) != len(names):
        raise DataError(f"symbols map to the same market twice: {symbols}")

    # Common grid: union of the symbols' bar coverage, clipped to [start, end), aligned to freq.
    cov = _coverage(catalog, [k for p in plans for k in (p.keys["spot"], p.keys["perp"]) if k is not None])
    if start_ms is not None and end_ms is not None:
        lo, hi = start_ms, end_ms
    elif cov is None:
        raise DataError(f"catalog {catalog.root}: no bars stored for {', '.join(names)} (the files are empty)")
    else:
        lo = cov[0] if start_ms is None else start_ms
        hi = cov[1] + 1 if end_ms is None else end_ms
    t0 = (lo // step_t) * step_t
    if hi <= t0:
        raise DataError(
            f"empty time range: start {pd.Timestamp(lo, unit='ms', tz='UTC')} is not before end {pd.Timestamp(hi, unit='ms', tz='UTC')}"
        )
    n_bars = int(-(-(hi - t0) // step_t))
    chunk_of_more = run_end_ms is not None and run_end_ms > t0 + n_bars * step_t  # the run goes on after this chunk
    index = pd.DatetimeIndex(pd.to_datetime(t0 + step_t * np.arange(n_bars, dtype=np.int64), unit="ms", utc=True))
    shape = (n_bars, len(plans))

    out = {name: np.full(shape, np.nan) for name in PRICE_FIELDS}
    funding_rate = np.zeros(shape)
    funding_value = np.zeros(shape)
    funding_count = np.zeros(shape, dtype=np.int32)
    funding_hours = np.full(shape, np.nan)
    funding_time = np.full(shape, NO_FUNDING_TIME, dtype=np.int64)
    valid = np.zeros(shape, dtype=bool)
    filled = np.zeros(shape, dtype=bool)
    mark_fallback = np.zeros(shape, dtype=bool)
    tradable = np.zeros(shape, dtype=bool)
    multipliers = np.ones(len(plans), dtype=np.int64)
    bar_open = t0 + step_t * np.arange(n_bars, dtype=np.int64)
    data_flags: list[str] = []
    untradable: list[str] = []

    for j, (canonical, perp_sym, mult, src_min, keys, funding_key) in enumerate(plans):
        multipliers[j] = mult
        step = src_min * _MS_PER_MIN
        k = freq_min // src_min
        n_src = n_bars * k
        src_times = t0 + step * np.arange(n_src, dtype=np.int64)
        t_hi = t0 + n_bars * step_t
        max_fill = max_fill_bars if max_fill_bars is not None else max(1, (24 * 60) // src_min)

        def read(kind_name, scale=1.0):
            key = keys[kind_name]
            if key is None:
                return None
            if timeframe_minutes(key.timeframe) != src_min:
                raise DataError(
                    f"{canonical}: series have different timeframes ({key} vs {src_min}m); "
                    "ingest them at a common timeframe"
                )
            s = _read_bars(catalog, key, t0, step, n_src, t0, t_hi)
            s = _apply_gap_policy(s, f"{canonical} {kind_name} ({key})", policy, max_fill, src_times, notes)
            if scale != 1.0:  # perp quoted per `mult` coins -> per coin
                s = _Series(
                    s.open / scale,
                    s.high / scale,
                    s.low / scale,
                    s.close / scale,
                    s.volume * scale,
                    s.present,
                    s.filled,
                )
            return s

        sp = read("spot") if keys["spot"] is not None else _missing_series(n_src)
        perp = read("perp", float(mult))
        mark = read("mark", float(mult))
        if mark is not None:
            miss = ~(mark.present | mark.filled) & (perp.present | perp.filled)
            if miss.any():
                notes.append(f"{canonical}: {int(miss.sum())} bar(s) without mark price; perp last prices stand in")
            mk = _Series(
                **{
                    f: np.where(miss, getattr(perp, f), getattr(mark, f))
                    for f in ("open", "high", "low", "close", "volume")
                },
                present=mark.present | (miss & perp.present),
                filled=mark.filled | (miss & perp.filled),
            )
            fallback_src = miss
        else:
            mk = perp
            fallback_src = perp.present | perp.filled

        so, sh, sl, sc, sv, s_ok, s_fill = _resample_series(sp, k)
        po, ph, pl, pc, pv, p_ok, p_fill = _resample_series(perp, k)
        mo, mh, ml, mc, _, m_ok, m_fill = _resample_series(mk, k)
        for name, arr in zip(
            PRICE_FIELDS,
            (so, sh, sl, sc, sv, po, ph, pl, pc, pv, mo, mh, ml, mc),
        ):
            out[name][:, j] = arr
        valid[:, j] = (s_ok & p_ok & m_ok) if spot else (p_ok & m_ok)
        filled[:, j] = s_fill | p_fill | m_fill
        mark_fallback[:, j] = _resample(fallback_src.astype(np.int8), k, "max").astype(bool)

        # Funding: each settlement goes to the bar whose (open, close] holds it.
        ft = catalog.read(funding_key)
        times = ft.column("time").cast(pa.int64()).to_numpy()
        rate = ft.column("rate").to_numpy()
        hours = ft.column("interval_hours").to_numpy(zero_copy_only=False).astype(float)
        mark_at = ft.column("mark_price").to_numpy(zero_copy_only=False).astype(float) / mult

        # Tradable span: priced bars (first to last valid) whose funding is known.
        priced = np.flatnonzero(valid[:, j])
        data_end = int(bar_open[priced[-1]] + step_t) if priced.size else None
        funded, holes = funding_span(times, hours, bar_open, step_t, data_end)
        span = funded.copy()
        if priced.size:
            span[: priced[0]] = False
            span[priced[-1] + 1 :] = False
            if priced[-1] < n_bars - 1 or (chunk_of_more and _prices_end_at(catalog, keys, bar_open[priced[-1]])):
                # prices end inside the run: the position closes at the open of the last priced bar
                span[priced[-1]] = False  # (there is no price after it to close at)
        else:
            span[:] = False
        holes = [h for h in holes if (span & (bar_open + step_t > h[0]) & (bar_open < h[1])).any()]
        if holes and gap_policy is FundingGapPolicy.ERROR:
            lo, hi, n_miss = holes[0]
            raise DataError(
                f"{canonical}: {len(holes)} hole(s) in the funding of {perp_sym} "
                f"({funding_key.directory(catalog.root)}), the first from {_ts(lo)} to {_ts(hi)} UTC "
                f"({n_miss} settlement(s) missing, {(hi - lo) / 86_400_000:.1f} days); a backtest would count it "
                "as zero. Pass funding_gaps='no_trade' (--funding-gaps no_trade: hold no position through it) or "
                "'zero' (count it as zero, flagged), or choose --start/--end outside it"
            )
        for lo, hi, n_miss in holes:
            inside = (bar_open + step_t > lo) & (bar_open < hi)
            if gap_policy is FundingGapPolicy.NO_TRADE:
                span &= ~inside
                effect = "no position held through it"
            else:
                effect = "counted as zero funding (funding_gap_zero)"
            notes.append(
                f"{canonical}: funding missing from {_ts(lo)} to {_ts(hi)} UTC ({n_miss} settlement(s)); {effect}"
            )
        if holes and gap_policy is FundingGapPolicy.ZERO and "funding_gap_zero" not in data_flags:
            data_flags.append("funding_gap_zero")
        tradable[:, j] = span
        cut = valid[:, j] & ~funded
        if span.any():
            first, last = np.flatnonzero(span)[[0, -1]]
            if cut.any():  # clipped by its funding (by its prices alone: _price_clip_notes, on the final window)
                funding_clipped.add(canonical)
                notes.append(
                    f"{canonical}: tradable from {_ts(bar_open[first])} to {_ts(bar_open[last] + step_t)} UTC only "
                    f"(bars with {priced_by} prices {_ts(bar_open[priced[0]])} .. "
                    f"{_ts(bar_open[priced[-1]] + step_t)}; {int(cut.sum())} of them without known funding; "
                    "settlements " + (f"{_ts(times[0])} .. {_ts(times[-1])}" if len(times) else "none") + ")"
                )
        if not span.any():
            untradable.append(canonical)

        bar = -(-(times - t0) // step_t) - 1  # ceil((t - t0) / bar) - 1
        keep = (bar >= 0) & (bar < n_bars)  # a settlement at exactly t0 belongs to the bar before
        times, rate, hours, mark_at, bar = times[keep], rate[keep], hours[keep], mark_at[keep], bar[keep]
        # Mark at the settlement instant, best first: a stored mark_price; the open of any stored
        # mark bar (any timeframe) opening at that instant; the source grid's mark (or perp
        # stand-in) open there, else the close of the bar before.
        src_pos = (times - t0) // step
        at_open = (times - t0) % step == 0
        m = np.full(len(times), np.nan)
        in_grid = (src_pos >= 0) & (src_pos < n_src)
        m[in_grid & at_open] = mk.open[src_pos[in_grid & at_open]]
        need = np.isnan(m)
        prev = src_pos - at_open.astype(np.int64)
        ok_prev = need & (prev >= 0) & (prev < n_src)
        m[ok_prev] = mk.close[prev[ok_prev]]
        # (a symbol without mark bars: the stored perp bars', also past the window's last bar)
        exact = _mark_opens_at(catalog, venue, perp_sym, times, Kind.MARK if keys["mark"] else Kind.PERP) / mult
        m = np.where(np.isfinite(exact), exact, m)  # e.g. 8h mark bars where 1h ones are missing
        m = np.where(np.isnan(mark_at), m, mark_at)
        unpriced = np.isnan(m)
        if (unpriced & span[bar]).any():
            i = int(np.flatnonzero(unpriced & span[bar])[0])
            raise DataError(
                f"{canonical}: no mark or perp price at the funding settlement "
                f"{pd.Timestamp(int(times[i]), unit='ms', tz='UTC')}; cannot value it"
            )
        if unpriced.any():  # outside the tradable span (e.g. past the last perp bar): not used
            times, rate, hours, m, bar = (a[~unpriced] for a in (times, rate, hours, m, bar))
        np.add.at(funding_rate[:, j], bar, rate)
        np.add.at(funding_value[:, j], bar, rate * m)
        np.add.at(funding_count[:, j], bar, 1)
        np.maximum.at(funding_time[:, j], bar, times)  # the last settlement's instant
        funding_hours[bar, j] = hours  # last settlement of the bar wins (times are sorted)

    if untradable and run_end_ms is None:
        lines = []
        for p in plans:
            if p.canonical not in untradable:
                continue
            covers = []
            for series, key in (
                *((("spot", p.keys["spot"]),) if spot else ()),
                ("perp", p.keys["perp"]),
                ("mark", p.keys["mark"]),
                ("funding", p.funding),
            ):
                c = _coverage(catalog, [key]) if key is not None else None
                covers.append(f"{series} " + (f"{_ts(c[0])[:10]}..{_ts(c[1])[:10]}" if c else "none"))
            lines.append(f"{p.canonical} ({', '.join(covers)})")
        raise DataError(
            f"no tradable bar from {_ts(t0)} to {_ts(t0 + n_bars * step_t)} UTC (where "
            f"{'spot, perp, mark' if spot else 'perp, mark'} and funding all exist) for {'; '.join(lines)}; "
            "choose --start/--end inside the stored data or drop the symbol"
        )
    if not spot:
        data_flags.append("perp_only")
    oracle = _oracle_stand_in(venue)
    if oracle is not None:  # funding paid at a price no catalog series holds: say which stands in
        data_flags.append(oracle[0])
        notes.append(oracle[1])
    market = Market(
        index=index,
        symbols=tuple(names),
        freq=freq,
        **out,
        funding_rate=funding_rate,
        funding_value=funding_value,
        funding_count=funding_count,
        funding_interval_hours=funding_hours,
        valid=valid,
        filled=filled,
        mark_fallback=mark_fallback,
        multiplier=multipliers,
        perp_symbols=tuple(p.perp_symbol for p in plans),
        borrow_hourly_rate=_load_borrow(catalog, venue, names, index, step_t),
        venue=venue,
        notes=tuple(notes),
        funding_time_ms=funding_time,
        tradable=tradable,
        data_flags=tuple(data_flags),
    )
    market = _trim_to_tradable(market, start_ms is None, end_ms is None)
    market = _price_clip_notes(market, funding_clipped, priced_by)
    for text in market.notes:  # one warning per note: the CLI prints each as one line
        warnings.warn(text, DataWarning, stacklevel=3)
    return market


def _resolve_spot_perp(
    catalog: Catalog, venue: str, sym: str, canonical: str, perp_names: list[tuple[str, int]], freq: str, freq_min: int
) -> tuple[str, int, str]:
    """``(perp symbol, multiplier, source timeframe)`` of a symbol with spot bars: the coarsest
    timeframe dividing ``freq`` that holds spot, perp and mark bars, else spot and perp bars."""
    spot_tfs = _timeframes(catalog, venue, canonical, Kind.SPOT, freq_min)
    perp_sym: str | None = None
    mult, src_tf = 1, None
    for cand, cand_mult in perp_names:
        common = sorted(
            set(spot_tfs) & set(_timeframes(catalog, venue, cand, Kind.PERP, freq_min)), key=timeframe_minutes
        )
        if common:
            # the coarsest common timeframe that also has mark bars (1d spot/perp files without
            # 1d mark files: built from the 1h files that have them), else the coarsest common one
            marked = [tf for tf in common if tf in _timeframes(catalog, venue, cand, Kind.MARK, freq_min)]
            perp_sym, mult, src_tf = cand, cand_mult, (marked or common)[-1]
            break
        if perp_sym is None and _timeframes(catalog, venue, cand, Kind.PERP, freq_min):
            perp_sym, mult = cand, cand_mult
    if src_tf is None or perp_sym is None:
        what = []
        stored = sorted(
            {
                d.parent.name.split("=", 1)[1]
                for d in catalog.root.glob(f"venue={venue}/kind=spot/timeframe=*/symbol={canonical}")
            }
        )
        if not spot_tfs:
            what.append(
                f"no spot bars for {canonical}" + (f" (stored timeframes: {', '.join(stored)})" if stored else "")
            )
        if perp_sym is None:
            what.append(f"no perp bars for {sym}")
        if not what:
            what.append(f"no common timeframe dividing {freq} for the spot and perp bars of {canonical}")
        available = available_symbols(catalog, venue)
        raise DataError(
            f"catalog {catalog.root}: {' and '.join(what)} at a timeframe dividing {freq} "
            f"on venue {venue}{did_you_mean(canonical, available)}; "
            f"available symbols: {', '.join(available) or 'none'}"
        )
    return perp_sym, mult, src_tf


def _resolve_perp(
    catalog: Catalog, venue: str, sym: str, perp_names: list[tuple[str, int]], freq: str, freq_min: int
) -> tuple[str, int, str]:
    """``(perp symbol, multiplier, source timeframe)`` of a perp-only symbol (``spot=False``): the
    first candidate with perp bars, at the coarsest timeframe dividing ``freq`` that also holds
    mark bars, else the coarsest with perp bars."""
    for cand, cand_mult in perp_names:
        perp_tfs = sorted(_timeframes(catalog, venue, cand, Kind.PERP, freq_min), key=timeframe_minutes)
        if perp_tfs:
            marked = [tf for tf in perp_tfs if tf in _timeframes(catalog, venue, cand, Kind.MARK, freq_min)]
            return cand, cand_mult, (marked or perp_tfs)[-1]
    stored = sorted(
        {
            d.parent.name.split("=", 1)[1]
            for cand, _ in perp_names
            for d in catalog.root.glob(f"venue={venue}/kind=perp/timeframe=*/symbol={cand}")
        }
    )
    available = available_symbols(catalog, venue, spot=False)
    raise DataError(
        f"catalog {catalog.root}: no perp bars for {sym} at a timeframe dividing {freq} on venue {venue}"
        + (f" (stored timeframes: {', '.join(stored)})" if stored else "")
        + f"{did_you_mean(sym, available)}; available perp symbols: {', '.join(available) or 'none'}"
    )


def _missing_series(n: int) -> _Series:
    """A series with no bar at all (the spot of a perp-only market): NaN prices, nothing present."""
    nan = np.full(n, np.nan)
    none = np.zeros(n, dtype=bool)
    return _Series(nan, nan, nan, nan, nan, none, none)


def _trim_to_tradable(market: Market, head: bool, tail: bool) -> Market:
    """Without an explicit start (end), the window begins (ends) with the symbols' tradable
    spans, not with their price data: a run's figures cover the time it could trade (OKX's
    years of perp bars before its funding history are not six years of zero returns)."""
    rows = np.flatnonzero(market.tradable.any(axis=1))
    if not rows.size or not (head or tail):
        return market
    first = int(rows[0]) if head else 0
    last = int(rows[-1]) if tail else market.n_bars - 1
    if first == 0 and last == market.n_bars - 1:
        return market
    step = market.index[1] - market.index[0]
    start, end = market.index[first], market.index[last] + step
    trimmed = market.select(start=start, end=end)
    note = (
        f"window {start:%Y-%m-%d %H:%M} to {end:%Y-%m-%d %H:%M} UTC: the symbols' tradable spans "
        "(no position is possible outside them; pass start/end to choose another window)"
    )
    return dataclasses.replace(trimmed, notes=(*trimmed.notes, note))


def _oracle_stand_in(venue: str) -> tuple[str, str] | None:
    """``(flag, note)`` when ``venue`` pays funding at an oracle price (Hyperliquid, per its rules
    file in ``data/venues``): the loader values funding at the mark, or the perp's own price
    where the catalog has no mark, which stands in for it. None for a mark-price venue or one
    without a rules file."""
    from data.venues import known_venues, venue_rules

    if venue not in known_venues():
        return None
    rules = venue_rules(venue)
    if rules.funding_price != "oracle" or rules.oracle_stand_in is None:
        return None
    return rules.oracle_stand_in.flag, (
        f"{venue} pays funding at its oracle price, which no catalog series holds: funding is valued at the "
        f"mark price of each settlement (the perp's own price where there is no mark) instead "
        f"({rules.oracle_stand_in.flag}; the two differ by the perp's premium)"
    )


def _price_clip_notes(market: Market, noted: set[str], priced_by: str = "spot, perp and mark") -> Market:
    """A note for each symbol (not in ``noted``: those already have their funding note) whose
    tradable span does not cover the market's window because its prices start later or end
    earlier (e.g. XTZ listed in 2025 in a window from 2024; ZEC's perp bars ending a week
    before its funding), so every clipped symbol gets its line."""
    if market.n_bars < 2:
        return market
    step = market.index[1] - market.index[0]
    extra = []
    for j, sym in enumerate(market.symbols):
        span = np.flatnonzero(market.tradable[:, j])
        if sym in noted or not span.size or (span[0] == 0 and span[-1] == market.n_bars - 1):
            continue
        priced = np.flatnonzero(market.valid[:, j])
        extra.append(
            f"{sym}: tradable from {market.index[span[0]]:%Y-%m-%d %H:%M} to "
            f"{market.index[span[-1]] + step:%Y-%m-%d %H:%M} UTC only (its {priced_by} prices in the window: "
            f"{market.index[priced[0]]:%Y-%m-%d %H:%M} .. {market.index[priced[-1]] + step:%Y-%m-%d %H:%M}; "
            f"window {market.index[0]:%Y-%m-%d %H:%M} .. {market.index[-1] + step:%Y-%m-%d %H:%M})"
        )
    return dataclasses.replace(market, notes=(*market.notes, *extra)) if extra else market


def _prices_end_at(catalog: Catalog, keys: dict[str, PartitionKey | None], t_ms: int) -> bool:
    """True if the first of a symbol's stored price series to end ends with the bar opening at ``t_ms``."""
    ends = [c[1] for k in keys.values() if k is not None and (c := _coverage(catalog, [k])) is not None]
    return bool(ends) and min(ends) == t_ms


def _mark_opens_at(
    catalog: Catalog, venue: str, perp_symbol: str, times: np.ndarray, kind: Kind = Kind.MARK
) -> np.ndarray:
    """Open price of a stored mark bar (``kind``: or of the perp bars standing in for the mark) of
    any timeframe opening exactly at each time; NaN if none."""
    out = np.full(len(times), np.nan)
    if not len(times):
        return out
    base = catalog.root / f"venue={venue}" / f"kind={kind.value}"
    tdirs = [(m, d) for d in base.glob("timeframe=*") if (m := _minutes_or_none(d.name.split("=", 1)[1])) is not None]
    for _, tdir in sorted(tdirs):
        key = PartitionKey(venue, kind, perp_symbol, tdir.name.split("=", 1)[1])
        if not catalog.has(key):
            continue
        bars = catalog.read(key, np.datetime64(int(times[0]), "ms"), np.datetime64(int(times[-1]) + 1, "ms"))
        bt = bars.column("time").cast(pa.int64()).to_numpy()
        if not len(bt):
            continue
        pos = np.minimum(np.searchsorted(bt, times), len(bt) - 1)
        hit = (bt[pos] == times) & np.isnan(out)
        out[hit] = bars.column("open").to_numpy()[pos[hit]]
    return out


def _load_borrow(
    catalog: Catalog, venue: str, names: list[str], index: pd.DatetimeIndex, step_t: int
) -> np.ndarray | None:
    """Hourly borrow rates of each base coin, forward-filled onto the bars (None if absent)."""
    keys = [PartitionKey(venue, Kind.BORROW, split_symbol(n)[0]) for n in names]
    if not any(catalog.has(k) for k in keys):
        return None
    out = np.full((len(index), len(names)), np.nan)
    grid = index.asi8 // 1_000_000
    for j, key in enumerate(keys):
        if not catalog.has(key):
            continue
        t = catalog.read(key)
        times = t.column("time").cast(pa.int64()).to_numpy()
        rates = t.column("hourly_rate").to_numpy()
        pos = np.searchsorted(times, grid, side="right") - 1
        out[:, j] = np.where(pos >= 0, rates[np.maximum(pos, 0)], np.nan)
    return out


def _spot_names(catalog: Catalog, venue: str) -> set[str]:
    """Symbols with spot bars stored on ``venue`` (any timeframe)."""
    return {d.name.split("=", 1)[1] for d in catalog.root.glob(f"venue={venue}/kind=spot/timeframe=*/symbol=*")}


def available_symbols(catalog: Catalog, venue: str = "binance", *, spot: bool = True) -> list[str]:
    """Canonical symbols that have both spot and perp bars in the catalog; with ``spot=False``
    every symbol with perp bars (what ``load_market(..., spot=False)`` can load)."""
    spots = _spot_names(catalog, venue)
    perp = {
        spot_symbol(d.name.split("=", 1)[1], spots)
        for d in catalog.root.glob(f"venue={venue}/kind=perp/timeframe=*/symbol=*")
    }
    return sorted(spots & perp) if spot else sorted(perp)


#: The plausible range of a rate between two stablecoins (account currency per unit): outside
#: it the series is not such a rate (a wrong symbol, a price of something else, a unit error).
QUOTE_RATE_RANGE = (0.5, 2.0)


def load_quote_rate(
    catalog: Catalog, symbol: str, index: pd.DatetimeIndex, venues: list[str]
) -> tuple[pd.DataFrame, str, str] | None:
    """The catalog's spot bars of a currency pair ``symbol`` (``USDCUSDT``: USDT per USDC) as a
    rate on the bar grid ``index``: ``open`` (the first stored bar's open) and ``close`` (the
    last one's close) per bar.

    The first of ``venues`` storing ``symbol``'s spot bars at a timeframe that divides the bar
    length is read. A bar without a complete set of stored bars holds the last close before it
    (``open`` and ``close``; counted in the note), a bar whose open is missing opens at the last
    close. Returns ``(rates, venue, note)``, or None when no venue stores the pair.

    Raises
    ------
    DataError
        The series starts after the grid's first bar (naming both times), or a rate is not a
        finite number in :data:`QUOTE_RATE_RANGE` (naming the series and the bar).
    """
    if len(index) == 0:
        return None
    step_ms = int((index[1] - index[0]) / pd.Timedelta(milliseconds=1)) if len(index) > 1 else 3_600_000
    freq_min = step_ms // _MS_PER_MIN
    t0 = int(index[0].value // 1_000_000)
    for venue in venues:
        tfs = _timeframes(catalog, venue, symbol, Kind.SPOT, freq_min)
        if not tfs:
            continue
        tf = max(tfs, key=timeframe_minutes)  # the fewest bars to read
        src_min = timeframe_minutes(tf)
        k = freq_min // src_min
        key = PartitionKey(venue, Kind.SPOT, symbol, tf)
        s = _read_bars(catalog, key, t0, src_min * _MS_PER_MIN, len(index) * k, t0, t0 + len(index) * step_ms)
        if s is None:
            continue
        o, _h, _l, c, _v, ok, _f = _resample_series(s, k)
        where = f"catalog {catalog.root}: the {symbol} rate ({venue} spot bars at {tf})"
        if not ok[0]:
            first = np.flatnonzero(s.present)
            since = _ts(t0 + int(first[0]) * src_min * _MS_PER_MIN) if first.size else "nowhere in the window"
            raise DataError(
                f"{where} starts at {since}, after the window's first bar {index[0]}: start the run there, "
                "ingest the pair's earlier bars, or take the quotes 1:1 (quote_rate='parity')"
            )
        held = 0
        for j in range(1, len(index)):  # (bar 0 is stored: checked above)
            if not ok[j] or not np.isfinite(c[j]):
                o[j] = c[j] = c[j - 1]
                held += 1
            elif not np.isfinite(o[j]):
                o[j] = c[j - 1]
        lo, hi = QUOTE_RATE_RANGE
        bad = np.flatnonzero(~((o >= lo) & (o <= hi) & (c >= lo) & (c <= hi)))
        if bad.size:
            j = int(bad[0])
            raise DataError(
                f"{where}: bar {index[j]} opens at {o[j]!r} and closes at {c[j]!r}, outside {lo}..{hi}: not a rate "
                "between two stablecoins (check the symbol and its prices)"
            )
        note = f"{symbol} rate from {venue}'s spot bars ({tf}): {c.min():.6g} .. {c.max():.6g} over the window" + (
            f", {held} bar(s) without one held at the last close" if held else ""
        )
        return pd.DataFrame({"open": o, "close": c}, index=index), venue, note
    return None

"""Catalog access of a scale-out sweep: a local directory or an fsspec URL.

:func:`sweep_window` finds the common bar window of the requested symbols cheaply;
:func:`stage_remote` copies a task's year files from an fsspec URL to a local cache.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import ConfigError, DataError, did_you_mean, unknown_name
from data.schema import timeframe_minutes
from data.symbols import perp_candidates, split_symbol, spot_symbol
from data.units import ms_to_iso, to_ms


def is_url(catalog: str) -> bool:
    return "://" in str(catalog) and not str(catalog).startswith("file://")


def local_path(catalog: str) -> str:
    s = str(catalog)
    return s[len("file://") :] if s.startswith("file://") else s


class _FS:
    """The few file operations the sweep needs, on a local directory or an fsspec URL."""

    def __init__(self, catalog: str):
        self.url = str(catalog)
        if is_url(self.url):
            try:
                import fsspec
            except ImportError:
                raise ConfigError(f"reading the catalog {self.url} needs fsspec (pip install 'carry[scale]')") from None
            try:
                self.fs, self.root = fsspec.core.url_to_fs(self.url)
            except (ValueError, ImportError) as exc:  # unknown protocol, or its driver is not installed
                raise ConfigError(f"cannot open the catalog {self.url}: {exc}") from None
            self.remote = True
        else:
            self.fs, self.root, self.remote = None, local_path(self.url).rstrip("/") or "/", False

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def glob(self, pattern: str) -> list[str]:
        if self.remote:
            return sorted(self.fs.glob(pattern))
        import glob

        return sorted(glob.glob(pattern))

    def exists(self, path: str) -> bool:
        return self.fs.exists(path) if self.remote else os.path.exists(path)

    def read_columns(self, path: str, columns: list[str]):
        """Some columns of one Parquet file, as a pyarrow table (DataError naming the file)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if self.remote:
                with self.fs.open(path, "rb") as fh:
                    return pq.read_table(fh, columns=columns)
            return pq.read_table(path, columns=columns)
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise DataError(f"{path}: cannot read {columns} ({exc}); the file may be truncated or corrupt") from None

    def read_times(self, path: str) -> np.ndarray:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            if self.remote:
                with self.fs.open(path, "rb") as fh:
                    t = pq.read_table(fh, columns=["time"])
            else:
                t = pq.read_table(path, columns=["time"])
            return t.column("time").cast(pa.int64()).to_numpy()
        except (pa.ArrowException, OSError, KeyError) as exc:
            raise DataError(
                f"{path}: cannot read the 'time' column ({exc}); the file may be truncated or corrupt"
            ) from None

    def get(self, path: str, local: str) -> None:
        self.fs.get(path, local)

    def info_token(self, path: str) -> str:
        info = self.fs.info(path)
        return (
            str(info.get("ETag") or info.get("etag") or info.get("mtime") or info.get("LastModified") or "")
            + f":{info.get('size')}"
        )


def _year_of(path: str) -> int:
    m = re.search(r"year=(\d{4})\.parquet$", path)
    return int(m.group(1)) if m else -1


def _timeframes(fs: _FS, venue: str, kind: str, symbol: str, freq_min: int) -> list[str]:
    out = []
    for d in fs.glob(fs.join(f"venue={venue}", f"kind={kind}", "timeframe=*", f"symbol={symbol}")):
        tf = d.rstrip("/").split("/")[-2].split("=", 1)[1]
        try:
            m = timeframe_minutes(tf)
        except ConfigError:
            continue
        if freq_min % m == 0 and fs.glob(d.rstrip("/") + "/year=*.parquet"):
            out.append(tf)
    return out


def _source_series(fs: _FS, symbol: str, freq: str, venue: str) -> tuple[str, str, str]:
    """(spot symbol, perp symbol, source timeframe) as :func:`data.loader.load_market` picks them
    (the same rule, on a catalog behind a URL: keep the two in step)."""
    freq_min = timeframe_minutes(freq, "freq")
    spots = set(_names(fs, fs.join(f"venue={venue}", "kind=spot", "timeframe=*", "symbol=*")))
    canonical = spot_symbol(symbol, spots)
    spot_tfs = set(_timeframes(fs, venue, "spot", canonical, freq_min))
    for cand, _ in perp_candidates(symbol, spots):
        common = sorted(spot_tfs & set(_timeframes(fs, venue, "perp", cand, freq_min)), key=timeframe_minutes)
        if common:
            marked = [tf for tf in common if tf in _timeframes(fs, venue, "mark", cand, freq_min)]
            return canonical, cand, (marked or common)[-1]
    stored = _names(fs, fs.join(f"venue={venue}", "kind=spot", "timeframe=*", "symbol=*"))
    raise DataError(
        f"catalog {fs.url}: no spot and perp bars for {symbol} at a timeframe dividing {freq} on venue {venue}"
        + did_you_mean(canonical, stored)
    )


def _names(fs: _FS, pattern: str) -> list[str]:
    """The values of the last ``key=value`` directory of the paths matching ``pattern``."""
    return sorted({p.rstrip("/").split("/")[-1].split("=", 1)[-1] for p in fs.glob(pattern)})


def sweep_window(
    catalog: str, symbols: Iterable[str], freq: str = "1h", venue: str = "binance", start=None, end=None
) -> tuple[str, str]:
    """The common ``[start, end)`` of a sweep: the union of the symbols' tradable spans, the
    window :func:`data.loader.load_market` takes without explicit bounds (each symbol from its
    first bar with spot and perp prices and known funding to its last; the funding rule is
    :func:`data.loader.funded_interval`).

    Reads only the first and last row of each series' first and last year file, so it is cheap
    even for hundreds of symbols of minute data. Explicit bounds win.
    """
    start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
    if start_ms is not None and end_ms is not None:
        return ms_to_iso(start_ms), ms_to_iso(end_ms)
    fs = _FS(catalog)
    venues = _names(fs, fs.join("venue=*"))
    if venue not in venues:
        raise unknown_name("venue", venue, venues, f" in catalog {fs.url}")
    lo, hi = None, None
    step = timeframe_minutes(freq, "freq") * 60_000
    for sym in symbols:
        spot, perp, tf = _source_series(fs, sym, freq, venue)
        firsts, lasts = [], []
        for kind, name in (("spot", spot), ("perp", perp)):
            files = fs.glob(
                fs.join(f"venue={venue}", f"kind={kind}", f"timeframe={tf}", f"symbol={name}", "year=*.parquet")
            )
            if not files:
                continue
            first, last = fs.read_times(files[0]), fs.read_times(files[-1])
            if first.size and last.size:
                firsts.append(int(first[0]))
                lasts.append(int(last[-1]))
        if len(firsts) < 2:
            continue
        # the symbol's tradable span (data.loader: priced by spot and perp, funding known), in bars
        s_lo, s_hi = max(firsts), min(lasts) + timeframe_minutes(tf) * 60_000  # [first bar, data end)
        funded = _funded_bounds(fs, venue, perp, s_hi)
        if funded is not None:
            s_lo, s_hi = max(s_lo, int(np.ceil(funded[0]))), min(s_hi, int(funded[1]))
        s_lo = -(-s_lo // step) * step  # the first bar opening inside
        s_hi = (s_hi // step) * step  # the end of the last bar closing inside
        if s_hi <= s_lo:
            continue
        lo = s_lo if lo is None else min(lo, s_lo)
        hi = s_hi if hi is None else max(hi, s_hi)
    if lo is None or hi is None:
        raise DataError(f"catalog {catalog}: no bars for {list(symbols)}")
    return ms_to_iso(lo if start_ms is None else start_ms), ms_to_iso(hi if end_ms is None else end_ms)


def _funded_bounds(fs: _FS, venue: str, perp: str, data_end_ms: int) -> tuple[float, float] | None:
    """``data.loader.funded_interval`` of a perp's stored funding, from its first and last year
    files (``None`` without funding: the loader then refuses the symbol with its own message)."""
    from data.loader import funded_interval

    files = fs.glob(fs.join(f"venue={venue}", "kind=funding", f"symbol={perp}", "year=*.parquet"))
    if not files:
        return None
    first = fs.read_columns(files[0], ["time", "interval_hours"])
    last = fs.read_columns(files[-1], ["time", "interval_hours"])
    if not first.num_rows or not last.num_rows:
        return None

    def row(t, i):
        hours = t.column("interval_hours")[i].as_py()
        return int(t.column("time").cast("int64")[i].as_py()), float("nan") if hours is None else float(hours)

    (t0, h0), (t1, h1) = row(first, 0), row(last, last.num_rows - 1)
    return funded_interval(t0, h0, t1, h1, data_end_ms)


def stage_remote(
    catalog: str, symbols: Iterable[str], venue: str, start: str, end: str, cache_dir: str | None = None
) -> str:
    """Copy the year files of ``symbols`` within [start, end) from an fsspec URL to a local cache.

    The cache (``$CARRY_CACHE`` or the temp dir, one folder per catalog URL) is reused across
    tasks on a worker; a file is fetched again only if its size/ETag/mtime changed.
    """
    fs = _FS(catalog)
    base = cache_dir or os.environ.get("CARRY_CACHE") or os.path.join(tempfile.gettempdir(), "carry-catalog-cache")
    local_root = os.path.join(base, hashlib.sha256(fs.url.encode()).hexdigest()[:16])
    y0, y1 = pd.Timestamp(start).year, pd.Timestamp(end).year
    names: set[str] = set()
    spots = set(_names(fs, fs.join(f"venue={venue}", "kind=spot", "timeframe=*", "symbol=*")))
    for sym in symbols:
        names.add(spot_symbol(sym, spots))
        names.update(c for c, _ in perp_candidates(sym, spots))
        names.add(split_symbol(spot_symbol(sym, spots))[0])  # borrow rates are stored per asset
    root = fs.root.rstrip("/")
    for name in sorted(names):
        pats = [
            fs.join(f"venue={venue}", "kind=*", "timeframe=*", f"symbol={name}", "year=*.parquet"),
            fs.join(f"venue={venue}", "kind=*", f"symbol={name}", "year=*.parquet"),
        ]
        for pat in pats:
            for path in fs.glob(pat):
                year = _year_of(path)
                found = re.search(r"kind=([a-z]+)", path)
                kind = found.group(1) if found else ""
                if kind in ("spot", "perp", "mark", "index", "premium") and not (y0 <= year <= y1):
                    continue  # funding and borrow series are read whole by the loader
                rel = (
                    path[len(root) :].lstrip("/")
                    if path.startswith(root)
                    else path.split(fs.root.lstrip("/"), 1)[-1].lstrip("/")
                )
                dest = os.path.join(local_root, rel)
                token = fs.info_token(path)
                stamp = dest + ".src"
                if os.path.exists(dest) and os.path.exists(stamp) and Path(stamp).read_text() == token:
                    continue
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                tmp = f"{dest}.{os.getpid()}.part"
                fs.get(path, tmp)
                os.replace(tmp, dest)
                Path(stamp).write_text(token)
    return local_root

"""The Parquet catalog: where each table lives on disk, atomic writes, idempotent merges.

Layout (Hive-style directories, one Parquet file per calendar year)::

    <root>/venue=<venue>/kind=<kind>/timeframe=<tf>/symbol=<SYMBOL>/year=<YYYY>.parquet   # bars
    <root>/venue=<venue>/kind=funding/symbol=<SYMBOL>/year=<YYYY>.parquet                 # events
    <root>/venue=<venue>/kind=borrow/symbol=<ASSET>/year=<YYYY>.parquet

Writes go to a temporary file in the same directory which is then renamed over the target
(:func:`os.replace` is atomic on POSIX), so a crash never leaves a half-written partition.
Writing the same rows twice is a no-op: rows are merged by ``time``, and rows that agree are
kept once.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.errors import ConfigError, DataError
from data.io import FILE_MODE
from data.schema import Kind, schema_for
from data.validate import conform

_PART_RE = re.compile(r"^year=(\d{4})\.parquet$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")


@dataclass(frozen=True)
class PartitionKey:
    """Identifies one series in the catalog: venue, kind, timeframe (bars only) and symbol."""

    venue: str
    kind: Kind
    symbol: str
    timeframe: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        if not isinstance(self.symbol, str) or not _SYMBOL_RE.match(self.symbol):
            raise DataError(f"bad symbol {self.symbol!r}: expected upper-case letters and digits, e.g. BTCUSDT")
        if self.kind.is_bar and not self.timeframe:
            raise DataError(f"{self.kind.value} bars need a timeframe (e.g. '1h')")
        if not self.kind.is_bar and self.timeframe is not None:
            object.__setattr__(self, "timeframe", None)

    def directory(self, root: Path) -> Path:
        d = Path(root) / f"venue={self.venue}" / f"kind={self.kind.value}"
        if self.timeframe:
            d = d / f"timeframe={self.timeframe}"
        return d / f"symbol={self.symbol}"

    def __str__(self) -> str:
        tf = f"/{self.timeframe}" if self.timeframe else ""
        return f"{self.venue}/{self.kind.value}{tf}/{self.symbol}"


@dataclass
class WriteReport:
    """What a write did: rows added, rows already present, conflicting rows replaced."""

    key: PartitionKey
    rows_in: int = 0
    rows_added: int = 0
    rows_unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd")
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_parquet(path: Path, kind: Kind | str) -> pa.Table:
    """Read one partition file and check it again with :func:`~data.validate.conform`.

    Files are re-validated on every read, so a hand-edited, foreign, truncated or corrupt file
    gives a :class:`DataError` naming the file, column and row, never a silent wrong number.
    """
    try:
        table = pq.ParquetFile(path).read()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read Parquet file ({exc}); it may be truncated or corrupt") from None
    return conform(table, kind, str(path))


def _bound_ms(value: object, name: str) -> int | None:
    """A read bound (``numpy.datetime64`` or text; naive = UTC) as epoch milliseconds;
    ``ConfigError`` naming it if it is not a time."""
    if value is None:
        return None
    try:
        out = np.datetime64(value, "ms")  # type: ignore[call-overload]
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad {name} {value!r}: not a date or time ({exc})") from None
    if np.isnat(out):
        raise ConfigError(f"bad {name} {value!r}: not a date or time")
    return int(out.astype(np.int64))


def _year_of_ms(ms: int) -> int:
    return int(np.datetime64(ms, "ms").astype("datetime64[Y]").astype(np.int64)) + 1970


def _partition_year(path: Path) -> int:
    m = _PART_RE.match(path.name)
    if m is None:
        raise DataError(f"{path}: not a partition file (expected year=YYYY.parquet)")
    return int(m.group(1))


def _year_of(times: pa.Array) -> np.ndarray:
    return pc.year(times).to_numpy(zero_copy_only=False)


class Catalog:
    """A catalog rooted at a directory.

    Parameters
    ----------
    root:
        The catalog directory (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r})"

    # ------------------------------------------------------------------ writing
    def write(self, key: PartitionKey, table: pa.Table, source: str = "<table>") -> WriteReport:
        """Merge ``table`` into the series ``key``.

        Rows are validated with :func:`data.validate.conform`, split by calendar year and
        merged into each year's file by ``time``. A row whose time is already stored with the
        same values is skipped; with different values the new row replaces it and the
        conflict is reported (first few listed in ``WriteReport.conflicts``).
        """
        table = conform(table, key.kind, source)
        report = WriteReport(key=key, rows_in=len(table))
        if len(table) == 0:
            return report
        if key.kind == Kind.FUNDING:
            self._check_schedule(key, table, source)
        years = _year_of(table.column("time"))
        directory = key.directory(self.root)
        for year in np.unique(years):
            part = table.filter(pa.array(years == year))
            path = directory / f"year={int(year)}.parquet"
            merged = self._merge(path, part, key, report)
            if merged is not None:
                write_atomic(merged, path)
                report.files.append(path)
        return report

    def _check_schedule(self, key: PartitionKey, new: pa.Table, source: str) -> None:
        """Refuse funding settlements that would put a second settlement inside one interval of
        the stored series: a new time strictly between two stored settlements whose gap is no
        wider than the gaps beside it (no hole there; a hole may be filled, on any schedule,
        since the interval can change inside it). A source whose times are shifted (naive local
        times read as UTC) would otherwise double the funding. Raises :class:`DataError` naming
        the source, the first rows and the shift that would align them; nothing is written."""
        files = sorted(key.directory(self.root).glob("year=*.parquet"))
        if not files:
            return
        old_t = np.unique(
            np.concatenate(
                [pq.read_table(f, columns=["time"]).column("time").cast(pa.int64()).to_numpy() for f in files]
            )
        )
        if len(old_t) < 3:
            return
        new_t = new.column("time").cast(pa.int64()).to_numpy()
        pos = np.searchsorted(old_t, new_t)
        inside = (new_t > old_t[0]) & (new_t < old_t[-1])
        at_old = old_t[np.minimum(pos, len(old_t) - 1)] == new_t
        cand = np.flatnonzero(inside & ~at_old)
        if not len(cand):
            return
        gaps = np.diff(old_t)  # gaps[k] = old_t[k + 1] - old_t[k]; the new time is inside gaps[pos - 1]
        k = pos[cand] - 1
        beside = np.maximum(gaps[np.maximum(k - 1, 0)], gaps[np.minimum(k + 1, len(gaps) - 1)])
        regular = gaps[k] <= beside
        if not regular.any():
            return
        bad = cand[regular]
        after_prev = new_t[bad] - old_t[pos[bad] - 1]
        before_next = old_t[pos[bad]] - new_t[bad]
        shift = np.where(after_prev <= before_next, after_prev, -before_next)
        values, counts = np.unique(shift, return_counts=True)
        typical_h = values[np.argmax(counts)] / 3_600_000
        first = ", ".join(np.datetime_as_string(new_t[bad][:3].astype("datetime64[ms]"), unit="m")).replace("T", " ")
        raise DataError(
            f"{source}: {len(bad)} funding settlement(s) of {key.symbol} fall inside intervals of the stored series "
            f"(every {int(np.median(gaps[k[regular]])) / 3_600_000:g}h), e.g. at {first} UTC: {typical_h:+g}h from "
            "the stored settlements, a second settlement in each interval. Are the source's times in another "
            f"timezone? Shifting them by {-typical_h:+g}h would align them. Nothing was written."
        )

    def _merge(self, path: Path, new: pa.Table, key: PartitionKey, report: WriteReport) -> pa.Table | None:
        if not path.exists():
            report.rows_added += len(new)
            return new
        old = read_parquet(path, key.kind)
        old_t = old.column("time").cast(pa.int64()).to_numpy()
        new_t = new.column("time").cast(pa.int64()).to_numpy()
        pos = np.searchsorted(old_t, new_t)
        pos_c = np.minimum(pos, len(old_t) - 1)
        present = old_t[pos_c] == new_t
        if present.any():
            same = np.ones(len(new_t), dtype=bool)
            for name in new.column_names:
                a = new.column(name).to_numpy(zero_copy_only=False)
                b = old.column(name).to_numpy(zero_copy_only=False)[pos_c]
                if a.dtype.kind == "f":
                    eq = (a == b) | (np.isnan(a) & np.isnan(b.astype(float)))
                else:
                    eq = a == b
                same &= np.asarray(eq, dtype=bool)
            unchanged = present & same
            conflict = present & ~same
            report.rows_unchanged += int(unchanged.sum())
            for i in np.flatnonzero(conflict)[:5]:
                report.conflicts.append(
                    f"{key} at {np.datetime64(int(new_t[i]), 'ms')} UTC: stored row replaced by new values"
                )
            if conflict.sum() > 5:
                report.conflicts.append(f"... and {int(conflict.sum()) - 5} more conflicting rows in {path.name}")
        else:
            unchanged = np.zeros(len(new_t), dtype=bool)
            conflict = unchanged
        added = ~present
        report.rows_added += int(added.sum())
        if not added.any() and not conflict.any():
            return None
        keep_old = np.ones(len(old_t), dtype=bool)
        keep_old[pos_c[conflict]] = False
        merged = pa.concat_tables([old.filter(pa.array(keep_old)), new.filter(pa.array(added | conflict))])
        order = pc.sort_indices(merged, sort_keys=[("time", "ascending")])
        return merged.take(order)

    # ------------------------------------------------------------------ reading
    def files(self, key: PartitionKey) -> list[Path]:
        """The year files of ``key``, oldest first (empty if the series is absent)."""
        directory = key.directory(self.root)
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if _PART_RE.match(p.name))

    def read(self, key: PartitionKey, start: np.datetime64 | None = None, end: np.datetime64 | None = None) -> pa.Table:
        """Read the series ``key`` between ``start`` (inclusive) and ``end`` (exclusive).

        Raises :class:`DataError` if the series is not in the catalog.
        """
        paths = self.files(key)
        start_ms, end_ms = _bound_ms(start, "start"), _bound_ms(end, "end")
        if start_ms is not None or end_ms is not None:
            lo = _year_of_ms(start_ms) if start_ms is not None else -1
            hi = _year_of_ms(end_ms) if end_ms is not None else 10_000
            paths = [p for p in paths if lo <= _partition_year(p) <= hi]
        if not self.files(key):
            raise DataError(
                f"catalog {self.root}: no {key.kind.value} data for {key.symbol}"
                + (f" at timeframe {key.timeframe}" if key.timeframe else "")
                + f" on venue {key.venue} (looked in {key.directory(self.root)})"
            )
        if not paths:
            return schema_for(key.kind).empty_table()
        table = pa.concat_tables([read_parquet(p, key.kind) for p in paths])
        if start_ms is not None or end_ms is not None:
            t = table.column("time").cast(pa.int64()).to_numpy()
            mask = np.ones(len(t), dtype=bool)
            if start_ms is not None:
                mask &= t >= start_ms
            if end_ms is not None:
                mask &= t < end_ms
            table = table.filter(pa.array(mask))
        return table

    def has(self, key: PartitionKey) -> bool:
        return bool(self.files(key))

    def keys(self) -> Iterator[PartitionKey]:
        """Every series in the catalog, sorted by venue, kind, timeframe and symbol."""
        out: list[PartitionKey] = []
        for vdir in sorted(self.root.glob("venue=*")):
            venue = vdir.name.split("=", 1)[1]
            for kdir in sorted(vdir.glob("kind=*")):
                try:
                    kind = Kind(kdir.name.split("=", 1)[1])
                except ConfigError as exc:
                    raise DataError(f"{kdir}: not a catalog directory: {exc}") from None
                tf_dirs = sorted(kdir.glob("timeframe=*")) if kind.is_bar else [kdir]
                for tdir in tf_dirs:
                    tf = tdir.name.split("=", 1)[1] if kind.is_bar else None
                    for sdir in sorted(tdir.glob("symbol=*")):
                        try:
                            key = PartitionKey(venue, kind, sdir.name.split("=", 1)[1], tf)
                        except DataError as exc:
                            raise DataError(f"{sdir}: not a catalog directory: {exc}") from None
                        if self.files(key):
                            out.append(key)
        return iter(out)

"""Ingestion of real data sources into the catalog (one module per source)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from data.catalog import WriteReport
from data.errors import DataError


@dataclass
class IngestReport:
    """What an ingest did: the series written, and every warning and conflict it saw."""

    writes: list[WriteReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    files_read: int = 0

    @property
    def rows_added(self) -> int:
        return sum(w.rows_added for w in self.writes)

    def merge(self, other: IngestReport) -> IngestReport:
        self.writes += other.writes
        self.warnings += other.warnings
        self.conflicts += other.conflicts
        self.files_read += other.files_read
        return self

    def summary(self) -> str:
        series = len({str(w.key) for w in self.writes})
        lines = [
            f"read {self.files_read} files; {series} series; "
            f"{self.rows_added} rows added, {sum(w.rows_unchanged for w in self.writes)} already present"
        ]
        lines += [f"conflict: {c}" for c in self.conflicts + [c for w in self.writes for c in w.conflicts]]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


_MS_PER_HOUR = 3_600_000


def _when(ms: int) -> str:
    text = str(np.datetime64(int(ms), "ms")).replace("T", " ")
    return (text[:16] if int(ms) % 60_000 == 0 else text) + " UTC"


def floor_settlements(times: np.ndarray, source: str, column: str, report: IngestReport) -> np.ndarray:
    """Funding settlement times floored to the hour they settle for (every ingest stores them so).

    Every supported venue settles on whole hours and its stamps run late: Binance's by
    milliseconds, Hyperliquid's by up to minutes. Settlements 1 minute or more past the hour are
    listed in one warning; when three or more of them make up most of the source, its times are
    shifted (a zone with a half-hour offset, a wrong timezone) and it is refused naming the
    first rows (``DataError`` naming ``source`` and ``column``).
    """
    offset = times % _MS_PER_HOUR
    late = np.flatnonzero(offset >= 60_000)
    if late.size >= 3 and late.size * 2 > len(times):  # a schedule, not a few late stamps
        rows = ", ".join(f"row {int(i)} ({_when(int(times[i]))})" for i in late[:3])
        raise DataError(
            f"{source}: column {column!r}: {late.size} of {len(times)} settlements are 1 minute or more past the "
            f"hour ({rows}); every supported venue settles on whole hours: are the times in another zone or shifted?"
        )
    if late.size:
        worst = int(late[np.argmax(offset[late])])
        report.warnings.append(
            f"{source}: column {column!r}: {late.size} settlement(s) stamped 1 minute or more after the hour (first "
            f"{_when(int(times[late[0]]))}, latest by {offset[worst] / 60_000:.1f} min at {_when(int(times[worst]))}); "
            "floored to the hour they settle for"
        )
    return times - offset

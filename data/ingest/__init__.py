"""Ingestion of real data sources into the catalog (one module per source)."""

from __future__ import annotations

from dataclasses import dataclass, field

from data.catalog import WriteReport


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

"""Year files are written in row groups of about 45 days of 1-minute bars; a read of a few days
decodes only the groups whose time statistics meet it, and the first/last times of a file come
from its footer. Same rows as a whole-file read, always; files without usable statistics are
read whole."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from data import catalog as cat
from data.catalog import ROW_GROUP_ROWS, Catalog, PartitionKey, file_time_bounds, read_parquet
from data.schema import Kind
from data.synthetic import write_synthetic_catalog


@pytest.fixture(scope="module")
def minute_catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("rg") / "catalog"
    write_synthetic_catalog(root, 1, 100, seed=5)  # 144,000 rows of 1-minute bars: 3 row groups
    return Catalog(root)


def _spot_key(c: Catalog) -> PartitionKey:
    return next(k for k in c.keys() if k.kind == Kind.SPOT)


def test_year_files_have_row_groups_and_footer_bounds(minute_catalog):
    key = _spot_key(minute_catalog)
    (path,) = minute_catalog.files(key)
    meta = pq.ParquetFile(path).metadata
    assert meta.num_rows == 100 * 1440 and meta.num_row_groups == -(-meta.num_rows // ROW_GROUP_ROWS) == 3
    t = pq.read_table(path, columns=["time"]).column("time").cast(pa.int64()).to_numpy()
    assert file_time_bounds(path) == (int(t[0]), int(t[-1]))


def test_a_short_read_decodes_only_the_groups_it_needs(minute_catalog, monkeypatch):
    key = _spot_key(minute_catalog)
    (path,) = minute_catalog.files(key)
    whole = read_parquet(path, key.kind)
    t = whole.column("time").cast(pa.int64()).to_numpy()
    for a, b in ((10, 12 * 1440), (ROW_GROUP_ROWS - 5, ROW_GROUP_ROWS + 5), (0, 1), (len(t) - 3, len(t))):
        lo, hi = int(t[a]), int(t[b - 1]) + 1
        part = read_parquet(path, key.kind, lo, hi)
        assert part.num_rows <= 2 * ROW_GROUP_ROWS  # not the whole file
        pt = part.column("time").cast(pa.int64()).to_numpy()
        assert ((pt >= lo) & (pt < hi)).sum() == b - a
    # the catalog's read (row groups, then rows) equals filtering the whole file
    got = minute_catalog.read(key, np.datetime64(int(t[70_000]), "ms"), np.datetime64(int(t[90_000]), "ms"))
    assert got.equals(whole.slice(70_000, 20_000))
    seen = []
    real = cat.read_parquet
    monkeypatch.setattr(cat, "read_parquet", lambda p, k, s=None, e=None: seen.append((s, e)) or real(p, k, s, e))
    minute_catalog.read(key, np.datetime64(int(t[5]), "ms"), None)
    assert seen == [(int(t[5]), None)]


def test_files_without_statistics_or_in_another_unit_are_read_whole(tmp_path, minute_catalog):
    key = _spot_key(minute_catalog)
    (path,) = minute_catalog.files(key)
    table = pq.read_table(path)
    bare = tmp_path / "bare.parquet"
    pq.write_table(table, bare, row_group_size=10_000, write_statistics=False)
    assert file_time_bounds(bare) is None
    t = table.column("time").cast(pa.int64()).to_numpy()
    assert read_parquet(bare, key.kind, int(t[100]), int(t[200])).num_rows == table.num_rows
    micro = tmp_path / "micro.parquet"
    pq.write_table(table.set_column(0, "time", table.column("time").cast(pa.timestamp("us", tz="UTC"))), micro,
                   row_group_size=10_000)  # fmt: skip
    assert file_time_bounds(micro) is None
    assert cat._row_groups_meeting(pq.ParquetFile(micro).metadata, int(t[100]), int(t[200])) is None

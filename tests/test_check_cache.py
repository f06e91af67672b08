"""The data checks' results kept between runs (:mod:`data.check_cache`): the same files checked
by the same code give the cached problems without reading the files; any change of a file
checks again; off, unwritable or damaged caches change nothing but the time."""

from __future__ import annotations

import json
import os

import pyarrow.parquet as pq
import pytest

from data import check_cache, quality
from data.quality import check_catalog
from data.synthetic import write_demo_catalog

SYMS = ["DEMOAUSDT"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("CARRY_CACHE_DIR", str(folder))
    return folder / "checks"


@pytest.fixture
def cat(tmp_path):
    return write_demo_catalog(tmp_path / "catalog")


def _refuse(*args, **kwargs):
    raise AssertionError("the series were read again")


def test_a_second_check_of_the_same_files_reads_the_cache(cat, cache, monkeypatch):
    first = check_catalog(cat, SYMS)
    assert len(list(cache.glob("*.json"))) == 1
    monkeypatch.setattr(quality, "check_series", _refuse)
    assert check_catalog(cat, SYMS) == first


def test_cached_problems_are_the_problems_found(cat, cache, monkeypatch):
    key = next(k for k in cat.keys() if k.symbol == "DEMOAUSDT" and k.kind == "spot")
    path = cat.files(key)[0]
    table = pq.read_table(path)
    rows = table.to_pydict()
    rows["close"][5] = -1.0  # a non-positive price: an error the check reports
    pq.write_table(table.from_pydict(rows, schema=table.schema), path)
    found = check_catalog(cat, SYMS)
    assert any(p.check == "non_positive_price" for p in found)
    monkeypatch.setattr(quality, "check_series", _refuse)
    assert check_catalog(cat, SYMS) == found


def test_a_changed_file_is_checked_again(cat, cache):
    clean = check_catalog(cat, SYMS)
    key = next(k for k in cat.keys() if k.symbol == "DEMOAUSDT" and k.kind == "perp")
    path = cat.files(key)[0]
    table = pq.read_table(path)
    rows = table.to_pydict()
    rows["close"][7] = float("nan")
    pq.write_table(table.from_pydict(rows, schema=table.schema), path)
    again = check_catalog(cat, SYMS)
    assert again != clean and any(p.check == "nan" for p in again)
    assert len(list(cache.glob("*.json"))) == 2


def test_new_checking_code_does_not_reuse_old_answers(cat, cache, monkeypatch):
    check_catalog(cat, SYMS)
    monkeypatch.setattr(check_cache, "_code_version", lambda: b"another version of the checks")
    calls = []
    real = quality.check_series
    monkeypatch.setattr(quality, "check_series", lambda *a, **k: calls.append(1) or real(*a, **k))
    check_catalog(cat, SYMS)
    assert calls == [1]


def test_off_unwritable_or_damaged_caches_change_nothing(cat, cache, monkeypatch, tmp_path):
    want = check_catalog(cat, SYMS)
    for entry in cache.glob("*.json"):
        entry.write_text("{not json")
    assert check_catalog(cat, SYMS) == want
    assert json.loads(next(cache.glob("*.json")).read_text()) is not None  # rewritten whole
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("CARRY_CACHE_DIR", str(blocker))  # a file where the folder should be
    assert check_catalog(cat, SYMS) == want
    monkeypatch.setenv("CARRY_CACHE_DIR", "off")
    assert check_cache.cache_dir() is None
    assert check_catalog(cat, SYMS) == want


def test_the_cache_keeps_a_bounded_number_of_entries(cat, cache, monkeypatch):
    monkeypatch.setattr(check_cache, "MAX_ENTRIES", 4)
    cache.mkdir(parents=True)
    for k in range(5):
        (cache / f"old{k}.json").write_text("[]")
        os.utime(cache / f"old{k}.json", ns=(k, k))
    check_catalog(cat, SYMS)
    left = sorted(p.name for p in cache.glob("*.json"))
    assert len(left) == 3 and "old0.json" not in left and "old1.json" not in left

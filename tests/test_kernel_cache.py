"""Numba's cache of the kernels is dropped when any kernel source changes (backtest.kernels):
numba itself checks only the file of each cached function, not the files it inlines from."""

from __future__ import annotations

from pathlib import Path

import backtest.kernels as K
from backtest.kernels import MARK, drop_stale_cache, sources_digest


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    src = tmp_path / "kernels"
    cache = src / "__pycache__"
    cache.mkdir(parents=True)
    (src / "rules.py").write_text("RATE = 1\n")
    (src / "soa.py").write_text("from . import rules\n")
    return src, cache


def _cached(cache: Path) -> list[str]:
    for name in ("soa.soa_range_nb-311.py311.nbi", "soa.soa_range_nb-311.py311.1.nbc", "rules.push_nb-90.py311.nbi"):
        (cache / name).write_bytes(b"x")
    (cache / "soa.cpython-311.pyc").write_bytes(b"x")  # Python's own cache: never touched
    (cache / "other.f-1.py311.nbi").write_bytes(b"x")  # a module not of this folder: kept
    return sorted(p.name for p in cache.iterdir())


def test_an_edit_of_any_source_drops_every_cached_kernel_of_the_folder(tmp_path):
    src, cache = _tree(tmp_path)
    _cached(cache)
    assert drop_stale_cache(src, cache)  # no digest stored yet: whatever is there is of unknown sources
    assert sorted(p.name for p in cache.iterdir()) == [MARK, "other.f-1.py311.nbi", "soa.cpython-311.pyc"]
    assert (cache / MARK).read_text() == sources_digest(src)
    before = _cached(cache)
    assert not drop_stale_cache(src, cache)  # same sources: the cache stands
    assert sorted(p.name for p in cache.iterdir()) == before
    (src / "rules.py").write_text("RATE = 2\n")  # only rules.py changes: soa's kernels go too
    assert drop_stale_cache(src, cache)
    assert sorted(p.name for p in cache.iterdir()) == [MARK, "other.f-1.py311.nbi", "soa.cpython-311.pyc"]


def test_an_unwritable_cache_changes_nothing(tmp_path):
    src, cache = _tree(tmp_path)
    assert not drop_stale_cache(src, tmp_path / "missing")


def test_the_package_stores_the_digest_of_its_own_sources():
    cache = K._cache_dir()
    assert cache is not None
    assert (cache / MARK).read_text() == sources_digest(Path(K.__file__).parent)

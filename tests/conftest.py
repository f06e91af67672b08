"""Shared fixtures: the real data in ../shared/data (skipped where absent), the demo catalog, and
random markets and targets (:mod:`data.synthetic`) drawn from a per-test seeded generator.

Tests write nothing into the repository: outputs go under pytest's tmp directories, the data
checks' cache (:mod:`data.check_cache`) into a temporary directory of the run, and
hypothesis keeps no example database (the ``carry`` profile below has ``database=None``; a
failing example is printed, with its ``@reproduce_failure`` blob, instead) and keeps its other
files (constants and character caches) in a temporary directory removed at the end of the run,
unless ``HYPOTHESIS_STORAGE_DIRECTORY`` names one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CARRY_SHARED_DATA", REPO.parent / "shared" / "data"))

# no .hypothesis/ directory in the working directory (the repository when run from its root)
settings.register_profile("carry", database=None)
settings.load_profile("carry")
_HYPOTHESIS_HOME: Path | None = None


_CHECK_CACHE: Path | None = None


def pytest_configure(config: pytest.Config) -> None:
    global _HYPOTHESIS_HOME, _CHECK_CACHE
    config.addinivalue_line("markers", "seed(n): seed of the test's ``rng`` fixture (default 0)")
    if os.environ.get("CARRY_CACHE_DIR") is None:  # the data checks' cache: this run's own, removed after
        _CHECK_CACHE = Path(tempfile.mkdtemp(prefix="carry-cache-"))
        os.environ["CARRY_CACHE_DIR"] = str(_CHECK_CACHE)
    if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        _HYPOTHESIS_HOME = Path(tempfile.mkdtemp(prefix="carry-hypothesis-"))
        set_hypothesis_home_dir(_HYPOTHESIS_HOME)


def pytest_unconfigure(config: pytest.Config) -> None:
    if _HYPOTHESIS_HOME is not None:
        shutil.rmtree(_HYPOTHESIS_HOME, ignore_errors=True)
    if _CHECK_CACHE is not None:
        shutil.rmtree(_CHECK_CACHE, ignore_errors=True)
        os.environ.pop("CARRY_CACHE_DIR", None)


def shared_data_path(*parts: str) -> Path:
    """Path inside the shared real-data folder; skips the test with a clear reason if absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real market data not found at {path} (set CARRY_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory):
    """The built-in demo dataset, written once per test session."""
    from data.synthetic import write_demo_catalog

    return write_demo_catalog(tmp_path_factory.mktemp("demo") / "catalog")


@pytest.fixture
def rng(request: pytest.FixtureRequest) -> np.random.Generator:
    """A fresh ``numpy`` generator per test, seeded by ``@pytest.mark.seed(n)`` (default 0)."""
    marker = request.node.get_closest_marker("seed")
    return np.random.default_rng(marker.args[0] if marker else 0)


@pytest.fixture
def random_market_factory(rng: np.random.Generator) -> Callable[..., Any]:
    """``make(T, N, **kw)``: :func:`data.synthetic.random_market` drawn from the test's ``rng``."""
    from data.synthetic import random_market

    def make(T: int, N: int, **kw: Any):
        return random_market(rng, T, N, **kw)

    return make


@pytest.fixture
def random_targets(rng: np.random.Generator) -> Callable[..., Any]:
    """``make(market, n_cols, n_groups, p_change)``: random :class:`~backtest.targets.Targets`
    (:func:`data.synthetic.random_targets`) drawn from the test's ``rng``."""
    from backtest.targets import Targets
    from data import synthetic

    def make(market, n_cols: int, n_groups: int, p_change: float) -> Targets:
        return Targets(*synthetic.random_targets(market, rng, n_cols, n_groups, p_change))

    return make


def local_cluster():
    """A Dask ``LocalCluster`` of 2 worker processes on 127.0.0.1 (one thread each, 2 GB each, no
    dashboard, quiet logs), as the scale-out tests run it; skipped where dask distributed is absent."""
    distributed = pytest.importorskip("distributed")
    return distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        memory_limit="2GB",
        silence_logs=40,
    )

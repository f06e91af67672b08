"""Kill a real ingest process (SIGKILL) at random points: the catalog is unchanged or complete.

A ``ingest_binance_vision`` run in a subprocess merges three symbols x six kinds x two months of
Binance bulk files into a catalog that already holds two of the symbols (it rewrites existing
year files and adds new ones: 36 files committed together). It is killed after a random delay
(several seeds), or made to end itself inside the commit through the test hook
``CARRY_TEST_CRASH_AT`` (see :mod:`data.catalog`). Then the catalog is opened (which recovers)
and must hold exactly the files of before the ingest or exactly those of an uninterrupted run,
byte for byte, with no leftovers and a clean ``check_catalog``.
"""

from __future__ import annotations

import random
import shutil
import sys
from pathlib import Path

import pytest

from data.catalog import Catalog
from data.ingest.binance_vision import ingest_binance_vision
from tests.binance_vision_fixtures import build_site
from tests.kill_harness import KillHarness, crash_inside_the_commit, kill_after, measure_timing, random_kill, snapshot

INGEST = (
    "import sys; from data.catalog import Catalog; from data.ingest.binance_vision import ingest_binance_vision; "
    "ingest_binance_vision([sys.argv[1]], Catalog(sys.argv[2]), workers=1)"
)


class Setup(KillHarness):
    def __init__(self, root: Path):
        self.root = root
        self.site = root / "site"
        base_site = root / "base_site"
        build_site(base_site, ["BTCUSDT", "ETHUSDT"], ["2024-11", "2024-12"])
        # the ingest under test: an older month (rewrites the 2024 files), a new year, a new symbol
        build_site(self.site, ["BTCUSDT", "ETHUSDT", "SOLUSDT"], ["2024-10", "2025-01"])
        self.base = root / "base"
        ingest_binance_vision([base_site], Catalog(self.base), workers=1)
        self.before = snapshot(self.base)
        complete = Path(shutil.copytree(self.base, root / "complete"))
        report = ingest_binance_vision([self.site], Catalog(complete), workers=1)
        self.n_files = sum(len(w.files) for w in report.writes)
        self.after = snapshot(complete)
        assert self.after != self.before and self.n_files == 36

    def command(self, cat: Path) -> list[str]:
        return [sys.executable, "-c", INGEST, str(self.site), str(cat)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("kill"))


@pytest.fixture(scope="module")
def timing(setup: Setup) -> tuple[float, float]:
    return measure_timing(setup)


@pytest.mark.parametrize(
    ("crash_at", "expected"),
    [
        ("stage:5", "unchanged"),  # killed while staging: rolled back
        ("commit:0", "complete"),  # journal written, nothing renamed yet: rolled forward
        ("commit:17", "complete"),  # half the renames done
        ("commit:36", "complete"),  # every rename done, the journal not yet deleted
    ],
)
def test_crash_inside_the_commit(setup: Setup, crash_at: str, expected: str) -> None:
    assert crash_inside_the_commit(setup, crash_at) == expected


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_at_a_random_point(setup: Setup, timing: tuple[float, float], seed: int) -> None:
    assert random_kill(setup, timing, seed) in ("unchanged", "complete")


@pytest.mark.slow
def test_sigkill_many_seeds(setup: Setup, timing: tuple[float, float]) -> None:
    staging, end = timing
    rng = random.Random(1234)
    seen = {kill_after(setup, rng.uniform(0.0, max(end - staging, 0.05)), after_staging=True) for _ in range(30)}
    assert seen <= {"unchanged", "complete"}

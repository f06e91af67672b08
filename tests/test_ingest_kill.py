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

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data.catalog import TXN_DIR, Catalog
from data.ingest.binance_vision import ingest_binance_vision
from data.quality import check_catalog
from tests.binance_vision_fixtures import build_site

REPO = Path(__file__).resolve().parents[1]
INGEST = (
    "import sys; from data.catalog import Catalog; from data.ingest.binance_vision import ingest_binance_vision; "
    "ingest_binance_vision([sys.argv[1]], Catalog(sys.argv[2]), workers=1)"
)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the catalog and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


class Setup:
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
        self.runs = 0

    def fresh(self) -> Path:
        self.runs += 1
        return Path(shutil.copytree(self.base, self.root / f"cat{self.runs}"))

    def start(self, cat: Path, crash_at: str | None = None) -> subprocess.Popen:
        env = dict(os.environ)
        env.pop("CARRY_TEST_CRASH_AT", None)
        if crash_at:
            env["CARRY_TEST_CRASH_AT"] = crash_at
        return subprocess.Popen(
            [sys.executable, "-c", INGEST, str(self.site), str(cat)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def outcome(self, cat: Path) -> str:
        """Open the catalog (recovering it) and say whether it is as before or complete."""
        opened = Catalog(cat)
        assert opened.leftovers() == [], opened.leftovers()
        assert not (cat / TXN_DIR).exists()
        snap = snapshot(cat)
        assert snap in (self.before, self.after), sorted(set(snap) ^ set(self.after))[:5]
        problems = check_catalog(opened)
        assert not [p for p in problems if p.severity == "error" or p.check == "leftover"], problems
        return "complete" if snap == self.after else "unchanged"


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("kill"))


@pytest.fixture(scope="module")
def timing(setup: Setup) -> tuple[float, float]:
    """(seconds until the ingest starts staging, seconds until it ends) of an uninterrupted run."""
    cat = setup.fresh()
    t0 = time.monotonic()
    proc = setup.start(cat)
    staging = None
    while proc.poll() is None:
        if staging is None and (cat / TXN_DIR).exists():
            staging = time.monotonic() - t0
        time.sleep(0.002)
    end = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
    assert setup.outcome(cat) == "complete"
    return (staging if staging is not None else end * 0.8), end


def kill_after(setup: Setup, delay: float, after_staging: bool) -> str:
    """Start an ingest, SIGKILL it ``delay`` s after its start (or after it began staging)."""
    cat = setup.fresh()
    proc = setup.start(cat)
    if after_staging:
        while proc.poll() is None and not (cat / TXN_DIR).exists():
            time.sleep(0.001)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    return setup.outcome(cat)


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
    cat = setup.fresh()
    proc = setup.start(cat, crash_at)
    assert proc.wait(timeout=120) == 9, proc.stderr.read().decode() if proc.stderr else ""
    assert (cat / TXN_DIR).exists()  # it did leave something to recover
    assert setup.outcome(cat) == expected


@pytest.mark.parametrize("seed", range(6))
def test_sigkill_at_a_random_point(setup: Setup, timing: tuple[float, float], seed: int) -> None:
    staging, end = timing
    rng = random.Random(seed)
    if seed % 2:  # anywhere in the run
        kill_after(setup, rng.uniform(0.0, end), after_staging=False)
    else:  # in the part that writes: between the first staged file and the end
        kill_after(setup, rng.uniform(0.0, max(end - staging, 0.05)), after_staging=True)


@pytest.mark.slow
def test_sigkill_many_seeds(setup: Setup, timing: tuple[float, float]) -> None:
    staging, end = timing
    rng = random.Random(1234)
    seen = {kill_after(setup, rng.uniform(0.0, max(end - staging, 0.05)), after_staging=True) for _ in range(30)}
    assert seen <= {"unchanged", "complete"}

"""Kill a real ``carry data ingest freqtrade`` (the console command, in a subprocess, SIGKILL) at
random points: the catalog is unchanged or complete (issue 13, "writes that are all or nothing").

The ingest under test merges a freqtrade folder of three symbols (spot, perp, mark and funding;
Nov 2023 to Feb 2024) into a catalog that already holds two of them up to mid-December 2023: it
rewrites the 2023 year files and adds the 2024 ones and the new symbol's, all committed together.
It is killed after a random delay (several seeds; most are marked slow), or made to end itself
inside the commit through the test hook ``CARRY_TEST_CRASH_AT`` (see :mod:`data.catalog`). Then
the catalog is opened (which recovers) and must hold exactly the files of before the ingest or
exactly those of an uninterrupted run, byte for byte, with no leftovers and a clean
``check_catalog``. :mod:`tests.test_ingest_kill` does the same for a Binance bulk-file ingest.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.catalog import TXN_DIR, Catalog
from data.quality import check_catalog
from tests.test_freqtrade import _bars, _funding, _write
from tests.test_ingest_kill import snapshot

REPO = Path(__file__).resolve().parents[1]
START = "2023-11-01"


def freqtrade_folder(d: Path, coins: list[str], hours: int) -> Path:
    """A freqtrade data folder: spot, perp, mark and 8-hourly funding of ``coins`` over ``hours``
    hours from :data:`START` (the same prices for the same hours in every folder)."""
    fut = d / "futures"
    for i, coin in enumerate(coins):
        price = 10.0 * (i + 1)
        _write(_bars(START, hours, price=price), d / f"{coin}_USDT-1h.feather")
        _write(_bars(START, hours, price=price * 1.001), fut / f"{coin}_USDT_USDT-1h-futures.feather")
        _write(_bars(START, hours, price=price), fut / f"{coin}_USDT_USDT-1h-mark.feather")
        times = pd.date_range(START, periods=hours // 8, freq="8h", tz="UTC")
        rates = 1e-4 * (1 + 0.5 * np.sin(np.arange(len(times)) / 7 + i))
        _write(_funding(times, rates), fut / f"{coin}_USDT_USDT-1h-funding_rate.feather")
    return d


def ingest_command(src: Path, cat: Path) -> list[str]:
    return [sys.executable, "-m", "backtest", "data", "ingest", "freqtrade", str(src), "--out", str(cat), "--quiet"]


class Setup:
    def __init__(self, root: Path):
        self.root = root
        self.src = freqtrade_folder(root / "src", ["AAA", "BBB", "CCC"], 24 * 120)  # to 2024-02-29
        base_src = freqtrade_folder(root / "base_src", ["AAA", "BBB"], 24 * 45)  # to 2023-12-15
        self.base = root / "base"
        subprocess.run(ingest_command(base_src, self.base), cwd=REPO, env=self.env(), check=True, capture_output=True)
        self.before = snapshot(self.base)
        complete = Path(shutil.copytree(self.base, root / "complete"))
        subprocess.run(ingest_command(self.src, complete), cwd=REPO, env=self.env(), check=True, capture_output=True)
        self.after = snapshot(complete)
        # 2023 files rewritten, 2024 files and the new symbol's added
        self.rewritten = sorted(k for k in self.before if self.after[k] != self.before[k])
        self.added = sorted(set(self.after) - set(self.before))
        assert len(self.rewritten) == 8 and len(self.added) == 16, (self.rewritten, self.added)
        self.runs = 0

    @staticmethod
    def env(crash_at: str | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CARRY_TEST_CRASH_AT", None)
        if crash_at:
            env["CARRY_TEST_CRASH_AT"] = crash_at
        return env

    def fresh(self) -> Path:
        self.runs += 1
        return Path(shutil.copytree(self.base, self.root / f"cat{self.runs}"))

    def start(self, cat: Path, crash_at: str | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            ingest_command(self.src, cat),
            cwd=REPO,
            env=self.env(crash_at),
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
    return Setup(tmp_path_factory.mktemp("kill_ft"))


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


def random_kill(setup: Setup, timing: tuple[float, float], seed: int) -> str:
    staging, end = timing
    rng = random.Random(seed)
    if seed % 2:  # anywhere in the run (most of it is starting Python)
        return kill_after(setup, rng.uniform(0.0, end), after_staging=False)
    # in the part that writes: between the first staged file and the end
    return kill_after(setup, rng.uniform(0.0, max(end - staging, 0.05)), after_staging=True)


@pytest.mark.parametrize(
    ("crash_at", "expected"),
    [
        ("stage:3", "unchanged"),  # killed while staging: rolled back
        ("commit:0", "complete"),  # journal written, nothing renamed yet: rolled forward
        ("commit:12", "complete"),  # half of the 24 renames done
    ],
)
def test_crash_inside_the_commit(setup: Setup, crash_at: str, expected: str) -> None:
    cat = setup.fresh()
    proc = setup.start(cat, crash_at)
    assert proc.wait(timeout=120) == 9, proc.stderr.read().decode() if proc.stderr else ""
    assert (cat / TXN_DIR).exists()  # it did leave something to recover
    assert setup.outcome(cat) == expected


@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_at_a_random_point(setup: Setup, timing: tuple[float, float], seed: int) -> None:
    assert random_kill(setup, timing, seed) in ("unchanged", "complete")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 22))
def test_sigkill_at_a_random_point_many_seeds(setup: Setup, timing: tuple[float, float], seed: int) -> None:
    assert random_kill(setup, timing, seed) in ("unchanged", "complete")

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

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.kill_harness import (
    REPO,
    KillHarness,
    crash_env,
    crash_inside_the_commit,
    measure_timing,
    random_kill,
    snapshot,
)
from tests.test_freqtrade import _bars, _funding, _write

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


class Setup(KillHarness):
    def __init__(self, root: Path):
        self.root = root
        self.src = freqtrade_folder(root / "src", ["AAA", "BBB", "CCC"], 24 * 120)  # to 2024-02-29
        base_src = freqtrade_folder(root / "base_src", ["AAA", "BBB"], 24 * 45)  # to 2023-12-15
        self.base = root / "base"
        subprocess.run(ingest_command(base_src, self.base), cwd=REPO, env=crash_env(), check=True, capture_output=True)
        self.before = snapshot(self.base)
        complete = Path(shutil.copytree(self.base, root / "complete"))
        subprocess.run(ingest_command(self.src, complete), cwd=REPO, env=crash_env(), check=True, capture_output=True)
        self.after = snapshot(complete)
        # 2023 files rewritten, 2024 files and the new symbol's added
        self.rewritten = sorted(k for k in self.before if self.after[k] != self.before[k])
        self.added = sorted(set(self.after) - set(self.before))
        assert len(self.rewritten) == 8 and len(self.added) == 16, (self.rewritten, self.added)

    def command(self, cat: Path) -> list[str]:
        return ingest_command(self.src, cat)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Setup:
    return Setup(tmp_path_factory.mktemp("kill_ft"))


@pytest.fixture(scope="module")
def timing(setup: Setup) -> tuple[float, float]:
    return measure_timing(setup)


@pytest.mark.parametrize(
    ("crash_at", "expected"),
    [
        ("stage:3", "unchanged"),  # killed while staging: rolled back
        ("commit:0", "complete"),  # journal written, nothing renamed yet: rolled forward
        ("commit:12", "complete"),  # half of the 24 renames done
    ],
)
def test_crash_inside_the_commit(setup: Setup, crash_at: str, expected: str) -> None:
    assert crash_inside_the_commit(setup, crash_at) == expected


@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_at_a_random_point(setup: Setup, timing: tuple[float, float], seed: int) -> None:
    assert random_kill(setup, timing, seed) in ("unchanged", "complete")


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 22))
def test_sigkill_at_a_random_point_many_seeds(setup: Setup, timing: tuple[float, float], seed: int) -> None:
    assert random_kill(setup, timing, seed) in ("unchanged", "complete")

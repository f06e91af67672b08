"""What the kill tests of a real ingest share (:mod:`tests.test_ingest_kill`,
:mod:`tests.test_ingest_kill_freqtrade`): start the ingest in a subprocess on a fresh copy of a
catalog, kill it (SIGKILL after a delay, or the ``CARRY_TEST_CRASH_AT`` hook of
:mod:`data.catalog`), open the catalog (which recovers it) and say whether it is exactly as
before or exactly as after an uninterrupted run, byte for byte, with no leftovers and a clean
``check_catalog``."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from pathlib import Path

from data.catalog import TXN_DIR, Catalog
from data.quality import check_catalog

REPO = Path(__file__).resolve().parents[1]


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the catalog and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def crash_env(crash_at: str | None = None) -> dict[str, str]:
    """The environment of an ingest subprocess, with the crash hook set to ``crash_at`` (or unset)."""
    env = dict(os.environ)
    env.pop("CARRY_TEST_CRASH_AT", None)
    if crash_at:
        env["CARRY_TEST_CRASH_AT"] = crash_at
    return env


class KillHarness:
    """A catalog ``base`` (its files: ``before``) and the files of an uninterrupted ingest into
    a copy of it (``after``); subclasses build both and say how the ingest is started
    (:meth:`command`)."""

    root: Path
    base: Path
    before: dict[str, bytes]
    after: dict[str, bytes]
    runs: int = 0

    def command(self, cat: Path) -> list[str]:
        raise NotImplementedError

    def fresh(self) -> Path:
        """A new copy of the base catalog."""
        self.runs += 1
        return Path(shutil.copytree(self.base, self.root / f"cat{self.runs}"))

    def start(self, cat: Path, crash_at: str | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            self.command(cat), cwd=REPO, env=crash_env(crash_at), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
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


def measure_timing(setup: KillHarness) -> tuple[float, float]:
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


def kill_after(setup: KillHarness, delay: float, after_staging: bool) -> str:
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


def random_kill(setup: KillHarness, timing: tuple[float, float], seed: int) -> str:
    """Kill at a random point chosen by ``seed``: odd seeds anywhere in the run, even seeds in
    the part that writes (between the first staged file and the end)."""
    staging, end = timing
    rng = random.Random(seed)
    if seed % 2:
        return kill_after(setup, rng.uniform(0.0, end), after_staging=False)
    return kill_after(setup, rng.uniform(0.0, max(end - staging, 0.05)), after_staging=True)


def crash_inside_the_commit(setup: KillHarness, crash_at: str) -> str:
    """Run the ingest with the crash hook at ``crash_at`` (it ends itself with exit code 9) and
    return the outcome after recovery."""
    cat = setup.fresh()
    proc = setup.start(cat, crash_at)
    assert proc.wait(timeout=120) == 9, proc.stderr.read().decode() if proc.stderr else ""
    assert (cat / TXN_DIR).exists()  # it did leave something to recover
    return setup.outcome(cat)

"""Test hygiene: the tests write nothing into the repository, use no import-path hacks, keep no
hypothesis database, and run on the synthetic data they were written against (the generators of
commit 75ca2fb, read back from git history)."""

from __future__ import annotations

import ast
import hashlib
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import settings
from hypothesis.configuration import storage_directory

from backtest.targets import Targets
from data import synthetic
from tests.conftest import REPO

TESTS = REPO / "tests"
PINNED = "75ca2fb"  # the reshape: the generators' output is unchanged since (same seed, same bytes)

# build artefacts that importing and running carry may leave in the tree (all git-ignored)
_BUILD = re.compile(r"(^|/)(__pycache__|\.venv|[^/]*\.egg-info)(/|$)|\.nb[ic]$")


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=120)


def _repo_status() -> set[str]:
    """The untracked and ignored entries of ``git status --porcelain --ignored`` (what a command
    writing into the repository creates), build artefacts left out. Changes to tracked files are
    left out too: someone editing the tree while the tests run must not fail this test."""
    r = _git("status", "--porcelain", "--ignored")
    if r.returncode != 0:
        pytest.skip(f"not a git checkout ({r.stderr.strip()})")
    return {
        line for line in r.stdout.splitlines() if line[:2] in ("??", "!!") and not _BUILD.search(line[3:].strip('"'))
    }


def _carry(*args: object) -> subprocess.CompletedProcess:
    """``python -m backtest ...`` from the repository root, as a developer runs it there."""
    return subprocess.run(
        [sys.executable, "-m", "backtest", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_cli_commands_write_nothing_into_the_repository(tmp_path):
    before = _repo_status()
    demo = _carry("demo", "--data", tmp_path / "catalog", "--out", tmp_path / "report")
    assert demo.returncode == 0, demo.stderr
    assert (tmp_path / "report" / "report.html").exists()
    info = _carry("data", "info", tmp_path / "catalog")
    assert info.returncode == 0 and "DEMOAUSDT" in info.stdout, info.stderr
    listing = _carry("strategies")
    assert listing.returncode == 0 and "funding_threshold" in listing.stdout, listing.stderr
    after = _repo_status()
    assert after == before, f"new in the repository: {sorted(after - before)}; gone: {sorted(before - after)}"


def test_no_test_edits_the_import_path():
    """Tests import helpers as the ``tests`` package (``from tests.x import y``), never by path."""
    hack = re.compile(r"sys\.path\.(insert|append)\(")
    offenders = [
        f"{p.name}:{n}" for p in sorted(TESTS.glob("*.py")) for n, line in enumerate(p.open(), 1) if hack.search(line)
    ]
    assert not offenders, offenders


def test_hypothesis_writes_nothing_into_the_working_directory():
    """conftest loads a profile without an example database and moves hypothesis's other files
    (constants, character caches) out of ``.hypothesis/`` in the working directory."""
    assert settings().database is None
    if os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
        return  # a directory a person chose
    home = storage_directory(intent_to_write=False).home_directory.resolve()
    assert home != (Path.cwd() / ".hypothesis").resolve() and REPO not in home.parents


# --------------------------------------------------------------------------- the generators at 75ca2fb
def _pinned_source(path: str) -> str:
    r = _git("show", f"{PINNED}:{path}")
    if r.returncode != 0:
        pytest.skip(f"commit {PINNED} not in this checkout's history (a shallow clone?): {r.stderr.strip()}")
    return r.stdout


def _pinned_module(path: str) -> types.ModuleType:
    module = types.ModuleType(f"pinned_{PINNED}_{Path(path).stem}")
    sys.modules[module.__name__] = module  # dataclasses look their module up while decorating
    try:
        exec(compile(_pinned_source(path), f"{PINNED}:{path}", "exec"), module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def _pinned_function(path: str, name: str, namespace: dict):
    tree = ast.parse(_pinned_source(path))
    node = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == name)
    exec(compile(ast.Module(body=[node], type_ignores=[]), f"{PINNED}:{path}", "exec"), namespace)
    return namespace[name]


def _file_hashes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_demo_and_scale_out_catalogs_are_byte_identical_to_the_pinned_generators(tmp_path):
    """The generators' output is the pinned one's, byte for byte, but for one deliberate change:
    the demo's funding also holds the settlement at the data's end (the last bar's close), which
    the pinned generator left out and the loader then took for zero (it now says such a bar's
    funding is unknown)."""
    old = _pinned_module("data/synthetic.py")
    new_frames = synthetic.demo_frames()
    for sym, frames in old.demo_frames().items():
        for leg, frame in frames.items():
            new = new_frames[sym][leg]
            if leg == "funding":  # the one settlement added: at the last bar's close
                assert new["time"].iloc[-1] == new_frames[sym]["spot"]["time"].iloc[-1] + pd.Timedelta(hours=1)
                assert new["time"].iloc[-1] > frame["time"].iloc[-1]
                new = new.iloc[:-1]
            pd.testing.assert_frame_equal(new, frame, check_exact=True, obj=f"{sym} {leg}")
    old.write_demo_catalog(tmp_path / "old-demo")
    synthetic.write_demo_catalog(tmp_path / "new-demo")
    want = {k: v for k, v in _file_hashes(tmp_path / "old-demo").items() if "kind=funding" not in k}
    got = {k: v for k, v in _file_hashes(tmp_path / "new-demo").items() if "kind=funding" not in k}
    assert len(want) == 9 and got == want
    for timeframe, days in (("1m", 2), ("1h", 20)):
        kw = dict(timeframe=timeframe, seed=3, funding_hours=4 if timeframe == "1h" else 8)
        old.write_synthetic_catalog(tmp_path / f"old-{timeframe}", 3, days, **kw)
        synthetic.write_synthetic_catalog(tmp_path / f"new-{timeframe}", 3, days, **kw)
        want = _file_hashes(tmp_path / f"old-{timeframe}")
        assert len(want) >= 12 and _file_hashes(tmp_path / f"new-{timeframe}") == want, timeframe


@pytest.mark.parametrize("seed", range(8))
def test_random_market_targets_and_tiers_equal_the_pinned_test_helpers(seed, tmp_path):
    reference = _pinned_module("tests/reference_engine.py")
    grid_targets = _pinned_function(
        "tests/test_engine_reference.py", "grid_targets", {"np": np, "pd": pd, "Targets": Targets}
    )
    T, N = 3 + 9 * seed, 1 + seed % 3
    kw = dict(vol=0.02, wick=0.05 * (1 + seed % 2), invalid_frac=(0.0, 0.1)[seed % 2], funding_every=1 + seed % 8)
    ra, rb = np.random.default_rng(seed), np.random.default_rng(seed)
    a, b = reference.random_market(ra, T, N, **kw), synthetic.random_market(rb, T, N, **kw)
    for name in a.__dataclass_fields__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
        elif isinstance(x, pd.Index):
            assert x.equals(y), name
        else:
            assert x == y, name
    ta = grid_targets(a, ra, 4, 2, 0.2)
    tb = Targets(*synthetic.random_targets(b, rb, 4, 2, 0.2))
    for name in ("values", "column_symbol", "group", "weights"):
        x, y = getattr(ta, name), getattr(tb, name)
        assert (x is None and y is None) if x is None else np.array_equal(x, y, equal_nan=True), name
    pd.testing.assert_frame_equal(ta.columns, tb.columns)
    assert ra.bit_generator.state == rb.bit_generator.state
    reference.write_tiers(tmp_path / "old.json", a.symbols)
    synthetic.write_tiers(tmp_path / "new.json", b.symbols)
    assert (tmp_path / "old.json").read_bytes() == (tmp_path / "new.json").read_bytes()

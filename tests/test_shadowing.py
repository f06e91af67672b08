"""carry's top-level packages have generic names (``data``, ``reports``, ``strategies``): a user's
own modules or folders of those names in the working directory must not be taken for them.

* The ``carry`` console script never has the working directory on its import path;
  ``python -m backtest`` drops it (``backtest/__main__.py``, as ``python -P`` does).
* A library import (``python -c``, a notebook) keeps the working directory on the path: a plain
  ``data/`` folder of CSV files is not taken for carry's ``data`` (``backtest._OwnPackages``),
  and a user's own ``data`` package is named in a clear ImportError.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import data

CARRY = Path(sys.executable).with_name("carry")
COMMANDS = {"console script": [str(CARRY)], "python -m backtest": [sys.executable, "-m", "backtest"]}
OWN_DATA = Path(data.__file__).resolve()


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    """A working directory with a ``data`` package and a ``reports`` module that refuse to load."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "__init__.py").write_text('raise ImportError("user data package")\n')
    (project / "reports.py").write_text('raise ImportError("user reports module")\n')
    (project / "strategies.py").write_text('raise ImportError("user strategies module")\n')
    return project


@pytest.mark.parametrize("how", list(COMMANDS))
def test_carry_runs_next_to_a_users_data_package(user_project, tmp_path, how):
    if how == "console script" and not CARRY.exists():
        pytest.skip(f"no carry console script next to {sys.executable} (pip install -e .)")
    cmd = COMMANDS[how]
    before = _tree(user_project)
    listing = _run([*cmd, "strategies"], cwd=user_project)
    assert listing.returncode == 0, listing.stderr
    assert "funding_threshold" in listing.stdout
    out = tmp_path / "out"
    demo = _run([*cmd, "demo", "--data", str(out / "catalog"), "--out", str(out / "report")], cwd=user_project)
    assert demo.returncode == 0, demo.stderr
    assert (out / "report" / "report.html").exists() and "funding_sign" in demo.stdout
    assert _tree(user_project) == before  # nothing written into (or compiled from) the user's modules


def test_library_import_next_to_a_plain_data_folder(tmp_path):
    """A notebook's folder with ``data/``, ``reports/`` and ``strategies/`` of non-code files."""
    notebooks = tmp_path / "notebooks"
    for folder, name, text in (
        ("data", "prices.csv", "time,close\n2024-01-01,100\n"),
        ("reports", "old.html", "<html></html>\n"),
        ("strategies", "notes.txt", "ideas\n"),
    ):
        (notebooks / folder).mkdir(parents=True)
        (notebooks / folder / name).write_text(text)
    code = (
        "import numpy as np\n"
        "import backtest\n"
        "from backtest import load_market, run_backtest\n"
        "from data import Catalog\n"
        "from data.synthetic import random_market\n"
        "import data, reports, strategies\n"
        "res = run_backtest(random_market(np.random.default_rng(0), 24, 1), 1.0)\n"
        "assert res.equity.shape == (24, 1)\n"
        "assert callable(strategies.run_strategy)\n"
        "print(data.__file__)\n"
        "print(reports.__file__)\n"
    )
    r = _run([sys.executable, "-c", code], cwd=notebooks)
    assert r.returncode == 0, r.stderr
    data_file, reports_file = r.stdout.split()
    assert Path(data_file).resolve() == OWN_DATA
    assert Path(reports_file).resolve() == OWN_DATA.parent.parent / "reports" / "__init__.py"


def test_a_users_data_package_is_named_in_the_import_error(user_project):
    r = _run([sys.executable, "-c", "import backtest\nfrom backtest import run_backtest"], cwd=user_project)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: carry's data package") and str(user_project / "data") in last
    assert "-P" in last
    # the same user directory under python -P: carry's own packages
    r = _run([sys.executable, "-P", "-c", "import backtest\nfrom backtest import run_backtest"], cwd=user_project)
    assert r.returncode == 0, r.stderr

"""The import contract: declared once in pyproject.toml ([tool.importlinter]), checked here.

Layers import downwards only (data -> backtest engine -> strategies -> reports -> backtest.app);
no module imports another module's underscore names; ``import backtest`` stays light.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGES = ("data", "backtest", "strategies", "reports")


def test_import_contract_holds():
    exe = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    if not Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    out = subprocess.run([exe, "--no-cache"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "BROKEN" not in out.stdout


def _own_modules() -> list[Path]:
    return [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")]


def test_no_module_imports_another_modules_private_names():
    bad = []
    for path in _own_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
                bad += [
                    f"{path.relative_to(REPO)}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
    assert not bad, "\n".join(bad)


def test_engine_import_path_stays_light():
    code = (
        "import sys, backtest; from backtest import run_backtest, load_market, BacktestConfig; "
        "print(sorted(m for m in ('vectorbt', 'plotly', 'dask', 'strategies', 'reports') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

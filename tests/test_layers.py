"""Layers import in one direction: data -> kernels -> engine API -> strategies -> reports -> CLI."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO

# module -> modules (of this repo, or vectorbt) it must never import, at any depth of its own source
LOWER = ["schema", "validate", "catalog", "symbols", "market", "loader", "config", "tiers", "targets",
         "engine", "result", "buffers", "kernels/simulate", "kernels/margin", "kernels/fast", "regimes"]
UPPER = ("strategies", "backtest.app", "backtest.commands", "backtest.cli", "backtest.report", "backtest.demo",
         "backtest.scale")


def _imports(path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    pkg = "backtest." + path.relative_to(REPO / "backtest").with_suffix("").as_posix().replace("/", ".")
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level)[0]
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
    return names


@pytest.mark.parametrize("module", LOWER)
def test_lower_layers_do_not_import_upper_ones(module):
    found = _imports(REPO / "backtest" / f"{module}.py")
    bad = sorted(n for n in found if n.startswith(UPPER))
    assert not bad, f"backtest/{module}.py imports {bad}"


def test_strategies_do_not_import_reports_or_cli():
    for path in (REPO / "strategies").glob("*.py"):
        bad = sorted(n for n in _imports_any(path) if n.startswith(("backtest.app", "backtest.commands",
                                                                     "backtest.cli", "backtest.report")))
        assert not bad, f"{path.name} imports {bad}"


def _imports_any(path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def test_engine_import_path_stays_light():
    code = ("import sys, backtest; from backtest import run_backtest, load_market, BacktestConfig; "
            "print(sorted(m for m in ('vectorbt', 'plotly', 'dask', 'strategies') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"

"""The HTML report in a real headless browser: no console errors, every figure drawn.

Uses Debian's chromium (``.ci/run`` installs it when missing; locally the test skips with a
clear reason if no chromium is found). The screenshot goes to pytest's tmp directory, or to
the directory named by ``CARRY_TEST_ARTIFACTS`` when set (kept there for a person to look at);
nothing is written into the repository.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from backtest.app.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
]

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def report(demo_catalog, tmp_path_factory):
    out = tmp_path_factory.mktemp("browser") / "cmp"
    code = main(
        [
            "compare",
            "--data",
            str(demo_catalog.root),
            "--symbols",
            "DEMOAUSDT,DEMOBUSDT,DEMOCUSDT",
            "--strategies",
            "always_carry,funding_sign,funding_threshold",
            "--leverage",
            "3",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    return out / "report.html"


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_report_renders_without_console_errors(report, tmp_path):
    r = _chromium(
        tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom", report.as_uri()
    )
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"error|uncaught|failed", line, re.IGNORECASE)]
    assert not errors, errors
    dom = r.stdout
    chunks = dom.split('<div class="figure" data-figure="')[1:]
    chunks[-1] = chunks[-1].split("<footer", 1)[0]
    figures = [(c.split('"', 1)[0], c) for c in chunks]
    names = [n for n, _ in figures]
    assert {"equity", "drawdown", "funding-basis", "margin"} <= set(names), names
    assert sum(n.startswith("components-") for n in names) == 3, names
    for name, body in figures:
        # plotly draws into <svg class="main-svg"> with traces; an empty figure has no trace groups
        assert "main-svg" in body, f"figure {name} was not drawn"
        assert re.search(r"class=\"(trace|scatterlayer|barlayer|heatmaplayer|imagelayer)", body), (
            f"figure {name} is empty"
        )
    assert 'id="metrics"' in dom and "<td>" in dom


def test_report_screenshot(report, tmp_path):
    artifacts = Path(os.environ.get("CARRY_TEST_ARTIFACTS") or tmp_path / "artifacts")
    artifacts.mkdir(parents=True, exist_ok=True)
    shot = artifacts / "report.png"
    r = _chromium(
        tmp_path, "--virtual-time-budget=20000", "--window-size=1280,3000", f"--screenshot={shot}", report.as_uri()
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 50_000  # a blank page is a few KB

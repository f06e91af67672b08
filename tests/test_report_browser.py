"""The HTML reports in a real headless browser: no console errors, every figure drawn, every
portfolio in the report's select with its charts, round trips and monthly table.

Opens four reports of the demo data: a compare (3 portfolios), a sweep (6 portfolios, opened
at ``#portfolio=<its last portfolio>`` so the select's switch is exercised), a walk-forward
sweep and a ``carry scan`` (no portfolios: no select and no tables).

Uses Debian's chromium (``.ci/run`` installs it when missing; locally the tests skip with a
clear reason if no chromium is found). One screenshot per report goes to pytest's tmp
directory, or to the directory named by ``CARRY_TEST_ARTIFACTS`` when set (kept there for a
person to look at); nothing is written into the repository.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

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
SYMBOLS = "DEMOAUSDT,DEMOBUSDT,DEMOCUSDT"
#: name -> (command line after --data/--symbols, figures every such report draws, a run report)
REPORTS = {
    "compare": (
        ["compare", "--strategies", "always_carry,funding_sign,funding_threshold", "--leverage", "3"],
        {"equity", "drawdown", "funding-basis", "components", "margin"},
        True,
    ),
    "sweep": (
        ["sweep", "--strategy", "funding_threshold", "--grid", "entry=0.05,0.1,0.2", "--grid", "exit=0,0.02"],
        {"equity", "drawdown", "funding-basis", "components", "margin"},
        True,
    ),
    "walk_forward": (
        ["sweep", "--strategy", "funding_threshold", "--grid", "entry=0.05,0.1,0.2", "--walk-forward", "90d:30d"],
        {"equity", "drawdown", "funding-basis", "components", "margin"},
        True,
    ),
    "scan": (["scan"], {"equity", "funding-basis"}, False),
}

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install chromium)")


@pytest.fixture(scope="module")
def reports(demo_catalog, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("browser")
    out = {}
    for name, (args, _, _) in REPORTS.items():
        code = main(
            [*args, "--data", str(demo_catalog.root), "--symbols", SYMBOLS, "--out", str(root / name), "--quiet"]
        )
        assert code == 0, name
        out[name] = root / name
    return out


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Path:
    where = os.environ.get("CARRY_TEST_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def _chromium(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=180,
    )


def console_errors(stderr: str) -> list[str]:
    """The console lines of a ``--enable-logging=stderr`` Chromium run that report an error."""
    return [
        line
        for line in stderr.splitlines()
        if "CONSOLE" in line and re.search(r"error|uncaught|failed", line, re.IGNORECASE)
    ]


def _portfolios(run: Path) -> list[str]:
    return [p["portfolio"] for p in json.loads((run / "summary.json").read_text())["portfolios"]]


def _payload(dom: str) -> dict:
    m = re.search(r'<script type="application/json" id="detail-data">(.*?)</script>', dom, re.S)
    assert m, "the report embeds no per-portfolio data"
    return json.loads(m.group(1))


def _rows(dom: str, table_id: str) -> int:
    m = re.search(rf'<table id="{table_id}"[^>]*>.*?<tbody>(.*?)</tbody>', dom, re.S)
    assert m, f"no table {table_id}"
    return m.group(1).count("<tr>")


@pytest.mark.parametrize("name", list(REPORTS))
def test_report_in_a_browser(name, reports, artifacts, tmp_path):
    _, expected, run_report = REPORTS[name]
    run = reports[name]
    url = (run / "report.html").as_uri()
    labels = _portfolios(run) if run_report else []
    pick = None
    if name == "sweep":  # open at the last option: the select switches charts and tables to it
        sel = re.search(r"<select id='portfolio-select'>(.*?)</select>", (run / "report.html").read_text(), re.S)
        assert sel
        options = re.findall(r"<option value='\d+'>\d+\. (.*?)(?: \(|</option>)", sel.group(1))
        pick = html.unescape(options[-1])
        url += "#portfolio=" + quote(pick, safe="")
    r = _chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom", url)
    assert r.returncode == 0, r.stderr[-2000:]
    console = [line for line in r.stderr.splitlines() if "CONSOLE" in line]
    errors = [line for line in console if re.search(r"error|uncaught|failed", line, re.IGNORECASE)]
    assert not errors, errors
    dom = r.stdout
    chunks = dom.split('<div class="figure" data-figure="')[1:]
    assert chunks, "no figure"
    chunks[-1] = chunks[-1].split("<footer", 1)[0]
    figures = [(c.split('"', 1)[0], c) for c in chunks]
    names = [n for n, _ in figures]
    assert expected <= set(names), names
    assert names.count("components") <= 1 and names.count("margin") <= 1  # one chart each, for every portfolio
    for fig, body in figures:
        # plotly draws into <svg class="main-svg"> with traces; an empty figure has no trace groups
        assert "main-svg" in body, f"figure {fig} was not drawn"
        assert re.search(r"class=\"(trace|scatterlayer|barlayer|heatmaplayer|imagelayer)", body), (
            f"figure {fig} is empty"
        )
    assert 'id="metrics"' in dom and "<td>" in dom
    assert "How to read this" in dom
    if not run_report:
        assert "portfolio-select" not in dom and 'id="trips"' not in dom and 'id="monthly"' not in dom
    else:
        # every portfolio of the run is an option of the select, with its chart data and tables
        data = _payload(dom)
        assert sorted(data["labels"]) == sorted(labels) and len(labels) >= 3
        select = re.search(r'<select id="portfolio-select">(.*?)</select>', dom, re.S)
        assert select and select.group(1).count("<option") == len(labels)
        for p in data["p"]:
            assert len(p["c"]) == len(data["names"]) and p["tx"] and p["mx"]
            assert p["trips"]["n"] >= 1 and len(p["months"]) == 12 and len(p["years"]) == 1
        shown = pick or data["labels"][0]
        p = data["p"][data["labels"].index(shown)]
        assert _rows(dom, "trips") == min(p["trips"]["n"], data["max_trips"]) >= 1
        assert _rows(dom, "monthly") == 12 and _rows(dom, "yearly") == 1
        assert re.search(r'id="trips-count">[\d,]+ trips?', dom)
        comp = dict(figures)["components"]
        assert f"Cumulative PnL by component (quote): {html.escape(shown)}" in comp
        for fig in ("components", "margin"):  # still a date axis after the select redrew it
            ticks = re.findall(r'<g class="x\d*tick"><text[^>]*data-unformatted="([^"]*)"', dict(figures)[fig])
            assert ticks and all(re.match(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b", t) for t in ticks), (
                ticks
            )
        assert 'id="benchmarks"' in dom
        if name == "walk_forward":  # the folds table and the stitched out-of-sample equity, drawn
            assert "Walk-forward" in dom
            wf = dict(figures)["walk-forward"]
            assert "stitched out-of-sample run" in wf and "best set in hindsight" in wf
    shot = artifacts / f"report-{name}.png"
    r = _chromium(tmp_path, "--virtual-time-budget=20000", "--window-size=1280,6500", f"--screenshot={shot}", url)
    assert r.returncode == 0, r.stderr[-2000:]
    assert shot.exists() and shot.stat().st_size > 50_000  # a blank page is a few KB


def test_venue_scan_report_in_a_browser(tmp_path, artifacts):
    """``carry scan --venues``: the cumulative spread chart drawn, both tables filled, no console error."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    from data.catalog import Catalog, PartitionKey
    from data.schema import Kind

    cat = Catalog(tmp_path / "cat")
    start = pd.Timestamp("2024-01-01", tz="UTC")
    for venue, symbol, every in (("binance", "BTCUSDT", 8), ("hyperliquid", "BTCUSDC", 1)):
        times = pd.date_range(start + pd.Timedelta(hours=every), periods=90 * 24 // every, freq=f"{every}h")
        day = np.asarray((times - start).days)
        rates = np.where((day // 30) % 2 == 0, 1e-4, -5e-5) * every / 8 * (1.5 if venue == "hyperliquid" else 1.0)
        table = pa.table(
            {
                "time": pa.array(times.as_unit("ms").asi8, pa.timestamp("ms", tz="UTC")),
                "rate": rates,
                "interval_hours": np.full(len(times), float(every)),
                "mark_price": pa.nulls(len(times), pa.float64()),
            }
        )
        with cat.transaction():
            cat.write(PartitionKey(venue, Kind.FUNDING, symbol), table)
    out = tmp_path / "venues"
    assert main(["scan", "--data", str(cat.root), "--venues", "binance,hyperliquid", "--out", str(out), "--quiet"]) == 0
    url = (out / "report.html").as_uri()
    r = _chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--virtual-time-budget=20000", "--dump-dom", url)
    assert r.returncode == 0, r.stderr[-2000:]
    errors = console_errors(r.stderr)
    assert not errors, errors
    dom = r.stdout
    assert 'data-figure="equity"' in dom and "main-svg" in dom and "scatterlayer" in dom
    assert _rows(dom, "table-0") == 1 and _rows(dom, "table-1") >= 2  # the pair; its regimes
    assert "BTC hyperliquid - binance" in dom and "How to read this" in dom
    shot = artifacts / "report-venue-scan.png"
    r = _chromium(tmp_path, "--virtual-time-budget=20000", "--window-size=1280,3000", f"--screenshot={shot}", url)
    assert r.returncode == 0 and shot.stat().st_size > 30_000

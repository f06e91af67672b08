"""The ``carry data`` commands, run as a user would: in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, shared_data_path


def carry(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backtest", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd or REPO,
        timeout=300,
    )


def test_usage_errors_exit_2_with_one_line():
    r = carry("data", "ingest", "freqtrade")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("carry: error: the following arguments are required")
    r = carry("nonsense")
    assert r.returncode == 2 and "invalid choice" in r.stderr


def test_help_has_examples():
    r = carry("data", "--help")
    assert r.returncode == 0 and "carry data fetch binance-vision --symbols" in r.stdout


def test_missing_directory_is_a_one_line_failure(tmp_path):
    r = carry("data", "ingest", "freqtrade", tmp_path / "nope", "--out", tmp_path / "cat")
    assert r.returncode == 1
    assert r.stderr.strip() == f"carry: error: freqtrade data directory {tmp_path / 'nope'} does not exist"
    assert not (tmp_path / "cat").exists()


def test_ingest_info_check_roundtrip_on_freqtrade_testdata(tmp_path):
    source = shared_data_path("freqtrade-testdata")
    cat = tmp_path / "cat"
    r = carry("data", "ingest", "freqtrade", source, "--out", cat)
    assert r.returncode == 0, r.stderr
    assert "rows added" in r.stdout
    again = carry("data", "ingest", "freqtrade", source, "--out", cat)
    assert again.returncode == 0 and " 0 rows added" in again.stdout  # idempotent
    info = carry("data", "info", cat, "--json")
    assert info.returncode == 0, info.stderr
    rows = json.loads(info.stdout)
    kinds = {(r["kind"], r["symbol"]) for r in rows}
    assert {("perp", "XRPUSDT"), ("mark", "XRPUSDT"), ("funding", "XRPUSDT")} <= kinds
    check = carry("data", "check", cat, "--json", "--fail-on", "error")
    assert check.returncode in (0, 1)
    problems = json.loads(check.stdout)
    assert isinstance(problems, list)
    assert check.returncode == (1 if any(p["severity"] == "error" for p in problems) else 0)


def test_demo_runs_from_a_fresh_directory(tmp_path):
    r = carry("demo", "--data", tmp_path / "data", "--out", tmp_path / "reports")
    assert r.returncode == 0, r.stderr
    assert "always_reverse" in r.stdout and "funding_sign" in r.stdout
    out = tmp_path / "reports"
    assert sorted(p.name for p in out.iterdir()) == [
        "components.parquet",
        "config.toml",
        "equity.parquet",
        "events.parquet",
        "report.html",
        "summary.json",
        "trades.parquet",
    ]
    # an existing report is refused like every command's output, unless --overwrite
    again = carry("demo", "--data", tmp_path / "data", "--out", out)
    assert again.returncode == 1
    assert again.stderr.strip().splitlines() == [
        f"carry: error: output directory {out} already exists; pass --overwrite to replace it"
    ]
    replaced = carry("demo", "--data", tmp_path / "data", "--out", out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert (out / "report.html").is_file()

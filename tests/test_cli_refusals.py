"""Refusals of the command line, run as a user would (a subprocess): absurd settings (issue 13,
point 5) and checks that would pass on nothing (point 6).

Each refusal is one line (``carry: error: ...``) with no traceback, names the flag (or key) or the
path, exits with the CLI's code for it (2: a setting; 1: data) and writes nothing: no ``--out``
directory, no catalog.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

BASE = ["backtest", "--symbols", "DEMOAUSDT", "--strategy", "always_carry", "--quiet"]


def carry(*args: object) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backtest", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )


def one_line_error(r: subprocess.CompletedProcess, code: int) -> str:
    """The single ``carry: error:`` line of a refused command (no traceback, nothing else)."""
    lines = r.stderr.strip().splitlines()
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr and len(lines) == 1, r.stderr
    assert lines[0].startswith("carry: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def demo_cat(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from data.synthetic import write_demo_catalog

    return Path(write_demo_catalog(tmp_path_factory.mktemp("demo") / "catalog").root)


# --------------------------------------------------------------------------- 5. absurd settings
@pytest.mark.parametrize(
    ("flags", "named"),
    [
        # bps meant: the key the user typed, and the value meant
        (["--set", "spot_taker_fee_rate=50"], ["spot_taker_fee_rate=50", "at most 0.01", "0.005 if bps were meant"]),
        # the flag typed, the engine key, the bound and what the number means
        (
            ["--slippage-bps", "1000000"],
            ["--slippage-bps 1e+06 (slippage_bps):", "at most 1000 bps", "1e+06 bps is 10000% of the price"],
        ),
        # percent meant
        (
            ["--borrow-rate", "5"],
            ["--borrow-rate 5 (borrow_annual_rate):", "at most 3", "0.05 if percent were meant"],
        ),
        (["--leverage", "1000"], ["--leverage 1000 (perp_leverage):", "at most 200x", "125x"]),
        (["--delay", "-1"], ["--delay -1 (execution_delay_bars):", "must be an integer >= 0"]),
    ],
)
def test_an_absurd_setting_is_refused_naming_the_flag(demo_cat: Path, tmp_path: Path, flags, named) -> None:
    out = tmp_path / "out"
    line = one_line_error(carry(*BASE, "--data", demo_cat, *flags, "--out", out), 2)
    for text in named:
        assert text in line, line
    assert not out.exists()


def test_a_leverage_beyond_any_plausible_value_names_the_tiers_maximum(demo_cat: Path, tmp_path: Path) -> None:
    tiers = tmp_path / "tiers.json"
    bracket = {"tier": 1, "minNotional": 0, "maxNotional": 50_000, "maintenanceMarginRate": 0.004, "maxLeverage": 75}
    tiers.write_text(json.dumps({"DEMOA/USDT:USDT": [bracket]}))
    out = tmp_path / "out"
    line = one_line_error(carry(*BASE, "--data", demo_cat, "--leverage", "1000", "--tiers", tiers, "--out", out), 2)
    assert "--leverage 1000 (perp_leverage)" in line and f"the tiers file {tiers} allows at most 75x (DEMOAUSDT" in line
    assert not out.exists()


def test_a_setting_of_a_config_file_keeps_its_key(demo_cat: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.toml"
    config.write_text("[engine]\nslippage_bps = 1000000\n")
    out = tmp_path / "out"
    line = one_line_error(carry(*BASE, "--data", demo_cat, "--config", config, "--out", out), 2)
    assert "slippage_bps=1e+06 is beyond any plausible value" in line and "--slippage-bps" not in line
    assert not out.exists()


# --------------------------------------------------------------------------- 6. checks of nothing
def test_data_check_of_an_empty_folder_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    line = one_line_error(carry("data", "check", empty), 1)
    assert str(empty) in line and "holds no catalog series" in line
    assert list(empty.iterdir()) == []  # nothing written into it


def test_data_check_of_a_folder_that_is_no_catalog_is_an_error(tmp_path: Path) -> None:
    folder = tmp_path / "freqtrade"
    folder.mkdir()
    (folder / "BTC_USDT-1h.feather").write_bytes(b"not a catalog")
    line = one_line_error(carry("data", "check", folder), 1)
    assert str(folder) in line and "is it a catalog?" in line
    assert sorted(p.name for p in folder.iterdir()) == ["BTC_USDT-1h.feather"]


def test_data_check_of_a_file_is_an_error(tmp_path: Path) -> None:
    file = tmp_path / "catalog.parquet"
    file.write_bytes(b"PAR1")
    line = one_line_error(carry("data", "check", file), 1)
    assert str(file) in line and "is a file, not a catalog folder" in line


def test_binance_vision_ingest_of_a_folder_without_zip_files_is_an_error(tmp_path: Path) -> None:
    src = tmp_path / "downloads"
    src.mkdir()
    (src / "notes.txt").write_text("no zips here")
    cat = tmp_path / "cat"
    line = one_line_error(carry("data", "ingest", "binance-vision", src, "--out", cat), 1)
    assert "no Binance zip files" in line and str(src) in line
    assert not cat.exists()

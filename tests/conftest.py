"""Shared fixtures: the real data in ../shared/data (skipped where absent) and the demo catalog."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("CARRY_SHARED_DATA", REPO.parent / "shared" / "data"))


def shared_data_path(*parts: str) -> Path:
    """Path inside the shared real-data folder; skips the test with a clear reason if absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real market data not found at {path} (set CARRY_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory):
    """The built-in demo dataset, written once per test session."""
    from data.synthetic import write_demo_catalog

    return write_demo_catalog(tmp_path_factory.mktemp("demo") / "catalog")

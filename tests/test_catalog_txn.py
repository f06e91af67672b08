"""All-or-nothing catalog writes: transactions, crash recovery, leftovers, checks at ingest (issue 13)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from data.catalog import JOURNAL_SUFFIX, TXN_DIR, Catalog, PartitionKey
from data.errors import ConfigError, DataError, UnknownNameError
from data.ingest.binance_vision import ingest_binance_vision
from data.quality import check_catalog, check_series, ingest_checks
from data.schema import Kind
from tests.binance_vision_fixtures import build_site, funding_rows, site_path, write_month, write_zip

H = 3_600_000
T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC
REPO = Path(__file__).resolve().parents[1]


def _bars(times_ms: np.ndarray, price: float | np.ndarray = 100.0) -> pa.Table:
    p = np.broadcast_to(np.asarray(price, float), len(times_ms)).copy()
    return pa.table(
        {
            "time": pa.array(times_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "open": p,
            "high": p * 1.01,
            "low": p * 0.99,
            "close": p,
            "volume": np.ones(len(times_ms)),
        }
    )


def _funding(times_ms: np.ndarray, rate: float = 1e-4) -> pa.Table:
    n = len(times_ms)
    return pa.table(
        {
            "time": pa.array(times_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "rate": np.full(n, rate),
            "interval_hours": np.full(n, 8.0),
        }
    )


def _key(kind: str, symbol: str = "BTCUSDT", tf: str | None = "1h") -> PartitionKey:
    return PartitionKey("binance", Kind(kind), symbol, None if kind == "funding" else tf)


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file of the catalog and its bytes."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _catalog_with_two_series(root: Path) -> Catalog:
    cat = Catalog(root)
    t = T0 + np.arange(48) * H
    cat.write(_key("spot"), _bars(t))
    cat.write(_key("perp"), _bars(t, 100.5))
    return cat


# --------------------------------------------------------------------------- transactions
def test_bare_write_is_committed_and_leaves_nothing(tmp_path: Path) -> None:
    cat = _catalog_with_two_series(tmp_path / "cat")
    assert not (cat.root / TXN_DIR).exists()
    assert sorted(p.name for p in cat.root.iterdir()) == ["venue=binance"]  # nothing else at rest
    assert cat.leftovers() == [] and cat.recovered == []
    assert cat.read(_key("perp")).num_rows == 48


def test_transaction_commits_every_series_together(tmp_path: Path) -> None:
    cat = _catalog_with_two_series(tmp_path / "cat")
    t = T0 + np.arange(48, 96) * H
    with cat.transaction() as txn:
        a = cat.write(_key("spot"), _bars(t))
        cat.write(_key("funding"), _funding(T0 + np.arange(6) * 8 * H))
        # reads inside see the committed state; Transaction.files the state after the commit
        assert cat.read(_key("spot")).num_rows == 48 and not cat.has(_key("funding"))
        assert all(TXN_DIR in str(p) for p in txn.files(_key("funding")))
        assert txn.keys() == [_key("spot"), _key("funding")]
        assert a.files == [_key("spot").directory(cat.root) / "year=2024.parquet"]
        staged = list((cat.root / TXN_DIR).rglob("*.parquet"))
        assert len(staged) == 2
    assert cat.read(_key("spot")).num_rows == 96 and cat.read(_key("funding")).num_rows == 6
    assert not (cat.root / TXN_DIR).exists() and cat.leftovers() == []


def test_exception_in_a_transaction_commits_nothing(tmp_path: Path) -> None:
    cat = _catalog_with_two_series(tmp_path / "cat")
    before = snapshot(cat.root)
    with pytest.raises(RuntimeError, match="boom"):
        with cat.transaction():
            cat.write(_key("spot"), _bars(T0 + np.arange(48, 96) * H))
            cat.write(_key("mark", "ETHUSDT"), _bars(T0 + np.arange(5) * H))
            raise RuntimeError("boom")
    assert snapshot(cat.root) == before
    assert not (cat.root / TXN_DIR).exists()


def test_same_series_twice_in_one_transaction_merges_the_staged_version(tmp_path: Path) -> None:
    cat = _catalog_with_two_series(tmp_path / "cat")
    with cat.transaction():
        first = cat.write(_key("spot"), _bars(T0 + np.arange(48, 60) * H))
        second = cat.write(_key("spot"), _bars(T0 + np.arange(55, 70) * H))
    assert (first.rows_added, second.rows_added, second.rows_unchanged) == (12, 10, 5)
    t = cat.read(_key("spot")).column("time").cast(pa.int64()).to_numpy()
    assert np.array_equal(t, T0 + np.arange(70) * H)


def test_funding_schedule_check_sees_the_staged_series(tmp_path: Path) -> None:
    """A shifted second source is refused even when the first was only staged in the same ingest."""
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError, match=r"Shifting them by -3h"):
        with cat.transaction():
            cat.write(_key("funding"), _funding(T0 + np.arange(12) * 8 * H))
            cat.write(_key("funding"), _funding(T0 + np.arange(12) * 8 * H + 3 * H), source="ccxt.csv")
    assert not cat.root.joinpath("venue=binance").exists()


def test_a_refused_write_leaves_the_transaction_usable(tmp_path: Path) -> None:
    """A DataError from one write stages nothing; the caller may go on and commit the rest."""
    cat = Catalog(tmp_path / "cat")
    with cat.transaction():
        cat.write(_key("funding"), _funding(T0 + np.arange(12) * 8 * H))
        with pytest.raises(DataError):
            cat.write(_key("funding"), _funding(T0 + np.arange(12) * 8 * H + 3 * H))
        cat.write(_key("spot"), _bars(T0 + np.arange(3) * H))
    assert cat.read(_key("funding")).num_rows == 12 and cat.read(_key("spot")).num_rows == 3


def test_nested_transactions_join_the_outer_one(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    other = Catalog(tmp_path / "cat")  # another object on the same folder joins too
    with cat.transaction() as outer:
        with other.transaction() as inner:
            assert inner is outer
            other.write(_key("spot"), _bars(T0 + np.arange(3) * H))
        assert not cat.has(_key("spot"))  # the inner block ending does not commit
    assert cat.has(_key("spot"))


def test_a_commit_waits_for_a_reader_holding_the_catalog(tmp_path: Path) -> None:
    """A reader inside Catalog.reading() sees one committed state: a commit waits for it."""
    cat = _catalog_with_two_series(tmp_path / "cat")
    done = threading.Event()

    def writer() -> None:
        w = Catalog(cat.root)
        with w.transaction():
            w.write(_key("spot"), _bars(T0 + np.arange(48, 50) * H))
            w.write(_key("perp"), _bars(T0 + np.arange(48, 50) * H, 100.5))
        done.set()

    with cat.reading():
        th = threading.Thread(target=writer)
        th.start()
        time.sleep(0.5)
        assert not done.is_set()
        assert cat.read(_key("spot")).num_rows == 48 and cat.read(_key("perp")).num_rows == 48
    th.join(10)
    assert done.is_set() and cat.read(_key("spot")).num_rows == 50 and cat.read(_key("perp")).num_rows == 50


# --------------------------------------------------------------------------- recovery
def _crashed_ingest(cat_root: Path, site: Path, crash_at: str) -> subprocess.CompletedProcess:
    code = (
        "import sys; from data.catalog import Catalog; from data.ingest.binance_vision import ingest_binance_vision; "
        "ingest_binance_vision([sys.argv[1]], Catalog(sys.argv[2]), workers=1)"
    )
    env = {**os.environ, "CARRY_TEST_CRASH_AT": crash_at}
    return subprocess.run(
        [sys.executable, "-c", code, str(site), str(cat_root)], cwd=REPO, env=env, capture_output=True, timeout=120
    )


@pytest.fixture(scope="module")
def small_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("txn") / "site"
    build_site(root, ["BTCUSDT", "ETHUSDT"], ["2024-11", "2024-12"], kinds=("spot", "perp", "funding"))
    return root


def test_journal_is_rolled_forward_on_open(tmp_path: Path, small_site: Path) -> None:
    ref = Catalog(tmp_path / "ref")
    ingest_binance_vision([small_site], ref, workers=1)
    root = tmp_path / "cat"
    proc = _crashed_ingest(root, small_site, "commit:2")  # killed after 2 of its renames
    assert proc.returncode == 9, proc.stderr.decode()
    journals = list((root / TXN_DIR).glob(f"*{JOURNAL_SUFFIX}"))
    assert len(journals) == 1
    moves = json.loads(journals[0].read_text())["moves"]
    assert len(moves) == len(snapshot(ref.root)) == 6  # 6 series x one year file (2024)
    # left as it is (recover=False), the check reports the unfinished journal as an error
    problems = check_catalog(Catalog(root, recover=False))
    (left,) = [p for p in problems if p.check == "leftover"]
    assert left.severity == "error" and journals[0].name in left.message and "finishes the commit" in left.message
    cat = Catalog(root)  # opening finishes it
    assert cat.recovered and "finished the commit" in cat.recovered[0]
    assert snapshot(root) == snapshot(ref.root)
    assert not (root / TXN_DIR).exists() and cat.leftovers() == []
    problems = check_catalog(cat)
    assert not [p for p in problems if p.severity == "error"]
    assert [p.check for p in problems if p.check in ("recovered", "leftover")] == ["recovered"]


def test_roll_forward_is_idempotent(tmp_path: Path) -> None:
    """A journal whose moves were partly done (killed during recovery) is finished again."""
    cat = _catalog_with_two_series(tmp_path / "cat")
    txn_dir = cat.root / TXN_DIR / "1-dead"
    finals = [
        _key("spot").directory(cat.root) / "year=2024.parquet",
        _key("perp").directory(cat.root) / "year=2025.parquet",
    ]
    moves = []
    for final in finals:
        staged = txn_dir / final.relative_to(cat.root)
        staged.parent.mkdir(parents=True)
        staged.write_bytes(final.with_name("year=2024.parquet").read_bytes())
        moves.append([str(staged.relative_to(cat.root)), str(final.relative_to(cat.root))])
    os.replace(cat.root / moves[0][0], finals[0])  # the first move was already done
    (cat.root / TXN_DIR / f"1-dead{JOURNAL_SUFFIX}").write_text(json.dumps({"id": "1-dead", "moves": moves}))
    again = Catalog(cat.root)
    assert len(again.recovered) == 1 and finals[1].exists()
    assert not (cat.root / TXN_DIR).exists()


def test_staging_without_journal_is_rolled_back(tmp_path: Path, small_site: Path) -> None:
    root = tmp_path / "cat"
    ingest_binance_vision([small_site], Catalog(root), workers=1)
    before = snapshot(root)
    write_month(small_site.parent / "more", "perp", "BTCUSDT", "2025-01")
    proc = _crashed_ingest(root, small_site.parent / "more", "stage:1")  # killed while staging
    assert proc.returncode == 9, proc.stderr.decode()
    assert list((root / TXN_DIR).iterdir())
    cat = Catalog(root)
    assert "rolled back" in cat.recovered[0] and "run that ingest again" in cat.recovered[0]
    assert snapshot(root) == before and cat.leftovers() == []


def test_a_live_transaction_is_left_alone(tmp_path: Path) -> None:
    """Opening a catalog while another process stages does not touch its staging folder."""
    cat = _catalog_with_two_series(tmp_path / "cat")
    staging = cat.root / TXN_DIR / "99-live" / "venue=binance"
    staging.mkdir(parents=True)
    (staging / "x.parquet").write_bytes(b"staged")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(30)",
            str(cat.root / TXN_DIR),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
        again = Catalog(cat.root)
        assert (staging / "x.parquet").exists() and again.recovered == []
        (lo,) = again.leftovers()
        assert lo.what == "staging" and lo.live
        (p,) = [p for p in check_catalog(again) if p.check == "leftover"]
        assert p.severity == "warning" and "an ingest is writing to this catalog now" in p.message
    finally:
        holder.kill()
        holder.wait()
    assert Catalog(cat.root).recovered and not (cat.root / TXN_DIR).exists()


def test_an_unreadable_journal_is_an_error_on_open(tmp_path: Path) -> None:
    cat = _catalog_with_two_series(tmp_path / "cat")
    (cat.root / TXN_DIR).mkdir()
    (cat.root / TXN_DIR / f"5-dead{JOURNAL_SUFFIX}").write_text("{not json")
    with pytest.raises(DataError, match=r"5-dead.journal: cannot read the commit journal .* half committed"):
        Catalog(cat.root)


def test_writing_while_reading_in_the_same_thread(tmp_path: Path) -> None:
    """A commit upgrades this thread's own read lock instead of waiting for itself."""
    cat = _catalog_with_two_series(tmp_path / "cat")
    with cat.reading():
        with cat.transaction():
            cat.write(_key("spot"), _bars(T0 + np.arange(48, 50) * H))
            cat.write(_key("perp"), _bars(T0 + np.arange(48, 50) * H, 100.5))
        assert cat.read(_key("perp")).num_rows == 50


def test_check_reports_leftovers(tmp_path: Path) -> None:
    cat = _catalog_with_two_series(tmp_path / "cat")
    stray = _key("spot").directory(cat.root) / ".year=2024.parquet.abc123.tmp"
    stray.write_bytes(b"half")
    (cat.root / TXN_DIR / "7-dead" / "venue=binance").mkdir(parents=True)
    (cat.root / TXN_DIR / "7-dead" / "venue=binance" / "year=2024.parquet").write_bytes(b"x")
    problems = [p for p in check_catalog(Catalog(cat.root, recover=False)) if p.check == "leftover"]
    by_path = {p.message.split(":")[0]: p for p in problems}
    assert set(by_path) == {str(stray), str(cat.root / TXN_DIR / "7-dead")}
    assert all(p.severity == "error" for p in problems)
    assert "delete it" in by_path[str(stray)].message
    assert "interrupted before committing" in by_path[str(cat.root / TXN_DIR / "7-dead")].message
    # recovery removes the staging folder; the stray file is only reported
    again = Catalog(cat.root)
    assert [lo.path for lo in again.leftovers()] == [stray]


def test_check_of_a_catalog_holding_only_leftovers_reports_them(tmp_path: Path) -> None:
    root = tmp_path / "cat"
    (root / TXN_DIR / "7-dead").mkdir(parents=True)
    problems = check_catalog(Catalog(root, recover=False))
    assert [(p.severity, p.check) for p in problems] == [("error", "leftover")]


def test_opening_costs_one_stat_when_nothing_to_recover(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = os.path.lexists
    monkeypatch.setattr(os.path, "lexists", lambda p: calls.append(str(p)) or real(p))
    Catalog(tmp_path / "nothing")
    assert calls == [str(tmp_path / "nothing" / TXN_DIR)]
    assert not (tmp_path / "nothing").exists()


# --------------------------------------------------------------------------- checks at ingest
def _site_with_bad_funding(root: Path) -> Path:
    """Two symbols x (spot, perp, funding) x two months; ETH's December funding stored x100."""
    build_site(root, ["BTCUSDT", "ETHUSDT"], ["2024-11", "2024-12"], kinds=("spot", "perp", "funding"))
    bad = [line.split(",") for line in funding_rows("2024-12", rate=0.0004)]
    lines = [f"{t},{h},{float(r) * 100:.8f}" for t, h, r in bad]  # percent stored as a fraction
    write_zip(
        site_path(root, "funding", "ETHUSDT", "2024-12"), lines, "calc_time,funding_interval_hours,last_funding_rate"
    )
    return root


def test_rejected_ingest_of_several_series_writes_nothing(tmp_path: Path) -> None:
    site = _site_with_bad_funding(tmp_path / "site")
    cat = Catalog(tmp_path / "cat")
    with pytest.raises(DataError) as err:
        ingest_binance_vision([site], cat)
    msg = str(err.value)
    assert "ETHUSDT-fundingRate-2024-11.zip .. ETHUSDT-fundingRate-2024-12.zip" in msg  # the files
    assert "binance/funding/ETHUSDT" in msg and "'funding_outlier'" in msg and "column 'rate'" in msg
    assert "2024-12-01T00:00:00Z" in msg and "Nothing was written" in msg
    assert "allow_errors=('funding_outlier',)" in msg
    assert not cat.root.exists()  # not even an empty folder


def test_rejected_ingest_into_a_filled_catalog_changes_nothing(tmp_path: Path) -> None:
    good = tmp_path / "good"
    build_site(good, ["BTCUSDT", "ETHUSDT"], ["2024-10", "2024-11"], kinds=("spot", "perp", "funding"))
    cat = Catalog(tmp_path / "cat")
    ingest_binance_vision([good], cat)
    before = snapshot(cat.root)
    site = _site_with_bad_funding(tmp_path / "site")  # overlaps November, adds December
    with pytest.raises(DataError, match="funding_outlier"):
        ingest_binance_vision([site], cat)
    assert snapshot(cat.root) == before


def test_allowed_error_is_ingested_and_recorded(tmp_path: Path) -> None:
    site = _site_with_bad_funding(tmp_path / "site")
    cat = Catalog(tmp_path / "cat")
    report = ingest_binance_vision([site], cat, allow_errors=("funding_outlier", "funding_scale"))  # x100 is both
    assert cat.read(_key("funding", "ETHUSDT")).num_rows == 2 * 90 + 3  # 30 + 31 days x 3
    (w,) = [w for w in report.writes if w.overridden]
    assert str(w.key) == "binance/funding/ETHUSDT"
    assert w.overridden[0].startswith("funding_outlier: ") and "2024-12-01T00:00:00Z" in w.overridden[0]
    assert any("allowed error funding_outlier" in s for s in report.warnings)
    assert "allowed error funding_outlier" in report.summary()


def test_allow_names_are_checked_before_reading(tmp_path: Path) -> None:
    with pytest.raises(UnknownNameError, match=r"funding_outliers.*did you mean 'funding_outlier'"):
        ingest_binance_vision([tmp_path / "nothing"], Catalog(tmp_path / "cat"), allow_errors=["funding_outliers"])
    with pytest.raises(ConfigError, match="'gaps' is never an error"):
        ingest_checks("gaps")
    assert not (tmp_path / "cat").exists()


def test_ingest_check_only_reports_the_series_written(tmp_path: Path) -> None:
    """Errors in series the ingest does not touch do not block it."""
    cat = Catalog(tmp_path / "cat")
    cat.write(_key("funding", "ETHUSDT"), _funding(T0 + np.arange(6) * 8 * H, rate=0.05))  # bad, stored earlier
    with cat.transaction(verify=ingest_checks()):
        cat.write(_key("funding"), _funding(T0 + np.arange(6) * 8 * H))
    assert cat.has(_key("funding"))
    with pytest.raises(DataError, match="ETHUSDT: check 'funding_outlier'"):  # old rows count as well
        with cat.transaction(verify=ingest_checks()):
            cat.write(_key("funding", "ETHUSDT"), _funding(T0 + np.arange(6, 9) * 8 * H))
    assert cat.read(_key("funding", "ETHUSDT")).num_rows == 6


def test_pair_check_runs_when_only_one_side_is_written(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    t = T0 + np.arange(24) * H
    cat.write(_key("spot", "PEPEUSDT"), _bars(t, 1e-5))
    with pytest.raises(DataError, match=r"1000PEPEUSDT vs PEPEUSDT: check 'basis_divergence'.*multiplier"):
        with cat.transaction(verify=ingest_checks()):
            cat.write(_key("perp", "1000PEPEUSDT"), _bars(t, 1e-5))  # the spot price, not 1000x
    with cat.transaction(verify=ingest_checks()):
        cat.write(_key("perp", "1000PEPEUSDT"), _bars(t, 1e-2))
    assert cat.has(_key("perp", "1000PEPEUSDT"))


def test_check_series_on_tables_matches_the_catalog_check(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "cat")
    t = T0 + np.arange(8) * 8 * H
    cat.write(_key("funding"), _funding(np.delete(t, 4), rate=0.05))
    from_files = check_series({_key("funding"): cat.files(_key("funding"))})
    from_table = check_series({_key("funding"): cat.read(_key("funding"))})
    assert [(p.check, p.message) for p in from_files] == [(p.check, p.message) for p in from_table]
    assert {p.check for p in from_table} == {"funding_outlier", "funding_spacing"}


@pytest.mark.shared_data
def test_real_freqtrade_ingest_passes_the_ingest_checks(tmp_path: Path) -> None:
    """The shared Binance data (BTC, ETH) has no error a check at ingest would stop on."""
    from data.ingest.freqtrade import ingest_freqtrade
    from tests.conftest import SHARED_DATA

    if not (SHARED_DATA / "binance").is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    cat = Catalog(tmp_path / "cat")
    with cat.transaction(verify=ingest_checks()):
        report = ingest_freqtrade(SHARED_DATA / "binance", cat, symbols=["BTCUSDT", "ETHUSDT"])
    assert report.writes and not [w for w in report.writes if w.overridden]
    assert not [p for p in check_catalog(cat) if p.severity == "error"]


def test_a_crashed_catalog_copied_elsewhere_recovers_there(tmp_path: Path, small_site: Path) -> None:
    """The journal names paths relative to the catalog folder: a copy (cp -r) recovers on its own."""
    root = tmp_path / "cat"
    assert _crashed_ingest(root, small_site, "commit:1").returncode == 9
    copy = Path(shutil.copytree(root, tmp_path / "copy"))
    opened = Catalog(copy)
    assert opened.recovered and opened.leftovers() == []
    assert opened.read(_key("funding", "ETHUSDT")).num_rows == (30 + 31) * 3
    assert list((root / TXN_DIR).glob(f"*{JOURNAL_SUFFIX}"))  # the original is untouched until opened


def test_writers_take_turns(tmp_path: Path) -> None:
    """A write waits while another process's transaction holds the catalog, then goes ahead."""
    cat = _catalog_with_two_series(tmp_path / "cat")
    (cat.root / TXN_DIR).mkdir()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(1.0)",
            str(cat.root / TXN_DIR),
        ],
        stdout=subprocess.PIPE,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == b"locked"
    t0 = time.monotonic()
    cat.write(_key("spot"), _bars(T0 + np.arange(48, 50) * H))
    waited = time.monotonic() - t0
    holder.wait()
    assert waited > 0.5 and cat.read(_key("spot")).num_rows == 50
    assert not (cat.root / TXN_DIR).exists()

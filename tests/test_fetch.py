"""The downloader, end to end against a real HTTP server on 127.0.0.1 serving the site's layout."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from data.catalog import Catalog, PartitionKey
from data.errors import ChecksumError, ConfigError, FetchError
from data.fetch import FetchReport, binance_vision_path, fetch_binance_vision
from data.schema import Kind
from tests.binance_vision_fixtures import build_site, site_path

MONTHS = ["2024-01", "2024-02", "2024-03"]
FAST = dict(backoff_seconds=0.001, progress=False, timeout=5.0)


class _Handler(SimpleHTTPRequestHandler):
    """Serves files from ``directory``; paths in ``fail_once`` answer 500 the first time,
    paths in ``always_fail`` always answer 503. Every request is counted."""

    def __init__(self, *args, state, **kwargs):
        self.state = state
        super().__init__(*args, **kwargs)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        with self.state["lock"]:
            self.state["hits"][path] += 1
            first = self.state["hits"][path] == 1
        if path in self.state["always_fail"] or (first and path in self.state["fail_once"]):
            self.send_error(503 if path in self.state["always_fail"] else 500, "injected failure")
            return
        super().do_GET()

    def log_message(self, format, *args):
        pass


@pytest.fixture()
def server(tmp_path: Path):
    """A real HTTP server on 127.0.0.1 (random port) serving ``tmp_path / 'site'``."""
    root = tmp_path / "site"
    root.mkdir()
    state = {"hits": Counter(), "fail_once": set(), "always_fail": set(), "lock": threading.Lock(), "root": root}
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Handler, directory=str(root), state=state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    state["url"] = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def _all_files(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if p.is_file()) if d.exists() else []


def test_fetch_end_to_end_with_retry_missing_and_resume(server, tmp_path: Path) -> None:
    root = server["root"]
    build_site(root, ["BTCUSDT"], MONTHS)
    # Binance never published March mark-price klines here: 404 for the zip and its CHECKSUM.
    gone = site_path(root, "mark", "BTCUSDT", "2024-03")
    gone.unlink()
    gone.with_name(gone.name + ".CHECKSUM").unlink()
    flaky = "/" + binance_vision_path("spot", "BTCUSDT", "2024-02")
    server["fail_once"].add(flaky)

    cat = Catalog(tmp_path / "cat")
    report = fetch_binance_vision(["BTCUSDT"], "2024-01", "2024-03", cat, base_url=server["url"], **FAST)
    assert isinstance(report, FetchReport)
    assert len(report.downloaded) == 6 * 3 - 1 and not report.skipped and not report.unverified
    assert server["hits"][flaky] == 2, "the 500 was retried once"
    assert len(report.missing) == 1
    assert "BTCUSDT mark 2024-03" in report.missing[0] and "404" in report.missing[0]
    assert binance_vision_path("mark", "BTCUSDT", "2024-03") in report.missing[0]
    # Mirrors the site's layout under <catalog>/_downloads, no temporary files left.
    dl = tmp_path / "cat" / "_downloads"
    assert report.download_dir == dl
    assert (dl / binance_vision_path("funding", "BTCUSDT", "2024-02")).is_file()
    assert not [p for p in _all_files(dl) if p.name.endswith(".part")]
    # Ingested.
    assert report.ingest is not None and report.ingest.files_read == 17
    hours = (31 + 29 + 31) * 24
    assert cat.read(PartitionKey("binance", Kind.PERP, "BTCUSDT", "1h")).num_rows == hours
    assert cat.read(PartitionKey("binance", Kind.MARK, "BTCUSDT", "1h")).num_rows == (31 + 29) * 24
    assert cat.read(PartitionKey("binance", Kind.FUNDING, "BTCUSDT")).num_rows == (31 + 29 + 31) * 3
    text = report.summary()
    assert "downloaded 17 files" in text and "1 not published (404)" in text and "missing: BTCUSDT mark 2024-03" in text

    # Resume: nothing is downloaded again (only the small CHECKSUM of the missing month is asked again).
    zip_hits = sum(n for p, n in server["hits"].items() if p.endswith(".zip"))
    again = fetch_binance_vision("BTCUSDT", "2024-01", "2024-03", tmp_path / "cat", base_url=server["url"], **FAST)
    assert again.downloaded == [] and len(again.skipped) == 17 and len(again.missing) == 1
    assert sum(n for p, n in server["hits"].items() if p.endswith(".zip")) == zip_hits + 1  # the 404 one
    assert again.ingest.rows_added == 0


def test_checksum_failure_leaves_nothing_half_written(server, tmp_path: Path) -> None:
    root = server["root"]
    build_site(root, ["BTCUSDT"], MONTHS[:2], kinds=("perp", "funding"))
    bad = site_path(root, "perp", "BTCUSDT", "2024-02")
    bad.with_name(bad.name + ".CHECKSUM").write_text(hashlib.sha256(b"other").hexdigest() + f"  {bad.name}\n")
    cat = Catalog(tmp_path / "cat")
    url = server["url"] + "/" + binance_vision_path("perp", "BTCUSDT", "2024-02")
    with pytest.raises(ChecksumError) as err:
        fetch_binance_vision(
            ["BTCUSDT"], "2024-01", "2024-02", cat, base_url=server["url"], kinds=("perp", "funding"), retries=2, **FAST
        )
    msg = str(err.value)
    assert url in msg and "does not match the published checksum" in msg
    assert server["hits"]["/" + binance_vision_path("perp", "BTCUSDT", "2024-02")] == 3  # 1 + 2 retries
    dl = tmp_path / "cat" / "_downloads"
    assert not (dl / binance_vision_path("perp", "BTCUSDT", "2024-02")).exists()
    assert not [p for p in _all_files(dl) if p.name.endswith(".part") or p.name.startswith(".")]
    assert not list(cat.keys()) and not list((tmp_path / "cat").rglob("*.parquet"))
    # Other files that did verify are kept for the next run.
    assert all(p.name.endswith((".zip", ".CHECKSUM")) for p in _all_files(dl))


def test_retries_exhausted_raise_fetch_error(server, tmp_path: Path) -> None:
    root = server["root"]
    build_site(root, ["ETHUSDT"], ["2024-01"], kinds=("funding",))
    path = "/" + binance_vision_path("funding", "ETHUSDT", "2024-01")
    server["always_fail"].add(path)
    with pytest.raises(FetchError, match=r"fundingRate-2024-01\.zip: still failing after 3 attempts \(HTTP 503"):
        fetch_binance_vision(
            "ETHUSDT",
            "2024-01",
            "2024-01",
            tmp_path / "cat",
            base_url=server["url"],
            kinds=["funding"],
            retries=2,
            **FAST,
        )
    assert server["hits"][path] == 3
    assert not [p for p in _all_files(tmp_path / "cat") if p.suffix in (".zip", ".part", ".parquet")]


def test_connection_refused_is_retried_then_fails(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    with pytest.raises(FetchError, match=r"still failing after 2 attempts"):
        fetch_binance_vision(
            "BTCUSDT",
            "2024-01",
            "2024-01",
            tmp_path / "cat",
            base_url=f"http://127.0.0.1:{port}",
            kinds=["funding"],
            retries=1,
            **FAST,
        )


def test_corrupted_local_file_is_downloaded_again(server, tmp_path: Path) -> None:
    build_site(server["root"], ["BTCUSDT"], ["2024-01"], kinds=("spot",))
    kw = dict(base_url=server["url"], kinds=["spot"], ingest=False, download_dir=tmp_path / "dl", **FAST)
    first = fetch_binance_vision("BTCUSDT", "2024-01", "2024-01", tmp_path / "cat", **kw)
    assert len(first.downloaded) == 1 and first.ingest is None
    local = tmp_path / "dl" / binance_vision_path("spot", "BTCUSDT", "2024-01")
    good = local.read_bytes()
    local.write_bytes(good[:-10])  # truncated by some earlier accident
    second = fetch_binance_vision("BTCUSDT", "2024-01", "2024-01", tmp_path / "cat", **kw)
    assert len(second.downloaded) == 1 and not second.skipped
    assert local.read_bytes() == good
    third = fetch_binance_vision("BTCUSDT", "2024-01", "2024-01", tmp_path / "cat", **kw)
    assert len(third.skipped) == 1 and not third.downloaded


def test_spot_leg_of_a_multiplied_perp(server, tmp_path: Path) -> None:
    # spot priced per token, the 1000x perp per 1000 tokens (else the ingest's basis check refuses them)
    build_site(server["root"], ["PEPEUSDT"], ["2024-01"], kinds=("spot",), price_scale=0.001)
    build_site(server["root"], ["1000PEPEUSDT"], ["2024-01"], kinds=("perp",))
    cat = Catalog(tmp_path / "cat")
    r = fetch_binance_vision(
        "1000PEPEUSDT", "2024-01", "2024-01", cat, base_url=server["url"], kinds=("spot", "perp"), **FAST
    )
    assert not r.missing and len(r.downloaded) == 2
    assert cat.has(PartitionKey("binance", Kind.SPOT, "PEPEUSDT", "1h"))
    assert cat.has(PartitionKey("binance", Kind.PERP, "1000PEPEUSDT", "1h"))


def test_all_missing_is_reported_not_fatal(server, tmp_path: Path) -> None:
    r = fetch_binance_vision(
        "BTCUSDT",
        "2019-01",
        "2019-02",
        tmp_path / "cat",
        base_url=server["url"],
        kinds=("funding",),
        **{**FAST, "progress": True},
    )  # bar off: not a TTY
    assert len(r.missing) == 2 and not r.files
    assert "nothing to ingest" in r.summary()


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (dict(start="2024-1", end="2024-02"), "bad start month"),
        (dict(start="2024-03", end="2024-02"), "before start"),
        (dict(kinds=("spot", "trades")), "unknown kinds"),
        (dict(symbols="btc-usdt"), "bad symbol"),
        (dict(timeframe="1x"), "bad timeframe"),
    ],
)
def test_bad_arguments(tmp_path: Path, args: dict, match: str) -> None:
    kw = dict(symbols="BTCUSDT", start="2024-01", end="2024-02", out=tmp_path / "cat", progress=False)
    kw.update(args)
    with pytest.raises(ConfigError, match=match):
        fetch_binance_vision(**kw)


def test_url_layout() -> None:
    assert (
        binance_vision_path("spot", "BTCUSDT", "2024-01")
        == "data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip"
    )
    assert binance_vision_path("premium", "ETHUSDT", "2025-03", "4h") == (
        "data/futures/um/monthly/premiumIndexKlines/ETHUSDT/4h/ETHUSDT-4h-2025-03.zip"
    )
    assert binance_vision_path("funding", "XTZUSDT", "2025-06") == (
        "data/futures/um/monthly/fundingRate/XTZUSDT/XTZUSDT-fundingRate-2025-06.zip"
    )
    assert np.datetime64("2024-01") < np.datetime64("2024-02")


def test_zip_without_published_checksum_is_reported_unverified(server, tmp_path: Path) -> None:
    build_site(server["root"], ["BTCUSDT"], ["2024-01"], kinds=("funding",))
    p = site_path(server["root"], "funding", "BTCUSDT", "2024-01")
    p.with_name(p.name + ".CHECKSUM").unlink()
    kw = dict(base_url=server["url"], kinds=["funding"], **FAST)
    r = fetch_binance_vision("BTCUSDT", "2024-01", "2024-01", tmp_path / "cat", **kw)
    assert len(r.downloaded) == 1 and len(r.unverified) == 1 and "not verified" in r.summary()
    assert r.ingest.rows_added == 31 * 3
    again = fetch_binance_vision("BTCUSDT", "2024-01", "2024-01", tmp_path / "cat", **kw)
    assert len(again.skipped) == 1 and not again.downloaded

"""Download Binance's public monthly bulk files (data.binance.vision) and ingest them.

:func:`fetch_binance_vision` mirrors the site's layout into a download directory (default
``<catalog>/_downloads/``)::

    data/spot/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip            (+ .CHECKSUM)
    data/futures/um/monthly/klines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip
    data/futures/um/monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip
    data/futures/um/monthly/indexPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip
    data/futures/um/monthly/premiumIndexKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip
    data/futures/um/monthly/fundingRate/BTCUSDT/BTCUSDT-fundingRate-2024-01.zip

Every zip is verified against the sha256 in its published ``.CHECKSUM``. Downloads are
atomic (a temporary file in the target directory, renamed once verified), so an interrupted
or failed run never leaves a partial zip; a re-run skips files already present and verified.
Transient errors (connection errors, timeouts, HTTP 5xx/429) are retried with exponential
back-off; HTTP 404 means Binance has no file for that month and is reported, not fatal.
Only the standard library (:mod:`urllib`) is used for HTTP.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data.catalog import Catalog
from data.errors import ChecksumError, ConfigError, FetchError, UnknownNameError, did_you_mean, unknown_name
from data.ingest import IngestReport
from data.ingest.binance_vision import ingest_binance_vision, read_checksum_text, sha256_file
from data.io import FILE_MODE, write_bytes_atomic
from data.schema import timeframe_minutes
from data.symbols import spot_symbol

__all__ = [
    "FetchReport",
    "month_range",
    "parse_symbols",
    "binance_vision_path",
    "fetch_binance_vision",
    "DEFAULT_BASE_URL",
    "KINDS",
]

DEFAULT_BASE_URL = "https://data.binance.vision"
#: Kinds the downloader knows, in download order.
KINDS: tuple[str, ...] = ("spot", "perp", "mark", "index", "premium", "funding")
_FUTURES_TYPES = {
    "perp": "klines",
    "mark": "markPriceKlines",
    "index": "indexPriceKlines",
    "premium": "premiumIndexKlines",
}
_USER_AGENT = "carry-backtester (+https://github.com/; urllib)"
_CHUNK = 1 << 16
_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")


@dataclass
class FetchReport:
    """What a fetch did.

    Attributes
    ----------
    downloaded:
        URLs downloaded (and verified) in this run.
    skipped:
        URLs whose file was already present and verified (resume).
    missing:
        One message per file Binance does not publish (HTTP 404), naming symbol, kind,
        month and URL.
    unverified:
        URLs downloaded without a published ``.CHECKSUM`` to verify against.
    files:
        Local zip paths (downloaded + skipped), the input of the ingest.
    ingest:
        The :class:`~data.ingest.IngestReport`, or ``None`` when ``ingest=False``.
    download_dir:
        Where the zips are kept (mirroring the site's layout).
    bytes_downloaded:
        Bytes of zip files downloaded in this run.
    """

    download_dir: Path
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    ingest: IngestReport | None = None
    bytes_downloaded: int = 0

    def summary(self) -> str:
        """A human-readable multi-line summary."""
        lines = [
            f"downloaded {len(self.downloaded)} files ({self.bytes_downloaded / 1e6:.1f} MB), "
            f"{len(self.skipped)} already present and verified, {len(self.missing)} not published (404); "
            f"files kept in {self.download_dir}"
        ]
        limit = 20
        lines += [f"missing: {m}" for m in self.missing[:limit]]
        if len(self.missing) > limit:
            lines.append(f"missing: ... and {len(self.missing) - limit} more (see FetchReport.missing)")
        lines += [f"warning: no .CHECKSUM published, not verified: {u}" for u in self.unverified[:limit]]
        if len(self.unverified) > limit:
            lines.append(f"warning: ... and {len(self.unverified) - limit} more unverified files")
        if self.ingest is not None:
            lines.append("ingest: " + self.ingest.summary().replace("\n", "\n  "))
        return "\n".join(lines)


def month_range(start: str, end: str) -> list[str]:
    """``YYYY-MM`` months from ``start`` to ``end``, inclusive; ConfigError naming a bad bound."""
    for name, value in (("start", start), ("end", end)):
        m = _MONTH_RE.match(str(value))
        if not m or not 1 <= int(m.group(2)) <= 12:
            raise ConfigError(f"bad {name} month {value!r}: expected YYYY-MM, e.g. 2024-01")
    a, b = np.datetime64(start, "M"), np.datetime64(end, "M")
    if b < a:
        raise ConfigError(f"end month {end} is before start month {start}")
    return [str(a + i) for i in range(int((b - a).astype(int)) + 1)]


def parse_symbols(symbols: str | Iterable[str], example: str = "BTCUSDT") -> list[str]:
    """Catalog symbols from a list or comma-separated text, upper-cased, each once; ConfigError
    naming a malformed one (``example``: the spelling the message suggests) or an empty list."""
    out: list[str] = []
    for s in symbols.split(",") if isinstance(symbols, str) else symbols:
        s = str(s).strip().upper()
        if s and not _SYMBOL_RE.match(s):
            raise ConfigError(f"bad symbol {s!r}: expected an exchange symbol such as {example}")
        if s and s not in out:
            out.append(s)
    if not out:
        raise ConfigError("no symbols given (e.g. BTCUSDT,ETHUSDT)")
    return out


def binance_vision_path(kind: str, symbol: str, month: str, timeframe: str = "1h") -> str:
    """The site-relative path of a monthly file, e.g.
    ``data/futures/um/monthly/markPriceKlines/BTCUSDT/1h/BTCUSDT-1h-2024-01.zip``.

    For ``kind="spot"`` the symbol is used as given (pass the spot pair, e.g. ``PEPEUSDT``).
    """
    if kind == "spot":
        return f"data/spot/monthly/klines/{symbol}/{timeframe}/{symbol}-{timeframe}-{month}.zip"
    if kind == "funding":
        return f"data/futures/um/monthly/fundingRate/{symbol}/{symbol}-fundingRate-{month}.zip"
    if kind in _FUTURES_TYPES:
        return f"data/futures/um/monthly/{_FUTURES_TYPES[kind]}/{symbol}/{timeframe}/{symbol}-{timeframe}-{month}.zip"
    raise unknown_name("kind", kind, KINDS)


@dataclass(frozen=True)
class _Job:
    kind: str
    symbol: str
    month: str
    rel: str

    def label(self) -> str:
        return f"{self.symbol} {self.kind} {self.month}"


class _Transient(Exception):
    """A retryable failure (connection error, timeout, HTTP 5xx/429, truncated body)."""


class _NotFound(Exception):
    """HTTP 404/410: the file is not published."""


class _Downloader:
    def __init__(self, base_url: str, root: Path, retries: int, backoff: float, timeout: float):
        self.base_url = base_url.rstrip("/")
        self.root = root
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.timeout = timeout

    # ------------------------------------------------------------- HTTP with retries
    def _sleep(self, attempt: int) -> None:
        if self.backoff:
            time.sleep(min(self.backoff * (2**attempt), 60.0))

    def _once(self, url: str, sink) -> int:
        """One GET of ``url`` streamed into ``sink(chunk)``; returns the byte count."""
        req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                length = resp.headers.get("Content-Length")
                total = 0
                while True:
                    chunk = resp.read(_CHUNK)
                    if not chunk:
                        break
                    sink(chunk)
                    total += len(chunk)
                if length is not None and length.isdigit() and total != int(length):
                    raise _Transient(f"truncated response: got {total} of {length} bytes")
                return total
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                raise _NotFound(f"HTTP {exc.code}") from None
            if exc.code >= 500 or exc.code in (408, 429):
                raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
            raise FetchError(f"{url}: HTTP {exc.code} {exc.reason} (not retried)") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"{type(exc).__name__}: {reason}") from None

    def get(self, url: str, sink_factory) -> int:
        """GET with retries. ``sink_factory()`` gives a fresh sink for every attempt.

        Raises ``_NotFound`` on 404 and :class:`FetchError` when retries are exhausted.
        """
        last = ""
        for attempt in range(self.retries + 1):
            try:
                return self._once(url, sink_factory())
            except _Transient as exc:
                last = str(exc)
                if attempt < self.retries:
                    self._sleep(attempt)
        raise FetchError(f"{url}: still failing after {self.retries + 1} attempts ({last})")

    def get_bytes(self, url: str) -> bytes | None:
        buf: list[bytes] = []

        def factory():
            buf.clear()
            return buf.append

        try:
            self.get(url, factory)
        except _NotFound:
            return None
        return b"".join(buf)

    # ------------------------------------------------------------- one file
    def fetch(self, job: _Job) -> tuple[str, Path | None, int, str | None]:
        """Returns ``(status, path, bytes, expected_sha)``; status is downloaded/skipped/missing/unverified."""
        url = f"{self.base_url}/{job.rel}"
        dest = self.root / job.rel
        ck_path = dest.with_name(dest.name + ".CHECKSUM")
        if dest.is_file() and ck_path.is_file():
            try:
                expected = read_checksum_text(ck_path.read_text(errors="replace"), str(ck_path))
            except ChecksumError:
                expected = None
            if expected is not None and sha256_file(dest) == expected:
                return "skipped", dest, 0, expected
        ck_bytes = self.get_bytes(url + ".CHECKSUM")
        expected = read_checksum_text(ck_bytes.decode(errors="replace"), url + ".CHECKSUM") if ck_bytes else None
        if dest.is_file():
            if expected is None:
                # Downloaded before (atomically, so complete) and still nothing to verify against.
                return "skipped", dest, 0, None
            if ck_bytes is not None and sha256_file(dest) == expected:
                write_bytes_atomic(ck_path, ck_bytes)  # present but not yet verified: now it is
                return "skipped", dest, 0, expected

        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            actual = None
            for attempt in range(self.retries + 1):
                state: dict = {}

                def factory():
                    if "fh" in state:
                        state["fh"].close()
                    state["fh"] = open(tmp, "wb")
                    state["sha"] = hashlib.sha256()

                    def sink(chunk: bytes) -> None:
                        state["fh"].write(chunk)
                        state["sha"].update(chunk)

                    return sink

                try:
                    size = self.get(url, factory)
                except _NotFound:
                    return "missing", None, 0, None
                finally:
                    if "fh" in state:
                        state["fh"].close()
                actual = state["sha"].hexdigest()
                if expected is None or actual == expected:
                    break
                if attempt < self.retries:
                    self._sleep(attempt)
            else:
                raise ChecksumError(
                    f"{url}: sha256 {actual} does not match the published checksum {expected} "
                    f"after {self.retries + 1} downloads; the file on the server may be corrupt. "
                    f"Nothing was kept or ingested."
                )
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)  # a no-op once renamed; removes any partial download
        if ck_bytes:
            write_bytes_atomic(ck_path, ck_bytes)
            return "downloaded", dest, size, expected
        return "unverified", dest, size, None


def fetch_binance_vision(
    symbols: str | Iterable[str],
    start: str,
    end: str,
    out: Catalog | Path | str,
    *,
    base_url: str = DEFAULT_BASE_URL,
    download_dir: Path | str | None = None,
    kinds: Iterable[str] = KINDS,
    timeframe: str = "1h",
    retries: int = 4,
    backoff_seconds: float = 0.5,
    progress: bool = True,
    ingest: bool = True,
    timeout: float = 30.0,
    workers: int = 4,
    venue: str = "binance",
    allow_errors: Iterable[str] = (),
) -> FetchReport:
    """Download Binance monthly bulk files for ``symbols`` and months ``start``..``end``, then ingest.

    Parameters
    ----------
    symbols:
        Exchange symbols (``["BTCUSDT", "ETHUSDT"]`` or ``"BTCUSDT,ETHUSDT"``). For the spot
        kind a multiplied perp symbol is mapped to its spot pair (``1000PEPEUSDT`` -> ``PEPEUSDT``).
    start, end:
        First and last month, inclusive, as ``YYYY-MM`` (UTC calendar months).
    out:
        The catalog (or its root directory) to ingest into.
    base_url:
        The site root; ``https://data.binance.vision`` or a mirror.
    download_dir:
        Where zips are kept, mirroring the site's layout (default ``<catalog>/_downloads``).
    kinds:
        Any of ``spot``, ``perp``, ``mark``, ``index``, ``premium``, ``funding``.
    timeframe:
        Kline interval (``1m``, ``1h``, ``4h``, ``1d``...); not used for funding.
    retries:
        Retries per request after the first attempt, for transient errors (connection
        errors, timeouts, HTTP 5xx/408/429) and for checksum mismatches.
    backoff_seconds:
        First back-off delay in seconds; doubled after every retry (capped at 60 s).
    progress:
        Show a tqdm progress bar on stderr (only when stderr is a terminal).
    ingest:
        Ingest the files into ``out`` with :func:`~data.ingest.binance_vision.ingest_binance_vision`.
    timeout:
        Socket timeout per request, in seconds.
    workers:
        Concurrent downloads.
    venue:
        Venue name stored in the catalog.
    allow_errors:
        Data checks whose errors do not refuse the ingest (see :func:`ingest_binance_vision`).

    Returns
    -------
    FetchReport
        Downloaded, skipped (already verified), missing (404) and the ingest report.

    Raises
    ------
    ChecksumError
        A zip still fails its published sha256 after all retries (names the URL; no partial
        file is left and nothing is ingested).
    FetchError
        A request still fails after all retries, or fails for good (e.g. HTTP 403).
    ConfigError
        Bad symbols, months, kinds or timeframe.
    """
    catalog = out if isinstance(out, Catalog) else Catalog(out)
    syms = parse_symbols(symbols)
    months = month_range(start, end)
    kinds = [str(k).strip().lower() for k in ([kinds] if isinstance(kinds, str) else kinds)]
    if not kinds:
        raise ConfigError(f"no kinds given: expected some of {', '.join(KINDS)}")
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        hints = ", ".join(f"{k!r}{did_you_mean(k, KINDS)}" for k in bad)
        raise UnknownNameError(f"unknown kinds {hints}: expected some of {', '.join(KINDS)}")
    timeframe_minutes(timeframe)
    if not re.match(r"^(https?|file)://", str(base_url)):
        raise ConfigError(f"bad base_url {base_url!r}: expected an http(s):// or file:// URL, e.g. {DEFAULT_BASE_URL}")
    root = Path(download_dir) if download_dir is not None else catalog.root / "_downloads"
    report = FetchReport(download_dir=root)

    jobs: list[_Job] = []
    for sym in syms:
        for kind in (k for k in KINDS if k in kinds):
            s = sym
            if kind == "spot":
                try:
                    s = spot_symbol(sym)
                except ConfigError:  # an unknown quote: the symbol as given
                    s = sym
            for month in months:
                jobs.append(_Job(kind, s, month, binance_vision_path(kind, s, month, timeframe)))

    dl = _Downloader(base_url, root, retries, backoff_seconds, timeout)
    show = bool(progress) and sys.stderr.isatty()
    results: dict[_Job, tuple[str, Path | None, int, str | None]] = {}
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), unit="file", desc="binance-vision", disable=not show, file=sys.stderr) as bar:
        with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
            futures = {pool.submit(dl.fetch, job): job for job in jobs}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for fut in done:
                    exc = fut.exception()
                    if exc is not None:
                        for other in pending:
                            other.cancel()
                        wait(pending)  # let running downloads finish cleanly (atomic renames)
                        raise exc
                    results[futures[fut]] = fut.result()
                    bar.update(1)
                bar.set_postfix(
                    new=sum(r[0] in ("downloaded", "unverified") for r in results.values()),
                    skipped=sum(r[0] == "skipped" for r in results.values()),
                    missing=sum(r[0] == "missing" for r in results.values()),
                )

    for job in jobs:  # report in a stable order
        status, path, size, _ = results[job]
        url = f"{dl.base_url}/{job.rel}"
        if status == "missing":
            report.missing.append(f"{job.label()}: not published (HTTP 404) at {url}")
            continue
        if status == "skipped":
            report.skipped.append(url)
        else:
            report.downloaded.append(url)
            report.bytes_downloaded += size
            if status == "unverified":
                report.unverified.append(url)
        if path is not None:
            report.files.append(path)

    if ingest:
        if report.files:
            report.ingest = ingest_binance_vision(report.files, catalog, venue=venue, allow_errors=allow_errors)
        else:
            report.ingest = IngestReport(warnings=["nothing to ingest: no file was found for the requested months"])
    return report

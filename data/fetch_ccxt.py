"""Download Bybit, OKX and Hyperliquid history through ccxt, month by month, and ingest it.

:func:`fetch_ccxt` asks an exchange's public REST API, through ccxt's unified methods, for
last-price bars (``perp``, ``spot``: ``fetch_ohlcv``), mark-price bars (``mark``:
``fetch_mark_ohlcv``) and funding settlements (``funding``: ``fetch_funding_rate_history``),
and keeps what it got as ccxt dumps, one file per UTC calendar month, in a download directory
(default ``<catalog>/_downloads``)::

    ccxt/bybit/perp/BTCUSDT/1h/2024-01.json        fetch_ohlcv rows [timestamp, o, h, l, c, volume]
    ccxt/bybit/mark/BTCUSDT/1h/2024-01.json        fetch_mark_ohlcv rows
    ccxt/bybit/spot/BTCUSDT/1h/2024-01.json        fetch_ohlcv rows of the spot pair BTC/USDT
    ccxt/bybit/funding/BTCUSDT/2024-01.json        fetch_funding_rate_history dicts (with the raw "info")
    ccxt/bybit/funding/BTCUSDT/2024-01.json.complete   sha256 of the month file: the month is whole

The files are exactly what :func:`data.ingest.ccxt_dump.ingest_ccxt` reads; once every month
is downloaded they are ingested in one catalog transaction (all series or none).

Resume and idempotence. A month file is written atomically (a temporary file, renamed) once all
its pages are in, so a crash or a failed request never leaves a partial month. A month that
had ended (by :data:`COMPLETE_AFTER_HOURS`) when it was downloaded gets a ``.complete`` file
holding its sha256: a re-run skips it without a request (and without loading the markets when
every month is complete); the month still running is downloaded again on every run, and a
month file without a valid ``.complete`` (an edit, an interrupted run) is downloaded again.
Re-ingesting the same rows changes nothing, so running twice leaves the catalog byte-identical.

Paging. Every request covers a window that holds at most one page of rows: ``limit`` bars, or
``limit`` hours of funding (no venue settles more often than hourly), so the result never
depends on whether the exchange returns the oldest or the newest rows of a longer range.
Page sizes (:data:`PAGE_LIMITS`) are each exchange's documented maximum: Bybit 1000 bars and
200 settlements, OKX 100 (its history endpoints' maximum), Hyperliquid 5000 candles and 500
settlements. Transient errors (ccxt's ``NetworkError`` family: connection errors, timeouts,
``RateLimitExceeded``, ``ExchangeNotAvailable``, which ccxt raises for HTTP 429 and 5xx answers)
are retried with exponential back-off; any other ccxt error stops the run with a
:class:`~data.errors.FetchError` naming the exchange, symbol, kind and month. ccxt's own rate
limiter (``enableRateLimit``) paces requests.

Symbols are the catalog's: ``BTCUSDT`` is ccxt's linear perpetual ``BTC/USDT:USDT`` (and, for
``spot``, the pair ``BTC/USDT``; ``1000PEPEUSDT``'s spot pair is ``PEPE/USDT``). Hyperliquid's
perps settle in USDC (``BTCUSDC``); its ``kPEPE``, which ccxt spells ``KPEPE/USDC:USDC``, is
stored as ``1000PEPEUSDC`` as the freqtrade ingest stores it (its funding rows name the symbol
``kPEPE/USDC:USDC``, the exchange's spelling, so that the ingest maps it so).

Limits of the venues (reported as notes, never fatal): OKX serves only about the last three
months of funding history; Hyperliquid publishes no mark-price candles (its funding is paid at
the oracle price, for which the perp or index stands in), serves only its most recent 5,000
candles per timeframe, lists no spot pair under the perps' coin names, and settles funding every
hour. ccxt is an optional dependency: ``pip install 'carry[fetch]'``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from data.catalog import Catalog
from data.errors import ConfigError, FetchError, UnknownNameError, did_you_mean
from data.fetch import month_range, parse_symbols
from data.ingest import IngestReport
from data.ingest.ccxt_dump import ingest_ccxt
from data.ingest.table import check_venue
from data.io import write_bytes_atomic, write_text_atomic
from data.quality import ingest_checks
from data.schema import timeframe_minutes
from data.symbols import canonical_symbol, spot_symbol

__all__ = ["fetch_ccxt", "CcxtFetchReport", "EXCHANGES", "KINDS", "PAGE_LIMITS", "COMPLETE_AFTER_HOURS"]

#: Exchanges the downloader knows (ccxt ids).
EXCHANGES: tuple[str, ...] = ("bybit", "okx", "hyperliquid")
#: Kinds it downloads, in download order.
KINDS: tuple[str, ...] = ("spot", "perp", "mark", "funding")
#: Rows per request, per exchange and kind: the exchange's documented maximum.
PAGE_LIMITS: dict[str, dict[str, int]] = {
    "bybit": {"spot": 1000, "perp": 1000, "mark": 1000, "funding": 200},
    "okx": {"spot": 100, "perp": 100, "mark": 100, "funding": 100},
    "hyperliquid": {"perp": 5000, "funding": 500},
}
#: A month counts as complete (never downloaded again) this many hours after it ends.
COMPLETE_AFTER_HOURS = 1

_HOUR_MS = 3_600_000
_EMPTY = b"[]\n"
#: ccxt market types loaded for the perps (and their funding) and for spot pairs.
_MARKET_TYPES = {
    "bybit": {"perp": "linear", "spot": "spot"},
    "okx": {"perp": "swap", "spot": "spot"},
    "hyperliquid": {"perp": "swap"},
}
#: Kinds a venue cannot serve, and why.
_UNSUPPORTED = {
    ("hyperliquid", "mark"): (
        "Hyperliquid publishes no mark-price candles (ccxt has no fetch_mark_ohlcv for it); its funding is paid "
        "at the oracle price, for which the perp (or an index) stands in"
    ),
    ("hyperliquid", "spot"): (
        "Hyperliquid lists no spot pair under its perps' coin names (its spot tokens are wrapped, e.g. UBTC/USDC)"
    ),
}
#: Why a month may come back empty, per venue and kind.
_EMPTY_HINTS = {
    ("okx", "funding"): "OKX serves only about the last 3 months of funding history",
    ("hyperliquid", "perp"): "Hyperliquid serves only its most recent 5,000 candles per timeframe",
}


def _now_ms() -> int:
    """The current time in UTC milliseconds (tests replace it)."""
    return int(time.time() * 1000)


def _month_bounds(month: str) -> tuple[int, int]:
    """``(first ms, first ms of the next month)`` of a ``YYYY-MM`` month."""
    m = np.datetime64(month, "M")
    return int(m.astype("datetime64[ms]").astype(np.int64)), int((m + 1).astype("datetime64[ms]").astype(np.int64))


@dataclass
class CcxtFetchReport:
    """What a ccxt fetch did.

    Attributes
    ----------
    exchange, venue:
        The ccxt exchange id and the venue name stored in the catalog.
    download_dir:
        Where the month files are kept (``<download_dir>/ccxt/<exchange>/...``).
    downloaded:
        Month files downloaded in this run (``"BTCUSDT perp 2024-01"``).
    skipped:
        Complete month files already present and verified (resume).
    running:
        Months downloaded that had not ended yet: downloaded again by the next run.
    empty:
        One message per month the exchange returned no rows for, with the likely reason.
    notes:
        Kinds or symbols the venue cannot serve (skipped, not fatal).
    files:
        Month files holding rows (downloaded + skipped), the input of the ingest.
    requests:
        Calls to the exchange's API in this run (retries included; loading the markets, which may
        take a few HTTP requests, counts as one).
    rows_downloaded:
        Rows in the month files downloaded in this run.
    ingest:
        The :class:`~data.ingest.IngestReport`, or ``None`` when ``ingest=False``.
    """

    exchange: str
    venue: str
    download_dir: Path
    downloaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    running: list[str] = field(default_factory=list)
    empty: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    requests: int = 0
    rows_downloaded: int = 0
    ingest: IngestReport | None = None

    def summary(self) -> str:
        """A human-readable multi-line summary."""
        lines = [
            f"{self.exchange}: downloaded {len(self.downloaded)} month files ({self.rows_downloaded} rows, "
            f"{self.requests} requests), {len(self.skipped)} already complete, {len(self.empty)} empty; "
            f"files kept in {self.download_dir / 'ccxt' / self.exchange}"
        ]
        lines += [f"note: {n}" for n in self.notes]
        limit = 20
        lines += [f"empty: {m}" for m in self.empty[:limit]]
        if len(self.empty) > limit:
            lines.append(f"empty: ... and {len(self.empty) - limit} more (see CcxtFetchReport.empty)")
        if self.running:
            lines.append(f"still running, downloaded again next time: {', '.join(self.running[:limit])}")
        if self.ingest is not None:
            lines.append("ingest: " + self.ingest.summary().replace("\n", "\n  "))
        return "\n".join(lines)


@dataclass(frozen=True)
class _Job:
    kind: str
    symbol: str  # catalog symbol (for spot: the spot pair, PEPEUSDT for 1000PEPEUSDT)
    month: str
    path: Path

    def label(self) -> str:
        return f"{self.symbol} {self.kind} {self.month}"

    @property
    def marker(self) -> Path:
        return self.path.with_name(self.path.name + ".complete")


def _dump(rows: list[Any]) -> bytes:
    """A month's rows as a JSON list, one row per line, keys sorted (the same rows, the same bytes)."""
    if not rows:
        return _EMPTY
    return ("[\n" + ",\n".join(json.dumps(r, sort_keys=True, separators=(",", ":")) for r in rows) + "\n]\n").encode()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _is_complete(job: _Job) -> bool:
    """The month file is present, marked complete, and matches the sha256 of its marker."""
    if not (job.path.is_file() and job.marker.is_file()):
        return False
    expected = job.marker.read_text(errors="replace").split(maxsplit=1)[:1]
    return bool(expected) and expected[0] == _sha256(job.path)


def _import_ccxt() -> Any:
    try:
        import ccxt
    except ImportError:
        raise ConfigError(
            "carry data fetch ccxt needs ccxt, which is not installed: pip install 'carry[fetch]'"
        ) from None
    return ccxt


class _Session:
    """One exchange: markets, symbol mapping, and requests with retries."""

    def __init__(
        self, ccxt: Any, exchange: Any, exchange_id: str, retries: int, backoff: float, report: CcxtFetchReport
    ):
        self.ccxt = ccxt
        self.ex = exchange
        self.id = exchange_id
        self.retries = max(0, int(retries))
        self.backoff = max(0.0, float(backoff))
        self.report = report
        self.perps: dict[str, str] | None = None  # catalog symbol -> ccxt symbol
        self.spots: dict[str, str] = {}
        self.native: dict[str, str] = {}  # ccxt symbol -> the exchange's spelling, where they differ (kPEPE)

    def call(self, what: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` with retries on transient ccxt errors; others become a FetchError naming ``what``."""
        last = ""
        for attempt in range(self.retries + 1):
            self.report.requests += 1
            try:
                return fn()
            except self.ccxt.NetworkError as exc:  # connection, timeout, rate limit, exchange not available
                last = f"{type(exc).__name__}: {_short(exc)}"
                if attempt < self.retries and self.backoff:
                    time.sleep(min(self.backoff * (2**attempt), 60.0))
            except self.ccxt.BaseError as exc:
                raise FetchError(f"{self.id} {what}: {type(exc).__name__}: {_short(exc)} (not retried)") from None
        raise FetchError(f"{self.id} {what}: still failing after {self.retries + 1} attempts ({last})")

    def load_markets(self, kinds: Iterable[str]) -> None:
        """Load the markets of the types ``kinds`` need and map catalog symbols to ccxt symbols."""
        if self.perps is not None:
            return
        types = _MARKET_TYPES[self.id]
        wanted = list(dict.fromkeys(types["spot" if k == "spot" else "perp"] for k in kinds))
        if not self.ex.markets:
            options = dict(self.ex.options.get("fetchMarkets") or {})
            options["types"] = wanted
            self.ex.options["fetchMarkets"] = options
        markets = self.call("loading markets", self.ex.load_markets)
        self.perps = {}
        for m in sorted(markets.values(), key=lambda m: str(m.get("symbol"))):
            if m.get("swap") and m.get("linear") and not m.get("expiry"):
                sym, native = _catalog_name(m)
                self.perps.setdefault(sym, m["symbol"])
                if native != m["symbol"]:
                    self.native[m["symbol"]] = native
            elif m.get("spot"):
                self.spots.setdefault(canonical_symbol(m.get("symbol", "")), m["symbol"])

    def perp(self, symbol: str) -> str:
        """The ccxt symbol of the linear perpetual ``symbol`` (a catalog symbol)."""
        assert self.perps is not None
        if symbol not in self.perps:
            example = "BTCUSDC, 1000PEPEUSDC for kPEPE" if self.id == "hyperliquid" else "BTCUSDT, BTCUSDC"
            raise self._unknown(symbol, self.perps, f"linear perpetuals, named as in the catalog (e.g. {example})")
        return self.perps[symbol]

    def spot(self, symbol: str) -> str:
        """The ccxt symbol of the spot pair ``symbol`` (a catalog symbol)."""
        if symbol not in self.spots:
            raise self._unknown(symbol, self.spots, "spot pairs, named as in the catalog (e.g. BTCUSDT)")
        return self.spots[symbol]

    def _unknown(self, symbol: str, names: dict[str, str], what: str) -> UnknownNameError:
        close = difflib.get_close_matches(symbol, list(names), n=3, cutoff=0.6)
        hint = f" (close matches: {', '.join(close)})" if close else did_you_mean(symbol, names)
        return UnknownNameError(f"unknown symbol {symbol!r} on {self.id}{hint}: not one of its {len(names)} {what}")


def _catalog_name(market: dict) -> tuple[str, str]:
    """``(catalog symbol, symbol as the exchange spells the coin)`` of a ccxt perp market.

    ccxt upper-cases Hyperliquid's coin names (``kPEPE`` is ``KPEPE/USDC:USDC``), losing the
    thousands prefix; its ``baseName`` keeps it: ``("1000PEPEUSDC", "kPEPE/USDC:USDC")``.
    """
    base = market.get("baseName")
    if not isinstance(base, str) or not base:
        base = market["base"]
    native = f"{base}/{market['quote']}:{market['settle']}"
    return canonical_symbol(native), native


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _pages(job: _Job, limit: int, step_ms: int, now: int) -> list[tuple[int, int]]:
    """``(since, until)`` windows (ms, ``until`` inclusive) covering ``job``'s month up to ``now``;
    each holds at most ``limit`` rows ``step_ms`` apart."""
    first, end = _month_bounds(job.month)
    out = []
    cursor = first
    while cursor < end and cursor <= now:
        until = min(cursor + limit * step_ms, end) - 1
        out.append((cursor, until))
        cursor = until + 1
    return out


def _row_time(row: Any) -> int | None:
    t = row[0] if isinstance(row, list) and row else row.get("timestamp") if isinstance(row, dict) else None
    return int(t) if isinstance(t, (int, float)) else None


def _download(session: _Session, job: _Job, limit: int, timeframe: str, now: int) -> list[Any]:
    """Every row of ``job``'s month up to ``now`` (sorted by time, one per time), page by page."""
    ex = session.ex
    first, end = _month_bounds(job.month)
    end = min(end, now + 1)
    if job.kind == "funding":
        market = session.perp(job.symbol)
        step = _HOUR_MS
    else:
        market = session.spot(job.symbol) if job.kind == "spot" else session.perp(job.symbol)
        step = timeframe_minutes(timeframe) * 60_000
    rows: dict[int, Any] = {}
    for since, until in _pages(job, limit, step, now):
        what = f"{job.symbol} {job.kind} {job.month} ({market}, from {np.datetime64(since, 'ms')} UTC)"
        if job.kind == "funding":
            params = {"after": until + 1} if session.id == "okx" else {"until": until}
            page = session.call(what, lambda: ex.fetch_funding_rate_history(market, since, limit, params))
        elif job.kind == "mark":
            page = session.call(what, lambda: ex.fetch_mark_ohlcv(market, timeframe, since, limit, {"until": until}))
        else:
            page = session.call(what, lambda: ex.fetch_ohlcv(market, timeframe, since, limit, {"until": until}))
        native = session.native.get(market)
        for row in page or []:
            t = _row_time(row)
            if t is not None and first <= t < end:
                if native and isinstance(row, dict) and row.get("symbol") == market:
                    row = {**row, "symbol": native}  # the ingest maps kPEPE/USDC:USDC to 1000PEPEUSDC
                rows[t] = row
    return [rows[t] for t in sorted(rows)]


def fetch_ccxt(
    exchange_id: str,
    symbols: str | Iterable[str],
    kinds: str | Iterable[str],
    start: str,
    end: str,
    out: Catalog | Path | str,
    *,
    timeframe: str = "1h",
    download_dir: Path | str | None = None,
    venue: str | None = None,
    exchange: Any = None,
    api_url: str | None = None,
    page_limit: int | None = None,
    retries: int = 4,
    backoff_seconds: float = 0.5,
    timeout: float = 30.0,
    progress: bool = True,
    ingest: bool = True,
    allow_errors: Iterable[str] = (),
) -> CcxtFetchReport:
    """Download an exchange's history through ccxt for months ``start``..``end``, then ingest it.

    Parameters
    ----------
    exchange_id:
        ``bybit``, ``okx`` or ``hyperliquid`` (ccxt ids).
    symbols:
        Catalog symbols (``["BTCUSDT", "ETHUSDT"]`` or ``"BTCUSDT,ETHUSDT"``; Hyperliquid's perps
        are USDC-settled: ``BTCUSDC``, ``1000PEPEUSDC`` for ``kPEPE``), mapped to ccxt's linear
        perpetuals (``BTC/USDT:USDT``) through the markets ccxt loads. For ``spot`` the perp's
        spot pair is used (``1000PEPEUSDT`` -> ``PEPE/USDT``); a coin without one is noted.
    kinds:
        Any of ``spot``, ``perp``, ``mark``, ``funding`` (a list or ``"perp,mark,funding"``).
        Kinds the venue does not serve (Hyperliquid: mark, spot) are skipped with a note.
    start, end:
        First and last month, inclusive, as ``YYYY-MM`` (UTC calendar months); months that
        have not begun are skipped.
    out:
        The catalog (or its root directory) to ingest into.
    timeframe:
        Bar length of ``spot``/``perp``/``mark`` (``1m``, ``1h``, ``4h``, ``1d``...; one the
        exchange offers); not used for funding.
    download_dir:
        Where month files are kept (default ``<catalog>/_downloads``); see the module docstring.
    venue:
        Venue name stored in the catalog (default ``exchange_id``).
    exchange:
        A ccxt exchange instance to use instead of a new one (its settings, e.g. proxies or
        ``enableRateLimit``, are kept; the market types it loads are set to those needed).
    api_url:
        Root of the exchange's REST API, replacing ccxt's (a mirror, or a local test server).
    page_limit:
        Rows per request; default and upper bound: the exchange's maximum (:data:`PAGE_LIMITS`).
    retries:
        Retries per request after the first attempt, for transient errors.
    backoff_seconds:
        First back-off delay in seconds; doubled after every retry (capped at 60 s).
    timeout:
        Timeout per request, in seconds (for an exchange created here).
    progress:
        Show a tqdm progress bar on stderr (only when stderr is a terminal).
    ingest:
        Ingest the month files with :func:`~data.ingest.ccxt_dump.ingest_ccxt`, all series in
        one catalog transaction.
    allow_errors:
        Data checks whose errors do not refuse the ingest (see :func:`ingest_ccxt`).

    Returns
    -------
    CcxtFetchReport
        Downloaded, skipped (already complete), empty months, notes and the ingest report.

    Raises
    ------
    ConfigError
        ccxt not installed, or bad exchange, symbols, kinds, months, timeframe or venue
        (:class:`~data.errors.UnknownNameError` for an unknown symbol, with close matches).
    FetchError
        A request still failing after all retries, or failing for good (names the exchange,
        symbol, kind and month). Months downloaded before it are kept; nothing is ingested.
    DataError
        The ingest refused the data (see :func:`ingest_ccxt`); nothing is written.
    """
    exchange_id = str(exchange_id).strip().lower()
    if exchange_id not in EXCHANGES:
        raise UnknownNameError(
            f"unknown exchange {exchange_id!r}{did_you_mean(exchange_id, EXCHANGES)}: expected one of "
            f"{', '.join(EXCHANGES)} (Binance: carry data fetch binance-vision)"
        )
    catalog = out if isinstance(out, Catalog) else Catalog(out)
    syms = parse_symbols(symbols, example="BTCUSDT (Hyperliquid: BTCUSDC)")
    months = month_range(start, end)
    wanted = _kinds(kinds)
    timeframe_minutes(timeframe, "--timeframe")
    venue = check_venue(exchange_id if venue is None else venue)
    ingest_checks(allow_errors)  # a misspelt check name fails before any request
    if page_limit is not None and (not isinstance(page_limit, int) or page_limit < 1):
        raise ConfigError(f"bad page_limit {page_limit!r}: expected a whole number of rows per request, e.g. 100")
    ccxt = _import_ccxt()
    exchange = _open_exchange(ccxt, exchange_id, exchange, api_url, timeout, timeframe)

    root_dir = Path(download_dir) if download_dir is not None else catalog.root / "_downloads"
    report = CcxtFetchReport(exchange=exchange_id, venue=venue, download_dir=root_dir)
    now = _now_ms()
    future = [m for m in months if _month_bounds(m)[0] > now]
    if future:
        report.notes.append(f"{future[0]}..{future[-1]}: not begun yet, skipped")
        months = [m for m in months if m not in future]
    kinds_here = []
    for kind in wanted:
        why = _UNSUPPORTED.get((exchange_id, kind))
        if why:
            report.notes.append(f"{kind} skipped: {why}")
        else:
            kinds_here.append(kind)
    jobs = _plan(root_dir / "ccxt" / exchange_id, syms, kinds_here, months, timeframe)

    session = _Session(ccxt, exchange, exchange_id, retries, backoff_seconds, report)
    done = {job: _is_complete(job) for job in jobs}
    if not all(done.values()):  # when every month is complete: no request at all, not even the markets
        session.load_markets(kinds_here)
        for sym in syms:  # an unknown symbol fails before any download
            if kinds_here != ["spot"]:
                session.perp(sym)
            else:  # spot only: the pair must exist
                session.spot(_spot_of(sym))
        missing = sorted({j.symbol for j in jobs if j.kind == "spot" and j.symbol not in session.spots})
        for s in missing:
            report.notes.append(f"spot {s} skipped: {exchange_id} lists no spot pair {s}")
        jobs = [j for j in jobs if not (j.kind == "spot" and j.symbol in missing)]

    limits = PAGE_LIMITS[exchange_id]
    show = bool(progress) and sys.stderr.isatty()
    from tqdm.auto import tqdm

    with tqdm(total=len(jobs), unit="month", desc=exchange_id, disable=not show, file=sys.stderr) as bar:
        for job in jobs:
            bar.update(1)
            if done[job]:
                report.skipped.append(job.label())
                if job.path.stat().st_size != len(_EMPTY):
                    report.files.append(job.path)
                continue
            limit = min(page_limit or limits[job.kind], limits[job.kind])
            rows = _download(session, job, limit, timeframe, now)
            write_bytes_atomic(job.path, _dump(rows))
            complete = _month_bounds(job.month)[1] + COMPLETE_AFTER_HOURS * _HOUR_MS <= now
            if complete:
                write_text_atomic(job.marker, f"{_sha256(job.path)}  {job.path.name}\n")
            else:
                job.marker.unlink(missing_ok=True)
                report.running.append(job.label())
            report.downloaded.append(job.label())
            report.rows_downloaded += len(rows)
            if rows:
                report.files.append(job.path)
            else:
                hint = _EMPTY_HINTS.get(
                    (exchange_id, job.kind), "not listed then, delisted, or beyond the history the exchange serves"
                )
                report.empty.append(f"{job.label()}: {exchange_id} returned no rows ({hint})")

    if ingest:
        report.ingest = _ingest(report, catalog, jobs, timeframe, venue, allow_errors)
    return report


def _kinds(kinds: str | Iterable[str]) -> list[str]:
    """The kinds asked for, in download order; an unknown one is an error with a hint."""
    wanted = [str(k).strip().lower() for k in (kinds.split(",") if isinstance(kinds, str) else kinds)]
    wanted = [k for k in wanted if k]
    if not wanted:
        raise ConfigError(f"no kinds given: expected some of {', '.join(KINDS)}")
    bad = [k for k in wanted if k not in KINDS]
    if bad:
        hints = ", ".join(f"{k!r}{did_you_mean(k, KINDS)}" for k in bad)
        raise UnknownNameError(f"unknown kinds {hints}: expected some of {', '.join(KINDS)}")
    return [k for k in KINDS if k in wanted]


def _open_exchange(ccxt: Any, exchange_id: str, exchange: Any, api_url: str | None, timeout: float, timeframe: str):
    """The ccxt exchange to use (a new one, rate-limited, unless given), pointed at ``api_url``."""
    if exchange is None:
        exchange = getattr(ccxt, exchange_id)({"enableRateLimit": True, "timeout": int(timeout * 1000)})
    elif getattr(exchange, "id", None) != exchange_id:
        raise ConfigError(f"the exchange given is ccxt's {getattr(exchange, 'id', exchange)!r}, not {exchange_id!r}")
    if api_url is not None:
        if not str(api_url).startswith(("http://", "https://")):
            raise ConfigError(f"bad --api-url {api_url!r}: expected an http(s):// URL")
        api = exchange.urls.get("api")
        root = str(api_url).rstrip("/")
        exchange.urls["api"] = {k: root for k in api} if isinstance(api, dict) else root
    if timeframe not in (exchange.timeframes or {}):
        offered = list(exchange.timeframes or {})
        raise UnknownNameError(
            f"--timeframe {timeframe!r} is not offered by {exchange_id}{did_you_mean(timeframe, offered)}; "
            f"valid: {', '.join(offered)}"
        )
    return exchange


def _plan(base: Path, symbols: list[str], kinds: list[str], months: list[str], timeframe: str) -> list[_Job]:
    """One job per symbol, kind and month, with its file under ``base`` (``<download_dir>/ccxt/<exchange>``)."""
    jobs: list[_Job] = []
    for sym in symbols:
        for kind in kinds:
            s = _spot_of(sym) if kind == "spot" else sym
            folder = base / kind / s if kind == "funding" else base / kind / s / timeframe
            jobs += [_Job(kind, s, m, folder / f"{m}.json") for m in months]
    return jobs


def _spot_of(symbol: str) -> str:
    try:
        return spot_symbol(symbol)
    except ConfigError:  # an unknown quote: the symbol as given
        return symbol


def _ingest(
    report: CcxtFetchReport,
    catalog: Catalog,
    jobs: list[_Job],
    timeframe: str,
    venue: str,
    allow_errors: Iterable[str],
) -> IngestReport:
    """Every series' month files through :func:`ingest_ccxt`, all in one catalog transaction."""
    have = set(report.files)
    groups: dict[tuple[str, str], list[Path]] = {}
    for job in jobs:
        if job.path in have:
            groups.setdefault((job.kind, job.symbol), []).append(job.path)
    result = IngestReport()
    if not groups:
        result.warnings.append("nothing to ingest: the exchange returned no rows for the requested months")
        return result
    allow = list(allow_errors)
    # the ingests below join this transaction: one commit; their equal verifications
    # (ingest_checks(allow)) run once, on every staged series, at the commit
    with catalog.transaction():
        for (kind, symbol), paths in groups.items():
            bars = kind != "funding"
            part = ingest_ccxt(
                paths,
                catalog,
                symbol=symbol,
                venue=venue,
                kind=kind,
                timeframe=timeframe if bars else None,
                allow_errors=allow,
            )
            result.merge(part)
    # the checks ran at the commit, after each ingest_ccxt returned: the errors they were told to allow
    result.warnings += [f"{w.key}: allowed error {o}" for w in result.writes for o in w.overridden]
    return result

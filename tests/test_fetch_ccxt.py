"""The ccxt downloader, end to end against a local HTTP server that speaks each venue's REST API.

The server (127.0.0.1, a random port; no other network) answers the endpoints ccxt calls for
Bybit (v5 ``instruments-info``, ``kline``, ``mark-price-kline``, ``funding/history``), OKX (v5
``public/instruments``, ``market/[history-][mark-price-]candles``, ``public/funding-rate-history``)
and Hyperliquid (``POST /info``: ``spotMeta``, ``metaAndAssetCtxs``, ``candleSnapshot``,
``fundingHistory``) in their documented response formats, from series generated here. It pages
as the venues do (Bybit and OKX: the newest rows of the requested range first, capped at the
page maximum; Hyperliquid: oldest first), so a downloader that relied on the wrong end of a
range would lose rows. Every request is counted, and failures can be injected.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pytest

ccxt = pytest.importorskip("ccxt")

from data import fetch_ccxt as fc  # noqa: E402
from data.catalog import Catalog, PartitionKey  # noqa: E402
from data.errors import ConfigError, DataError, FetchError, UnknownNameError  # noqa: E402
from data.schema import Kind  # noqa: E402

H = 3_600_000
T0 = int(np.datetime64("2024-01-01", "ms").astype(np.int64))
T1 = int(np.datetime64("2024-03-01", "ms").astype(np.int64))  # January and February: a month boundary
FEB = int(np.datetime64("2024-02-01", "ms").astype(np.int64))
MONTHS = ("2024-01", "2024-02")


# --------------------------------------------------------------------------- fixture series
@dataclass
class Coin:
    """One coin's hourly bars (perp, mark, spot) and funding settlements, as exact decimals."""

    name: str
    perp: list[tuple] = field(default_factory=list)  # (time, open, high, low, close, volume)
    mark: list[tuple] = field(default_factory=list)  # (time, open, high, low, close)
    spot: list[tuple] = field(default_factory=list)
    funding: list[tuple] = field(default_factory=list)  # (time as stamped, rate)


def make_coin(name: str, price: float, seed: int, funding_hours: int, stamp_ms: int = 0, digits: int = 2) -> Coin:
    """Hourly bars over January and February 2024 (prices with ``digits`` decimals) and settlements
    every ``funding_hours``, stamped ``stamp_ms`` after the hour (Hyperliquid's run late)."""
    rng = np.random.default_rng(seed)
    times = np.arange(T0, T1, H)
    close = np.round(price * np.exp(np.cumsum(rng.normal(0, 0.002, len(times)))), digits)
    open_ = np.round(np.concatenate([[price], close[:-1]]), digits)
    coin = Coin(name)

    def px(*values: float, scale: float = 1.0) -> list[float]:
        return [round(v * scale, digits) for v in values]

    for i, t in enumerate(times):
        o, c = float(open_[i]), float(close[i])
        hi, lo = round(max(o, c) * 1.001, digits), round(min(o, c) * 0.999, digits)
        coin.perp.append((int(t), o, hi, lo, c, round(float(rng.uniform(10, 100)), 3)))
        coin.mark.append((int(t), *px(o, hi, lo, c, scale=1.0001)))
        coin.spot.append((int(t), *px(o, hi, lo, c, scale=0.9999), round(float(rng.uniform(5, 50)), 3)))
    for t in range(T0, T1, funding_hours * H):
        coin.funding.append((t + stamp_ms, round(float(rng.normal(1e-4, 5e-5)), 8)))
    return coin


def _s(x: float) -> str:
    return repr(float(x)) if not float(x).is_integer() else str(float(x))


def _window(rows: list[tuple], lo: int, hi: int, limit: int, newest_first: bool) -> list[tuple]:
    """Rows with lo <= time <= hi, at most ``limit``: the newest ones (Bybit, OKX) or the oldest (Hyperliquid)."""
    inside = [r for r in rows if lo <= r[0] <= hi]
    return inside[-limit:][::-1] if newest_first else inside[:limit]


# --------------------------------------------------------------------------- the venues' APIs
class Bybit:
    max_bars, max_funding = 1000, 200

    def __init__(self, coins: dict[str, Coin], quote: str = "USDT", spot: tuple[str, ...] | None = None):
        self.coins = {f"{c.name}{quote}": c for c in coins.values()}
        self.quote = quote
        self.spot = [f"{c}{quote}" for c in spot] if spot is not None else list(self.coins)  # coins with a spot pair

    def wrap(self, result: dict) -> dict:
        return {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}, "time": 1709251200000}

    def __call__(self, method: str, path: str, q: dict, body: Any) -> tuple[int, Any]:
        if path == "/v5/market/instruments-info":
            if q.get("status") == "PreLaunch":
                return 200, self.wrap({"category": q["category"], "list": [], "nextPageCursor": ""})
            listed = [s for s in self.coins if q["category"] != "spot" or s in self.spot]
            rows = [self.instrument(sym, self.coins[sym], q["category"]) for sym in listed]
            return 200, self.wrap({"category": q["category"], "list": rows, "nextPageCursor": ""})
        coin = self.coins[q["symbol"]]
        if path == "/v5/market/funding/history":
            limit = min(int(q.get("limit", 200)), self.max_funding)
            rows = _window(coin.funding, int(q["startTime"]), int(q["endTime"]), limit, True)
            out = [{"symbol": q["symbol"], "fundingRate": _s(r), "fundingRateTimestamp": str(t)} for t, r in rows]
            return 200, self.wrap({"category": q["category"], "list": out})
        limit = min(int(q.get("limit", 200)), self.max_bars)
        lo, hi = int(q["start"]), int(q.get("end", 2**62))
        if path == "/v5/market/kline":
            series = coin.spot if q["category"] == "spot" else coin.perp
            rows = _window(series, lo, hi, limit, True)
            out = [[str(r[0]), *map(_s, r[1:5]), _s(r[5]), _s(round(r[5] * r[4], 4))] for r in rows]
        elif path == "/v5/market/mark-price-kline":
            out = [[str(r[0]), *map(_s, r[1:5])] for r in _window(coin.mark, lo, hi, limit, True)]
        else:
            return 404, {"retCode": 10404, "retMsg": f"no route {path}"}
        return 200, self.wrap({"category": q["category"], "symbol": q["symbol"], "list": out})

    def instrument(self, sym: str, coin: Coin, category: str) -> dict:
        base = {
            "symbol": sym,
            "baseCoin": coin.name,
            "quoteCoin": self.quote,
            "status": "Trading",
            "priceFilter": {"tickSize": "0.01", "minPrice": "0.01", "maxPrice": "1999999.98"},
        }
        if category == "spot":
            return {
                **base,
                "innovation": "0",
                "marginTrading": "both",
                "lotSizeFilter": {
                    "basePrecision": "0.000001",
                    "quotePrecision": "0.00000001",
                    "minOrderQty": "0.000048",
                    "maxOrderQty": "71.73956243",
                    "minOrderAmt": "1",
                    "maxOrderAmt": "2000000",
                },
            }
        return {
            **base,
            "contractType": "LinearPerpetual",
            "settleCoin": self.quote,
            "launchTime": "1585526400000",
            "deliveryTime": "0",
            "deliveryFeeRate": "",
            "priceScale": "2",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "lotSizeFilter": {
                "maxOrderQty": "1190.000",
                "minOrderQty": "0.001",
                "qtyStep": "0.001",
                "postOnlyMaxOrderQty": "1190.000",
                "minNotionalValue": "5",
            },
            "unifiedMarginTrade": True,
            "fundingInterval": 480,
            "copyTrading": "both",
            "upperFundingRate": "0.00375",
            "lowerFundingRate": "-0.00375",
        }


class Okx:
    max_rows = 100  # the history endpoints' maximum
    ct_val = 0.01  # BTC per contract: a swap's "vol" counts contracts, "volCcy" coins

    def __init__(self, coins: dict[str, Coin], funding_from: int = 0):
        self.coins = {c.name: c for c in coins.values()}
        self.funding_from = funding_from  # OKX serves funding from here on only

    def coin(self, inst: str) -> Coin:
        return self.coins[inst.split("-")[0]]

    def __call__(self, method: str, path: str, q: dict, body: Any) -> tuple[int, Any]:
        if path == "/api/v5/public/instruments":
            data = [self.instrument(c.name, q["instType"]) for c in self.coins.values()]
            return 200, {"code": "0", "msg": "", "data": data}
        coin = self.coin(q["instId"])
        limit = min(int(q.get("limit", 100)), self.max_rows)
        lo = int(q.get("before", -1)) + 1  # before/after: newer/older than, exclusive
        hi = int(q["after"]) - 1 if "after" in q else 2**62
        if path == "/api/v5/public/funding-rate-history":
            rows = _window([f for f in coin.funding if f[0] >= self.funding_from], lo, hi, limit, True)
            data = [
                {
                    "instType": "SWAP",
                    "instId": q["instId"],
                    "fundingRate": _s(r * 1.1),
                    "realizedRate": _s(r),
                    "fundingTime": str(t),
                    "method": "current_period",
                    "formulaType": "withRate",
                }
                for t, r in rows
            ]
            return 200, {"code": "0", "msg": "", "data": data}
        if path in ("/api/v5/market/candles", "/api/v5/market/history-candles"):
            spot = not q["instId"].endswith("-SWAP")
            rows = _window(coin.spot if spot else coin.perp, lo, hi, limit, True)
            data = [
                [
                    str(r[0]),
                    *map(_s, r[1:5]),
                    _s(r[5]) if spot else _s(round(r[5] / self.ct_val, 3)),
                    _s(r[5]),
                    _s(round(r[5] * r[4], 4)),
                    "1",
                ]
                for r in rows
            ]
        elif path in ("/api/v5/market/mark-price-candles", "/api/v5/market/history-mark-price-candles"):
            data = [[str(r[0]), *map(_s, r[1:5]), "1"] for r in _window(coin.mark, lo, hi, limit, True)]
        else:
            return 404, {"code": "50000", "msg": f"no route {path}"}
        return 200, {"code": "0", "msg": "", "data": data}

    def instrument(self, name: str, inst_type: str) -> dict:
        if inst_type == "SPOT":
            return {
                "instType": "SPOT",
                "instId": f"{name}-USDT",
                "baseCcy": name,
                "quoteCcy": "USDT",
                "settleCcy": "",
                "uly": "",
                "instFamily": "",
                "ctVal": "",
                "ctMult": "",
                "ctValCcy": "",
                "ctType": "",
                "lotSz": "0.00000001",
                "minSz": "0.00001",
                "tickSz": "0.1",
                "lever": "10",
                "listTime": "1548133413000",
                "state": "live",
                "alias": "",
                "expTime": "",
                "stk": "",
                "optType": "",
                "maxMktSz": "1000000",
            }
        return {
            "instType": "SWAP",
            "instId": f"{name}-USDT-SWAP",
            "uly": f"{name}-USDT",
            "instFamily": f"{name}-USDT",
            "baseCcy": "",
            "quoteCcy": "",
            "settleCcy": "USDT",
            "ctVal": _s(self.ct_val),
            "ctMult": "1",
            "ctValCcy": name,
            "ctType": "linear",
            "lotSz": "0.01",
            "minSz": "0.01",
            "tickSz": "0.1",
            "lever": "100",
            "listTime": "1611916828000",
            "state": "live",
            "alias": "",
            "expTime": "",
            "stk": "",
            "optType": "",
            "maxMktSz": "10000",
        }


class Hyperliquid:
    max_candles, max_funding = 5000, 500

    def __init__(self, coins: dict[str, Coin]):
        self.coins = dict(coins)  # Hyperliquid's coin names: "BTC", "kPEPE"

    def __call__(self, method: str, path: str, q: dict, body: Any) -> tuple[int, Any]:
        if method != "POST" or path != "/info" or not isinstance(body, dict):
            return 422, {"error": "Failed to deserialize the JSON body"}
        kind = body.get("type")
        if kind == "spotMeta":
            usdc = {
                "name": "USDC",
                "szDecimals": 8,
                "weiDecimals": 8,
                "index": 0,
                "tokenId": "0x6d1e7cde53ba9467b783cb7c530ce054",
                "isCanonical": True,
                "evmContract": None,
                "fullName": None,
            }
            return 200, {"tokens": [usdc], "universe": []}
        if kind == "metaAndAssetCtxs":
            universe = [{"name": n, "szDecimals": 5 if n == "BTC" else 0, "maxLeverage": 40} for n in self.coins]
            ctxs = [
                {
                    "funding": "0.0000125",
                    "openInterest": "1000.0",
                    "prevDayPx": _s(c.perp[-1][4]),
                    "dayNtlVlm": "1.0",
                    "premium": "0.0001",
                    "oraclePx": _s(c.perp[-1][4]),
                    "markPx": _s(c.perp[-1][4]),
                    "midPx": _s(c.perp[-1][4]),
                    "impactPxs": None,
                    "dayBaseVlm": "1.0",
                }
                for c in self.coins.values()
            ]
            return 200, [{"universe": universe, "marginTables": []}, ctxs]
        if kind == "candleSnapshot":
            req = body["req"]
            rows = _window(
                self.coins[req["coin"]].perp, int(req["startTime"]), int(req["endTime"]), self.max_candles, False
            )
            out = [
                {
                    "t": r[0],
                    "T": r[0] + H - 1,
                    "s": req["coin"],
                    "i": req["interval"],
                    "o": _s(r[1]),
                    "c": _s(r[4]),
                    "h": _s(r[2]),
                    "l": _s(r[3]),
                    "v": _s(r[5]),
                    "n": 42,
                }
                for r in rows
            ]
            return 200, out
        if kind == "fundingHistory":
            coin = self.coins[body["coin"]]
            rows = _window(
                coin.funding, int(body["startTime"]), int(body.get("endTime", 2**62)), self.max_funding, False
            )
            return 200, [{"coin": body["coin"], "fundingRate": _s(r), "premium": "0.0001", "time": t} for t, r in rows]
        return 422, {"error": f"unknown type {kind}"}


# --------------------------------------------------------------------------- the server
@dataclass
class Request:
    method: str
    path: str
    query: dict
    body: Any
    number: int  # 0-based, over the server's life


class Server:
    """A venue's API on 127.0.0.1; ``fail(request)`` may return an HTTP status to answer instead."""

    def __init__(self, venue: Callable[..., tuple[int, Any]]):
        self.venue = venue
        self.requests: list[Request] = []
        self.fail: Callable[[Request], int | None] = lambda r: None
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, method: str) -> None:
                parts = urlsplit(self.path)
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
                body = json.loads(raw) if raw else None
                with server.lock:
                    req = Request(method, parts.path, dict(parse_qsl(parts.query)), body, len(server.requests))
                    server.requests.append(req)
                status = server.fail(req)
                kind = "application/json"
                if status is not None:  # as a gateway answers: an HTML page
                    payload, kind = (
                        f"<html><body><h1>{status} injected failure</h1></body></html>".encode(),
                        "text/html",
                    )
                else:
                    status, obj = server.venue(method, parts.path, req.query, body)
                    payload = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def log_message(self, format, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def data_requests(self) -> list[Request]:
        """Requests for history (not the markets)."""
        meta = ("instruments", "spotMeta", "metaAndAssetCtxs")
        return [r for r in self.requests if not any(m in r.path or m in json.dumps(r.body) for m in meta)]


@pytest.fixture()
def serve():
    servers: list[Server] = []

    def start(venue) -> Server:
        s = Server(venue)
        s.thread.start()
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()
        s.thread.join(timeout=5)


COINS = {"BTC": make_coin("BTC", 42000.0, 1, 8), "ETH": make_coin("ETH", 2300.0, 2, 8)}
HL_COINS = {
    "BTC": make_coin("BTC", 42000.0, 3, 1, stamp_ms=31),
    "kPEPE": make_coin("kPEPE", 0.0131, 4, 1, stamp_ms=31, digits=7),
}
FAST = dict(backoff_seconds=0.001, progress=False)


def run(server: Server, exchange_id: str, tmp_path: Path, symbols, kinds, **kw):
    """fetch_ccxt against ``server`` with a fresh exchange (rate limiter off: the server is local)."""
    exchange = getattr(ccxt, exchange_id)({"enableRateLimit": False, "timeout": 5000})
    args = dict(exchange=exchange, api_url=server.url, **FAST)
    args.update(kw)
    return fc.fetch_ccxt(exchange_id, symbols, kinds, "2024-01", "2024-02", tmp_path / "cat", **args)


def catalog_bytes(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.parquet"))
        if "_downloads" not in p.parts
    }


def stored(cat: Catalog, venue: str, kind: Kind, symbol: str, columns: list[str]) -> list[tuple]:
    key = PartitionKey(venue, kind, symbol, None if kind == Kind.FUNDING else "1h")
    table = cat.read(key)
    cols = [table.column("time").cast("int64").to_pylist()] + [table.column(c).to_pylist() for c in columns]
    return list(zip(*cols))


def funding_hours(coin: Coin, since: int = 0) -> list[tuple]:
    """The fixture settlements as the catalog stores them: floored to the hour."""
    return [(t - t % H, r) for t, r in coin.funding if t >= since]


OHLC = ["open", "high", "low", "close"]


# --------------------------------------------------------------------------- per venue
def test_bybit_downloads_pages_and_months_then_a_rerun_asks_nothing(serve, tmp_path: Path) -> None:
    server = serve(Bybit(COINS))
    kinds = "spot,perp,mark,funding"
    report = run(server, "bybit", tmp_path, "BTCUSDT,ETHUSDT", kinds, page_limit=500)
    assert report.downloaded == [f"{s} {k} {m}" for s in ("BTCUSDT", "ETHUSDT") for k in fc.KINDS for m in MONTHS]
    assert not report.skipped and not report.empty and not report.notes and not report.running
    # pages: 744 and 696 hourly bars at 500 a page -> 2 + 2 per series; funding: windows of 200 hours (Bybit's
    # page maximum caps page_limit, and no venue settles more often than hourly) -> 4 + 4
    btc = [r for r in server.data_requests() if r.query["symbol"] == "BTCUSDT"]
    per_series = Counter(f"{r.path} {r.query['category']}" for r in btc)
    assert per_series == {
        "/v5/market/kline spot": 4,
        "/v5/market/kline linear": 4,
        "/v5/market/mark-price-kline linear": 4,
        "/v5/market/funding/history linear": 8,
    }
    assert report.requests == len(server.data_requests()) + 1  # + loading the markets (3 HTTP requests)

    cat = Catalog(tmp_path / "cat")
    for name, coin in COINS.items():
        sym = f"{name}USDT"
        assert stored(cat, "bybit", Kind.PERP, sym, [*OHLC, "volume"]) == coin.perp
        assert stored(cat, "bybit", Kind.MARK, sym, OHLC) == coin.mark
        assert stored(cat, "bybit", Kind.SPOT, sym, [*OHLC, "volume"]) == coin.spot
        assert stored(cat, "bybit", Kind.FUNDING, sym, ["rate", "interval_hours"]) == [
            (t, r, 8.0) for t, r in coin.funding
        ]
    dl = tmp_path / "cat" / "_downloads" / "ccxt" / "bybit"
    assert (dl / "perp" / "BTCUSDT" / "1h" / "2024-01.json").is_file()
    assert (dl / "funding" / "ETHUSDT" / "2024-02.json.complete").is_file()
    assert not [p for p in dl.rglob("*") if p.name.startswith(".")]  # no temporary files
    assert "downloaded 16 month files" in report.summary()

    before = catalog_bytes(tmp_path / "cat")
    seen = len(server.requests)
    again = run(server, "bybit", tmp_path, ["BTCUSDT", "ETHUSDT"], kinds, page_limit=500)
    assert len(server.requests) == seen, "every month was complete: not even the markets are loaded"
    assert again.requests == 0 and not again.downloaded and len(again.skipped) == 16
    assert again.ingest is not None and again.ingest.rows_added == 0
    assert catalog_bytes(tmp_path / "cat") == before


def test_okx_pages_newest_first_funding_depth_is_a_note(serve, tmp_path: Path) -> None:
    server = serve(Okx({"BTC": COINS["BTC"]}, funding_from=FEB))  # OKX: funding of recent months only
    report = run(server, "okx", tmp_path, "BTCUSDT", ["perp", "mark", "spot", "funding"])
    assert len(report.downloaded) == 8 and not report.notes
    assert report.empty == [
        "BTCUSDT funding 2024-01: okx returned no rows (OKX serves only about the last 3 months of funding history)"
    ]
    assert "empty: BTCUSDT funding 2024-01" in report.summary()
    paths = {r.path for r in server.data_requests()}
    assert {"/api/v5/market/history-candles", "/api/v5/market/history-mark-price-candles"} <= paths
    # 100 rows a page: ceil(744 / 100) + ceil(696 / 100) requests per bar series
    assert sum(r.path == "/api/v5/market/history-mark-price-candles" for r in server.data_requests()) == 8 + 7
    cat = Catalog(tmp_path / "cat")
    btc = COINS["BTC"]
    assert stored(cat, "okx", Kind.PERP, "BTCUSDT", [*OHLC, "volume"]) == btc.perp  # volCcy: coins, not contracts
    assert stored(cat, "okx", Kind.MARK, "BTCUSDT", OHLC) == btc.mark
    assert stored(cat, "okx", Kind.SPOT, "BTCUSDT", [*OHLC, "volume"]) == btc.spot
    assert stored(cat, "okx", Kind.FUNDING, "BTCUSDT", ["rate"]) == funding_hours(btc, FEB)  # the realized rate
    # the empty month is complete too: a re-run asks nothing
    seen = len(server.requests)
    again = run(server, "okx", tmp_path, "BTCUSDT", ["perp", "mark", "spot", "funding"])
    assert len(server.requests) == seen and len(again.skipped) == 8 and again.ingest.rows_added == 0


def test_hyperliquid_hourly_funding_no_mark_and_the_k_prefix(serve, tmp_path: Path) -> None:
    server = serve(Hyperliquid(HL_COINS))
    report = run(server, "hyperliquid", tmp_path, "BTCUSDC,1000PEPEUSDC", "perp,mark,funding", venue="hl")
    assert len(report.notes) == 1 and report.notes[0].startswith("mark skipped: Hyperliquid publishes no mark")
    assert "oracle price" in report.notes[0] and "note: mark skipped" in report.summary()
    assert report.downloaded == [
        f"{s} {k} {m}" for s in ("BTCUSDC", "1000PEPEUSDC") for k in ("perp", "funding") for m in MONTHS
    ]
    # hourly funding, 500 a page: 744 -> 2 windows, 696 -> 2 windows; candles: one request a month
    coins = [r.body.get("coin") or r.body["req"]["coin"] for r in server.data_requests()]
    assert coins.count("kPEPE") == 2 + 4
    cat = Catalog(tmp_path / "cat")
    for sym, coin in (("BTCUSDC", HL_COINS["BTC"]), ("1000PEPEUSDC", HL_COINS["kPEPE"])):
        assert stored(cat, "hl", Kind.PERP, sym, [*OHLC, "volume"]) == coin.perp
        assert stored(cat, "hl", Kind.FUNDING, sym, ["rate", "interval_hours"]) == [
            (t, r, 1.0) for t, r in funding_hours(coin)
        ]
    assert not cat.has(PartitionKey("hl", Kind.MARK, "BTCUSDC", "1h"))


# --------------------------------------------------------------------------- failures and resume
def test_a_failed_run_keeps_whole_months_and_the_next_run_fetches_only_the_rest(serve, tmp_path: Path) -> None:
    server = serve(Bybit(COINS))
    # February's funding fails for good (HTTP 500) once the run is under way
    server.fail = lambda r: 500 if r.path.endswith("funding/history") and int(r.query["startTime"]) >= FEB else None
    with pytest.raises(FetchError) as err:
        run(server, "bybit", tmp_path, "BTCUSDT", "perp,mark,funding", retries=2)
    msg = str(err.value)
    assert msg.startswith("bybit BTCUSDT funding 2024-02 (BTC/USDT:USDT, from 2024-02-01T00:00:00.000 UTC)")
    assert "still failing after 3 attempts (ExchangeNotAvailable" in msg
    assert sum(r.path.endswith("funding/history") and int(r.query["startTime"]) >= FEB for r in server.requests) == 3
    dl = tmp_path / "cat" / "_downloads" / "ccxt" / "bybit"
    files = sorted(p.relative_to(dl).as_posix() for p in dl.rglob("*") if p.is_file())
    assert files == sorted(
        [f"{k}/BTCUSDT/1h/{m}.json{c}" for k in ("perp", "mark") for m in MONTHS for c in ("", ".complete")]
        + ["funding/BTCUSDT/2024-01.json", "funding/BTCUSDT/2024-01.json.complete"]
    )
    for p in dl.rglob("*.json"):
        assert json.loads(p.read_text())  # whole files only
    assert not list((tmp_path / "cat").glob("venue=*")), "nothing is ingested from a failed run"

    server.fail = lambda r: None
    first = len(server.requests)
    report = run(server, "bybit", tmp_path, "BTCUSDT", "perp,mark,funding")
    assert report.downloaded == ["BTCUSDT funding 2024-02"] and len(report.skipped) == 5
    fresh = [r for r in server.data_requests() if r.number >= first]
    assert fresh and all(r.path.endswith("funding/history") and int(r.query["startTime"]) >= FEB for r in fresh)
    cat = Catalog(tmp_path / "cat")
    assert stored(cat, "bybit", Kind.FUNDING, "BTCUSDT", ["rate"]) == COINS["BTC"].funding
    assert stored(cat, "bybit", Kind.PERP, "BTCUSDT", [*OHLC, "volume"]) == COINS["BTC"].perp


def test_rate_limits_and_server_errors_are_retried(serve, tmp_path: Path) -> None:
    server = serve(Okx({"BTC": COINS["BTC"]}))
    flaky = {3: 429, 4: 502, 9: 503, 10: 504}  # by request number: the markets are request 0
    server.fail = lambda r: flaky.get(r.number)
    report = run(server, "okx", tmp_path, "BTCUSDT", "funding")
    # the markets, 744 + 696 hours in 100-hour windows, 4 retries
    assert len(server.requests) == report.requests == 1 + 8 + 7 + 4
    cat = Catalog(tmp_path / "cat")
    assert stored(cat, "okx", Kind.FUNDING, "BTCUSDT", ["rate"]) == COINS["BTC"].funding


def test_an_exchange_error_is_not_retried_and_names_what_failed(serve, tmp_path: Path) -> None:
    bybit = Bybit(COINS)

    def refuse(method, path, q, body):
        if path == "/v5/market/mark-price-kline":
            return 200, {
                "retCode": 10001,
                "retMsg": "params error: symbol invalid",
                "result": {},
                "retExtInfo": {},
                "time": 1,
            }
        return bybit(method, path, q, body)

    server = serve(refuse)
    with pytest.raises(FetchError, match=r"^bybit ETHUSDT mark 2024-01 \(ETH/USDT:USDT, .*BadRequest.*not retried"):
        run(server, "bybit", tmp_path, "ETHUSDT", "mark")
    assert sum(r.path == "/v5/market/mark-price-kline" for r in server.requests) == 1


def test_the_running_month_is_fetched_again_until_it_has_ended(serve, tmp_path: Path, monkeypatch) -> None:
    server = serve(Bybit(COINS))
    now = FEB + 10 * 24 * H + 30 * 60_000  # 2024-02-11 00:30 UTC
    monkeypatch.setattr(fc, "_now_ms", lambda: now)
    report = run(server, "bybit", tmp_path, "BTCUSDT", "perp,funding")
    assert report.running == ["BTCUSDT perp 2024-02", "BTCUSDT funding 2024-02"]
    assert "still running, downloaded again next time" in report.summary()
    assert all(int(r.query.get("start", r.query.get("startTime"))) <= now for r in server.data_requests())
    feb = tmp_path / "cat" / "_downloads" / "ccxt" / "bybit" / "perp" / "BTCUSDT" / "1h" / "2024-02.json"
    assert feb.is_file() and not feb.with_name("2024-02.json.complete").exists()
    cat = Catalog(tmp_path / "cat")
    # the server replays bars and settlements after "now": the month file keeps none of them
    assert stored(cat, "bybit", Kind.FUNDING, "BTCUSDT", ["rate"])[-1][0] == FEB + 10 * 24 * H
    assert stored(cat, "bybit", Kind.PERP, "BTCUSDT", ["close"])[-1][0] == FEB + 10 * 24 * H

    later = T1 + 2 * H  # 2024-03-01 02:00: February has ended
    monkeypatch.setattr(fc, "_now_ms", lambda: later)
    first = len(server.requests)
    again = run(server, "bybit", tmp_path, "BTCUSDT", "perp,funding")
    assert again.downloaded == ["BTCUSDT perp 2024-02", "BTCUSDT funding 2024-02"] and not again.running
    assert all(
        r.number < first or int(r.query.get("start", r.query.get("startTime"))) >= FEB for r in server.data_requests()
    )
    assert feb.with_name("2024-02.json.complete").is_file()
    assert stored(cat, "bybit", Kind.FUNDING, "BTCUSDT", ["rate"]) == COINS["BTC"].funding


def test_an_edited_month_file_is_downloaded_again(serve, tmp_path: Path) -> None:
    server = serve(Bybit(COINS))
    run(server, "bybit", tmp_path, "BTCUSDT", "funding", ingest=False)
    jan = tmp_path / "cat" / "_downloads" / "ccxt" / "bybit" / "funding" / "BTCUSDT" / "2024-01.json"
    good = jan.read_bytes()
    jan.write_bytes(good[: len(good) // 2])  # truncated by some accident
    again = run(server, "bybit", tmp_path, "BTCUSDT", "funding", ingest=False)
    assert again.downloaded == ["BTCUSDT funding 2024-01"] and again.skipped == ["BTCUSDT funding 2024-02"]
    assert jan.read_bytes() == good and again.ingest is None


# --------------------------------------------------------------------------- user errors
def test_an_unknown_symbol_names_close_matches(serve, tmp_path: Path) -> None:
    server = serve(Bybit(COINS))
    with pytest.raises(UnknownNameError, match=r"unknown symbol 'BTCUSDX' on bybit \(close matches: BTCUSDT") as err:
        run(server, "bybit", tmp_path, "BTCUSDT,BTCUSDX", "perp")
    assert "\n" not in str(err.value)
    assert not server.data_requests(), "symbols are checked before any download"
    hl = serve(Hyperliquid(HL_COINS))
    with pytest.raises(UnknownNameError, match=r"unknown symbol 'BTCUSDT' on hyperliquid \(close matches: BTCUSDC"):
        run(hl, "hyperliquid", tmp_path, "BTCUSDT", "funding")


def test_the_ingest_is_one_transaction_checked_like_data_check(serve, tmp_path: Path) -> None:
    eth = make_coin("ETH", 2300.0, 2, 8)
    eth.funding[40] = (eth.funding[40][0], 0.05)  # 5% in one settlement: a funding_outlier
    server = serve(Bybit({"BTC": COINS["BTC"], "ETH": eth}))
    with pytest.raises(DataError, match=r"ETHUSDT.*check 'funding_outlier' failed.*Nothing was written"):
        run(server, "bybit", tmp_path, "BTCUSDT,ETHUSDT", "perp,funding")
    assert not list((tmp_path / "cat").glob("venue=*")), "BTCUSDT's series are not committed either"
    report = run(server, "bybit", tmp_path, "BTCUSDT,ETHUSDT", "perp,funding", allow_errors=["funding_outlier"])
    assert report.requests == 0, "the months were kept: only the ingest runs again"
    assert any("allowed error funding_outlier" in w for w in report.ingest.warnings)
    assert stored(Catalog(tmp_path / "cat"), "bybit", Kind.FUNDING, "ETHUSDT", ["rate"]) == eth.funding


def test_a_coin_without_a_spot_pair_is_a_note(serve, tmp_path: Path) -> None:
    server = serve(Bybit(COINS, spot=("BTC",)))
    report = run(server, "bybit", tmp_path, "BTCUSDT,ETHUSDT", "spot,perp")
    assert report.notes == ["spot ETHUSDT skipped: bybit lists no spot pair ETHUSDT"]
    assert [d for d in report.downloaded if "spot" in d] == ["BTCUSDT spot 2024-01", "BTCUSDT spot 2024-02"]
    assert Catalog(tmp_path / "cat").has(PartitionKey("bybit", Kind.PERP, "ETHUSDT", "1h"))
    with pytest.raises(UnknownNameError, match=r"unknown symbol 'ETHUSDT' on bybit .*not one of its 1 spot pairs"):
        run(server, "bybit", tmp_path, "ETHUSDT", "spot")  # spot only: the pair must exist


def test_missing_ccxt_says_how_to_install_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ccxt", None)  # `import ccxt` raises ImportError
    with pytest.raises(ConfigError, match=r"needs ccxt, which is not installed: pip install 'carry\[fetch\]'"):
        fc.fetch_ccxt("bybit", "BTCUSDT", "perp", "2024-01", "2024-01", tmp_path / "cat")


@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        (dict(exchange_id="bybt"), UnknownNameError, r"unknown exchange 'bybt' \(did you mean 'bybit'\?\)"),
        (dict(exchange_id="binance"), UnknownNameError, r"binance-vision"),
        (dict(kinds="perp,indx"), UnknownNameError, r"unknown kinds 'indx'"),
        (dict(timeframe="7h"), UnknownNameError, r"--timeframe '7h' is not offered by bybit"),
        (dict(start="2024-1"), ConfigError, r"bad start month"),
        (dict(symbols="btc/usdt"), ConfigError, r"bad symbol"),
        (dict(api_url="ftp://x"), ConfigError, r"bad --api-url"),
        (dict(page_limit=0), ConfigError, r"bad page_limit"),
        (dict(allow_errors=["funding_outlyer"]), ConfigError, r"funding_outlyer"),
    ],
)
def test_bad_arguments_fail_before_any_request(tmp_path: Path, args: dict, error: type, match: str) -> None:
    kw = dict(
        exchange_id="bybit", symbols="BTCUSDT", kinds="perp", start="2024-01", end="2024-02", out=tmp_path / "cat"
    )
    kw.update(args)
    exchange = ccxt.bybit({"enableRateLimit": False})
    exchange.urls["api"] = {k: "http://127.0.0.1:9" for k in exchange.urls["api"]}  # nothing listens there
    with pytest.raises(error, match=match):
        fc.fetch_ccxt(**kw, exchange=exchange, progress=False)


def test_an_exchange_of_another_venue_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"the exchange given is ccxt's 'okx', not 'bybit'"):
        fc.fetch_ccxt("bybit", "BTCUSDT", "perp", "2024-01", "2024-01", tmp_path / "cat", exchange=ccxt.okx())


def test_the_command_line(serve, tmp_path: Path, capsys) -> None:
    from backtest.app.cli import main

    server = serve(Bybit(COINS))
    argv = ["data", "fetch", "ccxt", "--exchange", "bybit", "--symbols", "BTCUSDT", "--kinds", "perp,funding"]
    argv += ["--start", "2024-01", "--end", "2024-02", "--out", str(tmp_path / "cat"), "--api-url", server.url]
    assert main([*argv, "--download-dir", str(tmp_path / "dl"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "bybit: downloaded 4 month files" in out and f"files kept in {tmp_path / 'dl' / 'ccxt' / 'bybit'}" in out
    assert (tmp_path / "dl" / "ccxt" / "bybit" / "funding" / "BTCUSDT" / "2024-02.json").is_file()
    assert stored(Catalog(tmp_path / "cat"), "bybit", Kind.FUNDING, "BTCUSDT", ["rate"]) == COINS["BTC"].funding
    with pytest.raises(SystemExit) as exc:
        main(["data", "fetch", "ccxt", "--exchange", "kraken", "--symbols", "BTCUSDT", "--out", str(tmp_path / "c2")])
    assert exc.value.code == 2

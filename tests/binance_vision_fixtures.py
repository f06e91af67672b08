"""Build realistic Binance bulk files (data.binance.vision layout) in a temporary directory.

Spot kline CSVs have no header and use microseconds from 2025-01-01 (milliseconds before);
futures CSVs (klines, mark, index, premium index, funding) have a header row and use
milliseconds, as on the real site. Every zip gets a ``.CHECKSUM`` sibling.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np

KLINE_HEADER = (
    "open_time,open,high,low,close,volume,close_time,quote_volume,count,taker_buy_volume,taker_buy_quote_volume,ignore"
)
FUNDING_HEADER = "calc_time,funding_interval_hours,last_funding_rate"
US_FROM = np.datetime64("2025-01-01", "ms").astype(np.int64)

FUTURES_DIRS = {
    "perp": "klines",
    "mark": "markPriceKlines",
    "index": "indexPriceKlines",
    "premium": "premiumIndexKlines",
}


def month_bounds_ms(month: str) -> tuple[int, int]:
    """``[start, end)`` of ``YYYY-MM`` in UTC epoch milliseconds."""
    m = np.datetime64(month, "M")
    a = m.astype("datetime64[ms]").astype(np.int64)
    b = (m + 1).astype("datetime64[ms]").astype(np.int64)
    return int(a), int(b)


def kline_rows(
    month: str, kind: str = "perp", tf_ms: int = 3_600_000, unit: str = "ms", seed: int = 0, price_scale: float = 1.0
) -> list[str]:
    """CSV lines (no header) of one month of klines; prices near 40,000 times ``price_scale``
    (or fractions for premium)."""
    start, end = month_bounds_ms(month)
    times = np.arange(start, end, tf_ms, dtype=np.int64)
    rng = np.random.default_rng(seed + int(start // 1000) % 100_000)
    n = len(times)
    if kind == "premium":
        base = rng.normal(0.0001, 0.0002, n)
        spread = np.abs(rng.normal(0, 0.0001, n))
    else:
        base = 40_000 + np.cumsum(rng.normal(0, 50, n))
        spread = np.abs(rng.normal(0, 20, n)) + 1
    o = np.round(base, 2 if kind != "premium" else 8)
    c = np.round(base + rng.normal(0, 10 if kind != "premium" else 0.00005, n), 2 if kind != "premium" else 8)
    h = np.maximum(o, c) + np.round(spread, 8)
    l = np.minimum(o, c) - np.round(spread, 8)
    if price_scale != 1.0:  # e.g. 0.001: the spot price of a token whose perp is quoted per 1000
        o, c, h, l = (np.round(x * price_scale, 8) for x in (o, c, h, l))
        base = base * price_scale
    if kind in ("spot", "perp"):
        vol = np.round(rng.uniform(10, 100, n), 5)
        qv = np.round(vol * base, 4)
        cnt = rng.integers(100, 10_000, n)
    else:
        vol = np.zeros(n)
        qv = np.zeros(n)
        cnt = np.zeros(n, dtype=np.int64)
    mult = {"s": 0.001, "ms": 1, "us": 1000, "ns": 1_000_000}[unit]
    lines = []
    for i in range(n):
        t = int(times[i] * mult)
        ct = int((times[i] + tf_ms - 1) * mult)
        lines.append(
            f"{t},{o[i]:.8f},{h[i]:.8f},{l[i]:.8f},{c[i]:.8f},{vol[i]:.5f},{ct},{qv[i]:.4f},{int(cnt[i])},"
            f"{vol[i] / 2:.5f},{qv[i] / 2:.4f},0"
        )
    return lines


def funding_rows(
    month: str,
    interval_hours: int = 8,
    jitter_ms: int = 17,
    with_interval: bool = True,
    rate: float | None = None,
    seed: int = 0,
) -> list[str]:
    """CSV lines (no header) of one month of funding settlements, times with ms jitter."""
    start, end = month_bounds_ms(month)
    times = np.arange(start, end, interval_hours * 3_600_000, dtype=np.int64)
    rng = np.random.default_rng(seed + int(start // 1000) % 100_000)
    rates = np.round(rng.normal(0.0001, 0.00005, len(times)), 8) if rate is None else np.full(len(times), rate)
    ih = str(interval_hours) if with_interval else ""
    return [f"{int(t) + jitter_ms},{ih},{r:.8f}" for t, r in zip(times, rates)]


def zip_bytes(member: str, text: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(member, text)
    return buf.getvalue()


def write_zip(
    path: Path,
    lines: list[str],
    header: str | None = None,
    checksum: bool = True,
    member: str | None = None,
    checksum_of: bytes | None = None,
) -> Path:
    """Write ``lines`` as ``<stem>.csv`` in the zip ``path`` and its ``.CHECKSUM`` sibling."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(([header] if header else []) + lines) + "\n"
    data = zip_bytes(member or path.name[:-4] + ".csv", text)
    path.write_bytes(data)
    if checksum:
        digest = hashlib.sha256(checksum_of if checksum_of is not None else data).hexdigest()
        path.with_name(path.name + ".CHECKSUM").write_text(f"{digest}  {path.name}\n")
    return path


def site_path(root: Path, kind: str, symbol: str, month: str, tf: str = "1h") -> Path:
    """Where a monthly file lives in the data.binance.vision layout under ``root``."""
    if kind == "spot":
        return root / "data/spot/monthly/klines" / symbol / tf / f"{symbol}-{tf}-{month}.zip"
    if kind == "funding":
        return root / "data/futures/um/monthly/fundingRate" / symbol / f"{symbol}-fundingRate-{month}.zip"
    return root / "data/futures/um/monthly" / FUTURES_DIRS[kind] / symbol / tf / f"{symbol}-{tf}-{month}.zip"


def write_month(
    root: Path,
    kind: str,
    symbol: str,
    month: str,
    tf: str = "1h",
    *,
    header: bool | None = None,
    unit: str | None = None,
    **kw,
) -> Path:
    """Write one realistic monthly file (with the real site's header and unit conventions)."""
    path = site_path(root, kind, symbol, month, tf)
    if kind == "funding":
        lines = funding_rows(month, **kw)
        hdr = FUNDING_HEADER if header in (None, True) else None
    else:
        if unit is None:
            unit = "us" if kind == "spot" and month_bounds_ms(month)[0] >= US_FROM else "ms"
        lines = kline_rows(month, kind, unit=unit, **kw)
        if header is None:
            header = kind != "spot"
        hdr = KLINE_HEADER if header else None
    return write_zip(path, lines, hdr)


def build_site(
    root: Path,
    symbols: list[str],
    months: list[str],
    kinds=("spot", "perp", "mark", "index", "premium", "funding"),
    tf: str = "1h",
    price_scale: float = 1.0,
) -> list[Path]:
    """Write every (symbol, kind, month) file; returns the zip paths. ``price_scale`` scales
    the kline prices (not funding)."""
    out = []
    for s_i, sym in enumerate(symbols):
        for kind in kinds:
            for month in months:
                kw = {"price_scale": price_scale} if kind != "funding" else {}
                out.append(write_month(root, kind, sym, month, tf, seed=s_i, **kw))
    return out

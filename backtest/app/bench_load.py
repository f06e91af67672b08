"""Benchmark: catalog -> Market load time (``python -m backtest.app.bench_load``).

Ingests the real freqtrade data (BTC, ETH, XRP, ADA, LTC; ~6 years hourly) from
``../shared/data/binance`` into a temporary catalog (or uses ``--catalog``), then loads the
five symbols with :func:`backtest.load_market` several times and prints the cold and best warm
time and rows per second. The last line is one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

SYMBOLS = ("BTCUSDT", "ETHUSDT", "XRPUSDT", "ADAUSDT", "LTCUSDT")
DEFAULT_SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "binance"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m backtest.app.bench_load", description=__doc__.splitlines()[0])
    p.add_argument("--catalog", type=Path, default=None, help="an existing catalog (default: ingest the shared data)")
    p.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="freqtrade data directory to ingest")
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)

    from data.catalog import Catalog
    from data.loader import DataWarning, load_market

    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(args.catalog) if args.catalog else None
        if catalog is None:
            from data.ingest.freqtrade import ingest_freqtrade

            if not args.source.is_dir():
                raise SystemExit(f"no data at {args.source}; pass --catalog or --source")
            t = time.perf_counter()
            catalog = Catalog(Path(tmp) / "catalog")
            ingest_freqtrade(args.source, catalog, symbols=list(SYMBOLS))
            print(f"ingested {len(SYMBOLS)} symbols from {args.source} in {time.perf_counter() - t:.2f} s")
        times = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            for _ in range(max(2, args.repeat)):
                t = time.perf_counter()
                market = load_market(catalog, list(SYMBOLS), start="2020-01-01", end="2026-05-01")
                times.append(time.perf_counter() - t)
        rows = market.n_bars * market.n_symbols
        warm = min(times[1:])
        print(f"{market}")
        print(f"cold load {times[0]:.3f} s, best warm load {warm:.3f} s over {len(times) - 1} runs")
        print(f"{rows:,} bar-symbols ({market.n_bars:,} bars x {market.n_symbols}) -> {rows / warm:,.0f} rows/s warm")
        print(
            json.dumps(
                {
                    "cold_seconds": round(times[0], 4),
                    "warm_seconds": round(warm, 4),
                    "rows": rows,
                    "rows_per_second": round(rows / warm),
                }
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

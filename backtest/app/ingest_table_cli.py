"""``carry data ingest table`` and ``carry data ingest ccxt``: generic tables and ccxt dumps.

:func:`add_parsers` adds both sub-commands to the ``carry data ingest`` sub-parsers (built in
:mod:`backtest.app.cli`); the command functions call :func:`data.ingest.table.ingest_table`
and :func:`data.ingest.ccxt_dump.ingest_ccxt`, print the ingest report and return 0. Errors
are :class:`~data.errors.CarryError` (one line naming the file, column and row, or the flag),
printed by the CLI's ``main``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data.errors import DataError

# The choices of data.ingest.table and data.ingest.ccxt_dump (TABLE_KINDS, TIME_UNITS, RATE_UNITS,
# CCXT_OHLCV_KINDS), written out so that building the parser imports neither pandas nor pyarrow;
# tests/test_ingest_table.py checks they are the same.
TABLE_KINDS = ("funding", "spot", "perp", "mark", "index", "premium")
TIME_UNITS = ("s", "ms", "us", "ns", "iso")
RATE_UNITS = ("fraction", "percent", "bps")
CCXT_OHLCV_KINDS = ("spot", "perp", "mark", "index")

EPILOG_TABLE = """examples:
  carry data ingest table funding.csv --kind funding --symbol BTCUSDT --venue bybit \\
      --map "time=Date,rate=Funding Rate" --tz Europe/Istanbul --rate-unit percent --out data/catalog
  carry data ingest table btc_1h.parquet --kind perp --symbol BTCUSDT --venue okx --timeframe 1h \\
      --map time=ts,open=o,high=h,low=l,close=c,volume=vol --time-unit ms --out data/catalog

fields (--map FIELD=COLUMN; a field without one is read from a column of that name):
  funding              time, rate (optional: interval_hours, mark_price)
  spot, perp           time, open, high, low, close, volume (optional: quote_volume, trades)
  mark, index, premium time, open, high, low, close
"""

EPILOG_CCXT = """examples:
  carry data ingest ccxt btc_funding.json --symbol BTC/USDT:USDT --venue binance --out data/catalog
  carry data ingest ccxt btc_mark_1h.json --symbol BTCUSDT --venue binance --kind mark --timeframe 1h \\
      --out data/catalog

a dump is json.dump() (or pandas' to_csv()) of what ccxt returned:
  exchange.fetch_funding_rate_history(symbol)   [{symbol, fundingRate, timestamp, datetime, info}, ...]
  exchange.fetch_ohlcv(symbol, timeframe)       [[timestamp, open, high, low, close, volume], ...]
"""


def add_parsers(
    isub: Any, formatter_class: Callable[..., argparse.HelpFormatter], parser_class: type | None = None
) -> None:
    """Add the ``table`` and ``ccxt`` sources to ``isub``, the sub-parsers of ``carry data ingest``.

    ``isub.add_parser`` builds the parsers (of the ``parser_class`` ``isub`` was made with);
    ``parser_class`` is accepted to match the other ``add_parsers`` calls and is not needed here.
    """
    del parser_class  # the sub-parsers come from isub, which already knows its parser class
    t = isub.add_parser(
        "table",
        help="CSV, Parquet or Feather tables of one series, units explicit",
        description="Ingest CSV, Parquet or Feather files holding one series (funding settlements or bars of "
        "one symbol) into the catalog. Units are never guessed: numeric times need --time-unit, funding rates "
        "need --rate-unit, bars need --timeframe. Nothing is written if any file or row is rejected.",
        formatter_class=formatter_class,
        epilog=EPILOG_TABLE,
    )
    t.add_argument(
        "files",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="CSV (.csv, .csv.gz, .tsv), Parquet or Feather files, or folders",
    )
    t.add_argument("--kind", required=True, choices=TABLE_KINDS, help="what the files hold")
    t.add_argument(
        "--symbol", required=True, help="symbol of the series, e.g. BTCUSDT (ccxt's BTC/USDT:USDT works too)"
    )
    t.add_argument("--venue", required=True, help="venue name recorded in the catalog, e.g. binance, bybit, okx")
    t.add_argument("--out", type=Path, required=True, help="catalog directory")
    t.add_argument(
        "--map",
        action="append",
        default=None,
        metavar="FIELD=COL,...",
        help="the file's column for each field, e.g. time=Date,rate=Funding (repeatable)",
    )
    t.add_argument(
        "--time-unit",
        choices=TIME_UNITS,
        default=None,
        help="epoch unit of numeric times (required for numbers); iso for date-time text (the default)",
    )
    t.add_argument(
        "--tz",
        default=None,
        metavar="ZONE",
        help="zone of naive date-time text: Europe/Istanbul, +03:00, ... (default: UTC); times with an offset keep it",
    )
    t.add_argument(
        "--rate-unit",
        choices=RATE_UNITS,
        default=None,
        help="funding: unit of the rates (required): fraction 0.0001, percent 0.01 or bps 1 are all 0.01%%",
    )
    t.add_argument(
        "--interval-hours",
        type=float,
        default=None,
        metavar="H",
        help="funding: settlement interval in hours when the file has no interval column (default: derived)",
    )
    t.add_argument("--timeframe", default=None, help="bars: bar length, e.g. 1h (required; checked against the times)")
    _allow_errors_option(t)
    t.set_defaults(func=cmd_ingest_table)

    c = isub.add_parser(
        "ccxt",
        help="JSON or CSV dumps of ccxt's fetch_funding_rate_history / fetch_ohlcv",
        description="Ingest dumps of ccxt's fetch_funding_rate_history (funding) and fetch_ohlcv (bars) into the "
        "catalog. Funding and OHLCV dumps are told apart by their shape; OHLCV needs --kind and --timeframe. "
        "Nothing is written if any file or row is rejected.",
        formatter_class=formatter_class,
        epilog=EPILOG_CCXT,
    )
    c.add_argument(
        "files", type=Path, nargs="+", metavar="FILE", help="dumps (.json, .json.gz, .csv, .csv.gz) or folders"
    )
    c.add_argument("--symbol", required=True, help="symbol of the dumps, e.g. BTC/USDT:USDT or BTCUSDT")
    c.add_argument("--venue", required=True, help="venue name recorded in the catalog, e.g. binance, bybit, okx")
    c.add_argument("--out", type=Path, required=True, help="catalog directory")
    c.add_argument(
        "--kind",
        choices=("funding", *CCXT_OHLCV_KINDS),
        default=None,
        help="what OHLCV dumps hold (required for them): spot, perp, mark (params={'price': 'mark'}) or index",
    )
    c.add_argument("--timeframe", default=None, help="OHLCV: the timeframe fetched, e.g. 1h (required for OHLCV)")
    c.add_argument(
        "--interval-hours",
        type=float,
        default=None,
        metavar="H",
        help="funding: settlement interval in hours (default: derived from the settlements)",
    )
    c.add_argument(
        "--time-unit",
        choices=("s", "ms", "us", "ns"),
        default="ms",
        help="epoch unit of the dumps' numeric times (default: ms, ccxt's)",
    )
    c.add_argument("--tz", default=None, metavar="ZONE", help="zone of naive datetime text in CSV dumps (default: UTC)")
    _allow_errors_option(c)
    c.set_defaults(func=cmd_ingest_ccxt)


def _allow_errors_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--allow-errors",
        default="",
        metavar="CHECKS",
        help="comma-separated error checks of 'carry data check' to accept (e.g. funding_outlier); "
        "any other error refuses the whole ingest",
    )


def _need_files(paths: list[Path]) -> None:
    for p in paths:
        if not p.exists():
            raise DataError(f"file {p} does not exist")


def cmd_ingest_table(args: argparse.Namespace) -> int:
    """``carry data ingest table``: run :func:`data.ingest.table.ingest_table` and print its report."""
    from data.catalog import Catalog
    from data.ingest.table import ingest_table, parse_column_map

    _need_files(args.files)
    report = ingest_table(
        args.files,
        Catalog(args.out),
        kind=args.kind,
        symbol=args.symbol,
        venue=args.venue,
        columns=parse_column_map(args.map),
        time_unit=args.time_unit,
        tz=args.tz,
        rate_unit=args.rate_unit,
        interval_hours=args.interval_hours,
        timeframe=args.timeframe,
        allow_errors=args.allow_errors,
    )
    print(report.summary())
    print(f"catalog: {args.out}")
    return 0


def cmd_ingest_ccxt(args: argparse.Namespace) -> int:
    """``carry data ingest ccxt``: run :func:`data.ingest.ccxt_dump.ingest_ccxt` and print its report."""
    from data.catalog import Catalog
    from data.ingest.ccxt_dump import ingest_ccxt

    _need_files(args.files)
    report = ingest_ccxt(
        args.files,
        Catalog(args.out),
        symbol=args.symbol,
        venue=args.venue,
        kind=args.kind,
        timeframe=args.timeframe,
        interval_hours=args.interval_hours,
        time_unit=args.time_unit,
        tz=args.tz,
        allow_errors=args.allow_errors,
    )
    print(report.summary())
    print(f"catalog: {args.out}")
    return 0

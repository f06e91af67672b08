"""The ``carry`` command line: thin glue that parses flags and calls one library function.

Exit codes: 0 success; 1 a failure (bad or missing data, failed check, failed download, an
existing output directory); 2 a usage error (bad flags, from argparse) or a configuration error
(a :class:`~data.errors.ConfigError`: a bad setting, value, date or name, e.g. an unknown
strategy, parameter, config key, kind or option). Errors print one line, ``carry: error: ...``,
on standard error, never a traceback (the exit status of a :class:`~data.errors.CarryError` is
its ``exit_code``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from backtest.app import verbosity
from backtest.app.argtypes import add_window_options, engine_number, non_negative, number_list, whole_number
from backtest.app.verbosity import show_progress
from data.errors import CarryError, ConfigError, DataError, one_line

EPILOG_DATA = """examples:
  carry data ingest freqtrade ../shared/data/binance --out data/catalog
  carry data ingest binance-vision downloads/ --out data/catalog
  carry data ingest table funding.csv --kind funding --symbol BTCUSDT --venue bybit \\
      --map "time=Date,rate=Funding Rate" --rate-unit percent --tz Europe/Istanbul --out data/catalog
  carry data ingest ccxt btc_funding.json --symbol BTC/USDT:USDT --venue binance --out data/catalog
  carry data fetch binance-vision --symbols BTCUSDT,ETHUSDT --start 2024-01 --end 2024-06 --out data/catalog
  carry data fetch ccxt --exchange bybit --symbols BTCUSDT,ETHUSDT --kinds perp,mark,funding \\
      --start 2024-01 --end 2024-06 --out data/catalog
  carry data info data/catalog
  carry data check data/catalog --json
"""


EPILOG_MAIN = """output levels (-q or -v, before or after the command: carry -q scan ... = carry scan ... -q):
  -q, --quiet     the run commands (backtest, compare, sweep, scan, demo) print only the
                  lines naming what they wrote ("wrote DIR/"): no progress bar, no tables, no
                  "carry: note:" lines (the notes stay in summary.json: coverage.notes,
                  warnings, data_errors_allowed). Errors still print, and so does one
                  "carry: warning:" line when a result is flagged or has warnings (summary.json
                  flags, warnings) and the note of an --open that found no browser. Other
                  commands print their answer (tables, JSON), without progress bar or notes.
  (default)       a progress bar on a terminal, "carry: note: ..." lines on stderr, the
                  result tables and the lines naming what was written
  -v, --verbose   the default, plus a timed line on stderr per stage of a run, e.g.
                  "carry: load data: 0.42 s" (load data, strategies, engine, figures,
                  walk-forward, write outputs), and "carry: total: 3.10 s" for the command
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # usage errors: one line, exit code 2
        self.print_usage(sys.stderr)
        self.exit(2, f"carry: error: {message}\n")


def _formatter(prog):
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="carry",
        description="Backtest crypto cash-and-carry and funding-rate arbitrage (spot vs perpetual).",
        epilog=EPILOG_MAIN,
        formatter_class=_formatter,
    )
    p.add_argument("--version", action="version", version=f"carry {_version()}")
    _verbosity_options(p, default=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="build the built-in example dataset and run the demo",
        description="Build the deterministic example dataset (data/demo), compare the main "
        "strategies on it and write a report (reports/demo).",
        formatter_class=_formatter,
    )
    demo.add_argument(
        "--data", type=Path, default=Path("data/demo"), help="catalog to write the demo data to (default: data/demo)"
    )
    demo.add_argument("--out", type=Path, default=Path("reports/demo"), help="report directory (default: reports/demo)")
    demo.add_argument("--overwrite", action="store_true", help="replace an existing report directory")
    demo.add_argument("--open", action="store_true", help=OPEN_HELP)
    demo.set_defaults(func=_cmd_demo)

    _add_run_commands(sub)
    comp = sub.add_parser(
        "compile",
        help="compile the numba kernels into the on-disk cache (once, after installing)",
        description="Compile carry's numba kernels into numba's on-disk cache by running small demo runs "
        "in parallel processes, so that the first real run starts at once. The README's install command runs it.",
        formatter_class=_formatter,
    )
    comp.add_argument("--workers", type=whole_number(1), default=None, help="processes at once (default: the cores)")
    comp.set_defaults(func=_cmd_compile)
    from backtest.app.check_strategy import add_parser as add_check_strategy_parser

    add_check_strategy_parser(sub, _formatter)  # carry check-strategy: exit 0 clean, 1 look-ahead found

    data = sub.add_parser(
        "data",
        help="ingest, download and inspect market data",
        description="Ingest, download and inspect the Parquet data catalog.",
        epilog=EPILOG_DATA,
        formatter_class=_formatter,
    )
    dsub = data.add_subparsers(dest="data_command", metavar="ACTION", parser_class=_Parser)
    dsub.required = True

    ingest = dsub.add_parser("ingest", help="ingest files from a source into a catalog", formatter_class=_formatter)
    isub = ingest.add_subparsers(dest="source", metavar="SOURCE", parser_class=_Parser)
    isub.required = True
    ft = isub.add_parser(
        "freqtrade",
        help="a freqtrade data directory (feather/json/parquet)",
        formatter_class=_formatter,
        epilog="example:\n  carry data ingest freqtrade ../shared/data/binance --out data/catalog",
    )
    ft.add_argument("directory", type=Path, help="freqtrade data directory (e.g. user_data/data/binance)")
    ft.add_argument("--out", type=Path, required=True, help="catalog directory")
    ft.add_argument("--venue", default="binance", help="venue name recorded in the catalog (default: binance)")
    ft.add_argument("--symbols", default=None, help="comma-separated symbols to ingest (default: all)")
    ft.add_argument(
        "--allow-errors",
        default=None,
        metavar="CHECKS",
        help="data-check errors that do not stop the ingest, e.g. funding_outlier (comma-separated; recorded in the report)",
    )
    ft.set_defaults(func=_cmd_ingest_freqtrade)
    bv = isub.add_parser(
        "binance-vision",
        help="Binance public bulk files (zipped CSVs)",
        formatter_class=_formatter,
        epilog="example:\n  carry data ingest binance-vision downloads/data --out data/catalog",
    )
    bv.add_argument("paths", type=Path, nargs="+", help="zip files or directories holding them")
    bv.add_argument("--out", type=Path, required=True, help="catalog directory")
    bv.add_argument("--venue", default="binance")
    bv.add_argument("--no-checksum", action="store_true", help="do not verify .CHECKSUM files")
    bv.add_argument(
        "--market",
        choices=("spot", "um"),
        default=None,
        help="spot or um (USDT-M futures) for files outside Binance's directory layout",
    )
    bv.add_argument(
        "--kind",
        choices=("spot", "perp", "mark", "index", "premium", "funding"),
        default=None,
        help="data kind for flat files whose names do not say it (mark/index/premium klines)",
    )
    bv.add_argument(
        "--allow-errors",
        default=None,
        metavar="CHECKS",
        help="data-check errors that do not stop the ingest, e.g. funding_outlier (comma-separated; recorded in the report)",
    )
    bv.set_defaults(func=_cmd_ingest_binance_vision)
    from backtest.app.ingest_table_cli import add_parsers as add_ingest_table_parsers

    add_ingest_table_parsers(isub, _formatter, _Parser)  # carry data ingest table / ccxt

    fetch = dsub.add_parser(
        "fetch", help="download data from a public source, then ingest it", formatter_class=_formatter
    )
    fsub = fetch.add_subparsers(dest="source", metavar="SOURCE", parser_class=_Parser)
    fsub.required = True
    fb = fsub.add_parser(
        "binance-vision",
        help="monthly files from Binance's public data site",
        formatter_class=_formatter,
        epilog="example:\n  carry data fetch binance-vision --symbols BTCUSDT,ETHUSDT --start 2024-01 --end 2024-06 --out data/catalog",
    )
    fb.add_argument("--symbols", required=True, help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    fb.add_argument("--start", required=True, help="first month, YYYY-MM")
    fb.add_argument("--end", required=True, help="last month, YYYY-MM (inclusive)")
    fb.add_argument("--out", type=Path, required=True, help="catalog directory")
    fb.add_argument("--base-url", default="https://data.binance.vision", help="site root (default: %(default)s)")
    fb.add_argument("--timeframe", default="1h", help="kline interval (default: 1h)")
    fb.add_argument("--download-dir", type=Path, default=None, help="where zips are kept (default: CATALOG/_downloads)")
    fb.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fb.add_argument(
        "--allow-errors",
        default=None,
        metavar="CHECKS",
        help="data-check errors that do not stop the ingest (comma-separated; recorded in the report)",
    )
    fb.set_defaults(func=_cmd_fetch_binance_vision)
    fx = fsub.add_parser(
        "ccxt",
        help="Bybit, OKX or Hyperliquid history through ccxt (needs: pip install 'carry[fetch]')",
        formatter_class=_formatter,
        epilog="example:\n  carry data fetch ccxt --exchange bybit --symbols BTCUSDT,ETHUSDT --kinds perp,mark,funding "
        "--start 2024-01 --end 2024-06 --out data/catalog",
    )
    fx.add_argument("--exchange", required=True, choices=("bybit", "okx", "hyperliquid"), help="ccxt exchange id")
    fx.add_argument(
        "--symbols", required=True, help="comma-separated catalog symbols, e.g. BTCUSDT (Hyperliquid: BTCUSDC)"
    )
    fx.add_argument(
        "--kinds",
        default="spot,perp,mark,funding",
        help="comma-separated, of spot, perp, mark, funding (default: all the exchange serves)",
    )
    fx.add_argument("--start", required=True, help="first month, YYYY-MM")
    fx.add_argument("--end", required=True, help="last month, YYYY-MM (inclusive)")
    fx.add_argument("--out", type=Path, required=True, help="catalog directory")
    fx.add_argument("--timeframe", default="1h", help="bar length (default: 1h)")
    fx.add_argument(
        "--download-dir", type=Path, default=None, help="where month files are kept (default: CATALOG/_downloads)"
    )
    fx.add_argument("--venue", default=None, help="venue name in the catalog (default: the exchange id)")
    fx.add_argument("--api-url", default=None, help="REST API root replacing ccxt's (a mirror or a test server)")
    fx.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    fx.add_argument(
        "--allow-errors",
        default=None,
        metavar="CHECKS",
        help="data-check errors that do not stop the ingest (comma-separated; recorded in the report)",
    )
    fx.set_defaults(func=_cmd_fetch_ccxt)

    info = dsub.add_parser("info", help="coverage of every series in a catalog", formatter_class=_formatter)
    info.add_argument("catalog", type=Path)
    info.add_argument(
        "--symbols",
        default=None,
        help="comma-separated symbols: only their series (default: all); e.g. BTCUSDT,ETHUSDT",
    )
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    info.set_defaults(func=_cmd_info)
    check = dsub.add_parser(
        "check", help="data-quality checks; exit code 1 if problems are found", formatter_class=_formatter
    )
    check.add_argument("catalog", type=Path)
    check.add_argument("--symbols", default=None, help="comma-separated symbols to check (default: all)")
    check.add_argument("--json", action="store_true", help="print JSON instead of a table")
    check.add_argument(
        "--fail-on",
        choices=("warning", "error"),
        default="warning",
        help="exit 1 when a problem of this severity or worse is found (default: any problem)",
    )
    check.set_defaults(func=_cmd_check)
    _verbosity_everywhere(p)
    return p


def _verbosity_options(p: argparse.ArgumentParser, default) -> None:
    """``-q/--quiet`` and ``-v/--verbose`` (the levels of :mod:`backtest.app.verbosity`; see
    ``carry --help``). On the sub-commands their default is SUPPRESS, so that an option given
    before the command is not reset by the command's parser."""
    g = p.add_argument_group("output level (before or after the command)")
    g.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=default,
        help="only the lines naming what was written: no progress bar, notes or tables (errors, and a "
        "flagged result, still print)",
    )
    g.add_argument(
        "-v", "--verbose", action="store_true", default=default, help="also a timed line per stage on stderr"
    )


def _verbosity_everywhere(p: argparse.ArgumentParser) -> None:
    """Give every sub-command (at every depth) the output level options."""
    seen: set[int] = set()
    todo = [p]
    while todo:
        parser = todo.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    if id(sub) not in seen:
                        seen.add(id(sub))
                        _verbosity_options(sub, default=argparse.SUPPRESS)
                        todo.append(sub)


EPILOG_BACKTEST = """examples:
  carry backtest --data data/catalog --symbols BTCUSDT,ETHUSDT --strategy funding_threshold \\
      --param entry=0.10 --param exit=0.02 --out reports/ft
  carry backtest --config run.toml --out reports/run --overwrite
"""
EPILOG_COMPARE = """examples:
  carry compare --data data/catalog --symbols BTCUSDT,ETHUSDT \\
      --strategies always_carry,funding_sign,rotation --param funding_sign.entry=0.05 --out reports/cmp
"""
EPILOG_SWEEP = """examples:
  carry sweep --data data/catalog --symbols BTCUSDT --strategy funding_threshold \\
      --grid entry=0.05,0.1,0.2 --grid exit=0,0.02 --out reports/sweep
  carry sweep ... --walk-forward 180d:60d     # fit on 180 days, test on the next 60, roll
  carry sweep ... --workers 2                  # the same study on both cores
  carry sweep ... --scheduler tcp://HOST:8786  # the same study on a Dask cluster
  carry sweep ... --freq 1m --max-memory 4GB --workers 2  # memory-bounded: time chunks, lean files
"""


def _venue_margins(text: str) -> tuple[str, str]:
    """``--margin-mode``: one mode for both venues of a pair, or leg A's venue's and leg B's."""
    modes = [m.strip().lower() for m in text.split(",")]
    if len(modes) not in (1, 2) or any(m not in ("isolated", "cross") for m in modes):
        raise argparse.ArgumentTypeError(
            f"{text!r}: isolated or cross, or two of them (A's venue, B's), e.g. isolated,cross"
        )
    return (modes[0], modes[-1])


def _band(text: str) -> float | None:
    """``--rebalance-band``: a fraction in (0, 1], or none/off."""
    if text.strip().lower() in ("none", "off"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a fraction in (0, 1] or none") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction in (0, 1] (0.3: 30% of the mean margin balance)")
    return value


EPILOG_SPREAD = """examples:
  carry spread --data data/catalog --venues binance,bybit,hyperliquid --symbols BTC,ETH --start 2024-09-04 --end 2025-07-26 --out reports/spread
  carry spread --data data/catalog --venues binance,okx --symbols BTC --strategy hold --leverage 3 --out reports/hold
  carry spread --data data/catalog --venues binance,bybit,okx --leg-a spot --strategy best_venue_carry --symbols BTC,ETH --out reports/best
"""

EPILOG_SCAN = """examples:
  carry scan --data data/catalog --out reports/scan
  carry scan --data data/catalog --symbols XTZUSDT,DOTUSDT,BCHUSDT --start 2025-05-01 --out reports/neg
  carry scan --data data/catalog --venues binance,bybit,hyperliquid --symbols BTC,ETH --start 2024-09-04 --end 2025-07-26 --out reports/spread
"""


def _run_options(p: argparse.ArgumentParser, *, out_required: bool = True) -> None:
    g = p.add_argument_group("data")
    g.add_argument(
        "--data", type=Path, default=None, help="catalog directory (default: data/catalog or [data] catalog)"
    )
    g.add_argument("--symbols", default=None, help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    add_window_options(g)
    g.add_argument(
        "--allow-data-errors",
        default=None,
        metavar="CHECKS",
        help="data-check errors that do not stop the run, e.g. funding_outlier (comma-separated; 'all': any); "
        "recorded in summary.json and the report",
    )
    e = p.add_argument_group("engine (override the config file)")
    e.add_argument("--config", type=Path, default=None, help="run config TOML ([data], [engine], [strategy], ...)")
    e.add_argument(
        "--capital",
        type=engine_number("--capital"),
        default=None,
        help="initial capital per portfolio, quote (default 10000)",
    )
    e.add_argument("--leverage", type=engine_number("--leverage"), default=None, help="perp leverage (default 1)")
    e.add_argument("--margin-mode", choices=("isolated", "cross", "portfolio"), default=None)
    e.add_argument("--tiers", default=None, help="ccxt leverage tiers JSON (maintenance margin brackets)")
    e.add_argument(
        "--mmr",
        type=engine_number("--mmr"),
        default=None,
        help="flat maintenance margin rate, fraction (overrides --tiers)",
    )
    e.add_argument(
        "--borrow-rate",
        type=engine_number("--borrow-rate"),
        default=None,
        help="spot borrow rate, fraction per 365-day year",
    )
    e.add_argument(
        "--delay", type=engine_number("--delay", int), default=None, help="execution delay in bars (default 1)"
    )
    e.add_argument(
        "--slippage-bps", type=engine_number("--slippage-bps"), default=None, help="fixed slippage, basis points"
    )
    e.add_argument(
        "--fee",
        default=None,
        metavar="RATE",
        help="taker fee of both legs with its unit: 4bps or 0.04%% (sets spot_taker_fee_rate and "
        "perp_taker_fee_rate; a bare number is refused)",
    )
    e.add_argument("--order-type", choices=("taker", "maker"), default=None)
    e.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="any engine setting, e.g. --set topup_margin_ratio=0.8"
    )
    o = p.add_argument_group("output")
    o.add_argument("--out", type=Path, required=out_required, help="output directory (must not exist)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    o.add_argument("--open", action="store_true", help=OPEN_HELP)
    o.add_argument(
        "--full-outputs",
        action="store_true",
        default=None,
        help="equity, components and every funding/borrow event per bar whatever the size (large runs write "
        "them daily / lean by default; summary.json 'lean' says what)",
    )


OPEN_HELP = "open the written report.html in the browser (if none opens: a note with its path)"


def _strategy_file_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy-file", action="append", type=Path, help="a Python file that registers strategies")


def _add_run_commands(sub) -> None:
    from backtest.app import commands

    bt = sub.add_parser(
        "backtest",
        help="run one strategy (or one grid) and write a report",
        description="Run a strategy on catalog data and write summary, Parquet files and an HTML report.",
        epilog=EPILOG_BACKTEST,
        formatter_class=_formatter,
    )
    bt.add_argument("--strategy", default=None, help="strategy name (see carry strategies)")
    bt.add_argument("--param", action="append", metavar="NAME=VALUE", help="strategy parameter (repeatable)")
    _strategy_file_option(bt)
    _run_options(bt)
    bt.set_defaults(func=commands.cmd_backtest)

    cp = sub.add_parser(
        "compare",
        help="several strategies side by side on the same data and costs",
        epilog=EPILOG_COMPARE,
        formatter_class=_formatter,
    )
    cp.add_argument("--strategies", default=None, help="comma-separated strategy names")
    cp.add_argument(
        "--param", action="append", metavar="STRATEGY.NAME=VALUE", help="a strategy's parameter (repeatable)"
    )
    _strategy_file_option(cp)
    _run_options(cp)
    cp.set_defaults(func=commands.cmd_compare)

    sw = sub.add_parser(
        "sweep",
        help="every combination of a parameter grid in one engine call",
        epilog=EPILOG_SWEEP,
        formatter_class=_formatter,
    )
    sw.add_argument("--strategy", default=None, help="strategy name")
    sw.add_argument("--grid", action="append", metavar="NAME=V1,V2,...", help="swept parameter values (repeatable)")
    sw.add_argument("--param", action="append", metavar="NAME=VALUE", help="fixed parameter (repeatable)")
    sw.add_argument("--walk-forward", default=None, metavar="TRAIN:TEST", help="e.g. 180d:60d: in- vs out-of-sample")
    sw.add_argument("--rank-by", default="sharpe", choices=("sharpe", "total_return", "annualized_return"))
    _strategy_file_option(sw)
    _run_options(sw)
    from backtest.app.scale import add_scale_options

    add_scale_options(sw)  # --scheduler --max-memory --workers --symbol-chunk --param-chunk ...
    sw.set_defaults(func=commands.cmd_sweep)

    sc = sub.add_parser(
        "scan",
        help="funding regimes per symbol, and what carry / reverse carry earned in each",
        epilog=EPILOG_SCAN,
        formatter_class=_formatter,
    )
    sc.add_argument(
        "--window", type=whole_number(1), default=21, help="trailing settlements for the regime sign (default 21)"
    )
    sc.add_argument("--min-days", type=non_negative, default=14.0, help="shortest regime, days (default 14)")
    sc.add_argument(
        "--venues",
        default=None,
        metavar="A,B,...",
        help="compare funding between venues instead: per coin (--symbols BTCUSDT,ETHUSDT or BTC,ETH; default: "
        "every coin with funding on each venue) and pair of venues, the daily spread, its regimes and what "
        "collecting it earned less taker fees (funding only)",
    )
    sc.add_argument(
        "--spread-window",
        type=whole_number(1),
        default=7,
        help="with --venues: trailing days for the spread regime's sign (default 7)",
    )
    _run_options(sc)
    sc.set_defaults(func=commands.cmd_scan)

    sp = sub.add_parser(
        "spread",
        help="backtest funding-spread hedges between venues: a perp long on one, short on another",
        epilog=EPILOG_SPREAD,
        formatter_class=_formatter,
    )
    g = sp.add_argument_group("data")
    g.add_argument("--data", type=Path, default=None, help="catalog directory (default: data/catalog)")
    g.add_argument(
        "--venues", required=True, metavar="A,B,...", help="venues; every pair of them is traded (A long at +1)"
    )
    g.add_argument("--symbols", required=True, metavar="COINS", help="coins, e.g. BTC,ETH (or BTCUSDT,ETHUSDT)")
    g.add_argument("--start", default=None, help="first bar (UTC); default: where both venues of a pair trade")
    g.add_argument("--end", default=None, help="end (UTC, exclusive); default: where both venues of a pair trade")
    g.add_argument("--freq", default="1h", help="bar length: 1h (default), 4h, 1d, ...")
    g.add_argument(
        "--funding-gaps",
        choices=("error", "no_trade", "zero"),
        default="error",
        help="settlements missing inside a venue's funding span: error (default), no_trade (hold no position "
        "through the hole) or zero (count them as zero; flagged funding_gap_zero)",
    )
    g.add_argument(
        "--quote-rate",
        choices=("auto", "parity"),
        default="auto",
        help="a venue quoted in USDC against one in USDT: auto (default) values it at the catalog's USDCUSDT spot "
        "bars where stored, else 1:1 (flagged usdc_usdt_parity); parity: 1:1 always",
    )
    s_ = sp.add_argument_group("strategy")
    g.add_argument(
        "--leg-a",
        choices=("perp", "spot"),
        default="perp",
        help="perp (default): every pair of the venues, a perp on each; spot: spot bought on the first venue "
        "against the perp on each other one (a cash-and-carry across venues, long only)",
    )
    s_.add_argument(
        "--strategy",
        choices=("funding_spread", "hold", "best_venue_carry"),
        default="funding_spread",
        help="funding_spread (default): per coin the venue pair whose trailing spread beats both venues' fees the "
        "most, one pair at a time; hold: long A / short B throughout, every pair; best_venue_carry (with --leg-a spot): "
        "the perp on whichever venue pays most",
    )
    s_.add_argument(
        "--direction",
        choices=("carry", "reverse"),
        default="carry",
        help="--strategy hold: carry (default: long the first venue's leg, short the other's) or reverse (short "
        "it: with --leg-a spot, coins borrowed in the first venue's margin account, paying interest, called at "
        "its margin level, against the perp long)",
    )
    s_.add_argument(
        "--switch",
        type=number_list("--switch"),
        default=[0.05],
        help="funding_spread over three venues or more, best_venue_carry: move to a venue pair (a venue) paying this "
        "much more, annualized fraction (0.05)",
    )
    s_.add_argument(
        "--entry",
        type=number_list("--entry"),
        default=[0.05],
        help="funding_spread, best_venue_carry: entry, annualized fraction after fees (0.05)",
    )
    s_.add_argument(
        "--exit",
        type=number_list("--exit"),
        default=[0.0],
        help="funding_spread, best_venue_carry: exit, annualized fraction after fees (0.0)",
    )
    s_.add_argument(
        "--window-hours",
        type=number_list("--window-hours"),
        default=[72.0],
        help="funding_spread, best_venue_carry: trailing window of the funding, hours (72)",
    )
    s_.add_argument(
        "--min-hold-hours",
        type=number_list("--min-hold-hours"),
        default=[72.0],
        help="funding_spread, best_venue_carry: minimum hold, hours (72)",
    )
    e = sp.add_argument_group("engine")
    e.add_argument("--capital", type=engine_number("--capital"), default=10_000.0, help="capital per trade (10000)")
    e.add_argument(
        "--leverage", type=number_list("--leverage"), default=[2.0], help="the perps' leverage (2; a grid: 1,2,3)"
    )
    e.add_argument(
        "--leverage-a",
        type=engine_number("--leverage-a"),
        default=None,
        help="leg A's perp leverage where it differs from --leverage (leg B's); the capital is then split "
        "L_B / (L_A + L_B) to venue A",
    )
    e.add_argument("--slippage-bps", type=engine_number("--slippage-bps"), default=None, help="slippage, bps")
    e.add_argument("--order-type", choices=("taker", "maker"), default=None)
    e.add_argument("--delay", type=engine_number("--delay", int), default=None, help="execution delay, bars (1)")
    e.add_argument(
        "--after-liquidation",
        choices=("close_and_reenter", "close_spot", "hold_spot", "reenter"),
        default=None,
        help="what follows a leg's liquidation (default close_and_reenter: close the other leg, re-enter "
        "after the cool-down; close_spot: close it and stay flat)",
    )
    e.add_argument(
        "--margin-mode",
        type=_venue_margins,
        default=None,
        metavar="MODE[,MODE]",
        help="isolated (default): each coin's leg on a venue has its own margin; cross: the coins of a parameter set "
        "share one account per venue (a leg draws on the other coins' margin; the account is liquidated as a whole); "
        "two modes: leg A's venue's (the first of each pair) and leg B's, e.g. isolated,cross",
    )
    e.add_argument(
        "--transfer-delay-hours", type=non_negative, default=1.0, help="hours a transfer between venues takes (1)"
    )
    e.add_argument("--transfer-fee", type=non_negative, default=1.0, help="flat fee per transfer, quote (1)")
    e.add_argument(
        "--switch-closes-both",
        action="store_true",
        help="a strategy that picks among venues: at a switch close the leg that stays too and reopen both when "
        "the collateral arrives (hedged throughout, two more fills; default: keep it open, unhedged meanwhile)",
    )
    e.add_argument(
        "--rebalance-band",
        type=_band,
        default=0.3,
        help="move collateral when the poorer leg's margin balance is below 1 - band of the mean (0.3; none: never)",
    )
    e.add_argument("--tiers-dir", type=Path, default=None, help="folder with the venues' ccxt tiers files")
    k = sp.add_argument_group(
        "grids and scale-out (a comma list of --entry, --exit, --window-hours, --min-hold-hours, --switch or "
        "--leverage is a grid: every combination is a parameter set; the sets split over processes or a Dask "
        "cluster with the same figures)"
    )
    k.add_argument("--workers", type=whole_number(1), default=None, help="worker processes (default 1: this one)")
    k.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="run the sets on this Dask scheduler")
    k.add_argument("--param-chunk", type=whole_number(1), default=None, metavar="M", help="parameter sets per task")
    o = sp.add_argument_group("output")
    o.add_argument("--out", type=Path, required=True, help="output directory (must not exist)")
    o.add_argument("--overwrite", action="store_true", help="replace an existing output directory")
    sp.set_defaults(func=commands.cmd_spread)

    st = sub.add_parser("strategies", help="list the registered strategies and their parameters")
    _strategy_file_option(st)
    st.add_argument(
        "--json",
        action="store_true",
        help="print JSON: per strategy its name, doc line and parameters (name, type, default, unit, help, "
        "bounds ge/gt/le/lt, choices)",
    )
    st.set_defaults(func=commands.cmd_strategies)


def _version() -> str:
    from backtest import __version__

    return __version__


def _split(s: str | None) -> list[str] | None:
    return None if s is None else [x.strip().upper() for x in s.split(",") if x.strip()]


def _symbols_option(s: str | None) -> list[str] | None:
    """``--symbols A,B`` of the data commands: None when not given; naming none is an error."""
    symbols = _split(s)
    if symbols is not None and not symbols:
        raise ConfigError(f"--symbols {s!r} names no symbol: e.g. --symbols BTCUSDT,ETHUSDT")
    return symbols


def _names(s: str | None) -> list[str]:
    """Comma-separated names as given (check names are lower case)."""
    return [] if s is None else [x.strip() for x in s.split(",") if x.strip()]


def _need_dir(path: Path, what: str) -> None:
    if not path.exists():
        raise DataError(f"{what} {path} does not exist")


# --------------------------------------------------------------------------- commands
def _cmd_ingest_freqtrade(args) -> int:
    from data.catalog import Catalog
    from data.ingest.freqtrade import ingest_freqtrade

    _need_dir(args.directory, "freqtrade data directory")
    t = time.perf_counter()
    report = ingest_freqtrade(
        args.directory,
        Catalog(args.out),
        venue=args.venue,
        symbols=_split(args.symbols),
        allow_errors=_names(args.allow_errors),
    )
    print(report.summary())
    print(f"catalog: {args.out} ({time.perf_counter() - t:.1f} s)")
    return 0


def _cmd_ingest_binance_vision(args) -> int:
    from data.catalog import Catalog
    from data.ingest.binance_vision import ingest_binance_vision

    for p in args.paths:
        _need_dir(p, "path")
    report = ingest_binance_vision(
        args.paths,
        Catalog(args.out),
        venue=args.venue,
        verify_checksum=not args.no_checksum,
        market=args.market,
        kind=args.kind,
        allow_errors=_names(args.allow_errors),
    )
    print(report.summary())
    print(f"catalog: {args.out}")
    return 0


def _cmd_fetch_binance_vision(args) -> int:
    from data.catalog import Catalog
    from data.fetch import fetch_binance_vision

    report = fetch_binance_vision(
        args.symbols,
        args.start,
        args.end,
        Catalog(args.out),
        base_url=args.base_url,
        download_dir=args.download_dir,
        timeframe=args.timeframe,
        progress=not args.no_progress and show_progress(args),
        allow_errors=_names(args.allow_errors),
    )
    print(report.summary())
    return 0


def _cmd_fetch_ccxt(args) -> int:
    from data.catalog import Catalog
    from data.fetch_ccxt import fetch_ccxt

    report = fetch_ccxt(
        args.exchange,
        args.symbols,
        args.kinds,
        args.start,
        args.end,
        Catalog(args.out),
        timeframe=args.timeframe,
        download_dir=args.download_dir,
        venue=args.venue,
        api_url=args.api_url,
        progress=not args.no_progress and show_progress(args),
        allow_errors=_names(args.allow_errors),
    )
    print(report.summary())
    return 0


def _cmd_info(args) -> int:
    from data.catalog import Catalog
    from data.quality import catalog_info, format_info

    _need_dir(args.catalog, "catalog")
    rows = catalog_info(Catalog(args.catalog), symbols=_symbols_option(args.symbols))
    print(json.dumps(rows, indent=2, default=str) if args.json else format_info(rows))
    return 0


def _cmd_check(args) -> int:
    from dataclasses import asdict

    from data.catalog import Catalog
    from data.quality import check_catalog, format_problems

    _need_dir(args.catalog, "catalog")
    problems = check_catalog(Catalog(args.catalog), symbols=_symbols_option(args.symbols))
    if args.json:
        print(json.dumps([asdict(p) for p in problems], indent=2, default=str))
    else:
        print(format_problems(problems))
    failing = {"warning": ("warning", "error"), "error": ("error",)}[args.fail_on]
    return 1 if any(p.severity in failing for p in problems) else 0


def _cmd_compile(args) -> int:
    from backtest.app.compile import cmd_compile

    return cmd_compile(args)


def _cmd_demo(args) -> int:
    from backtest.app.commands import open_report
    from backtest.app.demo import run_demo

    code = run_demo(data_dir=args.data, out_dir=args.out, progress=show_progress(args), overwrite=args.overwrite)
    if args.open:
        open_report(args.out / "report.html")
    return code


def _note(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a warning as one line, ``carry: note: ...``, instead of Python's two-line form with
    the source file (a library's ``UserWarning`` reads as a note to the user, not as a bug; none
    at the quiet level)."""
    text = one_line(str(message))
    if text not in _NOTED:  # the same warning from several engine calls of one command: once
        _NOTED.add(text)
        verbosity.note(text)


_NOTED: set[str] = set()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quiet and args.verbose:
        parser.error("-q/--quiet and -v/--verbose contradict each other: give one")
    import warnings

    from backtest.app.memory import configure_hugepages

    configure_hugepages()  # no huge-page stalls on the fresh arrays of every run (backtest.app.memory)
    level = verbosity.QUIET if args.quiet else verbosity.VERBOSE if args.verbose else verbosity.DEFAULT
    previous = verbosity.configure(level)
    try:
        with warnings.catch_warnings(), verbosity.stage("total"):
            warnings.showwarning = _note
            _NOTED.clear()
            return int(args.func(args) or 0)
    except CarryError as exc:  # 1: data, checks, downloads, outputs; 2: settings (ConfigError)
        print(f"carry: error: {one_line(str(exc))}", file=sys.stderr)
        return int(exc.exit_code)
    except BrokenPipeError:  # output piped into head & co.
        sys.stderr.close()
        return 0
    except OSError as exc:
        print(f"carry: error: {one_line(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("carry: interrupted", file=sys.stderr)
        return 130
    finally:
        verbosity.configure(previous)  # main() called again in one process starts from its own level


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

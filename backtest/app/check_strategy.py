"""``carry check-strategy``: prove a strategy free of look-ahead on real or demo data.

Runs :func:`strategies.lookahead.check_lookahead`: the strategy on the whole data, then at
several cut bars ``t`` on the data ending at ``t`` and on a copy whose bars after ``t`` are
random, comparing every target and weight of bars ``0..t``. Prints the verdict (its first line
names the first differing bar, column and probe) and exits 0 when no look-ahead is found, 1
when one is; errors (unknown strategy, bad parameters, missing data) exit as every command's.

::

    carry check-strategy --strategy-file my.py --strategy mine --param window=24 --grid entry=0.05,0.1
    carry check-strategy --strategy funding_threshold --data data/catalog --symbols BTCUSDT --json check.json

Without ``--data`` the strategy runs on the built-in demo dataset (``carry demo``'s, written
to a temporary directory).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from backtest.app.argtypes import add_window_options, whole_number
from data.errors import ConfigError, DataError
from data.market import Market

__all__ = ["add_parser", "run", "load_check_market"]

EPILOG = """examples:
  carry check-strategy --strategy-file my_strategy.py --strategy mine
  carry check-strategy --strategy funding_threshold --grid entry=0.05,0.1 --param exit=0.02 \\
      --data data/catalog --symbols BTCUSDT,ETHUSDT --start 2024-01-01 --json check.json

exit status: 0 no look-ahead found, 1 look-ahead found (or a data error), 2 a usage or settings error
"""


def add_parser(sub, formatter_class=None) -> argparse.ArgumentParser:
    """Register ``check-strategy`` on the ``carry`` subparsers ``sub``; dispatches to :func:`run`."""
    p = sub.add_parser(
        "check-strategy",
        help="check a strategy for look-ahead (exit 1 when its targets use future data)",
        description="Run a strategy on the data, on copies ending at several cut bars and on copies whose\n"
        "bars after the cut are random; report the first bar whose target (or weight) changes.\n"
        "A target at bar i may use row i of the market (its close, the funding settled at its\n"
        "close), never a later row.",
        epilog=EPILOG,
        formatter_class=formatter_class or argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--strategy", required=True, help="strategy name (see carry strategies)")
    p.add_argument(
        "--strategy-file", action="append", type=Path, help="a Python file that registers strategies (repeatable)"
    )
    p.add_argument("--param", action="append", metavar="NAME=VALUE", help="fixed strategy parameter (repeatable)")
    p.add_argument(
        "--grid", action="append", metavar="NAME=V1,V2,...", help="parameter values, every set checked (repeatable)"
    )
    g = p.add_argument_group("data (default: the built-in demo dataset)")
    g.add_argument("--data", type=Path, default=None, help="catalog directory (default: the demo dataset)")
    g.add_argument("--symbols", default=None, help="comma-separated symbols (default: every symbol of the catalog)")
    add_window_options(g)
    c = p.add_argument_group("check")
    c.add_argument(
        "--cuts", type=whole_number(0), default=5, help="cut bars spread over the data (default 5; 0: --cut only)"
    )
    c.add_argument(
        "--cut", action="append", metavar="BAR|TIME", help="an extra cut: a bar number or a time (repeatable)"
    )
    c.add_argument("--seed", type=whole_number(0), default=0, help="seed of the random future (default 0)")
    c.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the report as JSON to PATH")
    p.set_defaults(func=run)
    return p


def _params(name: str, fixed_items: list[str] | None, grid_items: list[str] | None) -> dict | None:
    """The parameter set or grid of ``--param`` / ``--grid`` (as ``carry sweep`` reads them)."""
    from strategies import parse_params

    fixed = parse_params(name, fixed_items) if fixed_items else {}
    grid = parse_params(name, grid_items) if grid_items else {}
    grid = {k: (v if isinstance(v, list) else [v]) for k, v in grid.items()}
    overlap = set(grid) & set(fixed)
    if overlap:
        raise ConfigError(f"parameters both fixed (--param) and swept (--grid): {sorted(overlap)}")
    params = {**fixed, **grid}
    return params or None


def _cuts(items: list[str] | None) -> list[int | str] | None:
    if not items:
        return None
    out: list[int | str] = []
    for item in items:
        text = item.strip()
        out.append(int(text) if text.lstrip("-").isdigit() else text)
    return out


def load_check_market(args) -> tuple[Market, str]:
    """The market to check and a description of where it comes from: the catalog of ``--data``
    (every symbol with spot and perp data unless ``--symbols``), or the demo dataset."""
    from backtest.app import runs as app
    from backtest.app.commands import data_overrides

    data = data_overrides(args)
    if args.data is None:
        from data.synthetic import DEMO_SYMBOLS, write_demo_catalog

        with tempfile.TemporaryDirectory(prefix="carry-check-") as tmp:
            catalog = write_demo_catalog(Path(tmp) / "demo")
            data["catalog"] = str(catalog.root)
            data["symbols"] = data["symbols"] or ",".join(DEMO_SYMBOLS)
            market = _load(app, data)
        return market, "the built-in demo dataset"
    if not args.data.exists():
        raise DataError(f"catalog {args.data} does not exist")
    if not data["symbols"]:
        from data.catalog import Catalog
        from data.loader import available_symbols

        found = available_symbols(Catalog(args.data), venue=args.venue or "binance")
        if not found:
            raise ConfigError(f"catalog {args.data} has no symbol with both spot and perp data")
        data["symbols"] = ",".join(found)
    return _load(app, data), f"catalog {args.data}"


def _load(app, data: dict) -> Market:
    from backtest.app.runs import StrategySpec

    cfg = app.build_run_config({}, data_overrides=data, strategies=[StrategySpec("always_carry")])
    return app.load_run_market(cfg)


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as JSON to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=2, allow_nan=False)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def run(args) -> int:
    """``carry check-strategy``: 0 when no look-ahead is found, 1 when one is."""
    # strategies/__init__.py exports check_lookahead (strategies.lookahead): the application layer
    # imports the strategies package only (the import contract in pyproject.toml)
    from strategies import check_lookahead, get_strategy, load_strategy_file

    for path in args.strategy_file or []:
        load_strategy_file(path)
    strategy = get_strategy(args.strategy)  # did-you-mean before any data is read
    params = _params(strategy.name, args.param, args.grid)
    market, source = load_check_market(args)
    report = check_lookahead(strategy, market, params, cuts=_cuts(args.cut), n_cuts=args.cuts, seed=args.seed)
    print(report.text())
    print(f"  source: {source}")
    if args.json is not None:
        write_json(args.json, {**report.to_dict(), "source": source})
        print(f"wrote {args.json}")
    sys.stdout.flush()
    return 0 if report.clean else 1

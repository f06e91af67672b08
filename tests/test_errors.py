"""Every error a user can cause is a one-line CarryError naming the culprit (issue 11).

* Bad input through the command line, as a user runs it (``python -m backtest ...`` in a
  subprocess, on a tiny synthetic catalog): the exit code (1 data problems, 2 settings and
  usage), exactly one line on stderr, no traceback, the offending name in the message and a
  did-you-mean hint where a name is involved.
* The same through the Python API: the error class, a one-line message, the name, the hint.
* Every ``raise`` in ``data/``, ``backtest/`` (outside ``kernels/``) and ``strategies/`` is
  read with :mod:`ast`: no bare ``ValueError``/``KeyError``/``TypeError`` reaches a user
  (internal ones are allow-listed below, each with its reason).
* ``strategies/`` has no import circles and no imports of our packages hidden inside
  functions; every module imports on its own.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from data.errors import CarryError, ChecksumError, ConfigError, DataError, FetchError, UnknownNameError
from tests.conftest import REPO

SYMBOLS = ["BTCUSDT", "ETHUSDT"]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny catalog (2 symbols x 10 days of hourly bars) and a set of broken inputs."""
    from data.synthetic import write_synthetic_catalog

    root = tmp_path_factory.mktemp("errors")
    cat = write_synthetic_catalog(root / "cat", 2, 10, timeframe="1h", symbols=SYMBOLS).root
    corrupt = root / "corrupt"
    corrupt.mkdir()
    for p in cat.rglob("*.parquet"):
        dest = corrupt / p.relative_to(cat)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(p.read_bytes())
    broken = corrupt / "venue=binance/kind=perp/timeframe=1h/symbol=BTCUSDT/year=2024.parquet"
    broken.write_bytes(b"not a parquet file")

    zips = root / "zips"
    zips.mkdir()
    (zips / "BTCUSDT-1h-2024-01.zip").write_bytes(b"not a zip")
    (zips / "prices.zip").write_bytes(b"PK")
    ft = root / "freqtrade"
    ft.mkdir()
    (ft / "BTC_USDT-1h.feather").write_bytes(b"not feather")
    texts = {
        "bad_toml": "[data\nsymbols = 1\n",
        "key_toml": '[data]\nsymbol = "BTCUSDT"\n',
        "gaps_toml": '[data]\ngaps = "fill"\n',
        "venue_toml": '[data]\nvenue = "binanse"\n',
        "engine_toml": "[engine]\nperp_levrage = 2\n",
        "noname_toml": "[strategy]\nparams = {}\n",
        "params_toml": '[strategy]\nname = "always_carry"\nparams = 5\n',
        "symbols_toml": "[data]\nsymbols = 3\n",
        "tiers_json": "{",
        "tiers_other": json.dumps({"ETH/USDT:USDT": [{"minNotional": 0, "maintenanceMarginRate": 0.004}]}),
        "tiers_malformed": json.dumps({"BTC/USDT:USDT": [{"minNotional": 0}], "ETH/USDT:USDT": [{"minNotional": 0}]}),
    }
    out = {"cat": cat, "corrupt": corrupt, "broken": broken, "zips": zips, "ft": ft, "tmp": root}
    for name, text in texts.items():
        path = root / f"{name}.{'json' if name.startswith('tiers') else 'toml'}"
        path.write_text(text)
        out[name] = path
    return out


@pytest.fixture(scope="module")
def market(files):
    from data.loader import load_market

    return load_market(files["cat"], SYMBOLS)


# --------------------------------------------------------------------------- the CLI
RUN = ["--data", "{cat}", "--symbols", "BTCUSDT,ETHUSDT", "--out", "{tmp}/out", "--quiet"]
FETCH = ["data", "fetch", "binance-vision", "--symbols", "BTCUSDT", "--out", "{tmp}/fetched"]

#: (id, arguments, exit code, words the message must hold, did-you-mean hint or None)
CLI_CASES = [
    # data: missing, corrupt and misnamed inputs (exit 1)
    ("missing-catalog", ["data", "info", "{tmp}/nope"], 1, ["catalog", "nope", "does not exist"], None),
    (
        "missing-freqtrade-dir",
        ["data", "ingest", "freqtrade", "{tmp}/nope", "--out", "{tmp}/c1"],
        1,
        ["freqtrade data directory", "nope", "does not exist"],
        None,
    ),
    (
        "corrupt-zip",
        ["data", "ingest", "binance-vision", "{zips}/BTCUSDT-1h-2024-01.zip", "--out", "{tmp}/c2", "--market", "um"],
        1,
        ["BTCUSDT-1h-2024-01.zip", "corrupt or unreadable zip"],
        None,
    ),
    (
        "zip-name",
        ["data", "ingest", "binance-vision", "{zips}/prices.zip", "--out", "{tmp}/c2"],
        1,
        ["prices.zip", "not a Binance bulk file name"],
        None,
    ),
    (
        "corrupt-feather",
        ["data", "ingest", "freqtrade", "{ft}", "--out", "{tmp}/c3"],
        1,
        ["BTC_USDT-1h.feather", "cannot read feather file"],
        None,
    ),
    (
        "corrupt-parquet",
        ["backtest", "--strategy", "always_carry", "--data", "{corrupt}", *RUN[2:]],
        1,
        ["year=2024.parquet", "symbol=BTCUSDT", "corrupt"],
        None,
    ),
    (
        "unknown-symbol",
        ["backtest", "--strategy", "always_carry", "--data", "{cat}", "--symbols", "BTCUSTD", "--out", "{tmp}/o"],
        1,
        ["BTCUSTD"],
        "did you mean 'BTCUSDT'",
    ),
    (
        "symbol-not-stored",
        ["backtest", "--strategy", "always_carry", "--data", "{cat}", "--symbols", "ETHUSDC", "--out", "{tmp}/o"],
        1,
        ["no spot bars for ETHUSDC", "available symbols: BTCUSDT, ETHUSDT"],
        "did you mean 'ETHUSDT'",
    ),
    (
        "freq-not-stored",
        ["backtest", "--strategy", "always_carry", "--freq", "30m", *RUN],
        1,
        ["BTCUSDT", "dividing 30m", "stored timeframes: 1h"],
        None,
    ),
    (
        "bad-tiers-json",
        ["backtest", "--strategy", "always_carry", *RUN, "--tiers", "{tiers_json}"],
        1,
        ["tiers_json.json"],
        None,
    ),
    (
        "tiers-lack-symbol",
        ["backtest", "--strategy", "always_carry", *RUN, "--tiers", "{tiers_other}"],
        1,
        ["tiers_other.json", "BTC/USDT:USDT"],
        "did you mean 'ETH/USDT:USDT'",
    ),
    (
        "tiers-malformed",
        ["backtest", "--strategy", "always_carry", *RUN, "--tiers", "{tiers_malformed}"],
        1,
        ["tiers_malformed.json", "BTC/USDT:USDT", "maintenanceMarginRate"],
        None,
    ),
    # settings, flags and names (exit 2)
    (
        "check-unknown-symbol",
        ["data", "check", "{cat}", "--symbols", "BTCUSTD"],
        2,
        ["BTCUSTD"],
        "did you mean 'BTCUSDT'",
    ),
    (
        "fetch-bad-month",
        [*FETCH, "--start", "2024-13", "--end", "2024-14"],
        2,
        ["start", "'2024-13'", "YYYY-MM"],
        None,
    ),
    (
        "fetch-bad-timeframe",
        [*FETCH, "--start", "2024-01", "--end", "2024-02", "--timeframe", "1x"],
        2,
        ["timeframe", "'1x'"],
        None,
    ),
    (
        "fetch-bad-url",
        [*FETCH, "--start", "2024-01", "--end", "2024-02", "--base-url", "htp://example"],
        2,
        ["base_url", "htp://example"],
        None,
    ),
    (
        "unknown-strategy",
        ["backtest", "--strategy", "fundng_threshold", *RUN],
        2,
        ["fundng_threshold"],
        "did you mean 'funding_threshold'",
    ),
    (
        "compare-unknown-strategy",
        ["compare", "--strategies", "always_carry,fundng_sign", *RUN],
        2,
        ["fundng_sign"],
        "did you mean 'funding_sign'",
    ),
    (
        "unknown-parameter",
        ["backtest", "--strategy", "funding_threshold", "--param", "entyr=0.1", *RUN],
        2,
        ["entyr", "FundingThresholdParams"],
        "did you mean 'entry_annualized'",
    ),
    (
        "parameter-in-percent",
        ["backtest", "--strategy", "funding_threshold", "--param", "entry=10", *RUN],
        2,
        ["entry_annualized", "percentage"],
        None,
    ),
    (
        "parameter-option",
        ["backtest", "--strategy", "funding_threshold", "--param", "signal=predictd", *RUN],
        2,
        ["signal", "predictd"],
        "did you mean 'predicted'",
    ),
    (
        "grid-not-a-number",
        ["sweep", "--strategy", "funding_threshold", "--grid", "entry=0.05,abc", *RUN],
        2,
        ["entry_annualized", "'abc'"],
        None,
    ),
    (
        "unknown-engine-setting",
        ["backtest", "--strategy", "always_carry", "--set", "perp_leverag=2", *RUN],
        2,
        ["perp_leverag"],
        "did you mean 'perp_leverage'",
    ),
    (
        "margin-mode",
        ["backtest", "--strategy", "always_carry", "--set", "margin_mode=crosss", *RUN],
        2,
        ["margin_mode", "crosss"],
        "did you mean 'cross'",
    ),
    (
        "after-liquidation",
        ["backtest", "--strategy", "always_carry", "--set", "after_liquidation=hold", *RUN],
        2,
        ["after_liquidation", "'hold'"],
        "did you mean 'hold_spot'",
    ),
    (
        "maintenance-rate",
        ["backtest", "--strategy", "always_carry", "--mmr", "1.5", *RUN],
        2,
        ["maintenance_margin_rate", "1.5"],
        None,
    ),
    (
        "bad-start",
        ["backtest", "--strategy", "always_carry", "--start", "notadate", *RUN],
        2,
        ["start", "notadate"],
        None,
    ),
    ("bad-freq", ["backtest", "--strategy", "always_carry", "--freq", "1x", *RUN], 2, ["freq", "'1x'"], None),
    (
        "bad-toml",
        ["backtest", "--strategy", "always_carry", "--config", "{bad_toml}", *RUN],
        2,
        ["bad_toml.toml", "not valid TOML"],
        None,
    ),
    (
        "config-data-key",
        ["backtest", "--strategy", "always_carry", "--config", "{key_toml}", *RUN],
        2,
        ["key_toml.toml", "'symbol'"],
        "did you mean 'symbols'",
    ),
    (
        "config-engine-key",
        ["backtest", "--strategy", "always_carry", "--config", "{engine_toml}", *RUN],
        2,
        ["perp_levrage"],
        "did you mean 'perp_leverage'",
    ),
    (
        "gap-policy",
        ["backtest", "--strategy", "always_carry", "--config", "{gaps_toml}", *RUN],
        2,
        ["gap policy", "'fill'"],
        "did you mean 'ffill'",
    ),
    (
        "venue",
        ["backtest", "--strategy", "always_carry", "--config", "{venue_toml}", *RUN],
        2,
        ["venue", "'binanse'"],
        "did you mean 'binance'",
    ),
    (
        "missing-strategy-file",
        ["backtest", "--strategy", "always_carry", "--strategy-file", "{tmp}/mine.py", *RUN],
        2,
        ["mine.py", "not found"],
        None,
    ),
    # argparse usage errors stay exit 2 (usage line plus one error line)
    ("argparse-choice", ["data", "check", "{cat}", "--fail-on", "never"], 2, ["--fail-on", "never"], None),
    ("argparse-scan-window", ["scan", "--window", "0", *RUN], 2, ["--window", "'0'"], None),
    (
        "toml-strategy-without-name",
        ["backtest", "--config", "{noname_toml}", *RUN],
        2,
        ["noname_toml.toml", "[strategy] needs name"],
        None,
    ),
    (
        "toml-params-not-a-table",
        ["backtest", "--config", "{params_toml}", *RUN],
        2,
        ["params_toml.toml", "[strategy] params must be a table"],
        None,
    ),
    (
        "toml-symbols-not-names",
        ["backtest", "--strategy", "always_carry", "--config", "{symbols_toml}", *RUN],
        2,
        ["symbols_toml.toml", "[data] symbols"],
        None,
    ),
    (
        "argparse-param-chunk",
        ["sweep", "--strategy", "funding_threshold", "--grid", "entry=0.05,0.1", "--param-chunk", "-1", *RUN],
        2,
        ["--param-chunk", "expected a whole number >= 1", "'-1'"],
        None,
    ),
    (
        "argparse-workers",
        ["sweep", "--strategy", "funding_threshold", "--grid", "entry=0.05,0.1", "--workers", "0", *RUN],
        2,
        ["--workers", "expected a whole number >= 1", "'0'"],
        None,
    ),
]


def carry(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "backtest", *args], capture_output=True, text=True, cwd=REPO, timeout=300
    )


@pytest.mark.parametrize(("case", "args", "code", "words", "hint"), CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_bad_input_is_one_line_with_the_name(files, case, args, code, words, hint):
    argv = [a.format(**files) for a in args]
    r = carry(*argv)
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    if case.startswith("argparse"):  # argparse prints its usage first, then the one error line
        assert lines[0].startswith("usage: carry") and sum(x.startswith("carry: error") for x in lines) == 1
    else:
        assert len(lines) == 1, lines
    line = lines[-1]
    assert line.startswith("carry: error: "), line
    for word in words:
        assert word in line, (word, line)
    if hint is not None:
        assert re.search(re.escape(hint), line, re.IGNORECASE), line
    assert not (files["tmp"] / "out").exists()


def test_cli_cases_cover_both_exit_codes_and_many_inputs():
    codes = [c[2] for c in CLI_CASES]
    assert len(CLI_CASES) >= 25 and codes.count(1) >= 8 and codes.count(2) >= 15
    assert sum(c[4] is not None for c in CLI_CASES) >= 12  # did-you-mean wherever a name is involved


def test_prediction_report_bad_input_is_one_line(files):
    r = subprocess.run(
        [sys.executable, "-m", "strategies.prediction_report", "--data", str(files["cat"]), "--symbols", "BTCUSDT"]
        + ["--start", "someday"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("python -m strategies.prediction_report: error: bad start 'someday'")


# --------------------------------------------------------------------------- the Python API
def _load(files, **kw):
    from data.loader import load_market

    return load_market(files["cat"], kw.pop("symbols", SYMBOLS), **kw)


def _ingest_zip(files, **kw):
    from data.catalog import Catalog
    from data.ingest.binance_vision import ingest_binance_vision

    return ingest_binance_vision([files["zips"] / "BTCUSDT-1h-2024-01.zip"], Catalog(files["tmp"] / "c5"), **kw)


def _fetch(files, **kw):
    from data.fetch import fetch_binance_vision

    args = dict(symbols="BTCUSDT", start="2024-01", end="2024-01", out=files["tmp"] / "c6", progress=False)
    return fetch_binance_vision(**{**args, **kw})


def _tiers(files, name):
    from backtest.tiers import load_tiers

    return load_tiers(files[name], SYMBOLS)


def _engine(**kw):
    from backtest.config import BacktestConfig

    return BacktestConfig(**kw)


def _strategy(market, name, params=None):
    from strategies import run_strategy

    return run_strategy(name, market, params)


def _partition(kind):
    from data.catalog import PartitionKey

    return PartitionKey("binance", kind, "BTCUSDT", "1h")


def _pool(limit):
    from backtest.buffers import BufferPool

    return BufferPool(limit)


def _targets(market):
    from backtest.targets import Targets

    return Targets.from_array(market, np.zeros((3, 3)))


def _read_parquet(files):
    from data.catalog import read_parquet

    return read_parquet(files["broken"], "perp")


def _check(files, symbols):
    from data.catalog import Catalog
    from data.quality import check_catalog

    return check_catalog(Catalog(files["cat"]), symbols=symbols)


def _premium(market, source):
    from strategies import premium_proxy

    return premium_proxy(market, source)


def _signal(market, name):
    from strategies import funding_signal

    return funding_signal(market, name, 9)


def _parse(name, items):
    from strategies import parse_params

    return parse_params(name, items)


def _get(name):
    from strategies import get_strategy

    return get_strategy(name)


def _toml(files, name):
    from backtest.config import BacktestConfig

    return BacktestConfig.from_toml(files[name])


def _accuracy(market, lead_bars):
    from strategies import prediction_accuracy

    return prediction_accuracy(market, lead_bars=lead_bars)


def _timeframe(label):
    from data.schema import timeframe_minutes

    return timeframe_minutes(label)


#: (id, call(files, market), error class, words the message must hold, did-you-mean hint or None)
API_CASES = [
    ("gap-policy", lambda f, m: _load(f, gaps="fill"), UnknownNameError, ["gap policy", "'fill'"], "'ffill'"),
    ("freq", lambda f, m: _load(f, freq="1x"), ConfigError, ["freq", "'1x'"], None),
    ("freq-alias", lambda f, m: _load(f, freq="1hr"), ConfigError, ["freq", "'1hr'"], "'1h'"),
    ("start", lambda f, m: _load(f, start="notadate"), ConfigError, ["start", "notadate"], None),
    ("end", lambda f, m: _load(f, end=object()), ConfigError, ["end", "object"], None),
    ("venue", lambda f, m: _load(f, venue="binanse"), UnknownNameError, ["venue", "binanse"], "'binance'"),
    ("max-fill", lambda f, m: _load(f, max_fill_bars=-1), ConfigError, ["max_fill_bars", "-1"], None),
    ("symbol", lambda f, m: _load(f, symbols=["BTCUSTD"]), DataError, ["BTCUSTD"], "'BTCUSDT'"),
    ("symbol-quote", lambda f, m: _load(f, symbols=["BTC"]), DataError, ["'BTC'", "base and quote"], None),
    ("kind", lambda f, m: _partition("fundng"), UnknownNameError, ["kind", "fundng"], "'funding'"),
    ("timeframe", lambda f, m: _timeframe("4x"), ConfigError, ["timeframe", "'4x'"], None),
    ("market-field", lambda f, m: m.frame("fundng_rate"), UnknownNameError, ["fundng_rate"], "'funding_rate'"),
    ("market-symbol", lambda f, m: m.select(["ETHUSTD"]), UnknownNameError, ["ETHUSTD"], "'ETHUSDT'"),
    ("market-date", lambda f, m: m.select(start="soon"), ConfigError, ["start", "soon"], None),
    ("corrupt-parquet", lambda f, m: _read_parquet(f), DataError, ["year=2024.parquet", "corrupt"], None),
    ("check-symbol", lambda f, m: _check(f, ["ETHUSTD"]), UnknownNameError, ["ETHUSTD"], "'ETHUSDT'"),
    ("binance-kind", lambda f, m: _ingest_zip(f, kind="mrak"), UnknownNameError, ["kind", "mrak"], "'mark'"),
    ("binance-market", lambda f, m: _ingest_zip(f, market="sopt"), UnknownNameError, ["market", "sopt"], "'spot'"),
    ("fetch-kind", lambda f, m: _fetch(f, kinds=("sopt",)), UnknownNameError, ["kinds", "sopt"], "'spot'"),
    ("fetch-month", lambda f, m: _fetch(f, end="2024-1"), ConfigError, ["end month", "2024-1"], None),
    ("engine-option", lambda f, m: _engine(margin_mode="crosss"), UnknownNameError, ["margin_mode"], "'cross'"),
    ("engine-order", lambda f, m: _engine(order_type="market"), UnknownNameError, ["order_type", "market"], None),
    ("engine-number", lambda f, m: _engine(perp_leverage="2"), ConfigError, ["perp_leverage", "'2'"], None),
    ("engine-toml", lambda f, m: _toml(f, "bad_toml"), ConfigError, ["bad_toml.toml", "TOML"], None),
    ("engine-key", lambda f, m: _toml(f, "engine_toml"), UnknownNameError, ["perp_levrage"], "'perp_leverage'"),
    ("tiers-json", lambda f, m: _tiers(f, "tiers_json"), DataError, ["tiers_json.json"], None),
    ("tiers-symbol", lambda f, m: _tiers(f, "tiers_other"), DataError, ["BTC/USDT:USDT"], "'ETH/USDT:USDT'"),
    ("tiers-bracket", lambda f, m: _tiers(f, "tiers_malformed"), DataError, ["malformed"], None),
    ("pool-limit", lambda f, m: _pool(-1), ConfigError, ["limit_bytes", "-1"], None),
    ("targets-shape", lambda f, m: _targets(m), ConfigError, ["targets", "(3, 3)"], None),
    ("strategy", lambda f, m: _get("rotaton"), UnknownNameError, ["rotaton"], "'rotation'"),
    ("strategy-param", lambda f, m: _parse("rotation", ["top_kk=2"]), ConfigError, ["top_kk"], "'top_k'"),
    ("strategy-option", lambda f, m: _parse("rotation", ["weighting=strenght"]), UnknownNameError, [], "'strength'"),
    (
        "strategy-grid",
        lambda f, m: _strategy(m, "funding_sign", {"signal": "predicted_"}),
        UnknownNameError,
        [],
        "'predicted'",
    ),
    ("strategy-params", lambda f, m: _strategy(m, "always_carry", [[1]]), ConfigError, ["AlwaysCarryParams"], None),
    ("premium-source", lambda f, m: _premium(m, "mrk"), UnknownNameError, ["premium_source", "mrk"], "'mark'"),
    ("funding-signal", lambda f, m: _signal(m, "trailng"), UnknownNameError, ["signal", "trailng"], "'trailing'"),
    ("prediction-lead", lambda f, m: _accuracy(m, -2), ConfigError, ["lead_bars", "-2"], None),
]


@pytest.mark.parametrize(("call", "cls", "words", "hint"), [c[1:] for c in API_CASES], ids=[c[0] for c in API_CASES])
def test_api_bad_input_is_a_carry_error_with_the_name(files, market, call, cls, words, hint):
    with pytest.raises(cls) as err:
        call(files, market)
    text = str(err.value)
    assert isinstance(err.value, CarryError) and "\n" not in text, text
    for word in words:
        assert word in text, (word, text)
    if hint is not None:
        assert f"did you mean {hint}".lower() in text.lower(), text


def test_error_hierarchy_and_exit_codes():
    assert issubclass(ConfigError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(UnknownNameError, ConfigError) and issubclass(UnknownNameError, KeyError)
    assert issubclass(ChecksumError, DataError) and issubclass(FetchError, CarryError)
    assert [c.exit_code for c in (CarryError, DataError, ChecksumError, FetchError)] == [1, 1, 1, 1]
    assert ConfigError.exit_code == UnknownNameError.exit_code == 2
    assert str(UnknownNameError("unknown 'x'")) == "unknown 'x'"  # not quoted like a KeyError
    assert str(DataError("a.csv: row 3\n  bad value\n")) == "a.csv: row 3 bad value"  # always one line


# --------------------------------------------------------------------------- no bare ValueError/KeyError/TypeError
BARE = {"ValueError", "KeyError", "TypeError"}
#: (file, enclosing function, exception) -> why it may stay a built-in exception: an internal
#: invariant only our own code can break, e.g.
#: ``("backtest/foo.py", "Foo.bar", "ValueError"): "internal: ... (why no user input reaches it)"``.
#: Empty: every such raise in these packages is a CarryError now.
ALLOWED: dict[tuple[str, str, str], str] = {}


def _raises(root: Path, base: Path = REPO):
    """(file, enclosing qualname, exception name, line) of every ``raise X`` / ``raise X(...)``."""
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(base).as_posix()
        if rel.startswith("backtest/kernels/"):
            continue
        stack: list[str] = []

        class Visitor(ast.NodeVisitor):
            def visit_ClassDef(self, node):
                stack.append(node.name)
                self.generic_visit(node)
                stack.pop()

            visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef

            def visit_Raise(self, node):
                exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
                name = exc.id if isinstance(exc, ast.Name) else exc.attr if isinstance(exc, ast.Attribute) else None
                found.append((rel, ".".join(stack), name, node.lineno))

        found: list[tuple[str, str, str | None, int]] = []
        Visitor().visit(ast.parse(path.read_text(), rel))
        yield from found


def test_no_bare_builtin_errors_reach_users():
    bad, used = [], set()
    for package in ("data", "backtest", "strategies"):
        for rel, where, name, line in _raises(REPO / package):
            if name in BARE and (rel, where, name) in ALLOWED:
                used.add((rel, where, name))
            elif name in BARE:
                bad.append(f"{rel}:{line} in {where or '<module>'}: raise {name}")
    assert not bad, "user-facing errors must be CarryError subclasses (data.errors):\n" + "\n".join(bad)
    assert used == set(ALLOWED), f"stale allow-list entries: {set(ALLOWED) - used}"
    assert all(reason.startswith("internal: ") for reason in ALLOWED.values())  # each says why


def test_the_raise_walk_finds_bare_errors_with_their_place(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "kernels").mkdir(parents=True)
    (pkg / "mod.py").write_text(
        "class A:\n    def f(self):\n        raise KeyError('x')\n\n"
        "def g():\n    raise TypeError\n\n"
        "def h():\n    raise ConfigError('fine')\n"
    )
    found = [(rel, where, name) for rel, where, name, _ in _raises(pkg, base=tmp_path)]
    assert found == [
        ("pkg/mod.py", "A.f", "KeyError"),
        ("pkg/mod.py", "g", "TypeError"),
        ("pkg/mod.py", "h", "ConfigError"),
    ]


# --------------------------------------------------------------------------- strategies: no import circles
STRATEGY_MODULES = sorted(p.stem for p in (REPO / "strategies").glob("*.py") if p.stem != "__init__")
OURS = ("data", "backtest", "strategies", "reports")


def _imports(path: Path) -> tuple[set[str], list[str]]:
    """(strategies modules imported at module level, our imports placed inside functions)."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    hidden: list[str] = []

    def names(node) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "strategies":
                return [f"strategies.{a.name}" for a in node.names]
            return [node.module]
        return []

    for node in tree.body:
        for name in names(node):
            if name.startswith("strategies."):
                top.add(name.split(".")[1])
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                hidden += [f"{fn.name}: {n}" for n in names(node) if n.split(".")[0] in OURS]
    return top, hidden


def test_strategies_import_no_module_of_ours_inside_a_function():
    hidden = {m: _imports(REPO / "strategies" / f"{m}.py")[1] for m in STRATEGY_MODULES}
    assert not {m: h for m, h in hidden.items() if h}


def test_strategies_modules_form_no_import_cycle():
    graph = {m: _imports(REPO / "strategies" / f"{m}.py")[0] for m in STRATEGY_MODULES}
    assert graph["base"] & {"registry", "runner"} == set(), "base must not know the registry"
    assert "predicted_funding" in graph["signals"] and "signals" not in graph["predicted_funding"]
    state: dict[str, int] = {}

    def visit(m: str, path: list[str]) -> None:
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join([*path, m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for dep in graph.get(m, ()):
            visit(dep, [*path, m])
        state[m] = 2

    for m in STRATEGY_MODULES:
        visit(m, [])


def test_every_strategies_module_imports_on_its_own():
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m)\n"
    for m in STRATEGY_MODULES:  # a fresh interpreter per module: nothing imported before it
        r = subprocess.run(
            [sys.executable, "-c", code, f"strategies.{m}"], capture_output=True, text=True, cwd=REPO, timeout=300
        )
        assert r.returncode == 0, (m, r.stderr[-2000:])


def test_set_of_a_bool_refuses_anything_but_true_or_false():
    from backtest.app.commands import parse_set

    assert parse_set(["allow_same_bar_execution=yes", "order_type=maker"]) == {
        "allow_same_bar_execution": True,
        "order_type": "maker",
    }
    assert parse_set(["allow_same_bar_execution=off"]) == {"allow_same_bar_execution": False}
    with pytest.raises(ConfigError, match="--set allow_same_bar_execution expects true or false, got 'maybe'"):
        parse_set(["allow_same_bar_execution=maybe"])

"""The command line's conveniences: ``--fee``, the output levels ``-q``/``-v``, ``carry strategies
--json``, ``carry data info --symbols`` and ``--open``.

Runs call ``backtest.app.cli.main`` in-process (one test runs the console entry in a subprocess)
on the demo dataset.
"""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys
import webbrowser
from pathlib import Path

import pytest

from backtest.app.argtypes import fee_rate
from backtest.app.cli import build_parser, main
from data.errors import ConfigError
from tests.conftest import REPO

SYMS = "DEMOAUSDT,DEMOBUSDT"
#: A run whose result is flagged (topup_too_late) with one engine warning, printed as a note.
FLAGGED = ["--symbols", "DEMOAUSDT", "--strategy", "always_carry", "--set", "topup_margin_ratio=0.8"]
WROTE = "(summary.json, report.html, equity/components/events/trades .parquet, config.toml)"


@pytest.fixture(scope="module")
def cat(tmp_path_factory) -> Path:
    from data.synthetic import write_demo_catalog

    return write_demo_catalog(tmp_path_factory.mktemp("demo") / "catalog").root


def run(capsys, *args) -> tuple[int, list[str], list[str]]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out.splitlines(), err.splitlines()


def backtest(capsys, cat, out, *args) -> tuple[int, list[str], list[str]]:
    return run(capsys, "backtest", "--data", cat, "--out", out, *args)


# --------------------------------------------------------------------------- --fee
@pytest.mark.parametrize(
    ("text", "rate"),
    [("4bps", 0.0004), ("4 bps", 0.0004), ("4BP", 0.0004), ("0.04%", 0.0004), ("0.04 %", 0.0004), ("7bps", 0.0007)]
    + [("0bps", 0.0), ("0.1%", 0.001), (".5bps", 0.00005)],
)
def test_fee_rate_reads_bps_and_percent_as_a_fraction(text, rate):
    assert fee_rate(text) == rate


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4", "--fee 4: say 4bps or 0.04% (a fraction would be 0.0004)"),
        ("2.5", "--fee 2.5: say 2.5bps or 0.025% (a fraction would be 0.00025)"),
        ("0.04", "--fee 0.04: say 0.04% or 4bps if percent is meant (a fraction would be 0.0004)"),
        ("0.0004", "--fee 0.0004: say 4bps or 0.04% if 0.0004 is a fraction"),
        ("four", "--fee four: expected a fee with its unit, e.g. 4bps or 0.04%"),
        ("-1bps", "--fee -1bps: expected a fee with its unit, e.g. 4bps or 0.04% (a taker fee is >= 0)"),
        ("4bps%", "--fee 4bps%: expected a fee with its unit"),
    ],
)
def test_a_fee_without_its_unit_is_refused_with_the_likely_meaning(text, message):
    with pytest.raises(ConfigError) as err:
        fee_rate(text)
    assert str(err.value).startswith(message)


def test_fee_sets_both_taker_rates_end_to_end(cat, tmp_path, capsys):
    out = tmp_path / "fee"
    code, _, err = backtest(capsys, cat, out, "--symbols", SYMS, "--strategy", "funding_threshold", "--fee", "4bps")
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    engine = summary["config"]["engine"]
    assert engine["spot_taker_fee_rate"] == engine["perp_taker_fee_rate"] == 0.0004
    assert engine["spot_maker_fee_rate"] == 0.001 and engine["perp_maker_fee_rate"] == 0.0002  # untouched
    assert summary["portfolios"][0]["fee_pnl"] < 0
    assert "spot_taker_fee_rate = 0.0004" in (out / "config.toml").read_text()  # re-runnable


def test_fee_overrides_the_config_file(cat, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("[engine]\nspot_taker_fee_rate = 0.002\nperp_taker_fee_rate = 0.001\n")
    out = tmp_path / "free"
    code, _, err = backtest(
        capsys, cat, out, "--config", config, "--symbols", SYMS, "--strategy", "always_carry", "--fee", "0 %"
    )
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["engine"]["spot_taker_fee_rate"] == summary["config"]["engine"]["perp_taker_fee_rate"] == 0
    assert all(p["fee_pnl"] == 0 for p in summary["portfolios"])  # no fee charged at all


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--fee", "4"], "--fee 4: say 4bps or 0.04% (a fraction would be 0.0004)"),
        (
            ["--fee", "4bps", "--set", "perp_taker_fee_rate=0.0002"],
            "--fee 4bps and --set perp_taker_fee_rate=0.0002 both set perp_taker_fee_rate",
        ),
        (["--fee", "2%"], "--fee 2% is 2% of notional, beyond any plausible taker fee (at most 100bps = 1%)"),
        (["--fee", "4bps", "--order-type", "maker"], "--fee 4bps sets the taker fees, but this run's orders pay maker"),
        (["--fee", "4bps", "--set", "order_type=maker"], "order_type = maker"),
    ],
)
def test_fee_mistakes_are_one_line_exit_2(cat, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    code, stdout, err = backtest(capsys, cat, out, "--symbols", SYMS, "--strategy", "always_carry", *flags)
    assert code == 2 and stdout == [] and len(err) == 1, err
    assert err[0].startswith("carry: error: ") and message in err[0], err[0]
    assert not out.exists()


def test_fee_and_a_maker_order_type_from_the_config_file_are_refused(cat, tmp_path, capsys):
    config = tmp_path / "maker.toml"
    config.write_text('[engine]\norder_type = "maker"\n')
    code, _, err = backtest(
        capsys,
        cat,
        tmp_path / "o",
        "--config",
        config,
        "--symbols",
        SYMS,
        "--strategy",
        "always_carry",
        "--fee",
        "1bps",
    )
    assert code == 2 and "order_type = maker" in err[0]


def test_every_run_command_takes_fee_and_open():
    parser = build_parser()
    for argv in (
        ["backtest", "--strategy", "always_carry"],
        ["compare", "--strategies", "always_carry,funding_sign"],
        ["sweep", "--strategy", "funding_threshold", "--grid", "entry=0.05,0.1"],
        ["scan"],
    ):
        args = parser.parse_args([*argv, "--out", "x", "--fee", "4bps", "--open"])
        assert args.fee == "4bps" and args.open is True
    assert parser.parse_args(["demo", "--open"]).open is True


# --------------------------------------------------------------------------- -q / -v
def test_default_level_prints_notes_table_and_the_path(cat, tmp_path, capsys):
    out = tmp_path / "default"
    code, stdout, err = backtest(capsys, cat, out, *FLAGGED)
    assert code == 0
    assert any("always_carry" in line for line in stdout) and stdout[-1] == f"wrote {out}/ {WROTE}"
    assert len(err) == 1 and err[0].startswith("carry: note: DEMOAUSDT: topup_margin_ratio=0.8 fires within")


@pytest.mark.parametrize("where", ["-q before", "-q after", "--quiet after"])
def test_quiet_prints_the_path_and_one_warning_for_a_flagged_result(cat, tmp_path, capsys, where):
    out = tmp_path / "quiet"
    flag, position = where.split()
    argv = ["backtest", "--data", cat, "--out", out, *FLAGGED]
    argv = [flag, *argv] if position == "before" else [*argv, flag]
    code, stdout, err = run(capsys, *argv)
    assert code == 0
    assert stdout == [f"wrote {out}/ {WROTE}"]  # no table
    assert err == [  # no notes, but the flag is not lost
        f"carry: warning: the result is flagged topup_too_late and 1 warning(s) not shown: see {out}/summary.json"
    ]
    summary = json.loads((out / "summary.json").read_text())  # where the notes still are
    assert summary["flags"] == ["topup_too_late"] and summary["warnings"][0].startswith("DEMOAUSDT: topup_margin")


def test_quiet_run_without_flags_prints_only_the_path(cat, tmp_path, capsys):
    out = tmp_path / "q"
    strategies = ["--strategies", "always_carry,funding_sign"]
    code, stdout, err = run(capsys, "-q", "compare", "--data", cat, "--symbols", SYMS, *strategies, "--out", out)
    assert code == 0 and stdout == [f"wrote {out}/"] and err == []
    code, stdout, err = run(capsys, "scan", "--data", cat, "--symbols", SYMS, "--out", tmp_path / "scan", "-q")
    assert code == 0 and stdout == [f"wrote {tmp_path / 'scan'}/ (scan.json, regimes.parquet, report.html)"]
    assert err == []


def test_quiet_still_prints_errors(cat, tmp_path, capsys):
    code, stdout, err = run(capsys, "-q", "backtest", "--data", cat, *FLAGGED, "--fee", "4", "--out", tmp_path / "o")
    assert (
        code == 2 and stdout == [] and err == ["carry: error: --fee 4: say 4bps or 0.04% (a fraction would be 0.0004)"]
    )


def test_verbose_adds_timed_stage_lines(cat, tmp_path, capsys):
    out = tmp_path / "verbose"
    code, stdout, err = run(capsys, "-v", "backtest", "--data", cat, "--out", out, *FLAGGED)
    assert code == 0
    assert stdout[-1] == f"wrote {out}/ {WROTE}" and any("always_carry" in line for line in stdout)
    stages = [m.group(1) for line in err if (m := re.fullmatch(r"carry: ([\w .]+): \d+\.\d\d s", line))]
    assert stages[:5] == ["load data", "strategies", "engine", "figures", "report data"]
    assert stages[-2:] == ["write outputs", "total"]
    assert {"components frame", "render report.html", "write summary.json", "write report.html"} <= set(stages)
    notes = [line for line in err if line.startswith("carry: note: ")]
    assert len(notes) == 1 and len(err) == len(stages) + 1


def test_verbose_after_the_command_on_a_sweep(cat, tmp_path, capsys):
    argv = ["sweep", "--data", cat, "--symbols", SYMS, "--strategy", "funding_threshold", "--grid", "entry=0.05,0.1"]
    code, stdout, err = run(capsys, *argv, "--out", tmp_path / "sw", "--verbose")
    assert code == 0 and stdout[-1] == f"wrote {tmp_path / 'sw'}/"
    stages = [line.split(":")[1].strip() for line in err if re.fullmatch(r"carry: [\w .]+: \d+\.\d\d s", line)]
    assert stages[:5] == ["load data", "strategies", "engine", "figures", "report data"]
    assert stages[-2:] == ["write outputs", "total"]


def test_quiet_and_verbose_together_are_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["-q", "strategies", "-v"])
    assert (
        exc.value.code == 2
        and "carry: error: -q/--quiet and -v/--verbose contradict each other" in capsys.readouterr().err
    )


def test_quiet_leaves_the_answer_of_other_commands(cat, capsys):
    code, stdout, err = run(capsys, "-q", "data", "info", cat, "--symbols", "DEMOAUSDT")
    assert code == 0 and err == [] and stdout[0].split()[:4] == ["venue", "kind", "tf", "symbol"]
    code, stdout, _ = run(capsys, "strategies", "-q")
    assert code == 0 and any(line.startswith("funding_threshold: ") for line in stdout)


def test_the_levels_are_documented_in_help():
    text = build_parser().format_help()
    for words in (
        "-q, --quiet",
        "-v, --verbose",
        "carry: warning:",
        "carry: note:",
        "carry: load data:",
        "summary.json",
    ):
        assert words in text, words


def test_console_entry_quiet_before_the_command(cat, tmp_path):
    out = tmp_path / "sub"
    r = subprocess.run(
        [sys.executable, "-m", "backtest", "-q", "backtest", "--data", str(cat), "--out", str(out), *FLAGGED],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"wrote {out}/ {WROTE}"]
    assert r.stderr.splitlines() == [
        f"carry: warning: the result is flagged topup_too_late and 1 warning(s) not shown: see {out}/summary.json"
    ]


# --------------------------------------------------------------------------- strategies --json
def _check_entry(entry: dict, strategy) -> None:
    doc = (strategy.fn.__doc__ or "").strip().splitlines()
    assert entry["name"] == strategy.name and entry["doc"] == (doc[0] if doc else "")
    fields = dataclasses.fields(strategy.params_cls)
    assert [p["name"] for p in entry["parameters"]] == [f.name for f in fields]
    for p, f in zip(entry["parameters"], fields):
        assert p["default"] == (list(f.default) if isinstance(f.default, tuple) else f.default), p
        assert p["unit"] == f.metadata.get("unit", "") and p["help"] == f.metadata.get("help", "")
        for bound in ("ge", "gt", "le", "lt"):
            assert p[bound] == f.metadata.get(bound), (p, bound)
        choices = f.metadata.get("choices")
        assert p["choices"] == (None if choices is None else list(choices))
        assert set(p) == {"name", "type", "default", "unit", "help", "ge", "gt", "le", "lt", "choices"}


def test_strategies_json_is_the_registry(capsys):
    from strategies import available_strategies, get_strategy

    code, stdout, _ = run(capsys, "strategies", "--json")
    listed = json.loads("\n".join(stdout))
    assert code == 0 and [e["name"] for e in listed] == available_strategies()
    for entry in listed:
        _check_entry(entry, get_strategy(entry["name"]))
    ft = next(e for e in listed if e["name"] == "funding_threshold")
    entry = next(p for p in ft["parameters"] if p["name"] == "entry_annualized")
    assert entry["type"] == "float" and entry["ge"] == -5 and entry["le"] == 5 and "annualized" in entry["unit"]
    signal = next(p for p in ft["parameters"] if p["name"] == "signal")
    assert signal["type"] == "str" and signal["choices"] == ["trailing", "predicted"]


USER_STRATEGY = '''
from dataclasses import dataclass

from strategies import StrategyParams, mask_targets, param, register


@dataclass(frozen=True, kw_only=True)
class MineParams(StrategyParams):
    level: float = param(0.1, "annualized fraction (0.10 = 10%/yr)", gt=0, lt=2, help="entry level")
    mode: str = param("calm", choices=("calm", "wild"))
    days: int = param(3, "days", ge=1)


def mine(market, params: MineParams):
    """Mine: a user's strategy.

    More text.
    """
    return mask_targets(market, market.funding_rate * 0 + 1.0)


register(mine, MineParams, "mine_json")
'''


def test_strategies_json_lists_user_strategies(tmp_path, capsys, monkeypatch):
    from strategies import get_strategy, registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # keep mine_json out of other tests
    path = tmp_path / "mine.py"
    path.write_text(USER_STRATEGY)
    code, stdout, _ = run(capsys, "strategies", "--strategy-file", path, "--json")
    assert code == 0
    (mine,) = [e for e in json.loads("\n".join(stdout)) if e["name"] == "mine_json"]
    _check_entry(mine, get_strategy("mine_json"))
    assert mine["doc"] == "Mine: a user's strategy."
    assert mine["parameters"] == [
        {
            "name": "level",
            "type": "float",
            "default": 0.1,
            "unit": "annualized fraction (0.10 = 10%/yr)",
            "help": "entry level",
            "ge": None,
            "gt": 0,
            "le": None,
            "lt": 2,
            "choices": None,
        },
        {
            "name": "mode",
            "type": "str",
            "default": "calm",
            "unit": "",
            "help": "",
            "ge": None,
            "gt": None,
            "le": None,
            "lt": None,
            "choices": ["calm", "wild"],
        },
        {
            "name": "days",
            "type": "int",
            "default": 3,
            "unit": "days",
            "help": "",
            "ge": 1,
            "gt": None,
            "le": None,
            "lt": None,
            "choices": None,
        },
    ]


# --------------------------------------------------------------------------- data info --symbols
def test_data_info_symbols_table_and_json(cat, capsys):
    code, stdout, _ = run(capsys, "data", "info", cat, "--symbols", "demoausdt,DEMOB/USDT")
    assert code == 0
    rows = [line.split() for line in stdout[2:]]  # header, rule, rows
    assert len(rows) == 8 and {r[3] for r in rows} == {"DEMOAUSDT", "DEMOBUSDT"}
    code, stdout, _ = run(capsys, "data", "info", cat, "--symbols", "DEMOCUSDT", "--json")
    rows = json.loads("\n".join(stdout))
    assert code == 0 and {r["symbol"] for r in rows} == {"DEMOCUSDT"}
    assert {r["kind"] for r in rows} == {"spot", "perp", "mark", "funding"}
    code, stdout, _ = run(capsys, "data", "info", cat, "--json")
    assert {r["symbol"] for r in json.loads("\n".join(stdout))} == {"DEMOAUSDT", "DEMOBUSDT", "DEMOCUSDT"}


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_data_info_unknown_symbol_names_it_and_the_catalog_symbols(cat, capsys, json_flag):
    code, stdout, err = run(capsys, "data", "info", cat, "--symbols", "DEMOAUSDT,BTCUSDT", *json_flag)
    assert code == 2 and stdout == [] and len(err) == 1
    assert err[0].startswith(f"carry: error: catalog {cat} has no series for symbol(s) 'BTCUSDT'")
    assert err[0].endswith("it holds DEMOAUSDT, DEMOBUSDT, DEMOCUSDT")
    code, _, err = run(capsys, "data", "info", cat, "--symbols", ",")
    assert code == 2 and err == ["carry: error: --symbols ',' names no symbol: e.g. --symbols BTCUSDT,ETHUSDT"]


# --------------------------------------------------------------------------- --open
class Browser:
    def __init__(self, answer):
        self.answer, self.calls = answer, []

    def __call__(self, url, *args, **kwargs):
        self.calls.append(url)
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def test_open_shows_the_written_report(cat, tmp_path, capsys, monkeypatch):
    browser = Browser(True)
    monkeypatch.setattr(webbrowser, "open", browser)
    out = tmp_path / "open"
    code, stdout, err = backtest(capsys, cat, out, "--symbols", SYMS, "--strategy", "always_carry", "--open")
    assert code == 0 and err == []
    assert browser.calls == [(out / "report.html").resolve().as_uri()]
    assert browser.calls[0].startswith("file://") and (out / "report.html").is_file()


@pytest.mark.parametrize("answer", [False, webbrowser.Error("could not locate runnable browser")])
def test_open_without_a_browser_is_a_note_and_success(cat, tmp_path, capsys, monkeypatch, answer):
    browser = Browser(answer)
    monkeypatch.setattr(webbrowser, "open", browser)
    out = tmp_path / "nobrowser"
    code, stdout, err = run(capsys, "-q", "scan", "--data", cat, "--symbols", SYMS, "--out", out, "--open")
    assert code == 0 and len(browser.calls) == 1
    assert stdout == [f"wrote {out}/ (scan.json, regimes.parquet, report.html)"]
    report = (out / "report.html").resolve()
    assert err == [f"carry: note: no browser could be opened; the report is {report}"]  # even with -q


def test_open_is_not_tried_when_the_run_fails(cat, tmp_path, capsys, monkeypatch):
    browser = Browser(True)
    monkeypatch.setattr(webbrowser, "open", browser)
    code, _, _ = backtest(
        capsys, cat, tmp_path / "o", "--symbols", SYMS, "--strategy", "always_carry", "--fee", "4", "--open"
    )
    assert code == 2 and browser.calls == []


def test_open_after_the_demo_and_a_memory_bounded_sweep(cat, tmp_path, capsys, monkeypatch):
    browser = Browser(True)
    monkeypatch.setattr(webbrowser, "open", browser)
    demo = tmp_path / "demo"
    code, stdout, err = run(capsys, "demo", "--data", tmp_path / "data", "--out", demo, "--open", "-q")
    assert code == 0 and browser.calls == [(demo / "report.html").resolve().as_uri()]
    assert [line.split(":")[0] for line in stdout] == ["demo dataset", "report"]  # -q: no table
    sweep = tmp_path / "sweep"
    argv = ["sweep", "--data", cat, "--symbols", SYMS, "--strategy", "funding_threshold", "--grid", "entry=0.05,0.1"]
    code, stdout, err = run(capsys, *argv, "--per-symbol", "--symbol-chunk", "1", "--out", sweep, "--open", "-q")
    assert code == 0 and stdout == [f"wrote {sweep}/"], err
    assert browser.calls[1:] == [(sweep / "report.html").resolve().as_uri()]

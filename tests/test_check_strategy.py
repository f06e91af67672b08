"""The look-ahead check (strategies.lookahead) and ``carry check-strategy``: built-ins are clean,
strategies that peek one bar, one settlement, at the next close or at the whole sample are
caught at the right bar; the market copies it builds are valid; the CLI part's exit codes and JSON."""

from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass, fields

import numpy as np
import pytest

import strategies as S
from backtest.app.check_strategy import add_parser, run
from data.errors import ConfigError
from data.loader import load_market
from data.market import NO_FUNDING_TIME, Market
from data.synthetic import DEMO_SYMBOLS
from strategies.lookahead import LookaheadReport, check_lookahead, perturb_after, truncate_after
from tests.test_strategies import _variants, synthetic_market


@pytest.fixture(autouse=True)
def _own_registry(monkeypatch):
    """Strategies a test registers (from strategy files) stay out of other tests."""
    from strategies import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


@pytest.fixture(scope="module")
def market() -> Market:
    return synthetic_market()


# --------------------------------------------------------------------------- cheaters
def peek_bar(market):
    """Goes carry when the next bar's funding is positive: one bar ahead."""
    return S.mask_targets(market, np.sign(np.roll(market.funding_rate, -1, axis=0)))


def next_settlement(market: Market) -> np.ndarray:
    """(T, N) the rate of the first settlement strictly after each bar (NaN when none)."""
    T, N = market.shape
    out = np.full((T, N), np.nan)
    for j in range(N):
        nxt = np.nan
        for i in range(T - 1, -1, -1):
            out[i, j] = nxt
            if market.funding_count[i, j] > 0:
                nxt = market.funding_rate[i, j]
    return out


def peek_settlement(market):
    """Trades the sign of the next settlement: one settlement ahead (up to 8 bars on 1h bars)."""
    return S.mask_targets(market, np.nan_to_num(np.sign(next_settlement(market))))


def peek_close(market):
    """Trades the sign of the next bar's close basis (perp_close[i+1] / spot_close[i+1] - 1)."""
    nxt = np.full(market.shape, np.nan)
    nxt[:-1] = market.perp_close[1:] / market.spot_close[1:] - 1.0
    return S.mask_targets(market, np.sign(nxt))


def full_sample_zscore(market):
    """Trailing funding normalised with the whole history's mean and deviation."""
    f = S.trailing_funding_annualized(market, 3)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the first bars have no trailing funding
        z = (f - np.nanmean(f, axis=0)) / np.nanstd(f, axis=0)
    return S.mask_targets(market, np.nan_to_num(np.sign(z - 0.2)))


# --------------------------------------------------------------------------- built-ins
@pytest.mark.parametrize("name", S.available_strategies())
def test_every_registered_strategy_is_clean(name, market):
    report = check_lookahead(name, market, _variants(name), cuts=[7, 55, 133], n_cuts=5)
    assert report.clean, report.text()
    assert report.trades and not report.silent_param_sets, report.text()
    assert report.first is None and report.differences == ()
    assert len(report.param_sets) == len(_variants(name))
    assert {7, 55, 133} <= set(report.cuts) and len(report.cuts) == 8
    assert report.text().startswith(f"no look-ahead found in strategy {name!r}")


def test_built_in_grid_is_clean_on_the_demo_data(demo_catalog):
    m = load_market(demo_catalog.root, list(DEMO_SYMBOLS), end="2024-03-01")
    assert m.funding_time_ms is not None  # a loaded market: the perturbation keeps settlement instants
    report = check_lookahead("funding_threshold", m, {"entry_annualized": [0.05, 0.2], "min_hold_hours": 24.0})
    assert report.clean and report.trades, report.text()
    assert report.labels == (
        "entry_annualized=0.05, min_hold_hours=24.0",
        "entry_annualized=0.2, min_hold_hours=24.0",
    )


# --------------------------------------------------------------------------- cheaters caught
def test_one_bar_ahead_is_caught_at_the_cut(market):
    report = check_lookahead(peek_bar, market)
    assert not report.clean
    d = report.first
    assert d is not None and d.cut == report.cuts[0] and d.bar == d.cut
    assert d.bar_time == market.index[d.bar] and d.what == "target"
    assert d.full_value != d.probe_value
    first_line = report.text().splitlines()[0]
    assert first_line.startswith("look-ahead in strategy 'peek_bar': the target of ")
    assert f"at bar {d.bar} (" in first_line and d.symbol in first_line and f"({d.probe})" in first_line
    # every cut catches it, at the cut bar itself, through the perturbed future
    by_probe = {(x.probe, x.cut): x.bar for x in report.differences}
    assert all(by_probe[("perturbation", t)] == t for t in report.cuts)


def test_one_settlement_ahead_is_caught_at_the_last_settlement_before_the_cut(market):
    # 8h settlements in the first third (bars 7, 15, ..., 55, 63): at cut 60 the bars from the
    # settlement at 55 on read the one at 63, after the cut
    report = check_lookahead(peek_settlement, market, cuts=[60], n_cuts=0)
    assert not report.clean and report.first is not None
    assert report.first.cut == 60 and report.first.bar == 55
    assert report.first.probe == "truncation"  # the data ending at 60: no next settlement, flat
    report = check_lookahead(peek_settlement, market)
    t = report.cuts[0]
    settled = np.flatnonzero(market.funding_count[: t + 1, 0] > 0)
    assert report.first is not None and report.first.cut == t and report.first.bar == settled[-1] < t


def test_next_close_is_caught_at_the_cut_by_both_probes(market):
    report = check_lookahead(peek_close, market, cuts=[150], n_cuts=0)
    assert not report.clean and report.first is not None
    assert (report.first.cut, report.first.bar) == (150, 150)
    assert {d.probe for d in report.differences} == {"truncation", "perturbation"}
    for probe in ("truncation", "perturbation"):
        alone = check_lookahead(peek_close, market, cuts=[150], n_cuts=0, probes=[probe])
        assert alone.probes == (probe,) and alone.first is not None and alone.first.bar == 150


def test_full_sample_normalisation_is_caught_by_truncation(market):
    report = check_lookahead(full_sample_zscore, market, probes=["truncation"])
    assert not report.clean and report.first is not None
    assert report.first.probe == "truncation"
    assert report.first.bar < report.first.cut  # a bar well before the cut moves: the whole history leaks


def test_weights_that_peek_are_caught(market):
    def peeking_weights(market):
        targets = S.mask_targets(market, np.ones(market.shape))
        nxt = np.roll(market.perp_close / market.spot_close, -1, axis=0)
        return S.WeightedTargets(targets, 1.0 + (nxt > 1.0))

    report = check_lookahead(peeking_weights, market, cuts=[100], n_cuts=0)
    assert report.first is not None and report.first.what == "weight" and report.first.bar == 100
    assert "the weight of" in report.text()


def test_grid_names_the_parameter_set_that_peeks(market):
    @dataclass(frozen=True, kw_only=True)
    class PeekParams(S.StrategyParams):
        peek: bool = S.param(False, help="read the next bar")

    def peek_sometimes(market, params):
        f = np.roll(market.funding_rate, -1, axis=0) if params.peek else market.funding_rate
        return S.mask_targets(market, np.sign(f))

    sometimes = S.Strategy("sometimes", peek_sometimes, PeekParams)

    report = check_lookahead(sometimes, market, {"peek": [False, True]})
    assert report.first is not None and report.first.param_set == 1
    assert report.labels == ("peek=False", "peek=True")
    assert report.first.label == f"{report.first.symbol} [peek=True]"
    assert report.first.column == market.n_symbols + market.symbols.index(report.first.symbol)
    assert check_lookahead(sometimes, market, {"peek": False}).clean


def test_a_strategy_that_never_trades_is_not_silently_clean(market):
    report = check_lookahead(lambda m: np.where(m.valid, 0.0, np.nan), market)
    assert report.clean and not report.trades and report.silent_param_sets == (0,)
    assert "never trades" in report.verdict and "proves little" in report.verdict
    assert report.to_dict()["trades"] is False


def test_report_to_dict_is_json(market):
    report = check_lookahead(peek_bar, market, n_cuts=2)
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["clean"] is False and data["first"]["bar"] == report.first.bar
    assert data["first"]["cut_time"] == market.index[report.first.cut].isoformat()
    assert data["probes"] == ["truncation", "perturbation"] and len(data["cuts"]) == 2
    assert isinstance(report, LookaheadReport) and str(report) == report.text()


def test_refusals(market):
    with pytest.raises(ConfigError, match="too short to cut"):
        check_lookahead("always_carry", synthetic_market(T=8, gaps=False))
    with pytest.raises(ConfigError, match="cut bar 399 is outside 0..398"):
        check_lookahead("always_carry", market, cuts=[399])
    with pytest.raises(ConfigError, match="probe must be one of"):
        check_lookahead("always_carry", market, probes=["truncate"])
    with pytest.raises(ConfigError, match="unknown strategy 'always_cary'.*always_carry"):
        check_lookahead("always_cary", market)

    def broken(m):
        if m.n_bars < 400:
            raise ZeroDivisionError("short")
        return np.zeros(m.shape)

    with pytest.raises(ConfigError, match=r"strategy 'broken' raised ZeroDivisionError on a copy where the data ends"):
        check_lookahead(broken, market, n_cuts=1)


def test_cuts_given_as_times(market):
    report = check_lookahead("always_carry", market, cuts=[str(market.index[42]), 50], n_cuts=0)
    assert report.cuts == (42, 50)


# --------------------------------------------------------------------------- market copies
def test_truncate_and_perturb_keep_the_past_and_make_a_valid_future(demo_catalog):
    m = load_market(demo_catalog.root, list(DEMO_SYMBOLS), end="2024-02-01")
    t = 300
    cut = truncate_after(m, t)
    assert cut.n_bars == t + 1 and cut.index[-1] == m.index[t]
    alt = perturb_after(m, t, seed=3)
    assert alt.shape == m.shape and alt.index.equals(m.index) and alt.symbols == m.symbols
    for f in fields(m):
        a, b = getattr(m, f.name), getattr(alt, f.name)
        if isinstance(a, np.ndarray) and a.ndim == 2:
            np.testing.assert_array_equal(a[: t + 1], b[: t + 1], err_msg=f.name)
            assert not np.array_equal(a[t + 1 :], b[t + 1 :]), f.name
    v = alt.valid[t + 1 :]
    np.testing.assert_array_equal(v[0], ~m.valid[t + 1])  # the first future bar always differs
    for leg in ("spot", "perp", "mark"):
        o, h, lo, c = (getattr(alt, f"{leg}_{p}")[t + 1 :] for p in ("open", "high", "low", "close"))
        assert (lo > 0).all() and (lo <= np.minimum(o, c)).all() and (h >= np.maximum(o, c)).all()
    settled = alt.funding_count[t + 1 :] > 0
    assert ((alt.funding_rate[t + 1 :] != 0) == settled).all()
    assert ((alt.funding_time_ms[t + 1 :] != NO_FUNDING_TIME) == settled).all()
    np.testing.assert_array_equal(alt.funding_count[t + 1] > 0, ~(m.funding_count[t + 1] > 0))
    assert perturb_after(m, m.n_bars - 1) is m and truncate_after(m, m.n_bars - 1) is m
    np.testing.assert_array_equal(perturb_after(m, t, seed=3).spot_close, alt.spot_close)  # seeded


# --------------------------------------------------------------------------- the CLI part
CHEATER_FILE = """
import numpy as np
from dataclasses import dataclass
from strategies import StrategyParams, mask_targets, param, register


@dataclass(frozen=True, kw_only=True)
class PeekParams(StrategyParams):
    ahead: int = param(1, "bars", ge=0, le=24)


def cli_peeker(market, params: PeekParams):
    f = np.roll(market.funding_rate, -params.ahead, axis=0)
    return mask_targets(market, np.sign(f))


register(cli_peeker, PeekParams, "cli_peeker")
"""


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="carry")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["check-strategy", *argv])
    assert args.func is run
    return args.func(args)


def test_cli_strategy_file_cheater_clean_and_json(tmp_path, demo_catalog, capsys):
    path = tmp_path / "mine.py"
    path.write_text(CHEATER_FILE)
    data = ["--data", str(demo_catalog.root), "--symbols", "DEMOAUSDT,DEMOBUSDT", "--end", "2024-03-01"]
    out_json = tmp_path / "out" / "check.json"
    rc = _cli(["--strategy-file", str(path), "--strategy", "cli_peeker", *data, "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 1
    first = out.splitlines()[0]
    assert first.startswith("look-ahead in strategy 'cli_peeker': the target of DEMO")
    assert "at bar " in first and ("(perturbation)" in first or "(truncation)" in first)
    report = json.loads(out_json.read_text())
    assert report["clean"] is False and report["first"]["symbol"] in ("DEMOAUSDT", "DEMOBUSDT")
    assert report["source"] == f"catalog {demo_catalog.root}"
    assert [p.name for p in out_json.parent.iterdir()] == ["check.json"]  # no temporary file left

    # ahead=0 reads bar i's own funding: clean (given as a one-value --grid; registered above)
    rc = _cli(["--strategy", "cli_peeker", "--grid", "ahead=0", *data, "--cuts", "3", "--json", str(out_json)])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith("no look-ahead found in strategy 'cli_peeker'"), out
    report = json.loads(out_json.read_text())
    assert report["clean"] is True and report["trades"] is True and len(report["cuts"]) == 3
    assert report["param_sets"] == [{"ahead": 0}]


def test_cli_built_in_on_the_demo_dataset(capsys):
    rc = _cli(["--strategy", "funding_sign", "--param", "entry=0.1", "--end", "2024-04-01", "--cut", "2024-02-01"])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "no look-ahead found in strategy 'funding_sign' (1 parameter set(s) x 3 symbol(s), 6 cut(s)" in out
    assert "source: the built-in demo dataset" in out


def test_cli_errors_are_carry_errors(tmp_path, demo_catalog):
    data = ["--data", str(demo_catalog.root), "--symbols", "DEMOAUSDT", "--end", "2024-02-01"]
    with pytest.raises(ConfigError, match="unknown strategy 'funding_treshold'.*Did you mean 'funding_threshold'"):
        _cli(["--strategy", "funding_treshold", *data])
    with pytest.raises(ConfigError, match="unknown parameter 'entri'.*did you mean 'entry_annualized'"):
        _cli(["--strategy", "funding_threshold", "--param", "entri=0.1", *data])
    with pytest.raises(ConfigError, match=r"both fixed \(--param\) and swept \(--grid\)"):
        _cli(["--strategy", "funding_threshold", "--param", "entry=0.1", "--grid", "entry=0.1,0.2", *data])
    with pytest.raises(ConfigError, match="strategy file not found"):
        _cli(["--strategy-file", str(tmp_path / "nope.py"), "--strategy", "x", *data])
    from data.errors import DataError

    with pytest.raises(DataError, match="does not exist"):
        _cli(["--strategy", "always_carry", "--data", str(tmp_path / "nocatalog")])

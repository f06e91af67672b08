"""Tradable spans (issue 13, point 1): a symbol is traded only where spot, perp, mark and funding
all exist; missing funding is never counted as zero without the user asking for it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest import BacktestConfig, run_backtest
from data.catalog import Catalog, PartitionKey
from data.errors import DataError, UnknownNameError
from data.loader import DataWarning, funding_span, load_market
from data.schema import Kind
from tests.test_loader import _write_symbol

H = 3_600_000


def _catalog(tmp_path, n_hours=24 * 20, fstart=None, fend=None, hole=None, sym="AAAUSDT", cat=None):
    """Prices over ``n_hours`` hourly bars from 2024-01-01; 8h settlements from ``fstart`` to
    ``fend`` (inclusive), without those in ``hole`` (a (first, last) pair of timestamps)."""
    cat = cat or Catalog(tmp_path / "cat")
    times = pd.date_range("2024-01-01", periods=n_hours, freq="1h", tz="UTC")
    spot = 100.0 + np.sin(np.arange(n_hours) / 10.0)
    end = pd.Timestamp(fend, tz="UTC") if fend else times[-1] + pd.Timedelta("1h")
    ft = pd.date_range(pd.Timestamp(fstart or "2024-01-01 08:00", tz="UTC"), end, freq="8h")
    if hole is not None:
        ft = ft[(ft < pd.Timestamp(hole[0], tz="UTC")) | (ft > pd.Timestamp(hole[1], tz="UTC"))]
    _write_symbol(cat, sym, times, spot, spot * 1.001, spot * 1.0005, ft, np.full(len(ft), 0.0001))
    return cat, times


def _load(*args, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = load_market(*args, **kwargs)
    return m, " ".join(str(w.message) for w in caught if issubclass(w.category, DataWarning))


def test_funding_span_rule_on_its_own():
    bars = np.arange(0, 48 * H, H, dtype=np.int64)
    t = np.array([16, 24, 32], dtype=np.int64) * H
    funded, holes = funding_span(t, np.array([8.0, 8.0, 8.0]), bars, H)
    # known from 08:00 (one interval before the first settlement) to 32:00
    assert np.flatnonzero(funded)[[0, -1]].tolist() == [8, 31] and holes == []
    # data ending within one interval after the last settlement is the download's boundary
    funded, _ = funding_span(t, np.array([8.0, 8.0, 8.0]), bars, H, data_end_ms=39 * H)
    assert np.flatnonzero(funded)[-1] == 38
    # ending exactly when the next settlement is due (40:00): the last bar's (39:00, 40:00] holds
    # it and the data does not: that bar's funding is unknown (it used to count as zero)
    funded, _ = funding_span(t, np.array([8.0, 8.0, 8.0]), bars, H, data_end_ms=40 * H)
    assert np.flatnonzero(funded)[-1] == 38
    funded, _ = funding_span(t, np.array([8.0, 8.0, 8.0]), bars, H, data_end_ms=41 * H)
    assert np.flatnonzero(funded)[-1] == 31
    # a hole: 24h between settlements of an 8h schedule, two missing; unknown over (16, 32]
    t = np.array([8, 16, 40, 48], dtype=np.int64) * H
    funded, holes = funding_span(t, np.full(4, 8.0), np.arange(0, 60 * H, H, dtype=np.int64), H)
    assert holes == [(16 * H, 32 * H, 2)]
    # an interval switch is not a hole (8h -> 4h -> 1h)
    t = np.array([0, 8, 16, 20, 24, 25, 26], dtype=np.int64) * H
    _, holes = funding_span(t, np.array([8, 8, 8, 4, 4, 1, 1.0]), np.arange(0, 26 * H, H, dtype=np.int64), H)
    assert holes == []


def test_funding_that_starts_late_clips_the_span_and_nothing_is_held_before(tmp_path):
    cat, times = _catalog(tmp_path, fstart="2024-01-11 00:00")
    # without a start the window begins with the tradable span
    m, notes = _load(cat, "AAAUSDT")
    assert m.index[0] == pd.Timestamp("2024-01-10 16:00", tz="UTC") and m.tradable.all()
    assert "window 2024-01-10 16:00 to 2024-01-21 00:00 UTC: the symbols' tradable spans" in notes
    m, notes = _load(cat, "AAAUSDT", start="2024-01-01")
    first = int(np.flatnonzero(m.tradable[:, 0])[0])
    assert m.index[first] == pd.Timestamp("2024-01-10 16:00", tz="UTC")  # one 8h interval before
    assert m.valid[:first].all()  # prices exist: it is the funding that is missing
    assert "AAAUSDT: tradable from 2024-01-10 16:00" in notes and "without known funding" in notes
    res = run_backtest(m, 1.0, BacktestConfig())
    spot = res.spot_qty.to_numpy()[:, 0]
    assert (spot[:first] == 0).all() and spot[first] > 0  # enters at the span's first open
    fills = res.events[res.events.kind == "fill"]
    assert pd.Timestamp(fills.time.min()) == m.index[first]


def test_funding_that_ends_early_closes_the_position_and_books_no_zero_funding(tmp_path):
    cat, times = _catalog(tmp_path, fend="2024-01-12 00:00")
    m, notes = _load(cat, "AAAUSDT", end="2024-01-21")
    last = int(np.flatnonzero(m.tradable[:, 0])[-1])
    assert m.index[last] == pd.Timestamp("2024-01-11 23:00", tz="UTC")
    assert not m.tradable[last + 1 :, 0].any() and m.valid[last + 1 :, 0].all()
    assert "tradable from 2024-01-01 00:00 to 2024-01-12 00:00 UTC only" in notes
    res = run_backtest(m, 1.0, BacktestConfig())
    spot = res.spot_qty.to_numpy()[:, 0]
    assert spot[last] > 0 and (spot[last + 1 :] == 0).all()  # closed at the first open after the span
    funding = res.pnl_per_bar("funding").to_numpy()[:, 0]
    assert (funding[last + 1 :] == 0).all()


def test_a_funding_hole_is_an_error_by_default_naming_the_symbol_the_files_and_the_dates(tmp_path):
    cat, _ = _catalog(tmp_path, hole=("2024-01-05 00:00", "2024-01-08 00:00"))
    with pytest.raises(DataError) as err:
        load_market(cat, "AAAUSDT")
    msg = str(err.value)
    assert msg.startswith("AAAUSDT: 1 hole(s) in the funding of AAAUSDT")
    assert "kind=funding" in msg and "symbol=AAAUSDT" in msg
    assert "from 2024-01-04 16:00 to 2024-01-08 00:00 UTC (10 settlement(s) missing, 3.3 days)" in msg
    assert "--funding-gaps no_trade" in msg and "'zero'" in msg
    # a window outside the hole loads
    m, _ = _load(cat, "AAAUSDT", start="2024-01-09", end="2024-01-15")
    assert m.tradable.all()


def test_no_trade_through_a_hole_closes_before_and_reenters_after(tmp_path):
    cat, _ = _catalog(tmp_path, hole=("2024-01-05 00:00", "2024-01-08 00:00"))
    m, notes = _load(cat, "AAAUSDT", funding_gaps="no_trade")
    off = np.flatnonzero(~m.tradable[:, 0])
    assert m.index[off[0]] == pd.Timestamp("2024-01-04 16:00", tz="UTC")
    assert m.index[off[-1]] == pd.Timestamp("2024-01-07 23:00", tz="UTC")
    assert len(off) == off[-1] - off[0] + 1  # one stretch
    assert "funding missing from 2024-01-04 16:00 to 2024-01-08 00:00 UTC (10 settlement(s)); no position" in notes
    res = run_backtest(m, 1.0, BacktestConfig())
    spot = res.spot_qty.to_numpy()[:, 0]
    assert spot[off[0] - 1] > 0 and (spot[off] == 0).all() and spot[off[-1] + 1] > 0
    assert "funding_gap_zero" not in res.flags


def test_zero_through_a_hole_is_flagged_in_the_market_and_the_result(tmp_path):
    cat, _ = _catalog(tmp_path, hole=("2024-01-05 00:00", "2024-01-08 00:00"))
    m, notes = _load(cat, "AAAUSDT", funding_gaps="zero")
    assert m.tradable.all() and m.data_flags == ("funding_gap_zero",)
    assert "counted as zero funding (funding_gap_zero)" in notes
    res = run_backtest(m, 1.0, BacktestConfig())
    assert "funding_gap_zero" in res.flags
    assert (res.spot_qty.to_numpy()[24:, 0] > 0).all()  # held through it


def test_unknown_funding_gap_policy_names_the_flag_with_a_hint(tmp_path):
    cat, _ = _catalog(tmp_path)
    with pytest.raises(UnknownNameError, match=r"funding_gaps=.*'no_trad'.*no_trade"):
        load_market(cat, "AAAUSDT", funding_gaps="no_trad")


def test_no_tradable_bar_in_the_window_is_an_error_naming_each_series_coverage(tmp_path):
    cat, _ = _catalog(tmp_path, fstart="2024-01-15 00:00")
    with pytest.raises(DataError) as err:
        load_market(cat, "AAAUSDT", start="2024-01-02", end="2024-01-10")
    msg = str(err.value)
    assert msg.startswith("no tradable bar from 2024-01-02 00:00 to 2024-01-10 00:00 UTC")
    assert (
        "AAAUSDT (spot 2024-01-01..2024-01-20, perp 2024-01-01..2024-01-20, mark 2024-01-01..2024-01-20, funding 2024-01-15..2024-01-21)"
        in msg
    )
    assert "--start/--end" in msg


def test_a_symbol_whose_funding_runs_past_its_perp_bars_is_clipped_not_aborted(tmp_path):
    cat, _ = _catalog(tmp_path)
    # BBB: prices stop on day 10, funding goes on for 10 more days (there is no price to value it at)
    times = pd.date_range("2024-01-01", periods=24 * 10, freq="1h", tz="UTC")
    spot = np.full(len(times), 50.0)
    ft = pd.date_range("2024-01-01 08:00", "2024-01-20 16:00", freq="8h", tz="UTC")
    _write_symbol(cat, "BBBUSDT", times, spot, spot, spot, ft, np.full(len(ft), 0.0002))
    m, _ = _load(cat, ["AAAUSDT", "BBBUSDT"])
    j = m.symbols.index("BBBUSDT")
    last = int(np.flatnonzero(m.tradable[:, j])[-1])
    # its prices end inside the window: the position closes at the open of its last priced bar
    assert m.index[last] == pd.Timestamp("2024-01-10 22:00", tz="UTC") and m.valid[last + 1, j]
    assert not m.valid[last + 2 :, j].any()
    assert m.funding_count[last + 2 :, j].sum() == 0  # settlements without a price are not used
    assert m.funding_count[: last + 2, j].sum() == 30


def test_data_that_ends_inside_the_last_interval_is_not_clipped(tmp_path):
    # prices to 22:00 (their end 23:00), last settlement 16:00: the next (00:00) is after the data
    cat, times = _catalog(tmp_path, fend="2024-01-20 16:00")
    m, notes = _load(cat, "AAAUSDT", end="2024-01-20 23:00")
    assert m.tradable.all() and "tradable from" not in notes


def test_a_settlement_due_at_the_datas_end_and_missing_makes_the_last_bar_unknown(tmp_path):
    # prices to 23:00 (their end 00:00), last settlement 16:00: the 00:00 settlement belongs to the
    # 23:00 bar and is not in the data; that bar is not tradable (its funding was a silent zero)
    cat, times = _catalog(tmp_path, fend="2024-01-20 16:00")
    m, notes = _load(cat, "AAAUSDT")
    assert m.index[-1] == pd.Timestamp("2024-01-20 22:00", tz="UTC") and m.tradable.all()
    assert "tradable from 2024-01-01 00:00 to 2024-01-20 23:00 UTC only" in notes
    assert "1 of them without known funding" in notes
    # with the settlement stored, the bar is funded and tradable to the end
    cat, times = _catalog(tmp_path / "with", fend="2024-01-21 00:00")
    m, notes = _load(cat, "AAAUSDT")
    assert m.index[-1] == pd.Timestamp("2024-01-20 23:00", tz="UTC") and m.tradable.all()
    assert "tradable from" not in notes and m.funding_count[-1, 0] == 1


ENA = Path(__file__).resolve().parents[2] / "shared" / "data" / "binance" / "futures"


@pytest.mark.skipif(not (ENA / "ENA_USDT_USDT-8h-funding_rate.feather").exists(), reason="needs ../shared/data")
def test_real_167_day_hole_in_ena_funding_is_refused_then_skipped(tmp_path):
    """ENA's real funding file has 167 days without a settlement (2025-07-17 to 2025-12-31)
    while its perp trades on. ENA has no spot file; its perp bars stand in for spot here."""
    from data.ingest.freqtrade import ingest_freqtrade

    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(ENA.parent, cat, symbols=["ENAUSDT"])
    for key in list(cat.keys()):
        if key.kind is Kind.PERP and key.timeframe == "1h":
            cat.write(PartitionKey(key.venue, Kind.SPOT, "ENAUSDT", "1h"), cat.read(key))
    with pytest.raises(DataError, match=r"ENAUSDT: 1 hole\(s\) in the funding of ENAUSDT .* from 2025-07-17"):
        load_market(cat, "ENAUSDT", start="2025-06-01", end="2026-02-01")
    m, notes = _load(cat, "ENAUSDT", start="2025-06-01", end="2026-02-01", funding_gaps="no_trade")
    off = ~m.tradable[:, 0]
    assert 166 * 24 <= off.sum() <= 168 * 24
    res = run_backtest(m, 1.0, BacktestConfig())
    assert (res.spot_qty.to_numpy()[off, 0] == 0).all()
    assert res.pnl_per_bar("funding").to_numpy()[off, 0].sum() == 0


def test_scan_totals_of_a_symbol_do_not_depend_on_the_others_scanned(tmp_path):
    from backtest.app import runs as app
    from backtest.app.commands import _scan_totals

    cat, _ = _catalog(tmp_path, sym="AAAUSDT")
    _catalog(tmp_path, sym="BBBUSDT", fstart="2024-01-12 00:00", cat=cat)
    cfg = app.build_run_config(
        {},
        data_overrides={"catalog": str(cat.root), "symbols": "AAAUSDT,BBBUSDT"},
        strategies=[app.StrategySpec("always_carry")],
    )
    both, _ = _load(cat, ["AAAUSDT", "BBBUSDT"])
    alone, _ = _load(cat, ["BBBUSDT"], start="2024-01-11 16:00")
    t_both, t_alone = _scan_totals(both, cfg), _scan_totals(alone, cfg)
    assert list(t_both.index) == [
        "always_carry:AAAUSDT",
        "always_carry:BBBUSDT",
        "always_reverse:AAAUSDT",
        "always_reverse:BBBUSDT",
    ]
    for name in ("always_carry:BBBUSDT", "always_reverse:BBBUSDT"):
        pd.testing.assert_series_equal(t_both.loc[name], t_alone.loc[name])


def test_scan_regime_earnings_of_a_symbol_do_not_depend_on_the_others_scanned(tmp_path, capsys):
    """BBB's funding ends on day 12 while AAA goes on to day 20: scanned together, BBB's last
    regime is still BBB's own (entered and held as when BBB is scanned alone), not charged an
    exit that only the longer window of AAA would make."""
    import json

    cat, _ = _catalog(tmp_path, sym="AAAUSDT")
    _catalog(tmp_path, sym="BBBUSDT", fstart="2024-01-03 00:00", fend="2024-01-12 00:00", cat=cat)
    runs = {}
    for name, syms in (("both", "AAAUSDT,BBBUSDT"), ("alone", "BBBUSDT")):
        out = tmp_path / name
        code, _, err = _cli("scan", "--data", cat.root, "--symbols", syms, "--min-days", 2, "--out", out, capsys=capsys)
        assert code == 0, err
        runs[name] = [r for r in json.loads((out / "scan.json").read_text())["regimes"] if r["symbol"] == "BBBUSDT"]
    assert runs["both"] and runs["both"] == runs["alone"]
    assert runs["both"][-1]["carry_fees_pnl"] < 0.0  # entered (fees charged), figures compared in full


def _cli(*args, capsys):
    from backtest.app.cli import main

    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_one_note_per_clipped_symbol_and_writes_the_spans(tmp_path, capsys):
    import json

    cat, _ = _catalog(tmp_path, sym="AAAUSDT")
    _catalog(tmp_path, sym="BBBUSDT", fstart="2024-01-12 00:00", cat=cat)
    # CCC: prices (and funding) only from 2024-01-06: clipped by its prices, not its funding
    times = pd.date_range("2024-01-06", periods=24 * 15, freq="1h", tz="UTC")
    ft = pd.date_range("2024-01-06 08:00", "2024-01-21 00:00", freq="8h", tz="UTC")
    _write_symbol(
        cat,
        "CCCUSDT",
        times,
        np.full(len(times), 50.0),
        np.full(len(times), 50.05),
        np.full(len(times), 50.02),
        ft,
        np.full(len(ft), 0.0001),
    )
    out = tmp_path / "out"
    # (no --quiet: it drops the notes)
    code, _, err = _cli(
        "backtest", "--data", cat.root, "--symbols", "AAAUSDT,BBBUSDT,CCCUSDT", "--strategy", "always_carry",
        "--out", out, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("carry: note: ")]
    assert notes == [
        "carry: note: BBBUSDT: tradable from 2024-01-11 16:00 to 2024-01-21 00:00 UTC only (bars with spot, perp "
        "and mark prices 2024-01-01 00:00 .. 2024-01-21 00:00; 256 of them without known funding; settlements "
        "2024-01-12 00:00 .. 2024-01-21 00:00)",
        "carry: note: CCCUSDT: tradable from 2024-01-06 00:00 to 2024-01-21 00:00 UTC only (its spot, perp and "
        "mark prices in the window: 2024-01-06 00:00 .. 2024-01-21 00:00; window 2024-01-01 00:00 .. 2024-01-21 00:00)",
    ]
    summary = json.loads((out / "summary.json").read_text())
    spans = summary["coverage"]["tradable"]
    assert spans["BBBUSDT"] == {
        "start": "2024-01-11 16:00:00+00:00",
        "end": "2024-01-21 00:00:00+00:00",
        "bars": 224,
        "settlements_used": 28,
    }
    assert spans["AAAUSDT"]["bars"] == 480 and summary["data_errors_allowed"] == [] and summary["warnings"] == []


def test_data_errors_stop_a_backtest_unless_allowed_and_the_override_is_recorded(tmp_path, capsys):
    import json

    cat, _ = _catalog(tmp_path)
    # one settlement of 5% per interval: beyond any exchange cap
    key = PartitionKey("binance", Kind.FUNDING, "AAAUSDT")
    t = cat.read(key).to_pandas()
    t.loc[10, "rate"] = 0.05
    cat.write(key, __import__("pyarrow").Table.from_pandas(t, preserve_index=False))
    out = tmp_path / "out"
    args = ["backtest", "--data", cat.root, "--symbols", "AAAUSDT", "--strategy", "always_carry"]  # notes: no --quiet
    code, _, err = _cli(*args, "--out", out, capsys=capsys)
    assert code == 1 and not out.exists()
    assert err.startswith("carry: error: the data check found 1 error(s)") and len(err.strip().splitlines()) == 1
    assert "binance/funding/AAAUSDT: funding_outlier" in err and "--allow-data-errors funding_outlier" in err
    code, _, err = _cli(*args, "--out", out, "--allow-data-errors", "funding_outlier", capsys=capsys)
    assert code == 0, err
    assert "carry: note: data error allowed through: binance/funding/AAAUSDT: funding_outlier" in err
    summary = json.loads((out / "summary.json").read_text())
    assert [p["check"] for p in summary["data_errors_allowed"]] == ["funding_outlier"]
    assert "data error allowed through (--allow-data-errors)" in (out / "report.html").read_text()


def test_daily_bars_come_from_the_hourly_files_when_the_daily_files_lack_mark(tmp_path):
    cat, times = _catalog(tmp_path, n_hours=24 * 10)
    hourly, _ = _load(cat, "AAAUSDT", freq="1d")
    # 1d spot and perp files (as freqtrade downloads them) but no 1d mark file
    daily = pd.date_range("2024-01-01", periods=10, freq="1D", tz="UTC")
    for kind in (Kind.SPOT, Kind.PERP):
        h = cat.read(PartitionKey("binance", kind, "AAAUSDT", "1h")).to_pandas().set_index("time")
        d = h.resample("1D").agg({"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"})
        cat.write(
            PartitionKey("binance", kind, "AAAUSDT", "1d"), __import__("pyarrow").Table.from_pandas(d.reset_index())
        )
    m, notes = _load(cat, "AAAUSDT", freq="1d")
    assert m.index.equals(daily)
    assert not m.mark_fallback.any() and "stand in" not in notes  # the 1h mark files were used
    np.testing.assert_array_equal(m.mark_close, hourly.mark_close)
    np.testing.assert_array_equal(m.funding_value, hourly.funding_value)


def test_real_okx_years_without_funding_are_not_traded(tmp_path, capsys):
    """OKX: BTC perp bars from 2020, spot from 2023, funding only from 2025-10-06 (../shared/data)."""
    import json

    from data.ingest.freqtrade import ingest_freqtrade
    from tests.conftest import shared_data_path

    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(shared_data_path("okx"), cat, venue="okx", symbols=["BTCUSDT"])
    out = tmp_path / "out"
    # (no --quiet: it drops the notes)
    code, _, err = _cli(
        "backtest", "--data", cat.root, "--venue", "okx", "--symbols", "BTCUSDT", "--strategy", "always_carry",
        "--start", "2024-01-01", "--out", out, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    assert "carry: note: BTCUSDT: tradable from 2025-10-06 00:00" in err
    summary = json.loads((out / "summary.json").read_text())
    span = summary["coverage"]["tradable"]["BTCUSDT"]
    assert span["start"] == "2025-10-06 00:00:00+00:00"
    events = pd.read_parquet(out / "events.parquet")
    assert events.time.min() >= pd.Timestamp(span["start"])  # not one fill or funding before
    assert (events.kind == "funding").sum() == span["settlements_used"]
    equity = pd.read_parquet(out / "equity.parquet").iloc[:, 0]
    assert (equity[: span["start"]].iloc[:-1] == 10_000).all()  # flat through the years without funding


def test_real_symbols_without_funding_in_the_window_are_an_error(tmp_path, capsys):
    """The issue's case: Binance BCH and XTZ have funding only from 2025-05; 2021-2024 exited 0 with
    0 settlements."""
    from data.ingest.freqtrade import ingest_freqtrade
    from tests.conftest import shared_data_path

    cat = Catalog(tmp_path / "cat")
    ingest_freqtrade(shared_data_path("binance"), cat, symbols=["BCHUSDT", "XTZUSDT"])
    out = tmp_path / "out"
    code, _, err = _cli(
        "compare", "--data", cat.root, "--symbols", "BCHUSDT,XTZUSDT", "--start", "2021-01-01", "--end", "2024-01-01",
        "--strategies", "always_carry,funding_sign", "--out", out, "--quiet", capsys=capsys,
    )  # fmt: skip
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and not out.exists()
    assert lines[0].startswith("carry: error: no tradable bar from 2021-01-01 00:00 to 2024-01-01 00:00 UTC")
    assert "BCHUSDT (spot 2019-11-28.." in lines[0] and "funding 2025-05-01.." in lines[0] and "XTZUSDT (" in lines[0]


def test_the_scale_out_window_is_the_default_window_of_load_market(tmp_path):
    """A sweep's window (data.catalog_access.sweep_window, read from the first and last rows of the
    files) is the window load_market takes without bounds: the union of the tradable spans."""
    from data.catalog_access import sweep_window

    cat, _ = _catalog(tmp_path, sym="AAAUSDT", fstart="2024-01-05 00:00", fend="2024-01-15 16:00")
    _catalog(tmp_path, sym="BBBUSDT", fstart="2024-01-03 08:00", fend="2024-01-12 00:00", cat=cat)
    for syms in (["AAAUSDT"], ["BBBUSDT"], ["AAAUSDT", "BBBUSDT"]):
        for freq in ("1h", "4h"):
            m, _ = _load(cat, syms, freq=freq)
            step = m.index[1] - m.index[0]
            want = (m.index[0].isoformat(), (m.index[-1] + step).isoformat())
            assert sweep_window(str(cat.root), syms, freq) == want, (syms, freq)

"""Funding statistics and regimes on hand-built markets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.market import Market
from reports.regimes import funding_regimes, funding_stats


def _market(rates_per_8h: np.ndarray, hours: int = 8) -> Market:
    n = len(rates_per_8h) * hours
    index = pd.date_range("2024-01-01", periods=n, freq="1h", tz="UTC")
    rate = np.zeros((n, 1))
    rate[hours - 1 :: hours, 0] = rates_per_8h  # settles at each interval's close
    mask = np.zeros((n, 1), bool)
    mask[hours - 1 :: hours, 0] = True
    spot = np.linspace(100, 110, n)[:, None]
    return Market.from_arrays(
        index,
        ["AAAUSDT"],
        spot=spot,
        perp=spot * 1.001,
        funding_rate=rate,
        funding_mask=mask,
        funding_interval_hours=float(hours),
    )


def test_stats_count_sum_and_longest_negative_run():
    rates = np.array([0.0001] * 10 + [-0.0002] * 7 + [0.0] + [-0.0001] * 3 + [0.0001] * 5)
    m = _market(rates)
    (s,) = funding_stats(m)
    assert s.settlements == len(rates)  # zero-rate settlements count too
    assert s.funding_sum == pytest.approx(rates.sum())
    assert s.longest_negative_run == 7
    assert s.longest_negative_run_start == str(m.index[10 * 8 + 7])
    assert s.share_negative == pytest.approx(10 / len(rates))
    years = m.n_bars / (365 * 24)
    assert s.funding_annualized == pytest.approx(rates.sum() / years)
    assert s.basis_mean == pytest.approx(0.001)
    assert s.intervals_hours == "8h"


def test_regimes_merge_short_flips():
    # 60 days positive, a 1-day negative blip, 60 days negative, 60 positive (8h settlements)
    rates = np.array([0.0001] * 180 + [-0.001] * 3 + [0.0001] * 3 + [-0.0002] * 180 + [0.0001] * 180)
    m = _market(rates)
    regimes = funding_regimes(m, window_settlements=3, min_days=7)
    assert [r.sign for r in regimes] == [1, -1, 1]
    neg = regimes[1]
    assert neg.funding_sum < 0 and neg.funding_annualized < 0
    assert sum(r.settlements for r in regimes) == len(rates)
    assert regimes[0].start_bar == 0 and regimes[-1].end_bar == m.n_bars
    assert all(a.end_bar == b.start_bar for a, b in zip(regimes, regimes[1:]))


@pytest.mark.parametrize(
    ("kw", "word"),
    [
        ({"window_settlements": 0}, "window_settlements"),
        ({"window_settlements": 2.5}, "window_settlements"),
        ({"min_days": -1.0}, "min_days"),
    ],
)
def test_regimes_refuse_bad_settings(kw, word):
    from data.errors import ConfigError

    with pytest.raises(ConfigError, match=word):
        funding_regimes(_market(np.full(30, 0.0001)), **kw)


# --------------------------------------------------------------------------- funded span (issue 13, point 2)
DAY = 24  # hourly bars


def _two_symbols(n_days: int = 400, late_from: int | None = None, seed: int = 7) -> Market:
    """AAA funded over the whole grid; BBB priced over the whole grid but funded only from bar
    ``late_from`` on (default: the last quarter), in alternating +/- blocks of 40 days."""
    n = n_days * DAY
    late_from = 3 * n // 4 if late_from is None else late_from
    rng = np.random.default_rng(seed)
    index = pd.date_range("2022-01-01", periods=n, freq="1h", tz="UTC")
    mask = np.zeros((n, 2), bool)
    mask[7::8, :] = True  # 8h settlements at 00/08/16 UTC, each in the bar that closes at it
    mask[:late_from, 1] = False
    block = np.where((np.arange(n) // (40 * DAY)) % 2 == 0, 1.0, -1.0) * 2e-4
    rate = np.where(mask, block[:, None] + rng.normal(0, 1e-4, (n, 2)), 0.0)
    spot = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, (n, 2)), axis=0))
    return Market.from_arrays(
        index, ["AAAUSDT", "BBBUSDT"], spot=spot, perp=spot * 1.0005, funding_rate=rate, funding_mask=mask
    )


def _without_bars(regimes):
    return [{k: v for k, v in vars(r).items() if k not in ("start_bar", "end_bar")} for r in regimes]


def test_late_symbol_figures_are_those_of_its_own_span_alone():
    m = _two_symbols()
    first = int(np.flatnonzero(m.funding_count[:, 1])[0])  # the bar holding BBB's first settlement
    span_start = first + 1 - 8  # its settlement pays for the 8 hours before the bar's close
    alone = m.select(["BBBUSDT"], start=m.index[span_start])
    assert alone.index[0] == m.index[first] + pd.Timedelta(hours=1) - pd.Timedelta(hours=8)

    both_stats = {s.symbol: s for s in funding_stats(m)}
    (alone_stats,) = funding_stats(alone)
    assert both_stats["BBBUSDT"] == alone_stats  # exact: nothing depends on the grid's start
    assert funding_stats(m.select(["AAAUSDT"]))[0] == both_stats["AAAUSDT"]

    both = [r for r in funding_regimes(m, window_settlements=9, min_days=7) if r.symbol == "BBBUSDT"]
    solo = funding_regimes(alone, window_settlements=9, min_days=7)
    assert len(both) >= 3 and {r.sign for r in both} == {1, -1}
    assert _without_bars(both) == _without_bars(solo)
    assert [(r.start_bar - span_start, r.end_bar - span_start) for r in both] == [
        (r.start_bar, r.end_bar) for r in solo
    ]
    # no regime before the funding: the first starts at the first bar whose funding is known
    first_settlement = m.index[first] + pd.Timedelta(hours=1)
    assert both[0].start == first_settlement - pd.Timedelta(hours=8) and both[0].start_bar == span_start
    assert all(r.start >= both[0].start for r in both)
    assert both[-1].end_bar == int(np.flatnonzero(m.funding_count[:, 1])[-1]) + 1

    s = both_stats["BBBUSDT"]
    funded_bars = m.n_bars - span_start - 0  # the last bar holds the last settlement
    assert s.funded_days == funded_bars / 24 and s.holes == 0 and s.hole_days == 0
    assert s.funded_from == str(m.index[span_start]) and s.funded_to == str(m.index[-1] + pd.Timedelta(hours=1))
    assert s.settlements == int(m.funding_count[:, 1].sum())
    assert s.funding_annualized == pytest.approx(s.funding_sum / (funded_bars / (365 * 24)), rel=1e-12)
    # per regime: annualized over its own days, which add up to the span
    assert sum(r.days for r in both) == pytest.approx(s.funded_days)
    for r in both:
        assert r.days == (r.end - r.start) / pd.Timedelta(days=1)
        assert r.funding_annualized == pytest.approx(r.funding_sum / (r.days / 365), rel=1e-12)


def test_grid_start_does_not_change_a_symbol_with_funding_times():
    """With settlement instants (loaded markets carry them), jittered by milliseconds."""
    from dataclasses import replace

    from data.market import NO_FUNDING_TIME

    m = _two_symbols(n_days=120)
    close_ms = m.index.as_unit("ms").asi8[:, None] + 3_600_000
    ft = np.where(m.funding_count > 0, close_ms + 17, NO_FUNDING_TIME)  # 08:00:00.017
    m = replace(m, funding_time_ms=ft)
    first = int(np.flatnonzero(m.funding_count[:, 1])[0])
    assert funding_stats(m)[1] == funding_stats(m.select(["BBBUSDT"], start=m.index[first - 7]))[0]
    assert funding_regimes(m)[-1].end == funding_regimes(m.select(["BBBUSDT"]))[-1].end
    assert [r for r in funding_regimes(m) if r.symbol == "BBBUSDT"][0].start_bar == first - 7


def _with_hole(hole_days: int = 100):
    """One symbol, negative funding every 8h for 400 days, no settlement for ``hole_days`` in the middle."""
    n = 400 * DAY
    index = pd.date_range("2023-01-01", periods=n, freq="1h", tz="UTC")
    mask = np.zeros((n, 1), bool)
    mask[7::8] = True
    a = 150 * DAY
    b = a + hole_days * DAY
    mask[a:b] = False
    rate = np.where(mask, -1e-4, 0.0)
    spot = np.linspace(100, 120, n)[:, None]
    m = Market.from_arrays(index, ["AAAUSDT"], spot=spot, perp=spot, funding_rate=rate, funding_mask=mask)
    return m, a, b


def test_a_hole_splits_the_regime_and_counts_nowhere():
    m, a, b = _with_hole(100)
    regimes = funding_regimes(m, window_settlements=21, min_days=14)
    assert [r.sign for r in regimes] == [-1, -1]  # one sign, but the hole is not funding data
    before, after = regimes
    assert (before.start_bar, before.end_bar) == (0, a) and (after.start_bar, after.end_bar) == (b, m.n_bars)
    assert before.days == 150 and after.days == 150
    assert before.end == m.index[a] and after.start == m.index[b]
    assert after.funding_annualized == pytest.approx(-1e-4 * 3 * 365)  # 3 settlements a day, of its own days
    assert sum(r.settlements for r in regimes) == int(m.funding_count.sum())

    (s,) = funding_stats(m)
    assert s.holes == 1 and s.hole_days == 100 and s.funded_days == 300
    assert s.funding_annualized == pytest.approx(-1e-4 * 3 * 365)  # not diluted by the hole's 100 days
    assert s.longest_negative_run == 150 * 3  # a run does not cross the hole
    assert s.longest_negative_run_start == str(m.index[7])


def test_short_gaps_are_not_holes_and_untradable_bars_cut_the_span():
    from dataclasses import replace

    from reports.regimes import funded_segments

    m, a, b = _with_hole(0)
    assert funded_segments(m, 0) == [(0, m.n_bars)]
    # one missing settlement (16h between two) is a hole; a one-bar tradable cut splits too
    mask = m.funding_count > 0
    mask[8 * 100 + 7, 0] = False
    one = Market.from_arrays(
        m.index, ["AAAUSDT"], spot=m.spot_close, perp=m.perp_close, funding_rate=m.funding_rate, funding_mask=mask
    )
    assert funded_segments(one, 0) == [(0, 8 * 100), (8 * 101, m.n_bars)]
    tradable = np.ones(m.shape, bool)
    tradable[1000:1200] = False
    cut = replace(m, tradable=tradable)
    assert funded_segments(cut, 0) == [(0, 1000), (1200, m.n_bars)]
    assert [(r.start_bar, r.end_bar) for r in funding_regimes(cut)] == [(0, 1000), (1200, m.n_bars)]


def test_regime_earnings_use_the_regime_s_own_funded_days():
    from types import SimpleNamespace

    from reports.scan import regime_earnings

    m, a, b = _with_hole(100)
    regimes = funding_regimes(m)
    n = 2 * len(regimes)
    last = pd.DataFrame(np.zeros((1, n)))
    result = SimpleNamespace(
        config=SimpleNamespace(initial_capital_quote=1000.0),
        equity=pd.DataFrame(np.full((1, n), 1010.0)),
        components={k: last for k in ("funding", "borrow", "fees", "liquidation")},
    )
    e = regime_earnings(m, result, regimes)
    assert list(e["days"]) == [150.0, 150.0]  # the 100 days of the hole belong to neither
    np.testing.assert_allclose(e["funding_annualized"], e["funding_sum"] / (e["days"] / 365), rtol=1e-12)
    assert (e["carry_return"] == 0.01).all()


def test_symbol_without_settlements_has_no_span():
    m = _two_symbols(n_days=40, late_from=40 * DAY)
    s = funding_stats(m)[1]
    assert s.settlements == 0 and s.funded_days == 0 and s.funded_from is None
    assert np.isnan(s.funding_annualized) and np.isnan(s.basis_mean)
    assert all(r.symbol == "AAAUSDT" for r in funding_regimes(m))


@pytest.mark.shared_data
def test_real_bch_figures_do_not_depend_on_ltc(tmp_path):
    """BCH has spot and perp bars from 2019 but mark and funding only from 2025-05; LTC has funding from 2020."""
    import warnings

    from data.catalog import Catalog
    from data.ingest.freqtrade import ingest_freqtrade
    from data.loader import load_market
    from tests.conftest import shared_data_path

    cat = Catalog(tmp_path / "catalog")
    ingest_freqtrade(shared_data_path("binance"), cat, symbols=["LTCUSDT", "BCHUSDT"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        both = load_market(cat, ["LTCUSDT", "BCHUSDT"])
        alone = load_market(cat, ["BCHUSDT"])
    # LTC's grid starts years before BCH's funding; BCH alone starts with its tradable span
    assert both.index[0] < pd.Timestamp("2021-01-01", tz="UTC")
    assert alone.index[0] == pd.Timestamp("2025-04-30 16:00", tz="UTC")
    bch = next(s for s in funding_stats(both) if s.symbol == "BCHUSDT")
    assert bch == funding_stats(alone)[0]
    assert bch.funded_from == "2025-04-30 16:00:00+00:00"  # first settlement 2025-05-01 00:00, 8h interval
    assert bch.settlements == 1143 and bch.holes == 0
    assert bch.funding_annualized == pytest.approx(bch.funding_sum / (bch.funded_days / 365), rel=1e-12)
    regimes = [r for r in funding_regimes(both) if r.symbol == "BCHUSDT"]
    assert _without_bars(regimes) == _without_bars(funding_regimes(alone))
    assert regimes[0].start == pd.Timestamp("2025-04-30 16:00", tz="UTC")
    assert max(r.days for r in regimes) < 400  # no regime of years without funding

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

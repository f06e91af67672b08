"""The strategies of venue pairs: ``funding_spread`` (two perps) and ``best_venue_carry`` (spot on
one venue, the perp on whichever venue pays most), on hand-made markets whose funding is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.errors import ConfigError
from data.market import Market
from strategies import FundingSpreadParams, funding_spread, trailing_funding_per_year
from strategies.best_venue_carry import BestVenueCarryParams, best_venue_carry, best_venue_nb

T = 24 * 40
IDX = pd.date_range("2025-01-01", periods=T, freq="h", tz="UTC")


def _market(rate_per_8h: np.ndarray, every: int = 8) -> Market:
    """A flat-priced perp whose funding settles every ``every`` hours at ``rate_per_8h * every / 8``."""
    rate = np.zeros((T, 1))
    rate[every - 1 :: every, 0] = (rate_per_8h * every / 8.0)[every - 1 :: every]
    return Market.from_arrays(
        IDX, ["BTCUSDT"], spot=np.full((T, 1), 100.0), perp=np.full((T, 1), 100.0), funding_rate=rate
    )


def test_trailing_funding_per_year_by_hand():
    # 0.0001 every 8 h is 0.0003 a day, 10.95% a year, whatever the interval of the settlements
    for every in (8, 1):
        m = _market(np.full(T, 0.0001), every)
        f = trailing_funding_per_year(m, 72.0)
        assert np.isnan(f[:71]).all()
        np.testing.assert_allclose(f[71:, 0], 0.0001 * 3 * 365, rtol=1e-12)


def test_funding_spread_enters_the_side_that_collects_and_leaves_after_its_hold():
    # B pays 0.0002 per 8 h more than A for 20 days, then 0.0002 less
    a = _market(np.full(T, 0.0001))
    rb = np.where(np.arange(T) < 24 * 20, 0.0003, -0.0001)
    b = _market(rb, every=1)
    p = FundingSpreadParams(entry_annualized=0.05, exit_annualized=0.0, window_hours=72, min_hold_hours=48)
    x = funding_spread(a, b, p, 0.0005, 0.0005)
    hurdle = 2 * 0.001 * 8760 / 720  # 2.43% a year
    assert 0.0002 * 3 * 365 - hurdle > 0.05  # 21.9% - 2.4%: above the entry level
    assert (x[:71] == 0).all() and x[71, 0] == 1.0  # long A, short B once a window is known
    flip = 24 * 20
    # the trailing spread turns negative 36 hours into the new regime; the short side enters
    # once it is below -(entry + hurdle), which the 72-hour window reaches later
    assert (x[flip : flip + 30, 0] == 1.0).all()
    assert x[-1, 0] == -1.0 and set(np.unique(x)) == {-1.0, 0.0, 1.0}
    with pytest.raises(ConfigError, match="exit_annualized"):
        FundingSpreadParams(entry_annualized=0.01, exit_annualized=0.02)


def test_best_venue_nb_by_hand():
    nan = np.nan
    # two venues, one coin: venue 0 pays 10%, then venue 1 pays 20% from bar 3, then both fall
    scores = np.array(
        [
            [[0.10], [0.10], [0.10], [0.10], [0.10], [0.10], [-0.1], [nan]],
            [[nan], [0.02], [0.08], [0.20], [0.20], [0.20], [-0.1], [nan]],
        ]
    )
    held = best_venue_nb(scores, 0.05, 0.0, 0.05, 2)[:, 0]
    # enter venue 0 at bar 0; venue 1 pays 10 points more at bar 3 (held 3 bars): switch; both
    # below the exit at bar 6 (held 3 bars): leave; unknown scores keep flat
    assert held.tolist() == [0, 0, 0, 1, 1, 1, -1, -1]
    # a minimum hold of 5 bars delays the switch to bar 5
    assert best_venue_nb(scores, 0.05, 0.0, 0.05, 5)[:, 0].tolist() == [0, 0, 0, 0, 0, 1, 1, 1]
    # a switch threshold above the difference keeps venue 0 until the exit
    assert best_venue_nb(scores, 0.05, 0.0, 0.2, 2)[:, 0].tolist() == [0, 0, 0, 0, 0, 0, -1, -1]


def test_best_venue_carry_holds_the_best_venue_after_fees():
    cheap = _market(np.full(T, 0.00010))
    rich = _market(np.where(np.arange(T) < 24 * 20, 0.00005, 0.00030))
    p = BestVenueCarryParams(entry_annualized=0.03, switch_annualized=0.05, min_hold_hours=24)
    xa, xb = best_venue_carry([cheap, rich], p, [0.0005, 0.0005], 0.001)
    assert ((xa == 0) | (xb == 0)).all()  # one venue at a time
    assert xa[100, 0] == 1.0 and xb[100, 0] == 0.0  # 10.95% against 5.5%: the first venue
    assert xb[-1, 0] == 1.0 and xa[-1, 0] == 0.0  # 32.9% against 10.95%: switched
    # a fee on the rich venue large enough to eat its extra funding keeps the first venue
    xa2, xb2 = best_venue_carry([cheap, rich], p, [0.0005, 0.009], 0.001)
    assert (xb2 == 0).all() and xa2[-1, 0] == 1.0
    with pytest.raises(ConfigError, match="one fee per venue"):
        best_venue_carry([cheap, rich], p, [0.0005], 0.001)


def test_funding_spread_pairs_holds_the_widest_pair_one_at_a_time():
    """Three venues: venue 2 pays 8.2%/yr more than venues 0 and 1 (a tie: the first pair, long 0
    and short 2, is held); from day 20 venue 1 pays -22% a year and its pair with venue 2 is 30
    points wider: the strategy moves there (long 1, short 2); never two pairs at once."""
    from strategies import funding_spread_pairs

    v0 = _market(np.full(T, 0.00005))
    v1 = _market(np.where(np.arange(T) < 24 * 20, 0.00005, -0.0002))
    v2 = _market(np.full(T, 0.0001), every=1)
    p = FundingSpreadParams(entry_annualized=0.02, min_hold_hours=24)
    x = funding_spread_pairs([v0, v1, v2], p, [0.0005, 0.0005, 0.0005])
    assert sorted(x) == [(0, 1), (0, 2), (1, 2)]
    held = np.stack([np.abs(x[k][:, 0]) for k in sorted(x)])
    assert (held.sum(axis=0) <= 1.0).all()
    assert x[(0, 2)][24 * 10, 0] == 1.0 and x[(1, 2)][24 * 10, 0] == 0.0
    assert x[(1, 2)][-1, 0] == 1.0 and x[(0, 2)][-1, 0] == 0.0
    # two venues: the same as funding_spread on that pair
    np.testing.assert_array_equal(
        funding_spread(v0, v2, p, 0.0005, 0.0005), funding_spread_pairs([v0, v2], p, [0.0005] * 2)[(0, 1)]
    )

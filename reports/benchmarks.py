"""Benchmarks of a run's market: what holding the spot, and what a hedge held throughout,
would have made over the same span with the same capital.

Per symbol, over its tradable span inside the run (``Market.tradable``: from its first to its
last tradable bar), for a capital ``C`` (a run's initial capital per portfolio):

- **spot buy-and-hold**: buy ``C`` of spot at the open of the first bar, sell at the close of
  the last: ``spot_return`` = close / open − 1 (fraction), ``spot_pnl`` = ``C × spot_return``
  (quote); no fees.
- **hedge held throughout**: long ``q = C / open`` coins of spot and short ``q`` perp (a 1x
  hedge of the capital's notional), held over every tradable bar without rebalancing, margin,
  fees or liquidation: ``hedge_funding_pnl`` = ``q × Σ mark_t × r_t`` over the settlements in
  those bars (quote; the funding a short perp of ``q`` coins receives, README "Funding: who
  pays whom"), ``hedge_funding_return`` = that / ``C`` (fraction),
  ``hedge_funding_annualized`` = that fraction per 365-day year of the span (simple, not
  compounded), and ``settlements``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data.units import HOURS_PER_YEAR

#: The columns of :func:`benchmarks`, in order (index: ``symbol``).
BENCHMARK_COLUMNS = (
    "from",
    "to",
    "spot_return",
    "spot_pnl",
    "hedge_funding_pnl",
    "hedge_funding_return",
    "hedge_funding_annualized",
    "settlements",
)


def benchmarks(market, capital: float) -> pd.DataFrame:
    """Spot buy-and-hold and hedge-funding figures per symbol (see the module's text), one row
    per symbol of ``market`` (index ``symbol``); symbols never tradable get NaN."""
    T = market.n_bars
    step = market.index[1] - market.index[0] if T > 1 else pd.Timedelta(hours=1)
    rows = []
    for j, sym in enumerate(market.symbols):
        ok = np.asarray(market.tradable[:, j], dtype=bool)
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            rows.append({"symbol": sym, **{c: np.nan for c in BENCHMARK_COLUMNS}})
            continue
        first, last = int(idx[0]), int(idx[-1])
        open_, close = float(market.spot_open[first, j]), float(market.spot_close[last, j])
        q = capital / open_
        funding = q * float(np.sum(market.funding_value[ok, j]))
        hours = (market.index[last] + step - market.index[first]) / pd.Timedelta(hours=1)
        rows.append(
            {
                "symbol": sym,
                "from": market.index[first],
                "to": market.index[last] + step,
                "spot_return": close / open_ - 1.0,
                "spot_pnl": capital * (close / open_ - 1.0),
                "hedge_funding_pnl": funding,
                "hedge_funding_return": funding / capital,
                "hedge_funding_annualized": funding / capital * HOURS_PER_YEAR / hours if hours > 0 else np.nan,
                "settlements": int(np.sum(market.funding_count[ok, j])),
            }
        )
    return pd.DataFrame(rows).set_index("symbol")[list(BENCHMARK_COLUMNS)]

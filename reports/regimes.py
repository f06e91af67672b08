"""Funding regimes per symbol: the facts behind ``carry scan``.

Span
----
Everything here is computed over the *funded span* of each symbol only: the bars whose funding
is known. A settlement at ``t`` of interval ``h`` pays for ``[t - h, t)``, so a symbol's span
runs from the first bar opening at or after ``t_first - h_first`` (the first bar whose funding
is known) to the bar holding its last settlement, intersected with ``Market.tradable`` (the
loader's tradable span, minus the funding holes it was asked not to trade through). Inside
it, a *hole* (settlements further apart than the interval of the settlement after the gap,
the loader's rule :func:`data.loader.funding_span`; e.g. 167 days of missing ENA funding)
is not funding data: the span
is cut into *segments* there, no regime spans a hole, and a hole's days count in no
annualization nor in any regime's length. Bars of the grid before a symbol's first settlement
(the grid starts with the earliest symbol of the run) are not part of its span, so a symbol's
figures do not depend on which other symbols are scanned with it.

Regimes
-------
A *regime* is a maximal stretch of one segment over which the trailing mean funding rate
(over ``window_settlements`` settlements of that segment) keeps one sign, lasting at least
``min_days``. Shorter flips are merged into the regime before them, so a regime reads as
"months of negative funding", not as every sign change; each regime's sign is then the sign
of the funding actually settled in it.

Units: rates and sums of rates are fractions (0.0001 = 1 bp); ``*_annualized`` figures are per
365-day year (:data:`~data.units.HOURS_PER_YEAR`) over the funded days they cover; days are
24-hour days of funded bars.

All functions are pure: a :class:`~data.market.Market` in, plain Python/pandas out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from data.errors import ConfigError
from data.market import NO_FUNDING_TIME, Market
from data.units import HOURS_PER_YEAR, MS_PER_HOUR, bar_hours

_MS_PER_MINUTE = 60_000


@dataclass(frozen=True)
class FundingStats:
    """Funding and basis facts of one symbol over its funded span (see the module docstring).

    Rates are fractions; ``funding_annualized`` is the funding summed over the span per 365-day
    year of funded days (holes excluded); ``share_negative`` is a fraction of the settlement
    bars; ``longest_negative_run`` counts consecutive negative settlement bars (a run does not
    cross a hole); basis (perp close / spot close - 1) in fractions over the span's priced bars.
    ``funded_from`` / ``funded_to``: the span's first bar open and last bar close (UTC), ``None``
    without settlements; ``funded_days``: days of funded bars; ``holes`` / ``hole_days``: the
    gaps cut out of the span and their days.
    """

    symbol: str
    settlements: int
    funding_sum: float
    funding_annualized: float
    share_negative: float
    longest_negative_run: int
    longest_negative_run_start: str | None
    longest_negative_run_end: str | None
    basis_mean: float
    basis_std: float
    basis_min: float
    basis_max: float
    intervals_hours: str
    funded_from: str | None
    funded_to: str | None
    funded_days: float
    holes: int
    hole_days: float

    def as_dict(self) -> dict:
        return asdict(self)


def _bar_open_ms(market: Market) -> np.ndarray:
    return np.asarray(market.index.as_unit("ms").asi8, dtype=np.int64)


def funded_segments(market: Market, j: int) -> list[tuple[int, int]]:
    """The funded span of symbol ``j`` as bar ranges ``[start, end)``, in order, cut at holes.

    The span and the holes follow the loader's one rule (:func:`data.loader.funding_span`),
    applied to the settlements the market holds: their instants are ``Market.funding_time_ms``
    floored to the minute (the bar's close where the market does not know them), a bar
    holding ``c`` settlements of interval ``h`` holds them at ``t_last - (c - 1) h, ...,
    t_last``. The funded bars outside the holes are then cut where ``Market.tradable`` is False.
    """
    from data.loader import funding_span

    count = market.funding_count[:, j]
    pos = np.flatnonzero(count > 0)
    if pos.size == 0:
        return []
    bar_open = _bar_open_ms(market)
    bar_ms = int(round(bar_hours(market) * MS_PER_HOUR))
    t = bar_open[pos] + bar_ms
    if market.funding_time_ms is not None:
        known_t = market.funding_time_ms[pos, j]
        t = np.where(known_t == NO_FUNDING_TIME, t, known_t // _MS_PER_MINUTE * _MS_PER_MINUTE)
    hours = market.funding_interval_hours[pos, j]
    c = count[pos].astype(np.int64)
    back = np.concatenate([np.arange(k - 1, -1, -1) for k in c])  # settlements before the bar's last
    step = np.where(np.isfinite(hours), hours, 0.0) * MS_PER_HOUR
    times = np.repeat(t, c) - back * np.repeat(step, c).astype(np.int64)
    funded, holes = funding_span(times.astype(np.int64), np.repeat(hours, c), bar_open, bar_ms)
    for lo, hi, _ in holes:
        funded &= ~((bar_open + bar_ms > lo) & (bar_open < hi))
    funded &= np.asarray(market.tradable[:, j], dtype=bool)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], funded.astype(np.int8), [0]])))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def funded_bars(market: Market) -> np.ndarray:
    """(T, N) bool: True on the bars of each symbol's funded span (:func:`funded_segments`)."""
    out = np.zeros(market.shape, dtype=bool)
    for j in range(market.n_symbols):
        for s, e in funded_segments(market, j):
            out[s:e, j] = True
    return out


def _longest_run(flags: np.ndarray) -> tuple[int, int]:
    """Length and start position of the longest run of True."""
    best, best_start, run, start = 0, -1, 0, 0
    for i, f in enumerate(flags):
        if f:
            if run == 0:
                start = i
            run += 1
            if run > best:
                best, best_start = run, start
        else:
            run = 0
    return best, best_start


def funding_stats(market: Market) -> list[FundingStats]:
    """One :class:`FundingStats` per symbol, over its funded span only."""
    bar_h = bar_hours(market)
    step = pd.Timedelta(hours=bar_h)
    out = []
    for j, sym in enumerate(market.symbols):
        segments = funded_segments(market, j)
        bars = np.concatenate([np.arange(s, e) for s, e in segments]) if segments else np.zeros(0, np.int64)
        settled = bars[market.funding_count[bars, j] > 0]
        rates = market.funding_rate[settled, j]
        n_bars = int(bars.size)
        years = n_bars * bar_h / HOURS_PER_YEAR
        # longest negative run, in settlement bars, never across a hole
        run, at = 0, -1
        offset = 0
        for s, e in segments:
            k = int(np.count_nonzero(market.funding_count[s:e, j] > 0))
            r, a = _longest_run(rates[offset : offset + k] < 0)
            if r > run:
                run, at = r, offset + a
            offset += k
        priced = bars[market.valid[bars, j]]
        basis = market.basis[priced, j]
        gaps = [b[0] - a[1] for a, b in zip(segments, segments[1:])]
        out.append(
            FundingStats(
                symbol=sym,
                settlements=int(market.funding_count[settled, j].sum()),
                funding_sum=float(rates.sum()),
                funding_annualized=float(rates.sum() / years) if years > 0 else float("nan"),
                share_negative=float((rates < 0).mean()) if rates.size else float("nan"),
                longest_negative_run=int(run),
                longest_negative_run_start=str(market.index[settled[at]]) if run else None,
                longest_negative_run_end=str(market.index[settled[at + run - 1]]) if run else None,
                basis_mean=float(np.mean(basis)) if basis.size else float("nan"),
                basis_std=float(np.std(basis)) if basis.size else float("nan"),
                basis_min=float(np.min(basis)) if basis.size else float("nan"),
                basis_max=float(np.max(basis)) if basis.size else float("nan"),
                intervals_hours=" -> ".join(
                    f"{h:g}h" for h in _interval_sequence(market.funding_interval_hours[settled, j])
                ),
                funded_from=str(market.index[segments[0][0]]) if segments else None,
                funded_to=str(market.index[segments[-1][1] - 1] + step) if segments else None,
                funded_days=n_bars * bar_h / 24.0,
                holes=len(gaps),
                hole_days=float(sum(gaps) * bar_h / 24.0),
            )
        )
    return out


def _interval_sequence(hours: np.ndarray) -> list[float]:
    seq: list[float] = []
    for h in hours[np.isfinite(hours)]:
        if not seq or seq[-1] != h:
            seq.append(float(h))
    return seq if len(seq) <= 12 else seq[:6] + [float("nan")] + seq[-5:]


@dataclass(frozen=True)
class Regime:
    """A stretch of one funding sign for one symbol: bars ``[start, end)`` of the market.

    ``start`` / ``end``: the first bar's open and the last bar's close (UTC); ``days``: its
    length in days, all funded (a regime never spans a hole); ``funding_sum``: the rates
    settled in it (fraction); ``funding_annualized``: ``funding_sum`` per 365-day year of
    ``days``; ``spot_return``: last over first finite spot close, minus one.
    """

    symbol: str
    sign: int  # +1 positive funding, -1 negative
    start: pd.Timestamp
    end: pd.Timestamp
    start_bar: int
    end_bar: int
    settlements: int
    funding_sum: float
    funding_annualized: float
    spot_return: float
    days: float


def _segment_runs(market: Market, j: int, s: int, e: int, window: int, min_bars: int) -> list[list[int]]:
    """Regimes ``[start, end, sign]`` (market bars) of symbol ``j`` over one segment ``[s, e)``."""
    n = e - s
    settled = market.funding_count[s:e, j] > 0
    pos = np.flatnonzero(settled)
    rate = market.funding_rate[s:e, j]
    trailing = pd.Series(rate[pos]).rolling(window, min_periods=1).mean().to_numpy()
    sign_at = np.where(trailing < 0, -1, 1)
    # sign per bar: the latest settlement's trailing sign; the first one's before it
    bar_sign = np.full(n, sign_at[0], dtype=np.int64)
    idx = np.maximum.accumulate(np.where(settled, np.arange(n), -1))
    has = idx >= 0
    bar_sign[has] = sign_at[np.searchsorted(pos, idx[has])]
    # runs, then merge short ones into the previous run
    change = np.flatnonzero(np.diff(bar_sign)) + 1
    runs: list[list[int]] = []
    for a, b in zip(np.concatenate([[0], change]), np.concatenate([change, [n]])):
        sg = int(bar_sign[a])
        if runs and (b - a < min_bars or runs[-1][2] == sg):
            runs[-1][1] = int(b)
        else:
            runs.append([int(a), int(b), sg])
    # a regime's sign is that of the funding actually settled in it (absorbed flips can
    # tip it); neighbours of one sign are then joined
    for r in runs:
        r[2] = -1 if rate[r[0] : r[1]].sum() < 0 else 1
    merged: list[list[int]] = []
    for r in runs:
        if merged and merged[-1][2] == r[2]:
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    return [[s + a, s + b, sg] for a, b, sg in merged]


def funding_regimes(market: Market, window_settlements: int = 21, min_days: float = 14.0) -> list[Regime]:
    """Regimes of each symbol over its funded span (see the module docstring).

    Parameters
    ----------
    window_settlements:
        Trailing window of the sign rule, in settlements (21 = one week of 8h settlements);
        it restarts after each hole.
    min_days:
        Stretches shorter than this (days) are merged into the regime before them.
    """
    if not isinstance(window_settlements, int | np.integer) or window_settlements < 1:
        raise ConfigError(f"window_settlements must be a whole number >= 1, got {window_settlements!r}")
    if not min_days >= 0:
        raise ConfigError(f"min_days must be >= 0 (days), got {min_days!r}")
    bar_h = bar_hours(market)
    step = pd.Timedelta(hours=bar_h)
    min_bars = max(1, int(round(min_days * 24 / bar_h)))
    out: list[Regime] = []
    for j, sym in enumerate(market.symbols):
        for seg_s, seg_e in funded_segments(market, j):
            if not (market.funding_count[seg_s:seg_e, j] > 0).any():
                continue  # a tradable cut left no settlement in this piece
            for s, e, sg in _segment_runs(market, j, seg_s, seg_e, window_settlements, min_bars):
                in_run = market.funding_count[s:e, j] > 0
                settled = market.funding_rate[s:e, j][in_run]
                years = (e - s) * bar_h / HOURS_PER_YEAR
                sc = market.spot_close[s:e, j]
                sc = sc[np.isfinite(sc)]
                out.append(
                    Regime(
                        symbol=sym,
                        sign=sg,
                        start=market.index[s],
                        end=market.index[e - 1] + step,
                        start_bar=s,
                        end_bar=e,
                        settlements=int(market.funding_count[s:e, j][in_run].sum()),
                        funding_sum=float(settled.sum()),
                        funding_annualized=float(settled.sum() / years) if years > 0 else float("nan"),
                        spot_return=float(sc[-1] / sc[0] - 1) if sc.size > 1 else float("nan"),
                        days=(e - s) * bar_h / 24.0,
                    )
                )
    return out

"""Funding regimes per symbol: the facts behind ``carry scan``.

A *regime* is a maximal stretch of time over which the trailing mean funding rate (over
``window_settlements`` settlements) keeps one sign, lasting at least ``min_days``. Shorter
flips are merged into the regime before them, so a regime reads as "months of negative
funding", not as every sign change; each regime's sign is then the sign of the funding
actually settled in it.

All functions are pure: a :class:`~data.market.Market` in, plain Python/pandas out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from data.errors import ConfigError
from data.market import Market
from data.units import HOURS_PER_YEAR, bar_hours


@dataclass(frozen=True)
class FundingStats:
    """Funding and basis facts of one symbol over the market's span.

    Rates are fractions; ``*_annualized`` are per 365-day year; basis in fractions.
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

    def as_dict(self) -> dict:
        return asdict(self)


def _settlements(market: Market, j: int) -> tuple[pd.DatetimeIndex, np.ndarray, np.ndarray]:
    mask = market.funding_count[:, j] > 0
    return market.index[mask], market.funding_rate[mask, j], market.funding_interval_hours[mask, j]


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
    """One :class:`FundingStats` per symbol."""
    out = []
    for j, sym in enumerate(market.symbols):
        times, rates, hours = _settlements(market, j)
        valid = market.valid[:, j]
        span_h = valid.sum() * bar_hours(market)
        years = span_h / HOURS_PER_YEAR if span_h else np.nan
        run, at = _longest_run(rates < 0)
        basis = market.basis[valid, j]
        out.append(
            FundingStats(
                symbol=sym,
                settlements=int(market.funding_count[:, j].sum()),
                funding_sum=float(rates.sum()),
                funding_annualized=float(rates.sum() / years) if years else float("nan"),
                share_negative=float((rates < 0).mean()) if rates.size else float("nan"),
                longest_negative_run=int(run),
                longest_negative_run_start=str(times[at]) if run else None,
                longest_negative_run_end=str(times[at + run - 1]) if run else None,
                basis_mean=float(np.mean(basis)) if basis.size else float("nan"),
                basis_std=float(np.std(basis)) if basis.size else float("nan"),
                basis_min=float(np.min(basis)) if basis.size else float("nan"),
                basis_max=float(np.max(basis)) if basis.size else float("nan"),
                intervals_hours=" -> ".join(f"{h:g}h" for h in _interval_sequence(hours)),
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
    """A stretch of one funding sign for one symbol: bars ``[start, end)`` of the market."""

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


def funding_regimes(market: Market, window_settlements: int = 21, min_days: float = 14.0) -> list[Regime]:
    """Regimes of each symbol (see the module docstring).

    Parameters
    ----------
    window_settlements:
        Trailing window of the sign rule, in settlements (21 = one week of 8h settlements).
    min_days:
        Stretches shorter than this are merged into the regime before them.
    """
    if not isinstance(window_settlements, int | np.integer) or window_settlements < 1:
        raise ConfigError(f"window_settlements must be a whole number >= 1, got {window_settlements!r}")
    if not min_days >= 0:
        raise ConfigError(f"min_days must be >= 0 (days), got {min_days!r}")
    bar_h = bar_hours(market)
    min_bars = max(1, int(round(min_days * 24 / bar_h)))
    out: list[Regime] = []
    for j, sym in enumerate(market.symbols):
        mask = market.funding_count[:, j] > 0
        pos = np.flatnonzero(mask)
        if pos.size == 0:
            continue
        rates = market.funding_rate[pos, j]
        trailing = pd.Series(rates).rolling(window_settlements, min_periods=1).mean().to_numpy()
        sign_at = np.where(trailing < 0, -1, 1)
        # sign per bar: the latest settlement's trailing sign, from the first settlement on
        bar_sign = np.zeros(market.n_bars, dtype=np.int64)
        bar_sign[pos] = sign_at
        bar_sign = pd.Series(bar_sign).replace(0, np.nan).ffill().fillna(sign_at[0]).to_numpy(dtype=np.int64)
        bar_sign[: pos[0]] = sign_at[0]
        # runs, then merge short ones into the previous run
        change = np.flatnonzero(np.diff(bar_sign)) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [market.n_bars]])
        runs: list[list[int]] = []
        for s, e in zip(starts, ends):
            sg = int(bar_sign[s])
            if runs and (e - s < min_bars or runs[-1][2] == sg):
                runs[-1][1] = int(e)
            else:
                runs.append([int(s), int(e), sg])
        # a regime's sign is that of the funding actually settled in it (absorbed flips can
        # tip it); neighbours of one sign are then joined
        for r in runs:
            total = market.funding_rate[r[0] : r[1], j].sum()
            r[2] = -1 if total < 0 else 1
        merged: list[list[int]] = []
        for r in runs:
            if merged and merged[-1][2] == r[2]:
                merged[-1][1] = r[1]
            else:
                merged.append(r)
        for s, e, sg in merged:
            in_run = mask[s:e]
            settled = market.funding_rate[s:e, j][in_run]
            years = (e - s) * bar_h / HOURS_PER_YEAR
            sc = market.spot_close[s:e, j]
            sc = sc[np.isfinite(sc)]
            out.append(
                Regime(
                    symbol=sym,
                    sign=sg,
                    start=market.index[s],
                    end=market.index[e - 1]
                    + (market.index[1] - market.index[0] if market.n_bars > 1 else pd.Timedelta(0)),
                    start_bar=s,
                    end_bar=e,
                    settlements=int(in_run.sum()),
                    funding_sum=float(settled.sum()),
                    funding_annualized=float(settled.sum() / years) if years > 0 else float("nan"),
                    spot_return=float(sc[-1] / sc[0] - 1) if sc.size > 1 else float("nan"),
                )
            )
    return out

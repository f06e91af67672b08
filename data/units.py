"""Units and time: one home for the year length, bar lengths and millisecond timestamps.

Conventions used everywhere in carry:

* times are UTC; the catalog stores them as integer **milliseconds since the epoch**;
* rates are **fractions** (0.0001 = 1 bp), per funding interval unless a name says
  ``annualized`` (per 365-day year, :data:`HOURS_PER_YEAR` hours) or ``hourly``;
* a bar's length is in **hours** (:func:`bar_hours`), read from the market's ``freq``.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pandas as pd

from data.errors import ConfigError

#: Hours in the 365-day year every annualized figure uses (funding, borrow, returns).
HOURS_PER_YEAR = 365.0 * 24.0
#: Milliseconds in one hour.
MS_PER_HOUR = 3_600_000


def to_timestamp(value: Any, name: str = "time") -> pd.Timestamp:
    """``value`` (anything :class:`pandas.Timestamp` reads; naive = UTC) as a UTC timestamp.

    Raises :class:`~data.errors.ConfigError` naming ``name`` (e.g. ``"start"``) and the value when
    it is not a date or time.
    """
    try:
        ts = pd.Timestamp(value)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"bad {name} {value!r}: not a date or time, e.g. 2024-01-01 ({exc})") from None
    if ts is pd.NaT:
        raise ConfigError(f"bad {name} {value!r}: not a date or time, e.g. 2024-01-01")
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def to_ms(value: Any, name: str = "time") -> int | None:
    """Milliseconds since the epoch (UTC) of :func:`to_timestamp` ``(value, name)``; ``None`` stays ``None``."""
    return None if value is None else int(to_timestamp(value, name).value // 1_000_000)


def ms_to_iso(ms: int) -> str:
    """ISO 8601 text (UTC) of a millisecond timestamp."""
    return pd.Timestamp(int(ms), unit="ms", tz="UTC").isoformat()


@functools.lru_cache(maxsize=64)
def freq_hours(freq: str) -> float:
    """Hours in one bar of a pandas frequency string (``"1h"`` -> 1.0, ``"1min"`` -> 1/60, ``"1d"``
    -> 24.0; a day unit is read as ``D``, which pandas no longer accepts in lower case)."""
    if isinstance(freq, str) and freq[-1:] == "d" and freq[:-1].replace(".", "", 1).isdigit():
        freq = freq[:-1] + "D"
    return pd.Timedelta(freq).total_seconds() / 3600.0


def bar_hours(market: Any) -> float:
    """Bar length of a market in hours: from ``market.freq``, else the median index spacing.

    Raises :class:`~data.errors.ConfigError` when neither gives a length (one bar and an
    unreadable ``freq``).
    """
    try:
        return freq_hours(market.freq)
    except (ValueError, TypeError):
        if market.n_bars > 1:
            return float(np.median(np.diff(market.index) / pd.Timedelta(hours=1)))
        raise ConfigError(f"cannot read a bar length from market.freq={market.freq!r}") from None

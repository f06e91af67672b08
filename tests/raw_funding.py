"""An independent oracle of funding payments, read straight from freqtrade's files.

Built with pandas and pyarrow only: nothing of carry's ``data`` or ``backtest`` packages is
imported, so a test comparing a loaded :class:`~data.market.Market` (or an engine run) with it
checks the ingest, the catalog and the loader against the raw files, not against themselves.

Files read (freqtrade's layout)::

    <venue_dir>/futures/<BASE>_<QUOTE>_<QUOTE>-1h-funding_rate.feather   one row per settlement,
                                                                         the rate in ``open``
    <venue_dir>/futures/<BASE>_<QUOTE>_<QUOTE>-1h-mark.feather           mark-price bars
    <venue_dir>/futures/<BASE>_<QUOTE>_<QUOTE>-1h-futures.feather        perp bars (last price)

Settlement times
----------------
The stamps run late, never early. Binance, Bybit and OKX stamp the settlement instant, at most
milliseconds late (``00:00:00.017`` in Binance's older ``-8h-`` files): flooring to the minute
removes that and keeps any stamp that is genuinely off the hour visible, so a schedule that is
not on the hour would show up as a mismatch instead of being rounded into place.

Hyperliquid is the exception: besides millisecond offsets a few stamps are *minutes* late
(``2025-07-19 10:14:47.645`` is the 10:00 settlement: the one before is at 09:00:00.024, the one
after at 11:00:00.083, and Hyperliquid settles every hour on the hour). Floored to the minute
it would sit in the wrong hourly bar (paid to the position of 10:00-11:00 instead of
09:00-10:00) and no bar opens at 10:14 to price it, so Hyperliquid's stamps are floored to the
hour.

Price paid at
-------------
The open of the 1-hour mark bar opening at the settlement instant (the mark price at that
instant). A venue without mark files (Hyperliquid: it pays at its oracle price, which no file
holds) is priced at the open of its perp bar at that instant instead. NaN where no such bar
exists (e.g. Hyperliquid's funding history starts 16 months before its perp bars).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

__all__ = ["raw_settlements", "expected_funding", "HOUR_FLOORED_VENUES"]

#: Venues (the name of the venue directory) whose settlement stamps are floored to the hour
#: (minutes-late stamps); every other venue's are floored to the minute.
HOUR_FLOORED_VENUES = ("hyperliquid",)


def _times(path: Path) -> pd.Series:
    frame = pd.read_feather(path, columns=["date"])
    return pd.to_datetime(frame["date"], utc=True)


def _opens_at(path: Path, times: pd.Series) -> np.ndarray:
    """Open of the bar stamped exactly at each time (NaN where there is none)."""
    bars = pd.read_feather(path, columns=["date", "open"])
    opens = pd.Series(bars["open"].to_numpy(float), index=pd.to_datetime(bars["date"], utc=True).dt.as_unit("ns"))
    opens = opens[~opens.index.duplicated(keep="last")]
    return opens.reindex(pd.DatetimeIndex(times).as_unit("ns")).to_numpy(float)


def raw_settlements(venue_dir: Path, base: str, quote: str) -> pd.DataFrame:
    """Every funding settlement of ``BASE/QUOTE`` perps in a freqtrade venue directory.

    Parameters
    ----------
    venue_dir:
        A freqtrade exchange directory (``../shared/data/binance``); files under ``futures/``.
        Its name says the venue (``hyperliquid``: stamps floored to the hour, see the module
        docstring).
    base, quote:
        ``"BTC"``, ``"USDT"`` (Hyperliquid: ``"USDC"``).

    Returns
    -------
    DataFrame
        One row per settlement, sorted by time: ``time`` (UTC, floored as above), ``rate``
        (fraction per settlement interval, freqtrade's ``open``) and ``price`` (quote per coin
        the settlement is paid at: the mark open at ``time``, else the perp open; NaN if none).
    """
    venue_dir = Path(venue_dir)
    stem = venue_dir / "futures" / f"{base}_{quote}_{quote}-1h"
    raw = pd.read_feather(Path(f"{stem}-funding_rate.feather"), columns=["date", "open"])
    unit = "h" if venue_dir.name.lower() in HOUR_FLOORED_VENUES else "min"
    times = pd.to_datetime(raw["date"], utc=True).dt.floor(unit).dt.as_unit("ns")
    out = pd.DataFrame({"time": times, "rate": raw["open"].to_numpy(float)}).sort_values("time", kind="stable")
    if out["time"].duplicated().any():
        dup = out.loc[out["time"].duplicated(keep=False), "time"].iloc[0]
        raise ValueError(f"{stem}-funding_rate.feather: two settlements at {dup} after flooring to the {unit}")
    mark = Path(f"{stem}-mark.feather")
    priced_by = mark if mark.exists() else Path(f"{stem}-futures.feather")
    out["price"] = _opens_at(priced_by, out["time"])
    return out.reset_index(drop=True)


def expected_funding(settlements: pd.DataFrame, positions: pd.Series) -> pd.Series:
    """Funding received per settlement by a perp position.

    Parameters
    ----------
    settlements:
        :func:`raw_settlements` (``time``, ``rate``, ``price``).
    positions:
        Perp position in coins (positive long, negative short), indexed by hourly bar open
        (UTC): the position held during ``[open, open + 1h)``. Bars not in it hold nothing.

    Returns
    -------
    Series
        ``-position * price * rate`` (quote currency) per settlement, indexed by settlement time,
        named ``funding``. A settlement at instant ``t`` is paid to the position of the bar whose
        ``(open, open + 1h]`` holds ``t`` (a settlement on the hour goes to the bar that closes
        then: 08:00 to the 07:00 bar). Settlements paid to no position (zero or absent) are left out.
    """
    t = pd.DatetimeIndex(settlements["time"]).as_unit("ns")
    bar = t.ceil("h") - pd.Timedelta(hours=1)
    idx = pd.DatetimeIndex(positions.index)
    idx = (idx.tz_localize("UTC") if idx.tz is None else idx.tz_convert("UTC")).as_unit("ns")
    pos = pd.Series(positions.to_numpy(float), index=idx).reindex(bar).fillna(0.0).to_numpy()
    amount = -pos * settlements["price"].to_numpy(float) * settlements["rate"].to_numpy(float)
    held = pos != 0.0
    return pd.Series(amount[held], index=pd.DatetimeIndex(t[held], name="time"), name="funding")

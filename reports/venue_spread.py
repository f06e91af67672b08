"""Funding spreads between venues: the facts behind ``carry scan --venues``.

The same coin's perpetual pays different funding on different venues, often for weeks. This
module measures that spread from the catalog's funding settlements, per coin and pair of
venues, without any position: which venue paid more, by how much a year, for how long, and
what collecting it would have earned from funding alone, less the taker fees of opening and
closing a perp on each venue.

Days
----
Venues settle on different schedules (Binance, Bybit and OKX every 8 h, some symbols 4 h or
1 h; Hyperliquid every hour), so spreads are compared per UTC day: a venue's funding of day
``d`` is the sum of the rates it settled in ``(d 00:00, d+1 00:00]`` (a settlement at midnight
pays for the hours before it, as the loader books a settlement into the bar whose ``(open,
close]`` holds it), each a fraction of the position's notional. A day counts for a venue only
when its funding over the whole day is known (:func:`data.loader.funding_span` on daily bars:
inside the span the settlements cover and not in a hole); a pair's spread exists on the days
that count for both venues. Nothing is filled in: a day without funding data is not a day of
zero funding.

Spread and regimes
------------------
``spread = funding(B) - funding(A)`` per day (a fraction of notional per day): positive when B
paid more, so a trader long the perp on A and short it on B collected it. Annualized figures
are per 365-day year over the days the pair has. A *regime* is a maximal run of days of one
segment (consecutive days both venues have) over which the trailing mean spread (over
``window_days`` days of that segment) keeps one sign, lasting at least ``min_days``; shorter
flips merge into the regime before them. Each regime's trade is long the perp on the venue that
paid less and short it on the one that paid more (by the sign of the spread summed over the
regime); ``collected`` is what that trade received in funding per unit of notional on each leg,
``fees`` the taker fees of entering and leaving both legs (``2 * (fee_A + fee_B)``), ``net`` the
difference; ``basis`` the price PnL of the two legs from the first day's 00:00 UTC to the last
day's 24:00 UTC, the same coins long and short, per unit of the long leg's entry notional:
``((long_exit - long_entry) - (short_exit - short_entry)) / long_entry``, the perps' last prices
at the open of the first bar both venues have at or after each instant (within a day; NaN
without one); ``net = collected + basis - fees``.

What it leaves out: slippage, margin, liquidation and the transfers between venues. Those need
the engine to hold the two legs; these figures are what a trade would have had to earn them
against. Units: fractions of notional (0.0001 = 1 bp).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from data.catalog import Catalog, PartitionKey
from data.errors import ConfigError
from data.loader import funding_span
from data.schema import Kind, timeframe_minutes

#: Milliseconds in a UTC day.
DAY_MS = 86_400_000
#: Days in the year of the annualized figures.
DAYS_PER_YEAR = 365.0
#: A perp taker fee (fraction of notional): a constant, or the fee in force on a UTC day.
Fee = float | Callable[[pd.Timestamp], float]


def _fee_on(fee: Fee, day: pd.Timestamp) -> float:
    return float(fee(day)) if callable(fee) else float(fee)


@dataclass(frozen=True)
class VenueFunding:
    """One venue's funding settlements of one perp: times (int64 ms UTC, sorted), rates
    (fraction of notional per settlement interval) and intervals (hours, NaN: unknown)."""

    venue: str
    symbol: str
    times_ms: np.ndarray
    rates: np.ndarray
    hours: np.ndarray


@dataclass(frozen=True)
class DailyFunding:
    """A venue's funding per UTC day of ``days`` (fraction of notional per day) and whether the
    day's funding is known (``known``: inside the settlements' span and not in a hole)."""

    venue: str
    symbol: str
    days: pd.DatetimeIndex
    funding: np.ndarray
    known: np.ndarray


@dataclass(frozen=True)
class PairStats:
    """A coin's funding spread between venues ``a`` and ``b`` (``spread = funding(b) -
    funding(a)``) over the days both have (fractions; ``*_annualized`` per 365-day year)."""

    coin: str
    venue_a: str
    venue_b: str
    days: int
    first_day: str | None
    last_day: str | None
    funding_a_annualized: float
    funding_b_annualized: float
    spread_annualized: float
    share_days_b_higher: float
    longest_run_days: int
    longest_run_start: str | None
    longest_run_higher: str | None

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SpreadRegime:
    """A regime of one sign of a pair's spread and what collecting it earned (fractions of
    notional per leg; see the module docstring)."""

    coin: str
    venue_a: str
    venue_b: str
    short_venue: str
    long_venue: str
    start: str
    end: str
    days: int
    spread_annualized: float
    collected: float
    basis: float
    fees: float
    net: float

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PerpPrices:
    """A venue's perp last price at the open of each stored bar: ``times`` (int64 ms UTC, sorted)
    and ``opens`` (quote per coin), from the finest stored timeframe that divides a day."""

    venue: str
    symbol: str
    times: np.ndarray
    opens: np.ndarray


def read_perp_prices(catalog: Catalog, venue: str, symbol: str, start=None, end=None) -> PerpPrices:
    """The perp bar opens of ``symbol`` on ``venue`` in ``[start, end]`` (empty when the catalog
    has no perp bars of a timeframe dividing a day)."""
    minutes = {}
    for d in catalog.root.glob(f"venue={venue}/kind=perp/timeframe=*"):
        tf = d.name.split("=", 1)[1]
        try:
            minutes[tf] = timeframe_minutes(tf)
        except ConfigError:
            continue
    lo = None if start is None else np.datetime64(pd.Timestamp(start).tz_localize(None), "ms")
    hi = None if end is None else np.datetime64(pd.Timestamp(end).tz_localize(None), "ms") + np.timedelta64(1, "ms")
    for tf in sorted((tf for tf, m in minutes.items() if (24 * 60) % m == 0), key=minutes.__getitem__):
        key = PartitionKey(venue, Kind.PERP, symbol, tf)
        if catalog.files(key):
            t = catalog.read(key, lo, hi)
            times = t.column("time").cast("int64").to_numpy()
            order = np.argsort(times, kind="stable")
            opens = t.column("open").to_numpy(zero_copy_only=False).astype(np.float64)
            return PerpPrices(venue, symbol, times[order], opens[order])
    return PerpPrices(venue, symbol, np.empty(0, np.int64), np.empty(0))


def _basis(pa: PerpPrices, pb: PerpPrices, long_a: bool, t0: int, t1: int) -> float:
    """The price PnL of holding the same coins long on one venue and short on the other from the
    first instant at or after ``t0`` where both have a bar (before ``t1``) to the first such
    instant at or after ``t1`` (within a day), per unit of the long leg's entry notional; NaN
    when either instant is missing."""
    common, ia, ib = np.intersect1d(pa.times, pb.times, assume_unique=True, return_indices=True)
    e, x = np.searchsorted(common, [t0, t1])
    if e >= len(common) or common[e] >= t1 or x >= len(common) or common[x] >= t1 + DAY_MS:
        return float("nan")
    a0, a1, b0, b1 = pa.opens[ia[e]], pa.opens[ia[x]], pb.opens[ib[e]], pb.opens[ib[x]]
    (l0, l1), (s0, s1) = ((a0, a1), (b0, b1)) if long_a else ((b0, b1), (a0, a1))
    return float(((l1 - l0) - (s1 - s0)) / l0)


def read_venue_funding(catalog: Catalog, venue: str, symbol: str, start=None, end=None) -> VenueFunding:
    """The funding settlements of ``venue``'s ``symbol`` in ``[start, end)`` (all when None);
    ConfigError when the catalog has none (naming the venue, symbol and catalog)."""
    key = PartitionKey(venue, Kind.FUNDING, symbol)
    if not catalog.files(key):
        raise ConfigError(
            f"catalog {catalog.root} has no funding for {symbol} on venue {venue} "
            f"(ingest it, e.g. carry data ingest freqtrade DIR --venue {venue} --out {catalog.root})"
        )
    lo = None if start is None else np.datetime64(pd.Timestamp(start).tz_localize(None), "ms")
    hi = None if end is None else np.datetime64(pd.Timestamp(end).tz_localize(None), "ms")
    table = catalog.read(key, lo, hi)
    times = table.column("time").cast("int64").to_numpy()
    order = np.argsort(times, kind="stable")
    return VenueFunding(
        venue,
        symbol,
        times[order],
        table.column("rate").to_numpy(zero_copy_only=False).astype(np.float64)[order],
        table.column("interval_hours").to_numpy(zero_copy_only=False).astype(np.float64)[order],
    )


def day_grid(series: Sequence[VenueFunding], start=None, end=None) -> pd.DatetimeIndex:
    """UTC days from ``start`` (default: the first day any series covers) to ``end`` (exclusive;
    default: the day after the last settlement)."""
    firsts = [int(s.times_ms[0] - np.nan_to_num(s.hours[0], nan=0.0) * 3_600_000) for s in series if len(s.times_ms)]
    lasts = [int(s.times_ms[-1]) for s in series if len(s.times_ms)]
    if not firsts:
        raise ConfigError("no funding settlements in the selected window on any venue")
    lo = pd.Timestamp(start, tz="UTC") if start is not None else pd.Timestamp(min(firsts), unit="ms", tz="UTC")
    hi = pd.Timestamp(end, tz="UTC") if end is not None else pd.Timestamp(max(lasts), unit="ms", tz="UTC")
    return pd.date_range(lo.floor("D"), hi.ceil("D") - pd.Timedelta(days=1), freq="D", tz="UTC")


def daily_funding(s: VenueFunding, days: pd.DatetimeIndex) -> DailyFunding:
    """``s`` summed per UTC day of ``days`` (settlements in ``(d, d + 1 day]``), with the days
    whose funding is known (:func:`data.loader.funding_span` on daily bars)."""
    day_ms = days.as_unit("ms").asi8
    known, holes = funding_span(s.times_ms, s.hours, day_ms, DAY_MS)
    for lo, hi, _n in holes:  # a day touching a hole is not known
        known &= ~((day_ms + DAY_MS > lo) & (day_ms < hi))
    funding = np.zeros(len(days))
    if len(days) and len(s.times_ms):
        k = (s.times_ms - day_ms[0] - 1) // DAY_MS
        inside = (k >= 0) & (k < len(days))
        np.add.at(funding, k[inside], s.rates[inside])
    return DailyFunding(s.venue, s.symbol, days, funding, known)


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, end)`` of each run of True in ``flags``."""
    f = np.concatenate([[False], flags.astype(bool), [False]])
    d = np.diff(f.astype(np.int8))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def _day(days: pd.DatetimeIndex, i: int) -> str:
    return f"{days[i]:%Y-%m-%d}"


def pair_stats(coin: str, a: DailyFunding, b: DailyFunding) -> PairStats:
    """The spread ``b - a`` of one coin over the days both venues have (see :class:`PairStats`)."""
    both = a.known & b.known
    idx = np.flatnonzero(both)
    if not idx.size:
        nan = float("nan")
        return PairStats(coin, a.venue, b.venue, 0, None, None, nan, nan, nan, nan, 0, None, None)
    spread = b.funding - a.funding
    mean = float(spread[both].mean())
    sign = 1.0 if mean >= 0.0 else -1.0
    best, best_at = 0, None
    for s0, s1 in _runs(both & (sign * spread > 0.0)):
        if s1 - s0 > best:
            best, best_at = s1 - s0, s0
    return PairStats(
        coin,
        a.venue,
        b.venue,
        int(idx.size),
        _day(a.days, int(idx[0])),
        _day(a.days, int(idx[-1])),
        float(a.funding[both].mean() * DAYS_PER_YEAR),
        float(b.funding[both].mean() * DAYS_PER_YEAR),
        mean * DAYS_PER_YEAR,
        float((spread[both] > 0.0).mean()),
        best,
        None if best_at is None else _day(a.days, best_at),
        b.venue if sign > 0 else a.venue,
    )


def _segment_regimes(spread: np.ndarray, window: int, min_days: int) -> list[tuple[int, int]]:
    """``[start, end)`` runs (relative to the segment) of one sign of the trailing mean spread,
    shorter runs merged into the run before them (the first into the one after)."""
    n = len(spread)
    csum = np.concatenate([[0.0], np.cumsum(spread)])
    lo = np.maximum(np.arange(n) + 1 - window, 0)
    trailing = (csum[1:] - csum[lo]) / (np.arange(n) + 1 - lo)
    sign = np.where(trailing >= 0.0, 1, -1)
    cuts = [0, *(np.flatnonzero(np.diff(sign) != 0) + 1).tolist(), n]
    runs = [[cuts[k], cuts[k + 1]] for k in range(len(cuts) - 1)]
    merged: list[list[int]] = []
    for r in runs:
        if merged and (r[1] - r[0] < min_days or merged[-1][1] - merged[-1][0] < min_days):
            merged[-1][1] = r[1]
        else:
            merged.append(r)
    # a regime's sign is that of the spread summed over it: neighbours of one sign are one regime
    out: list[list[int]] = []
    for r in merged:
        if out and (spread[out[-1][0] : out[-1][1]].sum() >= 0.0) == (spread[r[0] : r[1]].sum() >= 0.0):
            out[-1][1] = r[1]
        else:
            out.append(r)
    return [(r0, r1) for r0, r1 in out if r1 - r0 >= min_days]


def spread_regimes(
    coin: str,
    a: DailyFunding,
    b: DailyFunding,
    fee_a: Fee,
    fee_b: Fee,
    window_days: int = 7,
    min_days: int = 14,
    prices: tuple[PerpPrices, PerpPrices] | None = None,
) -> list[SpreadRegime]:
    """The regimes of the spread ``b - a`` and what collecting each earned (module docstring);
    ``fee_a``/``fee_b``: each venue's perp taker fee (fraction of notional), the one in force on
    the regime's first day; ``prices``: both venues' perp prices at the day boundaries (for
    ``basis``; NaN without them)."""
    if window_days < 1 or min_days < 1:
        raise ConfigError(f"window_days and min_days must be at least 1, got {window_days} and {min_days}")
    spread = b.funding - a.funding
    out = []
    for s0, s1 in _runs(a.known & b.known):
        for r0, r1 in _segment_regimes(spread[s0:s1], window_days, min_days):
            i0, i1 = s0 + r0, s0 + r1
            fees = 2.0 * (_fee_on(fee_a, a.days[i0]) + _fee_on(fee_b, a.days[i0]))
            total = float(spread[i0:i1].sum())
            short, long_ = (b.venue, a.venue) if total >= 0.0 else (a.venue, b.venue)
            collected = abs(total)
            basis = float("nan")
            if prices is not None:
                t0 = int(a.days[i0].value // 1_000_000)
                basis = _basis(prices[0], prices[1], long_ == a.venue, t0, t0 + (i1 - i0) * DAY_MS)
            out.append(
                SpreadRegime(
                    coin,
                    a.venue,
                    b.venue,
                    short,
                    long_,
                    _day(a.days, i0),
                    _day(a.days, i1 - 1),
                    i1 - i0,
                    total / (i1 - i0) * DAYS_PER_YEAR,
                    collected,
                    basis,
                    fees,
                    collected + basis - fees,
                )
            )
    return out


def venue_spreads(
    catalog: Catalog,
    coins: Sequence[str],
    venues: Sequence[str],
    symbol_of: Mapping[str, Mapping[str, str]],
    taker_fee: Mapping[str, Fee],
    start=None,
    end=None,
    window_days: int = 7,
    min_days: int = 14,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per coin and pair of ``venues`` (in the order given: ``a`` before ``b``): the pair's
    statistics, its regimes, and every venue's daily funding.

    ``symbol_of[coin][venue]``: the venue's perp symbol for the coin (``BTCUSDC`` on a USDC
    venue); ``taker_fee[venue]``: its perp taker fee (fraction; or a function of the day, the
    regime's first day). A coin missing on a venue is
    an error naming both. Returns ``(stats, regimes, daily)`` frames."""
    if len(venues) < 2:
        raise ConfigError(f"--venues needs at least two venues to compare, got {list(venues)}")
    stats, regimes, daily = [], [], []
    for coin in coins:
        series = [read_venue_funding(catalog, v, symbol_of[coin][v], start, end) for v in venues]
        days = day_grid(series, start, end)
        per = [daily_funding(s, days) for s in series]
        perp = [
            read_perp_prices(catalog, v, symbol_of[coin][v], days[0], days[-1] + pd.Timedelta(days=2)) for v in venues
        ]
        for d in per:
            daily.append(
                pd.DataFrame(
                    {
                        "day": d.days,
                        "coin": coin,
                        "venue": d.venue,
                        "symbol": d.symbol,
                        "funding": d.funding,
                        "known": d.known,
                    }
                )
            )
        for i in range(len(per)):
            for k in range(i + 1, len(per)):
                a, b = per[i], per[k]
                stats.append(pair_stats(coin, a, b).as_dict())
                regimes += [
                    r.as_dict()
                    for r in spread_regimes(
                        coin,
                        a,
                        b,
                        taker_fee[a.venue],
                        taker_fee[b.venue],
                        window_days,
                        min_days,
                        (perp[i], perp[k]),
                    )
                ]
    return (
        pd.DataFrame(stats, columns=list(PairStats.__dataclass_fields__)),
        pd.DataFrame(regimes, columns=list(SpreadRegime.__dataclass_fields__)),
        pd.concat(daily, ignore_index=True) if daily else pd.DataFrame(),
    )


#: Columns :func:`engine_regimes` adds to the regimes table (fractions of the entry notional of
#: each leg, counts).
ENGINE_COLUMNS = ("engine_net", "engine_funding", "engine_fees", "engine_transfers", "engine_liquidations")


def engine_regimes(
    catalog: Catalog,
    regimes: pd.DataFrame,
    config=None,
    spread=None,
    freq: str = "1h",
) -> tuple[pd.DataFrame, list[str]]:
    """``regimes`` with what each regime's trade earned in the engine (:func:`backtest.spread.run_spread`):
    long the perp on ``long_venue`` and short it on ``short_venue`` from the open of the regime's
    first day to the open of the day after its last, each leg on its own venue with its fees,
    margin, funding at its own settlements, collateral transfers and liquidation. One column
    per regime, each with its own capital (``config.initial_capital_quote``), so a regime's
    figure is its own trade, entry and exit included. Figures are fractions of each leg's entry
    notional (``capital * L / 2``), as the funding-only columns: ``engine_net`` (equity change),
    ``engine_funding`` (both legs), ``engine_fees`` (trading and transfer fees, positive: a
    cost), and the counts ``engine_transfers`` and ``engine_liquidations``. A pair the catalog
    has no perp bars for gets NaN and a note. Returns ``(regimes with the columns, notes)``."""
    import warnings

    from backtest.config import BacktestConfig, SpreadConfig
    from backtest.spread import run_spread
    from backtest.targets import Targets
    from data.errors import CarryError
    from data.venue_pair import load_venue_pair

    config = config or BacktestConfig(perp_leverage=2.0)
    spread = spread or SpreadConfig()
    out = regimes.copy()
    for name in ENGINE_COLUMNS:
        out[name] = np.nan
    notes: list[str] = []
    notional = config.initial_capital_quote * config.perp_leverage / 2.0
    for (coin, va, vb), part in regimes.groupby(["coin", "venue_a", "venue_b"], sort=False):
        first = pd.Timestamp(part.start.min(), tz="UTC")
        last = pd.Timestamp(part.end.max(), tz="UTC") + pd.Timedelta(days=1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pair = load_venue_pair(catalog, coin, va, vb, first, last + pd.Timedelta(hours=2), freq)
        except CarryError as exc:
            notes.append(f"{coin} {va}/{vb}: no engine figures ({exc})")
            continue
        index = pair.leg_a.index
        x = np.full((len(index), len(part)), np.nan)
        for k, r in enumerate(part.itertuples()):
            i0 = int(index.searchsorted(pd.Timestamp(r.start, tz="UTC")))
            i1 = int(index.searchsorted(pd.Timestamp(r.end, tz="UTC") + pd.Timedelta(days=1)))
            # held through the regime (decided at each close before; a bar a leg cannot trade at
            # is flat, and the trade resumes after it), flat from the open of the day after it
            x[max(i0 - 1, 0) : max(i1 - 1, i0), k] = 1.0 if r.long_venue == va else -1.0
            x[min(max(i1 - 1, i0), len(index) - 1), k] = 0.0
        cols = np.arange(len(part), dtype=np.int64)
        tg = Targets(
            x, np.zeros(len(part), np.int64), cols, pd.DataFrame({"symbol": pair.leg_a.symbols[0], "group": cols})
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = run_spread(
                pair.leg_a, pair.leg_b, tg, config, spread, outputs=("equity",), quote_rates=pair.quote_rates
            )
        t = res.totals
        rows = part.index
        out.loc[rows, "engine_net"] = (t.final_equity.to_numpy() - res.initial_capital) / notional
        out.loc[rows, "engine_funding"] = t.funding.to_numpy() / notional
        out.loc[rows, "engine_fees"] = -(t.fees.to_numpy()) / notional
        out.loc[rows, "engine_transfers"] = t.transfers.to_numpy()
        out.loc[rows, "engine_liquidations"] = t.liquidations.to_numpy()
    return out, notes

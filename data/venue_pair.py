"""Two venues' perps of the same coins on one bar grid, for cross-venue funding trades.

:func:`load_venue_pair` loads a *perp-only* :class:`~data.market.Market` per venue
(:func:`data.loader.load_market` with ``spot=False``) for the same base coins, over one common
window, so that bar ``i``, coin ``j`` of one leg is bar ``i``, coin ``j`` of the other. Example::

    from data.venue_pair import load_venue_pair
    pair = load_venue_pair("data/catalog", "BTC,ETH", "binance", "hyperliquid")
    pair.leg_a.symbols, pair.leg_b.symbols   # ('BTCUSDT', 'ETHUSDT'), ('BTCUSDC', 'ETHUSDC')
    pair.flags                               # (..., 'usdc_usdt_parity')
    # funding received over each bar by 1 coin short on binance and 1 coin long on hyperliquid,
    # in quote currency (USDT and USDC taken 1:1):
    net = pair.leg_a.funding_value - pair.leg_b.funding_value
    net[~pair.tradable] = 0.0

Units are the legs' (:mod:`data.market`): prices in quote per coin, ``funding_value`` in quote
per coin of perp held per bar (a position of ``q`` coins receives ``-q * funding_value``),
``funding_rate`` a fraction per settlement interval (the venues' intervals may differ: 8 hours
on Binance, 1 hour on Hyperliquid; sums per bar are comparable, single rates are not).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from data.catalog import Catalog
from data.errors import ConfigError, DataError, check_choice, unknown_name
from data.loader import DataWarning, FundingGapPolicy, load_market, load_quote_rate
from data.market import Market
from data.schema import timeframe_minutes
from data.symbols import QUOTES, canonical_symbol, contract_multiplier, split_multiplier, split_symbol
from data.units import to_ms
from data.venues import known_venues, venue_rules

__all__ = ["VenuePair", "load_venue_pair", "PARITY_FLAG", "RATE_FLAG"]

#: ``VenuePair.flags`` when the legs are quoted in different currencies (USDT against USDC) and
#: no rate between them is used: amounts are taken 1:1.
PARITY_FLAG = "usdc_usdt_parity"
#: ``VenuePair.flags`` when a leg quoted in another currency is valued at the catalog's rate.
RATE_FLAG = "quote_rate"


@dataclass(frozen=True)
class VenuePair:
    """The perps of the same coins on two venues, on one bar grid.

    Attributes
    ----------
    leg_a, leg_b : Market
        Perp-only markets (``"perp_only"`` in their ``data_flags``: the ``spot_*`` arrays are NaN)
        of ``venues[0]`` and ``venues[1]``, with identical ``index`` and one column per coin in
        the order of ``coins`` (the venue's own symbol: ``BTCUSDT``, ``BTCUSDC``).
    coins : tuple of str
        Base coins, upper-case (``"BTC"``).
    venues : (str, str)
        The two venues, as asked.
    notes : tuple of str
        Every note of both loads, prefixed by the venue (``"hyperliquid: ..."``), then the pair's
        own (the window, quote parity).
    flags : tuple of str
        The legs' ``data_flags`` (``"perp_only"``, ``"oracle_price_stand_in"``,
        ``"funding_gap_zero"``), then, when the venues' quote currencies differ, :data:`RATE_FLAG`
        (a leg valued at the catalog's rate, :attr:`quote_rates`) or :data:`PARITY_FLAG` (no rate:
        amounts in USDT and USDC are added 1:1).
    quote_rates : dict
        ``{"A" | "B": DataFrame}``: for the leg quoted in another currency than the account's
        (USDT), that currency's rate in the account currency at each bar's open and close
        (columns ``open``, ``close``; :func:`data.loader.load_quote_rate`); empty when both legs
        share a quote or no rate is used. Pass it to :func:`backtest.spread.run_spread`.
    account_currency : str
        The currency every figure of a spread run over the pair is in: USDT when a leg is quoted
        in it, else leg A's quote.
    """

    leg_a: Market
    leg_b: Market
    coins: tuple[str, ...]
    venues: tuple[str, str]
    notes: tuple[str, ...]
    flags: tuple[str, ...]
    quote_rates: dict = field(default_factory=dict)
    account_currency: str = "USDT"

    @property
    def index(self) -> pd.DatetimeIndex:
        """Bar open times (UTC), common to both legs."""
        return self.leg_a.index

    @property
    def tradable(self) -> np.ndarray:
        """(T, N) bool: both legs tradable (a position may be held on each venue over the bar)."""
        return self.leg_a.tradable & self.leg_b.tradable

    def __repr__(self) -> str:
        m = self.leg_a
        span = f"{m.index[0]} .. {m.index[-1]}" if m.n_bars else "empty"
        return (
            f"VenuePair({self.venues[0]} x {self.venues[1]}, {m.n_bars} bars x {len(self.coins)} coins, "
            f"freq={m.freq}, {span}, coins={list(self.coins)})"
        )


def _coins(coins: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(coins, str):
        coins = coins.split(",")
    if not isinstance(coins, Sequence) or any(not isinstance(c, str) for c in coins):
        raise ConfigError(f"coins must be base coins such as 'BTC' or 'BTC,ETH', got {coins!r}")
    out = tuple(canonical_symbol(c) for c in coins if c.strip())
    if not out:
        raise ConfigError("no coins requested (coins= e.g. 'BTC,ETH')")
    if len(set(out)) != len(out):
        raise ConfigError(f"a coin is asked for twice: {', '.join(out)}")
    return out


def _stored_perps(catalog: Catalog, venue: str) -> list[str]:
    """The perp symbols the catalog stores for ``venue`` (any timeframe)."""
    return sorted({d.name.split("=", 1)[1] for d in catalog.root.glob(f"venue={venue}/kind=perp/timeframe=*/symbol=*")})


def _coin_of(symbol: str, spots: set[str]) -> tuple[str, str, str] | None:
    """``(base, coin, quote)`` of a stored perp symbol (``1000PEPEUSDT`` -> ``1000PEPE, PEPE,
    USDT``); None for a symbol that does not split."""
    try:
        base, quote = split_symbol(symbol)
    except ConfigError:
        return None
    coin = base if contract_multiplier(symbol, spots) == 1 else split_multiplier(base)[0]
    return base, coin, quote


def _preferred_quote(venue: str) -> str | None:
    """The venue's quote currency from its rules file (``data/venues``); None without one."""
    return venue_rules(venue).quote if venue in known_venues() else None


def _symbol_for(catalog: Catalog, venue: str, coin: str) -> str:
    """The perp ``venue`` stores for ``coin``: of the stored perps whose base is the coin (or the
    coin with a contract multiplier), the one in the venue's quote currency, else the first in
    :data:`data.symbols.QUOTES` order."""
    spots = {d.name.split("=", 1)[1] for d in catalog.root.glob(f"venue={venue}/kind=spot/timeframe=*/symbol=*")}
    stored = _stored_perps(catalog, venue)
    want = split_multiplier(coin)[0]
    found = []
    for sym in stored:
        parts = _coin_of(sym, spots)
        if parts is not None and (parts[0] == coin or parts[1] == want):
            found.append((sym, parts))
    if not found:
        have = sorted({f"{p[1]} ({s})" for s in stored if (p := _coin_of(s, spots)) is not None})
        raise DataError(
            f"catalog {catalog.root}: coin {coin} has no perp on venue {venue}; {venue} stores perps of "
            f"{', '.join(have) or 'no coin'}"
        )
    quote = _preferred_quote(venue)
    rank = {q: i for i, q in enumerate(QUOTES)}
    found.sort(key=lambda f: (f[1][2] != quote, f[1][0] != coin, rank.get(f[1][2], len(rank)), f[0]))
    return found[0][0]


def _span(market: Market) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First tradable bar's open and last tradable bar's close (any coin)."""
    rows = np.flatnonzero(market.tradable.any(axis=1))
    step = pd.Timedelta(minutes=timeframe_minutes(market.freq))
    if not rows.size:  # load_market raises before this; kept for completeness
        return market.index[0], market.index[0]
    return market.index[rows[0]], market.index[rows[-1]] + step


def _fmt(t: pd.Timestamp) -> str:
    return f"{t:%Y-%m-%d %H:%M}"


def load_venue_pair(
    catalog: Catalog | str,
    coins: str | Sequence[str],
    venue_a: str,
    venue_b: str,
    start=None,
    end=None,
    freq: str = "1h",
    *,
    funding_gaps: FundingGapPolicy | str = FundingGapPolicy.ERROR,
    leg_a: str = "perp",
    quote_rate: str = "auto",
) -> VenuePair:
    """Load the perps of ``coins`` on two venues onto one common bar grid.

    Parameters
    ----------
    catalog:
        A :class:`~data.catalog.Catalog` or its root directory, holding both venues.
    coins:
        Base coins: ``"BTC"``, ``"BTC,ETH"`` or ``["BTC", "ETH"]`` (Hyperliquid's ``"kPEPE"``
        reads as ``"1000PEPE"``; ``"PEPE"`` finds a ``1000PEPE`` perp too). Each venue's symbol
        for a coin is what the catalog stores for that venue: a perp of that base in the venue's
        quote currency (``quote`` of its rules file in ``data/venues``: ``BTCUSDT`` on Binance,
        Bybit and OKX, ``BTCUSDC`` on Hyperliquid), else any stored perp of that base.
    venue_a, venue_b:
        The two venues (different ones), as stored in the catalog.
    start, end:
        Optional UTC bounds (anything :class:`pandas.Timestamp` accepts; naive = UTC); bars in
        ``[start, end)``. Where one is not given, the window begins (ends) where both venues'
        tradable spans for these coins do: the intersection of the spans of the two
        :func:`~data.loader.load_market` defaults (each venue's span is the union over its coins,
        as there; a coin tradable on one venue only is not tradable in :attr:`VenuePair.tradable`).
    freq:
        Bar length (``"1h"``, ``"4h"``, ``"1d"``); funding is placed and summed per bar as in
        :func:`~data.loader.load_market`.
    funding_gaps:
        Policy for holes in a venue's funding (``"error"``, ``"no_trade"``, ``"zero"``), applied to
        both legs (see :func:`~data.loader.load_market`).
    leg_a:
        ``"perp"`` (default) or ``"spot"``: venue A's market with its spot prices too
        (``load_market(spot=True)``: tradable where its spot, perp, mark and funding all are), for
        a spot leg on venue A against the perp on venue B.
    quote_rate:
        When the venues' quotes differ (USDT against USDC): ``"auto"`` (default) values the leg
        quoted in USDC at the catalog's ``USDCUSDT`` spot bars (:func:`data.loader.load_quote_rate`;
        searched on venue A, venue B, Binance, then the others), or takes the quotes 1:1 where
        the catalog holds none (flag :data:`PARITY_FLAG`, said in a note); ``"parity"`` takes
        them 1:1 without looking.

    Returns
    -------
    VenuePair
        ``leg_a``/``leg_b``: perp-only markets with identical ``index`` and coins in the same
        order. Prices in each venue's quote currency per coin, ``funding_value`` in quote per coin
        held per bar (a position of ``q`` coins receives ``-q * funding_value``). When the quote
        currencies differ (USDT against USDC), ``flags`` holds ``"usdc_usdt_parity"`` and a note
        says that amounts are taken 1:1. Each leg's notes are in ``notes`` prefixed by its venue
        (each is also issued as a :class:`~data.loader.DataWarning`, as ``load_market`` does).

    Raises
    ------
    DataError
        A coin without a perp on a venue (naming the coin, the venue and the coins that venue
        stores); two venues' spans that do not overlap (naming both spans); anything
        :func:`~data.loader.load_market` refuses.
    ConfigError
        The same venue twice, no coins, a coin twice; an unknown venue
        (:class:`~data.errors.UnknownNameError`, naming the catalog's venues).
    """
    catalog = catalog if isinstance(catalog, Catalog) else Catalog(catalog)
    if not catalog.root.is_dir():
        raise DataError(f"catalog {catalog.root} does not exist; ingest data first (carry data ingest ...)")
    names = _coins(coins)
    venues = (venue_a, venue_b)
    if venue_a == venue_b:
        raise ConfigError(f"a venue pair needs two different venues, got {venue_a!r} twice")
    stored = sorted(d.name.split("=", 1)[1] for d in catalog.root.glob("venue=*") if d.is_dir())
    for v in venues:
        if v not in stored:
            raise unknown_name("venue", v, stored, f" in catalog {catalog.root}")
    start_ms, end_ms = to_ms(start, "start"), to_ms(end, "end")
    symbols = {v: [_symbol_for(catalog, v, c) for c in names] for v in venues}

    check_choice("leg_a", leg_a, ("perp", "spot"))
    check_choice("quote_rate", quote_rate, ("auto", "parity"))
    spot_a = leg_a == "spot"

    def load(v: str, lo, hi) -> Market:
        with_spot = spot_a and v == venue_a
        return load_market(catalog, symbols[v], lo, hi, freq, v, funding_gaps=funding_gaps, spot=with_spot)

    pair_notes: list[str] = []
    if start_ms is None or end_ms is None:
        with warnings.catch_warnings():  # the spans only: the final loads warn
            warnings.simplefilter("ignore", DataWarning)
            spans = {v: _span(load(v, start, end)) for v in venues}
        lo = pd.Timestamp(start_ms, unit="ms", tz="UTC") if start_ms is not None else max(s[0] for s in spans.values())
        hi = pd.Timestamp(end_ms, unit="ms", tz="UTC") if end_ms is not None else min(s[1] for s in spans.values())
        told = "; ".join(f"{v} {_fmt(spans[v][0])} .. {_fmt(spans[v][1])}" for v in venues)
        if lo >= hi:
            raise DataError(
                f"catalog {catalog.root}: the tradable spans of {', '.join(names)} on {venue_a} and {venue_b} "
                f"do not overlap ({told} UTC"
                + (f", asked from {_fmt(lo)}" if start_ms is not None else "")
                + (f", asked to {_fmt(hi)}" if end_ms is not None else "")
                + "); choose other venues, coins or start/end"
            )
        pair_notes.append(
            f"window {_fmt(lo)} to {_fmt(hi)} UTC: where both venues' tradable spans of {', '.join(names)} "
            f"overlap ({told} UTC)"
        )
        start, end = lo, hi
    market_a, market_b = load(venue_a, start, end), load(venue_b, start, end)
    assert market_a.index.equals(market_b.index), "the legs' bar grids differ"
    assert market_a.perp_symbols == tuple(symbols[venue_a]) and market_b.perp_symbols == tuple(symbols[venue_b]), (
        "the legs' coins are not in the order asked"
    )

    flags = list(dict.fromkeys((*market_a.data_flags, *market_b.data_flags)))
    differ = [
        (c, a, b)
        for c, a, b in zip(names, symbols[venue_a], symbols[venue_b])
        if split_symbol(a)[1] != split_symbol(b)[1]
    ]
    rates: dict = {}
    quotes = [{split_symbol(x)[1] for x in symbols[v]} for v in venues]
    account = "USDT" if "USDT" in quotes[0] | quotes[1] else next(iter(quotes[0]))
    if differ:
        said = ", ".join(f"{c}: {venue_a} {a}, {venue_b} {b}" for c, a, b in differ)
        found = None
        # one other quote on one leg (every coin of the leg quoted in it): its rate, if stored
        legs = [k for k, q in enumerate(quotes) if q != {account}]
        if quote_rate == "auto" and len(legs) == 1 and len(quotes[legs[0]]) == 1 and quotes[1 - legs[0]] == {account}:
            other = next(iter(quotes[legs[0]]))
            stored = sorted(d.name.split("=", 1)[1] for d in catalog.root.glob("venue=*") if d.is_dir())
            order = list(dict.fromkeys([venue_a, venue_b, "binance", *stored]))
            found = load_quote_rate(catalog, f"{other}{account}", market_a.index, [v for v in order if v in stored])
        if found is not None:
            table, _where, text = found
            rates["AB"[legs[0]]] = table
            flags.append(RATE_FLAG)
            pair_notes.append(
                f"quote currencies differ ({said}): leg {'AB'[legs[0]]} ({venues[legs[0]]}) is valued in {account} at "
                f"the {text} ({RATE_FLAG})"
            )
        else:
            flags.append(PARITY_FLAG)
            why = (
                "quote_rate='parity'"
                if quote_rate == "parity"
                else f"the catalog holds no {'/'.join(sorted(quotes[0] ^ quotes[1]))} spot series to value them: "
                "fetch one, e.g. carry data fetch ccxt --exchange okx --symbols USDCUSDT --kinds spot"
            )
            pair_notes.append(
                f"quote currencies differ ({said}): amounts in the two quote currencies are taken 1:1 "
                f"({PARITY_FLAG}; {why})"
            )
    for text in pair_notes:
        warnings.warn(text, DataWarning, stacklevel=2)
    notes = (
        *(f"{venue_a}: {n}" for n in market_a.notes),
        *(f"{venue_b}: {n}" for n in market_b.notes),
        *pair_notes,
    )
    return VenuePair(market_a, market_b, names, venues, tuple(notes), tuple(flags), rates, account)

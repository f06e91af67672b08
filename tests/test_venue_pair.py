"""Perp-only markets (``load_market(..., spot=False)``) and two-venue pairs (data.venue_pair) on
the real Binance, Bybit, Hyperliquid and OKX files of ../shared/data.

Funding is checked against :mod:`tests.raw_funding`, which reads the freqtrade files directly
(pandas only): every bar's ``funding_value`` of every leg equals the settlements' rate x price
recomputed from the raw files, and a few settlements are checked by hand.
"""

from __future__ import annotations

import functools
import warnings

import numpy as np
import pandas as pd
import pytest

from data.catalog import Catalog
from data.errors import DataError
from data.loader import DataWarning, load_market
from data.market import PRICE_FIELDS
from data.venue_pair import PARITY_FLAG, VenuePair, load_venue_pair
from tests.conftest import shared_data_path
from tests.raw_funding import expected_funding, raw_settlements

pytestmark = pytest.mark.shared_data

H = pd.Timedelta(hours=1)
#: what the session catalog holds per venue (ingesting only these keeps the file fast)
INGEST = {
    "binance": ["BTCUSDT", "ETHUSDT"],
    "bybit": ["BTCUSDT", "ETHUSDT", "SOLUSDT"],
    "hyperliquid": ["BTCUSDC", "ETHUSDC"],
    "okx": ["BTCUSDT", "ETHUSDT"],
}
QUOTE = {"binance": "USDT", "bybit": "USDT", "okx": "USDT", "hyperliquid": "USDC"}


@pytest.fixture(scope="session")
def venues_catalog(tmp_path_factory) -> Catalog:
    from data.ingest.freqtrade import ingest_freqtrade

    sources = {v: shared_data_path(v, "futures") for v in INGEST}
    cat = Catalog(tmp_path_factory.mktemp("venue_pair") / "catalog")
    for venue, symbols in INGEST.items():
        ingest_freqtrade(sources[venue].parent, cat, venue=venue, symbols=symbols)
    return cat


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return fn(*args, **kw)


@functools.cache
def _settlements(venue: str, coin: str) -> pd.DataFrame:
    return raw_settlements(shared_data_path(venue), coin, QUOTE[venue])


def _t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


# --------------------------------------------------------------------------- the oracle by hand
def test_raw_settlements_and_expected_funding_by_hand():
    btc = _settlements("binance", "BTC").set_index("time")
    assert btc.loc[_t("2025-01-01 00:00"), "rate"] == 0.0001
    assert btc.loc[_t("2025-01-01 00:00"), "price"] == 93549.66175177  # the 1h mark bar's open at 00:00
    eth = _settlements("bybit", "ETH").set_index("time")
    assert (eth.loc[_t("2025-03-01 08:00"), "rate"], eth.loc[_t("2025-03-01 08:00"), "price"]) == (6.794e-05, 2228.05)
    okx = _settlements("okx", "BTC").set_index("time")
    assert okx.loc[_t("2025-11-01 16:00"), "price"] == 110243.7
    # Hyperliquid stamped its 10:00 settlement at 10:14:47.645: floored to the hour, priced at
    # the perp's 10:00 open (no mark files), one settlement per hour and none lost
    hl = _settlements("hyperliquid", "BTC")
    assert hl["time"].is_unique and (hl["time"] == hl["time"].dt.floor("h")).all()
    one = hl.set_index("time").loc[_t("2025-07-19 09:00") : _t("2025-07-19 12:00")]
    assert one["rate"].tolist() == [1.25e-05] * 4
    assert one["price"].tolist()[1:] == [118233.0, 118441.0, 118336.0]
    # funding history before the first perp bar: unpriced, not invented
    assert np.isnan(hl.set_index("time").loc[_t("2023-05-23 08:00"), "price"])

    # 2 coins long over 09:00-10:00 receives the 10:00 settlement; nothing held over 10:00-11:00;
    # 1 short over 11:00-12:00 receives the 12:00 one: -q * price * rate
    pos = pd.Series([2.0, 0.0, -1.0], index=pd.date_range("2025-07-19 09:00", periods=3, freq="h", tz="UTC"))
    got = expected_funding(hl, pos)
    assert got.index.tolist() == [_t("2025-07-19 10:00"), _t("2025-07-19 12:00")]
    np.testing.assert_allclose(got.to_numpy(), [-2 * 118233.0 * 1.25e-05, 118336.0 * 1.25e-05], rtol=1e-15)
    # 8-hourly: the 00:00 settlement is paid to the 23:00 bar of the day before, not to 00:00's
    pos = pd.Series([-0.5, 3.0], index=pd.DatetimeIndex(["2024-12-31 23:00", "2025-01-01 00:00"], tz="UTC"))
    got = expected_funding(_settlements("binance", "BTC"), pos)
    assert got.index.tolist() == [_t("2025-01-01 00:00")]
    assert got.iloc[0] == pytest.approx(0.5 * 93549.66175177 * 0.0001, rel=1e-15)


# --------------------------------------------------------------------------- perp-only markets
def test_bybit_has_no_spot_but_loads_perp_only(venues_catalog):
    with pytest.raises(DataError, match="no spot bars for BTCUSDT"):
        _quiet(load_market, venues_catalog, "BTCUSDT", venue="bybit")
    m = _quiet(load_market, venues_catalog, "BTCUSDT", venue="bybit", spot=False)
    assert m.symbols == ("BTCUSDT",) and m.perp_symbols == ("BTCUSDT",) and m.venue == "bybit"
    assert m.data_flags == ("perp_only",)
    for f in PRICE_FIELDS:
        if f.startswith("spot_"):
            assert np.isnan(getattr(m, f)).all(), f
    np.testing.assert_array_equal(m.valid, np.isfinite(m.perp_close) & np.isfinite(m.mark_close))
    # the tradable span: from the first settlement's interval (08:00 - 8h) to the last perp bar's
    # funding (2026-02-08 00:00); the perp bars from 2023-11-29 have no funding before it
    assert (m.index[0], m.index[-1] + H, m.n_bars) == (_t("2023-12-18 00:00"), _t("2026-02-08 00:00"), 18792)
    assert m.tradable.all() and m.valid.all() and not m.mark_fallback.any()
    raw = pd.read_feather(shared_data_path("bybit", "futures", "BTC_USDT_USDT-1h-futures.feather"))
    raw = raw.set_index(pd.to_datetime(raw["date"], utc=True).dt.as_unit("ns"))["close"]
    np.testing.assert_array_equal(m.perp_close[:, 0], raw.reindex(m.index).to_numpy())
    # a mistyped symbol names the venue's perps, not its (absent) spot pairs
    with pytest.raises(DataError, match=r"no perp bars for BTCUSD.*available perp symbols: BTCUSDT, ETHUSDT, SOLUSDT"):
        _quiet(load_market, venues_catalog, "BTCUSD", venue="bybit", spot=False)


def test_hyperliquid_usdc_perp_only_and_binance_same_as_with_spot(venues_catalog):
    hl = _quiet(load_market, venues_catalog, "BTCUSDC,ETHUSDC", venue="hyperliquid", spot=False)
    assert hl.symbols == ("BTCUSDC", "ETHUSDC")
    assert hl.data_flags == ("perp_only", "oracle_price_stand_in")
    assert hl.mark_fallback.all()  # no mark files: the perp stands in
    assert (hl.index[0], hl.index[-1] + H) == (
        _t("2024-09-04 11:00"),
        _t("2025-07-26 03:00"),
    )  # (the 04:00 settlement is not in the files)
    # where spot exists everywhere, spot=False changes the spot arrays, valid and the flag only
    window = ("2024-09-04", "2025-07-26")
    with_spot = _quiet(load_market, venues_catalog, "BTCUSDT,ETHUSDT", *window)
    perp_only = _quiet(load_market, venues_catalog, "BTCUSDT,ETHUSDT", *window, spot=False)
    assert with_spot.index.equals(perp_only.index) and with_spot.valid.all() and perp_only.valid.all()
    for f in (*PRICE_FIELDS[5:], "funding_rate", "funding_value", "funding_count", "funding_time_ms", "tradable"):
        np.testing.assert_array_equal(getattr(perp_only, f), getattr(with_spot, f), err_msg=f)
    assert with_spot.data_flags == () and perp_only.data_flags == ("perp_only",)


# --------------------------------------------------------------------------- venue pairs
PAIRS = [
    # (venue_a, venue_b, start, end, first bar, end of the last bar, bars)
    ("binance", "bybit", "2024-09-04", "2025-07-26", "2024-09-04 00:00", "2025-07-26 00:00", 7800),
    ("binance", "hyperliquid", None, None, "2024-09-04 11:00", "2025-07-26 03:00", 7792),
    ("bybit", "hyperliquid", None, None, "2024-09-04 11:00", "2025-07-26 03:00", 7792),
    ("hyperliquid", "binance", "2024-09-04", "2025-07-26", "2024-09-04 00:00", "2025-07-26 00:00", 7800),
    ("binance", "okx", None, None, "2025-10-06 00:00", "2026-01-09 00:00", 2280),
    ("bybit", "okx", None, None, "2025-10-06 00:00", "2026-01-09 00:00", 2280),
    ("binance", "bybit", "2025-10-06", "2026-01-09", "2025-10-06 00:00", "2026-01-09 00:00", 2280),
]


def _check_leg_funding(pair: VenuePair, leg: int) -> int:
    """Every bar's funding of one leg, for 1 coin long held every bar, against the raw files."""
    market = (pair.leg_a, pair.leg_b)[leg]
    venue = pair.venues[leg]
    checked = 0
    for j, coin in enumerate(pair.coins):
        paid = expected_funding(_settlements(venue, coin), pd.Series(1.0, index=market.index))
        bar = paid.index.ceil("h") - H
        # a settlement without a price (Hyperliquid's before its first perp bar) falls in a bar
        # that cannot be traded; the loader leaves it out, and so does the comparison
        unpriced = ~np.isfinite(paid.to_numpy())
        assert not market.tradable[market.index.get_indexer(bar[unpriced]), j].any(), f"{venue} {coin}"
        paid, bar = paid[~unpriced], bar[~unpriced]
        want = paid.groupby(bar).sum()
        count = paid.groupby(bar).size()
        has = market.funding_count[:, j] > 0
        where = market.index[has]
        assert where.equals(pd.DatetimeIndex(want.index)), f"{venue} {coin}: bars with funding differ"
        np.testing.assert_array_equal(market.funding_count[has, j], count.to_numpy())
        np.testing.assert_allclose(-market.funding_value[has, j], want.to_numpy(), rtol=1e-9, atol=0, err_msg=venue)
        assert (market.funding_value[market.funding_count[:, j] == 0, j] == 0).all()
        checked += int(count.sum())
    return checked


@pytest.mark.parametrize(
    ("a", "b", "start", "end", "first", "last", "bars"), PAIRS, ids=[f"{p[0]}-{p[1]}-{p[4][:7]}" for p in PAIRS]
)
def test_pairs_on_a_common_index_with_funding_as_the_raw_files(venues_catalog, a, b, start, end, first, last, bars):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pair = load_venue_pair(venues_catalog, "BTC, eth", a, b, start, end)
    assert pair.venues == (a, b) and pair.coins == ("BTC", "ETH")
    assert pair.leg_a.index.equals(pair.leg_b.index) and pair.index.equals(pair.leg_a.index)
    assert (pair.index[0], pair.index[-1] + H, len(pair.index)) == (_t(first), _t(last), bars)
    for leg, venue in zip((pair.leg_a, pair.leg_b), (a, b)):
        assert leg.venue == venue and leg.symbols == (f"BTC{QUOTE[venue]}", f"ETH{QUOTE[venue]}")
        assert "perp_only" in leg.data_flags
    parity = QUOTE[a] != QUOTE[b]
    assert (PARITY_FLAG in pair.flags) == parity
    assert any("taken 1:1" in n for n in pair.notes) == parity
    assert any(PARITY_FLAG in str(w.message) for w in caught) == parity
    assert ("oracle_price_stand_in" in pair.flags) == ("hyperliquid" in (a, b))
    legs_notes = len(pair.leg_a.notes) + len(pair.leg_b.notes)
    assert all(n.startswith(f"{a}: ") for n in pair.notes[: len(pair.leg_a.notes)])
    assert all(n.startswith(f"{b}: ") for n in pair.notes[len(pair.leg_a.notes) : legs_notes])
    if start is None:
        assert pair.notes[legs_notes].startswith(f"window {first} to {last} UTC")
    assert pair.tradable.shape == (bars, 2)
    np.testing.assert_array_equal(pair.tradable, pair.leg_a.tradable & pair.leg_b.tradable)
    assert pair.tradable.mean() > 0.99
    n = _check_leg_funding(pair, 0) + _check_leg_funding(pair, 1)
    assert n > 2 * 2 * bars // 8 - 8  # at least every 8 hours on each leg and coin


def test_hand_values_in_a_pair(venues_catalog):
    pair = _quiet(load_venue_pair, venues_catalog, ["BTC"], "binance", "hyperliquid", "2025-07-19", "2025-07-20")
    i = pair.index.get_loc(_t("2025-07-19 09:00"))  # the 10:00 settlement (stamped 10:14:47.645)
    assert pair.leg_b.funding_value[i, 0] == pytest.approx(118233.0 * 1.25e-05, rel=1e-15)
    assert pair.leg_b.funding_count[i, 0] == 1
    assert pair.leg_b.funding_time_ms[i, 0] == _t("2025-07-19 10:00").value // 1_000_000
    assert pair.leg_a.funding_count[:, 0].sum() == 3 and pair.leg_b.funding_count[:, 0].sum() == 24


# --------------------------------------------------------------------------- refusals
def test_a_coin_missing_on_a_venue_names_the_coin_the_venue_and_what_it_stores(venues_catalog):
    for a, b in (("bybit", "binance"), ("binance", "bybit")):
        with pytest.raises(
            DataError, match=r"coin SOL has no perp on venue binance; binance stores perps of BTC \(BTCUSDT\), ETH"
        ):
            _quiet(load_venue_pair, venues_catalog, "BTC,SOL", a, b)
    with pytest.raises(
        DataError, match=r"coin DOGE has no perp on venue hyperliquid; .*BTC \(BTCUSDC\), ETH \(ETHUSDC\)"
    ):
        _quiet(load_venue_pair, venues_catalog, "DOGE", "hyperliquid", "okx")


def test_disjoint_windows_name_both_spans(venues_catalog):
    with pytest.raises(DataError) as err:
        _quiet(load_venue_pair, venues_catalog, "BTC,ETH", "hyperliquid", "okx")
    text = str(err.value)
    assert "do not overlap" in text
    assert (
        "hyperliquid 2024-09-04 11:00 .. 2025-07-26 03:00" in text
        and "okx 2025-10-06 00:00 .. 2026-01-09 00:00" in text
    )
    # an explicit window outside one venue's data is the loader's refusal, naming that venue's series
    with pytest.raises(DataError, match="no tradable bar"):
        _quiet(load_venue_pair, venues_catalog, "BTC", "hyperliquid", "okx", "2025-11-01", "2025-12-01")


def test_the_same_venue_twice_is_refused(tmp_path):
    from data.errors import ConfigError

    with pytest.raises(ConfigError, match="two different venues"):
        load_venue_pair(tmp_path, "BTC", "okx", "okx")
    with pytest.raises(ConfigError, match="a coin is asked for twice"):
        load_venue_pair(tmp_path, "btc,BTC", "okx", "binance")

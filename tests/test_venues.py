"""Venue rules as data (``data/venues/*.toml`` through :mod:`data.venues`).

* Every shipped file loads; its periods are ordered, do not overlap and (for settlement, formula,
  fees and the venue-wide maintenance) follow on without gaps; every value has a source.
* Lookups pick the right period at its boundaries; a time no period covers is an error naming
  the file.
* A damaged copy of a file (tmp_path) is refused with one line naming the file and the key.
* Figures agree with what carry already assumes (Binance defaults of ``BacktestConfig``) and
  with the real data in ``../shared/data``: the default interval is the most common spacing of
  one real funding file, and no real settlement exceeds a known cap.
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from backtest.config import DEFAULT_MAINTENANCE_MARGIN_RATE, BacktestConfig
from data.errors import CarryError, ConfigError, DataError, UnknownNameError
from data.venues import VENUES_DIR, known_venues, venue_rules
from tests.conftest import shared_data_path

VENUES = ("binance", "bybit", "hyperliquid", "okx")
TABLES = ("settlement", "funding_formula", "funding_cap", "fees", "maintenance")
CONTIGUOUS = ("settlement", "funding_formula", "fees", "maintenance")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


# --------------------------------------------------------------------------- the shipped files
def test_every_shipped_venue_file_loads():
    assert known_venues() == VENUES
    for venue in VENUES:
        rules = venue_rules(venue)
        assert rules.venue == venue and rules.path == VENUES_DIR / f"{venue}.toml"
        assert rules.quote == ("USDC" if venue == "hyperliquid" else "USDT")
        assert set(rules.markets) == {"spot", "perp"}
        assert rules.settlement and rules.funding_formula and rules.fees and rules.maintenance
        assert rules.funding_price_source and rules.tiers_note
        for table in TABLES:
            for row in getattr(rules, table):
                assert row.source.strip(), f"{venue} {table}: a row without its source"
                assert row.valid_from.tzinfo is UTC
        assert venue_rules(venue) is rules  # read once, immutable


@pytest.mark.parametrize("venue", VENUES)
def test_periods_are_ordered_without_overlap_or_gaps(venue):
    rules = venue_rules(venue)
    for table in TABLES:
        rows = getattr(rules, table)
        for sym in {getattr(r, "symbol", None) for r in rows}:
            group = [r for r in rows if getattr(r, "symbol", None) == sym]
            for prev, cur in zip(group, group[1:]):
                assert prev.valid_to is not None and prev.valid_from < prev.valid_to <= cur.valid_from, (
                    f"{venue} {table} {sym}: {prev.valid_from}..{prev.valid_to} then {cur.valid_from}"
                )
                if table in CONTIGUOUS and sym is None:
                    assert prev.valid_to == cur.valid_from, f"{venue} {table}: gap"
            if table in CONTIGUOUS and sym is None:
                assert group[-1].valid_to is None, f"{venue} {table}: the venue-wide rule must still be in force"


def test_rules_are_immutable():
    rules = venue_rules("binance")
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.quote = "USDC"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        rules.fees[0].perp_taker_fee_rate = 0.0  # type: ignore[misc]
    assert isinstance(rules.fees, tuple) and isinstance(rules.markets, tuple)


def test_unsourced_figures_say_so():
    """A figure that could not be sourced is marked in its source, never given silent precision."""
    marked = [
        (v, t, r.source)
        for v in VENUES
        for t in TABLES
        for r in getattr(venue_rules(v), t)
        if r.source.startswith(("assumed:", "not found:"))
    ]
    assert ("bybit", "funding_cap") in {(v, t) for v, t, _ in marked}  # Bybit BTC/ETH caps: not found
    by_venue = {v: r for v in VENUES for r in [venue_rules(v)]}
    assert by_venue["bybit"].funding_cap_at("2025-01-01", "BTCUSDT").bounds() is None
    for venue in VENUES:  # every venue default maintenance rate is an assumption, and says so
        rate, source = by_venue[venue].maintenance_fallback("NOSUCHUSDT")
        assert 0 < rate < 0.5 and source.startswith("assumed:")


# --------------------------------------------------------------------------- lookups
def test_fees_at_picks_the_period_at_its_boundaries():
    hl = venue_rules("hyperliquid")
    switch = utc("2025-05-05T03:00:00")
    assert hl.fees_at(switch).perp_taker_fee_rate == 0.00045  # valid_from is included
    assert hl.fees_at(switch - timedelta(microseconds=1)).perp_taker_fee_rate == 0.00035  # valid_to excluded
    assert hl.fees_at("2025-05-05T02:59:59Z").spot_taker_fee_rate == 0.00035
    assert hl.fees_at("2025-05-05 03:00").spot_taker_fee_rate == 0.0007  # naive text is UTC
    assert hl.fees_at("2023-09-01").perp_maker_fee_rate == -0.00002  # a maker rebate
    bn = venue_rules("binance")
    assert bn.fees_at(date(2024, 4, 27)).perp_taker_fee_rate == 0.0004
    assert bn.fees_at(pd.Timestamp("2024-04-28", tz="UTC")).perp_taker_fee_rate == 0.0005
    assert bn.fees_at(np.datetime64("2030-01-01T00:00")).perp_taker_fee_rate == 0.0005  # open-ended
    with pytest.raises(
        DataError, match=r"binance\.toml: no fees period covers 2019-01-01 \(the file covers 2019-09-10"
    ):
        bn.fees_at("2019-01-01")
    with pytest.raises(ConfigError, match="not a date or time: 'soon'"):
        bn.fees_at("soon")


def test_settlement_interval_and_interest_per_interval():
    hl = venue_rules("hyperliquid")
    assert hl.default_interval_hours == 1
    assert hl.interval_hours_at("2023-06-01") == 8 and hl.interval_hours_at("2023-06-08T01:00Z") == 1
    assert hl.interest_rate_per_interval_at("2024-01-01", 1) == pytest.approx(1.25e-5)  # 0.01% per 8h
    assert hl.interest_rate_per_interval_at("2023-05-20", 8) == pytest.approx(1e-4)
    assert hl.funding_formula_at("2024-01-01").rate_scaled_by_interval
    bn = venue_rules("binance")
    assert bn.interest_rate_per_interval_at("2024-01-01", 8) == pytest.approx(1e-4)
    assert bn.interest_rate_per_interval_at("2024-01-01", 4) == pytest.approx(5e-5)
    assert bn.interest_rate_per_interval_at("2024-01-01", 8, symbol="BNBUSDT") == 0.0
    assert not bn.funding_formula_at("2025-09-18T08:00Z").rate_scaled_by_interval
    assert bn.funding_formula_at("2025-09-18T08:01Z").rate_scaled_by_interval
    okx = venue_rules("okx")
    assert okx.interest_rate_per_interval_at("2025-01-01", 8) == 0.0  # no interest term before 2025-04
    assert okx.funding_formula_at("2025-01-01").premium_clamp is None
    assert okx.interest_rate_per_interval_at("2025-11-01", 8) == pytest.approx(1e-4)
    with pytest.raises(ConfigError, match="interval_hours must be a number of hours > 0"):
        bn.interest_rate_per_interval_at("2024-01-01", 0)


def test_funding_caps_per_symbol_and_venue():
    bn = venue_rules("binance")
    assert bn.funding_cap_at("2020-03-13", "BTCUSDT").bounds() == (-0.003, 0.003)
    assert bn.funding_cap_at("2021-01-04", "ETH/USDT:USDT").bounds() == (-0.00375, 0.00375)  # ccxt names too
    later = bn.funding_cap_at("2024-01-01", "ETHUSDT")  # after the last evidence: the venue rule
    assert later.symbol is None and later.mmr_multiple == 0.75
    assert later.bounds() is None and later.bounds(top_bracket_mmr=0.004) == pytest.approx((-0.003, 0.003))
    assert venue_rules("hyperliquid").funding_cap_at("2024-01-01", "BTCUSDC").bounds() == (-0.04, 0.04)
    assert venue_rules("hyperliquid").funding_cap_at("2023-05-20") is None  # not found for the 8h period
    okx = venue_rules("okx")
    assert okx.funding_cap_at("2025-11-01", "BTCUSDT").cap == 0.00375
    assert okx.funding_cap_at("2025-11-01", "AVAXUSDT").floor == -0.0075
    assert okx.funding_cap_at("2025-11-01", "SOLUSDT").cap == 0.015  # 'other currencies'


def test_maintenance_fallback_by_symbol_and_time():
    hl = venue_rules("hyperliquid")
    assert hl.maintenance_fallback("BTCUSDC", "2025-01-01")[0] == 0.01  # 0.5 / 50x
    assert hl.maintenance_fallback("BTC/USDC:USDC")[0] == 0.0125  # 0.5 / 40x, in force now
    assert hl.maintenance_fallback("ETHUSDC", "2025-03-12")[0] == 0.02  # 0.5 / 25x
    rate, source = hl.maintenance_fallback("DOGEUSDC")
    assert rate == 0.05 and source.startswith("assumed:")
    assert venue_rules("binance").maintenance_fallback("BTCUSDT") == (
        0.004,
        venue_rules("binance").maintenance[1].source,
    )


def test_maintenance_rule_carries_the_maximum_leverage():
    """The flat fallback's row also gives the venue's maximum leverage where the rules file has it
    (a spread run without tiers files refuses a leverage above it)."""
    assert venue_rules("bybit").maintenance_rule("BTCUSDT").max_leverage == 100
    assert venue_rules("binance").maintenance_rule("BTCUSDT", "2024-09-04").max_leverage == 125
    assert venue_rules("hyperliquid").maintenance_rule("ETHUSDC", "2025-03-12").max_leverage == 25
    assert venue_rules("binance").maintenance_rule("NOSUCHUSDT").max_leverage is None


def test_tiers_path_only_where_a_file_exists(tmp_path):
    bn = venue_rules("binance")
    assert bn.tiers_file == "binance_leverage_tiers.json"
    assert bn.tiers_path(tmp_path) is None  # carry ships no copy
    (tmp_path / "binance_leverage_tiers.json").write_text("{}")
    assert bn.tiers_path(tmp_path) == tmp_path / "binance_leverage_tiers.json"
    for venue in ("bybit", "okx", "hyperliquid"):
        assert venue_rules(venue).tiers_file is None and venue_rules(venue).tiers_path(tmp_path) is None


def test_funding_price_and_the_oracle_stand_in():
    hl = venue_rules("hyperliquid")
    assert hl.funding_price == "oracle"
    stand_in = hl.oracle_stand_in
    assert stand_in is not None and stand_in.flag == "oracle_price_stand_in"
    assert stand_in.pick({"perp", "spot", "funding"}) == "perp"  # the shared data: no index, no mark
    assert stand_in.pick({"index", "perp"}) == "index"
    assert stand_in.pick({"spot"}) is None
    assert "oracle" in stand_in.note
    for venue in ("binance", "bybit", "okx"):
        assert venue_rules(venue).funding_price == "mark" and venue_rules(venue).oracle_stand_in is None


def test_binance_agrees_with_the_engine_defaults():
    """backtest.config's defaults are Binance VIP0 of 2024-2025; the venue file must say the same."""
    defaults = BacktestConfig()
    for day in ("2024-06-01", "2025-01-01", "2025-12-31"):
        fees = venue_rules("binance").fees_at(day).as_config()
        assert fees == {k: getattr(defaults, k) for k in fees}, day
    assert venue_rules("binance").maintenance_fallback("NOSUCHUSDT")[0] == DEFAULT_MAINTENANCE_MARGIN_RATE
    for venue in ("binance", "bybit", "okx", "hyperliquid"):  # every current schedule is a valid config
        BacktestConfig(**venue_rules(venue).fees_at("2025-11-01").as_config())


# --------------------------------------------------------------------------- errors
def test_an_unknown_venue_names_the_file_and_the_known_venues(tmp_path):
    with pytest.raises(UnknownNameError) as exc:
        venue_rules("binanse")
    msg = str(exc.value)
    assert "unknown venue 'binanse'" in msg and "binanse.toml" in msg
    assert "did you mean 'binance'?" in msg and "valid: binance, bybit, hyperliquid, okx" in msg
    assert isinstance(exc.value, CarryError) and "\n" not in msg
    with pytest.raises(UnknownNameError, match="valid: none"):
        venue_rules("binance", root=tmp_path)  # an empty folder


def _damaged(tmp_path: Path, venue: str, old: str, new: str) -> Path:
    text = (VENUES_DIR / f"{venue}.toml").read_text()
    assert old in text, f"test setup: {old!r} not in {venue}.toml"
    (tmp_path / f"{venue}.toml").write_text(text.replace(old, new, 1))
    return tmp_path / f"{venue}.toml"


#: (id, venue, text replaced, replacement, words the message must hold)
DAMAGE = [
    (
        "unknown-key",
        "binance",
        "perp_taker_fee_rate = 0.0005",
        "perp_taker_fee = 0.0005",
        ["fees[1]", "unknown key(s) 'perp_taker_fee' (did you mean 'perp_taker_fee_rate'?)"],
    ),
    (
        "bps-not-fraction",
        "binance",
        "perp_taker_fee_rate = 0.0005",
        "perp_taker_fee_rate = 5",
        ["fees[1].perp_taker_fee_rate=5", "not a plausible fraction of notional", "0.0005 if bps were meant"],
    ),
    (
        "percent-cap",
        "hyperliquid",
        "cap = 0.04",
        "cap = 4",
        ["funding_cap[0].cap=4", "fraction per settlement interval", "0.04 if percent were meant"],
    ),
    ("missing-value", "bybit", "perp_maker_fee_rate = 0.0002\n", "", ["fees[0].perp_maker_fee_rate is missing"]),
    (
        "missing-source",
        "okx",
        'source = "assumed: as ETHUSDT',
        'sauce = "assumed: as ETHUSDT',
        ["maintenance[1]", "'sauce'"],
    ),
    (
        "text-number",
        "bybit",
        "interval_hours = 8",
        'interval_hours = "8"',
        ["settlement[0].interval_hours must be a number"],
    ),
    (
        "overlap",
        "binance",
        "valid_from = 2024-04-28\nspot",
        "valid_from = 2024-01-01\nspot",
        ["fees[1]", "overlaps fees[0] (valid to 2024-04-28)"],
    ),
    (
        "gap",
        "binance",
        "valid_from = 2024-04-28\nspot",
        "valid_from = 2024-05-01\nspot",
        ["fees[1]", "gap from 2024-04-28 to 2024-05-01"],
    ),
    (
        "unordered",
        "hyperliquid",
        "valid_from = 2023-06-08T01:00:00Z\ninterval_hours = 1",
        "valid_from = 2023-01-01\ninterval_hours = 1",
        ["settlement[1]", "out of order", "oldest first"],
    ),
    (
        "empty-period",
        "okx",
        "valid_to = 2025-04-10T00:01:00Z",
        "valid_to = 2019-07-18",
        ["funding_formula[0]", "valid_to 2019-07-18 is not after valid_from 2019-07-18"],
    ),
    (
        "no-offset",
        "binance",
        "valid_to = 2025-05-02T08:00:00Z",
        "valid_to = 2025-05-02T08:00:00",
        ["settlement[0].valid_to=2025-05-02T08:00:00 has no UTC offset"],
    ),
    (
        "quote",
        "okx",
        'quote = "USDT"',
        'quote = "USTD"',
        [".quote must be one of USDT, USDC", "(did you mean 'USDT'?)"],
    ),
    ("price", "bybit", 'price = "mark"', 'price = "last"', ["funding_price.price must be one of mark, oracle"]),
    ("no-stand-in", "hyperliquid", 'stand_in = ["index", "perp"]\n', "", ["funding_price.stand_in must list"]),
    ("venue", "okx", 'venue = "okx"', 'venue = "okex"', ["venue is 'okex' but the file is named okx.toml"]),
    ("toml", "bybit", 'quote = "USDT"', "quote = USDT", ["is not valid TOML"]),
    (
        "top-level",
        "bybit",
        'quote = "USDT"',
        'quote = "USDT"\nqoute = "USDT"',
        ["unknown key(s) 'qoute' (did you mean 'quote'?)"],
    ),
]


@pytest.mark.parametrize("case", DAMAGE, ids=[c[0] for c in DAMAGE])
def test_a_damaged_file_is_refused_naming_file_and_key(tmp_path, case):
    _, venue, old, new, words = case
    path = _damaged(tmp_path, venue, old, new)
    with pytest.raises(DataError) as exc:
        venue_rules(venue, root=tmp_path)
    msg = str(exc.value)
    assert str(path) in msg and "\n" not in msg
    for word in words:
        assert word in msg, msg


def test_an_undamaged_copy_loads_and_a_repaired_file_is_read_again(tmp_path):
    shutil.copy(VENUES_DIR / "bybit.toml", tmp_path / "bybit.toml")
    assert venue_rules("bybit", root=tmp_path).fees_at("2025-01-01").perp_taker_fee_rate == 0.00055
    _damaged(tmp_path, "bybit", "perp_taker_fee_rate = 0.00055", "perp_taker_fee_rate = 0.0006")
    assert venue_rules("bybit", root=tmp_path).fees_at("2025-01-01").perp_taker_fee_rate == 0.0006


# --------------------------------------------------------------------------- against the real data
FUNDING_FILES = {
    "binance": ("binance", "futures", "BTC_USDT_USDT-1h-funding_rate.feather"),
    "bybit": ("bybit", "futures", "BTC_USDT_USDT-1h-funding_rate.feather"),
    "okx": ("okx", "futures", "BTC_USDT_USDT-1h-funding_rate.feather"),
    "hyperliquid": ("hyperliquid", "futures", "BTC_USDC_USDC-1h-funding_rate.feather"),
}


def _settlements(venue: str, coin: str = "BTC") -> pd.Series:
    """Settlement rate (``open`` column) by settlement hour (stamps floored: they run late)."""
    parts = FUNDING_FILES[venue]
    path = shared_data_path(parts[0], parts[1], parts[2].replace("BTC", coin))
    raw = pd.read_feather(path)
    times = pd.to_datetime(raw["date"], utc=True).dt.floor("h")
    return pd.Series(raw["open"].to_numpy(), index=pd.DatetimeIndex(times))


@pytest.mark.shared_data
@pytest.mark.parametrize("venue", VENUES)
def test_default_interval_is_the_most_common_spacing_of_real_settlements(venue):
    times = _settlements(venue).index
    spacing_hours = pd.Series(np.diff(times.asi8) / 3.6e12)
    rules = venue_rules(venue)
    assert spacing_hours.mode().iloc[0] == rules.default_interval_hours
    for period in rules.settlement:  # each period's interval is the most common spacing inside it
        inside = [
            h
            for t, h in zip(times[1:], spacing_hours)
            if period.covers(t.to_pydatetime()) and period.covers((t - pd.Timedelta(hours=h)).to_pydatetime())
        ]
        if len(inside) >= 10:
            assert pd.Series(inside).mode().iloc[0] == period.interval_hours, (venue, period.valid_from)


@pytest.mark.shared_data
@pytest.mark.parametrize("venue", VENUES)
def test_no_real_settlement_exceeds_a_known_cap(venue):
    rules = venue_rules(venue)
    quote = rules.quote
    for coin in ("BTC", "ETH"):
        rates = _settlements(venue, coin)
        checked = 0
        for t, rate in rates.items():
            cap = rules.funding_cap_at(t, f"{coin}{quote}")
            bounds = None if cap is None else cap.bounds(top_bracket_mmr=0.004 if cap.mmr_multiple else None)
            if bounds is not None:
                assert bounds[0] - 1e-12 <= rate <= bounds[1] + 1e-12, (venue, coin, t, rate, bounds)
                checked += 1
        if venue != "bybit":  # Bybit's BTC/ETH limits are not sourced
            assert checked > 0, (venue, coin)


@pytest.mark.shared_data
def test_binance_fallbacks_match_the_shared_tiers_file():
    import json

    path = venue_rules("binance").tiers_path(shared_data_path())
    assert path is not None and path.name == "binance_leverage_tiers.json"
    tiers = json.loads(path.read_text())
    for sym in ("BTCUSDT", "ETHUSDT"):
        first = min(tiers[f"{sym[:-4]}/USDT:USDT"], key=lambda b: b["minNotional"])
        assert venue_rules("binance").maintenance_fallback(sym)[0] == first["maintenanceMarginRate"]
    top = min(tiers["BTC/USDT:USDT"], key=lambda b: b["minNotional"])["maintenanceMarginRate"]
    venue_wide = venue_rules("binance").funding_cap_at("2025-01-01", "XTZUSDT")
    assert venue_wide.bounds(top) == pytest.approx(
        venue_rules("binance").funding_cap_at("2025-01-01", "BTCUSDT").bounds()
    )


def test_a_run_on_a_venue_takes_its_current_fees_unless_set():
    from backtest.app import runs as app
    from backtest.config import BacktestConfig

    def cfg(venue, **engine):
        return app.build_run_config(
            {"engine": engine} if engine else {},
            data_overrides={"symbols": "BTCUSDT", "venue": venue},
            strategies=[app.StrategySpec("always_carry")],
        ).engine

    # Binance's current schedule is carry's defaults: a Binance run is unchanged
    assert cfg("binance") == BacktestConfig()
    okx = cfg("okx")
    assert (okx.spot_taker_fee_rate, okx.spot_maker_fee_rate, okx.perp_taker_fee_rate) == (0.001, 0.0008, 0.0005)
    assert cfg("bybit").perp_taker_fee_rate == 0.00055
    # a fee set by the config file (or a flag) wins over the venue's
    assert cfg("okx", perp_taker_fee_rate=0.0003).perp_taker_fee_rate == 0.0003
    # a venue without a rules file keeps carry's defaults (the run says so in a note)
    assert app.venue_fee_defaults("myexchange") == {} and cfg("myexchange") == BacktestConfig()


def test_a_market_of_an_oracle_priced_venue_is_flagged(tmp_path):
    """Hyperliquid pays funding at its oracle price, which no file holds: the market says what
    stands in for it (flag and note); a Binance market has no such flag."""
    import warnings

    from data.loader import load_market
    from data.synthetic import write_demo_catalog

    cat = write_demo_catalog(tmp_path / "cat", venue="hyperliquid")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = load_market(cat, "DEMOAUSDT", venue="hyperliquid")
    assert "oracle_price_stand_in" in m.data_flags
    assert any(n.startswith("hyperliquid pays funding at its oracle price") for n in m.notes)
    binance = load_market(write_demo_catalog(tmp_path / "b"), "DEMOAUSDT")
    assert "oracle_price_stand_in" not in binance.data_flags

"""Exchange frictions as data: lot, tick and minimums from a ccxt markets file (``data.markets``,
on a real Binance snapshot from ccxt's own tests, ``tests/fixtures/binance_markets.json``), and the
maximum-leverage check of the leverage tiers (``backtest.tiers``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from backtest.tiers import TierTable, load_tiers
from data.errors import ConfigError, DataError
from data.markets import (
    RULE_FIELDS,
    MarketRules,
    common_step,
    load_markets,
)
from data.synthetic import TEST_TIER_BRACKETS, write_tiers
from tests.conftest import shared_data_path

FIXTURE = Path(__file__).parent / "fixtures" / "binance_markets.json"
SYMBOLS = ["BTCUSDT", "ETHUSDT", "XRPUSDT", "ADAUSDT", "LTCUSDT"]


def _raw() -> dict:
    return json.loads(FIXTURE.read_text())


def _write(tmp_path: Path, data: object, name: str = "markets.json") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


# --------------------------------------------------------------------------- the real file


def test_fixture_is_small_and_real():
    assert FIXTURE.stat().st_size < 100_000
    raw = _raw()
    assert sorted(raw) == sorted([f"{s[:-4]}/USDT" for s in SYMBOLS] + [f"{s[:-4]}/USDT:USDT" for s in SYMBOLS])
    assert "ccxt/ccxt" in (FIXTURE.parent / "README.md").read_text()


def test_loader_reads_the_binance_snapshot():
    rules = load_markets(FIXTURE, SYMBOLS, SYMBOLS)
    assert isinstance(rules, MarketRules) and rules.n_symbols == 5
    # the snapshot counts decimal places (5 for BTC spot) and its Binance filters say stepSize 0.00001
    assert rules.precision_mode == "decimal_places"
    assert rules.spot_lot.tolist() == [1e-05, 0.0001, 1.0, 0.1, 0.001]
    assert rules.perp_lot.tolist() == [0.001, 0.001, 0.1, 1.0, 0.001]
    assert rules.spot_min_qty.tolist() == [1e-05, 0.0001, 1.0, 0.1, 0.001]
    assert rules.perp_min_qty.tolist() == [0.001, 0.001, 0.1, 1.0, 0.001]
    assert rules.spot_tick.tolist() == [0.01, 0.01, 0.0001, 0.0001, 0.01]
    assert rules.perp_tick.tolist() == [0.1, 0.01, 0.0001, 0.0001, 0.01]
    assert rules.spot_min_notional.tolist() == [5.0] * 5 and rules.perp_min_notional.tolist() == [5.0] * 5
    assert rules.source == str(FIXTURE) and rules.missing_spot == () and rules.missing_perp == ()
    # the pair: both legs trade the same coins; XRP's spot lot 1 is a multiple of its perp lot 0.1
    assert rules.common_lot().tolist() == [0.001, 0.001, 1.0, 1.0, 0.001]
    assert rules.pair_min_notional().tolist() == [5.0] * 5
    assert rules.pair_min_qty().tolist() == [0.001, 0.001, 1.0, 1.0, 0.001]
    with pytest.raises(ValueError):
        rules.spot_lot[0] = 1.0  # read-only


def test_every_value_agrees_with_binances_own_filters():
    """The loader's reading of ccxt's fields equals the exchange's raw filters kept in ``info``."""
    raw = _raw()
    rules = load_markets(FIXTURE, SYMBOLS, SYMBOLS)
    for leg, suffix in (("spot", ""), ("perp", ":USDT")):
        for i, sym in enumerate(SYMBOLS):
            filters = {f["filterType"]: f for f in raw[f"{sym[:-4]}/USDT{suffix}"]["info"]["filters"]}
            assert getattr(rules, f"{leg}_lot")[i] == float(filters["LOT_SIZE"]["stepSize"])
            assert getattr(rules, f"{leg}_min_qty")[i] == float(filters["LOT_SIZE"]["minQty"])
            assert getattr(rules, f"{leg}_tick")[i] == float(filters["PRICE_FILTER"]["tickSize"])
            notional = filters["NOTIONAL"]["minNotional"] if leg == "spot" else filters["MIN_NOTIONAL"]["notional"]
            assert getattr(rules, f"{leg}_min_notional")[i] == float(notional)


def test_symbols_are_matched_by_id_and_type_in_any_order():
    rules = load_markets(FIXTURE, ["XRPUSDT", "BTCUSDT"], ["XRPUSDT", "BTCUSDT"])
    assert rules.spot_lot.tolist() == [1.0, 1e-05] and rules.perp_lot.tolist() == [0.1, 0.001]
    # spot and perp names are looked up separately (a pair may pair differently named legs)
    mixed = load_markets(FIXTURE, ["ADAUSDT"], ["XRPUSDT"])
    assert mixed.spot_lot.tolist() == [0.1] and mixed.perp_lot.tolist() == [0.1]


def test_a_list_of_markets_reads_the_same(tmp_path):
    path = _write(tmp_path, list(_raw().values()))
    a = load_markets(path, SYMBOLS, SYMBOLS)
    b = load_markets(FIXTURE, SYMBOLS, SYMBOLS)
    for name in ("spot_lot", "perp_lot", "spot_tick", "perp_tick", "spot_min_notional", "perp_min_qty"):
        assert np.array_equal(getattr(a, name), getattr(b, name))


def test_tick_size_mode_and_multiplier(tmp_path):
    """Current ccxt gives Binance steps (TICK_SIZE); a 1000-coin perp's sizes are per coin."""
    raw = _raw()
    for m in raw.values():
        for k in ("amount", "price"):
            m["precision"][k] = float(10.0 ** -m["precision"][k])
    path = _write(tmp_path, raw)
    rules = load_markets(path, SYMBOLS, SYMBOLS)
    assert rules.precision_mode == "tick_size"
    assert rules.spot_lot.tolist() == [1e-05, 0.0001, 1.0, 0.1, 0.001]
    assert rules.perp_tick.tolist() == [0.1, 0.01, 0.0001, 0.0001, 0.01]
    scaled = load_markets(path, SYMBOLS, SYMBOLS, multiplier=[1, 1, 1, 1000, 1])
    assert scaled.perp_lot[3] == 1000.0 and scaled.perp_min_qty[3] == 1000.0
    assert scaled.perp_tick[3] == pytest.approx(1e-7) and scaled.spot_lot[3] == 0.1
    assert scaled.perp_min_notional[3] == 5.0  # quote: no multiplier
    # contractSize (coins per contract) scales the perp quantities too
    raw["BTC/USDT:USDT"]["contractSize"] = 0.01
    rules = load_markets(_write(tmp_path, raw), ["BTCUSDT"], ["BTCUSDT"])
    assert rules.perp_lot[0] == 1e-05 and rules.perp_min_qty[0] == 1e-05  # 0.001 * 0.01 on decimals


def test_precision_mode_detection(tmp_path):
    """Integers without filters: a 0 means digits; otherwise the file must say (or the caller)."""
    raw = _raw()
    for m in raw.values():
        del m["info"]
    assert load_markets(_write(tmp_path, raw), SYMBOLS, SYMBOLS).precision_mode == "decimal_places"  # XRP: 0
    only = {k: raw[k] for k in ("BTC/USDT", "BTC/USDT:USDT")}
    path = _write(tmp_path, only, "only.json")
    with pytest.raises(DataError, match=r"only\.json: cannot tell ccxt's precision mode.*precision_mode="):
        load_markets(path, ["BTCUSDT"], ["BTCUSDT"])
    digits = load_markets(path, ["BTCUSDT"], ["BTCUSDT"], precision_mode="decimal_places")
    steps = load_markets(path, ["BTCUSDT"], ["BTCUSDT"], precision_mode="tick_size")
    assert digits.spot_lot[0] == 1e-05 and steps.spot_lot[0] == 5.0
    with pytest.raises(ConfigError, match="did you mean 'tick_size'"):
        load_markets(path, ["BTCUSDT"], ["BTCUSDT"], precision_mode="ticksize")
    raw["BTC/USDT"]["precision"]["amount"] = 0.5
    with pytest.raises(DataError, match=r"'BTC/USDT' precision.amount is 0.5, not a whole number of decimal places"):
        load_markets(_write(tmp_path, raw), ["BTCUSDT"], ["BTCUSDT"], precision_mode="decimal_places")


def test_missing_symbol_is_named_with_a_hint():
    with pytest.raises(DataError) as err:
        load_markets(FIXTURE, ["BTCUSDT", "ETHUSD"], ["BTCUSDT", "ETHUSDT"])
    msg = str(err.value)
    assert str(FIXTURE) in msg and "no spot market with id 'ETHUSD'" in msg and "did you mean 'ETHUSDT'" in msg
    assert "missing='ignore'" in msg and "\n" not in msg
    with pytest.raises(DataError, match="no linear swap with id 'DOGEUSDT'"):
        load_markets(FIXTURE, ["BTCUSDT"], ["DOGEUSDT"])
    with pytest.raises(ConfigError, match="did you mean 'ignore'"):
        load_markets(FIXTURE, ["BTCUSDT"], ["BTCUSDT"], missing="ignor")


def test_missing_symbol_names_the_other_type(tmp_path):
    raw = _raw()
    del raw["LTC/USDT"]
    with pytest.raises(DataError, match="no spot market with id 'LTCUSDT'.*only as a linear swap"):
        load_markets(_write(tmp_path, raw), ["LTCUSDT"], ["LTCUSDT"])


def test_missing_ignore_leaves_no_constraint():
    rules = load_markets(FIXTURE, ["BTCUSDT", "DOGEUSDT"], ["BTCUSDT", "DOGEUSDT"], missing="ignore")
    assert rules.missing_spot == ("DOGEUSDT",) and rules.missing_perp == ("DOGEUSDT",)
    assert rules.spot_lot.tolist() == [1e-05, 0.0] and rules.perp_min_notional.tolist() == [5.0, 0.0]
    assert rules.common_lot().tolist() == [0.001, 0.0]


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("{", ["cannot read ccxt markets file", "bad.json"]),
        ("[1, 2]", ["bad.json", "market '[0]' is a int"]),
        ('"BTC"', ["bad.json", "expected a JSON object of ccxt markets", "got str"]),
        ({"BTC/USDT": {"id": "BTCUSDT", "type": "spot", "precision": 5}}, ["'BTC/USDT' field 'precision'", "int"]),
        (
            {"BTC/USDT": {"id": "BTCUSDT", "type": "spot", "precision": {"amount": "x", "price": 2}}},
            ["'BTC/USDT' precision.amount is 'x', expected a number"],
        ),
        (
            {
                "BTC/USDT": {
                    "id": "BTCUSDT",
                    "type": "spot",
                    "precision": {"amount": 0},
                    "limits": {"cost": {"min": -5}},
                }
            },
            ["'BTC/USDT' limits.cost.min is -5", ">= 0"],
        ),
        (
            {"BTC/USDT": {"id": "BTCUSDT", "type": "spot", "precision": {"amount": 0}, "limits": {"amount": []}}},
            ["'BTC/USDT' field 'limits.amount' is a list"],
        ),
    ],
    ids=["json", "list-of-numbers", "string", "precision-shape", "not-a-number", "negative", "limits-shape"],
)
def test_bad_files_name_the_file_and_the_key(tmp_path, content, words):
    path = _write(tmp_path, content, "bad.json")
    with pytest.raises(DataError) as err:
        load_markets(path, ["BTCUSDT"], ["BTCUSDT"], missing="ignore", precision_mode="tick_size")
    for word in words:
        assert word in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read ccxt markets file .*nope.json"):
        load_markets(tmp_path / "nope.json", ["BTCUSDT"], ["BTCUSDT"])


def test_no_file_means_no_constraint():
    rules = MarketRules.none(["BTCUSDT", "PEPEUSDT"], ["BTCUSDT", "1000PEPEUSDT"])
    assert rules.perp_symbols == ("BTCUSDT", "1000PEPEUSDT")
    assert not rules.spot_lot.any() and not rules.common_lot().any() and not rules.pair_min_notional().any()


# --------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    ("a", "b", "common"),
    [
        (1e-05, 0.001, 0.001),  # one divides the other: the larger
        (0.001, 1e-05, 0.001),
        (1.0, 0.1, 1.0),
        (0.1, 0.1, 0.1),
        (0.3, 0.1, 0.3),  # 0.3 % 0.1 is not 0 on floats
        (0.04, 0.06, 0.12),  # neither divides: the least common multiple
        (0.1, 0.25, 0.5),
        (2.0, 3.0, 6.0),
        (0.0, 0.01, 0.01),  # no lot on one leg
        (0.0, 0.0, 0.0),
    ],
)
def test_common_step(a, b, common):
    assert common_step(a, b) == common
    assert common_step(b, a) == common


def test_common_step_refuses_nonsense():
    with pytest.raises(DataError, match="steps must be finite and >= 0"):
        common_step(-0.1, 0.1)
    with pytest.raises(DataError, match="steps must be finite and >= 0"):
        common_step(float("nan"), 0.1)


def test_rules_check_their_arrays():
    with pytest.raises(DataError, match=r"MarketRules.spot_lot has shape \(1,\), expected \(2,\)"):
        MarketRules(("A", "B"), ("A", "B"), **{name: np.zeros(1 if name == "spot_lot" else 2) for name in RULE_FIELDS})
    with pytest.raises(ConfigError, match=r"multiplier must hold 1 numbers > 0 \(one per perp symbol\)"):
        load_markets(FIXTURE, ["BTCUSDT"], ["BTCUSDT"], multiplier=[0])


def round_down_to_lot(qty, lot):
    """The engine's rule (``backtest.kernels.rules.lot_round_nb``) over scalars or arrays."""
    from backtest.kernels.rules import lot_round_nb

    out = np.vectorize(lot_round_nb, otypes=[float])(qty, lot)
    return float(out) if out.ndim == 0 else out


def below_minimum(qty, price, min_qty, min_notional):
    """The engine's rule (``backtest.kernels.rules.too_small_nb``) over scalars or arrays."""
    from backtest.kernels.rules import too_small_nb

    out = np.vectorize(too_small_nb, otypes=[bool])(qty, price, min_qty, min_notional)
    return bool(out) if out.ndim == 0 else out


LOT_EPS = 1e-9  # the rules' relative tolerance


def test_round_down_to_lot_is_exact_for_decimal_steps():
    assert round_down_to_lot(0.3, 0.1) == 0.3  # 0.3 / 0.1 == 2.9999999999999996: still 3 lots
    assert round_down_to_lot(0.29, 0.1) == 0.2
    assert round_down_to_lot(-0.29, 0.1) == -0.2  # toward zero
    assert round_down_to_lot(0.7, 0.25) == 0.5
    assert round_down_to_lot(12.3456789, 1e-05) == 12.34567
    assert round_down_to_lot(0.5, 0.0) == 0.5  # no lot
    assert round_down_to_lot(1e-06, 1e-05) == 0.0
    out = round_down_to_lot(np.array([0.3, 1.0, np.nan]), np.array([0.1, 0.0, 0.1]))
    assert out[:2].tolist() == [0.3, 1.0] and np.isnan(out[2])
    # the tolerance is relative: a quantity a hair below a lot count stays below
    assert round_down_to_lot(0.3 * (1 - 1e3 * LOT_EPS), 0.1) == 0.2


def test_round_down_to_lot_on_many_quantities(rng):
    for lot in (1e-05, 0.001, 0.1, 1.0, 10.0, 0.25, 0.04):
        k = rng.integers(0, 10**5, 2_000)
        exact = round_down_to_lot(k * lot, lot)  # whole lot counts survive float noise
        assert np.array_equal(np.round(exact / lot), k)
        assert np.array_equal(round_down_to_lot(exact, lot), exact)  # idempotent
        half = (k + 0.5) * lot
        down = round_down_to_lot(half, lot)
        assert np.array_equal(np.round(down / lot), k) and (down <= half).all()


def test_below_minimum():
    # BTC spot: min qty 0.00001, min notional 5 USDT
    assert below_minimum(0.0001, 40_000.0, 1e-05, 5.0)  # 4 USDT
    assert not below_minimum(0.000125, 40_000.0, 1e-05, 5.0)  # exactly 5 USDT
    assert not below_minimum(0.1 + 0.2 - 0.2, 50.0, 0.1, 5.0)  # exactly the minimum, up to float noise
    assert below_minimum(-0.000005, 1e6, 1e-05, 0.0)  # under the minimum quantity, either side
    assert not below_minimum(0.0, 40_000.0, 1e-05, 5.0)  # no order
    assert below_minimum(np.array([1.0, 0.01]), 100.0, 0.0, 5.0).tolist() == [False, True]


# --------------------------------------------------------------------------- leverage


def test_tiers_keep_each_brackets_max_leverage(tmp_path):
    path = write_tiers(tmp_path / "tiers.json", ["BTCUSDT", "ETHUSDT"])
    tiers = load_tiers(path, ["BTCUSDT", "ETHUSDT"])
    expected = [float(b["maxLeverage"]) for b in TEST_TIER_BRACKETS]
    assert tiers.bracket_leverage[0, :3].tolist() == expected == [50.0, 25.0, 10.0]
    assert tiers.max_leverage(0) == 50.0 and tiers.max_leverages().tolist() == [50.0, 50.0]
    assert tiers.source == path


def test_leverage_above_the_top_bracket_is_refused(tmp_path):
    path = write_tiers(tmp_path / "tiers.json", ["BTCUSDT", "ETHUSDT"])
    tiers = load_tiers(path, ["BTCUSDT", "ETHUSDT"])
    tiers.check_leverage(50, ["BTCUSDT", "ETHUSDT"])  # at the maximum: fine
    tiers.check_leverage(np.array([3.0, 50.0]), ["BTCUSDT", "ETHUSDT"])
    with pytest.raises(ConfigError) as err:
        tiers.check_leverage(60, ["BTCUSDT", "ETHUSDT"])
    assert str(err.value) == f"perp_leverage 60 is above BTCUSDT's maximum 50 (top bracket of tiers file {path})"
    with pytest.raises(ConfigError, match="perp_leverage 51 is above ETHUSDT's maximum 50"):
        tiers.check_leverage([2.0, 51.0], ["BTCUSDT", "ETHUSDT"])
    # per column (a (T, C) sweep of perp_leverage): the column and its symbol are named
    columns = np.array([0, 1, 1])
    grid = np.array([[2.0, 3.0, 10.0], [2.0, 3.0, 75.0]])
    with pytest.raises(ConfigError, match="perp_leverage 75 in column 2 is above ETHUSDT's maximum 50"):
        tiers.check_leverage(grid, ["BTCUSDT", "ETHUSDT"], column_symbol=columns)
    tiers.check_leverage(grid[:1], ["BTCUSDT", "ETHUSDT"], column_symbol=columns)
    with pytest.raises(ConfigError, match="perp_leverage has shape"):
        tiers.check_leverage(np.ones(3), ["BTCUSDT", "ETHUSDT"])


def test_real_binance_tiers_give_btcusdt_125x():
    path = shared_data_path("binance_leverage_tiers.json")
    tiers = load_tiers(path, ["BTCUSDT", "1000PEPEUSDT"])
    assert tiers.max_leverage(0) == 125.0
    tiers.check_leverage(125, ["BTCUSDT", "1000PEPEUSDT"], column_symbol=np.array([0]))
    with pytest.raises(ConfigError) as err:
        tiers.check_leverage(150, ["BTCUSDT", "1000PEPEUSDT"], column_symbol=np.array([0]))
    assert f"perp_leverage 150 in column 0 is above BTCUSDT's maximum 125 (top bracket of tiers file {path})" == str(
        err.value
    )


def test_flat_tiers_set_no_limit():
    flat = TierTable.flat(2, 0.01)
    assert flat.max_leverage(0) == np.inf
    flat.check_leverage(1e6, ["BTCUSDT", "ETHUSDT"])


def test_brackets_without_max_leverage_set_no_limit(tmp_path):
    path = tmp_path / "tiers.json"
    path.write_text(
        json.dumps({"BTC/USDT:USDT": [{"minNotional": 0, "maxNotional": 1e9, "maintenanceMarginRate": 0.01}]})
    )
    tiers = load_tiers(path, ["BTCUSDT"])
    assert tiers.max_leverage(0) == np.inf
    tiers.check_leverage(500, ["BTCUSDT"])


def test_bad_max_leverage_is_a_malformed_tiers_file(tmp_path):
    path = tmp_path / "tiers.json"
    bracket = {"minNotional": 0, "maxNotional": 1e9, "maintenanceMarginRate": 0.01, "maxLeverage": -5}
    path.write_text(json.dumps({"BTC/USDT:USDT": [bracket]}))
    with pytest.raises(DataError, match=r"leverage tiers of 'BTC/USDT:USDT' are malformed \(maxLeverage must be > 0"):
        load_tiers(path, ["BTCUSDT"])

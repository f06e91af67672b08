"""Strategy registry: lookup with did-you-mean, typed parameter parsing, units, user files."""

from __future__ import annotations

import textwrap

import numpy as np
import pandas as pd
import pytest

import strategies as S
from data.errors import ConfigError
from data.market import Market


@pytest.fixture(autouse=True)
def _private_registry(monkeypatch):
    """Strategies registered by a test stay in that test."""
    from strategies import registry

    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))


def test_builtins_registered():
    assert {"always_carry", "always_reverse", "funding_threshold", "funding_sign", "basis_aware", "rotation"} <= set(
        S.available_strategies()
    )
    for name in S.available_strategies():
        strat = S.get_strategy(name)
        assert "Risks" in strat.doc and "Parameters" in strat.doc, name


def test_unknown_strategy_did_you_mean():
    with pytest.raises(ConfigError, match="(?i)did you mean 'funding_threshold'"):
        S.get_strategy("funding_treshold")
    with pytest.raises(ConfigError, match="Available"):
        S.get_strategy("zzz")


def test_parse_params_types_abbreviations_and_units():
    p = S.parse_params(
        "funding_threshold", ["entry=0.10", "exit=0.02", "window_settlements=21", "min_hold=24", "signal=predicted"]
    )
    assert p == {
        "entry_annualized": 0.10,
        "exit_annualized": 0.02,
        "window_settlements": 21,
        "min_hold_hours": 24.0,
        "signal": "predicted",
    }
    assert isinstance(p["window_settlements"], int)
    assert S.parse_params("funding_threshold", ["entry=10%", "exit=50bps"]) == {
        "entry_annualized": pytest.approx(0.10),
        "exit_annualized": pytest.approx(0.005),
    }
    assert S.parse_params("basis_aware", ["min_edge_bps=0.05%", "allow_reverse=yes"]) == {
        "min_edge_bps": pytest.approx(5.0),
        "allow_reverse": True,
    }
    grid = S.parse_params("funding_sign", ["entry=0.05,0.10", "borrow_annual_rate=0.02"])
    assert grid == {"entry_annualized": [0.05, 0.10], "borrow_annual_rate": 0.02}


def test_parse_params_errors():
    with pytest.raises(ConfigError, match="did you mean 'entry_annualized'"):
        S.parse_params("funding_threshold", ["entyr_annualized=0.1"])
    with pytest.raises(ConfigError, match="ambiguous"):
        S.parse_params("rotation", ["w=1"])  # weighting / window_settlements
    with pytest.raises(ConfigError, match=r"annualized fraction.*percentage.*0\.1"):
        S.parse_params("funding_threshold", ["entry=10", "exit=0.02"])
    with pytest.raises(ConfigError, match="must be <= entry_annualized"):
        S.parse_params("funding_threshold", ["entry=0.01", "exit=0.05"])
    with pytest.raises(ConfigError, match="whole number"):
        S.parse_params("rotation", ["top_k=2.5"])
    with pytest.raises(ConfigError, match="one of"):
        S.parse_params("rotation", ["weighting=cap"])
    with pytest.raises(ConfigError, match="name=value"):
        S.parse_params("rotation", ["top_k"])
    with pytest.raises(ConfigError, match="hours"):
        S.FundingSignParams(min_hold_hours=-1)
    with pytest.raises(TypeError):
        S.FundingSignParams(0.1)  # keyword-only


def _market():
    idx = pd.date_range("2024-01-01", periods=48, freq="1h", tz="UTC")
    rate = np.zeros((48, 1))
    rate[7::8] = 1e-4
    return Market.from_arrays(idx, ["BTCUSDT"], spot=100.0, perp=100.1, funding_rate=rate)


def test_register_and_load_strategy_file(tmp_path):
    code = textwrap.dedent('''
        from dataclasses import dataclass
        import numpy as np
        from strategies import StrategyParams, param, register, mask_targets

        @dataclass(frozen=True, kw_only=True)
        class HalfParams(StrategyParams):
            size: float = param(0.5, "fraction of capital share", ge=0, le=1)

        def half_carry(market, params: HalfParams):
            """Half-size carry."""
            return mask_targets(market, np.full(market.shape, params.size))

        register(half_carry, HalfParams, "user_half_carry", overwrite=True)

        def quarter(market):
            return np.full(market.shape, -0.25)

        STRATEGIES = [(quarter, None, "user_quarter")]
    ''')
    path = tmp_path / "mine.py"
    path.write_text(code)
    names = S.load_strategy_file(path, overwrite=True)
    assert set(names) == {"user_half_carry", "user_quarter"}
    m = _market()
    t = S.run_strategy("user_half_carry", m, S.parse_params("user_half_carry", ["size=0.3"]))
    assert (t.values == 0.3).all() and t.columns["size"].tolist() == [0.3]
    assert (S.run_strategy("user_quarter", m).values == -0.25).all()
    with pytest.raises(ConfigError, match="takes no parameters"):
        S.parse_params("user_quarter", ["x=1"])
    with pytest.raises(ConfigError, match="already registered"):
        S.register(lambda market: np.zeros(market.shape), name="user_quarter")
    empty = tmp_path / "empty.py"
    empty.write_text("x = 1\n")
    with pytest.raises(ConfigError, match="defines no strategy"):
        S.load_strategy_file(empty)
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ConfigError, match="boom"):
        S.load_strategy_file(broken)


def test_params_describe_lists_units():
    d = S.FundingSignParams.describe()
    row = d.set_index("name").loc["borrow_annual_rate"]
    assert "annualized fraction" in row["unit"] and row["default"] == 0.05

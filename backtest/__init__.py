"""carry: a vectorized backtester for crypto cash-and-carry and funding-rate arbitrage.

The public API is small and imported lazily (so ``import backtest`` stays fast)::

    from backtest import Catalog, load_market, run_backtest, BacktestConfig

See the README for examples.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "Catalog": "data.catalog",
    "PartitionKey": "data.catalog",
    "Kind": "data.schema",
    "SCHEMA_VERSION": "data.schema",
    "Market": "data.market",
    "load_market": "data.loader",
    "GapPolicy": "data.loader",
    "DataError": "data.errors",
    "ConfigError": "data.errors",
    "CarryError": "data.errors",
    "run_backtest": "backtest.engine",
    "BacktestConfig": "backtest.config",
    "BacktestResult": "backtest.result",
    "EngineState": "backtest.state",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'backtest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

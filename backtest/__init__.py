"""carry: a vectorized backtester for crypto cash-and-carry and funding-rate arbitrage.

The public API is small and imported lazily (so ``import backtest`` stays fast)::

    from backtest import Catalog, load_market, run_backtest, BacktestConfig

See the README for examples.

carry's top-level packages have generic names (``data``, ``reports``, ``strategies``). Importing
``backtest`` installs :class:`_OwnPackages`, which keeps a plain folder of that name (no
``__init__.py``, e.g. a notebook's ``data/`` of CSV files) from being taken for carry's package,
and names the culprit when a user's own ``data`` package or module shadows carry's data layer.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from importlib.machinery import ModuleSpec, PathFinder
from pathlib import Path
from typing import Any

__version__ = "0.1.0"

_ROOT = Path(__file__).resolve().parent.parent  # the directory holding carry's top-level packages
_OWN = ("data", "reports", "strategies")


class _OwnPackages:
    """A ``sys.meta_path`` finder for carry's top-level packages, consulted before the others.

    * Where the import path holds only a plain folder named ``data``/``reports``/``strategies``
      (a namespace package, which Python would import ahead of an editable install's packages),
      it returns carry's package: what a regular install gives anyway, as regular packages win
      over namespace folders there.
    * Where it holds a user's own ``data`` package or module (before carry's), it raises an
      ImportError naming both: carry's engine cannot work with another ``data``.
    * Otherwise (carry's own, or a user's ``reports``/``strategies`` module, which the engine
      never imports) it stays out of the way.
    """

    @classmethod
    def find_spec(cls, name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        if path is not None or name not in _OWN:
            return None
        own = _ROOT / name / "__init__.py"
        found = PathFinder.find_spec(name)
        if found is None or not own.is_file():
            return None
        if found.origin is None:  # a namespace package: folders without __init__.py
            return importlib.util.spec_from_file_location(name, own, submodule_search_locations=[str(own.parent)])
        origin = Path(found.origin).resolve()
        if name == "data" and origin != own:
            raise ImportError(
                f"carry's data package ({own.parent}) is shadowed by {origin}: rename that module, "
                "run from another directory, or start Python with -P",
                name=name,
            )
        return None


# first on the meta path, once (a reloaded module replaces its earlier finder)
sys.meta_path[:] = [_OwnPackages] + [
    f
    for f in sys.meta_path
    if (getattr(f, "__module__", None), getattr(f, "__name__", None)) != (__name__, "_OwnPackages")
]

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
    "run_spread": "backtest.spread",
    "SpreadResult": "backtest.spread",
    "SpreadConfig": "backtest.config",
    "load_venue_pair": "data.venue_pair",
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

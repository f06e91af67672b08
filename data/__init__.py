"""carry's data layer: the catalog, its schemas and checks, ingestion, and the aligned Market.

The bottom layer: it imports nothing else of carry's. Its public API is imported lazily so
``import data`` stays fast::

    from data import Catalog, load_market
    market = load_market("data/demo", ["DEMOAUSDT"], freq="1h")

Modules: ``errors`` (the :class:`CarryError` hierarchy), ``units`` (year length, bar length,
millisecond timestamps), ``schema`` and ``validate`` (the data contract), ``catalog`` (the
Parquet catalog, atomic writes), ``io``, ``symbols``, ``market`` and ``loader`` (catalog ->
:class:`Market`), ``quality`` (``carry data info/check``), ``fetch`` (downloads),
``catalog_access`` (local or fsspec catalogs for scale-out workers), ``synthetic``
(generated markets for the demo, benchmarks and tests) and ``ingest/`` (one module per source).
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "Catalog": "data.catalog",
    "PartitionKey": "data.catalog",
    "Kind": "data.schema",
    "SCHEMA_VERSION": "data.schema",
    "Market": "data.market",
    "load_market": "data.loader",
    "GapPolicy": "data.loader",
    "CarryError": "data.errors",
    "ConfigError": "data.errors",
    "DataError": "data.errors",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'data' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

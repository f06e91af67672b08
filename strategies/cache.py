"""Per-market memo of computed signals (markets are immutable, so a result never goes stale).

The one home of the memo both :mod:`strategies.signals` and :mod:`strategies.predicted_funding`
(and the validity masks of :func:`strategies.base.mask_targets`) use, so neither needs the other.
Entries live as long as their market: the store is keyed weakly.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from data.market import Market

__all__ = ["cached", "clear_cache"]

_CACHE: weakref.WeakKeyDictionary[Market, dict] = weakref.WeakKeyDictionary()


def cached(market: Market, key: tuple, compute: Callable[[], Any]) -> Any:
    """Memoise ``compute()`` for ``market`` under ``key``; an array result is made read-only."""
    store = _CACHE.setdefault(market, {})
    if key not in store:
        value = compute()
        if isinstance(value, np.ndarray):
            value.flags.writeable = False
        store[key] = value
    return store[key]


def clear_cache() -> None:
    """Forget every memoised signal."""
    _CACHE.clear()

"""Process-wide memory settings of carry's commands and scale-out workers.

NumPy asks Linux for transparent huge pages on every large array (``madvise(MADV_HUGEPAGE)``).
Where the kernel's defragmentation policy for such regions is synchronous (``defrag`` set to
``madvise``, ``always`` or ``defer+madvise``, the usual default), the first touch of fresh memory
stalls while the kernel compacts memory to find huge pages, and a machine whose page cache is
full of Parquet files (any catalog run) pays seconds per gigabyte. Measured on the project's
2-core machine: allocating and filling 1 GB took 9.0 s with huge pages against 0.61 s without;
a time-chunked sweep of 100 symbols spent 31.7 s in the engine against 7.4 s, though a warm
engine call runs about 30% faster on huge pages (16-19 vs 11-14 M bar-columns/s). carry's
commands and workers allocate large fresh arrays for every run, chunk and task, so they turn
NumPy's huge-page advice off when the kernel would stall; ``NUMPY_MADVISE_HUGEPAGE`` (NumPy's own
switch: 0 off, 1 on) set in the environment wins.
"""

from __future__ import annotations

import os
from pathlib import Path

_DEFRAG = Path("/sys/kernel/mm/transparent_hugepage/defrag")
#: Kernel THP defrag policies under which a fault in a madvised region compacts memory synchronously.
STALLING_POLICIES = ("always", "madvise", "defer+madvise")


def thp_defrag_policy() -> str | None:
    """The kernel's transparent-huge-page defrag policy (the bracketed word), None if unknown."""
    try:
        text = _DEFRAG.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def configure_hugepages() -> bool | None:
    """Turn NumPy's huge-page advice off where the kernel would stall on it (see the module
    docstring); leave it alone when ``NUMPY_MADVISE_HUGEPAGE`` is set. Returns the setting
    applied (False: off), or None when nothing was changed."""
    if os.environ.get("NUMPY_MADVISE_HUGEPAGE") is not None or thp_defrag_policy() not in STALLING_POLICIES:
        return None
    import importlib

    setter = None
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):  # NumPy 2, NumPy 1
        try:
            setter = getattr(importlib.import_module(name), "_set_madvise_hugepage", None)
        except ImportError:
            continue
        if setter is not None:
            break
    if setter is None:
        return None
    setter(False)
    return False

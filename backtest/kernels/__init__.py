"""The numba kernels (their shared data layout: :mod:`backtest.kernels.layout`).

Numba's on-disk cache checks only the source file of the function it caches, but a kernel's
cached machine code also holds every function it inlines or calls from the other files of this
package (``rules.py``, ``margin.py``, ``views.py``, ...): an edit of ``rules.py`` alone, or a
``git pull`` that changes it alone, would leave the kernels of ``fast.py``, ``soa.py``,
``simulate.py`` and ``spread.py`` running the old rules from their cache. Importing this package
therefore compares a digest of all its source files with the one stored beside the cache and,
where they differ (or none is stored), removes the package's cached kernels before numba loads
any: they are compiled again on first use (or by ``carry compile``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

#: The file beside the cached kernels that holds the digest of the sources they were built from.
MARK = "carry-kernels-sources.sha256"


def sources_digest(src_dir: Path) -> str:
    """SHA-256 over the names and contents of the ``*.py`` files of ``src_dir``, in name order."""
    h = hashlib.sha256()
    for p in sorted(src_dir.glob("*.py")):
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def drop_stale_cache(src_dir: Path, cache_dir: Path) -> bool:
    """Remove numba's cached functions (``*.nbi``, ``*.nbc``) of ``src_dir``'s modules from
    ``cache_dir`` unless the digest stored there (:data:`MARK`) is that of the sources now,
    then store it (atomically). Returns whether anything was removed. A cache directory that
    cannot be read or written changes nothing (numba itself then falls back or compiles)."""
    digest = sources_digest(src_dir)
    mark = cache_dir / MARK
    try:
        if mark.read_text() == digest:
            return False
    except OSError:
        pass
    modules = {p.stem for p in src_dir.glob("*.py")}
    removed = False
    try:
        for f in cache_dir.iterdir():
            if f.suffix in (".nbi", ".nbc") and f.name.split(".", 1)[0] in modules:
                f.unlink(missing_ok=True)
                removed = True
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=MARK, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            out.write(digest)
        os.replace(tmp, mark)
    except OSError:
        pass
    return removed


def _cache_dir() -> Path | None:
    """Where numba caches this package's functions (its own locators: ``NUMBA_CACHE_DIR``, the
    in-tree ``__pycache__`` or the user-wide cache), or None when it cannot cache here."""
    from numba.core.caching import FunctionCache

    try:
        return Path(FunctionCache(_probe).cache_path)
    except RuntimeError:
        return None


def _probe() -> None:
    """A function of this package's folder, for :func:`_cache_dir`."""


_dir = _cache_dir()
if _dir is not None:
    drop_stale_cache(Path(__file__).parent, _dir)

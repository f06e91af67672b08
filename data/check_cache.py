"""The data checks' results kept between runs, keyed by the files they read.

Every run checks its symbols' series first (:func:`data.quality.check_catalog`), which reads
every year file of every series: seconds for hourly histories, minutes for years of 1-minute
bars, and the same answer each time until a file changes. :func:`cached_problems` keeps the
problems found for a set of files in a small JSON file named by a hash of

* each file's resolved path, size, modification and change times (ns) and inode (an ingest
  replaces a file by a rename: a new inode), and
* the checking code itself (the source of :mod:`data.quality` and :mod:`data.validate`), so a
  new version of the checks never reuses an old answer.

The cache lives in ``$CARRY_CACHE_DIR``, else ``$XDG_CACHE_HOME/carry``, else
``~/.cache/carry`` (sub-folder ``checks``); ``CARRY_CACHE_DIR=off`` turns it off. Entries are
written atomically (a temporary file renamed into place) and a cache that cannot be read or
written is ignored: the checks then run as if it were empty. It holds at most
:data:`MAX_ENTRIES` entries (the oldest are removed).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

#: Entries kept in the cache folder; beyond it the oldest half is removed.
MAX_ENTRIES = 2000
_CODE = ("quality.py", "validate.py")


def cache_dir() -> Path | None:
    """The folder of the check results, or None when caching is off (``CARRY_CACHE_DIR=off``)."""
    env = os.environ.get("CARRY_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env) / "checks"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "carry" / "checks"


def _code_version() -> bytes:
    here = Path(__file__).parent
    h = hashlib.sha256()
    for name in _CODE:
        h.update((here / name).read_bytes())
    return h.digest()


def fingerprint(files: Mapping[Any, Sequence[str | os.PathLike]]) -> str:
    """Hash of the series' files (path, size, times, inode) and of the checking code; raises
    OSError if a file cannot be stat'ed."""
    h = hashlib.sha256(_code_version())
    for key in sorted(files, key=str):
        h.update(f"\0{key}".encode())
        for f in files[key]:
            p = Path(f).resolve()
            st = p.stat()
            h.update(f"\1{p}\2{st.st_size}\2{st.st_mtime_ns}\2{st.st_ctime_ns}\2{st.st_ino}".encode())
    return h.hexdigest()


def cached_problems(
    files: Mapping[Any, Sequence[str | os.PathLike]], problem_type: type, compute: Callable[[], list]
) -> list:
    """The problems of ``compute()`` (a list of ``problem_type`` dataclasses) for the series
    ``files`` (key -> file paths), from the cache when the same files were checked by the same
    code before."""
    folder = cache_dir()
    try:
        digest = fingerprint(files) if folder is not None else None
    except OSError:
        digest = None  # a file vanished or is unreadable: the checks report it
    if folder is None or digest is None:
        return compute()
    path = folder / f"{digest}.json"
    names = {f.name for f in fields(problem_type)}
    try:
        rows = json.loads(path.read_text())
        return [problem_type(**{k: v for k, v in row.items() if k in names}) for row in rows]
    except (OSError, ValueError, TypeError):
        pass
    problems = compute()
    _store(folder, path, [asdict(p) for p in problems])
    return problems


def _store(folder: Path, path: Path, rows: list[dict]) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=folder)
        with os.fdopen(fd, "w") as fh:
            json.dump(rows, fh)
        os.replace(tmp, path)
        entries = list(folder.glob("*.json"))
        if len(entries) > MAX_ENTRIES:
            entries.sort(key=lambda p: p.stat().st_mtime_ns)
            for old in entries[: len(entries) // 2]:
                old.unlink(missing_ok=True)
    except OSError:
        pass  # a cache that cannot be written is no cache

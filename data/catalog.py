"""The Parquet catalog: where each table lives on disk, all-or-nothing writes, idempotent merges.

Layout (Hive-style directories, one Parquet file per calendar year)::

    <root>/venue=<venue>/kind=<kind>/timeframe=<tf>/symbol=<SYMBOL>/year=<YYYY>.parquet   # bars
    <root>/venue=<venue>/kind=funding/symbol=<SYMBOL>/year=<YYYY>.parquet                 # events
    <root>/venue=<venue>/kind=borrow/symbol=<ASSET>/year=<YYYY>.parquet

Writing the same rows twice is a no-op: rows are merged by ``time``, and rows that agree are
kept once.

Transactions
------------
Every write belongs to a transaction (:meth:`Catalog.transaction`; a bare :meth:`Catalog.write`
is a transaction of its own). What is guaranteed:

* **All or nothing.** A transaction's merged year files are staged under
  ``<root>/.txn/<id>/`` (same relative paths) and only moved into place when the ``with`` block
  ends without an exception (and the optional verification step passes). An exception discards
  the staging folder: nothing of the transaction is committed.
* **Crash recovery on the next open.** The commit writes a journal ``<root>/.txn/<id>.journal``
  (the staged -> final moves, written atomically and fsynced) before its first rename, and
  deletes it after the last. A process killed in between leaves the journal: the next
  :class:`Catalog` opened on the root (or the next write) finishes the renames (roll forward;
  they are idempotent). A staging folder without a journal (killed before the commit) is
  removed (roll back). When there is nothing to recover, opening costs one ``stat``.
* **What a reader sees.** Another process reading through :meth:`Catalog.read` (or inside
  :meth:`Catalog.reading`, for several series) sees either the state before a commit or the
  state after it, never a mix: a commit holds an exclusive ``flock`` on the root folder during
  its renames, readers hold it shared (reading needs no write permission). Inside a
  transaction, :meth:`Catalog.read`, :meth:`~Catalog.files`, :meth:`~Catalog.has` and
  :meth:`~Catalog.keys` keep seeing the committed state; :meth:`Transaction.files` gives the
  files as they will be after the commit.
* **One writer at a time.** A transaction holds an exclusive ``flock`` on ``<root>/.txn``
  (released by the kernel when the process dies) from its first write to its end, so two
  processes writing the same catalog take turns instead of losing each other's rows, and
  recovery never touches a live transaction's staging folder. ``.txn`` exists only while a
  transaction runs (or after a crash): a catalog at rest holds its year files and nothing else.

Test hook: the environment variable ``CARRY_TEST_CRASH_AT=commit:<n>`` makes a commit end the
process (``os._exit(9)``) after ``n`` renames (``commit:0``: after writing the journal, before
the first rename), and ``stage:<n>`` after staging ``n`` files; tests use it to kill an ingest
inside the commit. It is read only by the commit and staging code and does nothing else.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from data.errors import ConfigError, DataError
from data.io import FILE_MODE, write_bytes_atomic
from data.schema import Kind, schema_for
from data.validate import conform

try:  # POSIX advisory locks; without them (not POSIX) writers are not serialised
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

_PART_RE = re.compile(r"^year=(\d{4})\.parquet$")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")

#: Folder (inside the catalog root) of staged files and commit journals.
TXN_DIR = ".txn"
#: Suffix of a commit journal in :data:`TXN_DIR`.
JOURNAL_SUFFIX = ".journal"
#: Environment variable of the crash test hook (see the module docstring).
CRASH_ENV = "CARRY_TEST_CRASH_AT"
#: Seconds a transaction waits for another process's transaction on the same catalog.
LOCK_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class PartitionKey:
    """Identifies one series in the catalog: venue, kind, timeframe (bars only) and symbol."""

    venue: str
    kind: Kind
    symbol: str
    timeframe: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Kind(self.kind))
        if not isinstance(self.symbol, str) or not _SYMBOL_RE.match(self.symbol):
            raise DataError(f"bad symbol {self.symbol!r}: expected upper-case letters and digits, e.g. BTCUSDT")
        if self.kind.is_bar and not self.timeframe:
            raise DataError(f"{self.kind.value} bars need a timeframe (e.g. '1h')")
        if not self.kind.is_bar and self.timeframe is not None:
            object.__setattr__(self, "timeframe", None)

    def directory(self, root: Path) -> Path:
        d = Path(root) / f"venue={self.venue}" / f"kind={self.kind.value}"
        if self.timeframe:
            d = d / f"timeframe={self.timeframe}"
        return d / f"symbol={self.symbol}"

    def __str__(self) -> str:
        tf = f"/{self.timeframe}" if self.timeframe else ""
        return f"{self.venue}/{self.kind.value}{tf}/{self.symbol}"


@dataclass
class WriteReport:
    """What a write did: rows added, rows already present, conflicting rows replaced.

    ``files`` are the year files the write changes (their final paths: inside an open
    transaction they are still staged). ``overridden`` lists the error-severity checks of the
    transaction's verification step that were allowed for this series (``"funding_outlier:
    ..."``), so the override stays on record.
    """

    key: PartitionKey
    rows_in: int = 0
    rows_added: int = 0
    rows_unchanged: int = 0
    conflicts: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    overridden: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Leftover:
    """Something an interrupted write left in a catalog (see :meth:`Catalog.leftovers`).

    ``what`` is ``"journal"`` (a commit killed between its first and last rename), ``"staging"``
    (a transaction's staged files, never committed) or ``"tmp"`` (a stray temporary file);
    ``live`` is true when a transaction of a running process still owns it.
    """

    what: str
    path: Path
    live: bool = False


def write_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` through a temporary file and an atomic rename (one file only;
    the catalog itself writes through :meth:`Catalog.transaction`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        pq.write_table(table, tmp, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


#: Rows per Parquet row group of a year file (45.5 days of 1-minute bars): a read of a few days
#: decodes only the row groups whose ``time`` range meets it (:func:`read_parquet`).
ROW_GROUP_ROWS = 65_536


def read_parquet(path: Path, kind: Kind | str, start_ms: int | None = None, end_ms: int | None = None) -> pa.Table:
    """Read one partition file and check it again with :func:`~data.validate.conform`.

    Files are re-validated on every read, so a hand-edited, foreign, truncated or corrupt file
    gives a :class:`DataError` naming the file, column and row, never a silent wrong number.
    With ``start_ms``/``end_ms`` (epoch ms, end exclusive) only the row groups whose ``time``
    statistics meet ``[start_ms, end_ms)`` are read (all of them where a group has no
    statistics); the caller still filters the rows.
    """
    try:
        f = pq.ParquetFile(path)
        groups = _row_groups_meeting(f.metadata, start_ms, end_ms)
        table = f.read() if groups is None else f.read_row_groups(groups)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read Parquet file ({exc}); it may be truncated or corrupt") from None
    return conform(table, kind, str(path))


def _ms_times(meta) -> bool:
    """Whether the file's ``time`` column is stored as epoch milliseconds (the catalog's type;
    a foreign unit makes its statistics unusable here)."""
    try:
        t = meta.schema.to_arrow_schema().field("time").type
    except (KeyError, pa.ArrowException):
        return False
    return pa.types.is_timestamp(t) and t.unit == "ms"


def _time_stats(meta, i: int) -> tuple[int, int] | None:
    """(min, max) of row group ``i``'s ``time`` column as stored (int64 epoch ms), or None."""
    rg = meta.row_group(i)
    for j in range(rg.num_columns):
        col = rg.column(j)
        if col.path_in_schema != "time":
            continue
        st = col.statistics
        if st is None or not st.has_min_max or col.physical_type != "INT64":
            return None
        return int(st.min_raw), int(st.max_raw)
    return None


def _row_groups_meeting(meta, start_ms: int | None, end_ms: int | None) -> list[int] | None:
    """The row groups that may hold a time in ``[start_ms, end_ms)``; None: read the whole file
    (no bound, or a group without usable statistics)."""
    if (start_ms is None and end_ms is None) or meta.num_row_groups <= 1 or not _ms_times(meta):
        return None
    keep = []
    for i in range(meta.num_row_groups):
        stats = _time_stats(meta, i)
        if stats is None:
            return None
        lo, hi = stats
        if (end_ms is None or lo < end_ms) and (start_ms is None or hi >= start_ms):
            keep.append(i)
    return keep


def file_time_bounds(path: Path) -> tuple[int, int] | None:
    """First and last ``time`` (epoch ms) of a partition file from its footer statistics (files
    are sorted by time), without reading data; None when the footer has no usable statistics."""
    try:
        meta = pq.ParquetFile(path).metadata
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read Parquet file ({exc}); it may be truncated or corrupt") from None
    if meta.num_rows == 0 or meta.num_row_groups == 0 or not _ms_times(meta):
        return None
    first, last = _time_stats(meta, 0), _time_stats(meta, meta.num_row_groups - 1)
    if first is None or last is None:
        return None
    return first[0], last[1]


def _bound_ms(value: object, name: str) -> int | None:
    """A read bound (``numpy.datetime64`` or text; naive = UTC) as epoch milliseconds;
    ``ConfigError`` naming it if it is not a time."""
    if value is None:
        return None
    try:
        out = np.datetime64(value, "ms")  # type: ignore[call-overload]
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"bad {name} {value!r}: not a date or time ({exc})") from None
    if np.isnat(out):
        raise ConfigError(f"bad {name} {value!r}: not a date or time")
    return int(out.astype(np.int64))


def _year_of_ms(ms: int) -> int:
    return int(np.datetime64(ms, "ms").astype("datetime64[Y]").astype(np.int64)) + 1970


def _partition_year(path: Path) -> int:
    m = _PART_RE.match(path.name)
    if m is None:
        raise DataError(f"{path}: not a partition file (expected year=YYYY.parquet)")
    return int(m.group(1))


def _year_of(times: pa.Array) -> np.ndarray:
    return pc.year(times).to_numpy(zero_copy_only=False)


# --------------------------------------------------------------------------- locks and recovery
_here = threading.local()  # this thread's open transactions and read locks, by real catalog path


def _real(root: Path) -> str:
    return os.path.realpath(root)


def _active() -> dict[str, Transaction]:
    if not hasattr(_here, "active"):
        _here.active = {}
    return _here.active


def _readers() -> dict[str, list[int]]:
    """real root -> [fd, depth] of the shared read lock this thread holds."""
    if not hasattr(_here, "readers"):
        _here.readers = {}
    return _here.readers


def _flock(fd: int, mode: int) -> bool:
    """``flock`` that says whether it got the lock (``False``: held elsewhere, with ``LOCK_NB``);
    a file system without locks counts as locked (no serialisation there)."""
    try:
        fcntl.flock(fd, mode)
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK: locks not supported on this file system
        return True
    return True


def _lock_txn_dir(root: Path, *, create: bool, wait: bool) -> int | None:
    """Lock ``<root>/.txn`` exclusively (the writer's lock); return its descriptor, or ``None``
    when another process holds it (``wait`` false) or it does not exist (``create`` false).

    The folder is removed by its holder before unlocking (:meth:`Transaction._end`); a waiter
    that then gets the lock of a removed folder sees that its inode is no longer the path's and
    tries again, so two processes never both hold the lock of the current folder.
    """
    path = root / TXN_DIR
    deadline = time.monotonic() + LOCK_TIMEOUT_S
    while True:
        if create:
            path.mkdir(exist_ok=True)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        except FileNotFoundError:
            if create:
                continue
            return None
        if not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB):
            os.close(fd)
            if not wait:
                return None
            if time.monotonic() > deadline:
                raise DataError(
                    f"catalog {root} is being written by another process (it holds {path}) for more than "
                    f"{LOCK_TIMEOUT_S:g} s; wait for that ingest to finish"
                )
            time.sleep(0.05)
            continue
        try:
            if os.path.samestat(os.fstat(fd), os.lstat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # the folder was removed (or replaced) while we waited: try again
        if not create:
            return None


def _txn_dir_busy(root: Path) -> bool:
    """Whether a transaction (of this thread, or of another thread or process) holds ``.txn``."""
    if _real(root) in _active():
        return True
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fd = os.open(root / TXN_DIR, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return False
    try:
        return not _flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)  # closing releases the probe's lock


def _open_root(root: Path) -> int | None:
    try:
        return os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None


@contextmanager
def _shared_read_lock(root: Path) -> Iterator[None]:
    """Hold a shared ``flock`` on the root folder (re-entrant per thread): a commit's renames wait."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    real = _real(root)
    entry = _readers().get(real)
    if entry is not None:
        entry[1] += 1
        try:
            yield
        finally:
            entry[1] -= 1
        return
    fd = _open_root(Path(root))
    if fd is None:  # no catalog yet: nothing to be consistent with
        yield
        return
    try:
        _flock(fd, fcntl.LOCK_SH)
        _readers()[real] = [fd, 1]
        yield
    finally:
        _readers().pop(real, None)
        os.close(fd)


@contextmanager
def _exclusive_read_lock(root: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on the root folder while a commit renames (upgrading this
    thread's shared lock if it holds one): readers wait, and see no half commit."""
    if fcntl is None:  # pragma: no cover
        yield
        return
    entry = _readers().get(_real(root))
    if entry is not None:
        _flock(entry[0], fcntl.LOCK_EX)
        try:
            yield
        finally:
            _flock(entry[0], fcntl.LOCK_SH)
        return
    fd = _open_root(Path(root))
    try:
        if fd is not None:
            _flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems cannot fsync a directory
        pass
    finally:
        os.close(fd)


def _crash_point(phase: str, n: int) -> None:
    """The test hook: end the process at ``CARRY_TEST_CRASH_AT=<phase>:<n>``."""
    spec = os.environ.get(CRASH_ENV)
    if spec and spec == f"{phase}:{n}":
        os._exit(9)


def _roll_forward(root: Path, journal: Path) -> int:
    """Finish the commit of ``journal``: move every staged file still staged, then delete the
    journal. Idempotent (a file already moved is skipped). Returns the number of moves."""
    try:
        moves = json.loads(journal.read_text(encoding="utf-8"))["moves"]
        pairs = [(root / str(staged), root / str(final)) for staged, final in moves]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{journal}: cannot read the commit journal of an interrupted ingest ({exc}); the catalog may be "
            f"half committed: re-ingest the sources into a new catalog, or delete {journal.parent} to keep it as it is"
        ) from None
    dirs = set()
    for staged, final in pairs:
        if staged.exists():
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged, final)
            dirs.add(final.parent)
        elif not final.exists():
            raise DataError(
                f"{journal}: cannot finish the interrupted commit: neither the staged file {staged} nor its "
                f"destination {final} exists; re-ingest the sources"
            )
    for d in dirs:
        _fsync_dir(d)
    journal.unlink()
    _fsync_dir(journal.parent)
    return len(pairs)


class Transaction:
    """An all-or-nothing group of writes to one catalog; see :meth:`Catalog.transaction`.

    Attributes
    ----------
    catalog:
        The catalog written.
    id:
        ``<pid>-<random>``: the name of the staging folder ``<root>/.txn/<id>/``.
    reports:
        The :class:`WriteReport` of every write in the transaction.
    sources:
        The sources written to each series (``source`` of :meth:`Catalog.write`).
    """

    def __init__(self, catalog: Catalog, verify: Callable[[Transaction], None] | None = None):
        self.catalog = catalog
        self.id = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.reports: list[WriteReport] = []
        self.sources: dict[PartitionKey, list[str]] = {}
        self._verifiers = [verify] if verify is not None else []
        self._staged: dict[Path, Path] = {}  # final -> staged
        self._keys: dict[PartitionKey, None] = {}
        self._lock_fd: int | None = None
        self._created_root = False
        self._failed: BaseException | None = None

    def __repr__(self) -> str:
        return f"<Transaction {self.id} on {self.catalog.root}: {len(self._staged)} staged files>"

    @property
    def staging_dir(self) -> Path:
        return self.catalog.root / TXN_DIR / self.id

    @property
    def journal_path(self) -> Path:
        return self.catalog.root / TXN_DIR / f"{self.id}{JOURNAL_SUFFIX}"

    def keys(self) -> list[PartitionKey]:
        """The series this transaction changes, in the order first written."""
        return list(self._keys)

    def files(self, key: PartitionKey) -> list[Path]:
        """The year files of ``key`` as they will be after the commit (committed files, with the
        staged version where this transaction rewrote one), oldest first."""
        by_name = {p.name: p for p in self.catalog.files(key)}
        directory = key.directory(self.catalog.root)
        for final, staged in self._staged.items():
            if final.parent == directory:
                by_name[final.name] = staged
        return [by_name[n] for n in sorted(by_name)]

    def current(self, final: Path) -> Path:
        """The version of the year file ``final`` a write in this transaction merges into."""
        return self._staged.get(final, final)

    def report_for(self, key: PartitionKey) -> WriteReport | None:
        """The last write report of ``key`` in this transaction."""
        return next((r for r in reversed(self.reports) if r.key == key), None)

    # -- internals used by Catalog.write
    def _begin(self) -> None:
        """Take the catalog's write lock (waiting for another process's transaction) and recover
        what a crashed one left; done once, at the first write."""
        if self._lock_fd is not None:
            return
        root = self.catalog.root
        self._created_root = not root.exists()
        root.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            fd = _lock_txn_dir(root, create=True, wait=True)
            assert fd is not None
            self._lock_fd = fd
        else:  # pragma: no cover
            (root / TXN_DIR).mkdir(exist_ok=True)
            self._lock_fd = -1
        self.catalog.recovered += self.catalog._recover_locked()

    def _stage(self, files: list[tuple[Path, pa.Table]]) -> None:
        """Write merged year files into the staging folder (fsynced: a journal may name them)."""
        try:
            for final, table in files:
                staged = self.staging_dir / final.relative_to(self.catalog.root)
                staged.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, staged, compression="zstd", row_group_size=ROW_GROUP_ROWS)
                with open(staged, "rb") as fh:
                    os.fsync(fh.fileno())
                os.chmod(staged, FILE_MODE)
                self._staged[final] = staged
                _crash_point("stage", len(self._staged))
        except BaseException as exc:  # a half-staged write: the transaction cannot commit
            self._failed = exc
            raise

    def _commit(self) -> None:
        if self._failed is not None:
            raise DataError(
                f"catalog {self.catalog.root}: a write of this transaction failed ({self._failed}); nothing was written"
            )
        if not self._staged:
            return
        for verify in self._verifiers:
            verify(self)
        root = self.catalog.root
        moves = sorted(self._staged.items(), key=lambda m: str(m[0]))
        with _exclusive_read_lock(root):
            if len(moves) == 1:  # one rename is atomic by itself: no journal needed
                final, staged = moves[0]
                _crash_point("commit", 0)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staged, final)
                _fsync_dir(final.parent)
                _crash_point("commit", 1)
                return
            journal = self.journal_path
            text = json.dumps(
                {
                    "id": self.id,
                    "moves": [[str(s.relative_to(root)), str(f.relative_to(root))] for f, s in moves],
                },
                indent=0,
            )
            write_bytes_atomic(journal, text.encode("utf-8"))
            _fsync_dir(journal.parent)
            try:
                _crash_point("commit", 0)
                for n, (final, staged) in enumerate(moves, 1):
                    final.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staged, final)
                    _crash_point("commit", n)
                for d in {f.parent for f, _ in moves}:
                    _fsync_dir(d)
                journal.unlink()
                _fsync_dir(journal.parent)
            except BaseException:
                try:  # finish what the journal says; if even that fails the next open does
                    _roll_forward(root, journal)
                except BaseException:
                    pass
                raise

    def _end(self) -> None:
        """Remove the staging folder and ``.txn`` (unless a journal still needs them), then
        release the lock; a catalog folder this transaction created and left empty goes too."""
        if self._lock_fd is None:
            return
        root = self.catalog.root
        try:
            if not self.journal_path.exists():
                shutil.rmtree(self.staging_dir, ignore_errors=True)
                try:
                    (root / TXN_DIR).rmdir()  # before unlocking: see _lock_txn_dir
                except OSError:
                    pass
                if self._created_root:
                    try:
                        root.rmdir()  # only if nothing was committed
                    except OSError:
                        pass
        finally:
            if self._lock_fd >= 0:
                os.close(self._lock_fd)
            self._lock_fd = None


class Catalog:
    """A catalog rooted at a directory.

    Parameters
    ----------
    root:
        The catalog directory (created on first write).
    recover:
        Finish or roll back what a crashed transaction left (see the module docstring) when
        the catalog is opened; ``False`` leaves it for :meth:`leftovers` to list (the next
        write recovers anyway). What was done is listed in ``recovered``.
    """

    def __init__(self, root: str | os.PathLike[str], *, recover: bool = True):
        self.root = Path(root)
        self.recovered: list[str] = []
        if recover:
            self._recover_on_open()

    def __repr__(self) -> str:
        return f"Catalog({str(self.root)!r})"

    # ------------------------------------------------------------------ transactions
    @contextmanager
    def transaction(self, verify: Callable[[Transaction], None] | None = None) -> Iterator[Transaction]:
        """Group writes into one all-or-nothing commit.

        Inside the ``with`` block every :meth:`write` stages its merged year files (a series
        written twice merges into its staged version). When the block ends normally,
        ``verify(transaction)`` runs (if given; it may raise to refuse the commit, e.g.
        :func:`data.quality.ingest_checks`), then every staged file is moved into place
        under a journal. When the block (or ``verify``) raises, the staging folder is
        deleted, nothing is committed, and the exception propagates.

        A transaction opened while this thread already has one on the same catalog joins it
        (its ``verify`` is added to the outer one's, unless an equal one is there already: a
        value such as :class:`data.quality.IngestChecks` then runs once at the commit). Reads inside a transaction see the
        committed state; :meth:`Transaction.files` the state after the commit.
        """
        real = _real(self.root)
        outer = _active().get(real)
        if outer is not None:
            if verify is not None and verify not in outer._verifiers:
                outer._verifiers.append(verify)
            yield outer
            return
        txn = Transaction(self, verify)
        _active()[real] = txn
        try:
            yield txn
            txn._commit()
        finally:
            _active().pop(real, None)
            txn._end()

    @contextmanager
    def reading(self) -> Iterator[Catalog]:
        """Read several series as one committed state: a commit by another process waits until
        the block ends (a shared ``flock`` on the root folder; re-entrant)."""
        with _shared_read_lock(self.root):
            yield self

    def leftovers(self) -> list[Leftover]:
        """What interrupted writes left in the catalog: commit journals, staging folders and stray
        ``*.tmp`` files (``live`` when a running transaction owns them)."""
        out: list[Leftover] = []
        if not self.root.is_dir():
            return out
        txn = self.root / TXN_DIR
        if txn.is_dir():
            live = _txn_dir_busy(self.root)
            entries = sorted(txn.iterdir())
            journaled = {e.name.removesuffix(JOURNAL_SUFFIX) for e in entries if e.name.endswith(JOURNAL_SUFFIX)}
            for entry in entries:
                if entry.name.endswith(JOURNAL_SUFFIX):
                    out.append(Leftover("journal", entry, live))
                elif entry.is_dir():
                    if entry.name not in journaled:  # a journal's staged files are part of its commit
                        out.append(Leftover("staging", entry, live))
                else:
                    out.append(Leftover("tmp", entry, live))
        for dirpath, dirnames, filenames in os.walk(self.root):
            if Path(dirpath) == self.root and TXN_DIR in dirnames:
                dirnames.remove(TXN_DIR)
            out += [Leftover("tmp", Path(dirpath) / f) for f in sorted(filenames) if f.endswith(".tmp")]
        return out

    def _recover_on_open(self) -> None:
        """Recover a crashed transaction, unless none left anything (one ``stat``) or a running
        one still owns it (it holds ``.txn``)."""
        if not os.path.lexists(self.root / TXN_DIR) or _real(self.root) in _active():
            return
        if fcntl is None:  # pragma: no cover
            self.recovered += self._recover_locked()
            return
        fd = _lock_txn_dir(self.root, create=False, wait=False)
        if fd is None:  # a live transaction (or it just ended)
            return
        try:
            self.recovered += self._recover_locked()
            try:
                (self.root / TXN_DIR).rmdir()  # before unlocking
            except OSError:
                pass
        except OSError:  # a read-only catalog: data check reports the leftovers
            pass
        finally:
            os.close(fd)

    def _recover_locked(self) -> list[str]:
        """Roll forward every journal, then empty ``.txn`` of every staging folder and stray file;
        the caller holds the lock of ``.txn`` (and removes it). Returns one note per transaction
        recovered."""
        txn = self.root / TXN_DIR
        if not os.path.lexists(txn):
            return []
        notes = []
        journals = sorted(txn.glob(f"*{JOURNAL_SUFFIX}"))
        done = set()
        if journals:
            with _exclusive_read_lock(self.root):
                for journal in journals:
                    n = _roll_forward(self.root, journal)
                    done.add(journal.name.removesuffix(JOURNAL_SUFFIX))
                    notes.append(
                        f"{self.root}: finished the commit of an interrupted transaction "
                        f"{journal.name.removesuffix(JOURNAL_SUFFIX)} (a commit of {n} files)"
                    )
        for entry in sorted(txn.iterdir()):
            if entry.is_dir():
                if entry.name not in done and any(p.is_file() for p in entry.rglob("*")):
                    notes.append(
                        f"{self.root}: rolled back the interrupted transaction {entry.name} (its writes were never "
                        "committed: run that ingest again)"
                    )
                shutil.rmtree(entry)
            else:
                entry.unlink()
        return notes

    # ------------------------------------------------------------------ writing
    def write(self, key: PartitionKey, table: pa.Table, source: str = "<table>") -> WriteReport:
        """Merge ``table`` into the series ``key``.

        Rows are validated with :func:`data.validate.conform`, split by calendar year and
        merged into each year's file by ``time``. A row whose time is already stored with the
        same values is skipped; with different values the new row replaces it and the
        conflict is reported (first few listed in ``WriteReport.conflicts``).

        Inside :meth:`transaction` the merged files are staged and committed with the
        transaction; otherwise the write is a transaction of its own (all its year files or
        none). A :class:`DataError` raised here (bad rows, a shifted funding schedule, an
        unreadable stored file) leaves the transaction as it was.
        """
        table = conform(table, key.kind, source)
        report = WriteReport(key=key, rows_in=len(table))
        if len(table) == 0:
            return report
        with self.transaction() as txn:
            txn._begin()
            if key.kind == Kind.FUNDING:
                self._check_schedule(key, table, source, txn)
            years = _year_of(table.column("time"))
            directory = key.directory(self.root)
            staged: list[tuple[Path, pa.Table]] = []
            for year in np.unique(years):
                part = table.filter(pa.array(years == year))
                path = directory / f"year={int(year)}.parquet"
                merged = self._merge(txn.current(path), part, key, report)
                if merged is not None:
                    staged.append((path, merged))
                    report.files.append(path)
            txn._stage(staged)  # every read and check is done: only file writes can fail now
            txn.reports.append(report)
            txn.sources.setdefault(key, []).append(source)
            if staged:
                txn._keys.setdefault(key, None)
        return report

    def _check_schedule(self, key: PartitionKey, new: pa.Table, source: str, txn: Transaction) -> None:
        """Refuse funding settlements that would put a second settlement inside one interval of
        the stored series: a new time strictly between two stored settlements whose gap is no
        wider than the gaps beside it (no hole there; a hole may be filled, on any schedule,
        since the interval can change inside it). A source whose times are shifted (naive local
        times read as UTC) would otherwise double the funding. Raises :class:`DataError` naming
        the source, the first rows and the shift that would align them; nothing is written."""
        files = txn.files(key)
        if not files:
            return
        old_t = np.unique(
            np.concatenate(
                [pq.read_table(f, columns=["time"]).column("time").cast(pa.int64()).to_numpy() for f in files]
            )
        )
        if len(old_t) < 3:
            return
        new_t = new.column("time").cast(pa.int64()).to_numpy()
        pos = np.searchsorted(old_t, new_t)
        inside = (new_t > old_t[0]) & (new_t < old_t[-1])
        at_old = old_t[np.minimum(pos, len(old_t) - 1)] == new_t
        cand = np.flatnonzero(inside & ~at_old)
        if not len(cand):
            return
        gaps = np.diff(old_t)  # gaps[k] = old_t[k + 1] - old_t[k]; the new time is inside gaps[pos - 1]
        k = pos[cand] - 1
        beside = np.maximum(gaps[np.maximum(k - 1, 0)], gaps[np.minimum(k + 1, len(gaps) - 1)])
        regular = gaps[k] <= beside
        if not regular.any():
            return
        bad = cand[regular]
        after_prev = new_t[bad] - old_t[pos[bad] - 1]
        before_next = old_t[pos[bad]] - new_t[bad]
        shift = np.where(after_prev <= before_next, after_prev, -before_next)
        values, counts = np.unique(shift, return_counts=True)
        typical_h = values[np.argmax(counts)] / 3_600_000
        first = ", ".join(np.datetime_as_string(new_t[bad][:3].astype("datetime64[ms]"), unit="m")).replace("T", " ")
        raise DataError(
            f"{source}: {len(bad)} funding settlement(s) of {key.symbol} fall inside intervals of the stored series "
            f"(every {int(np.median(gaps[k[regular]])) / 3_600_000:g}h), e.g. at {first} UTC: {typical_h:+g}h from "
            "the stored settlements, a second settlement in each interval. Are the source's times in another "
            f"timezone? Shifting them by {-typical_h:+g}h would align them. Nothing was written."
        )

    def _merge(self, path: Path, new: pa.Table, key: PartitionKey, report: WriteReport) -> pa.Table | None:
        if not path.exists():
            report.rows_added += len(new)
            return new
        old = read_parquet(path, key.kind)
        old_t = old.column("time").cast(pa.int64()).to_numpy()
        new_t = new.column("time").cast(pa.int64()).to_numpy()
        pos = np.searchsorted(old_t, new_t)
        pos_c = np.minimum(pos, len(old_t) - 1)
        present = old_t[pos_c] == new_t
        if present.any():
            same = np.ones(len(new_t), dtype=bool)
            for name in new.column_names:
                a = new.column(name).to_numpy(zero_copy_only=False)
                b = old.column(name).to_numpy(zero_copy_only=False)[pos_c]
                if a.dtype.kind == "f":
                    eq = (a == b) | (np.isnan(a) & np.isnan(b.astype(float)))
                else:
                    eq = a == b
                same &= np.asarray(eq, dtype=bool)
            unchanged = present & same
            conflict = present & ~same
            report.rows_unchanged += int(unchanged.sum())
            for i in np.flatnonzero(conflict)[:5]:
                report.conflicts.append(
                    f"{key} at {np.datetime64(int(new_t[i]), 'ms')} UTC: stored row replaced by new values"
                )
            if conflict.sum() > 5:
                report.conflicts.append(f"... and {int(conflict.sum()) - 5} more conflicting rows in {path.name}")
        else:
            unchanged = np.zeros(len(new_t), dtype=bool)
            conflict = unchanged
        added = ~present
        report.rows_added += int(added.sum())
        if not added.any() and not conflict.any():
            return None
        keep_old = np.ones(len(old_t), dtype=bool)
        keep_old[pos_c[conflict]] = False
        merged = pa.concat_tables([old.filter(pa.array(keep_old)), new.filter(pa.array(added | conflict))])
        order = pc.sort_indices(merged, sort_keys=[("time", "ascending")])
        return merged.take(order)

    # ------------------------------------------------------------------ reading
    def files(self, key: PartitionKey) -> list[Path]:
        """The committed year files of ``key``, oldest first (empty if the series is absent)."""
        directory = key.directory(self.root)
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if _PART_RE.match(p.name))

    def read(self, key: PartitionKey, start: np.datetime64 | None = None, end: np.datetime64 | None = None) -> pa.Table:
        """Read the series ``key`` between ``start`` (inclusive) and ``end`` (exclusive).

        Reads the committed state, all of one commit (a concurrent commit waits; see
        :meth:`reading`). Raises :class:`DataError` if the series is not in the catalog.
        """
        with self.reading():
            return self._read(key, start, end)

    def _read(self, key: PartitionKey, start: np.datetime64 | None, end: np.datetime64 | None) -> pa.Table:
        paths = self.files(key)
        start_ms, end_ms = _bound_ms(start, "start"), _bound_ms(end, "end")
        if start_ms is not None or end_ms is not None:
            lo = _year_of_ms(start_ms) if start_ms is not None else -1
            hi = _year_of_ms(end_ms) if end_ms is not None else 10_000
            paths = [p for p in paths if lo <= _partition_year(p) <= hi]
        if not self.files(key):
            raise DataError(
                f"catalog {self.root}: no {key.kind.value} data for {key.symbol}"
                + (f" at timeframe {key.timeframe}" if key.timeframe else "")
                + f" on venue {key.venue} (looked in {key.directory(self.root)})"
            )
        if not paths:
            return schema_for(key.kind).empty_table()
        table = pa.concat_tables([read_parquet(p, key.kind, start_ms, end_ms) for p in paths])
        if start_ms is not None or end_ms is not None:
            t = table.column("time").cast(pa.int64()).to_numpy()
            mask = np.ones(len(t), dtype=bool)
            if start_ms is not None:
                mask &= t >= start_ms
            if end_ms is not None:
                mask &= t < end_ms
            table = table.filter(pa.array(mask))
        return table

    def has(self, key: PartitionKey) -> bool:
        return bool(self.files(key))

    def keys(self) -> Iterator[PartitionKey]:
        """Every series in the catalog, sorted by venue, kind, timeframe and symbol (the committed
        state; staging folders are not series)."""
        out: list[PartitionKey] = []
        for vdir in sorted(self.root.glob("venue=*")):
            venue = vdir.name.split("=", 1)[1]
            for kdir in sorted(vdir.glob("kind=*")):
                try:
                    kind = Kind(kdir.name.split("=", 1)[1])
                except ConfigError as exc:
                    raise DataError(f"{kdir}: not a catalog directory: {exc}") from None
                tf_dirs = sorted(kdir.glob("timeframe=*")) if kind.is_bar else [kdir]
                for tdir in tf_dirs:
                    tf = tdir.name.split("=", 1)[1] if kind.is_bar else None
                    for sdir in sorted(tdir.glob("symbol=*")):
                        try:
                            key = PartitionKey(venue, kind, sdir.name.split("=", 1)[1], tf)
                        except DataError as exc:
                            raise DataError(f"{sdir}: not a catalog directory: {exc}") from None
                        if self.files(key):
                            out.append(key)
        return iter(out)

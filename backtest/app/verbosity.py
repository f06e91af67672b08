"""What the command line says on stderr, at its three levels: the ``carry`` logger.

``carry -q`` (quiet), the default, and ``carry -v`` (verbose) set the level of one logger,
``carry`` (:func:`configure`, called by ``cli.main``); the commands log to it instead of
printing, and ask :func:`quiet` before printing a table:

================  =========================================================================
level             what the run commands print
================  =========================================================================
quiet (WARNING)   on stdout only the lines naming what was written (``wrote DIR/``); on
                  stderr errors, a ``carry: warning:`` line when a result is flagged or has
                  warnings (:func:`flagged`), and the note of an ``--open`` that found no
                  browser; no progress bar, no ``carry: note:`` lines (the notes stay in
                  summary.json), no tables
default (INFO)    the progress bar on a terminal, ``carry: note: ...`` lines, the tables and
                  the lines naming what was written
verbose (DEBUG)   the default, plus one timed line per stage (:func:`stage`):
                  ``carry: load data: 0.42 s``
================  =========================================================================

The logger writes one line per record to the current ``sys.stderr`` (looked up at each record,
so a test's captured stderr receives it). Outside ``cli.main`` the level is the default.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from data.errors import one_line

LOGGER = logging.getLogger("carry")
QUIET, DEFAULT, VERBOSE = logging.WARNING, logging.INFO, logging.DEBUG

#: The word after ``carry:`` of each level (a stage line of -v has none).
_PREFIX = {logging.DEBUG: "", logging.INFO: "note: ", logging.WARNING: "warning: ", logging.ERROR: "error: "}


class _StderrLines(logging.Handler):
    """``carry: <prefix><message>``, one line, on the ``sys.stderr`` of the moment. A record's
    ``prefix`` attribute (``extra={"prefix": "note: "}``) replaces its level's word."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            prefix = getattr(record, "prefix", None)
            if prefix is None:
                prefix = _PREFIX.get(record.levelno, "")
            from tqdm import tqdm  # its write: above a progress bar being drawn, not through it

            tqdm.write(f"carry: {prefix}{one_line(record.getMessage())}", file=sys.stderr)
        except Exception:  # pragma: no cover - stderr gone
            self.handleError(record)


def configure(level: int) -> int:
    """Set the level of the ``carry`` logger (:data:`QUIET`, :data:`DEFAULT` or :data:`VERBOSE`),
    with its one stderr handler; returns the level it had (for ``configure(previous)``)."""
    previous = LOGGER.level or DEFAULT
    if not any(isinstance(h, _StderrLines) for h in LOGGER.handlers):
        LOGGER.addHandler(_StderrLines())
    LOGGER.propagate = False  # one line per record, not a second one from a root handler
    LOGGER.setLevel(level)
    return previous


configure(DEFAULT)  # library calls of the commands print what ``carry`` prints by default


def quiet() -> bool:
    """True at the quiet level: no notes, tables or progress bars."""
    return not LOGGER.isEnabledFor(logging.INFO)


def note(text: str) -> None:
    """``carry: note: <text>`` on stderr (not at the quiet level)."""
    LOGGER.info(one_line(str(text)))


def always_note(text: str) -> None:
    """``carry: note: <text>`` on stderr at every level: the answer to something the user asked
    for that could not be done (a browser ``--open`` could not start)."""
    LOGGER.warning(one_line(str(text)), extra={"prefix": "note: "})


def flagged(where: Path | str, flags: Iterable[str], warnings: Iterable[str]) -> None:
    """At the quiet level, one ``carry: warning:`` line when the result is flagged (its ``flags``)
    or its run had warnings, naming ``where`` they are written: what ``-q`` must not hide."""
    flags, warnings = list(dict.fromkeys(flags)), list(warnings)
    if not quiet() or not (flags or warnings):
        return
    parts = []
    if flags:
        parts.append(f"the result is flagged {', '.join(flags)}")
    if warnings:
        parts.append(f"{len(warnings)} warning(s) not shown")
    LOGGER.warning(f"{' and '.join(parts)}: see {where}")


def show_progress(args=None) -> bool:
    """Whether to draw a progress bar: on a terminal, unless quiet (``args.quiet`` or the level)."""
    return not getattr(args, "quiet", False) and not quiet() and sys.stderr.isatty()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Time a stage of a command; at the verbose level log ``carry: <name>: <seconds> s`` when it
    ends (nothing when it fails: the error says what happened)."""
    t = time.perf_counter()
    yield
    LOGGER.debug(f"{name}: {time.perf_counter() - t:.2f} s")

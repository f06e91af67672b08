"""Exception types. Every message names what is wrong and where (file, column, row, time, key).

One hierarchy, rooted at :class:`CarryError`; every error a user can cause (bad settings, bad
flags, unknown names, bad or missing files, columns or rows, bad dates, bad units) is one of::

    CarryError                      exit code 1 in the CLI
    ├── ConfigError (ValueError)    a setting, flag, argument or name is wrong: exit code 2
    │   └── UnknownNameError        an unknown name (strategy, parameter, key, symbol, kind,
    │       (KeyError)              venue, option), with a did-you-mean hint
    ├── DataError (ValueError)      input data is missing, malformed or inconsistent: exit code 1
    │   └── ChecksumError           a file does not match its published sha256
    └── FetchError                  a download failed for good: exit code 1

Messages are one line (line breaks in a message, e.g. from a library's text, are folded into
spaces), so the CLI prints exactly one line, ``carry: error: ...``, and no traceback.
Programming errors (broken internal invariants) stay ``AssertionError``/``RuntimeError``.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "CarryError",
    "ConfigError",
    "UnknownNameError",
    "DataError",
    "ChecksumError",
    "FetchError",
    "one_line",
    "did_you_mean",
    "unknown_name",
    "check_choice",
    "check_known_keys",
]

_BREAKS = re.compile(r"\s*[\r\n]+\s*")


def one_line(text: str) -> str:
    """``text`` with its line breaks (and the blanks around them) folded into single spaces."""
    return _BREAKS.sub(" ", text.strip())


class CarryError(Exception):
    """Base class for all errors raised by carry.

    ``exit_code`` is the exit status the ``carry`` command line gives for the error: 1 for data
    problems, failed checks and downloads; 2 for usage and configuration errors.
    """

    exit_code = 1

    def __init__(self, *args: Any) -> None:
        if len(args) == 1 and isinstance(args[0], str):
            args = (one_line(args[0]),)
        super().__init__(*args)


class DataError(CarryError, ValueError):
    """Input data is missing, malformed or inconsistent.

    The message always names the source (file or catalog partition) and, where it
    applies, the column, the row number and the bar time.
    """


class ChecksumError(DataError):
    """A downloaded or ingested archive does not match its published sha256 checksum."""


class ConfigError(CarryError, ValueError):
    """A configuration value, flag or argument is unknown, of the wrong type or out of range."""

    exit_code = 2


class UnknownNameError(ConfigError, KeyError):
    """A name that is not known (a strategy, parameter, config key, symbol, kind, venue or the
    value of an enum-like option); the message suggests the closest known name.

    Also a ``KeyError`` (a failed lookup), with ``str()`` giving the message unquoted.
    """

    def __str__(self) -> str:
        return Exception.__str__(self)


class FetchError(CarryError):
    """A download failed for good (not found, or still failing after all retries)."""


def _closest(name: str, choices: list[str], n: int = 1) -> list[str]:
    """The closest of ``choices`` to ``name``, compared case-insensitively (never ``name`` itself)."""
    if name in choices:
        return []
    lower: dict[str, str] = {}
    for c in choices:
        lower.setdefault(c.lower(), c)
    if name.lower() in lower and name not in choices:
        return [lower[name.lower()]]
    return [lower[c] for c in difflib.get_close_matches(name.lower(), list(lower), n=n)]


def did_you_mean(name: Any, choices: Iterable[Any]) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    close = _closest(str(name), [str(c) for c in choices])
    return f" (did you mean {close[0]!r}?)" if close else ""


def _listing(choices: list[str], limit: int = 20) -> str:
    shown = ", ".join(choices[:limit])
    return shown + (f", ... ({len(choices)} in all)" if len(choices) > limit else "") if choices else "none"


def unknown_name(what: str, name: Any, choices: Iterable[Any], where: str = "") -> UnknownNameError:
    """The error for an unknown ``name`` of kind ``what`` (e.g. ``"kind"``), to raise.

    ``unknown kind 'fundng' (did you mean 'funding'?); valid: spot, perp, ...``; ``where`` (e.g.
    ``" in catalog data/catalog"``) follows the name.
    """
    valid = [str(c) for c in choices]
    return UnknownNameError(f"unknown {what} {name!r}{where}{did_you_mean(name, valid)}; valid: {_listing(valid)}")


def check_choice(name: str, value: Any, options: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``options``; else raise :class:`UnknownNameError`
    (``margin_mode must be one of ['isolated', 'cross'], got 'crosss' (did you mean 'cross'?)``)."""
    options = list(options)
    try:
        known = value in options
    except TypeError:  # an unhashable or incomparable value is no option either
        known = False
    if not known:
        hint = did_you_mean(value, options) if isinstance(value, str) else ""
        raise UnknownNameError(f"{name} must be one of {options}, got {value!r}{hint}")
    return value


def check_known_keys(keys: Iterable[Any], known: Iterable[str], where: str) -> None:
    """Raise :class:`UnknownNameError` naming every key of ``keys`` not in ``known``, with hints."""
    known = list(known)
    bad = [k for k in keys if k not in known]
    if bad:
        hints = ", ".join(f"{k!r}{did_you_mean(k, known)}" for k in bad)
        raise UnknownNameError(f"unknown key(s) in {where}: {hints}; valid: {', '.join(known)}")

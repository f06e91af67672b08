"""Exception types. Every message names what is wrong and where (file, column, row, time)."""

from __future__ import annotations


class CarryError(Exception):
    """Base class for all errors raised by carry."""


class DataError(CarryError, ValueError):
    """Input data is missing, malformed or inconsistent.

    The message always names the source (file or catalog partition) and, where it
    applies, the column, the row number and the bar time.
    """


class ChecksumError(DataError):
    """A downloaded or ingested archive does not match its published sha256 checksum."""


class ConfigError(CarryError, ValueError):
    """A configuration value is unknown, of the wrong type or out of range."""


class FetchError(CarryError):
    """A download failed for good (not found, or still failing after all retries)."""


def did_you_mean(name: str, choices) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or an empty string."""
    import difflib

    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_known_keys(keys, known, where: str) -> None:
    """Raise :class:`ConfigError` naming every key of ``keys`` not in ``known``, with hints."""
    known = list(known)
    bad = [k for k in keys if k not in known]
    if bad:
        hints = ", ".join(f"{k!r}{did_you_mean(k, known)}" for k in bad)
        raise ConfigError(f"unknown key(s) in {where}: {hints}; valid: {', '.join(known)}")

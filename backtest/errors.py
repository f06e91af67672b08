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

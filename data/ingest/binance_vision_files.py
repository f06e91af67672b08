"""Binance bulk files (data.binance.vision): what a zip's name and path say, and its checksum.

The site's layout is ``data/<spot|futures/um>/<monthly|daily>/<data type>/<SYMBOL>/[<tf>/]<file>``
(see :mod:`data.ingest.binance_vision`). Kline file names do not say whether they hold
spot, perp, mark, index or premium-index bars; the directory layout does, else ``market=``
and ``kind=``. Each zip may have a ``<zip>.CHECKSUM`` sibling holding its sha256.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.errors import ChecksumError, ConfigError, DataError, unknown_name
from data.schema import Kind, timeframe_minutes

#: Directory name of each data type on the site -> catalog kind (um futures only, except klines).
_DATA_TYPES: dict[str, Kind] = {
    "klines": Kind.PERP,  # Kind.SPOT under data/spot
    "markPriceKlines": Kind.MARK,
    "indexPriceKlines": Kind.INDEX,
    "premiumIndexKlines": Kind.PREMIUM,
    "fundingRate": Kind.FUNDING,
}
_KIND_ALIASES: dict[str, Kind] = {
    "spot": Kind.SPOT,
    "perp": Kind.PERP,
    "klines": Kind.PERP,
    "mark": Kind.MARK,
    "markpriceklines": Kind.MARK,
    "index": Kind.INDEX,
    "indexpriceklines": Kind.INDEX,
    "premium": Kind.PREMIUM,
    "premiumindexklines": Kind.PREMIUM,
    "funding": Kind.FUNDING,
    "fundingrate": Kind.FUNDING,
}
_MARKETS = {"spot": "spot", "um": "um", "futures": "um", "usdm": "um"}
#: The kinds a Binance bulk file can hold.
_DATA_KINDS = (Kind.SPOT, Kind.PERP, Kind.MARK, Kind.INDEX, Kind.PREMIUM, Kind.FUNDING)

_DATE = r"(?P<date>\d{4}-\d{2}(?:-\d{2})?)"
_KLINE_NAME_RE = re.compile(rf"^(?P<symbol>[A-Z0-9]+)-(?P<tf>\d+[a-zA-Z]+)-{_DATE}\.zip$")
_FUNDING_NAME_RE = re.compile(rf"^(?P<symbol>[A-Z0-9]+)-fundingRate-{_DATE}\.zip$")


@dataclass(frozen=True)
class BinanceFile:
    """One Binance bulk file and what its name and path say about it.

    Attributes
    ----------
    path:
        The zip file.
    kind:
        Catalog kind (spot, perp, mark, index, premium or funding).
    symbol:
        Exchange symbol, e.g. ``BTCUSDT``.
    timeframe:
        Bar length (``1h``) for klines, ``None`` for funding.
    period:
        ``YYYY-MM`` (monthly file) or ``YYYY-MM-DD`` (daily file), UTC.
    """

    path: Path
    kind: Kind
    symbol: str
    timeframe: str | None
    period: str

    @property
    def key(self) -> tuple[Kind, str, str | None]:
        return (self.kind, self.symbol, self.timeframe)

    @property
    def is_daily(self) -> bool:
        return len(self.period) == 10

    def period_bounds_ms(self) -> tuple[int, int]:
        """``[start, end)`` of the file's period in UTC epoch milliseconds."""
        if self.is_daily:
            start = np.datetime64(self.period, "D")
            end = start + np.timedelta64(1, "D")
        else:
            m = np.datetime64(self.period, "M")
            start, end = m.astype("datetime64[D]"), (m + np.timedelta64(1, "M")).astype("datetime64[D]")
        return int(start.astype("datetime64[ms]").astype(np.int64)), int(end.astype("datetime64[ms]").astype(np.int64))


def _norm_kind(kind: Kind | str | None) -> Kind | None:
    if kind is None or isinstance(kind, Kind):
        return kind
    k = _KIND_ALIASES.get(str(kind).strip().lower())
    if k is None:
        raise unknown_name("Binance data kind (kind=)", kind, [k.value for k in _DATA_KINDS])
    return k


def _norm_market(market: str | None) -> str | None:
    if market is None:
        return None
    m = _MARKETS.get(str(market).strip().lower())
    if m is None:
        raise unknown_name("market (market=; um = USDT-M futures)", market, ["spot", "um"])
    return m


def layout_hints(path: Path) -> tuple[Kind | None, str | None, int | None]:
    """``(kind, market, index of the data-type directory)`` read from Binance's layout.

    The layout is ``.../<spot|futures/um>/<monthly|daily>/<data type>/<SYMBOL>/[<tf>/]<file>``;
    only directories at those positions count, so a ``spot`` folder elsewhere in a user's
    path says nothing.
    """
    parts = path.parent.parts
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] in _DATA_TYPES:
            kind = _DATA_TYPES[parts[i]]
            market = None
            if i >= 2 and parts[i - 1] in ("monthly", "daily"):
                market = parts[i - 2]
                if market in ("cm", "option"):
                    raise DataError(f"{path}: {market} data is not supported; carry ingests spot and USDT-M (um) files")
                if market not in ("spot", "um"):
                    market = None
            if kind is Kind.PERP and market == "spot":
                kind = Kind.SPOT
            return kind, market, i
    return None, None, None


def parse_file_name(path: Path | str, *, market: str | None = None, kind: Kind | str | None = None) -> BinanceFile:
    """Work out kind, symbol, timeframe and period of a Binance bulk zip.

    The file name gives symbol, timeframe and period (and says ``fundingRate`` for funding
    files). Whether a kline file holds spot, perp, mark, index or premium-index bars comes
    from Binance's directory layout (``data/spot/monthly/klines/...``,
    ``data/futures/um/monthly/markPriceKlines/...``) when present; for files outside that
    layout from ``market`` (``"spot"`` or ``"um"``) and ``kind``.

    Raises
    ------
    DataError
        If the name is not a Binance bulk file name, the layout contradicts the name, or a
        kline file's market cannot be known (no layout and no ``market``/``kind``).
    """
    path = Path(path)
    name = path.name
    kind_arg, market_arg = _norm_kind(kind), _norm_market(market)
    dir_kind, dir_market, type_idx = layout_hints(path)

    m = _FUNDING_NAME_RE.match(name)
    if m:
        symbol, tf, period = m.group("symbol"), None, m.group("date")
        if dir_kind not in (None, Kind.FUNDING) and type_idx is not None:
            raise DataError(f"{path}: a fundingRate file inside a {path.parent.parts[type_idx]} directory")
        k = Kind.FUNDING
    else:
        m = _KLINE_NAME_RE.match(name)
        if not m:
            raise DataError(
                f"{path}: not a Binance bulk file name; expected <SYMBOL>-<interval>-<YYYY-MM[-DD]>.zip "
                f"(klines) or <SYMBOL>-fundingRate-<YYYY-MM>.zip"
            )
        symbol, tf, period = m.group("symbol"), m.group("tf"), m.group("date")
        try:
            minutes = 0 if tf.endswith("mo") else timeframe_minutes(tf)
        except ConfigError:
            minutes = 0
        if minutes <= 0:
            raise DataError(
                f"{path}: timeframe {tf!r} is not supported (use minutes, hours, days or weeks, e.g. 1m, 1h, 1d)"
            )
        if dir_kind is Kind.FUNDING:
            raise DataError(f"{path}: a kline file name inside a fundingRate directory")
        if dir_kind is not None and (dir_kind is not Kind.PERP or dir_market is not None):
            k = dir_kind  # the layout says it all
        elif kind_arg is not None and kind_arg is not Kind.FUNDING:
            k = kind_arg
            if k in (Kind.MARK, Kind.INDEX, Kind.PREMIUM, Kind.PERP) and market_arg == "spot":
                raise DataError(f"{path}: {k.value} bars exist only for futures, but market='spot' was given")
            if k is Kind.SPOT and market_arg == "um":
                raise DataError(f"{path}: kind='spot' contradicts market='um'")
        elif kind_arg is Kind.FUNDING:
            raise DataError(f"{path}: a kline file name, but kind='funding' was given")
        elif market_arg is not None:
            k = Kind.SPOT if market_arg == "spot" else Kind.PERP
        else:
            raise DataError(
                f"{path}: cannot tell whether this kline file holds spot or perpetual bars: the file "
                f"name is the same for both. Keep Binance's directory layout "
                f"(data/spot/monthly/klines/... or data/futures/um/monthly/klines/...) or pass "
                f"market='spot' or market='um' (and kind='mark', 'index' or 'premium' for those files)"
            )

    # The site's layout repeats symbol (and timeframe) as directories: they must agree.
    if type_idx is not None:
        parts = path.parent.parts
        after = list(parts[type_idx + 1 :])
        expect = [symbol, tf] if tf else [symbol]
        if after and after != expect:
            raise DataError(
                f"{path}: directories {'/'.join(after)} disagree with the file name "
                f"(expected {'/'.join(expect)} after {parts[type_idx]}/)"
            )
    return BinanceFile(path=path, kind=k, symbol=symbol, timeframe=tf, period=period)


# ---------------------------------------------------------------------------- checksums
def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror or exc})") from None
    return h.hexdigest()


def read_checksum_text(text: str, source: str) -> str:
    """The sha256 hex digest from a Binance ``.CHECKSUM`` file (``"<sha256>  <filename>"``)."""
    fields = text.strip().split()
    if not fields or not re.fullmatch(r"[0-9a-fA-F]{64}", fields[0]):
        raise ChecksumError(f"{source}: not a checksum file (expected '<sha256>  <filename>', got {text[:80]!r})")
    return fields[0].lower()


def verify_checksum_file(zip_path: Path) -> bool:
    """Check ``zip_path`` against its ``<zip>.CHECKSUM`` sibling.

    Returns
    -------
    bool
        ``True`` if verified, ``False`` if there is no ``.CHECKSUM`` file.

    Raises
    ------
    ChecksumError
        If the sha256 differs, naming the file and both digests.
    """
    ck = zip_path.with_name(zip_path.name + ".CHECKSUM")
    if not ck.is_file():
        return False
    try:
        text = ck.read_text(errors="replace")
    except OSError as exc:
        raise ChecksumError(f"{ck}: cannot read the checksum file ({exc.strerror or exc})") from None
    expected = read_checksum_text(text, str(ck))
    actual = sha256_file(zip_path)
    if actual != expected:
        raise ChecksumError(
            f"{zip_path}: sha256 {actual} does not match {ck.name} ({expected}); "
            f"the file is corrupt or incomplete, download it again"
        )
    return True

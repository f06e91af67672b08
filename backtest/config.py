"""Engine configuration: one frozen, keyword-only, validated dataclass with units in its names.

Example::

    from backtest.config import BacktestConfig
    cfg = BacktestConfig(initial_capital_quote=10_000, perp_leverage=3, margin_mode="cross")
    cfg.config_hash()          # '3f1c...' (12 hex chars), identifies the run
    BacktestConfig.from_toml("run.toml")

Every rate is a plain fraction (0.001 = 0.1% = 10 bps) except ``slippage_bps``. Per-column or
per-bar values for a parameter grid are passed to :func:`backtest.engine.run_backtest` as
``column_params`` (arrays); the config holds the scalar defaults.
"""

from __future__ import annotations

import hashlib
import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from data.errors import ConfigError, check_choice, check_known_keys

#: Flat maintenance margin rate used when neither a tiers file nor a rate is configured.
DEFAULT_MAINTENANCE_MARGIN_RATE = 0.005

ORDER_TYPES = ("taker", "maker")
MARGIN_MODES = ("isolated", "cross", "portfolio")
BORROW_SOURCES = ("constant", "market")
AFTER_LIQUIDATION = ("close_and_reenter", "close_spot", "hold_spot", "reenter")
#: The largest plausible value of each numeric setting and its unit: a value above it is refused
#: with the value it was probably meant to be (a fee of 50 is 50 bps, i.e. 0.005; a borrow
#: rate of 5 is 5%/yr, i.e. 0.05). Real extremes stay inside: Binance's top taker fee 0.1%,
#: borrow rates of hot coins above 100%/yr, 125x on BTCUSDT (200x on some venues).
PLAUSIBLE: dict[str, tuple[float, str]] = {
    "spot_taker_fee_rate": (0.01, "fraction of notional"),
    "spot_maker_fee_rate": (0.01, "fraction of notional"),
    "perp_taker_fee_rate": (0.01, "fraction of notional"),
    "perp_maker_fee_rate": (0.01, "fraction of notional"),
    "clearance_fee_rate": (0.05, "fraction of notional"),
    "spot_liquidation_fee_rate": (0.1, "fraction of notional"),
    "slippage_bps": (1000.0, "bps"),
    "borrow_annual_rate": (3.0, "fraction per year"),
    "perp_leverage": (200.0, "x"),
    "maintenance_margin_rate": (0.5, "fraction of notional"),
    "topup_margin_ratio": (1.0, "ratio, 1 = liquidation"),
    "rebalance_notional_band": (1.0, "fraction of the target notional"),
    "rebalance_delta_band": (1.0, "fraction of the spot leg"),
    "spot_margin_liquidation_level": (3.0, "ratio"),
    "spot_collateral_haircut": (1.0, "fraction"),
}


def implausible(name: str, value: float) -> str | None:
    """Why ``value`` is not a plausible ``name`` (see :data:`PLAUSIBLE`), with the value probably
    meant; None when it is plausible (or the setting has no bound)."""
    bound = PLAUSIBLE.get(name)
    if bound is None or not value > bound[0]:
        return None
    top, unit = bound
    if unit.startswith("fraction"):
        guesses = [(value / 1e4, "bps"), (value / 100, "percent")]
        meant = [f"{v:g} if {label} were meant" for v, label in guesses if v <= top]
        hint = f" ({'; '.join(meant)})" if meant else ""
        return f"{name}={value:g} is not a plausible {unit} (at most {top:g}){hint}"
    if name == "slippage_bps":
        ppm = f"; {value / 100:g} bps if millionths of the price (ppm) were meant" if value / 100 <= top else ""
        sale = "below zero" if value >= 1e4 else f"at {1 - value / 1e4:g}x"
        return (
            f"{name}={value:g} is beyond any plausible value (at most {top:g} bps = {top / 100:g}% of the price): "
            f"{value:g} bps is {value / 100:g}% of the price, so a buy would fill at {1 + value / 1e4:g}x the price "
            f"and a sale {sale}; 1 bp is 0.01% of the price, and 1 to 10 bps is usual for liquid pairs{ppm}"
        )
    if name == "perp_leverage":
        return (
            f"{name}={value:g} is beyond any plausible value (at most {top:g}x): leverage is notional / margin "
            f"(3 = 3x), and Binance's maximum is 125x (BTCUSDT, ETHUSDT; most symbols 20x to 75x), which a tiers "
            "file (tiers_path) checks per symbol"
        )
    return f"{name}={value:g} is beyond any plausible value (at most {top:g}{unit if unit == 'x' else ' ' + unit})"


#: Numeric settings that None turns off; a config file (TOML has no null) writes "none" for them.
OPTIONAL_NUMBERS = (
    "maintenance_margin_rate",
    "topup_margin_ratio",
    "rebalance_delta_band",
    "rebalance_every_hours",
    "rebalance_notional_band",
)


@dataclass(frozen=True, kw_only=True)
class BacktestConfig:
    """Settings of one engine run.

    Each rate or ratio names its unit and its plausible range (``Plausible: LOW to HIGH (UNIT)``,
    the bounds of :data:`PLAUSIBLE`): a value above it is refused naming the value probably meant.

    Parameters
    ----------
    initial_capital_quote : float
        Capital of each portfolio (target group), quote currency (USDT). Default 10,000.
    perp_leverage : float
        Perp leverage ``L`` (> 0). A column's capital share ``C`` at exposure 1 buys spot
        notional ``N = C*L/(L+1)`` and posts perp margin ``M = N/L`` (README: "Accounting"). Default 1.
        Plausible: above 0 to 200 (x).
    spot_taker_fee_rate, spot_maker_fee_rate : float
        Spot fee, fraction of fill notional. Default 0.001 both (Binance VIP0).
        Plausible: 0 to 0.01 (fraction of notional).
    perp_taker_fee_rate, perp_maker_fee_rate : float
        USDT-M perp fee, fraction of fill notional. Default 0.0005 taker, 0.0002 maker.
        Plausible: 0 to 0.01 (fraction of notional).
    order_type : {'taker', 'maker'}
        Which fee rate the engine's orders pay. Default 'taker' (market orders).
    slippage_bps : float
        Fixed slippage, basis points of the reference (bar open) price, against the trader.
        Plausible: 0 to 1000 (bps).
    volume_participation_coefficient : float
        Extra slippage, fraction of price per unit of participation ``|qty| / volume`` (volume
        of the last completed bar of that leg, coins). 0 disables the impact model.
    borrow_annual_rate : float
        Margin borrow rate of the short spot leg, fraction per 365-day year; charged per bar as
        simple hourly interest ``rate / 8760 * bar_hours`` on the borrowed coins' value.
        Plausible: 0 to 3 (fraction per year).
    borrow_rate_source : {'constant', 'market'}
        'market' uses ``Market.borrow_hourly_rate`` (fraction per hour) instead.
    execution_delay_bars : int
        Target decided at bar ``i``'s close executes at the open of bar ``i + delay``. >= 1;
        0 (fill at the deciding bar's close price) only with ``allow_same_bar_execution``.
    allow_same_bar_execution : bool
        Explicit opt-in for delay 0; results are flagged ``same_bar_execution``.
    margin_mode : {'isolated', 'cross', 'portfolio'}
        Isolated: one futures wallet per column. Cross: one futures wallet per portfolio.
        Portfolio (unified account, as Binance Portfolio Margin): one margin account per
        portfolio in which the spot wallet counts too: the margin balance is the futures
        wallet + unrealized perp PnL + quote cash + long spot at ``(1 - haircut)`` of its
        value - short (borrowed) spot at ``(1 + haircut)``; the perps are liquidated when it
        falls to their maintenance margin (no top-ups: there is one account).
    spot_collateral_haircut : float
        Portfolio margin only: fraction of spot value discounted from long spot collateral and
        added to short spot liabilities (0.05 = long spot counts 95%). Default 0.05.
        Plausible: 0 to 1 (fraction), below 1.
    tiers_path : str or None
        ccxt-format leverage tiers JSON (maintenance margin brackets per symbol). A leverage
        above a symbol's top bracket's ``maxLeverage`` is refused.
    markets_path : str or None
        ccxt-format markets JSON (``exchange.load_markets()``): lot size, minimum quantity and
        minimum notional per symbol and leg (:mod:`data.markets`). Both legs then trade whole
        lots of the pair's common lot (quantities rounded toward zero) and an order below the
        pair's minimum quantity or notional is skipped and counted (a full close always goes
        through). None (default): no lot or minimum.
    maintenance_margin_rate : float or None
        Flat maintenance margin rate (fraction of notional, cum 0); overrides ``tiers_path``.
        With neither set, :data:`DEFAULT_MAINTENANCE_MARGIN_RATE` is used.
        Plausible: 0 to 0.5 (fraction of notional).
    clearance_fee_rate : float
        Liquidation clearance fee, fraction of the liquidated notional. Default 0.005.
        Plausible: 0 to 0.05 (fraction of notional).
    topup_margin_ratio : float or None
        Margin-ratio threshold (maintenance margin / margin balance, fraction) at which the
        futures wallet is topped back up to ``notional / L`` from the spot wallet (selling spot
        coins if the quote cash is short). None disables top-ups.
        Plausible: above 0 to 1 (ratio, 1 = liquidation).
    topup_delay_bars : int
        Bars between detection (at a bar close) and the transfer: 0 = next bar open.
    rebalance_delta_band : float or None
        Re-hedge the perp to ``-spot qty`` when ``|spot + perp| > band * |spot|`` (coins).
        None disables it (the default: every order trades both legs by the same coins).
        Plausible: 0 to 1 (fraction of the spot leg).
    rebalance_every_hours : float or None
        Calendar rebalancing, hours (UTC-aligned periods: 24 = at the first bar of each UTC
        day): at each period's first bar a column holding its target trades back to it. None
        (default): no calendar trades.
    rebalance_notional_band : float or None
        Rebalancing band, a fraction of the target notional (0.10 = 10%), checked at every bar's
        close: when ``| |spot| x spot close - target notional | > band x target notional`` the
        column trades back to its target at the next open. Default 0.10.
        Plausible: 0 to 1 (fraction of the target notional).

        Rebalancing (either trigger) trades both legs by the same coins to ``target x portfolio
        equity x share x L/(L+1)`` spot notional (fees and slippage charged) and resets the
        futures margin balance to ``notional / L`` by a transfer (an unrealized loss is refilled;
        an unrealized profit stays in the futures wallet until realized). Both None: positions
        float with the price until the target changes.
    after_liquidation : {'close_and_reenter', 'close_spot', 'hold_spot', 'reenter'}
        What follows a liquidation (of the perp, or of a borrowed spot leg): close the
        unhedged leg at the next bar open and re-enter the standing target after
        ``reentry_cooldown_hours`` (default); close it and stay flat until the target changes;
        keep it until the target changes; or trade straight back to the target at the next bar.
    reentry_cooldown_hours : float
        Hours from a liquidation to the re-entry of ``close_and_reenter`` (at least one bar).
        Default 24.
    spot_margin_liquidation_level : float
        Margin level (total assets / (borrowed coins x spot price + accrued interest)) at which
        the margin account of a borrowed spot leg (reverse carry) is liquidated, checked at the
        bar's spot high. Binance: 1.1. Not in portfolio margin (one account). Default 1.1.
        Plausible: above 1 to 3 (ratio).
    spot_liquidation_fee_rate : float
        Fee of a margin-account liquidation, fraction of the bought-back value (Binance: 2%).
        Plausible: 0 to 0.1 (fraction of notional).
    """

    initial_capital_quote: float = 10_000.0
    perp_leverage: float = 1.0
    spot_taker_fee_rate: float = 0.001
    spot_maker_fee_rate: float = 0.001
    perp_taker_fee_rate: float = 0.0005
    perp_maker_fee_rate: float = 0.0002
    order_type: str = "taker"
    slippage_bps: float = 0.0
    volume_participation_coefficient: float = 0.0
    borrow_annual_rate: float = 0.05
    borrow_rate_source: str = "constant"
    execution_delay_bars: int = 1
    allow_same_bar_execution: bool = False
    margin_mode: str = "isolated"
    spot_collateral_haircut: float = 0.05
    tiers_path: str | None = None
    markets_path: str | None = None
    maintenance_margin_rate: float | None = None
    clearance_fee_rate: float = 0.005
    topup_margin_ratio: float | None = None
    topup_delay_bars: int = 0
    rebalance_delta_band: float | None = None
    rebalance_every_hours: float | None = None
    rebalance_notional_band: float | None = 0.10
    after_liquidation: str = "close_and_reenter"
    reentry_cooldown_hours: float = 24.0
    spot_margin_liquidation_level: float = 1.1
    spot_liquidation_fee_rate: float = 0.02

    def __post_init__(self) -> None:
        def num(name: str, lo: float | None = 0.0, strict: bool = False, optional: bool = False) -> None:
            v = getattr(self, name)
            if v is None and optional:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ConfigError(f"{name} must be a finite number, got {v!r}")
            if lo is not None and (v < lo or (strict and v == lo)):
                raise ConfigError(f"{name} must be {'>' if strict else '>='} {lo}, got {v!r}")
            object.__setattr__(self, name, float(v))

        def choice(name: str, options: tuple[str, ...]) -> None:
            check_choice(name, getattr(self, name), options)

        def integer(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ConfigError(f"{name} must be an integer >= {lo}, got {v!r}")

        num("initial_capital_quote", strict=True)
        num("perp_leverage", strict=True)
        for n in (
            "spot_taker_fee_rate",
            "spot_maker_fee_rate",
            "perp_taker_fee_rate",
            "perp_maker_fee_rate",
            "slippage_bps",
            "volume_participation_coefficient",
            "borrow_annual_rate",
            "clearance_fee_rate",
        ):
            num(n)
        num("maintenance_margin_rate", optional=True)
        num("spot_collateral_haircut")
        num("topup_margin_ratio", strict=True, optional=True)
        num("rebalance_delta_band", optional=True)
        num("rebalance_every_hours", strict=True, optional=True)
        num("rebalance_notional_band", optional=True)
        num("reentry_cooldown_hours")
        num("spot_margin_liquidation_level", lo=1.0, strict=True)
        num("spot_liquidation_fee_rate")
        for name in PLAUSIBLE:
            v = getattr(self, name)
            why = implausible(name, v) if isinstance(v, float) else None
            if why:
                raise ConfigError(why)
        choice("order_type", ORDER_TYPES)
        choice("margin_mode", MARGIN_MODES)
        choice("borrow_rate_source", BORROW_SOURCES)
        choice("after_liquidation", AFTER_LIQUIDATION)
        integer("execution_delay_bars", 0)
        integer("topup_delay_bars", 0)
        if not isinstance(self.allow_same_bar_execution, bool):
            raise ConfigError("allow_same_bar_execution must be true or false")
        if self.execution_delay_bars == 0 and not self.allow_same_bar_execution:
            raise ConfigError(
                "execution_delay_bars=0 fills at the close that produced the signal (look-ahead); "
                "set allow_same_bar_execution=True to accept it explicitly, or use a delay >= 1"
            )
        for path_field in ("tiers_path", "markets_path"):
            v = getattr(self, path_field)
            if v is not None and not isinstance(v, str):
                object.__setattr__(self, path_field, str(v))
        if self.spot_collateral_haircut >= 1:
            raise ConfigError(
                f"spot_collateral_haircut is a fraction below 1 (0.05 = 5%), got {self.spot_collateral_haircut}"
            )
        if self.margin_mode == "portfolio" and self.topup_margin_ratio is not None:
            raise ConfigError(
                "margin_mode='portfolio' has one account for spot and perps: margin top-ups do not apply "
                "(leave topup_margin_ratio unset)"
            )
        if self.maintenance_margin_rate is not None and self.maintenance_margin_rate >= 1:
            raise ConfigError(f"maintenance_margin_rate is a fraction below 1, got {self.maintenance_margin_rate}")

    # ------------------------------------------------------------------ I/O
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BacktestConfig:
        """Build from a mapping; unknown keys raise :class:`ConfigError` with a suggestion. The
        text ``"none"`` (or ``"off"``) turns off a setting of :data:`OPTIONAL_NUMBERS` (TOML has
        no null: ``rebalance_notional_band = "none"``)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"the engine config must be a table of settings, got {type(data).__name__}")
        bad = [k for k in data if not isinstance(k, str)]
        if bad:
            raise ConfigError(f"engine setting names must be text, got {bad[0]!r}")
        check_known_keys(data, cls.field_names(), "the engine config")
        data = {
            k: None if k in OPTIONAL_NUMBERS and isinstance(v, str) and v.strip().lower() in ("none", "off") else v
            for k, v in data.items()
        }
        return cls(**data)

    @classmethod
    def from_toml(cls, path: str | Path) -> BacktestConfig:
        """Read a TOML file: top-level keys, or an ``[engine]`` table."""
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        if "engine" in data and isinstance(data["engine"], dict):
            data = data["engine"]
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of all fields (JSON-serialisable)."""
        return asdict(self)

    def config_hash(self) -> str:
        """First 12 hex chars of the sha256 of the canonical JSON of :meth:`to_dict` (computed once:
        the config is immutable)."""
        cached = self.__dict__.get("_config_hash")
        if cached is None:
            text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
            cached = hashlib.sha256(text.encode()).hexdigest()[:12]
            object.__setattr__(self, "_config_hash", cached)
        return cached

    def replace(self, **changes: Any) -> BacktestConfig:
        """A copy with some fields changed (validated like the constructor)."""
        d = self.to_dict()
        d.update(changes)
        return type(self).from_dict(d)


@dataclass(frozen=True, kw_only=True)
class SpreadConfig:
    """What a cross-venue spread hedge needs beyond :class:`BacktestConfig` (rules: :mod:`backtest.spread`).

    Attributes
    ----------
    venue_transfer_delay_hours : float
        Hours from a transfer's departure from one venue to its arrival on the other (>= 0;
        rounded up to whole bars). Default 1 h: a USDT withdrawal on a fast network plus the
        venues' own processing.
    venue_transfer_fee_quote : float
        Flat fee per transfer, quote (>= 0; default 1.0, a typical USDT withdrawal fee on a cheap
        network).
    venue_rebalance_band : float or None
        Collateral is moved when the poorer leg's margin balance falls below ``1 - band`` of the
        two legs' mean (a fraction in (0, 1]; at leverage ``L`` a move of about ``band / L`` of the
        price). None: never (the poorer leg runs to its liquidation). Default 0.3.
    fee_a_rate, fee_b_rate : float or None
        The perp fee of leg A's and leg B's venue, a fraction of notional (taker or maker per
        ``BacktestConfig.order_type``). None: the venue's base-tier schedule, each fill at the
        one in force at its bar (``data/venues/<venue>.toml``, e.g. Hyperliquid's perp taker fee
        0.035% until 2025-05-05 03:00 UTC, 0.045% since; carry's defaults for a venue without one).
    tiers_dir : str or None
        A folder holding the venues' ccxt tiers files (``data.venues.VenueRules.tiers_path``);
        None, or a venue without a file there: the venue's flat maintenance rate per symbol
        (``VenueRules.maintenance_fallback``). ``BacktestConfig.maintenance_margin_rate`` set
        overrides both venues.
    leverage_a : float or None
        Leg A's perp leverage when it differs from leg B's (``BacktestConfig.perp_leverage``);
        None: the same. The legs' notional is then ``E * L_A * L_B / (L_A + L_B)`` and each
        venue's share of the capital ``L_B / (L_A + L_B)`` (A) and ``L_A / (L_A + L_B)`` (B).
    leg_a : {'perp', 'spot'}
        What leg A holds: the venue's perp (a funding-spread hedge, default) or its spot coins
        (a cash-and-carry whose perp is on another venue: long only, bought with venue A's quote
        cash; the fee is the venue's spot fee).
    switch_keeps_leg : bool
        When the legs switch venues (``run_spread(..., venues=...)``), a leg whose venue and side
        stay is kept open while the other's collateral moves (True, default: no round trip of
        that leg, its coins unhedged until the other leg opens on arrival), or closed with the
        other and reopened on arrival (False: hedged throughout, two more fills).
    margin_a, margin_b : {'isolated', 'cross'} or None
        The margin mode of leg A's venue and of leg B's: ``"cross"`` lets a portfolio's columns
        share that venue's account (liquidated as a whole), ``"isolated"`` margins each leg apart.
        None (default): ``BacktestConfig.margin_mode`` (both venues). A spot leg A has no futures
        account (``margin_a`` must stay None or ``"isolated"``).
    """

    venue_transfer_delay_hours: float = 1.0
    venue_transfer_fee_quote: float = 1.0
    venue_rebalance_band: float | None = 0.3
    fee_a_rate: float | None = None
    fee_b_rate: float | None = None
    tiers_dir: str | None = None
    leg_a: str = "perp"
    leverage_a: float | None = None
    switch_keeps_leg: bool = True
    margin_a: str | None = None
    margin_b: str | None = None

    def __post_init__(self) -> None:
        check_choice("leg_a", self.leg_a, ("perp", "spot"))
        for name in ("margin_a", "margin_b"):
            if getattr(self, name) is not None:
                check_choice(name, getattr(self, name), ("isolated", "cross"))
        if self.leg_a == "spot" and self.margin_a == "cross":
            raise ConfigError("margin_a='cross': a spot leg A has no futures account to share (leg_a='spot')")
        if not isinstance(self.switch_keeps_leg, bool):
            raise ConfigError(f"switch_keeps_leg must be True or False, got {self.switch_keeps_leg!r}")
        la = self.leverage_a
        if la is not None:
            if isinstance(la, bool) or not isinstance(la, (int, float)) or not math.isfinite(la) or not la > 0:
                raise ConfigError(f"leverage_a must be a number > 0 (leg A's perp leverage, x) or None, got {la!r}")
            why = implausible("perp_leverage", float(la))
            if why:
                raise ConfigError(why.replace("perp_leverage", "leverage_a"))
            if self.leg_a == "spot":
                raise ConfigError("leverage_a is leg A's perp leverage: a spot leg A has none (leg_a='spot')")
            object.__setattr__(self, "leverage_a", float(la))
        for name in ("venue_transfer_delay_hours", "venue_transfer_fee_quote", "fee_a_rate", "fee_b_rate"):
            v = getattr(self, name)
            if v is None and name.startswith("fee"):
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}")
            object.__setattr__(self, name, float(v))
        for name in ("fee_a_rate", "fee_b_rate"):
            v = getattr(self, name)
            why = implausible("perp_taker_fee_rate", v) if v is not None else None
            if why:
                raise ConfigError(why.replace("perp_taker_fee_rate", name))
        band = self.venue_rebalance_band
        if band is not None:
            if isinstance(band, bool) or not isinstance(band, (int, float)) or not 0 < band <= 1:
                raise ConfigError(
                    f"venue_rebalance_band must be a fraction in (0, 1] (0.3: move collateral when the poorer "
                    f"leg's margin balance is below 70% of the mean) or None, got {band!r}"
                )
            object.__setattr__(self, "venue_rebalance_band", float(band))
        if self.tiers_dir is not None and not isinstance(self.tiers_dir, str):
            object.__setattr__(self, "tiers_dir", str(self.tiers_dir))

    def cross(self, margin_mode: str) -> tuple[bool, bool]:
        """Whether leg A's venue and leg B's are in cross margin, ``margin_mode`` (the
        :class:`BacktestConfig`'s) standing for a venue without its own (a spot leg A: never)."""
        a = self.leg_a != "spot" and (self.margin_a or margin_mode) == "cross"
        return a, (self.margin_b or margin_mode) == "cross"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

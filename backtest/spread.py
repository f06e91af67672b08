"""Hedges whose legs sit on different venues: a perp on venue A (or its spot) against a perp on venue B.

``run_spread(leg_a, leg_b, targets, config, spread) -> SpreadResult``

The same coin's perp pays different funding on different venues, often for weeks. A spread
hedge holds ``s`` coins of the perp on venue A and ``q = -s`` coins of the perp on venue B: it
collects ``funding(B) - funding(A)`` per coin and notional when long A (``s > 0``). With
``SpreadConfig(leg_a="spot")`` leg A is spot coins bought on venue A instead: a cash-and-carry
whose perp is on another venue. Each leg lives on its own venue, with that venue's prices,
funding settlements, fees, maintenance tiers and margin account; collateral moves between the
venues only by transfers that take time and cost a fee. ``leg_a`` and ``leg_b`` are two
:class:`~data.market.Market` objects on one bar index with the same coins in the same order
(see :func:`data.venue_pair.load_venue_pair`); column ``c`` of the targets trades coin
``column_symbol[c]`` on both.

The rules (the plain-Python reference ``tests/reference_spread.py`` follows them step by step)
------------------------------------------------------------------------------------------------
Units: coins, quote (the account currency, USDT; a venue quoted in another currency, USDC, keeps
its own amounts and is valued at a rate, see *Quote currencies*), fractions of notional for rates. ``L`` is ``perp_leverage`` (leg B's perp, and leg A's unless
``SpreadConfig.leverage_a`` sets ``L_A`` apart), ``fee_A``/``fee_B``
the venues' fees (taker or maker per ``order_type``; a spot leg's is its venue's spot fee; each
fill pays the one in force at its bar, :func:`venue_fee_schedule`, unless a fee is given),
``delay`` the transfer delay in whole bars (``ceil(venue_transfer_delay_hours / bar hours)``),
``fee_T`` the flat transfer fee (quote). Every column is its own portfolio, with its own two
venue accounts (in isolated margin; see *Cross margin per venue* for portfolios of several).

* **Capital split and shares.** Each venue's *share* ``w`` of the column's margin balances is
  what its leg needs at the target leverage: two perps ``1/2`` each (equal notional, equal
  margin), or ``L_B / (L_A + L_B)`` and ``L_A / (L_A + L_B)`` at different leverages (margins
  ``N / L_A`` and ``N / L_B``); a spot leg A ``L / (L + 1)`` (it pays the notional ``N`` in full)
  and the perp ``1 / (L + 1)`` (its margin ``N / L``). A column starts with ``initial_capital_quote`` split
  by the shares into venue A's wallet ``bal_A`` and venue B's ``bal_B``. Each perp is in
  isolated margin on its venue: its margin balance is ``mb = bal + pos * price - cost``
  (``cost = pos * entry``); a spot leg's ``mb_A = bal_A + s * price`` (its quote cash and its
  coins; no cost basis, no funding, no perp liquidation). A negative target on a spot leg is
  a *reverse carry across venues*: leg A sells ``|s|`` borrowed coins in venue A's margin
  account (its cash then holds its share and the sale's proceeds; ``mb_A = bal_A + s * price``
  is its net assets), leg B holds the perp long. The borrowed coins pay interest in whole hours
  as Binance charges it (one hour at borrowing, one at each full hour; ``rules.borrow_nb``) at
  ``borrow_annual_rate / 8760`` per hour (or leg A's ``borrow_hourly_rate`` with
  ``borrow_rate_source="market"``), out of venue A's cash into the ``borrow`` component, after
  the close (step 4b); venue A's margin account is called when its margin level (cash / borrowed
  value) reaches ``spot_margin_liquidation_level`` on the path from the spot open to the bar's
  high (step 2, before leg B): the coins are bought back there with the fee
  ``spot_liquidation_fee_rate`` (floored at the cash left; a balance left negative is covered by
  the insurance fund, in ``liquidation``), then the after-liquidation policy applies. Its margin
  ratio is the call level over its margin level (1 at the call). In a collateral rebalance its
  free quote is what keeps its margin level at 2: ``bal_A - 2 * |s| * price``.
* **Timing.** As in the single-venue engine: target row ``i`` is read at bar ``i``'s close
  and executed at the open of bar ``i + execution_delay_bars``; a bar trades only where both
  legs have a reference price (``ref_valid`` of both markets), else the order waits for the
  next bar where both have one while the target persists (a NaN row after it keeps nothing).
  Rows executing where a leg is not tradable (``Market.tradable`` of either) are 0.
* **Per bar ``j``**, in this order:

  0. *Arrival*: a transfer whose arrival bar is ``j`` or earlier is credited to its venue's
     wallet (event ``transfer``, cash ``+amount``).
  1. *Orders* (both legs' reference prices valid): revalue both legs to the open reference
     prices (perp opens, a spot leg's spot open; price moves split into hedged and unhedged
     coins as in the engine: leg A's into ``spot_price``, called the *leg A price* component
     here, leg B's into ``perp_price``). The equity at the open is
     ``E = mb_A + mb_B + in_flight``.

     *Sizing*: a new target ``x`` (finite, not the last executed one) or a re-entry due (to
     the last target when the row is NaN) sizes both legs to ``N = max(E, 0) * |x| * w_A * k_A``
     quote per leg (two perps: ``E * |x| * L / 2``, or ``E * |x| * L_A * L_B / (L_A + L_B)``;
     spot: ``E * |x| * L / (L + 1)``), but at most what each venue holds can carry:
     ``min(mb_A * k_A, mb_B * L)`` (``k_A`` = ``L_A`` for a perp, 1 for spot; after a
     liquidation one wallet is nearly empty);
     ``s = sign(x) * N / px_A``, ``q = -s``. A sizing held short by that cap (by more than 1e-9
     of ``N``: less is rounding) is *capped*: the
     collateral check (step 6) then runs even with a flat leg; a collateral rebalance with
     both legs open resizes them to the target (no longer capped), and with a flat leg, once
     its transfer is sent, the column sizes to its target at the transfer's arrival bar (a
     re-entry due then); a liquidation clears it (the after-liquidation policy decides what
     follows). A cap below
     1e-9 of the equity (or of the initial capital) opens nothing, and an order of at most 1e-9 of the leg's position is
     not sent (rounding residues).

     Else a pending close (after a liquidation) closes both legs (and is cleared).

     Else a *collateral rebalance* due (step 6) first trades both legs back to the last
     target's size on ``E`` (a rise of the price grows the notional, and with it the winning
     leg's initial margin), then moves collateral from the venue above its share to the one
     below: ``need = w_poor * (mb_A + mb_B) - mb_poor`` (two perps: half the gap). The rich
     venue's free quote is its cash for a spot leg, else ``bal - |pos| * px / L`` (its own
     ``L``); a perp leg
     whose free quote is short of the need while in profit is *re-struck* (closed and
     reopened at the open: two fills, so its unrealized profit, which no exchange lets leave,
     is realized into its wallet). ``amount = min(need, free)`` is sent if it exceeds
     ``fee_T``: it leaves the rich wallet now and arrives, less ``fee_T``, at the open of bar
     ``j + delay`` (``delay`` 0: at once). The fee is a cost in the ``fees`` component (event
     ``transfer`` with its fee); the amount in flight counts in the equity, in neither margin
     balance. At most one transfer is in flight per column.

     Fills: leg A first, then leg B, each at its reference price plus slippage
     (``slippage_bps`` + ``volume_participation_coefficient * |dq| / volume`` of the leg's own
     venue), fee ``|dq| * price * fee_V``; a perp's realized PnL and fee go to its venue's
     wallet, a spot buy costs ``dq * price + fee`` of venue A's cash (which may dip below zero
     by the fee, as the single-venue engine's spot wallet).
  2. *Liquidation*, leg A then leg B (perps only), each against its own venue's adverse mark
     extreme of the bar (a long against the low, a short against the high) with its venue's
     maintenance tiers (isolated margin: the closed-form liquidation price, the mark open on a
     gap), the clearance fee ``clearance_fee_rate * notional`` floored at the margin left and an
     insurance cover of a negative wallet, as in the engine. The other leg is then unhedged;
     per ``after_liquidation`` it is closed at the next valid open and the column re-enters
     its target after ``reentry_cooldown_hours`` (``close_and_reenter``, default) or stays
     flat until the target changes (``close_spot``); ``hold_spot`` keeps the other leg open
     and ``reenter`` re-enters at the next open.
  3. *Funding*: each perp receives ``-position * funding_value`` of its own venue at that
     venue's settlements (the price the venue pays at: the mark, or its stand-in), into its
     wallet.
  4. *Close*: each leg is revalued to its venue's mark close (a spot leg: its spot close; an
     invalid bar keeps its last valuation price).
  5. *Outputs*: equity ``bal_A + bal_B + in_flight + upnl_A + upnl_B`` (a spot leg's
     "unrealized" is its coins' value); the eight cumulative components; positions ``s`` and
     ``q``; per perp leg the margin ratio (maintenance / margin balance) at the close.
  6. *Collateral check*: with no transfer in flight, both legs open (or the last sizing
     capped) and both bars valid, when a venue's margin balance is below
     ``(1 - venue_rebalance_band)`` of its share of the two (two perps:
     ``min(mb_A, mb_B) < (1 - band) * (mb_A + mb_B) / 2``), a collateral rebalance is due at the
     next open (decided at the close, done at the next open: no look-ahead); an infinite band
     (None) never. A sizing does not cancel a rebalance due (it is done at the next open
     without another order); a liquidation does.

* **Quote currencies.** With ``quote_rates`` (``{"B": rates}``: the account currency per unit of
  leg B's quote at each bar's open and close, e.g. USDT per USDC from the catalog's USDCUSDT
  spot bars, :func:`data.venue_pair.load_venue_pair`), that venue's wallet, margin balance,
  position PnL, fees, slippage, funding and liquidation stay in its own quote (the venue's
  rules, tiers and liquidation prices are its own) and each amount counts in the account
  currency at the venue's rate *at that moment*: the open's rate ``r_open[j]`` for step 0 and
  1, the close's ``r_close[j]`` from step 2 on. Its margin balance ``mb`` is revalued when the
  rate moves, twice a bar: ``mb * (r_open[j] - r_close[j-1])`` before step 0 and
  ``mb * (r_close[j] - r_open[j])`` after step 1, both in the ``unhedged`` component (an
  unhedged holding of the venue's quote currency; ``totals.quote_fx`` their sum). Sizing, the
  wallets' cap, the collateral shares and the rebalance band compare account-currency values
  (``mb * r``); leg A's coins ``s = sign(x) * N / (px_A * r_A)``; a transfer of ``amount``
  (account currency) takes ``amount / r`` of the sender's quote and credits ``(amount - fee_T) /
  r`` of the receiver's at its arrival; each venue's initial share is ``share / r_open[0]`` of
  its quote. Events' ``cash`` and ``fee`` are in the account currency. Without ``quote_rates``
  every rate is 1 (two venues quoted differently are then taken 1:1, flagged
  ``usdc_usdt_parity``).
* **Venue switching.** A leg may be given several venues (``run_spread([m1, m2, m3], [m1, m2,
  m3], targets, venues=(va, vb))``: per target row and column the venue each leg should be on,
  NaN to stay). Each venue of a leg keeps its own prices, funding, fee and tiers; a column holds
  one position per leg, on the venue the leg is on now, and starts with its capital on the
  venues of its first non-zero target's row. A row with a finite, non-zero target naming
  another venue for a leg is a *switch*, executed at the open like a sizing (step 1): a leg that
  changes venue, or side, is closed on its venue; the wallet of each venue left (all of it,
  realized PnL included) is sent to that leg's new venue by a transfer (``fee_T``, ``delay``;
  a balance of at most ``fee_T`` is not worth sending and stays there, *idle*: in the equity,
  out of the sizing); the column then sizes to the target on the new venues (as a sizing,
  capped by what each venue holds) at the transfer's arrival bar, at once when nothing is in
  flight. A leg that keeps its venue and side stays open meanwhile (a spot leg is not sold to
  move its hedge), its coins unhedged until the other leg opens (``SpreadConfig.switch_keeps_leg``
  False: it closes too, and both reopen on arrival: hedged throughout, two more fills). A switch waits while a transfer
  is in flight (no sizing that bar); a pending close or a rebalance does not. Events name the
  venue of each leg (a departure the venue left, an arrival the venue reached). With quote
  rates (one per venue of a leg), the wallet sent leaves at the rate of the venue left and is
  credited at the new venue's (the open's rate when it leaves; at arrival, the rate then); an
  idle balance counts at the rate of the moment it became idle (at most a transfer fee, not
  revalued). ``resume`` is supported.
* **Identity.** ``equity - initial = funding + fees + slippage + borrow + spot_price +
  perp_price + liquidation + unhedged`` at every bar (``borrow``: a borrowed spot leg's interest),
  transfer fees inside ``fees``, the quote currencies' revaluation inside ``unhedged``; with
  rates the equity is ``mb_A * r_A + mb_B * r_B + in_flight``; with venue switching it adds
  the idle balances.

* **Cross margin per venue** (``BacktestConfig.margin_mode="cross"`` for both venues, or per
  venue ``SpreadConfig.margin_a`` / ``margin_b``). The columns of a portfolio
  (``Targets.group``; a target that is not a :class:`~backtest.targets.Targets`: all columns one
  portfolio) share the futures account of each venue in cross margin: venue A's account is the wallets
  ``bal_A`` of all its columns (each column's wallet is the account's ledger of that coin's
  capital: its own ``initial_capital_quote``, fills, funding, transfers and sizing, as above)
  plus their perps' unrealized PnL, against the sum of their maintenance margins (each coin's
  tiers of the venue). Step 2 then checks accounts, not legs, after every column's orders of the
  bar: leg A's venue's account (unless leg A is spot), then leg B's; a venue left in isolated
  margin then checks its legs one by one, as above. An account is liquidated
  when its margin balance meets its maintenance margin with every perp at its bar's adverse
  mark extreme; its perps then all close at the first point of their paths from the mark open
  (the same fraction of each one's path, found by bisection; the open on a gap; an invalid bar
  keeps a leg's valuation price) where balance and maintenance meet, in column order, each with
  the clearance fee floored at what the account holds after that close. An account left below
  zero is reset by the insurance fund (booked on the last leg closed); a column's wallet left
  below zero is brought to zero by the others' wallets on that venue, each in proportion to its
  balance (the account's loss shared: in each column's ``liquidation`` component, a ``transfer``
  event per share). Each liquidated column then follows the after-liquidation policy. The
  margin ratio of a leg is its account's (maintenance over margin balance at the close). A
  borrowed spot leg A keeps its own margin account (checked after the accounts). One column's
  portfolios in cross margin equal isolated margin (one position per account). Cross runs use
  one thread and no venue switching.

What it leaves out (stated, not hidden): capital shared across a portfolio's columns beyond the
margin accounts (each column sizes and rebalances on its own ledger: a cross account lets one
coin's leg draw on the others' margin, not move capital between coins), and partial
liquidation (an account's perps close together).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from backtest.buffers import OUTPUT_POOL
from backtest.config import DEFAULT_MAINTENANCE_MARGIN_RATE, BacktestConfig, SpreadConfig, implausible
from backtest.kernels.layout import (
    C_FEE,
    C_FUND,
    F_CASHFLOW_EVENTS,
    F_COMPONENTS,
    F_EQUITY,
    F_MARGIN,
    F_POSITIONS,
    K_BORROW,
    K_FILL,
    K_FUNDING,
    K_LIQ,
    K_TRANSFER,
    N_COMP,
    N_REC_FIELDS,
    NSX,
    R_BAR,
    R_CASH,
    R_COL,
    R_FEE,
    R_KIND,
    R_LEG,
    R_PRICE,
    R_QTY,
    R_RATE,
    X_BALA,
    X_BALB,
    X_COMP,
    X_FBAR,
    X_FUNDA,
    X_FX,
    X_INIT,
    X_LASTX,
    X_NTR,
    X_PRE,
    X_RA,
    X_RB,
    X_TFEE,
    X_VA,
    X_VB,
    X_VENA,
    X_VENB,
    Book,
    MarketArrays,
    SpreadOutputs,
    SpreadParams,
    SpreadRates,
    SpreadSettings,
    SpreadVenues,
    Tiers,
)
from backtest.targets import Targets
from backtest.tiers import TierTable, load_tiers
from data.errors import ConfigError
from data.market import Market
from data.units import MS_PER_HOUR, bar_hours

__all__ = ["SPREAD_PARAMS", "SpreadResult", "SpreadState", "run_spread", "venue_fee", "venue_tiers"]

COMPONENTS = ("funding", "fees", "slippage", "borrow", "spot_price", "perp_price", "liquidation", "unhedged")
#: Parameters of a spread run that may vary per column (C,) or per bar and column (T, C).
SPREAD_PARAMS = (
    "perp_leverage",
    "leverage_a",
    "slippage_bps",
    "volume_participation_coefficient",
    "clearance_fee_rate",
    "venue_rebalance_band",
    "venue_transfer_fee_quote",
    "fee_a_rate",
    "fee_b_rate",
)
#: Outputs a spread run can keep per bar (the others hold their final row).
OUTPUTS = ("equity", "components", "positions", "margin", "events")
KIND_NAMES = {K_FILL: "fill", K_FUNDING: "funding", K_BORROW: "borrow", K_TRANSFER: "transfer", K_LIQ: "liquidation"}
AFTER_LIQ = {"close_and_reenter": 3, "close_spot": 0, "hold_spot": 1, "reenter": 2}


def _ro(a: np.ndarray, dtype: Any = np.float64, copy: bool = False) -> np.ndarray:
    """``a`` as a read-only C-ordered array of ``dtype`` (one compiled kernel type): a read-only
    view when it already is one (no copy of a large target grid), else a copy; ``copy=True``
    for what a result keeps (never a view of the caller's arrays)."""
    a = np.array(a, dtype=dtype, copy=True, order="C") if copy else np.ascontiguousarray(a, dtype=dtype).view()
    a.flags.writeable = False
    return a


def _flex(name: str, value: Any, shape: tuple[int, int]) -> np.ndarray:
    """:func:`backtest.engine.flex_param`, refusing NaN (no spread parameter means "none" by NaN)."""
    from backtest.engine import flex_param

    a = flex_param(name, value, shape)
    if np.isnan(a).any():
        raise ConfigError(f"column parameter {name!r} has NaN values")
    return a


def _fee_param(fees: np.ndarray) -> Any:
    """A fee schedule per bar ((T,) or (T, venues)) as a flexible parameter: one row when it
    never changes (no (T, C) array for a constant), else (T, 1) or (T, venues)."""
    fees = np.asarray(fees, dtype=np.float64)
    if fees.ndim == 1:
        fees = fees[:, None]
    if len(fees) == 0 or (fees == fees[:1]).all():
        return np.ascontiguousarray(fees[:1])
    return np.ascontiguousarray(fees)


def _venue_quote(market: Market) -> str:
    from data.venues import known_venues, venue_rules

    if market.venue in known_venues():
        return venue_rules(market.venue).quote
    return "USDC" if all(s.endswith("USDC") for s in market.perp_symbols) else "USDT"


def venue_fee(market: Market, order_type: str, config: BacktestConfig, kind: str = "perp") -> tuple[float, str]:
    """The perp (or spot) fee of a leg's venue at the market's first bar, and where it comes from
    (what a strategy's fee hurdle takes; the engine charges :func:`venue_fee_schedule`)."""
    fees, src = venue_fee_schedule(market, order_type, config, kind)
    return float(fees[0]) if len(fees) else float(getattr(config, f"{kind}_{order_type}_fee_rate")), src


def venue_fee_schedule(
    market: Market, order_type: str, config: BacktestConfig, kind: str = "perp"
) -> tuple[np.ndarray, str]:
    """The perp (or spot) fee of a leg's venue in force at each bar, (T,) fractions of notional,
    from the venue's base-tier schedules (``data/venues/<venue>.toml``: a fill pays the schedule
    of its bar, e.g. Hyperliquid's perp taker fee 0.035% until 2025-05-05 03:00 UTC, 0.045%
    since), and where it comes from (naming each change inside the window); carry's default
    for a venue without a rules file."""
    from data.venues import known_venues, venue_rules

    key = f"{kind}_{order_type}_fee_rate"
    if market.venue not in known_venues() or not market.n_bars:
        value = float(getattr(config, key))
        return np.full(market.n_bars, value), f"carry's default {key} (no rules file for venue {market.venue})"
    rules = venue_rules(market.venue)
    index = market.index
    starts = [index[0]] + [
        pd.Timestamp(p.valid_from) for p in rules.fees if index[0] < pd.Timestamp(p.valid_from) <= index[-1]
    ]
    fees = np.empty(len(index))
    changes = []
    for k, t in enumerate(starts):
        rate = float(rules.fees_at(t).as_config()[key])
        at = index.searchsorted(t)
        fees[at:] = rate
        if k:
            changes.append(f"{rate:g} from {t:%Y-%m-%d %H:%M}")
    src = f"{rules.path.name} ({order_type})"
    return fees, src if not changes else f"{src}; then " + ", ".join(changes)


def venue_tiers(market: Market, config: BacktestConfig, spread: SpreadConfig) -> tuple[TierTable, str]:
    """The maintenance brackets of a leg's venue and where they come from: the config's flat
    ``maintenance_margin_rate`` if set; else the venue's tiers file in ``spread.tiers_dir``; else
    the venue's flat rate per symbol (``VenueRules.maintenance_fallback``); carry's default flat
    rate for a venue without a rules file."""
    from data.venues import known_venues, venue_rules

    n = market.n_symbols
    if config.maintenance_margin_rate is not None:
        return TierTable.flat(n, config.maintenance_margin_rate), f"flat {config.maintenance_margin_rate:g} (config)"
    if market.venue not in known_venues():
        return TierTable.flat(n, DEFAULT_MAINTENANCE_MARGIN_RATE), (
            f"flat {DEFAULT_MAINTENANCE_MARGIN_RATE:g} (carry's default: no rules file for venue {market.venue})"
        )
    rules = venue_rules(market.venue)
    path = rules.tiers_path(spread.tiers_dir) if spread.tiers_dir is not None else None
    if path is not None:
        return load_tiers(path, market.perp_symbols), str(path)
    t0 = market.index[0] if market.n_bars else None
    rows = [rules.maintenance_rule(sym, t0) for sym in market.perp_symbols]
    brackets = [
        [{"minNotional": 0.0, "maxNotional": None, "maintenanceMarginRate": r.rate, "maxLeverage": r.max_leverage}]
        for r in rows
    ]  # (the symbol's first bracket: its rate and, where the rules give it, the venue's maximum leverage)
    table = TierTable.from_brackets(brackets, source=f"{rules.path.name}, first bracket", origin="venue rules")
    return table, f"{rules.path.name}: flat " + ", ".join(f"{s} {r.rate:g}" for s, r in zip(market.perp_symbols, rows))


def _leg_arrays(
    m: Market, delay: int, last: tuple[np.ndarray, np.ndarray, np.ndarray] | None, spot: bool = False
) -> MarketArrays:
    """A leg's kernel inputs: its perp and mark fields (the spot fields are not read: the perp's);
    ``last``: (close, valid, volume) of the bar before the first, from a resumed run. A ``spot``
    leg: its spot prices in the perp and mark fields and no funding."""
    if spot:
        px = {"open": m.spot_open, "high": m.spot_high, "low": m.spot_low, "close": m.spot_close}
        none = _ro(np.zeros(m.shape))
        m = dataclasses.replace(
            m,
            perp_open=px["open"],
            perp_close=px["close"],
            perp_volume=m.spot_volume,
            mark_open=px["open"],
            mark_high=px["high"],
            mark_low=px["low"],
            mark_close=px["close"],
            funding_value=none,
            funding_rate=none,
            funding_count=np.zeros(m.shape, np.int32),
            funding_time_ms=None,
        )
    if delay == 0:
        ref = np.empty_like(m.perp_close)
        ref[0], ref[1:] = np.nan, m.perp_close[:-1]
        ok = np.zeros_like(m.valid)
        ok[1:] = m.valid[:-1]
        if last is not None:  # bar 0's reference is the previous run's last close
            ref[0], ok[0] = last[0], last[1]
        po_ref, ref_valid = _ro(ref), _ro(ok, np.bool_)
    else:
        po_ref, ref_valid = m.perp_open, m.valid
    zeros = _ro(np.zeros(m.n_symbols) if last is None else last[2])
    return MarketArrays(
        po_ref,
        po_ref,
        ref_valid,
        m.perp_close,
        m.perp_volume,
        m.perp_volume,
        m.mark_open,
        m.mark_high,
        m.mark_low,
        m.mark_close,
        m.valid,
        m.funding_value,
        m.funding_rate,
        zeros,
        zeros,
        m.perp_open,
        m.perp_high,
        m.perp_low,
        _ro(m.index.as_unit("ms").asi8, np.int64),
    )


def _stack(legs: list[MarketArrays]) -> MarketArrays:
    """One leg's venues' market arrays side by side: venue ``v``'s symbol ``n`` at ``v * N + n``
    (one venue: its own arrays)."""
    if len(legs) == 1:
        return legs[0]
    fields = {}
    for name in MarketArrays._fields:
        parts = [getattr(m, name) for m in legs]
        joined = np.concatenate(parts, axis=parts[0].ndim - 1)
        fields[name] = parts[0] if name == "time_ms" else _ro(joined, parts[0].dtype)  # (one type: one compiled kernel)
    return MarketArrays(**fields)


def _stack_tiers(tiers: list[Tiers]) -> Tiers:
    """One leg's venues' maintenance brackets side by side (as :func:`_stack`), padded to the
    most brackets (the padding is past each symbol's ``n`` brackets: never read)."""
    if len(tiers) == 1:
        return tiers[0]
    k = max(t.hi.shape[1] for t in tiers)

    def pad(a: np.ndarray, fill: float) -> np.ndarray:
        return np.pad(a, ((0, 0), (0, k - a.shape[1])), constant_values=fill)

    return Tiers(
        _ro(np.concatenate([pad(t.lo, np.inf) for t in tiers])),
        _ro(np.concatenate([pad(t.hi, np.inf) for t in tiers])),
        _ro(np.concatenate([pad(t.mmr, 0.0) for t in tiers])),
        _ro(np.concatenate([pad(t.cum, 0.0) for t in tiers])),
        _ro(np.concatenate([t.n for t in tiers]), np.int64),
        all(t.hi_sorted for t in tiers),
    )


@dataclass(frozen=True)
class _VenueRows:
    """The venue schedule of a switching run: ``a``/``b`` (T, C) venue per target row (NaN:
    stay), ``first`` each column's starting venues (C,) x 2."""

    a: np.ndarray
    b: np.ndarray
    first: tuple[np.ndarray, np.ndarray]

    def after(self, tail: tuple[np.ndarray, np.ndarray]) -> _VenueRows:
        """These rows after ``tail``'s (a resumed run's rows decided before its first bar)."""
        return _VenueRows(np.concatenate([tail[0], self.a]), np.concatenate([tail[1], self.b]), self.first)

    def tradable(
        self,
        legs_a: list[Market],
        legs_b: list[Market],
        column_symbol: np.ndarray,
        lag: int,
        start: tuple[np.ndarray, np.ndarray],
    ) -> np.ndarray:
        """(T, C): whether both venues the row executing at each bar names (else the last one
        named, else ``start``: where the columns are) trade the column's coin at that bar; rows
        beyond the bars' count are ``t_off`` rows decided before bar 0."""
        T = legs_a[0].n_bars
        out = np.ones((T, self.a.shape[1]), bool)
        row = np.arange(T) + (len(self.a) - T) - lag  # the row executing at each bar
        for rows, first, legs in ((self.a, start[0], legs_a), (self.b, start[1], legs_b)):
            on = pd.DataFrame(rows).ffill().to_numpy()
            on = np.where(np.isnan(on), first, on)
            at_bar = np.where((row >= 0)[:, None], on[np.clip(row, 0, None)], first[None, :]).astype(np.int64)
            trad = np.stack([np.asarray(m.tradable)[:, column_symbol] for m in legs])  # (V, T, C)
            out &= np.take_along_axis(trad, at_bar[None], axis=0)[0]
        return out


def _venue_rows(venues: Any, tg: Targets, n_a: int, n_b: int) -> _VenueRows:
    """``venues`` checked: two (T, C) (or (T, N): per coin) arrays of venue indices or NaN."""
    T, C = tg.values.shape
    if not isinstance(venues, (tuple, list)) or len(venues) != 2:
        raise ConfigError("venues must be a pair (leg A's venue, leg B's venue) of arrays per bar and column")
    out = []
    for leg, v, n in (("A", venues[0], n_a), ("B", venues[1], n_b)):
        a = np.asarray(v, dtype=np.float64)
        if a.ndim == 0:
            a = np.full((T, C), float(a))
        elif a.shape == (T, tg.column_symbol.max() + 1 if C else 0) and a.shape[1] != C:
            a = a[:, tg.column_symbol]
        if a.shape != (T, C):
            raise ConfigError(f"venues of leg {leg}: shape {a.shape}, expected (bars, columns) = {(T, C)}")
        bad = ~np.isnan(a) & ~np.isin(a, np.arange(n))
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise ConfigError(
                f"venues of leg {leg}: {a[r, c]!r} at row {r}, column {c} is no venue index (0..{n - 1}, or NaN)"
            )
        out.append(a)
    a, b = out
    x = tg.values
    named = np.isfinite(x) & (x != 0.0)
    first = []
    for v in (a, b):  # the first row with a non-zero target that names a venue, else the first named, else 0
        lead = np.where(named & ~np.isnan(v), v, np.nan)
        pick = pd.DataFrame(lead).bfill().to_numpy()[0] if T else np.full(C, np.nan)
        alt = pd.DataFrame(v).bfill().to_numpy()[0] if T else np.full(C, np.nan)
        first.append(np.nan_to_num(np.where(np.isnan(pick), alt, pick), nan=0.0))
    return _VenueRows(np.ascontiguousarray(a), np.ascontiguousarray(b), (first[0], first[1]))


def _tiers_arrays(t: TierTable) -> Tiers:
    hi_sorted = all(np.all(np.diff(t.max_notional[n, : t.n_tiers[n]]) >= 0) for n in range(len(t.n_tiers)))
    return Tiers(_ro(t.min_notional), _ro(t.max_notional), _ro(t.mmr), _ro(t.cum), _ro(t.n_tiers, np.int64), hi_sorted)


def _last_bar(m: Market, before: tuple[np.ndarray, np.ndarray, np.ndarray] | None, spot: bool = False):
    """(close, valid, volume) of the leg's last bar, perp or ``spot`` (the bar before it for an
    empty market)."""
    if m.n_bars:
        close, volume = (m.spot_close, m.spot_volume) if spot else (m.perp_close, m.perp_volume)
        return (_ro(close[-1], copy=True), _ro(m.valid[-1], np.bool_, copy=True), _ro(volume[-1], copy=True))
    return before


def _run_key(
    legs_a: list[Market], legs_b: list[Market], tg: Any, config: BacktestConfig, spread: SpreadConfig, column_params
) -> str:
    """What a resumed run must share with the run it continues: venues, coins, columns, settings
    and column parameters (a hash)."""
    import hashlib
    import json

    h = hashlib.sha256()
    leg_a = legs_a[0]
    legs = legs_a + legs_b
    head = {
        "venues": [m.venue for m in legs],
        "symbols": [list(m.perp_symbols) for m in legs],
        "config": config.config_hash(),
        "spread": spread.to_dict(),
        "freq": str(leg_a.index.freq or (leg_a.index[1] - leg_a.index[0] if leg_a.n_bars > 1 else "")),
    }
    h.update(json.dumps(head, sort_keys=True, default=str).encode())
    h.update(np.ascontiguousarray(tg.column_symbol, np.int64).tobytes())
    for name in sorted(column_params or {}):
        h.update(name.encode())
        h.update(np.ascontiguousarray(np.asarray(column_params[name], np.float64)).tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True, eq=False)
class SpreadState:
    """Where a spread run stopped (``SpreadResult.state``): every column's ``X_*`` slots, the last
    ``execution_delay_bars`` target rows (decided, not executed yet), each leg's last bar (perp
    close, validity and volume: the next run's delay-0 reference and slippage; per venue when the
    legs switch venues, with the last rows of their venues), the bar the next
    run must start at and the key of what it must share (:func:`run_spread`'s ``resume``)."""

    columns: np.ndarray
    target_tail: np.ndarray
    next_time: pd.Timestamp | None
    key: str
    leg_a_last: Any
    leg_b_last: Any
    venue_tail: tuple[np.ndarray, np.ndarray] | None = None

    def check(self, leg_a: Market, key: str) -> None:
        """Raise ConfigError unless a run over ``leg_a``'s bars with ``key`` continues this state."""
        if key != self.key:
            raise ConfigError(
                "resume: the venues, coins, columns, settings or column parameters differ from the run the state "
                "comes from; continue with the same ones"
            )
        if self.next_time is not None and leg_a.n_bars and leg_a.index[0] != self.next_time:
            raise ConfigError(
                f"resume: the state ends before the bar at {self.next_time}, but the markets start at "
                f"{leg_a.index[0]}; pass the bars that follow the previous run, without gap or overlap"
            )


@dataclass(eq=False)
class SpreadResult:
    """What :func:`run_spread` returns. Frames are indexed by bar (open time, UTC) and column.

    ``columns`` describes each column (coin, both venues and symbols, the fee rates at the first
    bar: a venue's schedule that changes within the run is named in ``notes``);
    ``equity`` (quote), ``components`` (name -> cumulative quote; ``spot_price`` is leg A's
    price PnL, ``perp_price`` leg B's), ``positions`` (``"A"``/``"B"`` -> coins), ``margin_ratio``
    (``"A"``/``"B"``, at the close; NaN: flat leg), ``in_flight`` (quote in transfer) hold one row
    per bar where kept (``outputs``), else the last bar's. ``events``: fills, liquidations,
    transfers (departure: cash ``-amount`` and the fee; arrival: ``+amount - fee``) and, when
    kept, funding per leg (``cash`` and ``fee`` in the account currency), in (bar, column) order,
    built when first read (``events_source``: the table, or the function that builds it). ``totals`` per column:
    funding per leg, trading fees, transfer fees, the number of transfers, every component,
    ``quote_fx`` (the revaluation of a venue valued at a quote rate; inside ``unhedged``), the
    number of liquidations and the final equity. ``venues`` (a run whose legs switch venues):
    ``"A"``/``"B"`` -> the index of the venue each leg is on (in ``run_spread``'s sequence; rows
    as ``positions``), else empty. ``columns.group`` is each column's portfolio (in cross margin
    its columns share each venue's account; :meth:`portfolio_equity` sums them).
    """

    index: pd.DatetimeIndex
    columns: pd.DataFrame
    equity: pd.DataFrame
    components: dict[str, pd.DataFrame]
    positions: dict[str, pd.DataFrame]
    margin_ratio: dict[str, pd.DataFrame]
    in_flight: pd.DataFrame
    events_source: pd.DataFrame | Callable[[], pd.DataFrame] = field(repr=False)
    totals: pd.DataFrame
    initial_capital: float
    venues: dict[str, pd.DataFrame] = field(default_factory=dict)
    flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())
    state: SpreadState | None = None

    @property
    def events(self) -> pd.DataFrame:
        """The events table (see the class docstring), built on first access from ``events_source``."""
        if callable(self.events_source):
            self.events_source = self.events_source()
        return self.events_source

    @classmethod
    def chain(cls, parts: list[SpreadResult]) -> SpreadResult:
        """Consecutive runs (each resumed from the one before) joined into one result: per-bar
        frames concatenated, events appended, totals and state of the last part."""
        if not parts:
            raise ConfigError("chain: no results to join")
        last = parts[-1]

        def cat(get):
            return pd.concat([get(p) for p in parts])

        return cls(
            index=parts[0].index.append([p.index for p in parts[1:]]),
            columns=last.columns,
            equity=cat(lambda p: p.equity),
            components={k: cat(lambda p, k=k: p.components[k]) for k in last.components},
            positions={k: cat(lambda p, k=k: p.positions[k]) for k in last.positions},
            margin_ratio={k: cat(lambda p, k=k: p.margin_ratio[k]) for k in last.margin_ratio},
            in_flight=cat(lambda p: p.in_flight),
            venues={k: cat(lambda p, k=k: p.venues[k]) for k in last.venues},
            events_source=lambda: pd.concat([p.events for p in parts], ignore_index=True),
            totals=last.totals.assign(liquidations=sum(p.totals.liquidations for p in parts)),
            initial_capital=parts[0].initial_capital,
            flags=tuple(dict.fromkeys(f for p in parts for f in p.flags)),
            notes=tuple(dict.fromkeys(n for p in parts for n in p.notes)),
            state=last.state,
        )

    def portfolio_equity(self) -> pd.DataFrame:
        """Equity per portfolio (quote; columns: ``columns.group``): the sum of its columns'
        (each column its own portfolio in isolated margin)."""
        return self.equity.T.groupby(self.columns["group"].to_numpy()).sum().T

    def pnl(self, name: str) -> pd.DataFrame:
        """One cumulative component (quote), e.g. ``res.pnl("funding")``."""
        if name not in self.components:
            raise ConfigError(f"unknown component {name!r}; choose from {list(self.components)}")
        return self.components[name]


def run_spread(
    leg_a: Market | Sequence[Market],
    leg_b: Market | Sequence[Market],
    targets: Any,
    config: BacktestConfig | dict | None = None,
    spread: SpreadConfig | dict | None = None,
    *,
    column_params: dict[str, Any] | None = None,
    outputs: tuple[str, ...] | list[str] | None = None,
    parallel: bool | int = False,
    resume: SpreadState | None = None,
    quote_rates: dict[str, Any] | None = None,
    venues: tuple[Any, Any] | None = None,
) -> SpreadResult:
    """Simulate cross-venue spread hedges: long ``x`` of leg A's perp, short the same coins of leg B's.

    Parameters
    ----------
    leg_a, leg_b : Market or sequence of Market
        The two venues' markets (perp and mark prices, funding), one bar index, the same coins in
        the same order (:func:`data.venue_pair.load_venue_pair`). A sequence: the venues that
        leg may be on (with ``venues``).
    targets : Targets, float, ndarray (T, N), DataFrame or callable
        Target exposure per bar and column in [-1, 1]: +1 long leg A and short leg B with all
        the column's capital, -1 the mirror, NaN keep, 0 flat (as :func:`backtest.engine.run_backtest`,
        on ``leg_a``'s shape). Every column is its own portfolio (isolated margin); with
        ``margin_mode="cross"`` a :class:`~backtest.targets.Targets`' groups are the portfolios
        (anything else: all columns one).
    config : BacktestConfig or dict, optional
        ``initial_capital_quote`` (per column), ``perp_leverage``, ``order_type``,
        ``slippage_bps``, ``volume_participation_coefficient``, ``clearance_fee_rate``,
        ``execution_delay_bars`` (and ``allow_same_bar_execution``), ``after_liquidation``,
        ``reentry_cooldown_hours``, ``maintenance_margin_rate``, ``margin_mode`` (``"isolated"``
        or ``"cross"`` per venue); the top-up and rebalancing settings do not apply.
    spread : SpreadConfig or dict, optional
        Transfers, the collateral band, the venues' fees and tiers.
    column_params : dict, optional
        Per-column (C,) or per-bar (T, C) values of :data:`SPREAD_PARAMS` (grids).
    outputs : sequence of str, optional
        Per-bar outputs to keep among :data:`OUTPUTS` (default: all). Without ``"events"`` the
        funding rows are not recorded (their per-leg totals are in ``totals``).
    parallel : bool or int
        Columns on threads (bit-identical results; cross margin: one thread).
    resume : SpreadState, optional
        Continue from where an earlier run stopped (its ``result.state``): the legs' markets start
        at the bar after that run's last one, with the same coins, columns, settings and column
        parameters (checked); consecutive chunks then equal one run over the whole period bit
        for bit (``SpreadResult.chain``). Targets are the new bars' only.
    quote_rates : dict, optional
        ``{"A": rates}`` or ``{"B": rates}`` (or both): the account currency per unit of that
        leg's quote currency at each bar's open and close (a DataFrame on the legs' index with
        columns ``open`` and ``close``, e.g. USDT per USDC; :attr:`data.venue_pair.VenuePair.quote_rates`).
        That venue's wallet, margin, PnL, fees and funding stay in its own quote and are valued
        at the rate (see the rules). A leg given several venues takes a sequence with one
        frame (or None: 1:1) per venue. Without one, venues quoted in different currencies are
        taken 1:1 (flag ``usdc_usdt_parity``).
    venues : (array, array), optional
        The venue each leg should be on per target row and column, (T, C) or (T, N) arrays of
        indices into ``leg_a``'s and ``leg_b``'s sequences (NaN: stay); read where the target
        is non-zero. A target on other venues than the legs are on is a *switch of venues* (see
        the rules); each column starts on the venues of its first such row.
    """
    from backtest.engine import hold_only_where_tradable, slippage_capped, to_targets
    from backtest.kernels.simulate import count_target_changes_nb
    from backtest.kernels.spread import spread_cross_nb, spread_parallel_nb, spread_range_nb

    if config is None:
        config = BacktestConfig()
    elif isinstance(config, dict):
        config = BacktestConfig.from_dict(config)
    if spread is None:
        spread = SpreadConfig()
    elif isinstance(spread, dict):
        unknown = set(spread) - set(SpreadConfig.__dataclass_fields__)
        if unknown:
            raise ConfigError(
                f"unknown spread settings {sorted(unknown)}; known: {sorted(SpreadConfig.__dataclass_fields__)}"
            )
        spread = SpreadConfig(**spread)
    legs_a: list[Market] = cast(list, list(leg_a) if isinstance(leg_a, (list, tuple)) else [leg_a])
    legs_b: list[Market] = cast(list, list(leg_b) if isinstance(leg_b, (list, tuple)) else [leg_b])
    for name, legs in (("leg_a", legs_a), ("leg_b", legs_b)):
        if not legs or not all(isinstance(m, Market) for m in legs):
            raise ConfigError(f"{name} must be a backtest.Market or a sequence of them, got {legs!r:.80}")
    leg_a = legs_a[0]
    leg_b = legs_b[0]
    for m in legs_a[1:] + legs_b:
        if leg_a.n_symbols != m.n_symbols or not leg_a.index.equals(m.index):
            raise ConfigError(
                f"the legs' markets must share one bar index and the same coins: leg A {leg_a!r}, {m!r} "
                "(load them with data.venue_pair.load_venue_pair)"
            )
        _check_same_coins(leg_a, m)
    switching = venues is not None or len(legs_a) > 1 or len(legs_b) > 1
    if switching:
        if venues is None:
            raise ConfigError("several markets for a leg need venues=(leg A's venue, leg B's venue) per bar and column")
        for name in ("fee_a_rate", "fee_b_rate"):
            if name in (column_params or {}):
                raise ConfigError(f"{name} cannot vary per column when the legs switch venues (each venue has its fee)")
    given = isinstance(targets, Targets)
    tg = to_targets(leg_a, targets)
    T, C = tg.values.shape
    if config.margin_mode == "portfolio":
        raise ConfigError(
            "spread hedges hold each venue's perps in isolated or cross margin (margin_mode='isolated' or "
            "'cross'); margin_mode='portfolio' (spot collateral in one account) is the single-venue engine's"
        )
    # each venue's mode (SpreadConfig.margin_a / margin_b, else the config's); a spot leg A has no futures account
    cross_a, cross_b = spread.cross(config.margin_mode)
    cross = cross_a or cross_b
    if not given:  # a scalar, array, frame or strategy: one portfolio per column (cross: one of all)
        own = np.zeros(C, dtype=np.int64) if cross else np.arange(C, dtype=np.int64)
        tg = Targets(tg.values, tg.column_symbol, own, tg.columns.assign(group=own), tg.weights)
    if not cross and len(np.unique(tg.group)) != C:
        raise ConfigError(
            "spread hedges in isolated margin are one column per portfolio: the targets must not group columns "
            "(margin_mode='cross', or SpreadConfig margin_a / margin_b, lets a portfolio's columns share a venue's "
            "account)"
        )
    if tg.weights is not None:
        raise ConfigError("spread hedges take no capital weights: each column starts with initial_capital_quote")
    if cross and switching:
        raise ConfigError(
            "margin_mode='cross' shares each venue's account among a portfolio's columns: its legs cannot switch "
            "venues (venues=...); run the switching hedges in isolated margin"
        )
    delay = config.execution_delay_bars
    hours = bar_hours(leg_a)
    notes: list[str] = []
    a_spot = spread.leg_a == "spot"
    if a_spot:
        if "perp_only" in leg_a.data_flags:
            raise ConfigError("leg_a='spot' needs leg A's spot prices: load its market with spot=True")
    # each venue's fee per bar (its schedule), or the one given
    sched_a = [venue_fee_schedule(m, config.order_type, config, "spot" if a_spot else "perp") for m in legs_a]
    sched_b = [venue_fee_schedule(m, config.order_type, config) for m in legs_b]
    if spread.fee_a_rate is not None:
        sched_a = [(np.full(T, spread.fee_a_rate), "fee_a_rate")] * len(legs_a)
    if spread.fee_b_rate is not None:
        sched_b = [(np.full(T, spread.fee_b_rate), "fee_b_rate")] * len(legs_b)
    fees_a = [(float(f[0]) if T else np.nan, src) for f, src in sched_a]  # (at the first bar: the summary's)
    fees_b = [(float(f[0]) if T else np.nan, src) for f, src in sched_b]
    (fee_a, src_a), (fee_b, src_b) = fees_a[0], fees_b[0]
    params: dict[str, Any] = {
        "perp_leverage": config.perp_leverage,
        "slippage_bps": config.slippage_bps,
        "volume_participation_coefficient": config.volume_participation_coefficient,
        "clearance_fee_rate": config.clearance_fee_rate,
        "venue_rebalance_band": np.inf if spread.venue_rebalance_band is None else spread.venue_rebalance_band,
        "venue_transfer_fee_quote": spread.venue_transfer_fee_quote,
        "fee_a_rate": _fee_param(sched_a[0][0]),
        "fee_b_rate": _fee_param(sched_b[0][0]),
        "leverage_a": spread.leverage_a,
    }
    for name, value in (column_params or {}).items():
        if name not in SPREAD_PARAMS:
            raise ConfigError(f"{name!r} cannot vary per column of a spread run; allowed: {list(SPREAD_PARAMS)}")
        params[name] = value
    name_a = "leverage_a" if params["leverage_a"] is not None else "perp_leverage"  # (leg A's, for messages)
    if params["leverage_a"] is None:  # leg A at leg B's leverage (per column when that is a grid)
        params["leverage_a"] = params["perp_leverage"]
    elif spread.leg_a == "spot":
        raise ConfigError("leverage_a is leg A's perp leverage: a spot leg A has none (leg_a='spot')")
    fx = {name: _flex(name, v, (T, C)) for name, v in params.items()}
    if switching:  # fees per bar and venue (indexed by the venue a leg is on)
        fx["fee_a_rate"] = _ro(_fee_param(np.column_stack([f for f, _ in sched_a])))  # (read-only: one compiled kernel)
        fx["fee_b_rate"] = _ro(_fee_param(np.column_stack([f for f, _ in sched_b])))
    for name, a in fx.items():
        lever = name in ("perp_leverage", "leverage_a")
        if (a < 0).any() or (lever and not (a > 0).all()):
            raise ConfigError(f"{name} must be {'> 0' if lever else '>= 0'} in every column")
        finite = a[np.isfinite(a)]
        plaus = "perp_taker_fee_rate" if name.startswith("fee_") else "perp_leverage" if lever else name
        why = implausible(plaus, float(finite.max())) if finite.size else None
        if why:
            raise ConfigError(f"column parameter {why.replace(plaus, name)}")
    t_a = [venue_tiers(m, config, spread) for m in legs_a]
    t_b = [venue_tiers(m, config, spread) for m in legs_b]
    for legs, tables, key, name in (
        (legs_a, t_a, "leverage_a", name_a),
        (legs_b, t_b, "perp_leverage", "perp_leverage"),
    ):
        for m, (tiers, _src) in zip(legs, tables):  # (each venue's maximum: "... above bybit BTCUSDT's maximum 100")
            if not (a_spot and key == "leverage_a"):
                on = [f"{m.venue} {sym}" for sym in m.perp_symbols]
                tiers.check_leverage(fx[key], on, column_symbol=tg.column_symbol, name=name)
    t_src_a = "; ".join(f"{m.venue} {src}" for m, (_t, src) in zip(legs_a, t_a)) if switching else t_a[0][1]
    t_src_b = "; ".join(f"{m.venue} {src}" for m, (_t, src) in zip(legs_b, t_b)) if switching else t_b[0][1]
    flags: list[str] = []
    venue_legs = {"A": legs_a, "B": legs_b}
    rates, rated = _quote_rates(quote_rates, leg_a.index, venue_legs)
    if rates:
        flags.append("quote_rate")
        for side, v in rated:
            m, r = venue_legs[side][v], rates[side]["close"][:, v]
            notes.append(
                f"leg {side} ({m.venue}, {_venue_quote(m)}) valued at its quote rate: {r.min():.6g} .. "
                f"{r.max():.6g} per unit over the run"
            )
    unrated = [m for side, legs in venue_legs.items() for v, m in enumerate(legs) if (side, v) not in rated]
    if len({_venue_quote(m) for m in unrated}) > 1:  # (the venues at no rate: added 1:1)
        flags.append("usdc_usdt_parity")
        quotes = ", ".join(dict.fromkeys(f"{m.venue} in {_venue_quote(m)}" for m in unrated))
        notes.append(f"the venues are quoted {quotes}: amounts are added 1:1 (a USDC/USDT move is not valued)")
    for leg in legs_a + legs_b:
        flags += [f for f in leg.data_flags if f not in flags and f != "perp_only"]
    if switching:
        notes += [
            "fees: leg A "
            + ", ".join(f"{m.venue} {f:g} ({src})" for m, (f, src) in zip(legs_a, fees_a))
            + "; leg B "
            + ", ".join(f"{m.venue} {f:g} ({src})" for m, (f, src) in zip(legs_b, fees_b))
        ]
    else:
        notes += [f"fees: leg A {fee_a:g} ({src_a}), leg B {fee_b:g} ({src_b})"]
    notes += [f"maintenance: leg A {t_src_a}; leg B {t_src_b}"]
    if cross:
        sizes = np.bincount(np.unique(tg.group, return_inverse=True)[1])
        shared = " and ".join(
            f"leg {k}'s venue ({m.venue})" for k, m, x in (("A", leg_a, cross_a), ("B", leg_b, cross_b)) if x
        )
        notes.append(
            f"cross margin on {shared}: each portfolio's columns ({sizes.min()}"
            + (f"-{sizes.max()}" if sizes.max() != sizes.min() else "")
            + " per portfolio) share one account there"
        )

    want = tuple(OUTPUTS if outputs is None else outputs)
    bad = [o for o in want if o not in OUTPUTS]
    if bad:
        raise ConfigError(f"unknown outputs {bad}; choose from {list(OUTPUTS)}")
    bits = {"equity": F_EQUITY, "components": F_COMPONENTS, "positions": F_POSITIONS, "margin": F_MARGIN}
    kflags = sum(bits[o] for o in want if o in bits) | (F_CASHFLOW_EVENTS if "events" in want else 0)
    rows = {o: (T if o in want else 1) for o in ("equity", "components", "positions", "margin")}
    equity = OUTPUT_POOL.empty((rows["equity"], C))  # (recycled memory, as run_backtest's)
    in_flight = np.zeros((rows["equity"], C))  # (the kernel writes where something is in flight)
    comps = np.empty((N_COMP, rows["components"], C))
    pos_a, pos_b = np.empty((rows["positions"], C)), np.empty((rows["positions"], C))
    mr_a, mr_b = np.full((rows["margin"], C), np.nan), np.full((rows["margin"], C), np.nan)
    vrows = (rows["positions"], C) if switching else (1, 1)
    out = SpreadOutputs(equity, comps, pos_a, pos_b, mr_a, mr_b, in_flight, np.zeros(vrows), np.zeros(vrows))

    capital = float(config.initial_capital_quote)
    key = _run_key(legs_a, legs_b, tg, config, spread, column_params)
    # each leg's rates (T, venues) at the open and close; read by the kernel only with rates
    ones = {side: np.ones((T if rates else 1, len(legs) if rates else 1)) for side, legs in venue_legs.items()}
    r_a = (rates["A"]["open"], rates["A"]["close"]) if "A" in rates else (ones["A"], ones["A"])
    r_b = (rates["B"]["open"], rates["B"]["close"]) if "B" in rates else (ones["B"], ones["B"])
    kernel_rates = SpreadRates(_ro(r_a[0]), _ro(r_a[1]), _ro(r_b[0]), _ro(r_b[1]))
    ven = _venue_rows(venues, tg, len(legs_a), len(legs_b)) if switching else None
    if resume is None:
        cs0 = np.zeros((C, NSX))
        if ven is not None:  # each column starts on the venues of its first target that names them
            cs0[:, X_VENA], cs0[:, X_VENB] = ven.first
        cs0[:, X_BALA] = cs0[:, X_BALB] = capital / 2.0
        lev0 = np.broadcast_to(fx["perp_leverage"][0], (C,))
        lev0_a = np.broadcast_to(fx["leverage_a"][0], (C,))
        if a_spot:  # the spot's venue holds N, the perp's N / L: L / (L + 1) and 1 / (L + 1) of it
            cs0[:, X_BALA] = capital * (lev0 / (lev0 + 1.0))
            cs0[:, X_BALB] = capital - cs0[:, X_BALA]
        elif (lev0_a != lev0).any():  # margins N / L_A and N / L_B: L_B / (L_A + L_B) to venue A
            cs0[:, X_BALA] = np.where(lev0_a == lev0, capital / 2.0, capital * (lev0 / (lev0_a + lev0)))
            cs0[:, X_BALB] = capital - cs0[:, X_BALA]
        if rates and T:  # each venue's share (account currency) in its own quote, at the first open's rate
            cs0[:, X_RA] = r_a[0][0, cs0[:, X_VENA].astype(np.int64)]
            cs0[:, X_RB] = r_b[0][0, cs0[:, X_VENB].astype(np.int64)]
            cs0[:, X_BALA] /= cs0[:, X_RA]
            cs0[:, X_BALB] /= cs0[:, X_RB]
        else:
            cs0[:, X_RA] = cs0[:, X_RB] = 1.0
        cs0[:, X_VA] = cs0[:, X_VB] = np.nan
        cs0[:, X_LASTX] = np.nan
        cs0[:, X_PRE] = cs0[:, X_FBAR] = -1.0
        cs0[:, X_INIT] = capital
        tail = np.empty((0, C))
    else:
        if not isinstance(resume, SpreadState):
            raise ConfigError(
                f"resume must be the SpreadState of an earlier result (result.state), got {type(resume).__name__}"
            )
        resume.check(leg_a, key)
        cs0, tail = np.array(resume.columns, copy=True), resume.target_tail
    cs = cs0.copy()
    t_off = len(tail)
    rows_all = tg.values if not t_off else np.concatenate([tail, tg.values])
    if ven is None:
        tradable = np.asarray(leg_a.tradable) & np.asarray(leg_b.tradable)
        target_rows = hold_only_where_tradable(tradable, tg.column_symbol, rows_all, t_off, max(delay, 1))
    else:  # each row where the venues it would execute on trade
        if t_off:  # (the venues of the rows decided before, still to execute)
            assert resume is not None and resume.venue_tail is not None
            ven = ven.after(resume.venue_tail)
        start = (cs0[:, X_VENA], cs0[:, X_VENB])
        tradable = ven.tradable(legs_a, legs_b, tg.column_symbol, max(delay, 1), start)
        target_rows = hold_only_where_tradable(tradable, np.arange(C), rows_all, t_off, max(delay, 1))
    book = Book(
        _ro(target_rows),
        _ro(np.ones((1, 1))),
        _ro(tg.column_symbol, np.int64),
        _ro(np.arange(C), np.int64),
        _ro(np.arange(C + 1), np.int64),
        t_off,
    )
    prm = SpreadParams(
        fx["perp_leverage"],
        fx["fee_a_rate"],
        fx["fee_b_rate"],
        _ro(fx["slippage_bps"] / 1e4),
        fx["volume_participation_coefficient"],
        fx["clearance_fee_rate"],
        fx["venue_rebalance_band"],
        fx["venue_transfer_fee_quote"],
        fx["leverage_a"],
        _borrow_rates(leg_a, config, tg.column_symbol, T) if a_spot else _ro(np.zeros((1, C))),
    )
    bar_ms = hours * MS_PER_HOUR
    run = SpreadSettings(
        max(delay, 1),
        AFTER_LIQ[config.after_liquidation],
        max(1, math.ceil(config.reentry_cooldown_hours * MS_PER_HOUR / bar_ms - 1e-9)),
        math.ceil(spread.venue_transfer_delay_hours * MS_PER_HOUR / bar_ms - 1e-9),
        int(kflags),
        a_spot,
        bool(rates),
        float(config.spot_margin_liquidation_level),
        float(config.spot_liquidation_fee_rate),
        int(round(bar_ms)),
        leg_a.n_symbols,
        switching,
        spread.switch_keeps_leg,
        cross_a,
        cross_b,
    )
    args = (
        _stack([_leg_arrays(m, delay, _last_of(resume, "a", v, switching), spot=a_spot) for v, m in enumerate(legs_a)]),
        _stack([_leg_arrays(m, delay, _last_of(resume, "b", v, switching)) for v, m in enumerate(legs_b)]),
        book,
        prm,
        _stack_tiers([_tiers_arrays(tiers) for tiers, _src in t_a]),
        _stack_tiers([_tiers_arrays(tiers) for tiers, _src in t_b]),
        run,
        kernel_rates,
        None if ven is None else SpreadVenues(_ro(ven.a), _ro(ven.b)),  # (t_off + T rows; None: compiled apart)
    )
    n_settle = max(int((m.funding_count > 0).sum(axis=0)[tg.column_symbol].sum()) for m in legs_a) + max(
        int((m.funding_count > 0).sum(axis=0)[tg.column_symbol].sum()) for m in legs_b
    )
    stride = 32 if target_rows.size > 1 << 16 else 1
    changes = int(count_target_changes_nb(target_rows, stride)) * (2 if stride > 1 else 1) + C
    cap = 8 * changes + (n_settle if "events" in want else 0) + T * C // 16 + 1024
    n_chunks = (_n_threads() if parallel is True else int(parallel)) if parallel else 1
    n_chunks = max(1, min(n_chunks, C))
    _uniq, gid = np.unique(tg.group, return_inverse=True)  # (cross: each portfolio's columns, CSR)
    grp_cols = _ro(np.argsort(gid, kind="stable"), np.int64)
    grp_bounds = _ro(np.concatenate([[0], np.cumsum(np.bincount(gid, minlength=len(_uniq)))]), np.int64)
    for _attempt in range(2):
        cs[:] = cs0
        if cross:  # (one thread: a portfolio's columns meet at every bar)
            rec = np.empty((cap, N_REC_FIELDS))
            n = spread_cross_nb(grp_bounds, grp_cols, *args, cs, out, rec)
            if n <= cap:
                records = rec[:n]
                break
            cap = n
        elif n_chunks == 1:
            rec = np.empty((cap, N_REC_FIELDS))
            n = spread_range_nb(0, C, *args, cs, out, rec)
            if n <= cap:
                records = rec[:n]
                break
            cap = n
        else:
            bounds = np.unique(np.linspace(0, C, n_chunks + 1).astype(np.int64))
            caps = np.diff(bounds) * (cap // C + 1) + 1024
            rec_bounds = np.concatenate([[0], np.cumsum(caps)]).astype(np.int64)
            rec = np.empty((rec_bounds[-1], N_REC_FIELDS))
            counts = spread_parallel_nb(bounds, rec_bounds, *args, cs, out, rec)
            if (counts <= caps).all():
                records = np.concatenate([rec[r0 : r0 + k] for r0, k in zip(rec_bounds, counts)])
                break
            cap = int(counts.max()) * C
    if slippage_capped(records):
        flags.append("slippage_capped")
    res = _result(
        legs_a, legs_b, tg, config, capital, fee_a, fee_b, want, out, cs, records, flags, notes, a_spot, switching
    )
    lag = max(delay, 1)
    k = min(lag, t_off + T)
    res.state = SpreadState(
        columns=_ro(cs, copy=True),
        target_tail=_ro(rows_all[len(rows_all) - k :], copy=True),
        next_time=leg_a.index[-1] + (leg_a.index[1] - leg_a.index[0]) if T > 1 else None,
        key=key,
        leg_a_last=_lasts(legs_a, resume, "a", switching, a_spot),
        leg_b_last=_lasts(legs_b, resume, "b", switching, False),
        venue_tail=None
        if ven is None
        else (_ro(ven.a[len(ven.a) - k :], copy=True), _ro(ven.b[len(ven.b) - k :], copy=True)),
    )
    return res


def _last_of(resume: SpreadState | None, leg: str, v: int, switching: bool):
    """Venue ``v``'s last bar of leg ``leg`` in a resumed state (None: a new run)."""
    if resume is None:
        return None
    last = resume.leg_a_last if leg == "a" else resume.leg_b_last
    return last[v] if switching else last


def _lasts(legs: list[Market], resume: SpreadState | None, leg: str, switching: bool, spot: bool):
    """A leg's last bar for the state: its market's, or each venue's (a list) when switching."""
    if not switching:
        return _last_bar(legs[0], _last_of(resume, leg, 0, False), spot=spot)
    return [_last_bar(m, _last_of(resume, leg, v, True), spot=spot) for v, m in enumerate(legs)]


def _quote_rates(
    given: dict[str, Any] | None, index: pd.DatetimeIndex, legs: dict[str, list[Market]]
) -> tuple[dict[str, dict[str, np.ndarray]], list[tuple[str, int]]]:
    """The legs' quote rates as ``{"A"|"B": {"open": (T, V), "close": (T, V)}}`` (``V``: the
    leg's venues, one without switching; 1.0 for a venue given None) and the ``(leg, venue)``
    pairs given a rate, checked: per rated venue one finite, positive rate per bar at the open
    and close, on the legs' own index. A leg's entry is one frame, or (a leg with several
    venues) a sequence of one frame or None per venue."""
    out: dict[str, dict[str, np.ndarray]] = {}
    rated: list[tuple[str, int]] = []
    for leg, r in (given or {}).items():
        if leg not in ("A", "B"):
            raise ConfigError(f"quote_rates: keys are the legs 'A' and 'B', got {leg!r}")
        if r is None:
            continue
        venues = legs[leg]
        frames = list(r) if isinstance(r, (list, tuple)) else [r]
        if len(frames) != len(venues):
            raise ConfigError(
                f"quote_rates[{leg!r}]: one rate frame (or None) per venue of leg {leg} "
                f"({', '.join(m.venue for m in venues)}), got {len(frames)}"
            )
        arrays = {k: np.ones((len(index), len(venues))) for k in ("open", "close")}
        for v, f in enumerate(frames):
            if f is None:
                continue
            name = f"quote_rates[{leg!r}]" + (f"[{v}] ({venues[v].venue})" if len(venues) > 1 else "")
            if not isinstance(f, pd.DataFrame) or not {"open", "close"} <= set(f.columns):
                raise ConfigError(f"{name} must be a DataFrame with columns 'open' and 'close'")
            if not f.index.equals(index):
                raise ConfigError(
                    f"{name} must be indexed like the legs' markets ({len(index)} bars from "
                    f"{index[0] if len(index) else '-'}); got {len(f)} rows"
                )
            for k in ("open", "close"):
                a = np.asarray(f[k], dtype=np.float64)
                bad = np.flatnonzero(~(np.isfinite(a) & (a > 0)))
                if bad.size:
                    raise ConfigError(
                        f"{name}.{k} must be a finite rate > 0 at every bar; {bad.size} are not, the "
                        f"first at {index[bad[0]]} ({a[bad[0]]!r})"
                    )
                arrays[k][:, v] = a
            rated.append((leg, v))
        if any(f is not None for f in frames):
            out[leg] = arrays
    return out, rated


def _borrow_rates(leg_a: Market, config: BacktestConfig, column_symbol: np.ndarray, T: int) -> np.ndarray:
    """The hourly borrow rate of a borrowed spot leg A per column: ``borrow_annual_rate / 8760``,
    or with ``borrow_rate_source="market"`` leg A's ``borrow_hourly_rate`` of its coin per bar."""
    if config.borrow_rate_source == "market":
        if leg_a.borrow_hourly_rate is None:
            raise ConfigError(
                f"borrow_rate_source='market' but leg A's market ({leg_a.venue}) has no borrow_hourly_rate"
            )
        return _ro(leg_a.borrow_hourly_rate[:, column_symbol])
    return _ro(np.full((1, len(column_symbol)), float(config.borrow_annual_rate) / 8760.0))


def _check_same_coins(leg_a: Market, leg_b: Market) -> None:
    """Refuse legs whose symbol ``n`` is not the same coin on both venues (a spread of BTC against
    ETH is no hedge)."""
    from data.symbols import coin_of

    bad = [(a, b) for a, b in zip(leg_a.symbols, leg_b.symbols) if coin_of(a) != coin_of(b)]
    if bad:
        pairs = ", ".join(f"{a} against {b}" for a, b in bad[:3])
        raise ConfigError(
            f"the legs' markets hold different coins in the same position ({pairs}): symbol n of leg A and of "
            "leg B must be one coin (load_venue_pair aligns them)"
        )


def _bar_order(records: np.ndarray) -> np.ndarray:
    """The kernel's events (chunk of bars, then column, then bar; a cross run's: bar, then step,
    then column) in (bar, column) order: a stable sort (one column's events of a bar stay in the
    order they happened)."""
    return records[np.lexsort((records[:, R_COL], records[:, R_BAR]))]


def _n_threads() -> int:
    import numba

    return int(numba.get_num_threads())


def _events(records: np.ndarray, index: pd.DatetimeIndex, legs_a: list[Market], legs_b: list[Market]) -> pd.DataFrame:
    """The events table of the kernel's ``records`` (built when first read: a large grid's
    hundreds of thousands of fills cost nothing until asked for)."""
    records = _bar_order(records)
    kinds = records[:, R_KIND].astype(np.int64)
    code = records[:, R_LEG].astype(np.int64)
    legs = code % 2  # LEG_SPOT (0): leg A; LEG_PERP (1): leg B; plus twice the leg's venue index
    names = [KIND_NAMES.get(k, str(k)) for k in range(max(KIND_NAMES) + 1)]
    venues = list(dict.fromkeys(m.venue for m in legs_a + legs_b))
    at = {k: venues.index(m.venue) for k, m in [(2 * v, m) for v, m in enumerate(legs_a)]}
    at.update({2 * v + 1: venues.index(m.venue) for v, m in enumerate(legs_b)})
    venue_code = np.array([at.get(k, 0) for k in range(2 * max(len(legs_a), len(legs_b)))], np.int64)
    return pd.DataFrame(
        {
            "time": index[records[:, R_BAR].astype(np.int64)],
            "column": records[:, R_COL].astype(np.int64),
            "kind": pd.Categorical.from_codes(kinds, names),
            "leg": pd.Categorical.from_codes(legs, ["A", "B"]),
            "venue": pd.Categorical.from_codes(venue_code[code], venues),
            "qty": records[:, R_QTY],
            "price": records[:, R_PRICE],
            "rate": records[:, R_RATE],
            "cash": records[:, R_CASH],
            "fee": records[:, R_FEE],
        }
    )


def _result(
    legs_a, legs_b, tg, config, capital, fee_a, fee_b, want, out, cs, records, flags, notes, a_spot, switching
) -> SpreadResult:
    leg_a, leg_b = legs_a[0], legs_b[0]
    index = leg_a.index
    C = tg.values.shape[1]
    cols = pd.RangeIndex(C, name="column")
    sym = tg.column_symbol
    if switching:  # the venues each leg may be on; the symbols and fees of the ones it ended on
        va, vb = cs[:, X_VENA].astype(np.int64), cs[:, X_VENB].astype(np.int64)
        columns = pd.DataFrame(
            {
                "coin": [leg_a.symbols[n] for n in sym],
                "venue_a": "/".join(m.venue for m in legs_a),
                "symbol_a": [(legs_a[v].symbols if a_spot else legs_a[v].perp_symbols)[n] for v, n in zip(va, sym)],
                "leg_a": "spot" if a_spot else "perp",
                "venue_b": "/".join(m.venue for m in legs_b),
                "symbol_b": [legs_b[v].perp_symbols[n] for v, n in zip(vb, sym)],
                "fee_a": fee_a,
                "fee_b": fee_b,
                "last_venue_a": [legs_a[v].venue for v in va],
                "last_venue_b": [legs_b[v].venue for v in vb],
                "group": tg.group,
            },
            index=cols,
        )
    else:
        columns = pd.DataFrame(
            {
                "coin": [leg_a.symbols[n] for n in sym],
                "venue_a": leg_a.venue,
                "symbol_a": [(leg_a.symbols if a_spot else leg_a.perp_symbols)[n] for n in sym],
                "leg_a": "spot" if a_spot else "perp",
                "venue_b": leg_b.venue,
                "symbol_b": [leg_b.perp_symbols[n] for n in sym],
                "fee_a": fee_a,
                "fee_b": fee_b,
                "group": tg.group,
            },
            index=cols,
        )

    def frame(a: np.ndarray) -> pd.DataFrame:
        rows = index if a.shape[0] == len(index) else index[-1:]
        return pd.DataFrame(a, index=rows, columns=cols, copy=False)

    components = {name: frame(out.comps[k]) for k, name in enumerate(COMPONENTS)}
    final = cs[:, X_COMP : X_COMP + N_COMP]
    totals = pd.DataFrame({name: final[:, k] for k, name in enumerate(COMPONENTS)}, index=cols)
    totals.insert(1, "funding_a", cs[:, X_FUNDA])
    totals.insert(2, "funding_b", final[:, C_FUND] - cs[:, X_FUNDA])
    totals.insert(4, "trading_fees", final[:, C_FEE] - cs[:, X_TFEE])
    totals.insert(5, "transfer_fees", cs[:, X_TFEE])
    totals.insert(6, "transfers", cs[:, X_NTR].astype(np.int64))
    totals["quote_fx"] = cs[:, X_FX]  # (inside unhedged)
    liq = records[records[:, R_KIND] == K_LIQ, R_COL].astype(np.int64)
    totals["liquidations"] = np.bincount(liq, minlength=C)
    totals["final_equity"] = out.equity[-1]
    return SpreadResult(
        index=index,
        columns=columns,
        equity=frame(out.equity),
        components=components,
        positions={"A": frame(out.pos_a), "B": frame(out.pos_b)},
        venues={"A": frame(out.ven_a).astype(np.int64), "B": frame(out.ven_b).astype(np.int64)} if switching else {},
        margin_ratio={"A": frame(out.mr_a), "B": frame(out.mr_b)},
        in_flight=frame(out.in_flight),
        events_source=lambda: _events(records, index, legs_a, legs_b),
        totals=totals,
        initial_capital=capital,
        flags=tuple(flags),
        notes=tuple(notes),
    )

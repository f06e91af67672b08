"""A hand-written numba loop of the carry model on one column: the yardstick of issue 17.

Issue 17 asks that the engine's simulation kernel be "within 1.5x of a hand-written numba loop
of the same model on one column". :func:`reference_carry_nb` is that loop: one symbol, one
column, the state in local variables, no generality, written from the engine's rules
(:mod:`backtest.kernels.rules`) but sharing no code with them. :func:`check_reference` checks
that it computes the engine's numbers (equity per bar and every fill) before
:func:`time_reference` times the two. ``python -m backtest.app.bench_reference`` runs both on
the engine benchmark's single-symbol year (:func:`benchmark_inputs`).

What the loop models (units: coins for quantities, quote (USDT) for money, quote per coin for
prices, fractions for rates)
------------------------------------------------------------------------------------------
* A long carry only (spot bought, perp sold short, the same coins): targets ``x`` in
  ``{NaN, 0, 0.5, 1}`` (NaN: keep), isolated margin, one futures wallet.
* Timing: the target of bar ``i`` (read at its close) executes at the open of bar ``i + 1``
  (``execution_delay_bars=1``).
* Sizing, at that open: portfolio equity ``E = s * spot_open + (q * perp_open - cost) +
  futures wallet + quote cash``; spot coins ``x * max(E, 0) * L / (L + 1) / spot_open``,
  perp ``-spot`` coins (``L``: ``perp_leverage``).
* Fills at the open with ``slippage_bps`` against the trader on both legs (spot at the spot
  open, perp at the perp open) and taker fees ``|dq| * fill price * rate`` per leg: the spot
  leg out of the quote cash, the perp's realized PnL minus its fee into the futures wallet
  (average-entry cost basis ``cost = q * entry``).
* The transfer after the fills resets the futures margin balance to ``|q| * perp_open / L``:
  ``|q| * perp_open / L - (wallet + min(unrealized, 0))`` moves from the quote cash (an
  unrealized profit stays in the wallet); transfers of 1e-9 quote or less are skipped.
* Liquidation pre-check at every bar after the fills: the short perp's liquidation mark price
  ``(wallet - cost) / (|q| * (1 + mmr))`` (flat ``maintenance_margin_rate``, cum 0) against
  the bar's ``mark_high``. The loop does not liquidate: it reports the first bar that would
  (:func:`run_reference` then raises). On the benchmark's data the engine's events show no
  liquidation (rebalancing at a 10% drift re-margins the perp long before the mark rises the
  ~33% that liquidates a 3x short).
* Funding at each settlement bar: ``-q * funding_value`` into the futures wallet
  (``Market.funding_value``, quote per coin; ``funding_rate`` is only the events' label).
* Revaluation at the close: spot at ``spot_close``, perp at ``mark_close``; equity per bar
  ``quote cash + s * spot_close + wallet + (q * mark_close - cost)`` written to the output.
* Rebalancing band (``rebalance_notional_band``, default 0.10): at every close, when
  ``|s * spot_close - N| > band * N`` with the target notional ``N = max(E, 0) * x * L / (L + 1)``
  (``E`` the equity at that close, ``x`` the target held), both legs trade back to the target
  at the next open.

What it leaves out (inputs that need it are refused, a liquidation when the loop reaches it):
several symbols or columns, weights, short (reverse) carry and spot borrowing, cross and
portfolio margin, margin top-ups, the delta band, calendar rebalancing, lots and minimums
(``markets_path``), the volume participation slippage, maker fees, ``execution_delay_bars !=
1``, tiered maintenance margin (``tiers_path``), invalid or untradable bars, liquidations and
what follows them, the stop at zero equity (not checked), and every output but the equity per
bar and the fills (no components, margin ratio, positions or cash-flow events: the engine's
lean mode, ``full=False``, writes equity and portfolio equity per bar and keeps its events).

The engine's equity is the sum of its cost components and the loop's the sum of its wallets and
legs: the two agree to rounding (below 1e-14 relative on the benchmark); :func:`check_reference`
compares them at ``rtol``.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any, NamedTuple

import numba
import numpy as np

from backtest.config import DEFAULT_MAINTENANCE_MARGIN_RATE, BacktestConfig
from backtest.engine import run_backtest
from data.errors import ConfigError
from data.market import Market
from data.synthetic import benchmark_market

#: Fields of a row of the loop's fills array: bar, leg (0 spot, 1 perp), signed coins, fill price
#: (quote per coin), fee (quote).
FILL_FIELDS = ("bar", "leg", "qty", "price", "fee")
#: The targets the loop accepts (besides NaN): flat, half and full carry.
CARRY_TARGETS = (0.0, 0.5, 1.0)


@numba.njit(cache=True, inline="always")
def _fill_row_nb(fills_out, n, bar, leg, qty, price, fee):
    """Row ``n`` of the fills (:data:`FILL_FIELDS`) if it fits; returns ``n + 1``."""
    if n < fills_out.shape[0]:
        fills_out[n, 0] = bar
        fills_out[n, 1] = leg
        fills_out[n, 2] = qty
        fills_out[n, 3] = price
        fills_out[n, 4] = fee
    return n + 1


@numba.njit(cache=True)
def reference_carry_nb(
    spot_open,
    perp_open,
    spot_close,
    mark_high,
    mark_close,
    funding_value,
    targets,
    capital,
    lev,
    slip,
    spot_fee,
    perp_fee,
    mmr,
    band,
    equity_out,
    fills_out,
):
    """Simulate a long carry on one symbol, bar by bar (see the module docstring for the rules).

    Inputs are (T,) arrays of one symbol: spot open/close, perp open, mark high/close (quote per
    coin), funding value (quote per coin of perp held, 0 off settlements), targets (NaN: keep);
    ``capital`` (quote), leverage ``lev``, slippage ``slip`` (fraction of the open), taker fee
    rates ``spot_fee``/``perp_fee``, maintenance margin rate ``mmr``, rebalancing ``band``
    (fraction; inf: none). Writes the equity at each close (quote) to ``equity_out`` (T,) and
    the fills to ``fills_out`` (rows of :data:`FILL_FIELDS`, as many as fit). Returns
    ``(number of fills, first bar whose mark high reached the liquidation price or -1)``.
    """
    T = spot_close.shape[0]
    cash = capital  # quote cash of the spot wallet
    fw = 0.0  # futures wallet (quote)
    s = 0.0  # spot coins
    q = 0.0  # perp coins (<= 0)
    cost = 0.0  # perp cost basis, q * average entry (quote)
    last_x = np.nan  # the target held
    factor = 0.0  # target spot notional per unit of equity: x * L / (L + 1)
    reb = False  # a rebalance is due at the next open
    lp = np.inf  # liquidation mark price of the short perp
    n = 0
    liq_bar = -1
    for j in range(T):
        # orders at the open: the target decided at the last close, or a rebalance
        x = targets[j - 1] if j > 0 else np.nan
        new_target = x == x and x != last_x
        if new_target or reb:
            if not new_target:
                x = last_x
            reb = False
            so = spot_open[j]
            po = perp_open[j]
            eq = s * so + (q * po - cost) + fw + cash
            new_s = x * max(eq, 0.0) * lev / (lev + 1.0) / so
            last_x = x
            factor = x * lev / (lev + 1.0)
            traded = False
            dq = new_s - s
            if dq != 0.0:
                f = so * (1.0 + slip) if dq > 0.0 else so * (1.0 - slip)
                fee = abs(dq) * f * spot_fee
                cash -= dq * f + fee
                n = _fill_row_nb(fills_out, n, j, 0.0, dq, f, fee)
                s = new_s
                traded = True
            dq = -new_s - q
            if dq != 0.0:
                f = po * (1.0 + slip) if dq > 0.0 else po * (1.0 - slip)
                fee = abs(dq) * f * perp_fee
                realized = 0.0
                if q == 0.0 or dq < 0.0:  # open or add to the short
                    cost += dq * f
                else:  # buy back part or all of it
                    r = -dq / q
                    realized = -dq * f - r * cost
                    cost = cost - r * cost if q + dq != 0.0 else 0.0
                fw += realized - fee
                n = _fill_row_nb(fills_out, n, j, 1.0, dq, f, fee)
                q = -new_s
                traded = True
            if traded:  # reset the futures margin balance to |q| * perp open / L
                tr = abs(q) * po / lev - (fw + min(q * po - cost, 0.0))
                if abs(tr) > 1e-9:
                    cash -= tr
                    fw += tr
                lp = (fw - cost) / (-q * (1.0 + mmr)) if q < 0.0 else np.inf
        # liquidation pre-check against the bar's adverse mark extreme
        if mark_high[j] >= lp and liq_bar < 0:
            liq_bar = j
        # funding settled in the bar
        fv = funding_value[j]
        if q != 0.0 and fv != 0.0 and fv == fv:
            fw -= q * fv
            lp = (fw - cost) / (-q * (1.0 + mmr))
        # revaluation at the close, equity, rebalancing band
        sc = spot_close[j]
        eq = cash + s * sc + fw + (q * mark_close[j] - cost)
        equity_out[j] = eq
        if not reb:
            target = max(eq, 0.0) * factor
            reb = abs(s * sc - target) > band * target
    return n, liq_bar


class ReferenceInputs(NamedTuple):
    """The loop's arguments taken from a market, targets and config (:func:`prepare_reference`):
    (T,) arrays of the one symbol, then the scalar settings, in :func:`reference_carry_nb`'s order."""

    spot_open: np.ndarray
    perp_open: np.ndarray
    spot_close: np.ndarray
    mark_high: np.ndarray
    mark_close: np.ndarray
    funding_value: np.ndarray
    targets: np.ndarray
    capital: float
    lev: float
    slip: float
    spot_fee: float
    perp_fee: float
    mmr: float
    band: float


def prepare_reference(market: Market, targets: Any, config: BacktestConfig) -> ReferenceInputs:
    """The loop's inputs; ConfigError when the market, targets or config need more than it models.

    ``targets``: a scalar or a (T,) or (T, 1) array of exposures in ``{NaN, 0, 0.5, 1}``."""
    if market.n_symbols != 1:
        raise ConfigError(f"the reference loop runs one symbol, the market has {market.n_symbols}")
    T = market.n_bars
    tg = np.asarray(targets, dtype=np.float64)
    if tg.ndim == 0:
        tg = np.full(T, float(tg))
    elif tg.shape == (T, 1):
        tg = tg[:, 0]
    if tg.shape != (T,):
        raise ConfigError(f"targets of shape {np.shape(targets)}: the reference loop runs one column of {T} bars")
    finite = tg[np.isfinite(tg)]
    if not np.isin(finite, CARRY_TARGETS).all() or np.isinf(tg).any():
        raise ConfigError(f"the reference loop takes targets in {{NaN, 0, 0.5, 1}}, got {np.unique(finite)}")
    if not (np.asarray(market.valid).all() and np.asarray(market.tradable).all()):
        raise ConfigError("the reference loop needs every bar valid and tradable")
    unsupported = {
        "margin_mode": config.margin_mode != "isolated",
        "order_type": config.order_type != "taker",
        "execution_delay_bars": config.execution_delay_bars != 1,
        "volume_participation_coefficient": config.volume_participation_coefficient != 0.0,
        "topup_margin_ratio": config.topup_margin_ratio is not None,
        "rebalance_delta_band": config.rebalance_delta_band is not None,
        "rebalance_every_hours": config.rebalance_every_hours is not None,
        "markets_path": config.markets_path is not None,
        "tiers_path": config.maintenance_margin_rate is None and config.tiers_path is not None,
    }
    bad = [name for name, is_bad in unsupported.items() if is_bad]
    if bad:
        raise ConfigError(f"the reference loop does not model these settings: {', '.join(bad)}")
    mmr = config.maintenance_margin_rate
    band = config.rebalance_notional_band

    def col(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a[:, 0], dtype=np.float64)

    return ReferenceInputs(
        col(market.spot_open),
        col(market.perp_open),
        col(market.spot_close),
        col(market.mark_high),
        col(market.mark_close),
        col(market.funding_value),
        np.ascontiguousarray(tg),
        float(config.initial_capital_quote),
        float(config.perp_leverage),
        float(config.slippage_bps) / 1e4,
        float(config.spot_taker_fee_rate),
        float(config.perp_taker_fee_rate),
        float(DEFAULT_MAINTENANCE_MARGIN_RATE if mmr is None else mmr),
        np.inf if band is None else float(band),
    )


def simulate_reference(inputs: ReferenceInputs) -> tuple[np.ndarray, np.ndarray]:
    """Run the loop: ``(equity (T,) quote, fills (n, 5) of FILL_FIELDS)``; ConfigError when the
    run reaches a liquidation (not modelled)."""
    T = inputs.spot_close.shape[0]
    equity = np.empty(T)
    fills = np.empty((2 * int(np.isfinite(inputs.targets).sum()) + 1024, len(FILL_FIELDS)))
    n, liq_bar = reference_carry_nb(*inputs, equity, fills)
    if n > fills.shape[0]:  # more rebalances than room: again with the exact size
        fills = np.empty((n, len(FILL_FIELDS)))
        n, liq_bar = reference_carry_nb(*inputs, equity, fills)
    if liq_bar >= 0:
        raise ConfigError(
            f"the short perp reaches its liquidation price at bar {liq_bar}: the reference loop does not model "
            "liquidations (choose inputs without them)"
        )
    return equity, fills[:n]


def run_reference(market: Market, targets: Any, config: BacktestConfig) -> np.ndarray:
    """Equity per bar (T,) in quote of the reference loop on ``market``'s one symbol."""
    return simulate_reference(prepare_reference(market, targets, config))[0]


def _first_bad(got: np.ndarray, want: np.ndarray, rtol: float) -> tuple[np.ndarray, int]:
    """Relative differences ``|got - want| / max(|want|, 1e-300)`` per row and the first row
    beyond ``rtol`` (-1: none)."""
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    if rel.ndim > 1:
        rel = rel.max(axis=1)
    bad = np.flatnonzero(~(rel <= rtol))
    return rel, int(bad[0]) if len(bad) else -1


def check_reference(market: Market, targets: Any, config: BacktestConfig, rtol: float = 1e-9) -> dict:
    """Compare the reference loop with ``run_backtest(market, targets, config, full=False)``.

    AssertionError when the engine liquidated or stopped (outside the loop's model), when the
    equity curves differ beyond ``rtol`` (relative, naming the first such bar) or when the fills
    differ (count, or bar, leg, qty, price and fee beyond ``rtol``). Returns ``{"bars",
    "n_fills", "max_rel_diff_equity", "max_rel_diff_fills"}``."""
    res = run_backtest(market, targets, config, full=False)
    ev = res.events
    outside = ev[ev.kind.isin(["liquidation", "stop", "skip"])]
    if len(outside):
        raise AssertionError(f"the engine's run has {len(outside)} {sorted(set(outside.kind))} event(s): not modelled")
    eng = np.asarray(res.equity.to_numpy()[:, 0], dtype=np.float64)
    ref, fills = simulate_reference(prepare_reference(market, targets, config))
    rel, k = _first_bad(ref, eng, rtol)
    if k >= 0:
        raise AssertionError(
            f"equity differs at bar {k} ({market.index[k]}): reference {ref[k]!r}, engine {eng[k]!r} "
            f"(relative {rel[k]:.3g} > {rtol:g})"
        )
    ef = ev[ev.kind == "fill"]
    want = np.column_stack(
        [
            market.index.get_indexer(ef["bar"]),
            (ef.leg == "perp").to_numpy(),
            ef.qty.to_numpy(),
            ef.price.to_numpy(),
            ef.fee.to_numpy(),
        ]
    ).astype(np.float64)
    if want.shape != fills.shape:
        raise AssertionError(f"the reference loop made {len(fills)} fills, the engine {len(want)}")
    frel, f = _first_bad(fills, want, rtol)
    if f >= 0:
        raise AssertionError(
            f"fill {f} {dict(zip(FILL_FIELDS, fills[f]))} != the engine's {dict(zip(FILL_FIELDS, want[f]))}"
        )
    return {
        "bars": len(eng),
        "n_fills": len(fills),
        "max_rel_diff_equity": float(rel.max()) if len(rel) else 0.0,
        "max_rel_diff_fills": float(frel.max()) if len(frel) else 0.0,
    }


def time_reference(market: Market, targets: Any, config: BacktestConfig, repeat: int = 5) -> dict:
    """Best-of-``repeat`` seconds of the reference loop and of ``run_backtest(..., full=False)``
    on the same inputs, after a warm-up of both, in interleaved rounds (a slow spell of a shared
    machine hits both). ``reference_s`` is the loop alone (inputs extracted and outputs allocated
    beforehand, as the engine reuses its output memory); ``reference_call_s`` the whole
    :func:`run_reference` call (checks, extraction, allocation, loop), like the engine's timing
    of the whole ``run_backtest`` call. Returns those, ``engine_s``, ``engine_over_reference``
    (engine / loop), ``engine_over_reference_call``, ``kernel_s`` (the engine's simulation
    kernel alone: ``BacktestResult.kernel_seconds``, best of the same runs) and
    ``kernel_over_reference`` (kernel / loop: issue 17's goal compares these two)."""
    inputs = prepare_reference(market, targets, config)
    equity = np.empty(inputs.spot_close.shape[0])
    fills = np.empty((2 * int(np.isfinite(inputs.targets).sum()) + 1024, len(FILL_FIELDS)))
    runs = {
        "reference_s": lambda: reference_carry_nb(*inputs, equity, fills),
        "reference_call_s": lambda: run_reference(market, targets, config),
        "engine_s": lambda: run_backtest(market, targets, config, full=False),
    }
    for fn in runs.values():  # warm-up (numba kernels from the on-disk cache)
        fn()
    best = dict.fromkeys(runs, np.inf)
    kernel = np.inf
    for _ in range(repeat):
        for name, fn in runs.items():
            t0 = time.perf_counter()
            res = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
            if name == "engine_s":
                kernel = min(kernel, res.kernel_seconds)
    return {
        **best,
        "engine_over_reference": best["engine_s"] / best["reference_s"],
        "engine_over_reference_call": best["engine_s"] / best["reference_call_s"],
        "kernel_s": kernel,
        "kernel_over_reference": kernel / best["reference_s"],
    }


def benchmark_inputs(n_bars: int = 525_600, seed: int = 1) -> tuple[Market, np.ndarray, BacktestConfig]:
    """The engine benchmark's single-symbol run (``backtest.app.bench.bench_single``) restricted
    to long carry: its synthetic 1-minute market, a target in ``{0, 0.5, 1}`` on one bar in 2,000
    (full carry at bar 0), ``perp_leverage=3``, 1 bps slippage, maintenance margin rate 0.5%."""
    market = benchmark_market(n_bars, 1, "1min")
    rng = np.random.default_rng(seed)
    tg = np.where(rng.random((n_bars, 1)) < 1 / 2000, rng.choice([0.0, 0.5, 1.0], (n_bars, 1)), np.nan)
    tg[0] = 1.0
    return market, tg, BacktestConfig(perp_leverage=3, slippage_bps=1.0, maintenance_margin_rate=0.005)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m backtest.app.bench_reference", description=__doc__.split("\n\n")[0])
    ap.add_argument("--bars", type=int, default=525_600)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    market, tg, cfg = benchmark_inputs(args.bars)
    check = check_reference(market, tg, cfg)
    timing = time_reference(market, tg, cfg, repeat=args.repeat)
    print(
        f"reference loop: {check['bars']:,} bars, {check['n_fills']} fills, equity equal to the engine's within "
        f"{check['max_rel_diff_equity']:.2g} (relative); loop {timing['reference_s'] * 1e3:.2f} ms "
        f"(whole call {timing['reference_call_s'] * 1e3:.2f} ms), engine full=False {timing['engine_s'] * 1e3:.2f} ms: "
        f"{timing['engine_over_reference']:.2f}x the loop (its kernel {timing['kernel_s'] * 1e3:.2f} ms: "
        f"{timing['kernel_over_reference']:.2f}x)"
    )
    out = {**check, **timing}
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

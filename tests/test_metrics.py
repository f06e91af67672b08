"""reports.metrics: one set of formulas for portfolios, columns, streamed time chunks and
walk-forward windows; one zero-variance rule; vectorized over many columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from backtest.targets import Targets
from data.errors import ConfigError
from data.synthetic import random_market
from data.units import HOURS_PER_YEAR
from reports.keys import COMPONENT_KEYS, SUMMARY_KEYS
from reports.metrics import (
    RETURN_KEYS,
    LeanFigures,
    ReturnAccumulator,
    column_stats,
    lean_figures,
    return_stats,
    stats,
    stats_frame,
)


# --------------------------------------------------------------------------- a plain reference
def reference_returns(eq: np.ndarray, initial: float, bar_hours: float, times=None) -> dict[str, float]:
    """The definitions of the module docstring, written out for one equity curve.

    ``times``: the bars' open times (default: consecutive bars from 2024-01-01 00:00 UTC).
    """
    if times is None:
        times = pd.date_range("2024-01-01", periods=len(eq), freq=pd.Timedelta(hours=bar_hours), tz="UTC")
    prev = np.concatenate([[initial], eq[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(prev > 0, eq / prev - 1.0, 0.0)
    a = HOURS_PER_YEAR / bar_hours
    growth = np.cumprod(1.0 + r)
    mdd = float(np.min(growth / np.maximum.accumulate(growth) - 1.0))
    ann = float(growth[-1] ** (a / len(r)) - 1.0)
    d = daily_returns(eq, initial, times)
    p = 365.0 if bar_hours <= 24 else HOURS_PER_YEAR / bar_hours
    sd = float(np.std(d, ddof=1)) if len(d) > 1 else np.nan
    down = float(np.sqrt(np.mean(np.minimum(d, 0.0) ** 2)) * np.sqrt(p))
    return {
        "total_return": float(eq[-1] / initial - 1.0),
        "annualized_return": ann,
        "sharpe": float(np.mean(d) / sd * np.sqrt(p)) if sd > 0 else np.nan,
        "sortino": float(np.mean(d) * p / down) if sd > 0 and down > 0 else np.nan,
        "max_drawdown": mdd,
        "calmar": ann / abs(mdd) if mdd != 0 else np.nan,
    }


def daily_returns(eq: np.ndarray, initial: float, times) -> np.ndarray:
    """Returns of the equity at each UTC day's last bar, the first against ``initial``."""
    days = pd.Series(eq, index=pd.DatetimeIndex(times)).groupby(pd.DatetimeIndex(times).floor("D")).last()
    end = days.to_numpy()
    prev = np.concatenate([[initial], end[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(prev > 0, end / prev - 1.0, 0.0)


def assert_close(actual, expected, key):
    np.testing.assert_allclose(
        np.asarray(actual, float), np.asarray(expected, float), rtol=1e-12, atol=1e-10, equal_nan=True, err_msg=key
    )


def random_curves(rng, T: int, C: int) -> tuple[np.ndarray, np.ndarray]:
    """C equity curves of T bars: random walks, a flat one, one that only gains, one that hits 0."""
    eq = 1_000.0 * np.cumprod(1.0 + rng.normal(0.0002, 0.01, (T, C)), axis=0)
    eq[:, 0] = 1_000.0  # never varies
    eq[:, 1] = 1_000.0 * np.cumprod(np.where(np.arange(T) % 2, 1.01, 1.02))  # never loses
    eq[T // 2 :, 2] = 0.0  # wiped out: returns after that are 0
    return eq, np.full(C, 1_000.0)


# --------------------------------------------------------------------------- formulas
def test_1000_random_columns_equal_a_per_column_computation():
    rng = np.random.default_rng(0)
    eq, initial = random_curves(rng, 400, 1_000)
    got = return_stats(eq, initial, 1.0)
    assert set(got) == set(RETURN_KEYS) and all(v.shape == (1_000,) for v in got.values())
    want = [reference_returns(eq[:, c], initial[c], 1.0) for c in range(eq.shape[1])]
    for key in RETURN_KEYS:
        assert_close(got[key], [w[key] for w in want], key)


def test_formulas_equal_vectorbt_where_it_is_finite():
    """vectorbt's returns accessor (365-day year) to 1e-12: on bar returns for the annualized
    return, drawdown and Calmar, on daily returns (one-day frequency) for Sharpe and Sortino."""
    vbt = pytest.importorskip("vectorbt")
    assert vbt
    rng = np.random.default_rng(1)
    eq, initial = random_curves(rng, 500, 40)
    eq, initial = eq[:, 3:], initial[3:]  # the degenerate curves are the zero-variance rule's (below)
    for bar_hours in (1.0, 8.0, 1 / 60):
        times = pd.date_range("2024-01-01 05:00", periods=len(eq), freq=pd.Timedelta(hours=bar_hours), tz="UTC")
        prev = np.vstack([initial[None, :], eq[:-1]])
        rets = pd.DataFrame(eq / prev - 1.0, index=times)
        per_bar = rets.vbt.returns(freq=pd.Timedelta(hours=bar_hours), year_freq="365 days")
        daily = pd.DataFrame(np.column_stack([daily_returns(eq[:, c], initial[c], times) for c in range(eq.shape[1])]))
        per_day = daily.vbt.returns(freq="1D", year_freq="365 days")
        got = return_stats(eq, initial, bar_hours, times)
        for key, theirs in (
            ("annualized_return", per_bar.annualized()),
            ("sharpe", per_day.sharpe_ratio()),
            ("sortino", per_day.sortino_ratio()),
            ("max_drawdown", per_bar.max_drawdown()),
            ("calmar", per_bar.calmar_ratio()),
        ):
            np.testing.assert_allclose(got[key], theirs.to_numpy(), rtol=1e-12, atol=0, err_msg=f"{bar_hours} {key}")
        if bar_hours == 1 / 60:  # 500 minutes from 05:00: one day, no variance
            assert np.isnan(got["sharpe"]).all()


def test_daily_returns_from_the_bar_times():
    """Day ends come from the bar times (a first bar mid-day, a gap of days, a last day cut
    short); without times the bars run from a UTC midnight."""
    rng = np.random.default_rng(8)
    eq, initial = random_curves(rng, 24 * 20, 30)
    times = pd.date_range("2024-03-01 17:00", periods=len(eq), freq="h", tz="UTC")
    times = times.where(np.arange(len(eq)) < 200, times + pd.Timedelta(days=3))  # 3 days without bars
    got = return_stats(eq, initial, 1.0, times)
    for c in range(eq.shape[1]):
        want = reference_returns(eq[:, c], initial[c], 1.0, times)
        for key in RETURN_KEYS:
            assert_close(got[key][c], want[key], f"{c} {key}")
    midnight = pd.date_range("2024-03-01", periods=len(eq), freq="h", tz="UTC")
    for key in RETURN_KEYS:
        assert_close(return_stats(eq, initial, 1.0)[key], return_stats(eq, initial, 1.0, midnight)[key], key)
    with pytest.raises(ValueError, match="bar times"):
        return_stats(eq, initial, 1.0, times[:-1])


def test_the_same_day_end_equity_gives_the_same_sharpe_at_any_bar_length():
    """Equity through the same day ends: the same Sharpe and Sortino on 1h, 4h and 1d bars,
    whatever happens within the days; bars longer than a day give a return each."""
    rng = np.random.default_rng(9)
    days, C = 60, 20
    day_end = 1_000.0 * np.cumprod(1.0 + rng.normal(0.001, 0.01, (days, C)), axis=0)
    figures = {}
    for hours in (1, 4, 24):
        per_day = 24 // hours
        eq = np.repeat(day_end, per_day, axis=0) * (1.0 + rng.normal(0.0, 0.02, (days * per_day, C)))
        eq[per_day - 1 :: per_day] = day_end  # the day's last bar closes at the day end
        times = pd.date_range("2024-01-01", periods=len(eq), freq=f"{hours}h", tz="UTC")
        figures[hours] = return_stats(eq, np.full(C, 1_000.0), float(hours), times)
    for key in ("sharpe", "sortino"):
        assert np.isfinite(figures[1][key]).all()
        assert_close(figures[4][key], figures[1][key], key)
        assert_close(figures[24][key], figures[1][key], key)
    two_days = return_stats(day_end[1::2], np.full(C, 1_000.0), 48.0)
    want = [reference_returns(day_end[1::2, c], 1_000.0, 48.0) for c in range(C)]
    for key in RETURN_KEYS:
        assert_close(two_days[key], [w[key] for w in want], key)
    r = day_end[1::2] / np.vstack([np.full((1, C), 1_000.0), day_end[1::2][:-1]]) - 1.0
    assert_close(two_days["sharpe"], r.mean(axis=0) / r.std(axis=0, ddof=1) * np.sqrt(365 / 2), "48h sharpe")


def test_zero_variance_rule():
    rng = np.random.default_rng(2)
    eq, initial = random_curves(rng, 200, 4)
    got = return_stats(eq, initial, 1.0)
    # never varies: Sharpe, Sortino and Calmar are NaN (not inf), no drawdown
    assert np.isnan([got["sharpe"][0], got["sortino"][0], got["calmar"][0]]).all()
    assert got["max_drawdown"][0] == 0 and got["total_return"][0] == 0 and got["annualized_return"][0] == 0
    # never loses: a Sharpe ratio, no Sortino (downside deviation 0), no Calmar (no drawdown)
    assert np.isfinite(got["sharpe"][1]) and np.isnan(got["sortino"][1]) and np.isnan(got["calmar"][1])
    # wiped out: returns after equity reached 0 are 0, the figures stay finite
    assert got["max_drawdown"][2] == -1 and got["total_return"][2] == -1 and np.isfinite(got["sharpe"][2])
    assert all(np.isfinite(got[k][3]) for k in RETURN_KEYS)
    for values in got.values():
        assert not np.isinf(values).any()
    # fewer than 2 bars: no variance either
    one = return_stats(eq[:1], initial, 1.0)
    assert np.isnan(one["sharpe"]).all() and np.isnan(one["sortino"]).all()
    # bars within one UTC day: one daily return, no variance either
    day = return_stats(eq[:24], initial, 1.0)
    assert np.isnan(day["sharpe"]).all() and np.isnan(day["sortino"]).all()
    assert np.isfinite(day["max_drawdown"]).all()


@pytest.mark.parametrize("with_times", [True, False])
def test_chunks_merge_to_one_pass(with_times):
    """Chunks cut anywhere (one bar, mid-day, at a day end) give the one-pass figures."""
    rng = np.random.default_rng(3)
    eq, initial = random_curves(rng, 1_000, 50)
    times = pd.date_range("2024-01-01 09:00", periods=len(eq), freq="h", tz="UTC") if with_times else None
    whole = return_stats(eq, initial, 1.0, times)
    acc = ReturnAccumulator(initial, 1.0)
    for lo, hi in ((0, 1), (1, 15), (15, 300), (300, 301), (301, 327), (327, 777), (777, 1_000)):
        acc.add(eq[lo:hi], None if times is None else times[lo:hi])
    acc.add(eq[:0], None if times is None else times[:0])
    assert acc.bars == 1_000
    parts = acc.stats()
    for key in RETURN_KEYS:
        assert_close(parts[key], whole[key], key)
        np.testing.assert_array_equal(np.isnan(parts[key]), np.isnan(whole[key]), err_msg=key)


# --------------------------------------------------------------------------- results
def _run(n_sets: int, T: int = 300, N: int = 2, seed: int = 4, **cfg):
    """``n_sets`` portfolios of N symbols each on a random market; the last one never trades."""
    rng = np.random.default_rng(seed)
    m = random_market(rng, T, N, vol=0.01, wick=0.05)
    C = N * n_sets
    values = np.where(rng.random((T, C)) < 0.03, rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], (T, C)), np.nan)
    values[0] = rng.choice([-1.0, 0.0, 1.0], C)
    values[:, -N:] = 0.0
    table = pd.DataFrame(
        {
            "strategy": "random",
            "symbol": np.tile(list(m.symbols), n_sets),
            "group": np.repeat(np.arange(n_sets), N),
            "set": np.repeat(np.arange(n_sets), N),
        }
    )
    tg = Targets(values, np.tile(np.arange(N), n_sets), np.repeat(np.arange(n_sets), N), table)
    config = BacktestConfig(perp_leverage=5, slippage_bps=1, **cfg)
    return m, tg, config, run_backtest(m, tg, config)


def reference_portfolio(result, group) -> dict:
    """One portfolio's figures from the result's frames, straightforwardly."""
    cols = result.group_columns(group)
    init = float(result.config.initial_capital_quote)
    eq = result.group_equity[group].to_numpy()
    out = reference_returns(eq, init, result.bar_hours, result.index)
    final = {k: float(result.components[v].iloc[-1, cols].sum()) for k, v in COMPONENT_KEYS.items()}
    ev = result.events[result.events["group"] == group]
    fills = ev[ev["kind"] == "fill"]
    held = (result.spot_qty.iloc[:, cols] != 0).any(axis=1) | (result.perp_qty.iloc[:, cols] != 0).any(axis=1)
    out.update(
        initial_capital=init,
        final_equity=float(eq[-1]),
        basis_pnl=final["spot_pnl"] + final["perp_pnl"],
        n_liquidations=int((ev["kind"] == "liquidation").sum()),
        n_trades=len(fills),
        n_skipped_orders=int((ev["kind"] == "skip").sum()),
        turnover=float((fills["qty"].abs() * fills["price"]).sum() / init),
        time_in_market=float(held.mean()),
        worst_margin_ratio=min(float(np.nanmax(result.margin_ratio.iloc[:, cols].to_numpy())), 1000.0)
        if result.margin_ratio.iloc[:, cols].notna().any().any()
        else np.nan,
        **final,
    )
    return out


@pytest.mark.parametrize("margin_mode", ["isolated", "cross"])
def test_portfolios_equal_a_per_portfolio_computation(margin_mode):
    # seed 8: liquidations in both modes (cross margin counts the long spot coins as assets)
    m, tg, config, res = _run(12, seed=8, margin_mode=margin_mode)
    frame = stats_frame(res)
    assert list(frame.columns) == list(SUMMARY_KEYS) and list(frame.index) == list(res.group_ids)
    assert frame["n_trades"].sum() > 0 and frame["n_liquidations"].sum() > 0
    for g in res.group_ids:
        want = reference_portfolio(res, g)
        for key in SUMMARY_KEYS:
            assert_close(frame.loc[g, key], want[key], f"{g} {key}")
    last = res.group_ids[-1]  # never trades: the zero-variance rule
    assert np.isnan(frame.loc[last, ["sharpe", "sortino", "calmar"]].to_numpy(float)).all()
    assert frame.loc[last, "time_in_market"] == 0 and frame.loc[last, "n_trades"] == 0
    one = stats(res, res.group_ids[0])
    assert list(one) == list(SUMMARY_KEYS) and isinstance(one["n_trades"], int)
    assert one == pytest.approx(frame.iloc[0].to_dict(), nan_ok=True)


def test_1000_parameter_sets_in_one_pass():
    """1,000 one-column portfolios: every figure equals the straightforward per-portfolio one."""
    m, tg, config, res = _run(1_000, T=200, N=1, seed=5)
    frame = stats_frame(res)
    columns = column_stats(res)
    for k, g in enumerate(res.group_ids):
        want = reference_portfolio(res, g)
        for key in SUMMARY_KEYS:
            assert_close(frame.loc[g, key], want[key], f"{g} {key}")
            assert_close(columns.loc[k, key], want[key], f"column {k} {key}")


def test_columns_and_portfolios_share_the_rule():
    m, tg, config, res = _run(3)
    cols = column_stats(res)
    assert list(cols.columns) == list(SUMMARY_KEYS) and len(cols) == tg.n_columns
    np.testing.assert_allclose(cols["initial_capital"], config.initial_capital_quote / 2, rtol=1e-12)
    for c in range(tg.n_columns):
        eq = res.equity.iloc[:, c].to_numpy()
        want = reference_returns(eq, cols["initial_capital"].iloc[c], res.bar_hours, res.index)
        for key in RETURN_KEYS:
            assert_close(cols[key].iloc[c], want[key], f"column {c} {key}")
    never = cols.iloc[-2:]  # the last portfolio's columns never trade
    assert np.isnan(never[["sharpe", "sortino", "calmar"]].to_numpy(float)).all()


def test_lean_results_give_the_same_figures():
    """Without per-bar positions, time in market is rebuilt from the fills (runs that start flat)."""
    m, tg, config, full = _run(6, margin_mode="cross")
    lean = run_backtest(m, tg, config, outputs=("equity", "group_equity"))
    a, b = stats_frame(full), stats_frame(lean)
    assert b["worst_margin_ratio"].isna().all()
    pd.testing.assert_frame_equal(a.drop(columns="worst_margin_ratio"), b.drop(columns="worst_margin_ratio"))
    a, b = column_stats(full), column_stats(lean)
    pd.testing.assert_frame_equal(a.drop(columns="worst_margin_ratio"), b.drop(columns="worst_margin_ratio"))
    with pytest.raises(ConfigError, match="group_equity"):
        stats_frame(run_backtest(m, tg, config, outputs=("equity",)))
    with pytest.raises(ConfigError, match="pass group="):
        stats(full)
    with pytest.raises(ConfigError, match="no portfolio 99"):
        stats(full, 99)


def test_streaming_figures_equal_the_column_figures_and_keep_the_rule():
    """LeanFigures over time chunks (resumed runs) = column_stats of one run over every bar."""
    from backtest.kernels.simulate import S_Q, S_S

    m, tg, config, _ = _run(8, N=1, seed=6)
    tg = tg.per_column()
    full = run_backtest(m, tg, config)
    want = column_stats(full)
    figs = LeanFigures(tg.n_columns, config.initial_capital_quote, full.bar_hours)
    state = None
    for lo, hi in ((0, 100), (100, 101), (101, 300)):
        part = run_backtest(
            m.select(start=m.index[lo], end=m.index[hi] if hi < m.n_bars else None),
            tg.bars(lo, hi),
            config,
            outputs=("equity",),
            resume=state,
        )
        figs.add(part, *((state.columns[:, S_S], state.columns[:, S_Q]) if state is not None else ()))
        state = part.state
    got = figs.frame()
    assert list(got.columns) == list(SUMMARY_KEYS)
    for key in SUMMARY_KEYS:
        if key == "worst_margin_ratio":
            assert got[key].isna().all()
            continue
        assert_close(got[key], want[key], key)
    assert np.isnan(got[["sharpe", "sortino", "calmar"]].iloc[-1].to_numpy(float)).all()  # never trades
    one = lean_figures(run_backtest(m, tg, config, outputs=("equity",)), config)
    pd.testing.assert_frame_equal(
        one.drop(columns="worst_margin_ratio"), want.reset_index(drop=True).drop(columns="worst_margin_ratio")
    )


@pytest.mark.parametrize("margin_mode", ["isolated", "cross"])
def test_streaming_portfolio_figures_equal_one_run(margin_mode):
    """LeanFigures with a column_group (portfolios of 3 symbols sharing capital) over time
    chunks = stats_frame and column_stats of one run over every bar, worst margin ratio included."""
    from backtest.kernels.simulate import S_Q, S_S

    m, tg, config, full = _run(5, N=3, seed=9, margin_mode=margin_mode)
    want_p, want_c = stats_frame(full), column_stats(full)
    figs = LeanFigures(tg.n_columns, config.initial_capital_quote, full.bar_hours, column_group=tg.group)
    state = None
    for lo, hi in ((0, 37), (37, 38), (38, 180), (180, 300)):
        part = run_backtest(
            m.select(start=m.index[lo], end=m.index[hi] if hi < m.n_bars else None),
            tg.bars(lo, hi),
            config,
            outputs=("equity", "group_equity", "margin"),
            resume=state,
        )
        figs.add(part, *((state.columns[:, S_S], state.columns[:, S_Q]) if state is not None else ()))
        state = part.state
    got_p, got_c = figs.portfolio_frame(), figs.frame()
    assert len(got_p) == 5 and len(got_c) == 15
    assert (want_p["n_trades"] > 0).sum() >= 3 and (want_p["worst_margin_ratio"].iloc[:-1] > 0).all()
    for key in SUMMARY_KEYS:
        assert_close(got_p[key], want_p[key], key)
        assert_close(got_c[key], want_c[key], key)


def test_walk_forward_windows_use_the_same_formulas():
    from backtest.app.commands import RunOutcome, walk_forward
    from backtest.app.runs import DataSpec, RunConfig, StrategySpec

    m, tg, config, res = _run(4, T=24 * 40, seed=7)
    cfg = RunConfig(DataSpec(symbols=tuple(m.symbols)), config, (StrategySpec("random"),))
    run = RunOutcome(cfg, m, tg, res, pd.DataFrame(), pd.DataFrame())
    labels = [f"random[set={g}]" for g in range(4)]
    for metric in ("sharpe", "sortino", "calmar", "total_return"):
        folds, summary = walk_forward(run, "10d:5d", metric=metric)
        assert summary["n_folds"] == len(folds) == 6
        eq = res.group_equity.to_numpy()
        for start, fold in folds.iterrows():
            rows = np.flatnonzero((m.index >= start) & (m.index < fold["test_end"]))
            before = eq[rows[0] - 1]
            want = [reference_returns(eq[rows, g], before[g], 1.0, m.index[rows])[metric] for g in range(4)]
            assert_close(fold["out_of_sample"], want[labels.index(fold["chosen"])], metric)
            assert_close(fold["oos_best_possible"], np.nanmax(want), metric)
        if metric in ("sharpe", "sortino", "calmar"):  # the portfolio that never trades: NaN, never chosen
            assert labels[-1] not in set(folds["chosen"])
            assert np.isnan(return_stats(eq[rows][:, -1:], before[-1:], 1.0)[metric]).all()
    with pytest.raises(ConfigError, match="did you mean 'sharpe'"):
        walk_forward(run, "10d:5d", metric="sharp")


# --------------------------------------------------------------------------- real data
@pytest.mark.shared_data
def test_the_same_carry_has_the_same_sharpe_on_hourly_and_daily_bars(tmp_path):
    """Issue 12: always_carry on real BTCUSDT, 2021-2023, at 1h, 4h and 1d bars: Sharpe and
    Sortino within 10% of the hourly figures (per-bar returns gave 6.6 / 9.3 / 12.2)."""
    import warnings

    from data.catalog import Catalog
    from data.ingest.freqtrade import ingest_freqtrade
    from data.loader import DataWarning, load_market
    from strategies import run_strategy
    from tests.conftest import shared_data_path

    catalog = Catalog(tmp_path / "catalog")
    ingest_freqtrade(shared_data_path("binance"), catalog, symbols=["BTCUSDT"])
    figures = {}
    for freq in ("1h", "4h", "1d"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DataWarning)
            m = load_market(catalog, ["BTCUSDT"], start="2021-01-01", end="2024-01-01", freq=freq)
        figures[freq] = stats(run_backtest(m, run_strategy("always_carry", m), BacktestConfig(perp_leverage=2)))
    hourly = figures["1h"]
    assert hourly["sharpe"] > 1 and hourly["n_trades"] > 0
    for freq in ("4h", "1d"):
        for key in ("sharpe", "sortino"):
            assert figures[freq][key] == pytest.approx(hourly[key], rel=0.10), (
                freq,
                key,
                figures[freq][key],
                hourly[key],
            )

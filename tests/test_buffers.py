"""The engine's output pool (backtest.buffers): memory is reused only once nothing refers to it."""

from __future__ import annotations

import gc
import threading

import numpy as np
import pandas as pd
import pytest

from backtest.buffers import OUTPUT_POOL, BufferPool
from backtest.config import BacktestConfig
from backtest.engine import run_backtest
from data.synthetic import random_market
from tests.reference_engine import assert_identical

MB = 1 << 20


def test_a_block_is_reused_only_when_nothing_refers_to_it():
    pool = BufferPool(64 * MB)
    a = pool.empty((3, 100_000, 2))
    block = a.base.ctypes.data  # the address (a reference would keep the block busy)
    frame = pd.DataFrame(a[1], copy=False)
    view = a[2, :10]
    del a
    assert pool.stats()["free_blocks"] == 0
    b = pool.empty((3, 100_000, 2))  # the first block is still seen by frame and view
    assert not np.shares_memory(b, frame.to_numpy()) and b.base.ctypes.data != block
    del frame
    gc.collect()
    assert pool.stats()["free_blocks"] == 0  # view still holds it
    del view
    assert pool.stats()["free_blocks"] == 1
    c = pool.empty((6, 100_000))
    assert c.base.ctypes.data == block and c.shape == (6, 100_000)
    del b, c


def test_fit_miss_limit_and_clear():
    pool = BufferPool(16 * MB)
    a = pool.empty((1_000_000,))  # 8 MB, pooled
    del a
    assert pool.stats() == {
        "blocks": 1,
        "bytes": 8_000_000,
        "free_blocks": 1,
        "free_bytes": 8_000_000,
        "limit_bytes": 16 * MB,
    }
    small = pool.empty((200_000,))  # 1.6 MB: a free 8 MB block is more than twice that, a miss
    assert pool.stats()["blocks"] == 1 and pool.stats()["free_blocks"] == 0  # the old block was dropped
    del small
    big = pool.empty((3_000_000,))  # 24 MB > limit: plain memory, not pooled
    assert pool.stats()["bytes"] == 1_600_000
    del big
    tiny = pool.empty((1000,))  # under 1 MiB: never pooled
    assert tiny.shape == (1000,) and pool.stats()["blocks"] == 1
    pool.clear()
    assert pool.stats()["blocks"] == 0
    pool.limit_bytes = 0
    x = pool.empty((1_000_000,))
    assert pool.stats()["blocks"] == 0 and x.shape == (1_000_000,)
    with pytest.raises(ValueError):
        pool.limit_bytes = -1


def test_threads_never_share_a_block():
    pool = BufferPool(256 * MB)
    seen, errors = [], []

    def work(k):
        try:
            for _ in range(50):
                a = pool.empty((200_000,))
                a[:] = k
                seen.append(a.base.ctypes.data if a.base is not None else a.ctypes.data)
                if not (a == k).all():
                    errors.append(k)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert pool.stats()["blocks"] <= 4 + 4  # reused, not one block per call


def _case():
    rng = np.random.default_rng(5)
    m = random_market(rng, 60_000, 1, vol=0.002, wick=0.01, funding_every=8)
    vals = np.where(rng.random((m.n_bars, 1)) < 0.002, rng.choice([-1.0, 0.0, 1.0], (m.n_bars, 1)), np.nan)
    vals[0] = 1.0
    return m, vals, BacktestConfig(perp_leverage=3, maintenance_margin_rate=0.005, borrow_annual_rate=0.1)


def test_engine_results_stay_intact_while_later_runs_reuse_memory():
    m, vals, cfg = _case()
    OUTPUT_POOL.clear()
    first = run_backtest(m, vals, cfg)
    kept = {k: v.to_numpy().copy() for k, v in first.components.items()}
    kept_eq = first.equity.to_numpy().copy()
    for x in (0.3, -1.0, 0.7):  # other runs of the same size while `first` lives
        run_backtest(m, np.where(np.isnan(vals), np.nan, x), cfg)
    np.testing.assert_array_equal(first.equity.to_numpy(), kept_eq)
    for k, v in first.components.items():
        np.testing.assert_array_equal(v.to_numpy(), kept[k])
    # a run on reused memory equals a run on fresh memory, bit for bit
    again = run_backtest(m, vals, cfg)
    limit = OUTPUT_POOL.limit_bytes
    OUTPUT_POOL.limit_bytes = 0
    try:
        fresh = run_backtest(m, vals, cfg)
    finally:
        OUTPUT_POOL.limit_bytes = limit
    assert_identical(again, fresh)
    del first, again, fresh
    third = run_backtest(m, vals, cfg)
    assert OUTPUT_POOL.stats()["blocks"] >= 1 and OUTPUT_POOL.stats()["free_blocks"] == 0
    del third
    gc.collect()
    assert OUTPUT_POOL.stats()["free_blocks"] >= 1

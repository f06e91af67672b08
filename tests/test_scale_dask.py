"""Scale-out sweeps on a real Dask distributed cluster (issue 6): two worker processes on
127.0.0.1 give exactly the local results, and a worker killed mid-sweep costs a retry, not a task."""

from __future__ import annotations

import os
import signal

import pandas as pd
import pytest

distributed = pytest.importorskip("distributed")

from backtest.app.scale import run_sweep, synthetic_symbols, write_synthetic_catalog  # noqa: E402
from backtest.config import BacktestConfig  # noqa: E402
from tests.conftest import local_cluster  # noqa: E402


def sweep_per_symbol(*args, **kw):
    """:func:`run_sweep` with every (symbol, parameter set) its own portfolio (``per_symbol``)."""
    return run_sweep(*args, per_symbol=True, **kw)


SYMBOLS = synthetic_symbols(4)
GRID = {"entry_annualized": [0.05, 0.15], "exit_annualized": [-0.05, 0.02]}
CONFIG = BacktestConfig(initial_capital_quote=5_000.0, perp_leverage=3.0, slippage_bps=1.0)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale_dask") / "catalog"
    write_synthetic_catalog(root, len(SYMBOLS), 4, seed=11)
    return str(root)


@pytest.fixture(scope="module")
def client():
    from distributed import Client

    cluster = local_cluster()
    c = Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def local(catalog):
    return sweep_per_symbol(
        catalog, SYMBOLS, "funding_threshold", GRID, CONFIG, freq="1m", symbol_chunk=1, param_chunk=2
    )


def test_dask_equals_local(catalog, client, local):
    address = client.scheduler.address
    assert address.startswith("tcp://127.0.0.1:")
    res = sweep_per_symbol(
        catalog, SYMBOLS, "funding_threshold", GRID, CONFIG, freq="1m", symbol_chunk=1, param_chunk=2, scheduler=address
    )  # a scheduler address, as `carry sweep --scheduler` passes it
    assert res.meta["mode"].startswith("dask[") and res.plan.n_tasks == 8
    pids = {t["pid"] for t in res.meta["tasks"]}
    assert pids <= set(client.run(os.getpid).values()) and os.getpid() not in pids  # ran on the workers
    pd.testing.assert_frame_equal(res.summary, local.summary, check_exact=True)
    pd.testing.assert_frame_equal(res.equity, local.equity, check_exact=True)
    # other chunkings on the cluster: still the same numbers
    res2 = sweep_per_symbol(
        catalog,
        SYMBOLS,
        "funding_threshold",
        GRID,
        CONFIG,
        freq="1m",
        symbol_chunk=3,
        scheduler=client,
        max_memory_bytes="1GB",
    )
    pd.testing.assert_frame_equal(res2.summary, local.summary, check_exact=True)


def _killer(marker: str):
    """funding_threshold, except that the first call anywhere SIGKILLs its own worker process."""
    from strategies import FundingThresholdParams, funding_threshold
    from strategies.base import Strategy

    def fn(market, params):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return funding_threshold(market, params)
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)

    return Strategy("funding_threshold", fn, FundingThresholdParams)


def test_worker_killed_mid_sweep_is_retried(catalog, client, local, tmp_path):
    marker = tmp_path / "killed"
    before = set(client.run(os.getpid).values())
    res = sweep_per_symbol(
        catalog,
        SYMBOLS,
        _killer(str(marker)),
        GRID,
        CONFIG,
        freq="1m",
        symbol_chunk=1,
        param_chunk=2,
        scheduler=client,
        retries=1,
    )
    killed = int(marker.read_text())
    assert killed in before  # a worker process really died in the middle of a task
    assert killed not in {t["pid"] for t in res.meta["tasks"]}
    assert len(res.summary) == len(local.summary)  # no task lost
    pd.testing.assert_frame_equal(res.summary, local.summary, check_exact=True)
    pd.testing.assert_frame_equal(res.equity, local.equity, check_exact=True)

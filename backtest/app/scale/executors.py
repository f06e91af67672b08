"""Where scale-out tasks run: here, on a pool of processes, or on a Dask cluster.

Each runner calls ``fn(task)`` once per task and returns the results in completion order; the
callers sort them. Nothing here knows what a task computes (sweep tasks and portfolio tasks use
the same runners)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from data.errors import ConfigError


def run_local(fn: Callable, tasks: list, workers: int | None, progress: Callable | None) -> tuple[list, str]:
    """``fn(task)`` for every task, here or on a pool of ``workers`` processes (completion order)."""
    if not workers or workers <= 1 or len(tasks) <= 1:
        out = []
        for t in tasks:
            out.append(fn(t))
            if progress:
                progress(len(out), len(tasks))
        return out, "serial"
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    ctx = mp.get_context("spawn")  # no fork of a process with numba/BLAS threads
    out = []
    with ProcessPoolExecutor(max_workers=int(workers), mp_context=ctx) as pool:
        futs = [pool.submit(fn, t) for t in tasks]
        for f in as_completed(futs):
            out.append(f.result())
            if progress:
                progress(len(out), len(tasks))
    return out, f"processes[{int(workers)}]"


def dask_client(scheduler):
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("--scheduler needs dask distributed: pip install 'carry[scale]'") from None
    if isinstance(scheduler, Client):
        return scheduler, False
    if hasattr(scheduler, "scheduler_address"):  # a LocalCluster or other cluster object
        return Client(scheduler), True
    return Client(str(scheduler), timeout="30s"), True


def run_dask(fn: Callable, tasks: list, client, retries: int, progress: Callable | None) -> list:
    """``fn(task)`` for every task on a Dask cluster (completion order)."""
    from distributed import as_completed

    token = hashlib.sha256(repr([(t.task_id, t.symbols, t.catalog, fn.__name__) for t in tasks]).encode()).hexdigest()[
        :10
    ]
    futures = [
        client.submit(fn, t, key=f"carry-{fn.__name__}-{token}-{t.task_id}", pure=False, retries=retries) for t in tasks
    ]
    out = []
    try:
        for fut in as_completed(futures):
            out.append(fut.result())
            fut.release()
            if progress:
                progress(len(out), len(tasks))
    finally:
        for f in futures:
            f.release()
    return out


def run_tasks(
    fn: Callable, tasks: list, workers: int | None, scheduler, retries: int, progress: Callable | None
) -> tuple[list, str]:
    """``fn(task)`` for every task on a Dask ``scheduler`` (an address, a cluster or a client) when
    given, else here or on ``workers`` processes: the results (completion order) and where they
    ran (``serial``, ``processes[N]``, ``dask[address]``)."""
    if scheduler is None:
        return run_local(fn, tasks, workers, progress)
    client, own = dask_client(scheduler)
    try:
        results = run_dask(fn, tasks, client, retries, progress)
        return results, f"dask[{client.scheduler.address if client.scheduler else scheduler}]"
    finally:
        if own:
            client.close()

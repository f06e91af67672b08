"""Reuse of the engine's output memory from one run to the next.

A backtest writes its per-bar outputs (equity, components, positions, margin) into arrays of
``bars x columns`` float64: 50 MB for one configuration over a year of minutes with full
outputs, 70 MB per output for a 1,000-column hourly grid. Fresh memory costs more than the
simulation itself on such runs: the operating system maps and zeroes every page on first
write (about 0.1 ms per MB on the 2-core machine of the README's benchmark, so 5 ms for the
50 MB, against 9 ms for the whole run on recycled memory).

:data:`OUTPUT_POOL` keeps the blocks of results that no longer exist and hands them to the next
run of about the same size. A block is free when nothing but the pool refers to it: every
array, DataFrame or Arrow buffer built on a result's outputs keeps its block alive, so memory
a caller can still see is never reused. The pool holds at most :attr:`BufferPool.limit_bytes`
of blocks, busy or free (256 MiB by default, ``0`` turns it off); :meth:`BufferPool.clear`
gives the free ones back to the system, and a run whose outputs fit no free block drops the
free blocks first (a workload that changed size does not keep its old blocks). Blocks larger
than the limit are never pooled.

A larger default was measured and dropped: an eighth of the machine's memory (2.9 GB here) put
a 100,000-column grid of 1,000 hourly bars (800 MB of equity, its events' scratch and merged
records) on recycled memory at every run, ~40-80 ms of its ~400 ms, but made a 1,000-set
``carry sweep`` of three symbols over three years (lean, memory-bounded) ~40% slower: its
strategies and engine took 15.8 s against 11.2 s (medians of 7 and 8 interleaved runs; 12.2-38.0
s against 9.4-14.5 s), with the same page faults and about three times the system time. That
command requests five blocks of five sizes, none reused, so holding them could not pay. (Not
conclusive: an hour later the 256 MiB default itself took 31-34 s there with as much system
time, so the cost of a page fault on the benchmark's virtual machine drifts; the default stays
until a quieter machine decides.)

Pure bookkeeping on NumPy arrays, thread-safe; the reuse test relies on CPython's reference
counts (``sys.getrefcount``).
"""

from __future__ import annotations

import sys
import threading

import numpy as np

from data.errors import ConfigError

__all__ = ["BufferPool", "OUTPUT_POOL"]


class BufferPool:
    """Float64 blocks handed out as array views and taken back once unreferenced.

    Parameters
    ----------
    limit_bytes : int
        Most bytes of blocks the pool keeps (in use by live results or free). ``0`` disables
        pooling: :meth:`empty` is then ``np.empty``.
    """

    def __init__(self, limit_bytes: int = 256 << 20) -> None:
        self._blocks: list[np.ndarray] = []
        self._lock = threading.Lock()
        self.limit_bytes = limit_bytes

    @property
    def limit_bytes(self) -> int:
        """Most bytes of blocks held (free or in use); set to 0 to turn pooling off."""
        return self._limit

    @limit_bytes.setter
    def limit_bytes(self, value: int) -> None:
        try:
            limit = int(value)
        except (TypeError, ValueError):
            limit = -1
        if isinstance(value, bool) or limit < 0:
            raise ConfigError(f"limit_bytes must be a whole number of bytes >= 0, got {value!r}")
        self._limit = limit
        if self._limit == 0:
            self.clear()

    def empty(self, shape: tuple[int, ...]) -> np.ndarray:
        """An uninitialised float64 array of ``shape`` (like ``np.empty``), on a pooled block when one fits.

        A free block fits a request of ``n`` values when it holds between ``n`` and ``2 n``
        (a small run does not pin a large block). The array is a view of the block, so the
        block stays busy for as long as the array or anything built on it lives.
        """
        n = 1
        for d in shape:
            n *= int(d)
        nbytes = n * 8
        if nbytes == 0 or nbytes > self._limit or nbytes < 1 << 20:
            return np.empty(shape)
        with self._lock:
            best = -1
            for k in range(len(self._blocks)):
                size = self._blocks[k].shape[0]
                if n <= size <= 2 * n and self._is_free(k) and (best < 0 or size < self._blocks[best].shape[0]):
                    best = k
            if best >= 0:
                return self._blocks[best][:n].reshape(shape)
            # a miss: the free blocks did not fit this run, give them back before allocating
            busy = [not self._is_free(k) for k in range(len(self._blocks))]
            self._blocks = [b for b, keep in zip(self._blocks, busy) if keep]
            held = sum(b.nbytes for b in self._blocks)
            block = np.empty(n)
            if held + nbytes <= self._limit:
                self._blocks.append(block)
            return block.reshape(shape)

    def _is_free(self, k: int) -> bool:
        # references: the list's, and getrefcount's own argument
        return sys.getrefcount(self._blocks[k]) <= 2

    def clear(self) -> None:
        """Forget every block (free ones go back to the system; busy ones live on with their results)."""
        with self._lock:
            self._blocks = []

    def stats(self) -> dict:
        """``{"blocks", "bytes", "free_blocks", "free_bytes", "limit_bytes"}`` of the pool now."""
        with self._lock:
            free = [self._is_free(k) for k in range(len(self._blocks))]
            return {
                "blocks": len(self._blocks),
                "bytes": sum(b.nbytes for b in self._blocks),
                "free_blocks": sum(free),
                "free_bytes": sum(b.nbytes for b, f in zip(self._blocks, free) if f),
                "limit_bytes": self._limit,
            }


#: The engine's pool of output blocks (see the module docstring).
OUTPUT_POOL = BufferPool()

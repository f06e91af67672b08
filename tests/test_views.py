"""Borrowed array views (backtest.kernels.views): the same memory, shape and strides, in arrays and (nested) tuples."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from backtest.kernels.views import borrowed


class Inner(NamedTuple):
    a: np.ndarray
    flag: bool


class Outer(NamedTuple):
    x: np.ndarray
    inner: Inner
    k: int


@njit(cache=False)
def _through_view(arr):
    v = borrowed(arr)
    total = 0.0
    for i in range(v.shape[0]):
        for j in range(v.shape[1]):
            total += v[i, j] * (i + 1)
            v[i, j] = -v[i, j]  # writes land in the caller's array
    return total, v.shape[0], v.shape[1], v.strides[0], v.strides[1]


@njit(cache=False)
def _through_tuple(t, none):
    b = borrowed(t)
    b.inner.a[1] = 7.0
    b.x[0] += 1.0
    return b.x.sum() + b.inner.a.sum(), b.inner.flag, b.k, borrowed(none) is None, borrowed(3.5)


def test_a_view_keeps_the_data_shape_and_strides_of_strided_arrays():
    base = np.arange(60, dtype=np.float64).reshape(6, 10)
    for arr in (base.copy(), base[::2, 1::3], base.T[2:7]):
        orig = arr.copy()
        expected = sum(orig[i, j] * (i + 1) for i in range(orig.shape[0]) for j in range(orig.shape[1]))
        total, n0, n1, s0, s1 = _through_view(arr)
        assert total == expected
        assert (n0, n1) == arr.shape and (s0, s1) == arr.strides
        np.testing.assert_array_equal(arr, -orig)


def test_a_tuple_borrows_its_arrays_nested_ones_included_and_passes_the_rest_through():
    x = np.array([1.0, 2.0, 3.0])
    a = np.zeros(3)
    total, flag, k, none_through, scalar = _through_tuple(Outer(x, Inner(a, True), 5), None)
    assert x.tolist() == [2.0, 2.0, 3.0] and a.tolist() == [0.0, 7.0, 0.0]
    assert total == 14.0 and flag is True and k == 5 and none_through and scalar == 3.5

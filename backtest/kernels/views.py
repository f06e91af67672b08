"""Borrowed array views: arrays a kernel passes around without numba counting references to them.

Numba counts references to every array it copies into a variable, and an inlined function's
arguments are such copies: each array a call passes costs an atomic increment and decrement
(``lock``-prefixed instructions, tens of cycles each, which also drain the store buffer), which
LLVM's reference-count pruning removes only when nothing between them can release memory. The
general part of a bar (``fast.isolated_open_nb``: orders, fills, liquidations) took ~57 such
operations per column and bar, about 400 ns, more than the arithmetic itself: 26% of the
structure-of-arrays kernel's time on ``backtest.app.bench``'s grid (measured with ``perf``,
counted with a ``gdb`` breakpoint on numba's ``NRT_incref``/``NRT_decref``).

:func:`borrowed` returns a view of the same memory with no reference to it (a NULL meminfo, on
which numba's increments and decrements return at once). The rule that makes it safe: a kernel
borrows only arrays its caller holds for the whole call (its arguments: ``x = borrowed(x)``
rebinds an argument's variable and the caller's reference keeps the memory), never an array it
allocates itself by rebinding its variable (that would free the memory under the view; a view in
a variable of its own is safe while the array's own variable is still used after it), and never
returns or stores a borrowed view.

:data:`prefetch_read` and :data:`prefetch_write` ask the processor for memory a kernel is about
to touch: the structure-of-arrays kernel fetches the next bar's targets and equity of a block of
columns while it computes this bar's (a wide grid's rows are segments far apart in memory, each
one a new stream for the hardware prefetcher).
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _borrow(context, builder, ty, val):
    """``val`` of numba type ``ty`` with every array in it (nested tuples too) holding no reference."""
    if isinstance(ty, types.Array):
        src = context.make_array(ty)(context, builder, value=val)
        dst = context.make_array(ty)(context, builder)
        dst.data = src.data
        dst.shape = src.shape
        dst.strides = src.strides
        dst.itemsize = src.itemsize
        dst.nitems = src.nitems
        dst.meminfo = cgutils.get_null_value(dst.meminfo.type)
        dst.parent = cgutils.get_null_value(dst.parent.type)
        return dst._getvalue()
    if isinstance(ty, types.BaseTuple):
        for i, t in enumerate(ty.types):
            val = builder.insert_value(val, _borrow(context, builder, t, builder.extract_value(val, i)), i)
    return val


@intrinsic
def borrowed(typingctx, a):
    """A view of array ``a`` (same data, shape and strides) that holds no reference to its
    memory; for a (named) tuple, the same tuple with each of its arrays, nested tuples' too, so;
    anything else (None, a scalar) unchanged."""

    def codegen(context, builder, sig, args):
        return _borrow(context, builder, sig.args[0], args[0])

    return a(a), codegen


def _prefetch(write: int):
    """An intrinsic ``f(a, k)``: LLVM's ``llvm.prefetch`` of element ``k`` of array ``a`` (for a
    read, or with ``write`` 1 for a write; kept in every cache level). A hint: it changes no
    value and never faults, whatever ``k``."""

    def prefetch(typingctx, a, k):
        def codegen(context, builder, sig, args):
            from llvmlite import ir

            ary = context.make_array(sig.args[0])(context, builder, value=args[0])
            ptr = builder.gep(ary.data, [args[1]])
            i32 = ir.IntType(32)
            fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            # (address, read 0 / write 1, locality 3: keep in all levels, data cache 1)
            builder.call(fn, [ptr, ir.Constant(i32, write), ir.Constant(i32, 3), ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.void(a, k), codegen

    return intrinsic(prefetch)


#: ``prefetch_read(a, k)``: element ``k`` of ``a`` (C-contiguous, flat index) will be read soon.
prefetch_read = _prefetch(0)
#: ``prefetch_write(a, k)``: element ``k`` of ``a`` (C-contiguous, flat index) will be written soon.
prefetch_write = _prefetch(1)

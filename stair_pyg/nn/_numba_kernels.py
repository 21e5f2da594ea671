r"""The compiled kernels of :mod:`stair_pyg.nn.cpu_kernel` (imported only where numba is
installed; see that module for what they compute and why they prefetch).

Both kernels prefetch: :obj:`distance` non-zeros ahead of the one they accumulate they ask the
CPU for the row that non-zero will touch (every cache line of it), through LLVM's
``llvm.prefetch``. A prefetch is a hint that never faults and changes no value, so the results
are those of the same loops without it, to the bit.
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def _prefetch(write: int):
    r"""The typing and code of ``prefetch(array, row, column)``: ``llvm.prefetch`` of the cache
    line holding ``array[row, column]`` (for writing where :obj:`write` is 1), high temporal
    locality, data cache."""
    def typer(typingctx, array, row, column):
        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            array_value = context.make_array(array_type)(context, builder, args[0])
            indices = [context.cast(builder, value, type_, types.intp)
                       for value, type_ in zip(args[1:], signature.args[1:])]
            pointer = cgutils.get_item_pointer(context, builder, array_type, array_value,
                                               indices)
            byte_pointer = ir.IntType(8).as_pointer()
            i32 = ir.IntType(32)
            function = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]),
                "llvm.prefetch." + byte_pointer.intrinsic_name)
            builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(write), i32(3),
                                    i32(1)])
            return context.get_dummy_value()

        return types.void(array, row, column), codegen

    return typer


prefetch_read = intrinsic(_prefetch(0))
prefetch_write = intrinsic(_prefetch(1))


def _jit(parallel: bool):
    def compile_(function):
        try:  # compiled once per machine, then loaded from numba's cache (about a second)
            return numba.njit(parallel=parallel, fastmath=True, cache=True)(function)
        except RuntimeError:  # no writable cache location: compiled in every process instead
            return numba.njit(parallel=parallel, fastmath=True, cache=False)(function)

    return compile_


@_jit(parallel=True)
def csr_mm_rows(crow, col, val, x, out, add, coef, num_ranges, distance):  # pragma: no cover
    r"""``out = A x``, plus ``coef * add`` where :obj:`add` has rows (``[rows, d]``, else
    ``[0, d]``; :obj:`coef` one weight per channel), over :obj:`num_ranges` row ranges of equal
    numbers of non-zeros, one parallel iteration each: range ``r`` holds the rows whose
    non-zeros start in ``[r * nnz / R, (r + 1) * nnz / R)``. Each output row starts from zero
    (or from its ``coef * add``) and is accumulated in place; the row of ``x`` non-zero
    ``p + distance`` reads is prefetched while ``p`` is accumulated."""
    rows = crow.shape[0] - 1
    nnz = crow[rows]
    channels = x.shape[1]
    line = max(1, 64 // x.itemsize)
    adds = add.shape[0] > 0
    targets = (np.arange(num_ranges + 1) * nnz) // num_ranges
    bounds = np.searchsorted(crow[:rows], targets)
    bounds[num_ranges] = rows
    for r in numba.prange(num_ranges):
        for i in range(bounds[r], bounds[r + 1]):
            row = out[i]
            if adds:
                start = add[i]
                for c in range(channels):
                    row[c] = coef[c] * start[c]
            else:
                for c in range(channels):
                    row[c] = 0.0
            for p in range(crow[i], crow[i + 1]):
                if p + distance < nnz:
                    ahead = col[p + distance]
                    for c in range(0, channels, line):
                        prefetch_read(x, ahead, c)
                v = val[p]
                src = x[col[p]]
                for c in range(channels):
                    row[c] += v * src[c]


@_jit(parallel=False)
def csr_mm_t_rows(crow, col, val, g, out, distance):  # pragma: no cover - compiled
    r"""``out = A^T g`` in one serial pass over the rows of ``A``, scattering into ``out`` (a
    parallel scatter would race on its rows); the output row non-zero ``p + distance`` will
    update is prefetched for writing while ``p`` is accumulated."""
    rows = crow.shape[0] - 1
    nnz = crow[rows]
    channels = g.shape[1]
    line = max(1, 64 // g.itemsize)
    for j in range(out.shape[0]):
        for c in range(channels):
            out[j, c] = 0.0
    for i in range(rows):
        src = g[i]
        for p in range(crow[i], crow[i + 1]):
            if p + distance < nnz:
                ahead = col[p + distance]
                for c in range(0, channels, line):
                    prefetch_write(out, ahead, c)
            v = val[p]
            dst = out[col[p]]
            for c in range(channels):
                dst[c] += v * src[c]


@_jit(parallel=False)
def add_gathered_rows(out, src, index, coef, distance):  # pragma: no cover - compiled
    r"""``out[b] += coef * src[index[b]]`` for every ``b``: one pass, no gathered copy; the row
    of :obj:`src` ``b + distance`` reads is prefetched while ``b`` is added."""
    channels = out.shape[1]
    line = max(1, 64 // src.itemsize)
    count = index.shape[0]
    for b in range(count):
        if b + distance < count:
            for c in range(0, channels, line):
                prefetch_read(src, index[b + distance], c)
        row, source = out[b], src[index[b]]
        for c in range(channels):
            row[c] += coef[c] * source[c]


@_jit(parallel=False)
def add_scattered_rows(out, index, src, coef, distance):  # pragma: no cover - compiled
    r"""``out[index[b]] += coef * src[b]`` for every ``b`` (repeated indices add up, in order):
    one pass, no scaled copy of :obj:`src`; the row of :obj:`out` ``b + distance`` updates is
    prefetched for writing while ``b`` is added."""
    channels = out.shape[1]
    line = max(1, 64 // out.itemsize)
    count = index.shape[0]
    for b in range(count):
        if b + distance < count:
            for c in range(0, channels, line):
                prefetch_write(out, index[b + distance], c)
        row, source = out[index[b]], src[b]
        for c in range(channels):
            row[c] += coef[c] * source[c]

r"""The compiled kernels of :mod:`stair_pyg.nn.cpu_kernel` (imported only where numba is
installed; see that module for what they compute and why).

**Vectors.** The kernels do their arithmetic on :class:`Vector` values: one cache line (64
bytes: 16 float32 or 8 float64 channels) of a row, held by LLVM as a vector value, that is in
SIMD registers. :func:`load_vector`, :func:`store_vector`, :func:`zero_vector` and
:func:`multiply_add` are the only operations. numba's own loops over the channels of a row
(``for c in range(channels): row[c] += v * src[c]``) are vectorised by LLVM too, but LLVM must
assume that ``row`` and ``src`` may overlap: it checks at every non-zero, and it keeps the sum in
memory, stored after each non-zero and loaded again for the next. On a 2-core EPYC that made
a non-zero of 64 float32 channels cost 8-14 ns wherever :math:`X` lived, even with every read
an L1 hit, against 3-6 ns for the same product written in C with the sum in registers. The
product kernel here sums each output row in four vectors that stay in registers, and matches the
C loop.

**Prefetching.** :obj:`distance` non-zeros ahead of the one they accumulate, the kernels ask
the CPU for the row that non-zero will touch (every cache line of it), through LLVM's
``llvm.prefetch``. A prefetch is a hint that never faults and changes no value, so the results
are those of the same loops without it, to the bit.
"""
import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model

#: Bytes of one :class:`Vector`: a cache line.
VECTOR_BYTES = 64


class Vector(types.Type):
    r"""The numba type of one cache line of channels of :obj:`dtype` (float32: 16 lanes, float64:
    8), an LLVM vector value."""

    def __init__(self, dtype: types.Float):
        self.dtype = dtype
        self.lanes = VECTOR_BYTES * 8 // dtype.bitwidth
        super().__init__(name=f"Vector({dtype} x {self.lanes})")


@register_model(Vector)
class _VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.lanes))


def _is_matrix(array) -> bool:
    return isinstance(array, types.Array) and array.ndim == 2 and \
        isinstance(array.dtype, types.Float)


def _pointer(context, builder, signature, args):
    # The address of array[row, column] (args: the array, row, column; no bounds check).
    array_type = signature.args[0]
    array = context.make_array(array_type)(context, builder, args[0])
    indices = [context.cast(builder, value, type_, types.intp)
               for value, type_ in zip(args[1:3], signature.args[1:3])]
    return cgutils.get_item_pointer(context, builder, array_type, array, indices)


@intrinsic
def load_vector(typingctx, array, row, column):
    r"""``array[row, column : column + lanes]`` as a :class:`Vector` (``array`` 2-D, C-ordered;
    the caller keeps the lanes inside the row)."""
    if not _is_matrix(array):
        return None
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature, args)
        vector_type = context.get_value_type(vector)
        return builder.load(builder.bitcast(pointer, vector_type.as_pointer()), align=1)

    return vector(array, row, column), codegen


@intrinsic
def store_vector(typingctx, array, row, column, value):
    r"""``array[row, column : column + lanes] = value``."""
    if not (_is_matrix(array) and isinstance(value, Vector) and value.dtype == array.dtype):
        return None

    def codegen(context, builder, signature, args):
        pointer = _pointer(context, builder, signature, args)
        builder.store(args[3], builder.bitcast(pointer, args[3].type.as_pointer()), align=1)
        return context.get_dummy_value()

    return types.void(array, row, column, value), codegen


@intrinsic
def zero_vector(typingctx, array):
    r"""A :class:`Vector` of zeros of :obj:`array`'s dtype."""
    if not _is_matrix(array):
        return None
    vector = Vector(array.dtype)

    def codegen(context, builder, signature, args):
        return ir.Constant(context.get_value_type(vector), None)

    return vector(array), codegen


@intrinsic
def multiply_add(typingctx, total, factor, value):
    r"""``total + factor * value`` lane by lane (``llvm.fmuladd``: one fused instruction where
    the CPU has one); :obj:`factor` a scalar (the same for every lane) or a :class:`Vector`."""
    if not (isinstance(total, Vector) and isinstance(value, Vector) and total == value):
        return None
    if not (factor == total or isinstance(factor, (types.Float, types.Integer))):
        return None

    def codegen(context, builder, signature, args):
        total_, factor_, value_ = args
        vector_type = total_.type
        if not isinstance(signature.args[1], Vector):  # broadcast the scalar to every lane
            scalar = context.cast(builder, factor_, signature.args[1], signature.args[0].dtype)
            undefined = ir.Constant(vector_type, ir.Undefined)
            single = builder.insert_element(undefined, scalar, ir.Constant(ir.IntType(32), 0))
            mask = ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count), None)
            factor_ = builder.shuffle_vector(single, undefined, mask)
        bits = 64 if isinstance(vector_type.element, ir.DoubleType) else 32
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(vector_type, [vector_type] * 3),
            f"llvm.fmuladd.v{vector_type.count}f{bits}")
        return builder.call(function, [factor_, value_, total_])

    return total(total, factor, value), codegen


def _prefetch(write: int):
    r"""The typing and code of ``prefetch(array, row, column)``: ``llvm.prefetch`` of the cache
    line holding ``array[row, column]`` (for writing where :obj:`write` is 1), high temporal
    locality, data cache."""
    def typer(typingctx, array, row, column):
        def codegen(context, builder, signature, args):
            pointer = _pointer(context, builder, signature, args)
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
    ``[0, d]``; :obj:`coef` ``[1, d]``, one weight per channel), over :obj:`num_ranges` row
    ranges of equal numbers of non-zeros, one parallel iteration each: range ``r`` holds the
    rows whose non-zeros start in ``[r * nnz / R, (r + 1) * nnz / R)``.

    Each output row is summed in registers, four vectors (64 float32 channels) per pass over
    its non-zeros, then one vector per pass, then one channel per pass for the channels past
    the last whole vector, and stored once. The first pass prefetches, while non-zero ``p`` is
    accumulated, every line of the row of ``x`` non-zero ``p + distance`` reads."""
    rows = crow.shape[0] - 1
    nnz = crow[rows]
    channels = x.shape[1]
    lanes = VECTOR_BYTES // x.itemsize
    adds = add.shape[0] > 0
    targets = (np.arange(num_ranges + 1) * nnz) // num_ranges
    bounds = np.searchsorted(crow[:rows], targets)
    bounds[num_ranges] = rows
    for r in numba.prange(num_ranges):
        for i in range(bounds[r], bounds[r + 1]):
            start, end = crow[i], crow[i + 1]
            c = 0
            while c + 4 * lanes <= channels:
                s0, s1, s2, s3 = zero_vector(x), zero_vector(x), zero_vector(x), zero_vector(x)
                if adds:
                    s0 = multiply_add(s0, load_vector(coef, 0, c), load_vector(add, i, c))
                    s1 = multiply_add(s1, load_vector(coef, 0, c + lanes),
                                      load_vector(add, i, c + lanes))
                    s2 = multiply_add(s2, load_vector(coef, 0, c + 2 * lanes),
                                      load_vector(add, i, c + 2 * lanes))
                    s3 = multiply_add(s3, load_vector(coef, 0, c + 3 * lanes),
                                      load_vector(add, i, c + 3 * lanes))
                for p in range(start, end):
                    if c == 0 and p + distance < nnz:
                        ahead = col[p + distance]
                        for k in range(0, channels, lanes):
                            prefetch_read(x, ahead, k)
                    v, j = val[p], col[p]
                    s0 = multiply_add(s0, v, load_vector(x, j, c))
                    s1 = multiply_add(s1, v, load_vector(x, j, c + lanes))
                    s2 = multiply_add(s2, v, load_vector(x, j, c + 2 * lanes))
                    s3 = multiply_add(s3, v, load_vector(x, j, c + 3 * lanes))
                store_vector(out, i, c, s0)
                store_vector(out, i, c + lanes, s1)
                store_vector(out, i, c + 2 * lanes, s2)
                store_vector(out, i, c + 3 * lanes, s3)
                c += 4 * lanes
            while c + lanes <= channels:
                s0 = zero_vector(x)
                if adds:
                    s0 = multiply_add(s0, load_vector(coef, 0, c), load_vector(add, i, c))
                for p in range(start, end):
                    if c == 0 and p + distance < nnz:
                        ahead = col[p + distance]
                        for k in range(0, channels, lanes):
                            prefetch_read(x, ahead, k)
                    s0 = multiply_add(s0, val[p], load_vector(x, col[p], c))
                store_vector(out, i, c, s0)
                c += lanes
            for k in range(c, channels):
                out[i, k] = coef[0, k] * add[i, k] if adds else 0.0
                for p in range(start, end):
                    out[i, k] += val[p] * x[col[p], k]


@_jit(parallel=False)
def csr_mm_t_rows(crow, col, val, g, out, distance):  # pragma: no cover - compiled
    r"""``out = A^T g`` in one serial pass over the rows of ``A``, scattering into ``out`` (a
    parallel scatter would race on its rows), a vector at a time; the output row non-zero
    ``p + distance`` will update is prefetched for writing while ``p`` is accumulated."""
    rows = crow.shape[0] - 1
    nnz = crow[rows]
    channels = g.shape[1]
    lanes = VECTOR_BYTES // g.itemsize
    whole = channels - channels % lanes
    out[:, :] = 0.0
    for i in range(rows):
        for p in range(crow[i], crow[i + 1]):
            if p + distance < nnz:
                ahead = col[p + distance]
                for k in range(0, channels, lanes):
                    prefetch_write(out, ahead, k)
            v, j = val[p], col[p]
            for c in range(0, whole, lanes):
                store_vector(out, j, c, multiply_add(load_vector(out, j, c), v,
                                                     load_vector(g, i, c)))
            for k in range(whole, channels):
                out[j, k] += v * g[i, k]


@_jit(parallel=False)
def add_gathered_rows(out, src, index, coef, distance):  # pragma: no cover - compiled
    r"""``out[b] += coef[0] * src[index[b]]`` for every ``b``: one pass, no gathered copy; the
    row of :obj:`src` ``b + distance`` reads is prefetched while ``b`` is added."""
    channels = out.shape[1]
    lanes = VECTOR_BYTES // src.itemsize
    whole = channels - channels % lanes
    count = index.shape[0]
    for b in range(count):
        if b + distance < count:
            for k in range(0, channels, lanes):
                prefetch_read(src, index[b + distance], k)
        j = index[b]
        for c in range(0, whole, lanes):
            store_vector(out, b, c, multiply_add(load_vector(out, b, c), load_vector(coef, 0, c),
                                                 load_vector(src, j, c)))
        for k in range(whole, channels):
            out[b, k] += coef[0, k] * src[j, k]


@_jit(parallel=False)
def add_scattered_rows(out, index, src, coef, distance):  # pragma: no cover - compiled
    r"""``out[index[b]] += coef[0] * src[b]`` for every ``b`` (repeated indices add up, in
    order): one pass, no scaled copy of :obj:`src`; the row of :obj:`out` ``b + distance``
    updates is prefetched for writing while ``b`` is added."""
    channels = out.shape[1]
    lanes = VECTOR_BYTES // out.itemsize
    whole = channels - channels % lanes
    count = index.shape[0]
    for b in range(count):
        if b + distance < count:
            for k in range(0, channels, lanes):
                prefetch_write(out, index[b + distance], k)
        j = index[b]
        for c in range(0, whole, lanes):
            store_vector(out, j, c, multiply_add(load_vector(out, j, c), load_vector(coef, 0, c),
                                                 load_vector(src, b, c)))
        for k in range(whole, channels):
            out[j, k] += coef[0, k] * src[b, k]


@_jit(parallel=False)
def gather_member_rows(crow, col, val, member, wanted, max_nnz):  # pragma: no cover - compiled
    r"""The rows ``i`` with ``member[i]``, in order, and their CSR arrays: ``(True, rows, crow,
    col, val, reached)``, where ``reached`` is :obj:`wanted` with every column those rows read
    marked too; one pass over :obj:`member` and one over the rows' non-zeros. Once the rows
    hold more than :obj:`max_nnz` non-zeros, ``(False, ...)`` with empty arrays, after the
    first pass only."""
    count, total = 0, 0
    for i in range(member.shape[0]):
        if member[i]:
            count += 1
            total += crow[i + 1] - crow[i]
    if total > max_nnz:
        return False, np.empty(0, np.int64), crow[:0].copy(), col[:0].copy(), val[:0].copy(), \
            member[:0].copy()
    rows = np.empty(count, np.int64)
    sub_crow = np.empty(count + 1, crow.dtype)
    sub_col = np.empty(total, col.dtype)
    sub_val = np.empty(total, val.dtype)
    reached = wanted.copy()
    sub_crow[0] = 0
    k, q = 0, 0
    for i in range(member.shape[0]):
        if member[i]:
            rows[k] = i
            for p in range(crow[i], crow[i + 1]):
                sub_col[q] = col[p]
                sub_val[q] = val[p]
                reached[col[p]] = True
                q += 1
            k += 1
            sub_crow[k] = q
    return True, rows, sub_crow, sub_col, sub_val, reached

r"""The CPU kernel of the library's sparse product :math:`Y = A X` (:math:`A` in CSR), compiled
with `numba <https://numba.pydata.org>`_ where it is installed (``pip install
"stair-pyg[numba]"``), otherwise torch's own CSR product: :func:`~stair_pyg.nn.sparse.csr_mm`
chooses automatically, and both give the same result up to float rounding.

Every hop of every propagation in the library (STAIR's forward and backward stepwise
convolution, LightGCN, FREEDOM, BM3, LGMRec), and the transposed product of every backward pass,
is this one product. The kernel makes one pass over the rows of :math:`A`: each output row is
summed in SIMD registers from the rows of :math:`X` its non-zeros point to and stored once (no
zero-filled temporary, no second copy), the rows split into contiguous ranges of equal numbers
of non-zeros, one range at a time per thread, with as many threads as torch uses
(:func:`torch.get_num_threads`). Where a series adds a weighted term to a hop
(:math:`Y = A X + c \odot Z`, the Horner form :func:`~stair_pyg.nn.propagate_series` runs
without autograd), each sum starts from that term instead of zero. Why registers, and how
numba is made to keep the sums there, is in :mod:`stair_pyg.nn._numba_kernels`: with the sums
in memory, as numba's own loops keep them, the product took 15.5-17 ns a non-zero on
``scientific`` (:math:`X` in L3) and with :math:`X` in L2, against 8-13 and 10-12 ns now (one
thread, the two kernels alternated in one process on a busy 2-core EPYC; 5.8 and 3.3 ns on a
quiet one).

A third serial kernel, :func:`gather_member_rows`, cuts one hop of a mini-batch's receptive
field (:func:`~stair_pyg.nn.sparse.receptive_field`) in one pass: the rows a hop needs, their
CSR arrays and the columns they read. It halved the receptive field's time on ``scientific``
(0.75 to 0.36 ms a batch) against torch's ``nonzero``, ``repeat_interleave`` and
``index_select``.

Two more small serial kernels take the rest of a mini-batch's propagation
(:func:`~stair_pyg.nn.sparse.series_rows`) off torch's per-operation path:
:func:`add_gathered_rows_` and :func:`add_scattered_rows_` add the batch's rows of each hop to
the output (forward) and each hop's share of the gradient (backward) in one pass, with no
gathered or scaled copy, prefetching like the product. On ``scientific`` (one thread, the two
alternated in one process) they made a training step 0.48 ms (5%) shorter than torch's
``index_select`` + ``addcmul_`` and ``index_add_``.

The rows of :math:`X` a product reads are scattered, so that without help each costs the full
latency of the cache level or the memory it sits in: on a 2-core EPYC one non-zero (a row of
64 float32 channels) took 18 ns with :math:`X` in L2, 32-100 ns in L3 and about 390 ns in
memory (the kernel before its sums moved to registers). So the kernels prefetch
(:mod:`stair_pyg.nn._numba_kernels`):
:data:`PREFETCH_DISTANCE` non-zeros ahead they ask the CPU for the row that non-zero will read
(in the transposed product, the output row it will update), a hint that changes no value. On
that machine it made the product 1.2x faster with :math:`X` in L2, 1.7-2.3x in L3 and 4.6x in
memory (one thread; ``benchmarks/bench_propagation.py`` measures the shared graphs).

:func:`set_cpu_kernel` picks the implementation (``"auto"``, the default: numba where its kernels
build, torch's product otherwise; ``"numba"``; ``"torch"``); the environment variable
``STAIR_PYG_CPU_KERNEL`` sets the choice a process starts with (for example
``STAIR_PYG_CPU_KERNEL=torch stair-pyg train ...``). Why ``"auto"`` takes numba on any number of
threads: on a 2-core CPU with the prefetching kernel, whole training epochs on ``sports`` with two
threads took 7.1-8.5 s (STAIR) and 7.2-8.3 s (LightGCN) against 11.8-13.9 s and 10.7-12.8 s with
torch's product (``benchmarks/profile_models.py``, the two alternated over two rounds), and on one
thread its training steps were 1.24-1.51x faster (``benchmarks/bench_propagation.py``). Before
the prefetching it was a wash on two threads, and ``"auto"`` kept torch's product there. On a
2-core Intel Xeon with AVX-512, torch's product (MKL's) was faster alone, 7.4 against 10.2 ns a
non-zero on ``scientific``, but inside training steps the numba kernel led in three of four
cases: 1.20x (STAIR) and 1.18x (LightGCN) on ``scientific``, 1.24x (STAIR) on ``sports`` with two
threads, where LightGCN's steps were 0.94x (torch's product ahead).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Dict, Optional, Tuple

import torch
from torch import Tensor

#: The implementations :func:`set_cpu_kernel` accepts.
CPU_KERNELS = ("auto", "numba", "torch")

#: The environment variable that sets the starting choice.
ENV_VAR = "STAIR_PYG_CPU_KERNEL"

_choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
_kernel: Optional[Any] = None  # (numba, the module of compiled kernels), once built
_local = threading.local()  # the thread count numba was last given, per Python thread
_numba_missing: Optional[str] = None  # why numba could not be used, once known

#: Per dtype, the empty rows and unused weights that tell the product kernel it adds nothing.
_NOTHING_TO_ADD: Dict[torch.dtype, Tuple[Any, Any]] = {}

#: Row ranges per thread: more ranges than threads, so that a slow range does not hold the rest.
_RANGES_PER_THREAD = 4


#: How many non-zeros ahead the kernels prefetch the row a non-zero will touch: far enough to
#: hide the latency of the level :math:`X` lives in, near enough that its lines are still in L1
#: when used. On the machine of the module docstring 16 was the best distance, or within 5% of
#: it, in every case measured (random graphs with :math:`X` of 1 to 62 MiB; ``scientific`` and
#: ``sports``, both products); 8 and 32 were up to 40% slower in some.
PREFETCH_DISTANCE = 16


def _give_torch_its_threads(threads: int) -> None:
    r"""Sets torch's thread count back to :obj:`threads` after a parallel numba call: numba's
    OpenMP layer sets the process's OpenMP thread count (torch's too) to all cores when it
    starts its threads, on its first parallel call once torch's own pool has started."""
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


def _build() -> Any:
    r"""numba and the module of compiled kernels, each compiled (or loaded from numba's cache)
    and checked on 2 x 2 operands; raises where they do not build."""
    import importlib

    import numba
    import numpy as np

    # The first call of each kernel below compiles it, or loads it from numba's cache.
    kernels = importlib.import_module("stair_pyg.nn._numba_kernels")

    # A 2 x 2 matrix on 82 channels: four vectors, one vector and two single channels of
    # float32 per row, each kernel path once; 32-bit indices, as the library's matrices have
    # wherever they fit (to_csr), so that training loads nothing more.
    crow, col = np.array([0, 1, 2], dtype=np.int32), np.array([1, 0], dtype=np.int32)
    val = np.array([2.0, 3.0], dtype=np.float32)
    x = np.repeat(np.eye(2, dtype=np.float32), 41, axis=1)
    weights = np.full((1, 82), 0.5, dtype=np.float32)
    out, out_t, out_add = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    torch_threads = torch.get_num_threads()
    kernels.csr_mm_rows(crow, col, val, x, out, x[:0], weights, 1, PREFETCH_DISTANCE)
    _give_torch_its_threads(torch_threads)  # the process's first parallel numba call
    kernels.csr_mm_t_rows(crow, col, val, x, out_t, PREFETCH_DISTANCE)
    kernels.csr_mm_rows(crow, col, val, x, out_add, x, weights, 1, PREFETCH_DISTANCE)
    expected = np.repeat(np.array([[0.0, 2.0], [3.0, 0.0]], dtype=np.float32), 41, axis=1)
    expected_t = np.repeat(np.array([[0.0, 3.0], [2.0, 0.0]], dtype=np.float32), 41, axis=1)
    if not (np.array_equal(out, expected) and np.array_equal(out_t, expected_t)
            and np.array_equal(out_add, expected + 0.5 * x)):
        raise RuntimeError("the numba kernels computed a wrong 2 x 2 product")
    rows = np.zeros((2, 82), dtype=np.float32)
    index = col.astype(np.int64)
    kernels.add_gathered_rows(rows, x, index, weights, 1)  # rows[b] += x[index[b]] / 2
    kernels.add_scattered_rows(rows, np.array([1, 1]), x, weights, 1)  # rows[1] += x[0] / 2 ...
    if not np.array_equal(rows, np.repeat(np.array([[0.0, 0.5], [1.0, 0.5]],
                                                   dtype=np.float32), 41, axis=1)):
        raise RuntimeError("the numba row kernels computed wrong rows")
    member, wanted = np.array([False, True]), np.array([True, False])
    fits, nodes, sub_crow, sub_col, _, reached = kernels.gather_member_rows(
        crow, col, val, member, wanted, 1.0)
    if not (fits and nodes.tolist() == [1] and sub_crow.tolist() == [0, 1]
            and sub_col.tolist() == [0] and reached.tolist() == [True, False]):
        raise RuntimeError("the numba receptive-field kernel gathered wrong rows")
    return numba, kernels


def numba_available() -> bool:
    r"""Whether the numba kernel can be used: numba imports and the kernels build (the first
    call compiles them, or loads them from numba's cache)."""
    global _numba_missing
    if _numba_missing is None:
        try:
            import numba  # noqa: F401
        except ImportError as error:
            _numba_missing = f"numba does not import ({error})"
            return False
        try:
            _kernels()
            _numba_missing = ""
        except Exception as error:  # e.g. an llvmlite that cannot emit the prefetch
            _numba_missing = (f"the numba kernels do not build ({type(error).__name__}: "
                              f"{str(error).splitlines()[0] if str(error) else ''})")
    return not _numba_missing


def set_cpu_kernel(name: str) -> str:
    r"""Selects the CPU implementation of the sparse product and returns the previous choice.

    Args:
        name (str): ``"auto"`` (numba where its kernels build, else torch's product; see the
            module docstring), ``"numba"`` (raises :class:`ImportError` without numba) or
            ``"torch"`` (torch's CSR product).
    """
    global _choice
    if name not in CPU_KERNELS:
        raise ValueError(f"unknown CPU kernel '{name}'; choose one of {', '.join(CPU_KERNELS)}")
    if name == "numba" and not numba_available():
        raise ImportError(f"the numba kernel needs numba: pip install 'stair-pyg[numba]' "
                          f"({_numba_missing})")
    previous, _choice = _choice, name
    return previous


def cpu_kernel() -> str:
    r"""The implementation the CPU product uses now: ``"numba"`` or ``"torch"``."""
    if _choice not in CPU_KERNELS:
        raise ValueError(f"{ENV_VAR}={_choice!r} is not a CPU kernel; choose one of "
                         f"{', '.join(CPU_KERNELS)}")
    if _choice == "numba" and not numba_available():
        raise ImportError(f"{ENV_VAR}=numba, but the numba kernel needs numba: pip install "
                          f"'stair-pyg[numba]' ({_numba_missing})")
    if _choice == "torch" or (_choice == "auto" and not numba_available()):
        return "torch"
    return "numba"


def supports(adj: Tensor, x: Tensor) -> bool:
    r"""Whether the numba kernel is selected and takes this product: a CPU CSR matrix and a
    2-D float32 or float64 :obj:`x` of the matrix's dtype."""
    return (adj.is_cpu and x.is_cpu and x.dim() == 2
            and x.dtype in (torch.float32, torch.float64) and adj.dtype == x.dtype
            and cpu_kernel() == "numba")


def _kernels() -> Any:
    global _kernel
    if _kernel is None:
        _kernel = _build()
    return _kernel


def _csr_arrays(adj: Tensor) -> Tuple[Any, Any, Any]:
    r"""The kernels' view of a CSR matrix: row pointers, columns (one index type for both) and
    values, as numpy arrays sharing the tensors' memory."""
    crow, col = adj.crow_indices(), adj.col_indices()
    if crow.dtype != col.dtype:
        col = col.to(crow.dtype)
    return crow.numpy(), col.numpy(), adj.values().detach().numpy()


def csr_mm_t_numba(adj: Tensor, g: Tensor) -> Tensor:
    r""":math:`A^\top G` for a CPU CSR matrix :obj:`adj` ``[M, N]`` and :obj:`g` ``[M, d]``
    without forming :math:`A^\top`: one serial pass over the rows of :math:`A`, each
    scattered into the output ``[N, d]``. For the small row-restricted hops of a mini-batch
    (:func:`~stair_pyg.nn.sparse.receptive_field`), whose transpose would otherwise be sorted
    out every batch."""
    g = g.detach().contiguous()
    out = torch.empty(adj.size(1), g.size(1), dtype=g.dtype)
    if out.numel() == 0:
        return out
    _kernels()[1].csr_mm_t_rows(*_csr_arrays(adj), g.numpy(), out.numpy(), PREFETCH_DISTANCE)
    return out


def csr_mm_numba(adj: Tensor, x: Tensor, add: Optional[Tensor] = None,
                 coef: Optional[Tensor] = None) -> Tensor:
    r""":math:`A X` for a CPU CSR matrix :obj:`adj` ``[M, N]`` and :obj:`x` ``[N, d]`` with the
    numba kernel (see the module docstring), plus :math:`c \odot Y` for :obj:`add`
    :math:`Y` ``[M, d]`` and :obj:`coef` :math:`c` (``[d]`` or one for all; needed with
    :obj:`add`) where given, in the same pass over the rows; no gradient (the callers' autograd
    functions provide it)."""
    numba, kernels = _kernels()
    torch_threads = torch.get_num_threads()
    threads = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))
    if getattr(_local, "threads", None) != threads:  # numba's setting is per Python thread
        numba.set_num_threads(threads)
        _local.threads = threads
    x = x.detach().contiguous()
    out = torch.empty(adj.size(0), x.size(1), dtype=x.dtype)
    if adj.size(0) == 0 or x.size(1) == 0:
        return out.zero_() if add is None else out.copy_(add * coef)
    if add is None:  # no rows to add: the kernel's flag (one empty array per dtype)
        if x.dtype not in _NOTHING_TO_ADD:
            _NOTHING_TO_ADD[x.dtype] = (x.numpy()[:0].copy(), x.numpy()[:1, :1].copy())
        add_rows, weights = _NOTHING_TO_ADD[x.dtype]
    else:
        add_rows = add.detach().contiguous().numpy()
        weights = coef.detach().to(x.dtype).expand(1, x.size(1)).contiguous().numpy()
    kernels.csr_mm_rows(*_csr_arrays(adj), x.numpy(), out.numpy(), add_rows, weights,
                        threads * _RANGES_PER_THREAD, PREFETCH_DISTANCE)
    _give_torch_its_threads(torch_threads)
    return out


def supports_member_rows(crow: Tensor, col: Tensor, val: Tensor) -> bool:
    r"""Whether the numba kernel is selected and takes these CSR arrays for
    :func:`gather_member_rows`: on the CPU, one index dtype for both, float32 or float64
    values."""
    return (col.is_cpu and col.dtype == crow.dtype and val.dtype in (torch.float32, torch.float64)
            and cpu_kernel() == "numba")


def gather_member_rows(crow: Tensor, col: Tensor, val: Tensor, member: Tensor, wanted: Tensor,
                       max_nnz: float) -> Optional[Tuple[Tensor, Tuple[Tensor, Tensor, Tensor],
                                                         Tensor]]:
    r"""The rows a boolean :obj:`member` marks, of the CSR matrix with arrays :obj:`crow`,
    :obj:`col`, :obj:`val` (CPU, one index dtype for both): ``(rows, (crow, col, val) of those
    rows, reached)`` with ``reached`` :obj:`wanted` (boolean, one per column) plus every column
    the rows read; :obj:`None` where the rows hold more than :obj:`max_nnz` non-zeros. One
    numba pass (:func:`~stair_pyg.nn.sparse.receptive_field` runs it once per hop, with every
    batch); the caller checks :func:`supports_member_rows` first."""
    fits, rows, sub_crow, sub_col, sub_val, reached = _kernels()[1].gather_member_rows(
        crow.numpy(), col.numpy(), val.detach().numpy(), member.numpy(), wanted.numpy(),
        float(max_nnz))
    if not fits:
        return None
    return (torch.from_numpy(rows),
            (torch.from_numpy(sub_crow), torch.from_numpy(sub_col), torch.from_numpy(sub_val)),
            torch.from_numpy(reached))


def add_gathered_rows_(out: Tensor, src: Tensor, index: Tensor, coef: Tensor) -> Tensor:
    r"""``out += coef * src[index]`` in place (:obj:`coef` ``[d]``, one weight per channel):
    one pass with the numba kernel where it is selected, else ``index_select`` and
    ``addcmul_``. :obj:`index` must lie in ``[0, len(src))``. Returns :obj:`out`."""
    if _rows_kernel_takes(out, src, index, coef):
        _kernels()[1].add_gathered_rows(out.numpy(), src.detach().numpy(), index.numpy(),
                                        coef.detach().view(1, -1).numpy(), PREFETCH_DISTANCE)
        return out
    return out.addcmul_(src.index_select(0, index), coef)


def add_scattered_rows_(out: Tensor, index: Tensor, src: Tensor, coef: Tensor) -> Tensor:
    r"""``out[index] += coef * src`` in place, repeated indices adding up (``index_add_`` of
    the scaled rows): one pass with the numba kernel where it is selected. :obj:`index` must lie in
    ``[0, len(out))``. Returns :obj:`out`."""
    if _rows_kernel_takes(out, src, index, coef):
        _kernels()[1].add_scattered_rows(out.numpy(), index.numpy(), src.detach().numpy(),
                                         coef.detach().view(1, -1).numpy(), PREFETCH_DISTANCE)
        return out
    return out.index_add_(0, index, src * coef)


def _rows_kernel_takes(out: Tensor, src: Tensor, index: Tensor, coef: Tensor) -> bool:
    r"""Whether the numba row kernels are selected and take these operands: contiguous 2-D
    CPU rows of one float dtype, a 1-D int64 index, one weight per channel. The indices are
    the caller's to keep in range (the kernels do not check them)."""
    # Plain checks, no generator: this runs 8 times a training step.
    return (out.is_cpu and src.is_cpu and index.is_cpu and coef.is_cpu
            and out.dim() == 2 and src.dim() == 2 and index.dim() == 1
            and out.dtype in (torch.float32, torch.float64) and src.dtype == out.dtype
            and coef.dtype == out.dtype and index.dtype == torch.long
            and out.size(1) == src.size(1) and coef.shape == (out.size(1),)
            and out.is_contiguous() and src.is_contiguous() and index.is_contiguous()
            and coef.is_contiguous() and cpu_kernel() == "numba")


__all__ = ["CPU_KERNELS", "PREFETCH_DISTANCE", "add_gathered_rows_", "add_scattered_rows_",
           "cpu_kernel", "csr_mm_numba", "csr_mm_t_numba", "gather_member_rows",
           "numba_available", "set_cpu_kernel", "supports_member_rows"]

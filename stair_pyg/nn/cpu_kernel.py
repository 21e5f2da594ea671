r"""The CPU kernel of the library's sparse product :math:`Y = A X` (:math:`A` in CSR), compiled
with `numba <https://numba.pydata.org>`_ where it is installed (``pip install
"stair-pyg[numba]"``), otherwise torch's own CSR product: :func:`~stair_pyg.nn.sparse.csr_mm`
chooses automatically, and both give the same result up to float rounding.

Every hop of every propagation in the library (STAIR's forward and backward stepwise
convolution, LightGCN, FREEDOM, BM3, LGMRec), and the transposed product of every backward pass,
is this one product. The kernel makes one pass over the rows of :math:`A`: each output row is
zeroed and accumulated in place from the rows of :math:`X` its non-zeros point to (no zero-filled
temporary, no second copy), the rows split into contiguous ranges of equal numbers of non-zeros,
one range at a time per thread, with as many threads as torch uses
(:func:`torch.get_num_threads`).

:func:`set_cpu_kernel` picks the implementation (``"auto"``, the default: numba where it imports
and torch runs on one thread, torch's product otherwise; ``"numba"``; ``"torch"``); the
environment variable ``STAIR_PYG_CPU_KERNEL`` sets the choice a process starts with (for example
``STAIR_PYG_CPU_KERNEL=numba stair-pyg train ...``). Why ``"auto"`` keeps torch's product on
several threads: on a 2-core CPU (``benchmarks/bench_propagation.py``, training steps with each
kernel alternated on one model) the kernel made STAIR's and LightGCN's steps 1.08x faster on one
thread, but on two threads three chained products took 1.7x longer than torch's and whole steps
were a wash (0.92x for STAIR, 1.14x for LightGCN on ``sports``).
"""
from __future__ import annotations

import os
import threading
from typing import Any, Optional, Tuple

import torch
from torch import Tensor

#: The implementations :func:`set_cpu_kernel` accepts.
CPU_KERNELS = ("auto", "numba", "torch")

#: The environment variable that sets the starting choice.
ENV_VAR = "STAIR_PYG_CPU_KERNEL"

_choice = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto"
_kernel: Optional[Any] = None  # the compiled product, once built
_local = threading.local()  # the thread count numba was last given, per Python thread
_numba_missing: Optional[str] = None  # why numba could not be used, once known

#: Row ranges per thread: more ranges than threads, so that a slow range does not hold the rest.
_RANGES_PER_THREAD = 4


def _build() -> Any:
    import numba
    import numpy as np

    def csr_mm_rows(crow, col, val, x, out, num_ranges):  # pragma: no cover - compiled
        # out = A x over num_ranges row ranges of equal numbers of non-zeros, one parallel
        # iteration each: range r holds the rows whose non-zeros start in
        # [r * nnz / R, (r + 1) * nnz / R).
        rows = crow.shape[0] - 1
        channels = x.shape[1]
        targets = (np.arange(num_ranges + 1) * crow[rows]) // num_ranges
        bounds = np.searchsorted(crow[:rows], targets)
        bounds[num_ranges] = rows
        for r in numba.prange(num_ranges):
            for i in range(bounds[r], bounds[r + 1]):
                row = out[i]
                for c in range(channels):
                    row[c] = 0.0
                for p in range(crow[i], crow[i + 1]):
                    v = val[p]
                    src = x[col[p]]
                    for c in range(channels):
                        row[c] += v * src[c]

    def csr_mm_t_rows(crow, col, val, g, out):  # pragma: no cover - compiled
        # out = A^T g in one serial pass over the rows of A, scattering into out (a parallel
        # scatter would race on the rows of out).
        for j in range(out.shape[0]):
            for c in range(out.shape[1]):
                out[j, c] = 0.0
        for i in range(crow.shape[0] - 1):
            src = g[i]
            for p in range(crow[i], crow[i + 1]):
                v = val[p]
                dst = out[col[p]]
                for c in range(g.shape[1]):
                    dst[c] += v * src[c]

    def compile_(function, parallel):
        try:  # compiled once per machine, then loaded from numba's cache (about a second)
            return numba.njit(parallel=parallel, fastmath=True, cache=True)(function)
        except RuntimeError:  # no writable cache location: compiled in every process instead
            return numba.njit(parallel=parallel, fastmath=True, cache=False)(function)

    return numba, compile_(csr_mm_rows, True), compile_(csr_mm_t_rows, False)


def numba_available() -> bool:
    r"""Whether the numba kernel can be used (numba imports)."""
    global _numba_missing
    if _numba_missing is None:
        try:
            import numba  # noqa: F401
            _numba_missing = ""
        except ImportError as error:
            _numba_missing = f"numba does not import ({error})"
    return not _numba_missing


def set_cpu_kernel(name: str) -> str:
    r"""Selects the CPU implementation of the sparse product and returns the previous choice.

    Args:
        name (str): ``"auto"`` (numba where it imports and torch uses one thread, else torch's
            product; see the module docstring), ``"numba"`` (raises
            :class:`ImportError` without numba) or ``"torch"`` (torch's CSR product).
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
    if _choice == "torch" or (_choice == "auto" and (not numba_available()
                                                     or torch.get_num_threads() > 1)):
        return "torch"
    return "numba"


def supports(adj: Tensor, x: Tensor) -> bool:
    r"""Whether the numba kernel is selected and takes this product: a CPU CSR matrix and a
    2-D float32 or float64 :obj:`x` of the matrix's dtype."""
    return (adj.device.type == "cpu" and x.device.type == "cpu" and x.dim() == 2
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
    _, _, kernel = _kernels()
    g = g.detach().contiguous()
    out = torch.empty(adj.size(1), g.size(1), dtype=g.dtype)
    if out.numel() == 0:
        return out
    kernel(*_csr_arrays(adj), g.numpy(), out.numpy())
    return out


def csr_mm_numba(adj: Tensor, x: Tensor) -> Tensor:
    r""":math:`A X` for a CPU CSR matrix :obj:`adj` ``[M, N]`` and :obj:`x` ``[N, d]`` with the
    numba kernel (see the module docstring); no gradient (the callers' autograd functions
    provide it)."""
    numba, kernel, _ = _kernels()
    torch_threads = torch.get_num_threads()
    threads = max(1, min(torch_threads, numba.config.NUMBA_NUM_THREADS))
    if getattr(_local, "threads", None) != threads:  # numba's setting is per Python thread
        numba.set_num_threads(threads)
        _local.threads = threads
    x = x.detach().contiguous()
    out = torch.empty(adj.size(0), x.size(1), dtype=x.dtype)
    if adj.size(0) == 0 or x.size(1) == 0:
        return out.zero_()
    kernel(*_csr_arrays(adj), x.numpy(), out.numpy(), threads * _RANGES_PER_THREAD)
    if torch.get_num_threads() != torch_threads:
        # numba's OpenMP layer sets the process's OpenMP thread count (torch's too) to all
        # cores when it starts its threads, on the first call: give torch its own back.
        torch.set_num_threads(torch_threads)
    return out


__all__ = ["CPU_KERNELS", "cpu_kernel", "csr_mm_numba", "csr_mm_t_numba", "numba_available",
           "set_cpu_kernel"]

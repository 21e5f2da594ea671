r"""Keeps glibc's ``malloc`` from unmapping and re-mapping the large temporaries of a CPU training
step.

PyTorch's CPU tensors come from the C library's ``malloc``. glibc serves a request above its
*mmap threshold* (128 KiB at start) with a fresh ``mmap`` and returns it to the kernel with
``munmap`` when freed, so every such tensor pays one page fault per 4 KiB page on first touch,
and the kernel zeroes every page. A training step allocates and frees several ``[N, d]``
temporaries per hop (14 MB each at the size of ``sports``), every step. glibc raises the
threshold by itself after some frees, but not reliably: in processes that never freed a large
block (for example ones that hold no item features), measured on a 2-core CPU, LightGCN's
``sports`` epoch took about 1.35× longer than with the thresholds fixed as below.

:func:`tune_cpu_allocator` fixes them with ``mallopt``: blocks up to :obj:`mmap_threshold`
(glibc's maximum, 32 MiB) come from the heap and are reused after a free, and up to
:obj:`trim_threshold` of free memory at the top of the heap is kept rather than handed back.
This is glibc's ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment tuning, done
from inside the process. The cost is memory: freed heap blocks stay with the process (reused by
the next allocations) instead of returning to the system at once.

The experiment runner (:func:`~stair_pyg.train.run_experiment`, which ``stair-pyg train`` and
the sweeps use) calls it once before it trains on CPU (``train.tune_malloc``, default on): a
process-wide setting, so a :class:`~stair_pyg.train.Trainer` built directly leaves it to its
caller. Elsewhere (other C libraries, other systems) it does nothing and returns
:obj:`False`; an allocator preloaded with ``LD_PRELOAD`` (jemalloc, tcmalloc) is unaffected.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys
from typing import Optional

#: ``mallopt`` parameters of glibc's ``<malloc.h>``.
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: glibc's largest mmap threshold on 64-bit systems (``DEFAULT_MMAP_THRESHOLD_MAX``).
MAX_MMAP_THRESHOLD = 32 * 1024 * 1024

_tuned: Optional[bool] = None


def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version.restype = ctypes.c_char_p
        libc.gnu_get_libc_version()  # glibc only: musl and others lack it
    except (OSError, AttributeError):
        return None
    return libc


def tune_cpu_allocator(mmap_threshold: int = MAX_MMAP_THRESHOLD,
                       trim_threshold: int = 1 << 30) -> bool:
    r"""Fixes glibc's mmap and trim thresholds (see the module docstring). Idempotent: later
    calls do nothing and return the first call's result.

    Args:
        mmap_threshold (int, optional): Requests above this many bytes are served by ``mmap``.
            (default: 32 MiB, glibc's maximum)
        trim_threshold (int, optional): Free memory at the top of the heap kept by the process.
            (default: 1 GiB)

    Returns:
        :obj:`True` if both settings were accepted (glibc on Linux), else :obj:`False`.
    """
    global _tuned
    if _tuned is not None:
        return _tuned
    if not 0 < mmap_threshold <= MAX_MMAP_THRESHOLD:
        raise ValueError(f"mmap_threshold must be in 1..{MAX_MMAP_THRESHOLD}, got "
                         f"{mmap_threshold}")
    if trim_threshold < 0:
        raise ValueError(f"trim_threshold must be non-negative, got {trim_threshold}")
    libc = _glibc()
    if libc is None:
        _tuned = False
        return False
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)))
    ok = bool(libc.mallopt(M_TRIM_THRESHOLD, int(min(trim_threshold, 2**31 - 1)))) and ok
    _tuned = ok
    return ok


def release_free_memory() -> bool:
    r"""Hands the free memory at the top of glibc's heap back to the system (``malloc_trim(0)``),
    so that the resident set size measures what is in use. Returns :obj:`False` where glibc is
    not the allocator."""
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


__all__ = ["tune_cpu_allocator", "release_free_memory"]

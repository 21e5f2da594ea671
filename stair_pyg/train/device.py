r"""Where and how reproducibly a run computes: the training device, the seeds, deterministic
kernels."""
from __future__ import annotations

import os
import random
from typing import Union

import numpy as np
import torch


def resolve_device(device: Union[str, torch.device, None] = "auto",
                   world_size: int = 1) -> torch.device:
    r"""The training device: ``"auto"`` (or :obj:`None`) picks CUDA when available, else CPU.

    With several data-parallel ranks each rank trains on the GPU of its ``LOCAL_RANK``
    (:func:`~stair_pyg.train.distributed.init_process_group` selects it), so an explicit
    ``cuda:N``, which would put every rank on GPU :math:`N`, is refused.

    Raises:
        ValueError: If CUDA is requested but not available, or ``cuda:N`` is given for several
            ranks.
    """
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was requested but CUDA is not available on this machine "
                         "(use --device cpu or auto)")
    if device.type == "cuda" and world_size > 1:
        if device.index is not None:
            raise ValueError(f"device '{device}' with {world_size} data-parallel ranks would put "
                             f"every rank on GPU {device.index}; give 'cuda' and each rank uses "
                             f"the GPU of its LOCAL_RANK")
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def seed_everything(seed: int) -> None:
    r"""Seeds Python's ``random``, numpy and torch (CPU, and CUDA where torch seeds it)."""
    random.seed(seed)
    np.random.seed(seed % (2 ** 32))
    torch.manual_seed(seed)


def use_deterministic_algorithms(enabled: bool = True) -> None:
    r"""Makes every kernel deterministic, as ``train.deterministic: true`` does.

    On CPU the library's kernels are deterministic already and this changes nothing measurable.
    On CUDA, float atomics (``index_add_``, ``scatter_add_``, sparse products) make two runs of the
    same seed differ in the last bits, which compounds over epochs; this switches to
    deterministic kernels (:func:`torch.use_deterministic_algorithms`, and the cuBLAS workspace
    setting ``CUBLAS_WORKSPACE_CONFIG=:4096:8``, which must be set before cuBLAS starts: call this
    before the first CUDA matrix product), at the cost of slower scatters. An operation without a
    deterministic CUDA kernel then raises an error instead of running.
    """
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(enabled)


__all__ = ["resolve_device", "seed_everything", "use_deterministic_algorithms"]

r"""Chunked cosine k-nearest-neighbour search: never materialises an :math:`N \times N` matrix."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def knn_cosine(x: Tensor, k: int, chunk_size: Optional[int] = None,
               exclude_self: bool = True) -> Tensor:
    r"""For every row :math:`i` of :obj:`x`, the :obj:`k` rows :math:`j \neq i` of largest cosine
    similarity :math:`\langle x_i, x_j\rangle / (\|x_i\| \|x_j\|)`.

    Similarities are computed in blocks of :obj:`chunk_size` query rows, so memory is
    :math:`O(\text{chunk\_size} \cdot N)` instead of :math:`O(N^2)`. Ties are broken by
    :func:`torch.topk`.

    Args:
        x (torch.Tensor): Features ``[N, f]``.
        k (int): Neighbours per row (at most ``N - 1`` when :obj:`exclude_self`).
        chunk_size (int, optional): Query rows per block. (default: about 16M similarities,
            64 MB, per block)
        exclude_self (bool, optional): Whether row :math:`i` may not be its own neighbour.
            (default: :obj:`True`)

    Returns:
        ``edge_index`` ``[2, N * k]`` with ``edge_index[0]`` the query row :math:`i` (each repeated
        :obj:`k` times, ascending) and ``edge_index[1]`` its neighbours, most similar first.
    """
    if x.dim() != 2:
        raise ValueError(f"features must be 2-dimensional, got shape {tuple(x.shape)}")
    n = x.size(0)
    max_k = n - 1 if exclude_self else n
    if k < 0 or k > max_k:
        raise ValueError(f"k={k} neighbours requested but only {max_k} candidates exist")
    if k == 0:
        return torch.empty(2, 0, dtype=torch.long, device=x.device)
    x = x.float()
    # Scale each block by the inverse norms instead of normalising a copy of the whole matrix:
    # the only N-sized extras are the norms and the k neighbours per row.
    inv_norm = 1.0 / x.norm(dim=-1).clamp_min(1e-12)
    if chunk_size is None:
        chunk_size = max(1, min(n, (1 << 24) // max(n, 1)))
    cols = []
    for start in range(0, n, chunk_size):
        end = min(start + chunk_size, n)
        sim = x[start:end] @ x.t()
        sim.mul_(inv_norm[start:end, None]).mul_(inv_norm[None, :])
        if exclude_self:
            rows = torch.arange(end - start, device=x.device)
            sim[rows, rows + start] = float("-inf")
        cols.append(sim.topk(k, dim=1).indices)
    col = torch.cat(cols, dim=0).reshape(-1)
    row = torch.arange(n, device=x.device).repeat_interleave(k)
    return torch.stack([row, col])

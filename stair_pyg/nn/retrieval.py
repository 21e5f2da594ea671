r"""Retrieval over embeddings: :class:`PairIndex`, a set of ``(user, item)`` pairs (the items a
user has seen), and :func:`topk_items`, the top-:math:`k` items of users by inner product with
those pairs excluded, block by block, without a dense users :math:`\times` items mask;
:func:`mips_index` and :func:`index_topk`, the same search through a maximum-inner-product
index of PyG (:class:`~torch_geometric.nn.pool.MIPSKNNIndex`, exact, or
:class:`~torch_geometric.nn.pool.ApproxMIPSKNNIndex`, IVF-PQ), which needs :obj:`faiss`."""
from __future__ import annotations

from typing import Any, Iterator, Optional, Tuple

import torch
from torch import Tensor


class PairIndex:
    r"""A set of ``(user, item)`` pairs, stored as the sorted unique keys
    :math:`u \cdot I + i` with per-user offsets (a CSR matrix without values).

    Membership tests are one :func:`torch.searchsorted` over all queries at once.

    Args:
        edge_index (torch.Tensor): Pairs ``[2, E]`` (user ids, item ids); duplicates are removed.
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
    """

    def __init__(self, edge_index: Tensor, num_users: int, num_items: int):
        edge_index = torch.as_tensor(edge_index, dtype=torch.long)
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"pairs must have shape [2, E], got {tuple(edge_index.shape)}")
        if edge_index.numel() > 0:
            if int(edge_index[0].min()) < 0 or int(edge_index[0].max()) >= num_users:
                raise ValueError(f"user ids must lie in [0, {num_users})")
            if int(edge_index[1].min()) < 0 or int(edge_index[1].max()) >= num_items:
                raise ValueError(f"item ids must lie in [0, {num_items})")
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.keys = torch.unique(edge_index[0] * self.num_items + edge_index[1])  # sorted
        users = torch.div(self.keys, self.num_items, rounding_mode="floor")
        self.items = self.keys - users * self.num_items
        bounds = torch.arange(self.num_users + 1, device=self.keys.device) * self.num_items
        self.ptr = torch.searchsorted(self.keys, bounds)

    def to(self, device: torch.device | str) -> "PairIndex":
        out = PairIndex.__new__(PairIndex)
        out.num_users, out.num_items = self.num_users, self.num_items
        out.keys, out.items, out.ptr = (self.keys.to(device), self.items.to(device),
                                        self.ptr.to(device))
        return out

    def __len__(self) -> int:
        return int(self.keys.numel())

    def counts(self, users: Tensor) -> Tensor:
        r"""Number of pairs of every user in :obj:`users`."""
        return self.ptr[users + 1] - self.ptr[users]

    def degrees(self) -> Tensor:
        r"""Number of pairs of every user ``[U]``."""
        return self.ptr[1:] - self.ptr[:-1]

    def users(self) -> Tensor:
        r"""The users that have at least one pair, ascending."""
        return torch.nonzero(self.degrees() > 0).view(-1)

    def contains(self, users: Tensor, items: Tensor) -> Tensor:
        r"""Whether ``(users[b], items[b, ...])`` is in the set, elementwise; :obj:`users` is
        broadcast against :obj:`items` along the leading dimension."""
        if self.keys.numel() == 0:
            return torch.zeros(items.shape, dtype=torch.bool, device=items.device)
        shape = (-1,) + (1,) * (items.dim() - 1)
        query = users.view(shape) * self.num_items + items
        pos = torch.searchsorted(self.keys, query).clamp(max=self.keys.numel() - 1)
        return self.keys[pos] == query

    def entries(self, users: Tensor) -> Tuple[Tensor, Tensor]:
        r"""All pairs of the given users as ``(row, item)``: :obj:`row` indexes :obj:`users`."""
        start, count = self.ptr[users], self.counts(users)
        row = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), count)
        offset = torch.arange(row.numel(), device=users.device)
        offset = offset - torch.repeat_interleave(count.cumsum(0) - count, count)
        return row, self.items[start[row] + offset]


def topk_items(user_emb: Tensor, item_emb: Tensor, users: Tensor, exclude: Optional[PairIndex],
               k: int, block: int) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
    r"""The top-:obj:`k` items of :obj:`users` by inner product, :obj:`block` users at a time
    (memory :math:`O(\text{block} \cdot I)`), the pairs in :obj:`exclude` scored
    :math:`-\infty`: yields ``(block_users, top_items [b, k'], top_scores [b, k'])`` with
    :math:`k' = \min(k, I)`."""
    num_items = item_emb.size(0)
    item_t = item_emb.t()
    for start in range(0, users.numel(), block):
        ids = users[start:start + block]
        scores = user_emb[ids] @ item_t
        if exclude is not None:
            row, col = exclude.entries(ids)
            scores[row, col] = float("-inf")
        top_scores, top_items = torch.topk(scores, min(k, num_items), dim=1)
        yield ids, top_items, top_scores


def has_faiss() -> bool:
    r"""Whether :obj:`faiss` (the optional ``faiss`` extra) is installed."""
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def mips_index(item_emb: Tensor, kind: str = "flat", num_cells: Optional[int] = None,
               num_cells_to_visit: int = 32, bits_per_vector: Optional[int] = None) -> Any:
    r"""A maximum-inner-product index over the item representations ``[I, d]`` (float32, CPU),
    built through PyG: :obj:`"flat"` is :class:`~torch_geometric.nn.pool.MIPSKNNIndex` (exact:
    the same top-:math:`k` as :func:`topk_items` up to ties), :obj:`"ivfpq"`
    :class:`~torch_geometric.nn.pool.ApproxMIPSKNNIndex` (approximate: :obj:`num_cells`
    inverted lists, default :math:`\lceil\sqrt{I}\,\rceil` (the coarse :math:`k`-means then
    trains on at most :math:`256\sqrt{I}` rows: seconds at :math:`10^6` items), of which
    :obj:`num_cells_to_visit` are searched; product quantisation into :obj:`bits_per_vector`
    sub-vectors of 8 bits each, default :math:`d/4` (PyG's name for faiss' :math:`M`; training
    costs about :math:`M` :math:`k`-means runs of 256 centroids on up to 65,536 rows)).

    Raises:
        ImportError: Without :obj:`faiss` (``pip install "stair-pyg[faiss]"``).
    """
    if not has_faiss():
        raise ImportError("the inner-product index needs faiss: pip install 'stair-pyg[faiss]' "
                          "(or faiss-cpu)")
    from torch_geometric.nn.pool import ApproxMIPSKNNIndex, MIPSKNNIndex

    emb = item_emb.detach().float().cpu().contiguous()
    if kind == "flat":
        return MIPSKNNIndex(emb)
    if kind == "ivfpq":
        import math

        cells = num_cells or max(1, min(emb.size(0) // 39, math.ceil(math.sqrt(emb.size(0)))))
        sub = bits_per_vector or max(1, emb.size(1) // 4)  # PyG passes it as faiss' M
        while emb.size(1) % sub:
            sub -= 1
        return ApproxMIPSKNNIndex(cells, min(num_cells_to_visit, cells), sub, emb=emb)
    raise ValueError(f"unknown index kind '{kind}'; choose 'flat' or 'ivfpq'")


def index_topk(index: Any, user_emb: Tensor, users: Tensor, exclude: Optional[PairIndex],
               k: int, block: int) -> Iterator[Tuple[Tensor, Tensor, Tensor]]:
    r""":func:`topk_items` through a :class:`~torch_geometric.nn.pool.KNNIndex` (see
    :func:`mips_index`): each block's seen pairs go to the index's :obj:`exclude_links`, which
    asks for :math:`k` plus the block's largest number of seen items and drops those. Yields
    the same ``(block_users, items [b, k'], scores [b, k'])``; missing places (fewer unseen
    items than :math:`k`, or faiss' limit of 2048 candidates) have score :math:`-\infty`."""
    num_items = int(index.numel)
    kk = min(k, num_items)
    for start in range(0, users.numel(), block):
        ids = users[start:start + block]
        query = user_emb[ids].detach().float().cpu().contiguous()
        links = None
        if exclude is not None:
            row, col = exclude.entries(ids.to(exclude.keys.device))
            links = torch.stack([row, col]).cpu()
        score, item = index.search(query, kk, exclude_links=links)
        if item.size(1) < kk:  # fewer candidates than k
            pad = kk - item.size(1)
            score = torch.cat([score, score.new_full((score.size(0), pad), float("-inf"))], 1)
            item = torch.cat([item, item.new_full((item.size(0), pad), -1)], 1)
        score = torch.where(item < 0, torch.full_like(score, float("-inf")), score)
        yield ids, item.clamp_min(0).to(users.device), score.to(users.device)


__all__ = ["PairIndex", "topk_items", "has_faiss", "mips_index", "index_topk"]

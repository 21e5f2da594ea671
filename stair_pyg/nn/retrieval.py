r"""Retrieval over embeddings: :class:`PairIndex`, a set of ``(user, item)`` pairs (the items a
user has seen), and :func:`topk_items`, the top-:math:`k` items of users by inner product with
those pairs excluded, block by block, without a dense users :math:`\times` items mask."""
from __future__ import annotations

from typing import Iterator, Optional, Tuple

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
    step = block
    item_t = item_emb.t()
    for start in range(0, users.numel(), step):
        block = users[start:start + step]
        scores = user_emb[block] @ item_t
        if exclude is not None:
            row, col = exclude.entries(block)
            scores[row, col] = float("-inf")
        top_scores, top_items = torch.topk(scores, min(k, num_items), dim=1)
        yield block, top_items, top_scores


__all__ = ["PairIndex", "topk_items"]

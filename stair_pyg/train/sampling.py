r"""Uniform negative sampling for BPR training, vectorised over a whole epoch."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from stair_pyg.nn.retrieval import PairIndex


class NegativeSampler:
    r"""Draws, for each given user, an item uniformly from the items that are **not** among the
    user's training positives (optionally: only among items with training interactions).

    All draws are made at once: items are drawn uniformly from :math:`\{0, \dots, I - 1\}`, the
    draws that hit a positive are found by one :func:`torch.searchsorted` over the sorted keys
    :math:`u \cdot I + i` of the training pairs, and only those are drawn again, until none is
    left. Each accepted draw is therefore uniform over the user's non-positive items. With a
    :class:`torch.Generator` the result is a deterministic function of the generator's state.

    Args:
        edge_index (torch.Tensor): Training interactions ``[2, E]`` (user ids, item ids).
        num_users (int): Number of users.
        num_items (int): Number of items.
        max_rounds (int, optional): Redraw rounds before giving up (a safeguard; with
            :math:`p` the largest share of positives of a user, a draw survives
            :math:`r` rounds with probability :math:`p^r`). (default: :obj:`1000`)
        interacted_only (bool, optional): Draw negatives only from the items that have at least
            one training interaction. Items without any only ever occur as negatives under
            uniform sampling, so an ID-based model learns to rank every cold-start item last;
            excluding them leaves their representation to what they share with other items
            (STAIR: the modality initialisation and the item-graph smoothing of BSC); it is
            MMRec's pool (its loader draws from the training split's items). The default
            (:obj:`False`), every item, is the uniform sampling of the STAIR paper.
    """

    def __init__(self, edge_index: Tensor, num_users: int, num_items: int,
                 max_rounds: int = 1000, interacted_only: bool = False):
        self.positives = PairIndex(edge_index.cpu(), num_users, num_items)
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.max_rounds = int(max_rounds)
        # Candidate negatives; None: every item (then a draw is randint(num_items) itself).
        self.candidates: Optional[Tensor] = (
            torch.unique(edge_index[1].cpu()) if interacted_only else None)
        # Positives are interacted items, so a user has no negative once its positives cover
        # every candidate.
        num_candidates = self.num_items if self.candidates is None else self.candidates.numel()
        full = torch.nonzero(self.positives.degrees() >= num_candidates).view(-1)
        self._full_users = full

    def _draw(self, shape, generator: Optional[torch.Generator]) -> Tensor:
        if self.candidates is None:
            return torch.randint(self.num_items, shape, generator=generator)
        return self.candidates[torch.randint(self.candidates.numel(), shape, generator=generator)]

    def sample(self, users: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        r"""One negative item per entry of :obj:`users` (a CPU ``LongTensor`` of the same shape).

        Raises:
            ValueError: If a user has interacted with every item (no negative exists).
        """
        users = users.cpu()
        if self._full_users.numel() > 0 and bool(torch.isin(users, self._full_users).any()):
            bad = users[torch.isin(users, self._full_users)][:5].tolist()
            raise ValueError(f"users {bad} have interacted with all candidate items: there "
                             f"is no negative item to sample for them")
        items = self._draw(users.shape, generator)
        todo = torch.nonzero(self.positives.contains(users.view(-1), items.view(-1))).view(-1)
        flat = items.view(-1)
        flat_users = users.view(-1)
        rounds = 0
        while todo.numel() > 0:
            rounds += 1
            if rounds > self.max_rounds:
                raise RuntimeError(f"negative sampling did not finish in {self.max_rounds} rounds")
            redraw = self._draw((todo.numel(),), generator)
            flat[todo] = redraw
            clash = self.positives.contains(flat_users[todo], redraw)
            todo = todo[clash]
        return flat.view(users.shape)

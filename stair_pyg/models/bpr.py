r"""Matrix factorisation trained with BPR, as in MMRec's ``BPR`` baseline."""
from __future__ import annotations

from typing import Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.data.hetero import num_users_items
from stair_pyg.models.base import Recommender, bpr_loss


class BPRMF(Recommender):
    r"""Matrix factorisation with Bayesian personalised ranking, from the
    `"BPR: Bayesian Personalized Ranking from Implicit Feedback"
    <https://arxiv.org/abs/1205.2618>`_ paper (Rendle et al., UAI 2009), in the form of MMRec's
    ``BPR`` baseline.

    User :math:`u` and item :math:`i` have free embeddings :math:`\mathbf{e}_u, \mathbf{e}_i`
    (Xavier-normal initialised); the score is :math:`\mathbf{e}_u^\top \mathbf{e}_i`. The loss of a
    batch :math:`\mathcal{B}` of triples :math:`(u, i, j)` is

    .. math::
        \mathcal{L} = \frac{1}{|\mathcal{B}|} \sum_{(u,i,j) \in \mathcal{B}}
        -\log \sigma(\mathbf{e}_u^\top \mathbf{e}_i - \mathbf{e}_u^\top \mathbf{e}_j)
        + \lambda \frac{\|\mathbf{E}_U\|_F + \|\mathbf{E}_{I^+}\|_F + \|\mathbf{E}_{I^-}\|_F}
        {|\mathcal{B}|}

    where :math:`\mathbf{E}_U, \mathbf{E}_{I^+}, \mathbf{E}_{I^-}` stack the batch's user, positive
    and negative embeddings (MMRec's ``EmbLoss``: Frobenius norms, not squared, divided by the
    batch size).

    Args:
        num_users (int): Number of users.
        num_items (int): Number of items.
        embedding_dim (int, optional): Embedding size. (default: :obj:`64`)
        reg_weight (float, optional): :math:`\lambda`, weight of the embedding regulariser
            (MMRec searches :math:`\{2, 1, 10^{-1}, \dots, 10^{-5}\}`). (default: :obj:`1e-4`)

    Shapes:
        - **get_embedding():** ``([num_users, embedding_dim], [num_items, embedding_dim])``
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 reg_weight: float = 1e-4):
        super().__init__()
        if embedding_dim <= 0:
            raise ValueError(f"'embedding_dim' must be positive, got {embedding_dim}")
        if reg_weight < 0:
            raise ValueError(f"'reg_weight' must be non-negative, got {reg_weight}")
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.embedding_dim = int(embedding_dim)
        self.reg_weight = float(reg_weight)
        self.user_emb = torch.nn.Embedding(self.num_users, self.embedding_dim)
        self.item_emb = torch.nn.Embedding(self.num_items, self.embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_normal_(self.user_emb.weight)
        torch.nn.init.xavier_normal_(self.item_emb.weight)

    @classmethod
    def from_data(cls, data: HeteroData, embedding_dim: int = 64,
                  reg_weight: float = 1e-4) -> "BPRMF":
        r"""Builds the model for the users and items of :obj:`data` (the interactions themselves
        are not used: matrix factorisation propagates over no graph)."""
        num_users, num_items = num_users_items(data)
        return cls(num_users, num_items, embedding_dim=embedding_dim, reg_weight=reg_weight)

    def get_embedding(self) -> Tuple[Tensor, Tensor]:
        return self.user_emb.weight, self.item_emb.weight

    def recommendation_loss(self, users: Tensor, pos_items: Tensor,
                            neg_items: Tensor) -> Tensor:
        u = self.user_emb(users)
        p = self.item_emb(pos_items)
        n = self.item_emb(neg_items)
        loss = bpr_loss((u * p).sum(-1), (u * n).sum(-1))
        if self.reg_weight > 0:
            reg = (u.norm() + p.norm() + n.norm()) / users.numel()
            loss = loss + self.reg_weight * reg
        return loss

r"""LightGCN over the library's sparse adjacency."""
from __future__ import annotations

from typing import Any, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.data.hetero import num_users_items, train_edge_index
from stair_pyg.models._common import embedding_norm_loss, layer_mean
from stair_pyg.models.base import Recommender, bpr_loss, share_storage, stacked_rows
from stair_pyg.nn.sparse import SparseAdj, SparseAdjBuffer, user_item_adjacency


class LightGCN(Recommender):
    r"""LightGCN from the `"LightGCN: Simplifying and Powering Graph Convolution Network for
    Recommendation" <https://arxiv.org/abs/2002.02126>`_ paper (He et al., SIGIR 2020).

    Users and items are one node set of the bipartite graph with symmetric-normalised adjacency
    :math:`\hat{A} = D^{-1/2} A D^{-1/2}` (no self-loops). Every layer is the propagation
    :math:`\mathbf{E}^{(l+1)} = \hat{A} \mathbf{E}^{(l)}` of PyG's
    :class:`~torch_geometric.nn.conv.LGConv`, computed by the library's Neumann series with every
    channel weight 1 (:func:`~stair_pyg.models._common.layer_mean`, the machinery of
    :class:`~stair_pyg.nn.StepwiseConv`) over a
    :class:`~stair_pyg.nn.sparse.SparseAdj`, whose stored transpose makes the backward pass
    faster than message passing; the layers are combined as in
    :class:`torch_geometric.nn.models.LightGCN` with :math:`\alpha_l = 1/(L+1)`:

    .. math::
        \mathbf{E} = \frac{1}{L+1} \sum_{l=0}^{L} \hat{A}^l \mathbf{E}^{(0)}, \qquad
        \hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i

    Training minimises BPR plus MMRec's regulariser on the layer-0 embeddings of the batch,

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}} + \lambda \frac{\|\mathbf{E}^{(0)}_{u}\|_F
        + \|\mathbf{E}^{(0)}_{i^+}\|_F + \|\mathbf{E}^{(0)}_{i^-}\|_F}{B}

    (MMRec's ``EmbLoss``: unsquared norms over the batch of size :math:`B`).

    Defaults: the paper's :math:`L = 3` layers, :math:`d = 64` and :math:`\lambda = 10^{-4}`
    (MMRec tunes ``n_layers`` over 1..4 and ``reg_weight`` over 1e-2..1e-6; both grids contain
    these values). Embeddings are initialised with Xavier-uniform, as in MMRec and PyG.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        adj (SparseAdj): Normalised adjacency ``[U + I, U + I]`` (users first).
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): :math:`L`. (default: :obj:`3`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-4`)

    Shapes:
        - **get_embedding():** ``([U, d], [I, d])``
    """

    def __init__(self, num_users: int, num_items: int, adj: SparseAdj, embedding_dim: int = 64,
                 num_layers: int = 3, reg_weight: float = 1e-4):
        super().__init__()
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        if tuple(adj.shape) != (num_users + num_items, num_users + num_items):
            raise ValueError(f"adjacency has shape {tuple(adj.shape)}, expected "
                             f"{(num_users + num_items, num_users + num_items)}")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.num_layers = int(num_layers)
        self.reg_weight = float(reg_weight)
        self.user_embedding = torch.nn.Embedding(num_users, embedding_dim)
        self.item_embedding = torch.nn.Embedding(num_items, embedding_dim)
        share_storage(self.user_embedding.weight, self.item_embedding.weight)
        self.adj = SparseAdjBuffer(adj)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.user_embedding.weight)
        torch.nn.init.xavier_uniform_(self.item_embedding.weight)

    @classmethod
    def from_data(cls, data: HeteroData, **hparams: Any) -> "LightGCN":
        num_users, num_items = num_users_items(data)
        adj = user_item_adjacency(train_edge_index(data), num_users, num_items)
        return cls(num_users, num_items, adj, **hparams)

    def propagate(self, index: Optional[Tensor] = None) -> Tensor:
        r"""The layer mean ``[U + I, d]`` (users first), or its rows :obj:`index` (computing only
        what they depend on)."""
        return layer_mean(self.adj.get(), self._stacked(), self.num_layers, index)

    def _stacked(self) -> Tensor:
        r"""The user and item tables as one ``[U + I, d]`` node table (a view of the block they
        share as built, :func:`~stair_pyg.models.base.stacked_rows`)."""
        return stacked_rows(self.user_embedding.weight, self.item_embedding.weight)

    def get_embedding(self) -> Tuple[Tensor, Tensor]:
        out = self.propagate()
        return out[:self.num_users], out[self.num_users:]

    def recommendation_loss(self, users: Tensor, pos_items: Tensor,
                            neg_items: Tensor) -> Tensor:
        nodes = torch.cat([users, pos_items + self.num_users, neg_items + self.num_users])
        x = self._stacked()
        u, pos_emb, neg_emb = layer_mean(self.adj.get(), x, self.num_layers,
                                         nodes).split(users.numel())
        pos = (u * pos_emb).sum(-1)
        neg = (u * neg_emb).sum(-1)
        # The layer-0 rows in one gather from the stacked tables: its backward fills one
        # [U + I, d] gradient, where a lookup per table (three here) fills one each, to be
        # added up after (sports, two threads: about 4% of a step).
        reg = embedding_norm_loss(*x.index_select(0, nodes).split(users.numel()))
        return bpr_loss(pos, neg) + self.reg_weight * reg

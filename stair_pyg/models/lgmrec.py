r"""LGMRec: local (collaborative + modality graph) and global (hypergraph) embeddings."""
from __future__ import annotations

from itertools import combinations
from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.data.hetero import num_users_items, train_edge_index
from stair_pyg.models._common import (check_new_features, embedding_norm_loss, grow_rows,
                                     layer_mean, require_modalities)
from stair_pyg.models.base import Recommender, bpr_loss
from stair_pyg.nn.sparse import (SparseAdj, SparseAdjBuffer, csr_from_edge_index, spmm,
                                 user_item_adjacency)


def interaction_matrix(edge_index: Tensor, num_users: int, num_items: int) -> SparseAdj:
    r"""The user-item interaction matrix ``[U, I]`` with a 1 per distinct training pair
    (duplicates count once, as MMRec's 0/1 matrix), on the device of :obj:`edge_index`."""
    counts = csr_from_edge_index(edge_index, None, (num_users, num_items))
    ones = torch.sparse_csr_tensor(counts.crow_indices(), counts.col_indices(),
                                   torch.ones_like(counts.values()), counts.shape,
                                   check_invariants=False)
    return SparseAdj(ones, symmetric=False)


def hypergraph_propagate(item_hyper: Tensor, user_hyper: Tensor, item_emb: Tensor,
                         num_layers: int) -> Tuple[Tensor, Tensor]:
    r"""LGMRec's hypergraph message passing (its ``HGNNLayer``): items and users pass messages
    through :math:`H` hyperedges,

    .. math::
        \mathbf{Z}^{(l)} = \mathbf{H}_I^\top \mathbf{E}_I^{(l-1)}, \quad
        \mathbf{E}_I^{(l)} = \mathbf{H}_I \mathbf{Z}^{(l)}, \quad
        \mathbf{E}_U^{(l)} = \mathbf{H}_U \mathbf{Z}^{(l)}, \qquad l = 1..L

    returning :math:`(\mathbf{E}_U^{(L)}, \mathbf{E}_I^{(L)})`. Only ``[I, H]`` and ``[U, H]``
    matrices are formed.

    Args:
        item_hyper (torch.Tensor): Item-hyperedge assignments :math:`\mathbf{H}_I` ``[I, H]``.
        user_hyper (torch.Tensor): User-hyperedge assignments :math:`\mathbf{H}_U` ``[U, H]``.
        item_emb (torch.Tensor): :math:`\mathbf{E}_I^{(0)}` ``[I, d]``.
        num_layers (int): :math:`L \geq 1`.
    """
    if num_layers < 1:
        raise ValueError(f"the hypergraph needs at least one layer, got {num_layers}")
    item_out, user_out = item_emb, item_emb
    for _ in range(num_layers):
        latent = item_hyper.t() @ item_out
        item_out = item_hyper @ latent
        user_out = user_hyper @ latent
    return user_out, item_out


def hyper_contrastive_loss(anchor: Tensor, positive: Tensor, candidates: Tensor,
                           tau: float) -> Tensor:
    r"""LGMRec's InfoNCE between two modalities' hyperedge embeddings (summed over the batch):

    .. math::
        -\sum_b \log \frac{\exp(\cos(\mathbf{a}_b, \mathbf{p}_b)/\tau)}
        {\sum_j \exp(\cos(\mathbf{a}_b, \mathbf{c}_j)/\tau)}

    computed with :func:`torch.logsumexp` (``[B, N]`` similarities, never ``[N, N]``)."""
    anchor, positive = F.normalize(anchor, dim=-1), F.normalize(positive, dim=-1)
    candidates = F.normalize(candidates, dim=-1)
    pos = (anchor * positive).sum(-1) / tau
    return (torch.logsumexp(anchor @ candidates.t() / tau, dim=-1) - pos).sum()


class LGMRec(Recommender):
    r"""LGMRec from the `"LGMRec: Local and Global Graph Learning for Multimodal
    Recommendation" <https://arxiv.org/abs/2312.16400>`_ paper (Guo et al., AAAI 2024), following
    the authors' implementation in MMRec.

    * **Collaborative graph embedding** (local): LightGCN layer mean
      :math:`\mathbf{E}^c` over :math:`\hat{A}` (or the raw ID embeddings with
      :obj:`cf_model="mf"`).
    * **Modality graph embedding** (local), per modality :math:`m`: items
      :math:`\mathbf{F}_m \mathbf{W}_m`, users the mean of their items, both propagated
      :math:`L_m` times over :math:`\hat{A}` (last layer): :math:`\mathbf{E}^m`.
    * **Global hypergraph embedding**, per modality: learnable hyperedges
      :math:`\mathbf{V}_m \in \mathbb{R}^{f_m \times H}` give item assignments
      :math:`\mathbf{H}^m_I = \mathrm{GumbelSoftmax}_\tau(\mathbf{F}_m \mathbf{V}_m)` and user
      assignments :math:`\mathbf{H}^m_U = \mathrm{GumbelSoftmax}_\tau(R\,\mathbf{F}_m
      \mathbf{V}_m)` (:math:`R` the raw interaction matrix), dropped out with rate
      :math:`1 - \text{keep\_rate}` in training, then :func:`hypergraph_propagate` of the item
      part of :math:`\mathbf{E}^c` gives :math:`\mathbf{G}^m`.

    .. math::
        \mathbf{E} = \mathbf{E}^c + \sum_m \mathrm{norm}(\mathbf{E}^m)
        + \alpha\, \mathrm{norm}\Big(\sum_m \mathbf{G}^m\Big)

    (:math:`\mathrm{norm}` = row-wise L2 normalisation). The loss is BPR on :math:`\mathbf{E}`,
    plus :math:`\lambda_{cl}` times :func:`hyper_contrastive_loss` between the hypergraph
    embeddings of every pair of modalities (users of the batch against all users, positive items
    against all items), plus MMRec's norm regulariser on the batch embeddings.

    Any number of modalities: with one (``scientific`` has text only) there is no modality pair
    and so no contrastive term; with image and text, listed image first, everything equals
    MMRec's version (which supports exactly that pair). As in MMRec, the Gumbel noise is drawn
    at evaluation too (scores are stochastic); dropout is off in :meth:`eval` mode. Raw features
    are frozen.

    Defaults are MMRec's LGMRec config (its Baby settings): :math:`d = 64`, :math:`L = 2`,
    :math:`L_m = 2`, one hypergraph layer, :math:`H = 4` hyperedges, keep_rate 0.5,
    :math:`\alpha = 0.3`, :math:`\lambda_{cl} = 10^{-4}`, reg_weight :math:`10^{-6}`,
    :math:`\tau = 0.2`.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        edge_index (torch.Tensor): Training interactions ``[2, E]`` (user ids, item ids).
        features (dict): Modality name to item features ``[I, f_m]`` (at least one).
        embedding_dim (int, optional): :math:`d` (ID and modality embeddings). (default: :obj:`64`)
        cf_model (str, optional): ``"lightgcn"`` or ``"mf"``. (default: :obj:`"lightgcn"`)
        n_ui_layers (int, optional): :math:`L`. (default: :obj:`2`)
        n_mm_layers (int, optional): :math:`L_m`. (default: :obj:`2`)
        n_hyper_layer (int, optional): Hypergraph layers. (default: :obj:`1`)
        hyper_num (int, optional): :math:`H`. (default: :obj:`4`)
        keep_rate (float, optional): Keep probability of the assignment dropout.
            (default: :obj:`0.5`)
        alpha (float, optional): :math:`\alpha`. (default: :obj:`0.3`)
        cl_weight (float, optional): :math:`\lambda_{cl}`. (default: :obj:`1e-4`)
        reg_weight (float, optional): Weight of the norm regulariser. (default: :obj:`1e-6`)
        tau (float, optional): Gumbel-softmax and InfoNCE temperature. (default: :obj:`0.2`)
        modalities (list of str, optional): Which modalities :meth:`from_data` takes
            (default: all).

    Shapes:
        - **get_embedding():** ``([U, d], [I, d])``
    """

    uses_item_features = True

    def __init__(self, num_users: int, num_items: int, edge_index: Tensor,
                 features: Dict[str, Tensor], embedding_dim: int = 64,
                 cf_model: str = "lightgcn", n_ui_layers: int = 2, n_mm_layers: int = 2,
                 n_hyper_layer: int = 1, hyper_num: int = 4, keep_rate: float = 0.5,
                 alpha: float = 0.3, cl_weight: float = 1e-4, reg_weight: float = 1e-6,
                 tau: float = 0.2, modalities: Optional[List[str]] = None):
        super().__init__()
        if not features:
            raise ValueError("LGMRec needs at least one modality of item features")
        if cf_model not in ("lightgcn", "mf"):
            raise ValueError(f"cf_model must be 'lightgcn' or 'mf', got '{cf_model}'")
        if n_hyper_layer < 1:
            raise ValueError(f"n_hyper_layer must be >= 1, got {n_hyper_layer}")
        if not 0.0 < keep_rate <= 1.0:
            raise ValueError(f"keep_rate must be in (0, 1], got {keep_rate}")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.cf_model = cf_model
        self.n_ui_layers, self.n_mm_layers = int(n_ui_layers), int(n_mm_layers)
        self.n_hyper_layer, self.hyper_num = int(n_hyper_layer), int(hyper_num)
        self.keep_rate, self.alpha, self.tau = float(keep_rate), float(alpha), float(tau)
        self.cl_weight, self.reg_weight = float(cl_weight), float(reg_weight)

        self.user_embedding = torch.nn.Parameter(torch.empty(num_users, embedding_dim))
        self.item_id_embedding = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        self.modalities = list(features)
        self.transforms = torch.nn.ParameterDict(
            {m: torch.nn.Parameter(torch.empty(x.size(1), embedding_dim))
             for m, x in features.items()})
        self.hyperedges = torch.nn.ParameterDict(
            {m: torch.nn.Parameter(torch.empty(x.size(1), hyper_num))
             for m, x in features.items()})
        for m, x in features.items():
            self.register_buffer(f"feat_{m}", x.float(), persistent=False)

        edge_index = edge_index.long()
        self.register_buffer("edge_index", edge_index, persistent=False)
        self.norm_adj = SparseAdjBuffer(user_item_adjacency(edge_index, num_users, num_items))
        interactions = interaction_matrix(edge_index, num_users, num_items)
        self.interactions = SparseAdjBuffer(interactions)
        degree = interactions.adj.crow_indices().diff().float()  # distinct items per user
        self.register_buffer("inv_user_degree", 1.0 / (degree + 1e-7), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Xavier-uniform tables, as MMRec."""
        for table in [self.user_embedding, self.item_id_embedding,
                      *self.transforms.values(), *self.hyperedges.values()]:
            torch.nn.init.xavier_uniform_(table)

    @classmethod
    def from_data(cls, data: HeteroData, **hparams: Any) -> "LGMRec":
        num_users, num_items = num_users_items(data)
        features = require_modalities(data, cls.__name__, hparams.get("modalities"))
        return cls(num_users, num_items, train_edge_index(data), features, **hparams)

    @property
    def item_feature_dims(self) -> Dict[str, int]:
        return {m: int(self.features(m).size(1)) for m in self.modalities}

    @torch.no_grad()
    def add_items(self, features: Dict[str, Tensor]) -> Tensor:
        r"""Adds items with features but no interactions (ids :math:`I..I+n-1`, in row order).
        A new item has a zero ID embedding and no edges, so its collaborative and local
        modality embeddings vanish and LGMRec's global part places it: its hyperedge
        assignments come from its features, :math:`\mathbf{H}^m_n =
        \mathrm{GumbelSoftmax}_\tau(\mathbf{f}^m_n \mathbf{V}_m)`, so

        .. math::
            \mathbf{e}_n = \alpha\, \mathrm{norm}\Big(\sum_m \mathbf{H}^m_n
            (\mathbf{H}^m_I)^\top \mathbf{E}^c_I\Big)

        (one hypergraph layer). Existing representations do not depend on the new rows, but
        LGMRec draws Gumbel noise at every evaluation, so its scores are random already; with
        the same noise they are unchanged."""
        feats = check_new_features(features, self.item_feature_dims, type(self).__name__)
        table = self.item_id_embedding
        n = next(iter(feats.values())).size(0)
        self.item_id_embedding = grow_rows(table, table.new_zeros(n, table.size(1)))
        for m, x in feats.items():
            self.register_buffer(f"feat_{m}", torch.cat([self.features(m), x.to(table)]),
                                 persistent=False)
        first = self.num_items
        self.num_items += n
        self.norm_adj.set(user_item_adjacency(self.edge_index, self.num_users, self.num_items).to(
            self.norm_adj.val.dtype))
        self.interactions.set(interaction_matrix(self.edge_index, self.num_users,
                                                 self.num_items))
        return torch.arange(first, self.num_items, device=table.device)

    def features(self, modality: str) -> Tensor:
        return getattr(self, f"feat_{modality}")

    def collaborative(self) -> Tensor:
        r""":math:`\mathbf{E}^c` ``[U + I, d]``."""
        x = torch.cat([self.user_embedding, self.item_id_embedding], dim=0)
        if self.cf_model == "mf":
            return x
        return layer_mean(self.norm_adj.get(), x, self.n_ui_layers)

    def modality_graph(self, modality: str) -> Tensor:
        r""":math:`\mathbf{E}^m` ``[U + I, d]``."""
        items = self.features(modality) @ self.transforms[modality]
        users = spmm(self.interactions.get(), items) * self.inv_user_degree.unsqueeze(-1)
        out = torch.cat([users, items], dim=0)
        adj = self.norm_adj.get()
        for _ in range(self.n_mm_layers):
            out = spmm(adj, out)
        return out

    def hypergraph(self, modality: str, item_emb: Tensor) -> Tuple[Tensor, Tensor]:
        r""":math:`\mathbf{G}^m` as (users ``[U, d]``, items ``[I, d]``)."""
        item_logits = self.features(modality) @ self.hyperedges[modality]
        user_logits = spmm(self.interactions.get(), item_logits)
        item_hyper = F.gumbel_softmax(item_logits, tau=self.tau, dim=1, hard=False)
        user_hyper = F.gumbel_softmax(user_logits, tau=self.tau, dim=1, hard=False)
        p = 1.0 - self.keep_rate
        item_hyper = F.dropout(item_hyper, p, training=self.training)
        user_hyper = F.dropout(user_hyper, p, training=self.training)
        return hypergraph_propagate(item_hyper, user_hyper, item_emb, self.n_hyper_layer)

    def encode(self) -> Tuple[Tensor, Tensor, Dict[str, Tuple[Tensor, Tensor]]]:
        r"""Returns user ``[U, d]`` and item ``[I, d]`` representations and the per-modality
        hypergraph embeddings."""
        collab = self.collaborative()
        local = collab
        hyper: Dict[str, Tuple[Tensor, Tensor]] = {}
        global_sum = None
        for m in self.modalities:
            local = local + F.normalize(self.modality_graph(m), dim=1)
            hyper[m] = self.hypergraph(m, collab[self.num_users:])
            g = torch.cat(hyper[m], dim=0)
            global_sum = g if global_sum is None else global_sum + g
        out = local + self.alpha * F.normalize(global_sum, dim=1)
        return out[:self.num_users], out[self.num_users:], hyper

    def get_embedding(self) -> Tuple[Tensor, Tensor]:
        user, item, _ = self.encode()
        return user, item

    def recommendation_loss(self, users: Tensor, pos_items: Tensor,
                            neg_items: Tensor) -> Tensor:
        user_emb, item_emb, hyper = self.encode()
        u, pos, neg = user_emb[users], item_emb[pos_items], item_emb[neg_items]
        loss = bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))
        for a, b in combinations(self.modalities, 2):
            (ua, ia), (ub, ib) = hyper[a], hyper[b]
            loss = loss + self.cl_weight * (
                hyper_contrastive_loss(ua[users], ub[users], ub, self.tau)
                + hyper_contrastive_loss(ia[pos_items], ib[pos_items], ib, self.tau))
        return loss + self.reg_weight * embedding_norm_loss(u, pos, neg)

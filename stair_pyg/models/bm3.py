r"""BM3: bootstrapped multimodal latent representations, trained without negative samples."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.data.hetero import num_users_items, train_edge_index
from stair_pyg.models._common import (append_feature_items, check_new_features,
                                     embedding_norm_loss, grow_rows, layer_mean,
                                     require_modalities)
from stair_pyg.models.base import Recommender
from stair_pyg.nn.sparse import SparseAdj, SparseAdjBuffer, user_item_adjacency


def bootstrap_loss(online: Tensor, target: Tensor) -> Tensor:
    r""":math:`1 - \frac{1}{B}\sum_b \cos(\mathbf{o}_b, \mathbf{t}_b)` with no gradient through
    the target."""
    return 1.0 - F.cosine_similarity(online, target.detach(), dim=-1).mean()


class BM3(Recommender):
    r"""BM3 from the `"Bootstrap Latent Representations for Multi-modal Recommendation"
    <https://arxiv.org/abs/2207.05969>`_ paper (Zhou et al., WWW 2023), following MMRec.

    A LightGCN encoder gives :math:`\mathbf{e}_u` and :math:`\mathbf{e}_i` (the item's layer mean
    plus its ID embedding again), and every modality a projection
    :math:`\mathbf{e}^m_i = \mathbf{W}_m \mathbf{f}^m_i + \mathbf{b}_m` of its (trainable) raw
    features. A shared predictor :math:`g(\mathbf{x}) = \mathbf{P}\mathbf{x} + \mathbf{c}` gives
    the online views; the target views are dropout-perturbed, gradient-stopped copies
    :math:`\tilde{\mathbf{x}} = \mathrm{sg}(\mathrm{dropout}_p(\mathbf{x}))`. For a batch of
    observed pairs :math:`(u, i)` (no negatives), with
    :math:`\mathcal{C}(\mathbf{a}, \mathbf{b}) = 1 - \overline{\cos}(\mathbf{a}, \mathbf{b})`:

    .. math::
        \mathcal{L} = \mathcal{C}(g(\mathbf{e}_u), \tilde{\mathbf{e}}_i)
        + \mathcal{C}(g(\mathbf{e}_i), \tilde{\mathbf{e}}_u)
        + \lambda_{cl} \sum_m \big[\mathcal{C}(g(\mathbf{e}^m_i), \tilde{\mathbf{e}}_i)
        + \mathcal{C}(g(\mathbf{e}^m_i), \tilde{\mathbf{e}}^m_i)\big]
        + \lambda \frac{\|\mathbf{E}_U\|_F + \|\mathbf{E}_I\|_F}{I}

    (the last term is MMRec's ``EmbLoss`` over the whole encoder output). Scores are
    :math:`g(\mathbf{e}_u)^\top g(\mathbf{e}_i)`. The negatives the trainer samples are ignored.

    As in MMRec, a target's dropout mask is drawn once per batch for each distinct user or item
    (MMRec drops out the whole table and then gathers the batch's rows), so the repeats of a
    popular item within a batch share one mask (a mask per batch row would average the target
    noise over the repeats). ``benchmarks/parity_mmrec.py`` compares the curves with MMRec's.

    Defaults: :math:`d = 64`, :obj:`cl_weight=2.0` (MMRec); from the grids MMRec tunes
    (``n_layers`` [1, 2], ``dropout`` [0.3, 0.5], ``reg_weight`` [0.1, 0.01]) the authors' best
    for Baby (BM3 README): 1 layer, dropout 0.5, reg_weight 0.1. Initialisation as MMRec:
    Xavier-uniform tables, Xavier-normal projection and predictor weights.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        edge_index (torch.Tensor): Training interactions ``[2, E]`` (user ids, item ids).
        features (dict): Modality name to item features ``[I, f_m]`` (at least one).
        embedding_dim (int, optional): :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): LightGCN layers. (default: :obj:`1`)
        dropout (float, optional): Target-view dropout :math:`p`. (default: :obj:`0.5`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`0.1`)
        cl_weight (float, optional): :math:`\lambda_{cl}`. (default: :obj:`2.0`)
        train_features (bool, optional): Fine-tune the raw features, as MMRec.
            (default: :obj:`True`)
        modalities (list of str, optional): Which modalities :meth:`from_data` takes
            (default: all).

    Shapes:
        - **get_embedding():** ``([U, d], [I, d])``
    """

    uses_item_features = True

    def __init__(self, num_users: int, num_items: int, edge_index: Tensor,
                 features: Dict[str, Tensor], embedding_dim: int = 64, num_layers: int = 1,
                 dropout: float = 0.5, reg_weight: float = 0.1, cl_weight: float = 2.0,
                 train_features: bool = True, modalities: Optional[List[str]] = None):
        super().__init__()
        if not features:
            raise ValueError("BM3 needs at least one modality of item features")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.num_layers, self.dropout = int(num_layers), float(dropout)
        self.reg_weight, self.cl_weight = float(reg_weight), float(cl_weight)
        self.user_embedding = torch.nn.Parameter(torch.empty(num_users, embedding_dim))
        self.item_id_embedding = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        self.predictor = torch.nn.Linear(embedding_dim, embedding_dim)
        self.modalities = list(features)
        self.features = torch.nn.ParameterDict({
            m: torch.nn.Parameter(x.float().clone(), requires_grad=bool(train_features))
            for m, x in features.items()})
        self.projections = torch.nn.ModuleDict()
        for m, x in features.items():
            self.projections[m] = torch.nn.Linear(x.size(1), embedding_dim)
        self.register_buffer("edge_index", edge_index.long(), persistent=False)
        self.norm_adj = SparseAdjBuffer(user_item_adjacency(edge_index, num_users, num_items))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""MMRec's initialisation: Xavier-uniform ID tables, Xavier-normal predictor and
        projections; the feature tables keep their values (they start as the data)."""
        torch.nn.init.xavier_uniform_(self.user_embedding)
        torch.nn.init.xavier_uniform_(self.item_id_embedding)
        for layer in [self.predictor, *self.projections.values()]:
            layer.reset_parameters()
            torch.nn.init.xavier_normal_(layer.weight)

    @classmethod
    def from_data(cls, data: HeteroData, **hparams: Any) -> "BM3":
        num_users, num_items = num_users_items(data)
        features = require_modalities(data, cls.__name__, hparams.get("modalities"))
        return cls(num_users, num_items, train_edge_index(data), features, **hparams)

    @property
    def item_feature_dims(self) -> Dict[str, int]:
        return {m: int(self.features[m].size(1)) for m in self.modalities}

    @torch.no_grad()
    def add_items(self, features: Dict[str, Tensor]) -> Tensor:
        r"""Adds items with features but no interactions (ids :math:`I..I+n-1`, in row order),
        through BM3's modality views, which training aligns with the item encodings
        (:math:`g(\mathbf{e}^m_i) \approx \tilde{\mathbf{e}}_i` in cosine): the new item's
        encoding is the mean of its projected modality features,
        :math:`\mathbf{e}_n = \frac{1}{M}\sum_m (\mathbf{W}_m \mathbf{f}^m_n + \mathbf{b}_m)`,
        scored as :math:`g(\mathbf{e}_u)^\top g(\mathbf{e}_n)` like any item. An isolated item's
        encoding is :math:`(1 + \frac{1}{L+1}) \mathbf{E}^{id}_n` (its layer mean plus its ID
        embedding), so its ID row is set to :math:`\mathbf{e}_n / (1 + \frac{1}{L+1})`. The
        alignment is in direction only, so new items' score scale may differ from trained
        ones'. Existing items and scores are unchanged."""
        feats = check_new_features(features, self.item_feature_dims, type(self).__name__)
        table = self.item_id_embedding
        enc = sum(self.projections[m](x.to(table)) for m, x in feats.items()) / len(feats)
        self.item_id_embedding = grow_rows(table, enc / (1.0 + 1.0 / (self.num_layers + 1)))
        return append_feature_items(self, feats)

    def encode(self, adj: Optional[SparseAdj] = None) -> Tuple[Tensor, Tensor]:
        r"""Encoder outputs :math:`(\mathbf{E}_U, \mathbf{E}_I)` before the predictor."""
        adj = self.norm_adj.get() if adj is None else adj
        x = torch.cat([self.user_embedding, self.item_id_embedding], dim=0)
        out = layer_mean(adj, x, self.num_layers)
        return out[:self.num_users], out[self.num_users:] + self.item_id_embedding

    def get_embedding(self) -> Tuple[Tensor, Tensor]:
        user, item = self.encode()
        return self.predictor(user), self.predictor(item)

    def recommendation_loss(self, users: Tensor, pos_items: Tensor,
                            neg_items: Tensor) -> Tensor:
        user_all, item_all = self.encode()
        # MMRec draws each target view's dropout mask once per batch over the whole table and
        # then gathers the batch's rows, so the repeats of a user or an item within a batch
        # share one mask. Drawing over the batch's distinct ids and gathering does the same.
        uniq_u, inv_u = torch.unique(users, return_inverse=True)
        uniq_i, inv_i = torch.unique(pos_items, return_inverse=True)
        u, i = user_all[users], item_all[pos_items]
        with torch.no_grad():
            u_target = F.dropout(user_all[uniq_u], self.dropout, training=True)[inv_u]
            i_target = F.dropout(item_all[uniq_i], self.dropout, training=True)[inv_i]
        loss = (bootstrap_loss(self.predictor(u), i_target)
                + bootstrap_loss(self.predictor(i), u_target))
        cl = u.new_zeros(())
        for m in self.modalities:
            feat = self.projections[m](self.features[m][uniq_i])
            with torch.no_grad():
                feat_target = F.dropout(feat, self.dropout, training=True)[inv_i]
            feat_online = self.predictor(feat)[inv_i]
            cl = cl + bootstrap_loss(feat_online, i_target) + bootstrap_loss(feat_online,
                                                                            feat_target)
        reg = embedding_norm_loss(user_all, item_all)
        return loss + self.cl_weight * cl + self.reg_weight * reg

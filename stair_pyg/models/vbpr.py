r"""VBPR: matrix factorisation with item factors extended by projected modality features."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.data.hetero import num_users_items
from stair_pyg.models._common import (check_new_features, embedding_norm_loss, grow_rows,
                                     require_modalities)
from stair_pyg.models.base import Recommender, bpr_loss


class VBPR(Recommender):
    r"""VBPR from the `"VBPR: Visual Bayesian Personalized Ranking from Implicit Feedback"
    <https://arxiv.org/abs/1510.01784>`_ paper (He and McAuley, AAAI 2016), in the multimodal
    form of the MMRec toolbox: the features :math:`\mathbf{f}_i` of all modalities are
    concatenated (in the order of the data's modalities) and projected by one linear map
    :math:`\mathbf{E}`:

    .. math::
        \hat{y}_{ui} = \boldsymbol{\gamma}_u^\top \boldsymbol{\gamma}_i
        + \boldsymbol{\theta}_u^\top (\mathbf{E} \mathbf{f}_i + \mathbf{b})
        \;\big[\, + \beta_i + \boldsymbol{\beta}'^\top \mathbf{f}_i \,\big]

    i.e. the inner product of the user vector :math:`[\boldsymbol{\gamma}_u; \boldsymbol{\theta}_u]`
    and the item vector :math:`[\boldsymbol{\gamma}_i; \mathbf{E}\mathbf{f}_i + \mathbf{b}]`. The
    bracketed bias terms of the paper (item bias and feature bias; the global and user biases
    cancel in BPR) are dropped by MMRec's "recommended version" and enabled here with
    :obj:`use_bias=True` (then both vectors get one more coordinate: :math:`1` for the user, the
    bias for the item). The loss is BPR plus MMRec's regulariser on the batch's user and item
    vectors, :math:`\lambda (\|\cdot\|_F + \|\cdot\|_F + \|\cdot\|_F) / B`.

    With :obj:`id_embedding_dim=0` there are no item ID factors :math:`\boldsymbol{\gamma}`: items
    are seen through their features only (:class:`~stair_pyg.models.content.ContentBPR`).

    Defaults: :math:`d = 64` for both parts, as MMRec. MMRec tunes ``reg_weight`` over
    ``[2.0, 1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5]``; :obj:`1e-3` (the middle of that grid) is used,
    untuned here. Initialisation as MMRec: Xavier-uniform for the factor tables,
    Xavier-normal for :math:`\mathbf{E}` with zero bias; biases start at zero.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        features (dict): Modality name to item features ``[I, f_m]`` (at least one).
        embedding_dim (int, optional): Size :math:`d` of the projected features
            :math:`\mathbf{E}\mathbf{f}_i`. (default: :obj:`64`)
        id_embedding_dim (int, optional): Size of the ID factors :math:`\boldsymbol{\gamma}`
            (:obj:`None`: :obj:`embedding_dim`; :obj:`0`: none). (default: :obj:`None`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-3`)
        use_bias (bool, optional): Add the paper's item and feature biases.
            (default: :obj:`False`)
        modalities (list of str, optional): Which modalities :meth:`from_data` takes
            (default: all), recorded for checkpoints.

    Shapes:
        - **get_embedding():** ``([U, d_id + d (+1)], [I, d_id + d (+1)])``
    """

    uses_item_features = True

    def __init__(self, num_users: int, num_items: int, features: Dict[str, Tensor],
                 embedding_dim: int = 64, id_embedding_dim: Optional[int] = None,
                 reg_weight: float = 1e-3, use_bias: bool = False,
                 modalities: Optional[List[str]] = None):
        super().__init__()
        if not features:
            raise ValueError("VBPR needs at least one modality of item features")
        for name, x in features.items():
            if x.dim() != 2 or x.size(0) != num_items:
                raise ValueError(f"'{name}' features must have shape [num_items={num_items}, f], "
                                 f"got {tuple(x.shape)}")
        id_dim = embedding_dim if id_embedding_dim is None else int(id_embedding_dim)
        if id_dim < 0:
            raise ValueError(f"id_embedding_dim must be >= 0, got {id_dim}")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.id_dim, self.feat_dim = id_dim, int(embedding_dim)
        self.reg_weight = float(reg_weight)
        self.use_bias = bool(use_bias)
        feats = torch.cat([x.float() for x in features.values()], dim=-1)
        self.register_buffer("features", feats, persistent=False)
        self._feature_dims = {name: int(x.size(1)) for name, x in features.items()}

        self.user_embedding = torch.nn.Parameter(torch.empty(num_users, id_dim + self.feat_dim))
        self.item_id_embedding = torch.nn.Parameter(torch.empty(num_items, id_dim)) \
            if id_dim > 0 else None
        self.item_linear = torch.nn.Linear(feats.size(1), self.feat_dim)
        if self.use_bias:
            self.item_bias = torch.nn.Parameter(torch.zeros(num_items))
            self.feature_bias = torch.nn.Linear(feats.size(1), 1, bias=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""MMRec's initialisation: Xavier-uniform tables, a Xavier-normal projection, zero
        biases."""
        torch.nn.init.xavier_uniform_(self.user_embedding)
        if self.item_id_embedding is not None:
            torch.nn.init.xavier_uniform_(self.item_id_embedding)
        torch.nn.init.xavier_normal_(self.item_linear.weight)
        torch.nn.init.zeros_(self.item_linear.bias)
        if self.use_bias:
            torch.nn.init.zeros_(self.item_bias)
            torch.nn.init.zeros_(self.feature_bias.weight)

    @classmethod
    def from_data(cls, data: HeteroData, **hparams: Any) -> "VBPR":
        num_users, num_items = num_users_items(data)
        features = require_modalities(data, cls.__name__, hparams.get("modalities"))
        return cls(num_users, num_items, features, **hparams)

    @property
    def item_feature_dims(self) -> Dict[str, int]:
        return dict(self._feature_dims)

    @torch.no_grad()
    def add_items(self, features: Dict[str, Tensor]) -> Tensor:
        r"""Adds items with features but no interactions (ids :math:`I..I+n-1`, in row order):
        their content part is the trained projection of their features,
        :math:`\mathbf{E}\mathbf{f}_n + \mathbf{b}`, exactly as for a trained item; what the
        features cannot give is set to zero: the ID factors :math:`\boldsymbol{\gamma}_n`
        (VBPR; the content-only model has none, so a new item is represented exactly as a
        trained one with the same features) and the item bias :math:`\beta_n` (with
        :obj:`use_bias`; the feature bias :math:`\boldsymbol{\beta}'^\top\mathbf{f}_n`
        applies). Existing items and scores are unchanged."""
        feats = check_new_features(features, self.item_feature_dims, type(self).__name__)
        x = torch.cat(list(feats.values()), dim=-1).to(self.features)
        n = x.size(0)
        self.features = torch.cat([self.features, x])
        if self.item_id_embedding is not None:
            self.item_id_embedding = grow_rows(self.item_id_embedding,
                                               x.new_zeros(n, self.id_dim))
        if self.use_bias:
            self.item_bias = grow_rows(self.item_bias, x.new_zeros(n))
        first = self.num_items
        self.num_items += n
        return torch.arange(first, self.num_items, device=x.device)

    def item_factors(self, items: Optional[Tensor] = None) -> Tensor:
        r"""Item vectors :math:`[\boldsymbol{\gamma}_i; \mathbf{E}\mathbf{f}_i + \mathbf{b}]`
        without the bias coordinate, for :obj:`items` (default: all)."""
        feats = self.features if items is None else self.features[items]
        parts = [self.item_linear(feats)]
        if self.item_id_embedding is not None:
            ids = self.item_id_embedding if items is None else self.item_id_embedding[items]
            parts.insert(0, ids)
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def item_biases(self, items: Optional[Tensor] = None) -> Tensor:
        r""":math:`\beta_i + \boldsymbol{\beta}'^\top \mathbf{f}_i` (requires :obj:`use_bias`)."""
        feats = self.features if items is None else self.features[items]
        bias = self.item_bias if items is None else self.item_bias[items]
        return bias + self.feature_bias(feats).squeeze(-1)

    def get_embedding(self) -> Tuple[Tensor, Tensor]:
        user, item = self.user_embedding, self.item_factors()
        if self.use_bias:
            user = torch.cat([user, user.new_ones(user.size(0), 1)], dim=-1)
            item = torch.cat([item, self.item_biases().unsqueeze(-1)], dim=-1)
        return user, item

    def recommendation_loss(self, users: Tensor, pos_items: Tensor,
                            neg_items: Tensor) -> Tensor:
        u = self.user_embedding[users]
        pos, neg = self.item_factors(pos_items), self.item_factors(neg_items)
        pos_score, neg_score = (u * pos).sum(-1), (u * neg).sum(-1)
        if self.use_bias:
            pos_score = pos_score + self.item_biases(pos_items)
            neg_score = neg_score + self.item_biases(neg_items)
        return bpr_loss(pos_score, neg_score) + self.reg_weight * embedding_norm_loss(u, pos, neg)

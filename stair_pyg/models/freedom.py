r"""FREEDOM: a frozen modality item-item graph and a degree-pruned user-item graph."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Tuple

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.data.hetero import num_users_items, train_edge_index
from stair_pyg.models._common import (append_feature_items, append_rows, check_new_features,
                                     grow_rows, layer_mean, require_modalities)
from stair_pyg.models.base import Recommender, bpr_loss
from stair_pyg.nn.knn import METHODS as KNN_METHODS
from stair_pyg.nn.knn import knn_cosine, knn_cosine_to
from stair_pyg.nn.sparse import (SparseAdj, SparseAdjBuffer, csr_from_edge_index, gcn_normalize,
                                 user_item_adjacency)


def modality_weights(modalities: List[str], mm_image_weight: float) -> Dict[str, float]:
    r"""Weights of the per-modality kNN graphs in FREEDOM's item-item graph.

    MMRec mixes image and text as :math:`w\,S_v + (1-w)\,S_t` with :math:`w` =
    :obj:`mm_image_weight`. For any set of modalities: an ``"image"`` modality gets :math:`w` and
    the others share :math:`1 - w` equally; without ``"image"`` (or with it alone) all weigh the
    same. The weights sum to one."""
    if not modalities:
        raise ValueError("at least one modality is needed")
    if "image" in modalities and len(modalities) > 1:
        rest = (1.0 - mm_image_weight) / (len(modalities) - 1)
        return {m: (mm_image_weight if m == "image" else rest) for m in modalities}
    return {m: 1.0 / len(modalities) for m in modalities}


def knn_item_graph(features: Dict[str, Tensor], k: int, weights: Dict[str, float],
                   method: str = "exact") -> SparseAdj:
    r"""FREEDOM's frozen item-item graph :math:`S = \sum_m w_m S_m`.

    :math:`S_m` keeps, for every item, its :obj:`k` most cosine-similar items under modality
    :math:`m` (the item itself included, as in MMRec's plain top-:math:`k`), normalised as
    :math:`D^{-1/2} A D^{-1/2}` with :math:`D` the row sums: every kept entry is :math:`1/k`.
    The search is chunked (:func:`~stair_pyg.nn.knn.knn_cosine`): no :math:`I \times I` matrix;
    :obj:`method` is its :obj:`"exact"` or approximate :obj:`"ivf"` search.
    """
    num_items = next(iter(features.values())).size(0)
    total = None
    for name, x in features.items():
        edge_index = knn_cosine(x, min(k, num_items), exclude_self=False, method=method)
        adj = gcn_normalize(csr_from_edge_index(edge_index, None, (num_items, num_items)))
        adj = adj * weights[name]
        total = adj if total is None else total + adj
    return SparseAdj(total, symmetric=False)


def degree_sensitive_prune(edge_index: Tensor, num_users: int, num_items: int,
                           dropout: float, generator: Optional[torch.Generator] = None) -> Tensor:
    r"""FREEDOM's degree-sensitive edge pruning: keeps
    :math:`\lfloor |\mathcal{E}| (1 - p) \rfloor` interactions sampled without replacement with
    probability proportional to :math:`1 / \sqrt{d_u d_i}` (edges between high-degree nodes are
    pruned more often).

    Args:
        edge_index (torch.Tensor): Interactions ``[2, E]`` (user ids, item ids).
        num_users (int): Number of users.
        num_items (int): Number of items.
        dropout (float): Pruning ratio :math:`p \in [0, 1)`.
        generator (torch.Generator, optional): Random source (default: torch's global one).

    Returns:
        The kept interactions ``[2, E_keep]``, in sampling order.
    """
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    user_deg = torch.bincount(edge_index[0], minlength=num_users).float()
    item_deg = torch.bincount(edge_index[1], minlength=num_items).float()
    weight = (user_deg[edge_index[0]] * item_deg[edge_index[1]]).rsqrt()
    num_keep = int(edge_index.size(1) * (1.0 - dropout))
    keep = torch.multinomial(weight, num_keep, replacement=False, generator=generator)
    return edge_index[:, keep]


class FREEDOM(Recommender):
    r"""FREEDOM from the `"A Tale of Two Graphs: Freezing and Denoising Graph Structures for
    Multimodal Recommendation" <https://arxiv.org/abs/2211.06924>`_ paper (Zhou and Shen, ACM MM
    2023), following the MMRec implementation.

    * **Frozen item-item graph** :math:`S` (:func:`knn_item_graph`), built once from the raw
      features: a weighted sum of per-modality kNN graphs (weights from
      :func:`modality_weights`, :obj:`mm_image_weight` for images as in MMRec).
    * **Denoised user-item graph**: every epoch (:meth:`pre_epoch`) a fraction :obj:`dropout` of
      the interactions is pruned by :func:`degree_sensitive_prune` and the rest re-normalised to
      :math:`\tilde{A}`; evaluation uses the full :math:`\hat{A}`.

    .. math::
        \mathbf{h}_i = (S^{L_m} \mathbf{E}^{id})_i, \qquad
        [\mathbf{E}_U; \mathbf{E}_I] = \frac{1}{L+1} \sum_{l=0}^{L} \tilde{A}^l
        [\mathbf{E}^{u}; \mathbf{E}^{id}], \qquad
        \mathbf{e}_u = (\mathbf{E}_U)_u,\; \mathbf{e}_i = (\mathbf{E}_I)_i + \mathbf{h}_i

    The loss is BPR on :math:`\mathbf{e}` plus, per modality, BPR between the user and the
    projected raw features :math:`\mathbf{W}_m \mathbf{f}^m_i + \mathbf{b}_m` (the modality
    alignment term):

    .. math::
        \mathcal{L} = \mathcal{L}_{\mathrm{BPR}}(\mathbf{e}_u, \mathbf{e}_{i^+}, \mathbf{e}_{i^-})
        + \lambda \sum_m \mathcal{L}_{\mathrm{BPR}}(\mathbf{e}_u, \mathbf{W}_m\mathbf{f}^m_{i^+},
        \mathbf{W}_m\mathbf{f}^m_{i^-})

    As in MMRec the raw features are trainable (:obj:`train_features`); they only enter the
    alignment term (the item-item graph stays frozen).

    Defaults are MMRec's FREEDOM config: :math:`d = 64`, :obj:`knn_k=10`,
    :obj:`mm_image_weight=0.1`, :math:`L_m = 1`, :math:`L = 2`. MMRec tunes :obj:`dropout` over
    ``[0.8, 0.9]`` and :obj:`reg_weight` over ``[0, 1e-5, 1e-4, 1e-3]``: :obj:`0.9` (the best
    value for sports and clothing in public MMRec grid-search logs) and :obj:`1e-4` (keeps the
    alignment term on; those logs report :obj:`0` best on sports/clothing, :obj:`1e-4` on
    beauty) are used; neither was tuned here.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        edge_index (torch.Tensor): Training interactions ``[2, E]`` (user ids, item ids).
        features (dict): Modality name to item features ``[I, f_m]`` (at least one).
        embedding_dim (int, optional): :math:`d` (also the projection size). (default: :obj:`64`)
        knn_k (int, optional): Neighbours per item in every modality graph. (default: :obj:`10`)
        knn_method (str, optional): :obj:`"exact"` or :obj:`"ivf"` (approximate) neighbour
            search of the item-item graph (:func:`~stair_pyg.nn.knn.knn_cosine`).
            (default: :obj:`"exact"`)
        mm_image_weight (float, optional): Weight of the image graph. (default: :obj:`0.1`)
        n_mm_layers (int, optional): :math:`L_m`. (default: :obj:`1`)
        n_ui_layers (int, optional): :math:`L`. (default: :obj:`2`)
        dropout (float, optional): Pruned fraction of interactions per epoch.
            (default: :obj:`0.9`)
        reg_weight (float, optional): :math:`\lambda`. (default: :obj:`1e-4`)
        train_features (bool, optional): Fine-tune the raw features. (default: :obj:`True`)
        modalities (list of str, optional): Which modalities :meth:`from_data` takes
            (default: all).

    Shapes:
        - **get_embedding():** ``([U, d], [I, d])``
    """

    uses_item_features = True

    def __init__(self, num_users: int, num_items: int, edge_index: Tensor,
                 features: Dict[str, Tensor], embedding_dim: int = 64, knn_k: int = 10,
                 knn_method: str = "exact", mm_image_weight: float = 0.1, n_mm_layers: int = 1,
                 n_ui_layers: int = 2, dropout: float = 0.9, reg_weight: float = 1e-4, train_features: bool = True,
                 modalities: Optional[List[str]] = None):
        super().__init__()
        if not features:
            raise ValueError("FREEDOM needs at least one modality of item features")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if knn_k < 1:
            raise ValueError(f"knn_k must be >= 1, got {knn_k}")
        self.num_users, self.num_items = int(num_users), int(num_items)
        self.n_mm_layers, self.n_ui_layers = int(n_mm_layers), int(n_ui_layers)
        self.dropout, self.reg_weight = float(dropout), float(reg_weight)
        if knn_method not in KNN_METHODS:
            raise ValueError(f"unknown knn_method '{knn_method}'; choose one of "
                             f"{list(KNN_METHODS)}")
        self.user_embedding = torch.nn.Parameter(torch.empty(num_users, embedding_dim))
        self.item_id_embedding = torch.nn.Parameter(torch.empty(num_items, embedding_dim))
        self.modalities = list(features)
        self.features = torch.nn.ParameterDict({
            m: torch.nn.Parameter(x.float().clone(), requires_grad=bool(train_features))
            for m, x in features.items()})
        self.projections = torch.nn.ModuleDict({
            m: torch.nn.Linear(x.size(1), embedding_dim) for m, x in features.items()})

        self.register_buffer("edge_index", edge_index.long(), persistent=False)
        self.norm_adj = SparseAdjBuffer(user_item_adjacency(edge_index, num_users, num_items))
        self.masked_adj: Optional[SparseAdjBuffer] = None
        weights = modality_weights(self.modalities, mm_image_weight)
        self._graph_weights = weights
        self._knn_k = int(knn_k)
        # The features the frozen item graph was built from (the trainable copies drift).
        self._graph_features = {m: x.detach() for m, x in features.items()}
        self.num_trained_items = self.num_items
        self.item_adj = SparseAdjBuffer(knn_item_graph(self._graph_features, knn_k, weights,
                                                       knn_method))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        r"""Xavier-uniform ID tables and PyTorch's default projections, as MMRec; the feature
        tables keep their values (they start as the data)."""
        torch.nn.init.xavier_uniform_(self.user_embedding)
        torch.nn.init.xavier_uniform_(self.item_id_embedding)
        for projection in self.projections.values():
            projection.reset_parameters()

    @classmethod
    def from_data(cls, data: HeteroData, **hparams: Any) -> "FREEDOM":
        num_users, num_items = num_users_items(data)
        features = require_modalities(data, cls.__name__, hparams.get("modalities"))
        return cls(num_users, num_items, train_edge_index(data), features, **hparams)

    @property
    def item_feature_dims(self) -> Dict[str, int]:
        return {m: int(x.size(1)) for m, x in self._graph_features.items()}

    @torch.no_grad()
    def add_items(self, features: Dict[str, Tensor]) -> Tensor:
        r"""Adds items with features but no interactions (ids :math:`I..I+n-1`, in row order),
        through FREEDOM's own item-item graph: the new item :math:`n`'s row of :math:`S` holds
        its :obj:`knn_k` most cosine-similar *trained* items per modality, each with weight
        :math:`w_m / k` (the normalised value of a kept entry), so that

        .. math::
            \mathbf{e}_n = \big(S^{L_m} \mathbf{E}^{id}\big)_n
            = \sum_m \frac{w_m}{k} \sum_{j \in \mathrm{top}\text{-}k_m(n)}
            \big(S^{L_m - 1}\mathbf{E}^{id}\big)_j,

        its ID embedding being zero and it having no interactions (the user-item part of its
        representation vanishes). No existing row of :math:`S` gains an entry, so existing
        items and scores are unchanged. The new items' raw features join the (trainable)
        feature tables of the alignment term."""
        feats = check_new_features(features, self.item_feature_dims, type(self).__name__)
        device = self.item_id_embedding.device
        n = next(iter(feats.values())).size(0)
        base = self.num_trained_items
        rows, cols, vals = [], [], []
        k = min(self._knn_k, base)
        for m, x in feats.items():
            nbr = knn_cosine_to(x.to(device), self._graph_features[m][:base].to(device), k)
            rows.append(torch.arange(n, device=device).repeat_interleave(k))
            cols.append(nbr.reshape(-1))
            vals.append(torch.full((n * k,), self._graph_weights[m] / k, device=device))
        self.item_adj.set(append_rows(self.item_adj.get(), torch.stack(
            [torch.cat(rows), torch.cat(cols)]), torch.cat(vals), n))
        table = self.item_id_embedding
        self.item_id_embedding = grow_rows(table, table.new_zeros(n, table.size(1)))
        self.masked_adj = None
        return append_feature_items(self, feats)

    def pre_epoch(self, epoch: int) -> None:
        r"""Samples this epoch's pruned user-item graph :math:`\tilde{A}`."""
        if self.dropout <= 0.0:
            self.masked_adj = None
            return
        kept = degree_sensitive_prune(self.edge_index, self.num_users, self.num_items,
                                      self.dropout)
        adj = user_item_adjacency(kept, self.num_users, self.num_items)
        adj = adj.to(self.norm_adj.val.dtype)
        if self.masked_adj is None:
            self.masked_adj = SparseAdjBuffer(adj)
        else:
            self.masked_adj.set(adj)

    def encode(self, adj: SparseAdj) -> Tuple[Tensor, Tensor]:
        r"""User and item representations ``([U, d], [I, d])`` over the user-item graph
        :obj:`adj`."""
        h = self.item_id_embedding
        item_adj = self.item_adj.get()
        for _ in range(self.n_mm_layers):
            h = item_adj @ h
        x = torch.cat([self.user_embedding, self.item_id_embedding], dim=0)
        out = layer_mean(adj, x, self.n_ui_layers)
        return out[:self.num_users], out[self.num_users:] + h

    def get_embedding(self) -> Tuple[Tensor, Tensor]:
        return self.encode(self.norm_adj.get())

    def recommendation_loss(self, users: Tensor, pos_items: Tensor,
                            neg_items: Tensor) -> Tensor:
        if self.dropout > 0.0 and self.masked_adj is None:
            self.pre_epoch(0)
        adj = self.norm_adj.get() if self.masked_adj is None else self.masked_adj.get()
        user_emb, item_emb = self.encode(adj)
        u = user_emb[users]
        loss = bpr_loss((u * item_emb[pos_items]).sum(-1), (u * item_emb[neg_items]).sum(-1))
        for m in self.modalities:
            proj, feats = self.projections[m], self.features[m]
            pos, neg = proj(feats[pos_items]), proj(feats[neg_items])
            loss = loss + self.reg_weight * bpr_loss((u * pos).sum(-1), (u * neg).sum(-1))
        return loss

r"""STAIR: stepwise graph convolutions forward (FSC) and backward (BSC) with modality
initialisation (MI)."""
from __future__ import annotations

import warnings
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor
from torch.nn import Embedding
from torch_geometric.data import HeteroData
from torch_geometric.typing import Adj, OptTensor

from stair_pyg.data.hetero import modality_features, num_users_items, train_edge_index
from stair_pyg.models._common import check_new_features
from stair_pyg.models.base import Recommender, bpr_loss, share_storage, stacked_rows
from stair_pyg.nn.knn import METHODS as KNN_METHODS
from stair_pyg.nn.knn import knn_cosine_to
from stair_pyg.nn.modality_graph import modality_graph
from stair_pyg.nn.sparse import SparseAdj, SparseAdjBuffer, to_sparse_adj, user_item_adjacency
from stair_pyg.nn.stepwise import StepwiseConv, propagate_series
from stair_pyg.nn.whiten import Whitening, fit_whiten
from stair_pyg.optim.stepwise_adamw import StepwiseAdamW

#: Neighbours per item in the modality graph (and weight in MI), as in the paper.
DEFAULT_KNN_K: Dict[str, int] = {"text": 5, "image": 1}
#: ``k`` of any other modality (``genre``, ``audio``, ...) unless given in ``knn_k``.
DEFAULT_OTHER_K: int = 1


class STAIR(Recommender):
    r"""The STAIR model from the `"STAIR: Manipulating Collaborative and Multimodal Information
    for E-Commerce Recommendation" <https://arxiv.org/abs/2412.11729>`_ paper (AAAI 2025).

    Users and items have free embeddings :math:`\mathbf{E}^{(0)}`; their representations are the
    forward stepwise convolution (:class:`~stair_pyg.nn.StepwiseConv`) over the normalised
    user-item graph :math:`\hat{\mathbf{A}}` (users :math:`0..U-1`, items :math:`U..U+I-1`),

    .. math::
        \mathbf{E} = \frac{1 - \beta}{1 - \beta^{L+1}} \odot \sum_{l=0}^{L}
        (\beta \odot \hat{\mathbf{A}})^l \mathbf{E}^{(0)},
        \qquad \beta_j = 1 - \left(0.1 + 0.9 (j/d)^{\gamma}\right),

    scored by inner products and trained with the BPR loss (no L2 term: the weight decay is the
    decoupled one of the optimizer). The multimodal information enters twice:

    * **MI** (:meth:`initialize_from_modalities`): item embeddings start as the :math:`k`-weighted
      average of the whitened modality features (:func:`~stair_pyg.nn.whiten`), users as the
      mean of their training items' initial embeddings;
    * **BSC** (:meth:`configure_optimizer`): :class:`~stair_pyg.optim.StepwiseAdamW` smooths the
      item updates over the modality kNN graph (:func:`~stair_pyg.nn.modality_graph`) with the
      complementary weights :math:`1 - \beta`; users get plain AdamW.

    Without modality features (or with every :math:`k = 0`) both embedding tables keep the
    authors' random initialisation :math:`\mathcal{N}(0, 10^{-8})` (std :math:`10^{-4}`) and
    items get plain AdamW: the model is FSC alone.

    Both graphs are :class:`~stair_pyg.nn.sparse.SparseAdjBuffer` sub-modules, so checkpoints
    hold the embeddings only and :meth:`to` moves everything. MI's fitted whitening transforms
    (mean and projection per modality) are persistent buffers ``mi_mean_<m>`` and
    ``mi_projection_<m>``: :meth:`add_items` places new items with them.

    Args:
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        embedding_dim (int, optional): Embedding size :math:`d`. (default: :obj:`64`)
        num_layers (int, optional): Hops :math:`L` of both stepwise convolutions.
            (default: :obj:`3`)
        gamma (float, optional): The exponent :math:`\gamma` of the channel weights.
            (default: :obj:`0.1`)
        knn_k (Mapping[str, int], optional): Neighbours per item of each modality, also its
            weight in MI; modalities not listed use :data:`DEFAULT_KNN_K` (:obj:`text`: 5,
            :obj:`image`: 1) or else :data:`DEFAULT_OTHER_K` (1). (default: :obj:`None`)
        knn_method (str, optional): How the modality graph's neighbours are found:
            :obj:`"exact"`, or :obj:`"ivf"`, an approximate search for catalogues of
            :math:`10^5` items and more, where the exact one's :math:`O(I^2 f)` time dominates
            the build (:func:`~stair_pyg.nn.knn.knn_cosine`). (default: :obj:`"exact"`)
    """

    uses_item_features = True

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64,
                 num_layers: int = 3, gamma: float = 0.1,
                 knn_k: Optional[Mapping[str, int]] = None, knn_method: str = "exact"):
        super().__init__()
        if num_users <= 0 or num_items <= 0:
            raise ValueError(f"need at least one user and one item, got {num_users} users and "
                             f"{num_items} items")
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.embedding_dim = int(embedding_dim)
        self.num_layers = int(num_layers)
        self.gamma = float(gamma)
        self.knn_k = dict(knn_k or {})
        if knn_method not in KNN_METHODS:
            raise ValueError(f"unknown knn_method '{knn_method}'; choose one of "
                             f"{list(KNN_METHODS)}")
        self.knn_method = knn_method

        self.user_embedding = Embedding(self.num_users, self.embedding_dim)
        self.item_embedding = Embedding(self.num_items, self.embedding_dim)
        share_storage(self.user_embedding.weight, self.item_embedding.weight)
        self.conv = StepwiseConv(self.embedding_dim, self.num_layers, self.gamma)

        # Graphs, none of them in the state_dict: the training interactions, the normalised
        # user-item adjacency and the normalised modality item-item graph (BSC's).
        self.register_buffer("train_edge_index", None, persistent=False)
        self.adj: Optional[SparseAdjBuffer] = None
        self.item_adj: Optional[SparseAdjBuffer] = None
        # MI's modalities (name, k) and the trained items' raw features (references to the
        # training graph's tensors, not state: from_data gives them back after a reload).
        self._mi_modalities: List[Tuple[str, int]] = []
        self._mi_features: Dict[str, Tensor] = {}
        #: Items that came from training (the rest were placed by add_items).
        self.num_trained_items = self.num_items
        self._added: List[Dict[str, Tensor]] = []  # features of the items add_items placed
        self.reset_parameters()

    def reset_parameters(self):
        r"""Resets both tables to the authors' initialisation :math:`\mathcal{N}(0, 10^{-8})`."""
        torch.nn.init.normal_(self.user_embedding.weight, std=1e-4)
        torch.nn.init.normal_(self.item_embedding.weight, std=1e-4)
        self.conv.reset_parameters()

    # Construction ##########################################################################

    @classmethod
    def from_data(cls, data: HeteroData, embedding_dim: int = 64, num_layers: int = 3,
                  gamma: float = 0.1, knn_k: Optional[Mapping[str, int]] = None,
                  knn_method: str = "exact", **unused: Any) -> "STAIR":
        r"""Builds STAIR from a training graph in the layout of :mod:`stair_pyg.data.hetero`:
        the user-item adjacency from its training edges, then, if the items carry modality
        features (``data["item"].<modality>_feat``), the modality graph and MI.

        Args:
            data (HeteroData): The training graph.
            embedding_dim, num_layers, gamma, knn_k, knn_method: As in :class:`STAIR`.
        """
        if unused:
            raise TypeError(f"unexpected hyper-parameters for STAIR: {sorted(unused)}")
        num_users, num_items = num_users_items(data)
        model = cls(num_users, num_items, embedding_dim, num_layers, gamma, knn_k, knn_method)
        model.set_interactions(train_edge_index(data))
        features = modality_features(data)
        if features:
            model.initialize_from_modalities(features)
        return model

    def modality_k(self, modality: str) -> int:
        r"""Neighbours (and MI weight) of :obj:`modality`."""
        if modality in self.knn_k:
            return int(self.knn_k[modality])
        return DEFAULT_KNN_K.get(modality, DEFAULT_OTHER_K)

    @torch.no_grad()
    def set_interactions(self, edge_index: Tensor) -> None:
        r"""Stores the training interactions ``[2, E]`` (user ids, item ids) and builds the
        normalised user-item adjacency from them."""
        edge_index = torch.as_tensor(edge_index, dtype=torch.long)
        if edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(f"interactions must have shape [2, E], got "
                             f"{tuple(edge_index.shape)}")
        if edge_index.numel() > 0 and (
                int(edge_index[0].max()) >= self.num_users or int(edge_index[1].max())
                >= self.num_items or int(edge_index.min()) < 0):
            raise ValueError("interaction ids out of range for "
                             f"{self.num_users} users and {self.num_items} items")
        weight = self.user_embedding.weight
        edge_index = edge_index.to(weight.device)
        self.train_edge_index = edge_index
        self.adj = SparseAdjBuffer(
            user_item_adjacency(edge_index, self.num_users, self.num_items).to(weight.dtype))

    @torch.no_grad()
    def initialize_from_modalities(
            self, features: Union[Mapping[str, Tensor], Sequence[Tensor]],
            k: Optional[Sequence[int]] = None) -> None:
        r"""Modality initialisation (MI) and the modality graph of BSC.

        Items: :math:`\mathbf{E}_I = \sum_m k_m \,\mathrm{whiten}(\mathbf{X}_m) / \sum_m k_m`;
        users: the mean of their training items' :math:`\mathbf{E}_I` rows (zero for users
        without training items). The modality graph is
        :func:`~stair_pyg.nn.modality_graph` of the same features and :math:`k`.

        Args:
            features (Mapping[str, Tensor] or Sequence[Tensor]): Item features ``[I, f_m]``
                per modality.
            k (Sequence[int], optional): :math:`k_m` per modality; by default from
                :meth:`modality_k` (requires named features).
        """
        if isinstance(features, Mapping):
            names = list(features)
            unknown = sorted(set(self.knn_k) - set(names))
            if unknown:  # a config written for image + text used on text alone, for example
                warnings.warn(f"'knn_k' names modalities {unknown} that the items do not have "
                              f"(they have {sorted(names)}); those entries are ignored")
            feats = [features[name] for name in names]
            ks = [self.modality_k(name) for name in names] if k is None else list(k)
            for name, km in zip(names, ks):
                if km >= self.num_items:
                    raise ValueError(f"'knn_k.{name}' is {km}, but an item has only "
                                     f"{self.num_items - 1} other items to link to")
        else:
            feats = list(features)
            if k is None:
                raise ValueError("give 'k' for unnamed modality features")
            ks = list(k)
        if len(ks) != len(feats):
            raise ValueError(f"got {len(feats)} modalities but {len(ks)} values of k")
        for x in feats:
            if x.dim() != 2 or x.size(0) != self.num_items:
                raise ValueError(f"modality features must have shape [{self.num_items}, f], got "
                                 f"{tuple(x.shape)}")
        named = names if isinstance(features, Mapping) else [str(m) for m in range(len(feats))]
        kept = [(name, x, int(km)) for name, x, km in zip(named, feats, ks) if int(km) > 0]
        if not kept:
            return
        weight = self.item_embedding.weight
        self._set_item_graph([x for _, x, _ in kept], [km for _, _, km in kept])

        total = sum(km for _, _, km in kept)
        items = None
        self._mi_modalities, self._mi_features = [], {}
        for name, x, km in kept:
            w, transform = fit_whiten(x, self.embedding_dim)
            self.register_buffer(f"mi_mean_{name}", transform.mean.to(weight.device))
            self.register_buffer(f"mi_projection_{name}", transform.projection.to(weight.device))
            self._mi_modalities.append((name, km))
            self._mi_features[name] = x
            part = w.to(torch.float64) * km
            items = part if items is None else items + part
        items = (items / total).to(device=weight.device, dtype=weight.dtype)
        self.item_embedding.weight.copy_(items)
        self.user_embedding.weight.copy_(self.user_means(items))

    def user_means(self, item_emb: Tensor) -> Tensor:
        r"""Mean of each user's training items' rows of :obj:`item_emb` (zero without items)."""
        if self.train_edge_index is None:
            raise RuntimeError("no training interactions: call set_interactions() first")
        users, items = self.train_edge_index.to(item_emb.device)
        out = torch.zeros(self.num_users, item_emb.size(1), dtype=item_emb.dtype,
                          device=item_emb.device)
        out.index_add_(0, users, item_emb[items])
        count = torch.bincount(users, minlength=self.num_users).clamp_min(1)
        return out / count.unsqueeze(1).to(item_emb.dtype)

    @property
    def derived_state_keys(self) -> List[str]:
        r"""State entries computed from the training data (MI's whitening buffers): a
        checkpoint written before they were stored may lack them, and the rebuilt model's own
        values are then kept."""
        return [f"mi_{what}_{name}" for name, _ in self._mi_modalities
                for what in ("mean", "projection")]

    @property
    def item_feature_dims(self) -> Dict[str, int]:
        return {name: int(getattr(self, f"mi_mean_{name}").numel())
                for name, _ in self._mi_modalities}

    def whitening(self, modality: str) -> Whitening:
        r"""MI's fitted whitening transform of :obj:`modality`."""
        return Whitening(getattr(self, f"mi_mean_{modality}"),
                         getattr(self, f"mi_projection_{modality}"))

    def modality_init(self, features: Mapping[str, Tensor]) -> Tensor:
        r"""MI of arbitrary rows: :math:`\mathbf{z} = \sum_m k_m (\mathbf{x}^m -
        \boldsymbol{\mu}_m)\mathbf{P}_m / \sum_m k_m` ``[N, d]`` (float64), with the transforms
        fitted at training time."""
        total = sum(km for _, km in self._mi_modalities)
        out = None
        for name, km in self._mi_modalities:
            part = self.whitening(name).apply(features[name]) * km
            out = part if out is None else out + part
        assert out is not None
        return out / total

    @torch.no_grad()
    def add_items(self, features: Mapping[str, Tensor]) -> Tensor:
        r"""Adds items that have modality features but no interactions, placing them from the
        trained model alone; returns their ids :math:`I, \dots, I + n - 1` (the rows of
        :obj:`features`, in order).

        For a new item :math:`n` with features :math:`\mathbf{x}^m_n`:

        1. **MI**, with the transforms fitted at training time (:meth:`whitening`):
           :math:`\mathbf{z}_n = \sum_m k_m (\mathbf{x}^m_n - \boldsymbol{\mu}_m)
           \mathbf{P}_m / \sum_m k_m`; :math:`\mathbf{z}_j` the same for trained item
           :math:`j` (its MI start).
        2. **Modality neighbours**, BSC's graph rule (:func:`~stair_pyg.nn.modality_graph`)
           against the trained items only: :math:`a_{nj} = \sum_m \mathbb{1}[j \in
           \mathrm{top}\text{-}k_m(n)]` by cosine of the raw features, normalised
           :math:`\bar a_{nj} = a_{nj} / \sum_{j'} a_{nj'}`.
        3. **Transfer**: the new item's final representation is its neighbours' trained final
           representations (:meth:`get_embedding`, which carry their collaborative signal),
           moved by its own feature offset from them in MI space, per channel :math:`c`,

           .. math::
               \mathbf{t}_{n} = \sum_j \bar a_{nj} \mathbf{e}_j
               + \mathbf{c}_0 \odot \boldsymbol{\delta} \odot
               \Big(\mathbf{z}_n - \sum_j \bar a_{nj} \mathbf{z}_j\Big),
               \qquad \delta_c = \frac{\sum_i E^{(0)}_{ic} z_{ic}}{\sum_i z_{ic}^2},

           where :math:`\mathbf{c}_0 = (1-\beta)/(1-\beta^{L+1})` is FSC's layer-0
           coefficient (how much of a layer-0 row reaches the final representation: near 1 in
           the late, modality channels, small in the early, collaborative ones) and
           :math:`\delta_c` the least-squares share of the MI start that survives training in
           the layer-0 table :math:`\mathbf{E}^{(0)}` (weight decay shrinks it), over the
           trained items. So early channels take the collaborative neighbours, late channels
           keep the item's own modality signal. BSC's channel weights :math:`1-\beta` are
           not applied again: they shaped how updates spread over the modality graph during
           training, which the neighbours' trained rows already carry.
        4. **Rows**: new items get no interactions, so they are isolated nodes of
           :math:`\hat{\mathbf{A}}` and their final representation is
           :math:`\mathbf{c}_0 \odot \mathbf{E}^{(0)}_n`; the layer-0 row is set to
           :math:`\mathbf{t}_n / \mathbf{c}_0`, which gives :math:`\mathbf{t}_n` exactly up
           to rounding. The degrees of all other nodes are unchanged, so every existing user's
           and item's representation, and every existing score, is bit-for-bit the same. The
           modality graph of BSC is rebuilt over all items (same rule and
           :obj:`knn_method`, so the exact search costs :math:`O((I+n)^2 f)`), so that further
           training smooths the new items' updates too; the item table is a new parameter, so
           build the optimizer again (:meth:`configure_optimizer`) before training further.

        Args:
            features (Mapping[str, Tensor]): ``{modality: [n, f_m]}`` for every modality MI used,
                with the training dimensions, finite.

        Raises:
            ValueError: Without modality features at training time, or on features of the
                wrong modalities, shape or values.
        """
        if not self._mi_modalities:
            raise ValueError("this STAIR model was trained without modality features: it cannot "
                             "place an item from its features (add_items needs MI)")
        if self.adj is None or self.train_edge_index is None:
            raise RuntimeError("no user-item graph: build the model with from_data()")
        feats = check_new_features(features, self.item_feature_dims, type(self).__name__)
        weight = self.item_embedding.weight
        feats = {m: x.to(device=weight.device, dtype=torch.float32) for m, x in feats.items()}
        n = next(iter(feats.values())).size(0)
        base = self.num_trained_items

        user_emb, item_emb = self.get_embedding()
        final = item_emb[:base].to(torch.float64)
        base_feats = {m: self._mi_features[m].to(weight.device) for m in feats}
        z_base = self.modality_init(base_feats)
        z_new = self.modality_init(feats)
        e0 = weight[:base].to(torch.float64)
        z_square = (z_base * z_base).sum(0)
        delta = (e0 * z_base).sum(0) / z_square.clamp_min(1e-300)
        delta = torch.where(z_square > 0, delta, torch.zeros_like(delta))

        rows, cols = [], []
        for name, km in self._mi_modalities:
            nbr = knn_cosine_to(feats[name], base_feats[name], min(km, base))
            rows.append(torch.arange(n, device=weight.device).repeat_interleave(nbr.size(1)))
            cols.append(nbr.reshape(-1))
        row, col = torch.cat(rows), torch.cat(cols)
        # a_nj / sum_j' a_nj': each (n, j) found in several modalities counts that often.
        norm = torch.bincount(row, minlength=n).to(torch.float64)
        wgt = 1.0 / norm[row]
        nbr_final = torch.zeros(n, final.size(1), dtype=torch.float64, device=weight.device)
        nbr_final.index_add_(0, row, final[col] * wgt[:, None])
        nbr_z = torch.zeros_like(nbr_final).index_add_(0, row, z_base[col] * wgt[:, None])
        c0 = self.conv.coefficients(torch.float64, weight.device)[0]
        target = nbr_final + c0 * delta * (z_new - nbr_z)
        layer0 = (target / c0).to(weight.dtype)

        old = self.item_embedding
        self.item_embedding = Embedding(self.num_items + n, self.embedding_dim,
                                        device=weight.device, dtype=weight.dtype)
        self.item_embedding.weight.copy_(torch.cat([old.weight, layer0]))
        share_storage(self.user_embedding.weight, self.item_embedding.weight)
        first = self.num_items
        self.num_items += n
        self.set_interactions(self.train_edge_index)
        all_feats = {m: torch.cat([base_feats[m], *self._added_features(m), feats[m]])
                     for m in feats}
        self._added.append(feats)
        self._set_item_graph([all_feats[name] for name, _ in self._mi_modalities],
                             [km for _, km in self._mi_modalities])
        return torch.arange(first, self.num_items, device=weight.device)

    def _set_item_graph(self, features: List[Tensor], ks: List[int]) -> None:
        r"""BSC's normalised modality graph over the current :attr:`num_items` items
        (:func:`~stair_pyg.nn.modality_graph` with :attr:`knn_method`), on the table's device
        and in its dtype."""
        weight = self.item_embedding.weight
        edge_index, edge_weight = modality_graph(features, ks, method=self.knn_method)
        self.item_adj = SparseAdjBuffer(to_sparse_adj(
            edge_index.to(weight.device), self.num_items,
            edge_weight.to(device=weight.device, dtype=weight.dtype), symmetric=True))

    def _added_features(self, modality: str) -> List[Tensor]:
        return [batch[modality] for batch in self._added]

    # Propagation and training ##############################################################

    def adjacency(self) -> SparseAdj:
        r"""The normalised user-item adjacency :math:`\hat{\mathbf{A}}` ``[U+I, U+I]``."""
        if self.adj is None:
            raise RuntimeError("no user-item graph: build the model with from_data(), call "
                               "set_interactions(), or pass edge_index to get_embedding()")
        return self.adj.get()

    def get_embedding(self, edge_index: Optional[Adj] = None,
                      edge_weight: OptTensor = None) -> Tuple[Tensor, Tensor]:
        r"""User and item representations ``([U, d], [I, d])`` after the forward stepwise
        convolution.

        Args:
            edge_index (Adj, optional): The homogeneous user-item graph over :math:`U + I` nodes
                (items shifted by :math:`U`, both directions), in any :obj:`Adj` format; it is
                normalised by the layer. :obj:`None` uses the stored training graph.
            edge_weight (torch.Tensor, optional): Edge weights of an :obj:`edge_index` tensor.
        """
        x = stacked_rows(self.user_embedding.weight, self.item_embedding.weight)
        if edge_index is None:
            out = self.conv(x, self.adjacency())
        else:
            out = self.conv(x, edge_index, edge_weight)
        return torch.split(out, [self.num_users, self.num_items])  # type: ignore[return-value]

    def recommendation_loss(self, users: Tensor, pos_items: Tensor, neg_items: Tensor,
                            embeddings: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
        r"""The BPR loss :math:`\frac{1}{B}\sum_b \mathrm{softplus}(s^-_b - s^+_b)` of a batch of
        (user, positive item, negative item) triples, on the propagated embeddings.

        Without :obj:`embeddings`, only the batch's rows of the propagation are computed, each
        hop on the rows they depend on (:func:`~stair_pyg.nn.series_rows`): the same loss and
        gradient as on the output of :meth:`get_embedding`, at a fraction of the cost.

        Args:
            users, pos_items, neg_items (torch.Tensor): Ids ``[B]``.
            embeddings (Tuple[Tensor, Tensor], optional): The output of :meth:`get_embedding`,
                if computed already.
        """
        if embeddings is None:
            nodes = torch.cat([users, pos_items + self.num_users, neg_items + self.num_users])
            x = stacked_rows(self.user_embedding.weight, self.item_embedding.weight)
            # The series of self.conv called directly: PyG's propagate turns a sparse matrix
            # into an edge list on every call (a pass over the non-zeros per hop), which costs
            # about 8% of a training step here and is needed by none of its users.
            coefs = self.conv.coefficients(x.dtype, x.device)
            u, pos, neg = propagate_series(x, self.adjacency(), coefs, index=nodes).split(
                users.numel())
        else:
            user_emb, item_emb = embeddings
            u, pos, neg = user_emb[users], item_emb[pos_items], item_emb[neg_items]
        return bpr_loss((u * pos).sum(dim=-1), (u * neg).sum(dim=-1))

    def configure_optimizer(self, lr: float = 1e-3, weight_decay: float = 0.0,
                            betas: Tuple[float, float] = (0.9, 0.999),
                            eps: float = 1e-8) -> StepwiseAdamW:
        r""":class:`~stair_pyg.optim.StepwiseAdamW` wired to the model: users plain AdamW;
        items smoothed over the modality graph with weights :math:`1 - \beta` (the FSC
        :math:`\beta` of :attr:`conv`) and :math:`L` = :obj:`num_layers` (plain AdamW as well
        when the model has no modality graph). The optimizer reads the graph from the model at
        every step, so it follows ``model.to(device)``."""
        item_group: Dict[str, Any] = {"params": [self.item_embedding.weight]}
        if self.item_adj is not None:
            item_group.update(graph=self.item_adj, beta=1.0 - self.conv.beta,
                              num_layers=self.num_layers)
        return StepwiseAdamW([{"params": [self.user_embedding.weight]}, item_group], lr=lr,
                             betas=betas, eps=eps, weight_decay=weight_decay)


__all__ = ["STAIR", "DEFAULT_KNN_K", "DEFAULT_OTHER_K"]

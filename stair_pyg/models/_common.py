r"""Pieces shared by the baseline models (LightGCN, VBPR, FREEDOM, BM3, LGMRec, content-only).

* :func:`layer_mean`: LightGCN's propagation, the mean of :math:`\hat{A}^l X` over layers;
* :func:`embedding_norm_loss`: MMRec's ``EmbLoss`` regulariser;
* :func:`require_modalities`: the item features of a training graph, with a clear error when there
  are none;
* :func:`check_new_features`: the features of items added to a trained model (``add_items``),
  validated against the training dimensions.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.data.hetero import modality_features
from stair_pyg.nn.sparse import SparseAdj, csr_from_edge_index, user_item_adjacency
from stair_pyg.nn.stepwise import propagate_series


def layer_mean(adj: SparseAdj, x: Tensor, num_layers: int, index: Optional[Tensor] = None
               ) -> Tensor:
    r"""LightGCN's layer combination with :math:`\alpha_l = 1/(L+1)`:

    .. math::
        \frac{1}{L+1} \sum_{l=0}^{L} \hat{A}^l X

    Args:
        adj (SparseAdj): The propagation matrix :math:`\hat{A}` ``[N, N]``.
        x (torch.Tensor): Layer-0 embeddings ``[N, d]``.
        num_layers (int): :math:`L` (:obj:`0` returns :obj:`x`).
        index (torch.Tensor, optional): Return only these rows, computing in each hop only the
            rows they depend on (:func:`~stair_pyg.nn.propagate_series`).
            (default: :obj:`None`, all rows)
    """
    # The Neumann series of StepwiseConv with every channel weight 1: c_l = 1 / (L + 1).
    coef = x.new_full((x.size(1),), 1.0 / (num_layers + 1))
    return propagate_series(x, adj, [coef] * (num_layers + 1), index)


def embedding_norm_loss(*embeddings: Tensor) -> Tensor:
    r"""MMRec's ``EmbLoss``: :math:`\frac{1}{B} \sum_k \|E_k\|_F` with :math:`B` the number of
    rows of the last argument. Note the norms are not squared (the MMRec convention that its
    ``reg_weight`` grids are tuned for)."""
    total = embeddings[0].new_zeros(())
    for emb in embeddings:
        total = total + torch.linalg.vector_norm(emb)
    return total / embeddings[-1].size(0)


def require_modalities(data: HeteroData, model: str,
                       modalities: Optional[list] = None) -> Dict[str, Tensor]:
    r"""The item features of :obj:`data` (``{modality: [I, f]}``, float32), optionally restricted to
    :obj:`modalities`; raises :class:`ValueError` if none is left, naming the model."""
    feats = modality_features(data)
    if modalities is not None:
        missing = [m for m in modalities if m not in feats]
        if missing:
            raise ValueError(f"{model}: modalities {missing} not in the data "
                             f"(available: {sorted(feats)})")
        feats = {m: feats[m] for m in modalities}
    if not feats:
        raise ValueError(f"{model} needs item modality features (data['item'].<name>_feat), "
                         "but the training graph has none")
    return {m: x.float() for m, x in feats.items()}


def check_new_features(features: Mapping[str, Tensor], dims: Mapping[str, int],
                       model: str) -> Dict[str, Tensor]:
    r"""Validates the features of new items for :obj:`model`'s ``add_items``: exactly the
    modalities :obj:`dims` names (``{modality: columns}`` at training time), each a real 2-d
    ``[n, f_m]`` tensor with :math:`n \geq 1` rows (the same :math:`n` for all) and the
    training's :math:`f_m` columns, without NaN/Inf. Raises :class:`ValueError` naming the
    modality; returns ``{modality: float32 tensor}`` in the order of :obj:`dims`."""
    if not isinstance(features, Mapping):
        raise ValueError(f"{model}.add_items: features must be a mapping {{modality: [n, f]}}, "
                         f"got {type(features).__name__}")
    missing = [m for m in dims if m not in features]
    extra = [m for m in features if m not in dims]
    if missing or extra:
        raise ValueError(f"{model}.add_items: the new items need features of exactly the "
                         f"trained modalities {list(dims)}; missing {missing}, unknown {extra}")
    out: Dict[str, Tensor] = {}
    rows = None
    for m, f in dims.items():
        x = torch.as_tensor(features[m])
        if x.dim() != 2:
            raise ValueError(f"{model}.add_items: '{m}' features must be 2-d [n, {f}], got shape "
                             f"{tuple(x.shape)}")
        if x.is_complex() or not (x.is_floating_point() or x.dtype in (
                torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)):
            raise ValueError(f"{model}.add_items: '{m}' features must be real numbers, got "
                             f"dtype {x.dtype}")
        if x.size(1) != f:
            raise ValueError(f"{model}.add_items: '{m}' features have {x.size(1)} columns, the "
                             f"model was trained with {f}")
        if x.size(0) == 0:
            raise ValueError(f"{model}.add_items: '{m}' features have no rows")
        if rows is not None and x.size(0) != rows:
            raise ValueError(f"{model}.add_items: the modalities disagree on the number of new "
                             f"items ({rows} vs {x.size(0)} rows of '{m}')")
        rows = x.size(0)
        x = x.float()
        bad = ~torch.isfinite(x).all(dim=1)
        if bool(bad.any()):
            row = int(torch.nonzero(bad)[0])
            raise ValueError(f"{model}.add_items: '{m}' features contain NaN/Inf "
                             f"({int(bad.sum())} row(s); first: row {row})")
        out[m] = x
    return out


def append_rows(adj: SparseAdj, edge_index: Tensor, edge_weight: Tensor, num_new: int
                ) -> SparseAdj:
    r"""An ``[N, N]`` matrix grown to ``[N + n, N + n]``: the old rows keep exactly their
    entries (so products over them are bit-for-bit the same), the new columns are empty and the
    new rows :math:`N..N+n-1` hold ``A[N + edge_index[0], edge_index[1]] = edge_weight``
    (duplicates summed)."""
    old = adj.adj
    n_old = old.size(0)
    size = n_old + num_new
    new = csr_from_edge_index(edge_index, edge_weight.to(old.values().dtype), (num_new, size))
    crow = torch.cat([old.crow_indices(), old.crow_indices()[-1] + new.crow_indices()[1:]])
    col = torch.cat([old.col_indices(), new.col_indices().to(old.col_indices().dtype)])
    val = torch.cat([old.values(), new.values()])
    out = torch.sparse_csr_tensor(crow, col, val, (size, size), check_invariants=False)
    return SparseAdj(out, symmetric=False)


def grow_rows(table: Tensor, rows: Tensor) -> torch.nn.Parameter:
    r"""A parameter with the rows of :obj:`table` followed by :obj:`rows` (same
    ``requires_grad``)."""
    return torch.nn.Parameter(torch.cat([table.detach(), rows.to(table)]),
                              requires_grad=table.requires_grad)


def append_feature_items(model: torch.nn.Module, features: Mapping[str, Tensor]) -> Tensor:
    r"""The part of ``add_items`` that FREEDOM and BM3 share: appends the new items' rows to the
    model's trainable feature tables, raises ``num_items`` and rebuilds the normalised user-item
    graph over all items (the new ones isolated: no interactions, so every old entry stays).
    Returns the new item ids."""
    n = next(iter(features.values())).size(0)
    for m, x in features.items():
        model.features[m] = grow_rows(model.features[m], x)
    first = model.num_items
    model.num_items += n
    model.norm_adj.set(user_item_adjacency(model.edge_index, model.num_users, model.num_items)
                       .to(model.norm_adj.val.dtype))
    return torch.arange(first, model.num_items, device=model.norm_adj.val.device)

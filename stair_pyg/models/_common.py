r"""Pieces shared by the baseline models (LightGCN, VBPR, FREEDOM, BM3, LGMRec, content-only).

* :func:`layer_mean`: LightGCN's propagation, the mean of :math:`\hat{A}^l X` over layers;
* :func:`embedding_norm_loss`: MMRec's ``EmbLoss`` regulariser;
* :func:`require_modalities`: the item features of a training graph, with a clear error when there
  are none.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import HeteroData

from stair_pyg.data.hetero import modality_features
from stair_pyg.nn.sparse import SparseAdj
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

r"""Pieces shared by the baseline models (LightGCN, VBPR, FREEDOM, BM3, LGMRec, content-only).

* :class:`SparseBuffer`: a :class:`~stair_pyg.nn.sparse.SparseAdj` kept as non-persistent dense
  buffers, so that ``model.to(device)`` moves it, ``copy.deepcopy(model)`` works (torch cannot
  deep-copy CSR tensors) and checkpoints hold parameters only;
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
from stair_pyg.nn.sparse import SparseAdj, series_rows, spmm


class SparseBuffer(torch.nn.Module):
    r"""Holds a sparse matrix as the dense arrays of its CSR form (and of its transpose, unless it
    is symmetric) in non-persistent buffers; :meth:`get` rebuilds the :class:`SparseAdj` (no copy).

    Args:
        adj (SparseAdj): The matrix to hold.
    """

    def __init__(self, adj: SparseAdj):
        super().__init__()
        self.set(adj)

    def set(self, adj: SparseAdj) -> None:
        r"""Replaces the held matrix (keeps the device and dtype of :obj:`adj`)."""
        self.size_ = tuple(adj.shape)
        self.symmetric = bool(adj.symmetric)
        self.register_buffer("crow", adj.adj.crow_indices(), persistent=False)
        self.register_buffer("col", adj.adj.col_indices(), persistent=False)
        self.register_buffer("val", adj.adj.values(), persistent=False)
        if not self.symmetric:
            self.register_buffer("crow_t", adj.adj_t.crow_indices(), persistent=False)
            self.register_buffer("col_t", adj.adj_t.col_indices(), persistent=False)
            self.register_buffer("val_t", adj.adj_t.values(), persistent=False)
        else:
            for name in ("crow_t", "col_t", "val_t"):
                self._buffers.pop(name, None)

    def get(self) -> SparseAdj:
        adj = torch.sparse_csr_tensor(self.crow, self.col, self.val, self.size_,
                                      check_invariants=False)
        if self.symmetric:
            return SparseAdj(adj, adj, symmetric=True)
        adj_t = torch.sparse_csr_tensor(self.crow_t, self.col_t, self.val_t,
                                        (self.size_[1], self.size_[0]), check_invariants=False)
        return SparseAdj(adj, adj_t, symmetric=False)

    def extra_repr(self) -> str:
        return f"shape={self.size_}, nnz={self.col.numel()}, symmetric={self.symmetric}"


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
            rows they depend on (:func:`~stair_pyg.nn.sparse.series_rows`).
            (default: :obj:`None`, all rows)
    """
    if index is not None:
        coef = x.new_full((x.size(1),), 1.0 / (num_layers + 1))
        return series_rows(x, adj, [coef] * (num_layers + 1), index)
    out = x
    h = x
    for _ in range(num_layers):
        h = spmm(adj, h)
        out = out + h
    return out / (num_layers + 1)


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


def xavier_table(rows: int, cols: int) -> torch.nn.Parameter:
    r"""An embedding table initialised with :func:`torch.nn.init.xavier_uniform_` (MMRec)."""
    return torch.nn.Parameter(torch.nn.init.xavier_uniform_(torch.empty(rows, cols)))

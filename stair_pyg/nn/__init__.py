r"""Graph layers and graph construction of STAIR as PyTorch Geometric building blocks.

* :func:`stepwise_beta`, :func:`neumann_smooth`, :class:`StepwiseConv`: the forward stepwise
  convolution (FSC) and the per-channel Neumann series it shares with the optimizer's backward
  stepwise convolution (:class:`stair_pyg.optim.StepwiseAdamW`) and LightGCN's layer mean;
* :func:`whiten`, :func:`modality_graph`: modality initialisation (MI) and the item-item kNN graph;
* :mod:`stair_pyg.nn.sparse`, the one graph representation: :class:`SparseAdj` (CSR with a
  stored transpose for a fast backward pass), built from any PyG adjacency by
  :func:`to_sparse_adj`, normalised by :func:`gcn_normalize`, held by models as a
  :class:`SparseAdjBuffer`; :func:`user_item_adjacency`; :func:`receptive_field` and
  :func:`series_rows`, a propagation restricted to the rows a mini-batch needs;
* :mod:`stair_pyg.nn.cpu_kernel`, the CPU kernel of the sparse product (numba where installed,
  else torch's), chosen by :func:`set_cpu_kernel`;
* :func:`knn_cosine`: cosine kNN (exact, chunked, or approximate IVF).
"""
from stair_pyg.nn.cpu_kernel import set_cpu_kernel
from stair_pyg.nn.knn import knn_cosine
from stair_pyg.nn.modality_graph import modality_graph
from stair_pyg.nn.sparse import (
    SparseAdj,
    SparseAdjBuffer,
    gcn_normalize,
    receptive_field,
    series_rows,
    spmm,
    symmetric_norm,
    to_sparse_adj,
    user_item_adjacency,
)
from stair_pyg.nn.stepwise import (
    StepwiseConv,
    neumann_smooth,
    propagate_series,
    series_coefficients,
    stepwise_beta,
)
from stair_pyg.nn.whiten import Whitening, fit_whiten, whiten

__all__ = [
    "stepwise_beta",
    "series_coefficients",
    "propagate_series",
    "neumann_smooth",
    "StepwiseConv",
    "whiten",
    "fit_whiten",
    "Whitening",
    "modality_graph",
    "SparseAdj",
    "SparseAdjBuffer",
    "to_sparse_adj",
    "gcn_normalize",
    "symmetric_norm",
    "spmm",
    "receptive_field",
    "series_rows",
    "user_item_adjacency",
    "knn_cosine",
    "set_cpu_kernel",
]

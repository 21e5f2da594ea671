r"""Graph layers and graph construction of STAIR as PyTorch Geometric building blocks.

* :func:`stepwise_beta`, :func:`neumann_smooth`, :class:`StepwiseConv`: the forward stepwise
  convolution (FSC) and the per-channel Neumann series it shares with the optimizer's backward
  stepwise convolution (:class:`stair_pyg.optim.StepwiseAdamW`);
* :func:`whiten`, :func:`modality_graph`: modality initialisation (MI) and the item-item kNN graph;
* :class:`SparseAdj`, :func:`spmm`, :func:`user_item_adjacency`, :func:`knn_cosine`: sparse
  adjacency with a fast backward pass and cosine kNN (exact, chunked, or approximate IVF);
* :func:`receptive_field`, :func:`series_rows`: a propagation restricted to the rows a
  mini-batch needs.
"""
from stair_pyg.nn.knn import knn_cosine
from stair_pyg.nn.modality_graph import modality_graph
from stair_pyg.nn.sparse import (
    SparseAdj,
    normalized_adjacency,
    receptive_field,
    series_rows,
    spmm,
    sym_norm_edges,
    user_item_adjacency,
)
from stair_pyg.nn.stepwise import StepwiseConv, neumann_smooth, stepwise_beta
from stair_pyg.nn.whiten import whiten

__all__ = [
    "stepwise_beta",
    "neumann_smooth",
    "StepwiseConv",
    "whiten",
    "modality_graph",
    "SparseAdj",
    "spmm",
    "receptive_field",
    "series_rows",
    "user_item_adjacency",
    "normalized_adjacency",
    "sym_norm_edges",
    "knn_cosine",
]

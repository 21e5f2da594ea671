r"""The item-item modality graph of STAIR (used by its backward stepwise convolution)."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor
from torch_geometric.utils import coalesce, to_undirected

from stair_pyg.nn.knn import knn_cosine
from stair_pyg.nn.sparse import symmetric_norm


def modality_graph(features: Sequence[Tensor], k: Sequence[int], normalize: bool = True,
                   chunk_size: Optional[int] = None, method: str = "exact",
                   num_probes: int = 8, seed: int = 0) -> Tuple[Tensor, Tensor]:
    r"""The item-item graph over which the `"STAIR" <https://arxiv.org/abs/2412.11729>`_ paper
    smooths the item updates.

    For every modality :math:`m` with :math:`k_m` neighbours, each item :math:`i` links to the
    :math:`k_m` other items :math:`j \neq i` of largest cosine similarity
    :math:`\langle \mathbf{x}_i, \mathbf{x}_j \rangle / (\|\mathbf{x}_i\| \|\mathbf{x}_j\|)`
    (a directed edge :math:`i \to j`). The edges of all modalities are counted,

    .. math::
        A_{ij} = \sum_m \mathbb{1}\left[j \in \mathrm{top}\text{-}k_m(i)\right],

    so an edge found in two modalities has weight :math:`2`; the graph is symmetrised by the
    maximum, :math:`A_{ij} \leftarrow \max(A_{ij}, A_{ji})`, and normalised,
    :math:`\hat{\mathbf{A}} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` (no self-loops).

    Similarities are computed in blocks of rows (:func:`~stair_pyg.nn.knn.knn_cosine`), so no
    :math:`N \times N` matrix is ever formed; memory is :math:`O(\text{chunk\_size} \cdot N +
    N \sum_m k_m)`. The exact search costs :math:`O(N^2 f_m)` time; :obj:`method="ivf"` finds
    approximate neighbours in :math:`O(N^{3/2} f_m)` for large catalogues (see
    :func:`~stair_pyg.nn.knn.knn_cosine`).

    Args:
        features (Sequence[torch.Tensor]): One ``[N, f_m]`` feature matrix per modality (same
            :math:`N`).
        k (Sequence[int]): Neighbours per item for each modality (:obj:`0` leaves a modality out
            of the graph).
        normalize (bool, optional): Whether to return :math:`\hat{\mathbf{A}}` (otherwise the
            symmetrised counts :math:`\mathbf{A}`). (default: :obj:`True`)
        chunk_size (int, optional): Query rows per similarity block, passed to
            :func:`~stair_pyg.nn.knn.knn_cosine`. (default: automatic)
        method (str, optional): :obj:`"exact"` or :obj:`"ivf"` (approximate), the search of
            :func:`~stair_pyg.nn.knn.knn_cosine`. (default: :obj:`"exact"`)
        num_probes (int, optional): Clusters searched per cluster by :obj:`"ivf"`.
            (default: :obj:`8`)
        seed (int, optional): Seed of :obj:`"ivf"`'s clustering. (default: :obj:`0`)

    Returns:
        ``(edge_index [2, E], edge_weight [E])``, coalesced and symmetric, float32 weights.
    """
    features = list(features)
    ks = [int(v) for v in k]
    if len(features) == 0:
        raise ValueError("at least one modality is required")
    if len(features) != len(ks):
        raise ValueError(f"got {len(features)} feature matrices but {len(ks)} values of k")
    num_nodes = features[0].size(0)
    device = features[0].device
    edges = []
    for m, (x, km) in enumerate(zip(features, ks)):
        if x.dim() != 2 or x.size(0) != num_nodes:
            raise ValueError(f"modality {m} has shape {tuple(x.shape)}; expected [{num_nodes}, f]")
        if km < 0:
            raise ValueError(f"k must be non-negative, got {km} for modality {m}")
        if km > 0:
            edges.append(knn_cosine(x.to(device), km, chunk_size=chunk_size, exclude_self=True,
                                    method=method, num_probes=num_probes, seed=seed))
    if not edges:
        empty = torch.empty(2, 0, dtype=torch.long, device=device)
        return empty, torch.empty(0, device=device)
    edge_index = torch.cat(edges, dim=1)
    edge_weight = torch.ones(edge_index.size(1), device=device)
    edge_index, edge_weight = coalesce(edge_index, edge_weight, num_nodes, reduce="sum")
    edge_index, edge_weight = to_undirected(edge_index, edge_weight, num_nodes, reduce="max")
    if normalize:
        edge_weight = symmetric_norm(edge_index[0], edge_index[1], edge_weight, num_nodes)
    return edge_index, edge_weight


__all__ = ["modality_graph"]

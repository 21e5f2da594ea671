r"""Forward stepwise convolution (FSC) of STAIR and the normalised Neumann series it shares with
the backward stepwise convolution (BSC, :class:`stair_pyg.optim.StepwiseAdamW`)."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptTensor, SparseTensor

from stair_pyg.nn.sparse import (SparseAdj, csr_mm, csr_rows, series_rows, spmm, symmetric_norm,
                                 to_sparse_adj)

#: The product of one hop, :math:`(A, H) \mapsto A H`.
HopProduct = Callable[[SparseAdj, Tensor], Tensor]


def stepwise_beta(channels: int, gamma: float, dtype: Optional[torch.dtype] = None,
                  device: Optional[torch.device] = None) -> Tensor:
    r"""The per-channel weights of STAIR's forward stepwise convolution,

    .. math::
        \beta_j = 1 - \left(0.1 + 0.9 \left(\frac{j}{d}\right)^{\gamma}\right),
        \qquad j = 0, \ldots, d - 1.

    Channel :math:`0` propagates most (:math:`\beta_0 = 0.9` for :math:`\gamma > 0`), the last
    channels almost not at all. :math:`1 - \beta_j` are the weights of the backward stepwise
    convolution. (For :math:`\gamma = 0`, :math:`0^0 = 1` and every :math:`\beta_j = 0`.)

    Args:
        channels (int): Number of channels :math:`d`.
        gamma (float): The exponent :math:`\gamma \geq 0`.
        dtype (torch.dtype, optional): Result dtype. (default: the default dtype)
        device (torch.device, optional): Result device.
    """
    if channels <= 0:
        raise ValueError(f"'channels' must be positive, got {channels}")
    if gamma < 0:
        raise ValueError(f"'gamma' must be non-negative, got {gamma}")
    j = torch.arange(channels, dtype=torch.float64)
    beta = 1.0 - (0.1 + 0.9 * (j / channels).pow(gamma))
    return beta.to(dtype=dtype or torch.get_default_dtype(), device=device)


def series_coefficients(weight: Tensor, num_layers: int, dtype: Optional[torch.dtype] = None,
                        device: Optional[torch.device] = None) -> List[Tensor]:
    r"""The hop coefficients :math:`c_l = w^l / \sum_{k=0}^{L} w^k`, :math:`l = 0, \dots, L`,
    of the normalised Neumann series (see :func:`neumann_smooth`), each ``[d]``, computed in
    float64 and cast to :obj:`dtype` on :obj:`device`. The normaliser equals
    :math:`(1 - w) / (1 - w^{L+1})` and is also right at :math:`w = 1`, where the series is the
    plain average. Raises :class:`ValueError` where it vanishes (:math:`w = -1` with an odd
    :math:`L`)."""
    if num_layers < 0:
        raise ValueError(f"'num_layers' must be non-negative, got {num_layers}")
    w64 = weight.detach().to(torch.float64)
    powers = [torch.ones_like(w64)]
    for _ in range(num_layers):
        powers.append(powers[-1] * w64)
    total = torch.stack(powers).sum(dim=0)
    if bool((total == 0).any()):
        raise ValueError("the normaliser sum_l w^l vanishes for some channel (w = -1 with an odd "
                         "number of layers)")
    return [(power / total).to(dtype=dtype or weight.dtype, device=device or weight.device)
            for power in powers]


def propagate_series(x: Tensor, adj: Union[SparseAdj, Callable[[Tensor], Tensor]],
                     coefs: List[Tensor], index: OptTensor = None,
                     hop: Optional[HopProduct] = None) -> Tensor:
    r""":math:`\sum_{l=0}^{L} c_l \odot \hat{\mathbf{A}}^l \mathbf{X}` for given per-channel
    hop coefficients :math:`c_l` (constants), or its rows :obj:`index`.

    With a :class:`SparseAdj` and :obj:`index`, each hop multiplies only the rows the outputs
    depend on (:func:`~stair_pyg.nn.sparse.series_rows`): the result and its gradient are those
    of the full series at a fraction of the cost. That holds on the CPU; on a GPU, cutting the
    hops reads their sizes on the host (several synchronisations per call) while the full
    product is cheap, so there the full series is computed and the rows selected (same values).
    Where no gradient is recorded (an optimizer step, evaluation), a :class:`SparseAdj` series
    runs in Horner's form :math:`c_0 X + A(c_1 X + A(c_2 X + \dots))`, each term added inside
    its product's pass over the rows (:func:`~stair_pyg.nn.sparse.csr_mm`); the same values to
    float rounding.

    Args:
        x (torch.Tensor): :math:`\mathbf{X}` ``[N, d]``.
        adj (SparseAdj or callable): :math:`\hat{\mathbf{A}}`, or a function returning
            :math:`\hat{\mathbf{A}} \mathbf{H}`.
        coefs (List[torch.Tensor]): :math:`c_0, \dots, c_L`, each ``[d]`` or scalar.
        index (torch.Tensor, optional): Return only these rows. (default: :obj:`None`)
        hop (callable, optional): The product :math:`(A, H) \mapsto A H` of one hop over a
            :class:`SparseAdj` (default: :func:`~stair_pyg.nn.sparse.spmm`).
    """
    if isinstance(adj, SparseAdj):
        if index is not None and adj.adj.device.type == "cpu":
            return series_rows(x, adj, coefs, index, hop=hop)
        if hop is None and not (torch.is_grad_enabled() and x.requires_grad):
            # No autograd: Horner's form c_0 X + A(c_1 X + A(c_2 X + ... A(c_L X))), valid as
            # the c_l scale channels and A mixes rows; each hop's add in the product's pass.
            out = x * coefs[-1]
            for coef in reversed(coefs[:-1]):
                out = csr_mm(adj.adj, out, add=x, coef=torch.as_tensor(coef, dtype=x.dtype))
            return out if index is None else out.index_select(0, index)
        matrix, product = adj, spmm if hop is None else hop
        adj = lambda h: product(matrix, h)  # noqa: E731
    out = x * coefs[0]
    h = x
    for coef in coefs[1:]:
        h = adj(h)
        # In place: out is this function's own tensor, and addcmul's backward needs only h and
        # the constant coefficient, so autograd is unaffected; no new [N, d] tensor per hop.
        out.addcmul_(h, coef)
    return out if index is None else out[index]


def neumann_smooth(x: Tensor, adj: Union[SparseAdj, Callable[[Tensor], Tensor]],
                   weight: Tensor, num_layers: int, index: OptTensor = None) -> Tensor:
    r"""The normalised, truncated Neumann series with per-channel weights :math:`w`,

    .. math::
        \mathbf{Y} = \Big(\sum_{l=0}^{L} w^l\Big)^{-1} \odot
        \sum_{l=0}^{L} (w \odot \hat{\mathbf{A}})^l \mathbf{X}
        = \frac{1 - w}{1 - w^{L+1}} \odot \sum_{l=0}^{L} (w \odot \hat{\mathbf{A}})^l
        \mathbf{X},

    where :math:`w \odot \hat{\mathbf{A}}` multiplies channel :math:`j` of every propagated signal
    by :math:`w_j`. At :math:`w_j = 1` it is the plain average
    :math:`\frac{1}{L+1}\sum_l \hat{\mathbf{A}}^l \mathbf{X}` (LightGCN's layer mean).

    STAIR's forward stepwise convolution is this series with :math:`w = \beta` (see
    :func:`stepwise_beta`); its backward stepwise convolution smooths the Adam direction with
    :math:`w = 1 - \beta`.

    Args:
        x (torch.Tensor): Signals :math:`\mathbf{X}` ``[N, d]``.
        adj (SparseAdj or callable): :math:`\hat{\mathbf{A}}`, or a function returning
            :math:`\hat{\mathbf{A}} \mathbf{H}` for ``[N, d]`` input.
        weight (torch.Tensor): Per-channel weights :math:`w` ``[d]``, taken as constants (no
            gradient flows to them).
        num_layers (int): :math:`L \geq 0`.
        index (torch.Tensor, optional): Return only these rows of :math:`\mathbf{Y}`, computing
            only what they depend on (see :func:`propagate_series`). (default: :obj:`None`)
    """
    if weight.dim() != 1 or weight.numel() != x.size(-1):
        raise ValueError(f"expected one weight per channel ({x.size(-1)}), got weight of shape "
                         f"{tuple(weight.shape)}")
    # The channel weights commute with the propagation (they scale columns, the adjacency mixes
    # rows): (w * A)^l X = (A^l X) * w^l, so hop l is A applied l times, scaled once by c_l.
    coefs = series_coefficients(weight, num_layers, x.dtype, x.device)
    return propagate_series(x, adj, coefs, index)


class StepwiseConv(MessagePassing):
    r"""The forward stepwise convolution (FSC) from the `"STAIR: Manipulating Collaborative and
    Multimodal Information for E-Commerce Recommendation" <https://arxiv.org/abs/2412.11729>`_
    paper (AAAI 2025).

    Every channel :math:`j` propagates with its own weight :math:`\beta_j`, so that low channels
    mix information from far hops and high channels stay close to their own node:

    .. math::
        \mathbf{X}^{\prime} = \frac{1 - \beta}{1 - \beta^{L+1}} \odot
        \sum_{l=0}^{L} (\beta \odot \hat{\mathbf{A}})^l \mathbf{X},
        \qquad \beta_j = 1 - \left(0.1 + 0.9 \left(\frac{j}{d}\right)^{\gamma}\right),

    with :math:`\hat{\mathbf{A}} = \mathbf{D}^{-1/2} \mathbf{A} \mathbf{D}^{-1/2}` the symmetric
    normalised adjacency (no self-loops) and :math:`\beta \odot` scaling channel :math:`j` by
    :math:`\beta_j`. A channel with :math:`\beta_j = 1` takes the limit, the plain average
    :math:`\frac{1}{L+1} \sum_l \hat{\mathbf{A}}^l \mathbf{X}` (see :func:`neumann_smooth`). The
    layer has no trainable parameters; :math:`\beta` is a buffer.

    Args:
        channels (int): Number of channels :math:`d`.
        num_layers (int, optional): Number of propagation hops :math:`L`. (default: :obj:`3`)
        gamma (float, optional): The exponent :math:`\gamma` of :func:`stepwise_beta`.
            (default: :obj:`0.1`)
        beta (torch.Tensor, optional): Per-channel weights ``[channels]`` that override
            :func:`stepwise_beta`. (default: :obj:`None`)
        normalize (bool, optional): Whether to normalise the adjacency symmetrically. Set to
            :obj:`False` for an adjacency that is normalised already (a
            :class:`~stair_pyg.nn.sparse.SparseAdj` is always used as it is).
            (default: :obj:`True`)
        cached (bool, optional): If set to :obj:`True`, the layer normalises the adjacency of the
            first call only and reuses it (for transductive learning on one graph).
            (default: :obj:`False`)
        **kwargs (optional): Additional arguments of
            :class:`torch_geometric.nn.conv.MessagePassing`.

    Shapes:
        - **input:**
          node features :math:`(|\mathcal{V}|, d)`,
          edge indices :math:`(2, |\mathcal{E}|)` or sparse adjacency
          :math:`(|\mathcal{V}|, |\mathcal{V}|)`,
          edge weights :math:`(|\mathcal{E}|)` *(optional)*,
          output rows :math:`(B)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, d)`, or :math:`(B, d)` with
          :obj:`index`
    """

    beta: Tensor
    _cached_edge_index: Optional[Tuple[Tensor, Tensor]]
    _cached_adj: Optional[SparseAdj]

    def __init__(self, channels: int, num_layers: int = 3, gamma: Optional[float] = 0.1,
                 beta: Optional[Tensor] = None, normalize: bool = True, cached: bool = False,
                 **kwargs):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        if channels <= 0:
            raise ValueError(f"'channels' must be positive, got {channels}")
        if num_layers < 0:
            raise ValueError(f"'num_layers' must be non-negative, got {num_layers}")
        self.channels = channels
        self.num_layers = num_layers
        self.normalize = normalize
        self.cached = cached
        if beta is None:
            if gamma is None:
                raise ValueError("give either 'gamma' or 'beta'")
            self.gamma: Optional[float] = float(gamma)
            beta = stepwise_beta(channels, self.gamma)
        else:
            self.gamma = None
            beta = torch.as_tensor(beta, dtype=torch.get_default_dtype()).detach().clone()
            if beta.dim() != 1 or beta.numel() != channels:
                raise ValueError(f"'beta' must have shape [channels={channels}], got "
                                 f"{tuple(beta.shape)}")
        self.register_buffer("beta", beta)
        self._coefs: Dict[Tuple, List[Tensor]] = {}
        self._cached_edge_index = None
        self._cached_adj = None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self._cached_edge_index = None
        self._cached_adj = None
        self._coefs = {}

    def _apply(self, fn, recurse: bool = True):
        self._coefs = {}  # beta is replaced: its coefficients are computed anew on first use
        return super()._apply(fn, recurse)

    def coefficients(self, dtype: torch.dtype, device: torch.device) -> List[Tensor]:
        r"""The hop coefficients of :func:`series_coefficients` for :attr:`beta`, computed once
        per dtype and device (no host synchronisation per call)."""
        key = (dtype, device, self.beta._version)
        coefs = self._coefs.get(key)
        if coefs is None:
            coefs = self._coefs[key] = series_coefficients(self.beta, self.num_layers, dtype,
                                                           device)
        return coefs

    def forward(self, x: Tensor, edge_index: Union[Adj, SparseAdj],
                edge_weight: OptTensor = None, index: OptTensor = None) -> Tensor:
        r"""Runs the forward pass.

        Args:
            x (torch.Tensor): Node features ``[N, d]``.
            edge_index (Adj or SparseAdj): The graph: an :obj:`edge_index` tensor, an
                :class:`~torch_geometric.EdgeIndex`, a torch sparse matrix (COO, CSR or CSC,
                read as :obj:`adj_t` like every PyG layer does), a
                :class:`torch_sparse.SparseTensor`, or a normalised
                :class:`~stair_pyg.nn.sparse.SparseAdj`. All give the same result.
            edge_weight (torch.Tensor, optional): Edge weights of an edge list.
            index (torch.Tensor, optional): Return only these rows (for example the nodes of a
                training batch), with the same values and gradient. (default: :obj:`None`)
        """
        if x.dim() != 2 or x.size(-1) != self.channels:
            raise ValueError(f"expected node features of shape [N, {self.channels}], got "
                             f"{tuple(x.shape)}")
        num_nodes = x.size(0)
        coefs = self.coefficients(x.dtype, x.device)

        # Every form goes through self.propagate once per hop: an edge list reaches message(),
        # a sparse matrix message_and_aggregate(), which runs the CSR product with a stored
        # transpose for the backward pass (and, with index, only the rows each hop needs).
        if self._uses_messages(edge_index, edge_weight):
            edge_index, edge_weight = self._normalized_edges(edge_index, edge_weight, num_nodes)

            def hop(h: Tensor) -> Tensor:
                # propagate_type: (x: Tensor, edge_weight: OptTensor, sparse_adj: Any)
                return self.propagate(edge_index, x=h, edge_weight=edge_weight,
                                      sparse_adj=None)

            return propagate_series(x, hop, coefs, index)

        adj = self._cached_adj
        if adj is None:
            adj = to_sparse_adj(edge_index, num_nodes, edge_weight, self.flow,
                                normalize=self.normalize and not isinstance(edge_index, SparseAdj),
                                dtype=x.dtype)
            if self.cached:
                self._cached_adj = adj
        if adj.shape != (num_nodes, num_nodes):
            raise ValueError(f"adjacency of shape {adj.shape} does not match {num_nodes} nodes")
        return propagate_series(x, adj, coefs, index, hop=self._sparse_hop)

    def _sparse_hop(self, adj: SparseAdj, h: Tensor) -> Tensor:
        return self.propagate(adj.adj, x=h, edge_weight=None, sparse_adj=adj)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor, sparse_adj: SparseAdj) -> Tensor:
        return spmm(sparse_adj, x)

    def __repr__(self) -> str:
        gamma = "custom beta" if self.gamma is None else f"gamma={self.gamma}"
        return (f"{self.__class__.__name__}({self.channels}, num_layers={self.num_layers}, "
                f"{gamma})")

    def _uses_messages(self, edge_index: Union[Adj, SparseAdj], edge_weight: OptTensor) -> bool:
        r"""Whether the graph goes through :meth:`message`: a plain edge list, or one whose
        weights require a gradient (the CSR product gives the values none)."""
        if self._cached_adj is not None:
            return False
        if self._cached_edge_index is not None:
            return True
        if isinstance(edge_index, SparseAdj):
            return False
        if isinstance(edge_index, SparseTensor):
            value = edge_index.storage.value()
            return value is not None and value.requires_grad
        if edge_index.layout != torch.strided:
            return edge_index.requires_grad
        if isinstance(edge_index, EdgeIndex):
            return edge_weight is not None and edge_weight.requires_grad
        return True

    def _normalized_edges(self, edge_index: Adj, edge_weight: OptTensor,
                          num_nodes: int) -> Tuple[Tensor, Tensor]:
        r"""The (normalised) edge list of the message path, differentiable in the weights."""
        if self._cached_edge_index is not None:
            return self._cached_edge_index
        if isinstance(edge_index, SparseTensor) or edge_index.layout != torch.strided:
            if edge_weight is not None:
                raise ValueError("'edge_weight' must be None for a sparse adjacency (its values "
                                 "are the edge weights)")
            edge_index, edge_weight = _sparse_to_edges(edge_index, self.flow)
        elif isinstance(edge_index, EdgeIndex):
            edge_index = edge_index.as_tensor()
        if edge_weight is None:
            edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
        if self.normalize:
            dst, src = (edge_index[1], edge_index[0]) if self.flow == "source_to_target" else \
                (edge_index[0], edge_index[1])
            edge_weight = symmetric_norm(dst, src, edge_weight, num_nodes)
        if self.cached:
            self._cached_edge_index = (edge_index, edge_weight)
        return edge_index, edge_weight


def _sparse_to_edges(adj_t: Union[Tensor, SparseTensor], flow: str) -> Tuple[Tensor, Tensor]:
    r"""The edge list ``(edge_index, edge_weight)`` that a sparse :obj:`adj_t` stands for under
    :obj:`flow`, differentiable in the values (duplicates of a COO matrix are summed)."""
    if isinstance(adj_t, SparseTensor):
        row, col, value = adj_t.coo()
        if value is None:
            value = torch.ones(row.numel(), device=row.device)
    elif adj_t.layout == torch.sparse_coo:
        adj_t = adj_t.coalesce()
        (row, col), value = adj_t.indices(), adj_t.values()
    else:
        adj_t = adj_t.to_sparse_csr() if adj_t.layout != torch.sparse_csr else adj_t
        row, col, value = csr_rows(adj_t), adj_t.col_indices().long(), adj_t.values()
    # adj_t[i, j] is the weight of the message j -> i.
    edge_index = torch.stack([col, row]) if flow == "source_to_target" else \
        torch.stack([row, col])
    return edge_index, value


__all__ = ["stepwise_beta", "series_coefficients", "propagate_series", "neumann_smooth",
           "StepwiseConv"]

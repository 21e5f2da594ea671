r"""Forward stepwise convolution (FSC) of STAIR and the normalised Neumann series it shares with
the backward stepwise convolution (BSC, :class:`stair_pyg.optim.StepwiseAdamW`)."""
from __future__ import annotations

from functools import partial
from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor
from torch_geometric import EdgeIndex
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import Adj, OptTensor, SparseTensor
from torch_geometric.utils import is_torch_sparse_tensor

from stair_pyg.nn.sparse import (SparseAdj, csr_from_edge_index, csr_mm, series_rows, spmm,
                                 to_csr)


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


def neumann_smooth(x: Tensor, propagate: Union[SparseAdj, Callable[[Tensor], Tensor]],
                   weight: Tensor, num_layers: int, index: OptTensor = None) -> Tensor:
    r"""The normalised, truncated Neumann series with per-channel weights :math:`w`,

    .. math::
        \mathbf{Y} = \Big(\sum_{l=0}^{L} w^l\Big)^{-1} \odot
        \sum_{l=0}^{L} (w \odot \hat{\mathbf{A}})^l \mathbf{X}
        = \frac{1 - w}{1 - w^{L+1}} \odot \sum_{l=0}^{L} (w \odot \hat{\mathbf{A}})^l
        \mathbf{X},

    where :math:`w \odot \hat{\mathbf{A}}` multiplies channel :math:`j` of every propagated signal
    by :math:`w_j`. The normaliser is computed as :math:`1 / \sum_l w_j^l` (in float64), which
    equals :math:`(1 - w_j) / (1 - w_j^{L+1})` and is also right at :math:`w_j = 1` (the limit:
    the plain average :math:`\frac{1}{L+1}\sum_l \hat{\mathbf{A}}^l \mathbf{X}`).

    STAIR's forward stepwise convolution is this series with :math:`w = \beta` (see
    :func:`stepwise_beta`); its backward stepwise convolution smooths the Adam direction with
    :math:`w = 1 - \beta`.

    Args:
        x (torch.Tensor): Signals :math:`\mathbf{X}` ``[N, d]``.
        propagate (SparseAdj or callable): :math:`\hat{\mathbf{A}}`, or a function returning
            :math:`\hat{\mathbf{A}} \mathbf{H}` for ``[N, d]`` input.
        weight (torch.Tensor): Per-channel weights :math:`w` ``[d]``, taken as constants (no
            gradient flows to them).
        num_layers (int): :math:`L \geq 0`.
        index (torch.Tensor, optional): Return only these rows of :math:`\mathbf{Y}`. With a
            :class:`SparseAdj`, each hop then multiplies only the rows that these outputs
            depend on (:func:`~stair_pyg.nn.sparse.series_rows`), which is what a mini-batch
            loss needs: the result and its gradient are those of the full series, at a
            fraction of the cost. (default: :obj:`None`, all rows)
    """
    if num_layers < 0:
        raise ValueError(f"'num_layers' must be non-negative, got {num_layers}")
    if weight.dim() != 1 or weight.numel() != x.size(-1):
        raise ValueError(f"expected one weight per channel ({x.size(-1)}), got weight of shape "
                         f"{tuple(weight.shape)}")
    # The channel weights commute with the propagation (they scale columns, the adjacency mixes
    # rows): (w * A)^l X = (A^l X) * w^l. So hop l is A applied l times to X, scaled once by
    # c_l = w^l / sum_k w^k, and accumulated in one fused multiply-add.
    w64 = weight.detach().to(torch.float64)
    powers = [torch.ones_like(w64)]
    for _ in range(num_layers):
        powers.append(powers[-1] * w64)
    total = torch.stack(powers).sum(dim=0)
    if bool((total == 0).any()):
        raise ValueError("the normaliser sum_l w^l vanishes for some channel (w = -1 with an odd "
                         "number of layers)")
    coefs = [(power / total).to(dtype=x.dtype, device=x.device) for power in powers]

    if index is not None and isinstance(propagate, SparseAdj):
        return series_rows(x, propagate, coefs, index)
    if isinstance(propagate, SparseAdj):
        propagate = partial(spmm, propagate)
    out = x * coefs[0]
    h = x
    for layer in range(1, num_layers + 1):
        h = propagate(h)
        # In place: out is this function's own tensor, and addcmul's backward needs only h and
        # the constant coefficient, so autograd is unaffected; no new [N, d] tensor per hop.
        out.addcmul_(h, coefs[layer])
    return out if index is None else out[index]


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

    The adjacency may be given in every form of PyG's :obj:`Adj`: an :obj:`edge_index` tensor
    (normalised with :func:`~torch_geometric.nn.conv.gcn_norm` and propagated by message passing,
    so that :obj:`edge_weight` can be learnt), an :class:`~torch_geometric.EdgeIndex`, a
    :obj:`torch.sparse` matrix (COO, CSR or CSC; like every PyG layer it is read as the transposed
    adjacency :obj:`adj_t`), a :class:`torch_sparse.SparseTensor` (where :obj:`torch-sparse` is
    installed), or an already normalised :class:`~stair_pyg.nn.sparse.SparseAdj` (used as it is).
    All give the same result. :class:`~torch_geometric.EdgeIndex` and sparse inputs are normalised
    once per call (once in all with :obj:`cached=True`) into a CSR matrix whose backward pass uses
    a stored transpose instead of re-transposing at every layer; their edge values receive no
    gradient on that path (values that require a gradient fall back to message passing).

    Args:
        channels (int): Number of channels :math:`d`.
        num_layers (int, optional): Number of propagation hops :math:`L`. (default: :obj:`3`)
        gamma (float, optional): The exponent :math:`\gamma` of :func:`stepwise_beta`.
            (default: :obj:`0.1`)
        beta (torch.Tensor, optional): Per-channel weights ``[channels]`` that override
            :func:`stepwise_beta`. (default: :obj:`None`)
        normalize (bool, optional): Whether to normalise the adjacency symmetrically. Set to
            :obj:`False` for an adjacency that is normalised already. (default: :obj:`True`)
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
          edge weights :math:`(|\mathcal{E}|)` *(optional)*
        - **output:** node features :math:`(|\mathcal{V}|, d)`
    """

    beta: Tensor
    _cached_edge_index: Optional[Tuple[Tensor, OptTensor]]
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
        self._cached_edge_index = None
        self._cached_adj = None
        self.reset_parameters()

    def reset_parameters(self):
        super().reset_parameters()
        self._cached_edge_index = None
        self._cached_adj = None

    def forward(self, x: Tensor, edge_index: Union[Adj, SparseAdj],
                edge_weight: OptTensor = None, index: OptTensor = None) -> Tensor:
        r"""Runs the forward pass.

        Args:
            x (torch.Tensor): Node features ``[N, d]``.
            edge_index (Adj or SparseAdj): The graph, in any of the forms above.
            edge_weight (torch.Tensor, optional): Edge weights of an :obj:`edge_index` tensor.
            index (torch.Tensor, optional): Return only these rows (for example the nodes of a
                training batch). On the sparse paths every hop then computes only the rows
                that they depend on (see :func:`neumann_smooth`); message passing computes
                every row and selects. (default: :obj:`None`)
        """
        if x.dim() != 2 or x.size(-1) != self.channels:
            raise ValueError(f"expected node features of shape [N, {self.channels}], got "
                             f"{tuple(x.shape)}")
        num_nodes = x.size(0)

        if isinstance(edge_index, SparseAdj):
            if edge_index.shape != (num_nodes, num_nodes):
                raise ValueError(f"adjacency of shape {edge_index.shape} does not match "
                                 f"{num_nodes} nodes")
            return neumann_smooth(x, edge_index, self.beta, self.num_layers, index)

        if self._use_fast_path(edge_index, edge_weight):
            adj = self._cached_adj
            if adj is None:
                csr = self._normalized_csr(edge_index, edge_weight, num_nodes, x.dtype)
                if self.cached or (torch.is_grad_enabled() and x.requires_grad):
                    # One transpose (or a symmetry check) here instead of one per layer backward.
                    adj = SparseAdj(csr)
                    if self.cached:
                        self._cached_adj = adj
                else:  # no backward pass: the transpose is never needed
                    return neumann_smooth(x, partial(csr_mm, csr), self.beta,
                                          self.num_layers, index)
            return neumann_smooth(x, adj, self.beta, self.num_layers, index)

        # Message passing: a plain edge_index, or an adjacency whose values require a gradient
        # (turned into the edge list it stands for, keeping the values differentiable).
        if is_torch_sparse_tensor(edge_index) or isinstance(edge_index, SparseTensor):
            if edge_weight is not None:
                raise ValueError("'edge_weight' must be None for a sparse adjacency (its values "
                                 "are the edge weights)")
            if edge_index.size(0) != num_nodes or edge_index.size(1) != num_nodes:
                raise ValueError(f"adjacency of shape {tuple(edge_index.size())} does not match "
                                 f"{num_nodes} nodes")
            edge_index, edge_weight = _sparse_to_edges(edge_index, self.flow)
        elif isinstance(edge_index, EdgeIndex):
            edge_index = edge_index.as_tensor()
        cache = self._cached_edge_index
        if cache is None:
            if self.normalize:
                edge_index, edge_weight = _gcn_norm(edge_index, edge_weight, num_nodes,
                                                    self.flow, x.dtype)
            if self.cached:
                self._cached_edge_index = (edge_index, edge_weight)
        else:
            edge_index, edge_weight = cache

        def propagate(h: Tensor) -> Tensor:
            # propagate_type: (x: Tensor, edge_weight: OptTensor)
            return self.propagate(edge_index, x=h, edge_weight=edge_weight)

        return neumann_smooth(x, propagate, self.beta, self.num_layers, index)

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def __repr__(self) -> str:
        gamma = "custom beta" if self.gamma is None else f"gamma={self.gamma}"
        return (f"{self.__class__.__name__}({self.channels}, num_layers={self.num_layers}, "
                f"{gamma})")

    # Helpers ###############################################################################

    def _use_fast_path(self, edge_index: Adj, edge_weight: OptTensor) -> bool:
        if self._cached_adj is not None:
            return True
        if self._cached_edge_index is not None:
            return False
        if isinstance(edge_index, EdgeIndex):
            return edge_weight is None or not edge_weight.requires_grad
        if is_torch_sparse_tensor(edge_index):
            return not edge_index.requires_grad
        if isinstance(edge_index, SparseTensor):
            value = edge_index.storage.value()
            return value is None or not value.requires_grad
        return False

    def _normalized_csr(self, edge_index: Adj, edge_weight: OptTensor, num_nodes: int,
                        dtype: torch.dtype) -> Tensor:
        r"""The (normalised) matrix :obj:`adj_t` that multiplies the features, as CSR."""
        if isinstance(edge_index, EdgeIndex):
            if edge_index.sparse_size(0) not in (None, num_nodes) or \
                    edge_index.sparse_size(1) not in (None, num_nodes):
                raise ValueError(f"EdgeIndex of sparse size {edge_index.sparse_size()} does not "
                                 f"match {num_nodes} nodes")
            ei = edge_index.as_tensor()
            src, dst = (ei[0], ei[1]) if self.flow == "source_to_target" else (ei[1], ei[0])
            if edge_weight is not None:
                edge_weight = edge_weight.detach().to(dtype)
            csr = csr_from_edge_index(torch.stack([dst, src]), edge_weight,
                                      (num_nodes, num_nodes))
            csr = csr.to(dtype)
        else:
            if edge_weight is not None:
                raise ValueError("'edge_weight' must be None for a sparse adjacency (its values "
                                 "are the edge weights)")
            if isinstance(edge_index, SparseTensor):
                if not edge_index.has_value():
                    edge_index = edge_index.fill_value(1.0, dtype=dtype)
                csr = edge_index.to_torch_sparse_csr_tensor(dtype=dtype)
            else:
                csr = to_csr(edge_index).to(dtype)
            if tuple(csr.shape) != (num_nodes, num_nodes):
                raise ValueError(f"adjacency of shape {tuple(csr.shape)} does not match "
                                 f"{num_nodes} nodes")
        if not self.normalize:
            return csr
        crow, col, value = csr.crow_indices(), csr.col_indices(), csr.values()
        row = torch.repeat_interleave(torch.arange(num_nodes, device=crow.device),
                                      crow[1:] - crow[:-1])
        # In-degrees (row sums of adj_t), as gcn_norm computes them.
        deg = torch.zeros(num_nodes, dtype=value.dtype, device=value.device)
        deg.index_add_(0, row, value)
        deg_inv_sqrt = deg.pow(-0.5)
        deg_inv_sqrt.masked_fill_(torch.isinf(deg_inv_sqrt), 0.0)
        value = deg_inv_sqrt[row] * value * deg_inv_sqrt[col]
        return torch.sparse_csr_tensor(crow, col, value, (num_nodes, num_nodes),
                                       check_invariants=False)


def _gcn_norm(edge_index: Tensor, edge_weight: OptTensor, num_nodes: int, flow: str,
              dtype: torch.dtype) -> Tuple[Tensor, OptTensor]:
    r""":func:`gcn_norm` without self-loops."""
    return gcn_norm(edge_index, edge_weight, num_nodes, add_self_loops=False, flow=flow,
                    dtype=dtype)


def _sparse_to_edges(adj_t: Union[Tensor, SparseTensor], flow: str) -> Tuple[Tensor, Tensor]:
    r"""The edge list ``(edge_index, edge_weight)`` that a sparse :obj:`adj_t` stands for under
    :obj:`flow`, differentiable in the values (duplicates of a COO matrix are summed)."""
    if isinstance(adj_t, SparseTensor):
        row, col, value = adj_t.coo()
        if value is None:
            value = torch.ones(row.numel(), device=row.device)
    else:
        if adj_t.layout == torch.sparse_coo:
            adj_t = adj_t.coalesce()
            row, col = adj_t.indices()
        else:
            adj_t = to_csr(adj_t)
            crow = adj_t.crow_indices()
            row = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device),
                                          crow[1:] - crow[:-1])
            col = adj_t.col_indices()
        value = adj_t.values()
    # adj_t[i, j] is the weight of the message j -> i.
    edge_index = torch.stack([col, row]) if flow == "source_to_target" else \
        torch.stack([row, col])
    return edge_index, value


__all__ = ["stepwise_beta", "neumann_smooth", "StepwiseConv"]

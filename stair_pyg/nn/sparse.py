r"""The one graph representation of the library: :class:`SparseAdj`, a CSR matrix with its
transpose, built from any PyG adjacency by :func:`to_sparse_adj`, normalised by
:func:`gcn_normalize`, held by a model as a :class:`SparseAdjBuffer` (which follows
``model.to(device)`` and stays out of the ``state_dict``). Every model, :class:`StepwiseConv`
and :class:`~stair_pyg.optim.StepwiseAdamW` use it.

``torch.sparse.mm(A, X)`` differentiates with respect to ``X`` by forming :math:`A^\top` inside
every backward call, which sorts all non-zeros each time. :class:`SparseAdj` forms the transpose
once (or reuses :math:`A` itself when the matrix is symmetric, as the normalised user-item
adjacency is) and :func:`spmm` uses it in the backward pass.

A mini-batch loss needs only some rows of a propagation: :func:`receptive_field` cuts the hops
down to the submatrices those rows depend on, and :func:`series_rows` runs them, forward and
backward.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable
from torch_geometric import EdgeIndex
from torch_geometric.typing import Adj, OptTensor, SparseTensor

from stair_pyg.nn import cpu_kernel


def _consume_csr_notice() -> None:
    r"""torch warns once per process, at its first CSR tensor, that CSR support is "in beta";
    CSR is the layout this module is built on, so the notice says nothing to a user. One 1 x 1
    CSR tensor made here, at import, with the notice silenced, uses up that one warning, so that
    no later CSR tensor shows it (and no call needs a ``catch_warnings``, about 3 µs each, at
    18 a training step)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        torch.sparse_csr_tensor(torch.tensor([0, 1]), torch.tensor([0]), torch.tensor([1.0]),
                                (1, 1), check_invariants=False)


_consume_csr_notice()


class _SpMM(torch.autograd.Function):
    r""":math:`Y = A X`, differentiable in :math:`X` only, with a precomputed :math:`A^\top`."""

    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj_t = adj_t
        return csr_mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, None, csr_mm(ctx.adj_t, grad.contiguous())


def csr_mm(adj: Tensor, x: Tensor, add: OptTensor = None, coef: OptTensor = None) -> Tensor:
    r""":math:`A X` for a CSR matrix :math:`A`, written straight into a fresh output, plus
    :math:`c \odot Y` for :obj:`add` :math:`Y` (rows as the output) and :obj:`coef`
    :math:`c` (one weight per channel, or one for all; needed with :obj:`add`) where given: the
    library's one sparse product (no gradient; :func:`spmm` and :func:`series_rows` wrap it).

    On the CPU it runs the numba kernel of :mod:`stair_pyg.nn.cpu_kernel` where that module
    chooses it, the add in the same pass over the rows. Otherwise ``addmm``: with ``beta=0``
    into an uninitialised ``out`` where nothing is added (``torch.sparse.mm`` would zero-fill
    its result and copy it once more, a third of the time of a CPU product; ``beta=0`` ignores
    the old content, NaN included), onto :math:`c \odot Y` where something is.
    """
    if adj.layout != torch.sparse_csr or x.dim() != 2:
        out = torch.sparse.mm(adj, x)
        return out if add is None else out.addcmul_(add, coef)
    if cpu_kernel.supports(adj, x):
        return cpu_kernel.csr_mm_numba(adj, x, add, coef)
    if add is not None:
        return torch.addmm(add * coef, adj, x)
    out = torch.empty(adj.size(0), x.size(1), dtype=x.dtype, device=x.device)
    return torch.addmm(out, adj, x, beta=0.0, out=out)


class SparseAdj:
    r"""A sparse matrix in CSR layout together with its transpose (in CSR as well).

    Args:
        adj (torch.Tensor): A :obj:`torch.sparse_csr` (or COO/CSC, converted) matrix ``[M, N]``.
        adj_t (torch.Tensor, optional): Its transpose ``[N, M]`` in CSR. If :obj:`None`, it is
            formed here when :obj:`symmetric` is :obj:`None` (to check), taken to be :obj:`adj`
            when :obj:`symmetric` is :obj:`True`, and formed on first use of :attr:`adj_t`
            when :obj:`symmetric` is :obj:`False` (:func:`csr_mm_t` may never need it).
        symmetric (bool, optional): Whether :obj:`adj` equals its transpose, so that the backward
            pass can reuse it. :obj:`None` checks. (default: :obj:`None`)
    """

    def __init__(self, adj: Tensor, adj_t: Optional[Tensor] = None,
                 symmetric: Optional[bool] = None):
        adj = to_csr(adj)
        if adj_t is None and symmetric is None:
            adj_t = transpose_csr(adj)
            symmetric = _same_csr(adj, adj_t)
        elif symmetric is None:
            symmetric = adj_t is adj
        if symmetric and adj_t is None:
            adj_t = adj
        self.adj = adj
        self._adj_t = None if adj_t is None else to_csr(adj_t)
        self.symmetric = bool(symmetric)

    @property
    def adj_t(self) -> Tensor:
        r"""The transpose ``[N, M]`` in CSR (formed on first use where it was not given)."""
        if self._adj_t is None:
            self._adj_t = transpose_csr(self.adj)
        return self._adj_t

    @property
    def shape(self) -> Tuple[int, int]:
        return tuple(self.adj.shape)  # type: ignore[return-value]

    def nnz(self) -> int:
        return int(self.adj._nnz())

    def matmul(self, x: Tensor) -> Tensor:
        r"""Returns :math:`A X`, differentiable with respect to :math:`X`."""
        return spmm(self, x)

    __matmul__ = matmul

    def t(self) -> "SparseAdj":
        return SparseAdj(self.adj_t, self.adj, symmetric=self.symmetric)

    def to(self, *args, **kwargs) -> "SparseAdj":
        adj = self.adj.to(*args, **kwargs)
        adj_t = adj if self.symmetric else \
            None if self._adj_t is None else self._adj_t.to(*args, **kwargs)
        return SparseAdj(adj, adj_t, symmetric=self.symmetric)

    def to_dense(self) -> Tensor:
        return self.adj.to_dense()

    def __repr__(self) -> str:
        return (f"SparseAdj(shape={self.shape}, nnz={self.nnz()}, symmetric={self.symmetric}, "
                f"device={self.adj.device})")


def spmm(adj: SparseAdj, x: Tensor) -> Tensor:
    r"""Sparse-dense product :math:`A X` whose backward uses the stored :math:`A^\top`.

    The values of :math:`A` receive no gradient; use PyG's message passing for learnable edge
    weights.
    """
    if torch.is_grad_enabled() and x.requires_grad:
        return _SpMM.apply(adj.adj, adj.adj_t, x)
    return csr_mm(adj.adj, x)


def csr_mm_t(adj: SparseAdj, g: Tensor) -> Tensor:
    r""":math:`A^\top G` (no gradient): the product with the stored transpose, or, where the
    transpose has not been formed and the numba kernel runs, one pass over the rows of
    :math:`A` that scatters into the output, so that no transpose is formed at all (the
    row-restricted hops of :func:`receptive_field`, new with every batch)."""
    if adj._adj_t is None and cpu_kernel.supports(adj.adj, g):
        return cpu_kernel.csr_mm_t_numba(adj.adj, g)
    return csr_mm(adj.adj_t, g.contiguous())


def receptive_field(adj: SparseAdj, index: Tensor, num_layers: int, max_fraction: float = 0.5
                    ) -> Tuple[List[SparseAdj], List[Tensor]]:
    r"""The part of :math:`A` that rows :obj:`index` of :math:`\sum_{l=0}^{L} c_l A^l X` depend
    on (any per-channel :math:`c_l`), hop by hop: what a mini-batch loss needs from a full-graph
    propagation.

    Hop :math:`L` is needed on the rows :math:`R_L` = :obj:`index`; hop :math:`l < L` on
    :math:`R_l = R_L \cup \mathcal{N}(R_{l+1})`, the output rows plus every column a row of
    :math:`R_{l+1}` reads. Hop :math:`l` is returned as the submatrix
    :math:`A[R_l, R_{l-1}]` (rows and columns renumbered in sorted node order; its transpose
    for the backward pass is formed only where :func:`csr_mm_t` needs one), so that
    :math:`H_l = A[R_l, R_{l-1}] H_{l-1}` holds the exact rows :math:`R_l` of :math:`A^l X`, and
    forward and backward cost only the non-zeros of those rows. Once a hop's rows hold more than
    :obj:`max_fraction` of the non-zeros, that hop and every earlier one use all of :obj:`adj`
    (:math:`R_l` = every node). On ``sports`` with a batch of 1,024 triples (3,072 nodes), hop 3
    touches about 12% of the non-zeros and hop 2 69%. Each hop's rows are found and gathered in
    one pass of the numba kernel where it is selected
    (:func:`~stair_pyg.nn.cpu_kernel.gather_member_rows`), else with torch's operations.

    Args:
        adj (SparseAdj): Square :math:`A` ``[N, N]``.
        index (torch.Tensor): The output rows (any order, repeats allowed).
        num_layers (int): :math:`L`.
        max_fraction (float, optional): See above. (default: :obj:`0.5`)

    Returns:
        ``(hops, positions)``: :math:`L` matrices for hops :math:`1, \dots, L`, and for
        :math:`l = 0, \dots, L` where the rows :obj:`index` sit in :math:`H_l`.
    """
    n = adj.adj.size(0)
    if adj.adj.size(1) != n:
        raise ValueError(f"expected a square matrix, got shape {tuple(adj.shape)}")
    index = index.to(device=adj.adj.device, dtype=torch.long)
    crow, col, val = adj.adj.crow_indices(), adj.adj.col_indices(), adj.adj.values()
    # index_select / index_fill_ / index_copy_ throughout, not advanced indexing (x[i],
    # x[i] = v): on CPU those cost several times as much, and this runs every batch.
    wanted = torch.zeros(n, dtype=torch.bool, device=col.device).index_fill_(0, index, True)

    # Rows of each hop, from the last one back; None: every node.
    rows: List[Optional[Tensor]] = [None] * (num_layers + 1)
    gathered: List[Optional[Tuple[Tensor, Tensor, Tensor]]] = [None] * (num_layers + 1)
    member = wanted
    for layer in range(num_layers, 0, -1):
        found = _member_rows(crow, col, val, member, wanted,
                             max_fraction * max(col.numel(), 1))
        if found is None:
            break
        rows[layer], gathered[layer], member = found

    def positions_of(nodes: Optional[Tensor]) -> Optional[Tensor]:
        if nodes is None:
            return None
        pos = torch.full((n,), -1, dtype=torch.long, device=col.device)
        return pos.index_copy_(0, nodes, torch.arange(nodes.numel(), device=col.device))

    pos = [positions_of(nodes) for nodes in rows]
    hops: List[SparseAdj] = []
    for layer in range(1, num_layers + 1):
        if rows[layer] is None:
            hops.append(adj)
            continue
        sub_crow, sub_col, sub_val = gathered[layer]
        if pos[layer - 1] is not None:  # N(R_l) lies in R_{l-1}: every column has a position
            sub_col = pos[layer - 1].index_select(0, sub_col).to(sub_crow.dtype)
        size = (rows[layer].numel(), n if rows[layer - 1] is None else rows[layer - 1].numel())
        # The transpose for the backward pass is formed only if csr_mm_t needs it.
        hops.append(SparseAdj(_csr(sub_crow, sub_col, sub_val, size), symmetric=False))
    positions = [index if p is None else p.index_select(0, index) for p in pos]
    return hops, positions


class _SeriesRows(torch.autograd.Function):
    r"""Rows of :math:`\sum_l c_l \odot A^l X` over the hops of :func:`receptive_field`.

    The backward pass runs the hops in reverse through their transposes (:func:`csr_mm_t`) and
    adds each hop's share of the output gradient in place, so no full-size zero buffer or extra
    sum is formed per hop (autograd through gathers would form both)."""

    @staticmethod
    def forward(ctx, x: Tensor, hops: List[SparseAdj], positions: List[Tensor],  # type: ignore
                product: Callable[[SparseAdj, Tensor], Tensor], *coefs: Tensor) -> Tensor:
        out = x.new_zeros(positions[0].numel(), x.size(1))
        cpu_kernel.add_gathered_rows_(out, x, positions[0], coefs[0])
        h = x
        for hop, pos, coef in zip(hops, positions[1:], coefs[1:]):
            h = product(hop, h)
            cpu_kernel.add_gathered_rows_(out, h, pos, coef)
        ctx.hops, ctx.positions, ctx.coefs = hops, positions, coefs
        ctx.num_nodes = x.size(0)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        hops, positions, coefs = ctx.hops, ctx.positions, ctx.coefs
        rows = hops[-1].shape[0] if hops else ctx.num_nodes
        grad = grad.contiguous()
        g = grad.new_zeros(rows, grad.size(1))
        cpu_kernel.add_scattered_rows_(g, positions[-1], grad, coefs[-1])
        for layer in range(len(hops), 0, -1):
            g = csr_mm_t(hops[layer - 1], g)
            cpu_kernel.add_scattered_rows_(g, positions[layer - 1], grad, coefs[layer - 1])
        return (g, None, None, None) + (None,) * len(coefs)


def series_rows(x: Tensor, adj: SparseAdj, coefs: List[Tensor], index: Tensor,
                max_fraction: float = 0.5,
                hop: Optional[Callable[[SparseAdj, Tensor], Tensor]] = None) -> Tensor:
    r"""Rows :obj:`index` of :math:`\sum_{l=0}^{L} c_l \odot A^l X`, differentiable in
    :math:`X`, computing only what those rows depend on (:func:`receptive_field`).

    The propagation of :func:`~stair_pyg.nn.neumann_smooth` (:math:`c_l = w^l / \sum_k w^k`;
    LightGCN's :math:`c_l = 1/(L+1)` at :math:`w = 1`) restricted to a mini-batch: a BPR loss
    over a batch of triples needs the output rows of its users and items only.

    Args:
        x (torch.Tensor): :math:`X` ``[N, d]``.
        adj (SparseAdj): Square :math:`A` ``[N, N]``.
        coefs (List[torch.Tensor]): :math:`c_0, \dots, c_L`, each ``[d]`` (constants).
        index (torch.Tensor): The output rows (any order, repeats allowed).
        max_fraction (float, optional): See :func:`receptive_field`. (default: :obj:`0.5`)
        hop (callable, optional): The forward product :math:`(A, H) \mapsto A H` of one hop
            (run without autograd; the backward pass uses the stored transposes).
            (default: :func:`spmm`)

    Returns:
        ``[len(index), d]``.
    """
    hops, positions = receptive_field(adj, index, len(coefs) - 1, max_fraction)
    return _SeriesRows.apply(x, hops, positions, spmm if hop is None else hop, *coefs)


def _member_rows(crow: Tensor, col: Tensor, val: Tensor, member: Tensor, wanted: Tensor,
                 max_nnz: float) -> Optional[Tuple[Tensor, Tuple[Tensor, Tensor, Tensor], Tensor]]:
    r"""The rows :obj:`member` marks, their CSR arrays, and :obj:`wanted` with every column they
    read marked too; :obj:`None` where they hold more than :obj:`max_nnz` non-zeros. One numba
    pass where the kernel is selected (:func:`~stair_pyg.nn.cpu_kernel.gather_member_rows`),
    else torch's operations."""
    if cpu_kernel.supports_member_rows(crow, col, val):
        return cpu_kernel.gather_member_rows(crow, col, val, member, wanted, max_nnz)
    nodes = member.nonzero().squeeze(1)
    count = crow.index_select(0, nodes + 1) - crow.index_select(0, nodes)
    if int(count.sum()) > max_nnz:
        return None
    sub = _gather_rows(crow, col, val, nodes)
    return nodes, sub, wanted.clone().index_fill_(0, sub[1].long(), True)


def _gather_rows(crow: Tensor, col: Tensor, val: Tensor,
                 rows: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The CSR arrays ``(crow (int64), col, val)`` of the given rows of a CSR matrix."""
    start = crow.index_select(0, rows).long()
    count = crow.index_select(0, rows + 1).long() - start
    new_crow = torch.zeros(rows.numel() + 1, dtype=torch.long, device=col.device)
    torch.cumsum(count, 0, out=new_crow[1:])
    total = int(new_crow[-1])
    ptr = torch.arange(total, device=col.device) + torch.repeat_interleave(
        start - new_crow[:-1], count, output_size=total)
    return new_crow, col.index_select(0, ptr), val.index_select(0, ptr)


def _transpose_arrays(crow: Tensor, col: Tensor, val: Tensor,
                      num_cols: int) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The CSR arrays of the transpose: one stable sort by column (rows stay ordered within each
    new row), no coalescing."""
    order = torch.argsort(col, stable=True)
    new_crow = torch.zeros(num_cols + 1, dtype=torch.long, device=col.device)
    torch.cumsum(torch.bincount(col, minlength=num_cols), 0, out=new_crow[1:])
    row = torch.repeat_interleave(torch.arange(crow.numel() - 1, device=col.device),
                                  crow[1:] - crow[:-1], output_size=col.numel())
    return new_crow, row[order], val[order]


def _csr(crow: Tensor, col: Tensor, val: Tensor, shape: Tuple[int, int]) -> Tensor:
    return to_csr(torch.sparse_csr_tensor(crow, col, val, shape, check_invariants=False))


def to_csr(adj: Tensor) -> Tensor:
    r"""Converts a torch sparse tensor (COO, CSR or CSC) to CSR with 32-bit indices where they
    fit (the index type the sparse BLAS kernels use, so no conversion happens per product)."""
    if adj.layout == torch.sparse_coo:
        adj = adj.coalesce().to_sparse_csr()
    elif adj.layout == torch.sparse_csc:
        adj = adj.to_sparse_csr()
    elif adj.layout != torch.sparse_csr:
        raise TypeError(f"expected a torch sparse tensor, got layout {adj.layout}")
    if adj.crow_indices().dtype == torch.int64 and adj._nnz() < 2 ** 31 - 1 and \
            max(adj.shape) < 2 ** 31 - 1:
        adj = torch.sparse_csr_tensor(adj.crow_indices().int(), adj.col_indices().int(),
                                      adj.values(), adj.shape, check_invariants=False)
    return adj


def transpose_csr(adj: Tensor) -> Tensor:
    r"""The transpose of a CSR matrix, in CSR layout (one sort of the non-zeros)."""
    return _csr(*_transpose_arrays(adj.crow_indices(), adj.col_indices(), adj.values(),
                                   adj.size(1)), (adj.size(1), adj.size(0)))


def _same_csr(a: Tensor, b: Tensor) -> bool:
    if a.shape != b.shape or a._nnz() != b._nnz():
        return False
    return (torch.equal(a.crow_indices(), b.crow_indices())
            and torch.equal(a.col_indices(), b.col_indices())
            and torch.allclose(a.values(), b.values(), rtol=1e-6, atol=1e-12))


def csr_from_edge_index(edge_index: Tensor, edge_weight: Optional[Tensor],
                        size: Tuple[int, int]) -> Tensor:
    r"""CSR matrix with ``A[edge_index[0], edge_index[1]] = edge_weight`` (duplicates summed)."""
    if edge_weight is None:
        edge_weight = torch.ones(edge_index.size(1), device=edge_index.device)
    coo = torch.sparse_coo_tensor(edge_index, edge_weight, size, check_invariants=False)
    return to_csr(coo)


def csr_rows(adj: Tensor) -> Tensor:
    r"""The row index of every non-zero of a CSR matrix (the COO rows)."""
    crow = adj.crow_indices()
    return torch.repeat_interleave(torch.arange(crow.numel() - 1, device=crow.device),
                                   crow[1:] - crow[:-1], output_size=adj._nnz())


def symmetric_norm(row: Tensor, col: Tensor, value: Tensor, num_nodes: int) -> Tensor:
    r"""The values of :math:`D^{-1/2} A D^{-1/2}` for the non-zeros ``A[row, col] = value``,
    with :math:`D` the row sums of :math:`A` (for a PyG ``adj_t``, whose rows receive, the
    in-degrees, as :func:`~torch_geometric.nn.conv.gcn_norm` computes them). Zero-degree rows
    stay zero. Differentiable in :obj:`value`.

    This is the library's one normaliser; :func:`gcn_normalize` applies it to a matrix."""
    deg = torch.zeros(num_nodes, dtype=value.dtype, device=value.device)
    deg = deg.index_add(0, row, value)
    deg_inv_sqrt = deg.pow(-0.5)
    deg_inv_sqrt = deg_inv_sqrt.masked_fill(torch.isinf(deg_inv_sqrt), 0.0)
    # The product of the two scales first, so that entries (i, j) and (j, i) of a symmetric
    # matrix come out bit-identical.
    return deg_inv_sqrt[row] * deg_inv_sqrt[col] * value


def gcn_normalize(adj: Tensor) -> Tensor:
    r""":math:`D^{-1/2} A D^{-1/2}` of a square CSR matrix :math:`A` (:func:`symmetric_norm`),
    as CSR with the same structure."""
    value = symmetric_norm(csr_rows(adj), adj.col_indices().long(), adj.values(), adj.size(0))
    return _csr(adj.crow_indices(), adj.col_indices(), value, tuple(adj.shape))


def to_sparse_adj(adj: Union[Adj, "SparseAdj"], num_nodes: Optional[int] = None,
                  edge_weight: OptTensor = None, flow: str = "source_to_target",
                  normalize: bool = False, dtype: Optional[torch.dtype] = None,
                  symmetric: Optional[bool] = None) -> "SparseAdj":
    r"""The one way from any PyG adjacency to a :class:`SparseAdj` :math:`A` whose row
    :math:`i` holds the weights of the messages node :math:`i` receives (PyG's ``adj_t``), so
    that one hop is :math:`A X`.

    Args:
        adj (Adj or SparseAdj): An :obj:`edge_index` tensor ``[2, E]`` or
            :class:`~torch_geometric.EdgeIndex` (with :obj:`edge_weight`; under :obj:`flow`
            ``"source_to_target"`` node ``edge_index[1]`` receives from ``edge_index[0]``);
            a torch sparse matrix (COO, CSR or CSC) or :class:`torch_sparse.SparseTensor`,
            read as ``adj_t`` like every PyG layer does; or a :class:`SparseAdj` (returned as
            it is, normalised if asked).
        num_nodes (int, optional): Number of nodes of an edge list (default: from the graph).
        edge_weight (torch.Tensor, optional): Weights of an edge list (default: ones);
            detached, as :class:`SparseAdj` values receive no gradient.
        flow (str, optional): ``"source_to_target"`` or ``"target_to_source"``.
        normalize (bool, optional): Apply :func:`gcn_normalize`. (default: :obj:`False`)
        dtype (torch.dtype, optional): Value dtype (default: the input's, float32 for ones).
        symmetric (bool, optional): Passed to :class:`SparseAdj` (:obj:`None` checks).
    """
    if isinstance(adj, SparseAdj):
        out = adj
    else:
        if isinstance(adj, SparseTensor):
            if edge_weight is not None:
                raise ValueError("'edge_weight' must be None for a sparse adjacency (its values "
                                 "are the edge weights)")
            if not adj.has_value():
                adj = adj.fill_value(1.0, dtype=dtype or torch.get_default_dtype())
            csr = to_csr(adj.to_torch_sparse_csr_tensor())
        elif isinstance(adj, Tensor) and adj.layout != torch.strided:
            if edge_weight is not None:
                raise ValueError("'edge_weight' must be None for a sparse adjacency (its values "
                                 "are the edge weights)")
            csr = to_csr(adj.detach())
        else:
            if isinstance(adj, EdgeIndex):
                if num_nodes is None and adj.sparse_size(0) is not None:
                    num_nodes = max(adj.sparse_size(0), adj.sparse_size(1) or 0)
                elif num_nodes is not None and (adj.sparse_size(0) not in (None, num_nodes) or
                                                adj.sparse_size(1) not in (None, num_nodes)):
                    raise ValueError(f"EdgeIndex of sparse size {adj.sparse_size()} does not "
                                     f"match {num_nodes} nodes")
                adj = adj.as_tensor()
            if adj.dim() != 2 or adj.size(0) != 2:
                raise ValueError(f"edge_index must have shape [2, E], got {tuple(adj.shape)}")
            if num_nodes is None:
                num_nodes = int(adj.max()) + 1 if adj.numel() > 0 else 0
            elif adj.numel() > 0 and (int(adj.min()) < 0 or int(adj.max()) >= num_nodes):
                raise ValueError(f"edge_index refers to node {int(adj.max())} (or a negative "
                                 f"one) but the graph has {num_nodes} nodes")
            src, dst = (adj[0], adj[1]) if flow == "source_to_target" else (adj[1], adj[0])
            weight = None if edge_weight is None else edge_weight.detach()
            csr = csr_from_edge_index(torch.stack([dst, src]), weight, (num_nodes, num_nodes))
        if dtype is not None and csr.dtype != dtype:
            csr = _csr(csr.crow_indices(), csr.col_indices(), csr.values().to(dtype),
                       tuple(csr.shape))
        if num_nodes is not None and tuple(csr.shape) != (num_nodes, num_nodes):
            raise ValueError(f"adjacency of shape {tuple(csr.shape)} does not match "
                             f"{num_nodes} nodes")
        out = SparseAdj(gcn_normalize(csr) if normalize else csr, symmetric=symmetric)
        return out
    if normalize:
        out = SparseAdj(gcn_normalize(out.adj), symmetric=out.symmetric or None)
    return out


def user_item_adjacency(edge_index: Tensor, num_users: int, num_items: int,
                        edge_weight: Optional[Tensor] = None) -> SparseAdj:
    r"""The symmetric-normalised adjacency of the bipartite user-item graph.

    Users are nodes ``0..U-1`` and items ``U..U+I-1``:

    .. math::
        \hat{A} = D^{-1/2} \begin{pmatrix} 0 & R \\ R^\top & 0 \end{pmatrix} D^{-1/2}

    Duplicate interactions are summed; isolated nodes get zero rows.

    Args:
        edge_index (torch.Tensor): Interactions ``[2, E]`` (user ids, item ids).
        num_users (int): Number of users :math:`U`.
        num_items (int): Number of items :math:`I`.
        edge_weight (torch.Tensor, optional): Interaction weights ``[E]``.
    """
    row, col = edge_index[0], edge_index[1] + num_users
    full = torch.stack([torch.cat([row, col]), torch.cat([col, row])])
    if edge_weight is not None:
        edge_weight = torch.cat([edge_weight, edge_weight])
    return to_sparse_adj(full, num_users + num_items, edge_weight, normalize=True,
                         symmetric=True)


class SparseAdjBuffer(torch.nn.Module):
    r"""A :class:`SparseAdj` held by a model: the arrays of its CSR form (and of its transpose,
    unless it is symmetric) are non-persistent buffers, so that ``model.to(device)`` moves it,
    ``copy.deepcopy(model)`` works (torch cannot deep-copy CSR tensors) and checkpoints hold
    parameters only. :meth:`get` returns the :class:`SparseAdj` (no copy; the same object while
    the buffers are the same tensors).

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
        # (the buffers, the SparseAdj made of them), built by get() and kept while the buffers
        # stay the same tensors: a training step asks for it twice.
        self._built: Optional[Tuple[Tuple[Tensor, ...], SparseAdj]] = None
        self.register_buffer("crow", adj.adj.crow_indices(), persistent=False)
        self.register_buffer("col", adj.adj.col_indices(), persistent=False)
        self.register_buffer("val", adj.adj.values(), persistent=False)
        for name, value in zip(("crow_t", "col_t", "val_t"),
                               (adj.adj_t.crow_indices(), adj.adj_t.col_indices(),
                                adj.adj_t.values())):
            if self.symmetric:
                self._buffers.pop(name, None)
            else:
                self.register_buffer(name, value, persistent=False)

    def get(self) -> SparseAdj:
        buffers = tuple(self._buffers.values())
        if self._built is not None and all(a is b for a, b in zip(self._built[0], buffers)):
            return self._built[1]  # the same buffers: the matrix built from them (it aliases them)
        adj = torch.sparse_csr_tensor(self.crow, self.col, self.val, self.size_,
                                      check_invariants=False)
        if self.symmetric:
            built = SparseAdj(adj, adj, symmetric=True)
        else:
            adj_t = torch.sparse_csr_tensor(self.crow_t, self.col_t, self.val_t,
                                            (self.size_[1], self.size_[0]),
                                            check_invariants=False)
            built = SparseAdj(adj, adj_t, symmetric=False)
        self._built = (buffers, built)
        return built

    def _apply(self, fn, recurse: bool = True):
        self._built = None  # the buffers may be replaced (another device or dtype)
        return super()._apply(fn, recurse)

    def __getstate__(self) -> Dict[str, Any]:
        # Without the built matrix: torch can neither deep-copy nor pickle CSR tensors.
        return {**super().__getstate__(), "_built": None}

    def extra_repr(self) -> str:
        return f"shape={self.size_}, nnz={self.col.numel()}, symmetric={self.symmetric}"

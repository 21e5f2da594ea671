r"""Sparse adjacency matrices with a fast backward pass.

``torch.sparse.mm(A, X)`` differentiates with respect to ``X`` by forming :math:`A^\top` inside every
backward call, which sorts all non-zeros each time. :class:`SparseAdj` forms the transpose once (or
reuses :math:`A` itself when the matrix is symmetric, as the normalised user-item adjacency is) and
:func:`spmm` uses it in the backward pass.

A mini-batch loss needs only some rows of a propagation: :func:`receptive_field` cuts the hops
down to the submatrices those rows depend on, and :func:`series_rows` runs them, forward and
backward.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import warnings

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# CSR is the layout this module is built on; torch's "beta" notice would print on every import.
warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")


class _SpMM(torch.autograd.Function):
    r""":math:`Y = A X`, differentiable in :math:`X` only, with a precomputed :math:`A^\top`."""

    @staticmethod
    def forward(ctx, adj: Tensor, adj_t: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj_t = adj_t
        return csr_mm(adj, x)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return None, None, csr_mm(ctx.adj_t, grad.contiguous())


def csr_mm(adj: Tensor, x: Tensor) -> Tensor:
    r""":math:`A X` for a CSR matrix :math:`A`, written straight into a fresh output.

    ``torch.sparse.mm`` zero-fills its result and copies it once more; ``addmm`` with
    ``beta=0`` into an uninitialised ``out`` does neither (``beta=0`` ignores the old content,
    NaN included), which saves about a third of the time of a CPU product.
    """
    if adj.layout != torch.sparse_csr or x.dim() != 2:
        return torch.sparse.mm(adj, x)
    out = torch.empty(adj.size(0), x.size(1), dtype=x.dtype, device=x.device)
    return torch.addmm(out, adj, x, beta=0.0, out=out)


class SparseAdj:
    r"""A sparse matrix in CSR layout together with its transpose (in CSR as well).

    Args:
        adj (torch.Tensor): A :obj:`torch.sparse_csr` (or COO/CSC, converted) matrix ``[M, N]``.
        adj_t (torch.Tensor, optional): Its transpose ``[N, M]`` in CSR. If :obj:`None`, it is
            formed once here, unless :obj:`symmetric` is :obj:`True`.
        symmetric (bool, optional): Whether :obj:`adj` equals its transpose, so that the backward
            pass can reuse it. :obj:`None` checks. (default: :obj:`None`)
    """

    def __init__(self, adj: Tensor, adj_t: Optional[Tensor] = None,
                 symmetric: Optional[bool] = None):
        adj = to_csr(adj)
        if adj_t is None:
            if symmetric is None:
                adj_t = transpose_csr(adj)
                symmetric = _same_csr(adj, adj_t)
            if symmetric:
                adj_t = adj
            elif adj_t is None:
                adj_t = transpose_csr(adj)
        self.adj = adj
        self.adj_t = to_csr(adj_t)
        self.symmetric = bool(symmetric) if symmetric is not None else self.adj_t is self.adj

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
        adj_t = adj if self.symmetric else self.adj_t.to(*args, **kwargs)
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


def receptive_field(adj: SparseAdj, index: Tensor, num_layers: int, max_fraction: float = 0.5
                    ) -> Tuple[List[SparseAdj], List[Tensor]]:
    r"""The part of :math:`A` that rows :obj:`index` of :math:`\sum_{l=0}^{L} c_l A^l X` depend
    on (any per-channel :math:`c_l`), hop by hop: what a mini-batch loss needs from a full-graph
    propagation.

    Hop :math:`L` is needed on the rows :math:`R_L` = :obj:`index`; hop :math:`l < L` on
    :math:`R_l = R_L \cup \mathcal{N}(R_{l+1})`, the output rows plus every column a row of
    :math:`R_{l+1}` reads. Hop :math:`l` is returned as the submatrix
    :math:`A[R_l, R_{l-1}]` (rows and columns renumbered in sorted node order, with its
    transpose for the backward pass), so that :math:`H_l = A[R_l, R_{l-1}] H_{l-1}` holds the
    exact rows :math:`R_l` of :math:`A^l X`, and forward and backward cost only the non-zeros of
    those rows. Once a hop's rows hold more than :obj:`max_fraction` of the non-zeros, that hop
    and every earlier one use all of :obj:`adj` (:math:`R_l` = every node). On ``sports`` with a
    batch of 1,024 triples (3,072 nodes), hop 3 touches about 12% of the non-zeros and hop 2
    69%.

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
    degree = (crow[1:] - crow[:-1]).long()
    wanted = torch.zeros(n, dtype=torch.bool, device=col.device)
    wanted[index] = True

    # Rows of each hop, from the last one back; None: every node.
    rows: List[Optional[Tensor]] = [None] * (num_layers + 1)
    gathered: List[Optional[Tuple[Tensor, Tensor, Tensor]]] = [None] * (num_layers + 1)
    member = wanted
    for layer in range(num_layers, 0, -1):
        nodes = member.nonzero().squeeze(1)
        if int(degree[nodes].sum()) > max_fraction * max(col.numel(), 1):
            break
        rows[layer] = nodes
        gathered[layer] = _gather_rows(crow, col, val, nodes)
        member = wanted.clone()
        member[gathered[layer][1]] = True

    def positions_of(nodes: Optional[Tensor]) -> Optional[Tensor]:
        if nodes is None:
            return None
        pos = torch.full((n,), -1, dtype=torch.long, device=col.device)
        pos[nodes] = torch.arange(nodes.numel(), device=col.device)
        return pos

    pos = [positions_of(nodes) for nodes in rows]
    hops: List[SparseAdj] = []
    for layer in range(1, num_layers + 1):
        if rows[layer] is None:
            hops.append(adj)
            continue
        sub_crow, sub_col, sub_val = gathered[layer]
        if pos[layer - 1] is not None:  # N(R_l) lies in R_{l-1}: every column has a position
            sub_col = pos[layer - 1][sub_col]
        size = (rows[layer].numel(), n if rows[layer - 1] is None else rows[layer - 1].numel())
        forward = _csr(sub_crow, sub_col, sub_val, size)
        backward = _csr(*_transpose_arrays(sub_crow, sub_col, sub_val, size[1]), size[::-1])
        hops.append(SparseAdj(forward, backward, symmetric=False))
    positions = [index if p is None else p[index] for p in pos]
    return hops, positions


class _SeriesRows(torch.autograd.Function):
    r"""Rows of :math:`\sum_l c_l \odot A^l X` over the hops of :func:`receptive_field`.

    The backward pass runs the hops in reverse through their stored transposes and adds each
    hop's share of the output gradient in place, so no full-size zero buffer or extra sum is
    formed per hop (autograd through gathers would form both)."""

    @staticmethod
    def forward(ctx, x: Tensor, hops: List[SparseAdj], positions: List[Tensor],  # type: ignore
                *coefs: Tensor) -> Tensor:
        out = x[positions[0]] * coefs[0]
        h = x
        for hop, pos, coef in zip(hops, positions[1:], coefs[1:]):
            h = csr_mm(hop.adj, h)
            out.addcmul_(h[pos], coef)
        ctx.hops, ctx.positions, ctx.coefs = hops, positions, coefs
        ctx.num_nodes = x.size(0)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        hops, positions, coefs = ctx.hops, ctx.positions, ctx.coefs
        rows = hops[-1].shape[0] if hops else ctx.num_nodes
        g = grad.new_zeros(rows, grad.size(1))
        g.index_add_(0, positions[-1], grad * coefs[-1])
        for layer in range(len(hops), 0, -1):
            g = csr_mm(hops[layer - 1].adj_t, g)
            g.index_add_(0, positions[layer - 1], grad * coefs[layer - 1])
        return (g, None, None) + (None,) * len(coefs)


def series_rows(x: Tensor, adj: SparseAdj, coefs: List[Tensor], index: Tensor,
                max_fraction: float = 0.5) -> Tensor:
    r"""Rows :obj:`index` of :math:`\sum_{l=0}^{L} c_l \odot A^l X`, differentiable in
    :math:`X`, computing only what those rows depend on (:func:`receptive_field`).

    The propagation of :func:`~stair_pyg.nn.neumann_smooth` (:math:`c_l = w^l / \sum_k w^k`) and
    of LightGCN (:math:`c_l = 1/(L+1)`) restricted to a mini-batch: a BPR loss over a batch of
    triples needs the output rows of its users and items only.

    Args:
        x (torch.Tensor): :math:`X` ``[N, d]``.
        adj (SparseAdj): Square :math:`A` ``[N, N]``.
        coefs (List[torch.Tensor]): :math:`c_0, \dots, c_L`, each ``[d]`` (constants).
        index (torch.Tensor): The output rows (any order, repeats allowed).
        max_fraction (float, optional): See :func:`receptive_field`. (default: :obj:`0.5`)

    Returns:
        ``[len(index), d]``.
    """
    hops, positions = receptive_field(adj, index, len(coefs) - 1, max_fraction)
    return _SeriesRows.apply(x, hops, positions, *coefs)


def _gather_rows(crow: Tensor, col: Tensor, val: Tensor,
                 rows: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    r"""The CSR arrays ``(crow (int64), col, val)`` of the given rows of a CSR matrix."""
    start = crow[rows].long()
    count = crow[rows + 1].long() - start
    new_crow = torch.zeros(rows.numel() + 1, dtype=torch.long, device=col.device)
    torch.cumsum(count, 0, out=new_crow[1:])
    total = int(new_crow[-1])
    ptr = torch.arange(total, device=col.device) + torch.repeat_interleave(
        start - new_crow[:-1], count, output_size=total)
    return new_crow, col[ptr], val[ptr]


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
    return to_csr(adj.transpose(0, 1).to_sparse_csr())


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
    return coo.coalesce().to_sparse_csr()


def sym_norm_edges(edge_index: Tensor, edge_weight: Optional[Tensor],
                   num_nodes: int) -> Tuple[Tensor, Tensor]:
    r"""Symmetric normalisation :math:`w_{ij} / \sqrt{d_i d_j}` with :math:`d_i = \sum_j w_{ij}`
    (no self-loops added). Duplicate edges are summed first; isolated nodes get zero rows."""
    coo = torch.sparse_coo_tensor(
        edge_index,
        torch.ones(edge_index.size(1), device=edge_index.device)
        if edge_weight is None else edge_weight,
        (num_nodes, num_nodes), check_invariants=False).coalesce()
    edge_index, edge_weight = coo.indices(), coo.values()
    deg = torch.zeros(num_nodes, dtype=edge_weight.dtype, device=edge_weight.device)
    deg.scatter_add_(0, edge_index[0], edge_weight)
    deg_inv_sqrt = deg.pow(-0.5)
    deg_inv_sqrt.masked_fill_(torch.isinf(deg_inv_sqrt), 0.0)
    # (d_i^-1/2 d_j^-1/2) w_ij: the product of the two scales first, so that entries (i, j) and
    # (j, i) of a symmetric matrix come out bit-identical.
    return edge_index, deg_inv_sqrt[edge_index[0]] * deg_inv_sqrt[edge_index[1]] * edge_weight


def normalized_adjacency(edge_index: Tensor, num_nodes: int,
                         edge_weight: Optional[Tensor] = None,
                         symmetric: Optional[bool] = None) -> SparseAdj:
    r"""Returns :math:`\hat{A} = D^{-1/2} A D^{-1/2}` as a :class:`SparseAdj` (no self-loops)."""
    edge_index, edge_weight = sym_norm_edges(edge_index, edge_weight, num_nodes)
    adj = csr_from_edge_index(edge_index, edge_weight, (num_nodes, num_nodes))
    return SparseAdj(adj, symmetric=symmetric)


def user_item_adjacency(edge_index: Tensor, num_users: int, num_items: int,
                        edge_weight: Optional[Tensor] = None) -> SparseAdj:
    r"""The symmetric-normalised adjacency of the bipartite user-item graph.

    Users are nodes ``0..U-1`` and items ``U..U+I-1``:

    .. math::
        \hat{A} = D^{-1/2} \begin{pmatrix} 0 & R \\ R^\top & 0 \end{pmatrix} D^{-1/2}

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
    return normalized_adjacency(full, num_users + num_items, edge_weight, symmetric=True)

r"""Sparse adjacency matrices with a fast backward pass.

``torch.sparse.mm(A, X)`` differentiates with respect to ``X`` by forming :math:`A^\top` inside every
backward call, which sorts all non-zeros each time. :class:`SparseAdj` forms the transpose once (or
reuses :math:`A` itself when the matrix is symmetric, as the normalised user-item adjacency is) and
:func:`spmm` uses it in the backward pass.
"""
from __future__ import annotations

from typing import Optional, Tuple

import warnings

import torch
from torch import Tensor

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
    return edge_index, deg_inv_sqrt[edge_index[0]] * edge_weight * deg_inv_sqrt[edge_index[1]]


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

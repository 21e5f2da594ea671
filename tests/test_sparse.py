import pytest
import torch

from stair_pyg.models.base import Recommender
from stair_pyg.nn.knn import knn_cosine
from stair_pyg.nn.sparse import (SparseAdj, normalized_adjacency, spmm, sym_norm_edges,
                                 transpose_csr, user_item_adjacency)


def dense_user_item(edge_index, num_users, num_items):
    n = num_users + num_items
    a = torch.zeros(n, n, dtype=torch.float64)
    for u, i in edge_index.t().tolist():
        a[u, num_users + i] = 1.0
        a[num_users + i, u] = 1.0
    deg = a.sum(1)
    d = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    return d[:, None] * a * d[None, :]


@pytest.mark.parametrize("num_users,num_items,num_edges", [(5, 4, 8), (40, 30, 200), (100, 7, 300)])
def test_user_item_adjacency_matches_dense(num_users, num_items, num_edges):
    g = torch.Generator().manual_seed(num_edges)
    ei = torch.stack([torch.randint(0, num_users, (num_edges,), generator=g),
                      torch.randint(0, num_items, (num_edges,), generator=g)])
    ei = torch.unique(ei, dim=1)
    adj = user_item_adjacency(ei, num_users, num_items)
    assert adj.symmetric and adj.adj_t is adj.adj
    ref = dense_user_item(ei, num_users, num_items)
    torch.testing.assert_close(adj.to_dense().double(), ref, rtol=1e-6, atol=1e-7)


def test_duplicate_edges_are_summed_before_normalisation():
    ei = torch.tensor([[0, 0, 1], [1, 1, 0]])
    ei, w = sym_norm_edges(ei, None, 2)
    # A = [[0, 2], [1, 0]]: d = (2, 1), w_01 = 2 / sqrt(2 * 1)
    dense = torch.zeros(2, 2)
    dense[ei[0], ei[1]] = w
    torch.testing.assert_close(dense, torch.tensor([[0.0, 2 / 2 ** 0.5], [1 / 2 ** 0.5, 0.0]]))


@pytest.mark.parametrize("symmetric", [True, False])
def test_spmm_forward_and_backward_match_dense(symmetric):
    g = torch.Generator().manual_seed(0)
    n, m = 30, 20
    dense = (torch.rand(n, m, generator=g) < 0.2).double() * torch.rand(n, m, generator=g).double()
    if symmetric:
        dense = torch.zeros(n, n, dtype=torch.float64)
        dense[:n, :m] = (torch.rand(n, m, generator=g) < 0.2).double()
        dense = dense + dense.t()
    adj = SparseAdj(dense.to_sparse_csr())
    assert adj.symmetric == symmetric
    x = torch.randn(dense.size(1), 6, dtype=torch.float64, generator=g, requires_grad=True)
    weight = torch.randn(dense.size(0), 6, dtype=torch.float64, generator=g)
    (spmm(adj, x) * weight).sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    (dense @ x_ref * weight).sum().backward()
    torch.testing.assert_close(spmm(adj, x.detach()), dense @ x.detach())
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_spmm_twice_backward_through_layers():
    ei = torch.tensor([[0, 1, 2, 2], [0, 1, 1, 2]])
    adj = user_item_adjacency(ei, 3, 3)
    dense = adj.to_dense().double()
    x = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    out = spmm(adj.to(torch.float64), spmm(adj.to(torch.float64), x))
    out.pow(2).sum().backward()
    x_ref = x.detach().clone().requires_grad_()
    (dense @ (dense @ x_ref)).pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_transpose_csr_and_coo_input():
    dense = torch.tensor([[0.0, 1.0, 2.0], [0.0, 0.0, 3.0]])
    torch.testing.assert_close(transpose_csr(dense.to_sparse_csr()).to_dense(), dense.t())
    adj = SparseAdj(dense.to_sparse())  # COO is converted
    assert adj.shape == (2, 3) and adj.t().shape == (3, 2) and not adj.symmetric
    with pytest.raises(TypeError, match="sparse"):
        SparseAdj(dense)


def test_normalized_adjacency_isolated_node_has_zero_row():
    adj = normalized_adjacency(torch.tensor([[0, 1], [1, 0]]), 3)
    assert adj.to_dense()[2].abs().sum() == 0


@pytest.mark.parametrize("n,f,k,chunk", [(10, 4, 3, 3), (57, 8, 5, 16), (33, 2, 1, None)])
def test_knn_cosine_matches_dense_topk(n, f, k, chunk):
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, f, generator=g, dtype=torch.float64)
    ei = knn_cosine(x, k, chunk_size=chunk)
    xn = torch.nn.functional.normalize(x, dim=1)
    sim = xn @ xn.t()
    sim.fill_diagonal_(float("-inf"))
    ref = sim.topk(k, dim=1).indices
    assert ei.shape == (2, n * k)
    assert torch.equal(ei[0], torch.arange(n).repeat_interleave(k))
    # compare neighbour sets by similarity value (robust to ties)
    got = sim.gather(1, ei[1].view(n, k)).sort(dim=1).values
    torch.testing.assert_close(got, sim.gather(1, ref).sort(dim=1).values)
    assert not (ei[0] == ei[1]).any()


def test_knn_cosine_rejects_too_large_k():
    with pytest.raises(ValueError, match="candidates"):
        knn_cosine(torch.randn(4, 3), 4)


def test_recommender_moves_sparse_adj_attributes():
    class Tiny(Recommender):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(3, 2))
            self.adj = user_item_adjacency(torch.tensor([[0], [0]]), 1, 2)

    model = Tiny().double()
    assert model.adj.adj.dtype == torch.float64 and model.adj.symmetric
    assert "adj" not in dict(model.state_dict())

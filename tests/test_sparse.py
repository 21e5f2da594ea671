import copy
import io
import subprocess
import sys

import pytest
import torch

from stair_pyg.models.base import Recommender
from stair_pyg.nn.knn import knn_cosine
from stair_pyg.nn.sparse import (SparseAdj, SparseAdjBuffer, receptive_field, series_rows, spmm,
                                 to_sparse_adj,
                                 transpose_csr, user_item_adjacency)

# Every test here runs with torch's CSR product and with the numba kernel.
pytestmark = pytest.mark.usefixtures("each_cpu_kernel")


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
    # Rows are edge_index[0] under flow target_to_source.
    dense = to_sparse_adj(ei, 2, flow="target_to_source", normalize=True).to_dense()
    # A = [[0, 2], [1, 0]]: d = (2, 1), w_01 = 2 / sqrt(2 * 1)
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
    adj = to_sparse_adj(torch.tensor([[0, 1], [1, 0]]), 3, normalize=True)
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


def test_recommender_moves_sparse_adj_buffers():
    class Tiny(Recommender):
        def __init__(self):
            super().__init__()
            self.num_users, self.num_items = 1, 2
            self.w = torch.nn.Parameter(torch.ones(3, 2))
            self.adj = SparseAdjBuffer(user_item_adjacency(torch.tensor([[0], [0]]), 1, 2))

    model = Tiny().double()
    assert model.adj.get().adj.dtype == torch.float64 and model.adj.get().symmetric
    assert "adj" not in dict(model.state_dict())


@pytest.mark.parametrize("symmetric", [True, False])
def test_sparse_adj_buffer_keeps_its_matrix_while_the_buffers_stay(symmetric):
    dense = random_sparse(6, 0.3, seed=2, symmetric=symmetric)
    holder = torch.nn.Module()
    holder.adj = SparseAdjBuffer(SparseAdj(dense.float().to_sparse_csr()))
    first = holder.adj.get()
    assert holder.adj.get() is first  # built once
    holder.adj.val.mul_(2.0)  # in place: the matrix aliases the buffers
    torch.testing.assert_close(holder.adj.get().to_dense(), 2 * dense.float())
    copied = copy.deepcopy(holder)  # the built matrix is not copied (CSR cannot be)
    torch.testing.assert_close(copied.adj.get().to_dense(), 2 * dense.float())
    assert copied.adj.get() is not first
    holder.double()  # new buffers: a new matrix
    assert holder.adj.get() is not first and holder.adj.get().adj.dtype == torch.float64
    x = torch.randn(6, 3, dtype=torch.float64)
    torch.testing.assert_close(holder.adj.get().adj @ x, 2 * dense @ x)
    holder.adj.set(SparseAdj(dense.to_sparse_csr()))  # replaced: the new matrix
    torch.testing.assert_close(holder.adj.get().to_dense(), dense)
    buffer = io.BytesIO()
    torch.save(holder, buffer)  # pickles without the built matrix


def test_no_csr_notice_after_import():
    # A fresh process: in this one, any earlier CSR tensor may have shown the notice already.
    code = ("import warnings, torch, stair_pyg.nn.sparse\n"
            "warnings.simplefilter('error')\n"
            "torch.sparse_csr_tensor(torch.tensor([0, 1]), torch.tensor([0]), "
            "torch.tensor([1.0]), (1, 1), check_invariants=False)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def random_sparse(n, density, seed, symmetric):
    g = torch.Generator().manual_seed(seed)
    dense = (torch.rand(n, n, generator=g) < density).double() * torch.rand(n, n, generator=g,
                                                                            dtype=torch.float64)
    if symmetric:
        dense = dense + dense.t()
    return dense


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("num_layers", [0, 1, 3, 4])
@pytest.mark.parametrize("max_fraction", [0.0, 0.5, 1.0])
def test_receptive_field_hops_are_exact_rows_of_dense_powers(symmetric, num_layers, max_fraction,
                                                             each_cpu_kernel):
    n = 60
    dense = random_sparse(n, 0.04, seed=num_layers, symmetric=symmetric)
    adj = SparseAdj(dense.to_sparse_csr())
    g = torch.Generator().manual_seed(1)
    index = torch.cat([torch.randint(0, n, (7,), generator=g), torch.tensor([3, 3])])  # repeats
    hops, positions = receptive_field(adj, index, num_layers, max_fraction=max_fraction)
    assert len(hops) == num_layers and len(positions) == num_layers + 1

    x = torch.randn(n, 5, dtype=torch.float64, generator=g, requires_grad=True)
    weights = torch.randn(num_layers + 1, index.numel(), 5, dtype=torch.float64, generator=g)
    h, total = x, (x[positions[0]] * weights[0]).sum()
    for layer, (hop, pos) in enumerate(zip(hops, positions[1:]), start=1):
        h = spmm(hop, h)
        total = total + (h[pos] * weights[layer]).sum()
    total.backward()

    x_ref = x.detach().clone().requires_grad_()
    h, expected = x_ref, (x_ref[index] * weights[0]).sum()
    for layer in range(1, num_layers + 1):
        h = dense @ h
        expected = expected + (h[index] * weights[layer]).sum()
    expected.backward()
    torch.testing.assert_close(total, expected)
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_receptive_field_restricts_to_the_rows_needed(each_cpu_kernel):
    n = 80
    dense = random_sparse(n, 0.03, seed=5, symmetric=True)
    adj = SparseAdj(dense.to_sparse_csr())
    index = torch.tensor([4, 9, 9, 31])
    hops, positions = receptive_field(adj, index, 3, max_fraction=1.0)
    # Hop 3: exactly the distinct output rows and every column; hop 2: those rows plus their
    # neighbours, and columns those rows read.
    rows3 = torch.unique(index)
    assert hops[2].shape[0] == rows3.numel()
    assert hops[2].nnz() == int((dense[rows3] != 0).sum())
    rows2 = torch.unique(torch.cat([rows3, (dense[rows3] != 0).nonzero()[:, 1]]))
    assert hops[2].shape[1] == rows2.numel() == hops[1].shape[0]
    assert torch.equal(positions[3], torch.tensor([0, 1, 1, 2]))
    # Past max_fraction the hop and every earlier one are the whole matrix.
    hops, positions = receptive_field(adj, index, 3, max_fraction=0.0)
    assert all(hop is adj for hop in hops)
    assert all(torch.equal(p, index) for p in positions)
    with pytest.raises(ValueError, match="square"):
        receptive_field(SparseAdj(torch.ones(3, 4).to_sparse_csr()), index[:1], 2)


def test_symmetric_normalisation_is_bit_symmetric():
    g = torch.Generator().manual_seed(3)
    ei = torch.stack([torch.randint(0, 40, (300,), generator=g),
                      torch.randint(0, 30, (300,), generator=g)])
    dense = user_item_adjacency(ei, 40, 30).to_dense()
    assert torch.equal(dense, dense.t())


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("num_layers", [0, 1, 3])
@pytest.mark.parametrize("max_fraction", [0.0, 0.5, 1.0])
def test_series_rows_value_and_gradient_match_dense(symmetric, num_layers, max_fraction):
    n, d = 50, 4
    dense = random_sparse(n, 0.05, seed=10 + num_layers, symmetric=symmetric)
    adj = SparseAdj(dense.to_sparse_csr())
    g = torch.Generator().manual_seed(3)
    index = torch.cat([torch.randint(0, n, (6,), generator=g), torch.tensor([7, 7])])
    coefs = [torch.rand(d, dtype=torch.float64, generator=g) for _ in range(num_layers + 1)]
    x = torch.randn(n, d, dtype=torch.float64, generator=g, requires_grad=True)
    upstream = torch.randn(index.numel(), d, dtype=torch.float64, generator=g)
    out = series_rows(x, adj, coefs, index, max_fraction=max_fraction)
    (out * upstream).sum().backward()

    x_ref = x.detach().clone().requires_grad_()
    h, ref = x_ref, x_ref * coefs[0]
    for layer in range(1, num_layers + 1):
        h = dense @ h
        ref = ref + h * coefs[layer]
    (ref[index] * upstream).sum().backward()
    torch.testing.assert_close(out, ref[index])
    torch.testing.assert_close(x.grad, x_ref.grad)

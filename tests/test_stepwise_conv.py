import math

import pytest
import torch
from torch_geometric import EdgeIndex
from torch_geometric.typing import WITH_TORCH_SPARSE

from stair_pyg.nn import SparseAdj, StepwiseConv, neumann_smooth, stepwise_beta

# Every test here runs with torch's CSR product and with the numba kernel.
pytestmark = pytest.mark.usefixtures("each_cpu_kernel")


def rel_err(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def random_graph(n, num_edges, seed, symmetric=False):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (num_edges,), generator=gen)
    dst = torch.randint(0, n, (num_edges,), generator=gen)
    keep = src != dst
    edge_index = torch.stack([src[keep], dst[keep]])
    if symmetric:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    edge_weight = torch.rand(edge_index.size(1), generator=gen) + 0.5
    return edge_index, edge_weight


def dense_adj_t(edge_index, edge_weight, n, normalize=True):
    r"""Float64 dense matrix that multiplies the features: ``A[dst, src] += w``."""
    a = torch.zeros(n, n, dtype=torch.float64)
    w = torch.ones(edge_index.size(1), dtype=torch.float64) if edge_weight is None \
        else edge_weight.double()
    a.index_put_((edge_index[1], edge_index[0]), w, accumulate=True)
    if normalize:
        deg = a.sum(dim=1)
        dis = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
        a = dis.view(-1, 1) * a * dis.view(1, -1)
    return a


def dense_fsc(x, a, beta, num_layers):
    r"""Independent float64 reference: (1-b)/(1-b^{L+1}) sum_l (b A)^l X, limit 1/(L+1)."""
    x, beta = x.double(), beta.double()
    out = torch.zeros_like(x)
    h = x
    for l in range(num_layers + 1):
        out += h
        h = (a @ h) * beta
    one = beta == 1
    safe = torch.where(one, torch.zeros_like(beta), beta)
    scale = torch.where(one, torch.full_like(beta, 1.0 / (num_layers + 1)),
                        (1 - safe) / (1 - safe.pow(num_layers + 1)))
    return out * scale


def test_stepwise_beta_matches_formula():
    beta = stepwise_beta(8, 0.5)
    expected = [1 - (0.1 + 0.9 * math.sqrt(j / 8)) for j in range(8)]
    assert torch.allclose(beta, torch.tensor(expected), atol=1e-7)
    assert beta[0] == pytest.approx(0.9)
    assert torch.all(beta[1:] < beta[:-1])
    assert torch.all(stepwise_beta(5, 0.0) == 0)  # 0^0 = 1
    with pytest.raises(ValueError):
        stepwise_beta(4, -1.0)


@pytest.mark.parametrize("n,num_edges,channels", [(7, 15, 4), (40, 200, 16), (150, 900, 32)])
@pytest.mark.parametrize("gamma,num_layers", [(0.1, 3), (0.5, 1), (1.0, 5), (0.05, 0)])
def test_forward_every_format_matches_dense(n, num_edges, channels, gamma, num_layers):
    torch.manual_seed(n + num_layers)
    edge_index, edge_weight = random_graph(n, num_edges, seed=n)  # directed, isolated nodes
    x = torch.randn(n, channels)
    conv = StepwiseConv(channels, num_layers, gamma)
    ref = dense_fsc(x, dense_adj_t(edge_index, edge_weight, n), stepwise_beta(channels, gamma),
                    num_layers)

    adj_t = torch.sparse_coo_tensor(torch.stack([edge_index[1], edge_index[0]]), edge_weight,
                                    (n, n))
    inputs = {
        "edge_index": (edge_index, edge_weight),
        "EdgeIndex": (EdgeIndex(edge_index, sparse_size=(n, n)), edge_weight),
        "EdgeIndex-sorted": (EdgeIndex(edge_index, sparse_size=(n, n)).sort_by("col")[0],
                             edge_weight[EdgeIndex(edge_index).sort_by("col")[1]]),
        "coo": (adj_t, None),
        "csr": (adj_t.to_sparse_csr(), None),
        "csc": (adj_t.to_sparse_csc(), None),
    }
    if WITH_TORCH_SPARSE:
        from torch_sparse import SparseTensor
        inputs["SparseTensor"] = (SparseTensor.from_torch_sparse_coo_tensor(adj_t.coalesce()),
                                  None)
    for name, (adj, weight) in inputs.items():
        out = conv(x, adj, weight)
        assert out.shape == (n, channels)
        assert rel_err(out, ref) < 1e-5, name
        with torch.no_grad():  # the no-transpose inference path
            assert rel_err(conv(x, adj, weight), ref) < 1e-5, name

    # An already normalised SparseAdj is used as it is.
    norm = dense_adj_t(edge_index, edge_weight, n).float().to_sparse_csr()
    assert rel_err(conv(x, SparseAdj(norm)), ref) < 1e-5


def test_normalize_false_and_unweighted():
    edge_index, _ = random_graph(30, 120, seed=3, symmetric=True)
    x = torch.randn(30, 8)
    conv = StepwiseConv(8, num_layers=2, gamma=0.3, normalize=False)
    a = dense_adj_t(edge_index, None, 30, normalize=False)
    ref = dense_fsc(x, a, conv.beta, 2)
    assert rel_err(conv(x, edge_index), ref) < 1e-5
    csr = torch.sparse_coo_tensor(edge_index, torch.ones(edge_index.size(1)),
                                  (30, 30)).to_sparse_csr()
    assert rel_err(conv(x, csr), ref) < 1e-5


@pytest.mark.parametrize("fmt", ["edge_index", "EdgeIndex", "csr"])
@pytest.mark.parametrize("gamma,num_layers", [(0.1, 3), (0.7, 2)])
def test_gradient_wrt_features_matches_dense(fmt, gamma, num_layers):
    n, channels = 60, 12
    edge_index, edge_weight = random_graph(n, 300, seed=11)
    torch.manual_seed(0)
    x = torch.randn(n, channels, requires_grad=True)
    upstream = torch.randn(n, channels)
    conv = StepwiseConv(channels, num_layers, gamma)
    if fmt == "edge_index":
        adj, weight = edge_index, edge_weight
    elif fmt == "EdgeIndex":
        adj, weight = EdgeIndex(edge_index, sparse_size=(n, n)), edge_weight
    else:
        adj = torch.sparse_coo_tensor(edge_index.flip(0), edge_weight, (n, n)).to_sparse_csr()
        weight = None
    for _ in range(2):  # twice: the cached transpose must serve repeated backward passes
        x.grad = None
        (conv(x, adj, weight) * upstream).sum().backward()
        x64 = x.detach().double().requires_grad_()
        ref = dense_fsc(x64, dense_adj_t(edge_index, edge_weight, n), conv.beta, num_layers)
        (ref * upstream.double()).sum().backward()
        assert rel_err(x.grad, x64.grad) < 1e-5


def test_gradcheck_edge_weight_and_features():
    n, channels = 9, 3
    edge_index, edge_weight = random_graph(n, 25, seed=5)
    conv = StepwiseConv(channels, num_layers=3, gamma=0.4).double()
    x = torch.randn(n, channels, dtype=torch.float64, requires_grad=True)
    w = edge_weight.double().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: conv(a, edge_index, b), (x, w))
    # A sparse adjacency whose values require a gradient takes the message-passing path.
    values = w.detach().clone().requires_grad_()

    def sparse_fn(a, v):
        adj = torch.sparse_coo_tensor(edge_index.flip(0), v, (n, n))
        return conv(a, adj)

    assert torch.autograd.gradcheck(sparse_fn, (x, values))


def test_beta_one_is_plain_average():
    n, channels, num_layers = 25, 6, 3
    edge_index, edge_weight = random_graph(n, 100, seed=2, symmetric=True)
    beta = torch.tensor([1.0, 1.0, 0.5, 0.9, 1.0, 0.0])
    conv = StepwiseConv(channels, num_layers, beta=beta)
    x = torch.randn(n, channels)
    out = conv(x, edge_index, edge_weight)
    a = dense_adj_t(edge_index, edge_weight, n)
    assert torch.isfinite(out).all()
    assert rel_err(out, dense_fsc(x, a, beta, num_layers)) < 1e-5
    mean = sum(torch.linalg.matrix_power(a, l) @ x.double() for l in range(num_layers + 1))
    mean = mean / (num_layers + 1)
    assert rel_err(out[:, :2], mean[:, :2]) < 1e-5
    assert rel_err(out[:, 5], x[:, 5]) < 1e-6  # beta = 0: no propagation


def test_neumann_smooth_near_one_is_stable():
    x = torch.randn(10, 2, dtype=torch.float64)
    a = torch.rand(10, 10, dtype=torch.float64)
    a = (a + a.t()) / 20
    w = torch.tensor([1.0 - 1e-12, 1.0], dtype=torch.float64)
    out = neumann_smooth(x, lambda h: a @ h, w, 4)
    mean = sum(torch.linalg.matrix_power(a, l) @ x for l in range(5)) / 5
    assert torch.allclose(out, mean, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError):
        neumann_smooth(x, lambda h: a @ h, torch.tensor([-1.0, 0.5]), 1)


@pytest.mark.parametrize("fmt", ["edge_index", "csr"])
def test_cached_reuses_normalised_graph(fmt):
    n = 20
    e1, w1 = random_graph(n, 80, seed=1)
    e2, w2 = random_graph(n, 80, seed=2)
    x = torch.randn(n, 4)

    def as_fmt(e, w):
        if fmt == "edge_index":
            return e, w
        return torch.sparse_coo_tensor(e.flip(0), w, (n, n)).to_sparse_csr(), None

    conv = StepwiseConv(4, 2, 0.1, cached=True)
    first = conv(x, *as_fmt(e1, w1))
    assert torch.equal(conv(x, *as_fmt(e2, w2)), first)  # the cache wins
    conv.reset_parameters()
    ref = dense_fsc(x, dense_adj_t(e2, w2, n), conv.beta, 2)
    assert rel_err(conv(x, *as_fmt(e2, w2)), ref) < 1e-5


def test_sparse_tensor_format():
    pytest.importorskip("torch_sparse")
    from torch_sparse import SparseTensor
    n = 30
    edge_index, edge_weight = random_graph(n, 120, seed=4)
    x = torch.randn(n, 8)
    conv = StepwiseConv(8, 3, 0.2)
    adj_t = SparseTensor(row=edge_index[1], col=edge_index[0], value=edge_weight,
                         sparse_sizes=(n, n))
    ref = dense_fsc(x, dense_adj_t(edge_index, edge_weight, n), conv.beta, 3)
    assert rel_err(conv(x, adj_t), ref) < 1e-5
    assert rel_err(conv(x, adj_t.set_value(None)), dense_fsc(
        x, dense_adj_t(edge_index, None, n), conv.beta, 3)) < 1e-5


def test_repr_buffer_and_errors():
    conv = StepwiseConv(16, num_layers=2, gamma=0.2)
    assert repr(conv) == "StepwiseConv(16, num_layers=2, gamma=0.2)"
    assert "beta" in dict(conv.named_buffers())
    assert torch.allclose(conv.beta, stepwise_beta(16, 0.2))
    assert "custom beta" in repr(StepwiseConv(2, beta=torch.tensor([0.5, 0.5])))
    with pytest.raises(ValueError, match="channels"):
        StepwiseConv(4, beta=torch.ones(3))
    with pytest.raises(ValueError, match="node features"):
        conv(torch.randn(5, 8), torch.tensor([[0, 1], [1, 0]]))
    adj = torch.sparse_coo_tensor(torch.tensor([[0, 1], [1, 0]]), torch.ones(2), (3, 3))
    with pytest.raises(ValueError, match="does not match"):
        conv(torch.randn(4, 16), adj)


@pytest.mark.parametrize("fmt", ["SparseAdj", "csr", "edge_index"])
@pytest.mark.parametrize("gamma,num_layers", [(0.1, 3), (1.0, 2), (0.3, 0)])
def test_index_returns_exact_rows_and_gradient_of_the_full_series(fmt, gamma, num_layers):
    n, channels = 70, 8
    edge_index, edge_weight = random_graph(n, 200, seed=5, symmetric=True)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(n, channels, generator=gen, requires_grad=True)
    index = torch.cat([torch.randint(0, n, (9,), generator=gen), torch.tensor([0, 0])])
    upstream = torch.randn(index.numel(), channels, generator=gen)
    conv = StepwiseConv(channels, num_layers, gamma)
    dense = dense_adj_t(edge_index, edge_weight, n)
    if fmt == "SparseAdj":
        adj, weight = SparseAdj(dense.float().to_sparse_csr()), None
        conv.normalize = False
    elif fmt == "csr":
        adj = torch.sparse_coo_tensor(edge_index.flip(0), edge_weight, (n, n)).to_sparse_csr()
        weight = None
    else:
        adj, weight = edge_index, edge_weight
    out = conv(x, adj, weight, index=index)
    assert out.shape == (index.numel(), channels)
    (out * upstream).sum().backward()

    x64 = x.detach().double().requires_grad_()
    ref = dense_fsc(x64, dense, conv.beta, num_layers)[index]
    (ref * upstream.double()).sum().backward()
    assert rel_err(out, ref) < 1e-5
    assert rel_err(x.grad, x64.grad) < 1e-5


def test_neumann_smooth_index_with_a_callable_propagation():
    n = 30
    edge_index, edge_weight = random_graph(n, 90, seed=8, symmetric=True)
    dense = dense_adj_t(edge_index, edge_weight, n)
    x = torch.randn(n, 4, dtype=torch.float64)
    weight = torch.tensor([0.0, 0.3, 0.9, 1.0], dtype=torch.float64)
    index = torch.tensor([5, 1, 5])
    full = neumann_smooth(x, lambda h: dense @ h, weight, 3)
    torch.testing.assert_close(neumann_smooth(x, lambda h: dense @ h, weight, 3, index=index),
                               full[index])
    torch.testing.assert_close(full, dense_fsc(x, dense, weight, 3))


def _input_forms(edge_index, edge_weight, n):
    r"""The same weighted graph in every adjacency form PyG users pass (all read as adj_t)."""
    from stair_pyg.nn import to_sparse_adj

    adj = to_sparse_adj(edge_index, n, edge_weight)
    forms = {
        "edge_index": (edge_index, edge_weight),
        "EdgeIndex": (EdgeIndex(edge_index, sparse_size=(n, n)), edge_weight),
        "csr": (adj.adj, None),
        "coo": (adj.adj.to_sparse_coo(), None),
        "csc": (adj.adj.to_sparse_csc(), None),
    }
    if WITH_TORCH_SPARSE:
        from torch_sparse import SparseTensor

        forms["SparseTensor"] = (SparseTensor.from_torch_sparse_csr_tensor(adj.adj), None)
    return forms


@pytest.mark.parametrize("with_index", [False, True])
def test_propagate_hooks_fire_once_per_hop_for_every_input_form(with_index):
    n, d, num_layers = 25, 6, 3
    edge_index, edge_weight = random_graph(n, 90, seed=7)
    x0 = torch.randn(n, d, dtype=torch.float64)
    index = torch.tensor([0, 3, 3, 24]) if with_index else None
    a = dense_adj_t(edge_index, edge_weight, n)
    beta = stepwise_beta(d, 0.3).double()
    ref_x = x0.clone().requires_grad_()
    ref = dense_fsc(ref_x, a, beta, num_layers)
    ref = ref if index is None else ref[index]
    ref.square().sum().backward()
    for name, (adj, weight) in _input_forms(edge_index, edge_weight.double(), n).items():
        conv = StepwiseConv(d, num_layers, gamma=0.3).double()
        calls = []
        pre = conv.register_propagate_forward_pre_hook(lambda m, inputs: calls.append("pre"))
        post = conv.register_propagate_forward_hook(lambda m, inputs, out: calls.append("post"))
        x = x0.clone().requires_grad_()
        out = conv(x, adj, weight, index=index)
        out.square().sum().backward()
        assert calls.count("pre") == num_layers and calls.count("post") == num_layers, name
        assert rel_err(out, ref) < 1e-10, name
        assert rel_err(x.grad, ref_x.grad) < 1e-10, name
        pre.remove()
        post.remove()
        conv(x0, adj, weight)
        assert len(calls) == 2 * num_layers  # removed hooks stay silent

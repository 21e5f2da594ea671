import io

import pytest
import torch

from stair_pyg.nn import stepwise_beta
from stair_pyg.nn.sparse import SparseAdjBuffer, to_sparse_adj
from stair_pyg.optim import StepwiseAdamW
from stair_pyg.optim.stepwise_adamw import has_fused_adamw

# Every test here runs with torch's CSR product and with the numba kernel.
pytestmark = pytest.mark.usefixtures("each_cpu_kernel")


def random_graph(n, num_edges, seed, symmetric):
    gen = torch.Generator().manual_seed(seed)
    src = torch.randint(0, n, (num_edges,), generator=gen)
    dst = torch.randint(0, n, (num_edges,), generator=gen)
    keep = src != dst
    edge_index = torch.stack([src[keep], dst[keep]])
    if symmetric:
        edge_index = torch.cat([edge_index, edge_index.flip(0)], dim=1)
    return edge_index, torch.rand(edge_index.size(1), generator=gen)


def as_graph(edge_index, edge_weight, n):
    return to_sparse_adj(edge_index, n, edge_weight)


def reference_run(p0s, grads, lr, wd, betas, eps, graph=None, w=None, num_layers=0):
    r"""Hand-written float64 AdamW (+ BSC smoothing of the stacked direction when graph)."""
    ps = [p.double().clone() for p in p0s]
    ms = [torch.zeros_like(p) for p in ps]
    vs = [torch.zeros_like(p) for p in ps]
    b1, b2 = betas
    if graph is not None:
        n = sum(p.size(0) for p in ps)
        a = torch.zeros(n, n, dtype=torch.float64)
        ew = torch.ones(graph[0].size(1)) if graph[1] is None else graph[1]
        a.index_put_((graph[0][1], graph[0][0]), ew.double(), accumulate=True)  # dst <- src
        w = w.double()
        scale = torch.where(w == 1, torch.full_like(w, 1.0 / (num_layers + 1)),
                            (1 - w) / (1 - w.pow(num_layers + 1)))
    for t, step_grads in enumerate(grads, start=1):
        deltas = []
        for i, g in enumerate(step_grads):
            g = g.double()
            ps[i] = ps[i] * (1 - lr * wd)
            ms[i] = b1 * ms[i] + (1 - b1) * g
            vs[i] = b2 * vs[i] + (1 - b2) * g * g
            m_hat = ms[i] / (1 - b1 ** t)
            v_hat = vs[i] / (1 - b2 ** t)
            deltas.append(m_hat / (v_hat.sqrt() + eps))
        if graph is not None:
            delta = torch.cat(deltas)
            total, h = delta.clone(), delta
            for _ in range(num_layers):
                h = (a @ h) * w
                total = total + h
            deltas = list(torch.split(total * scale, [p.size(0) for p in ps]))
        ps = [p - lr * d for p, d in zip(ps, deltas)]
    return ps


def run(opt, params, grads):
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = g.clone()
        opt.step()


def rel_err(a, b):
    a, b = a.detach().double(), b.detach().double()
    return float((a - b).norm() / b.norm())


FUSED = [False, None] if hasattr(torch, "_fused_adamw_") else [False]


@pytest.mark.parametrize("fused", FUSED)
@pytest.mark.parametrize("wd", [0.0, 0.3])
def test_plain_groups_equal_torch_adamw(wd, fused):
    torch.manual_seed(0)
    p0 = torch.randn(6, 4)
    grads = [[torch.randn(6, 4)] for _ in range(6)]
    a = torch.nn.Parameter(p0.clone())
    b = torch.nn.Parameter(p0.clone())
    run(StepwiseAdamW([a], lr=0.05, weight_decay=wd, betas=(0.8, 0.99), fused=fused), [a], grads)
    run(torch.optim.AdamW([b], lr=0.05, weight_decay=wd, betas=(0.8, 0.99), foreach=False),
        [b], grads)
    assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("n_rows,channels", [((12, 8), 6), ((40, 25), 16)])
@pytest.mark.parametrize("gamma,num_layers", [(0.1, 3), (0.5, 1), (1.0, 2)])
@pytest.mark.parametrize("symmetric,weighted", [(True, True), (False, True), (True, False)])
@pytest.mark.parametrize("fused", FUSED)
def test_smoothed_group_matches_reference(n_rows, channels, gamma, num_layers, symmetric,
                                          weighted, fused):
    torch.manual_seed(sum(n_rows) + num_layers)
    n = sum(n_rows)
    edge_index, edge_weight = random_graph(n, 4 * n, seed=n, symmetric=symmetric)
    edge_weight = edge_weight if weighted else None
    w = 1 - stepwise_beta(channels, gamma)  # BSC weights
    users0 = torch.randn(10, channels)
    items0 = [torch.randn(r, channels) for r in n_rows]  # two tables stacked into one graph
    grads = [[torch.randn(10, channels)] + [torch.randn(r, channels) for r in n_rows]
             for _ in range(5)]
    users = torch.nn.Parameter(users0.clone())
    items = [torch.nn.Parameter(p.clone()) for p in items0]
    opt = StepwiseAdamW([{"params": [users]},
                         {"params": items, "graph": as_graph(edge_index, edge_weight, n), "beta": w,
                          "num_layers": num_layers}],
                        lr=0.01, weight_decay=0.1, betas=(0.9, 0.999), eps=1e-8, fused=fused)
    run(opt, [users] + items, grads)
    ref_users = reference_run([users0], [g[:1] for g in grads], 0.01, 0.1, (0.9, 0.999), 1e-8)
    ref_items = reference_run(items0, [g[1:] for g in grads], 0.01, 0.1, (0.9, 0.999), 1e-8,
                              graph=(edge_index, edge_weight), w=w, num_layers=num_layers)
    assert rel_err(users - users0, ref_users[0] - users0.double()) < 1e-5
    for p, p0, ref in zip(items, items0, ref_items):
        assert rel_err(p - p0, ref - p0.double()) < 1e-5
    # The smoothing did something (not plain AdamW).
    plain = reference_run(items0, [g[1:] for g in grads], 0.01, 0.1, (0.9, 0.999), 1e-8)
    if num_layers > 0:
        assert rel_err(items[0] - items0[0], plain[0] - items0[0].double()) > 1e-3


def test_weight_one_is_plain_average_of_hops():
    n, d, num_layers = 15, 3, 2
    edge_index, edge_weight = random_graph(n, 50, seed=1, symmetric=True)
    p0, g = torch.randn(n, d), torch.randn(n, d)
    w = torch.ones(d)
    p = torch.nn.Parameter(p0.clone())
    run(StepwiseAdamW([{"params": [p], "graph": as_graph(edge_index, edge_weight, n), "beta": w,
                        "num_layers": num_layers}], lr=0.1), [p], [[g]])
    ref = reference_run([p0], [[g]], 0.1, 0.0, (0.9, 0.999), 1e-8, (edge_index, edge_weight), w,
                        num_layers)
    assert torch.isfinite(p).all()
    assert rel_err(p - p0, ref[0] - p0.double()) < 1e-5


def test_state_dict_round_trip():
    torch.manual_seed(3)
    n, d = 20, 8
    edge_index, edge_weight = random_graph(n, 60, seed=2, symmetric=True)
    w = 1 - stepwise_beta(d, 0.2)
    grads = [[torch.randn(5, d), torch.randn(n, d)] for _ in range(6)]

    graph = as_graph(edge_index, edge_weight, n)

    def make(u, i):
        return StepwiseAdamW([{"params": [u]},
                              {"params": [i], "graph": graph, "beta": w,
                               "num_layers": 2}], lr=0.02, weight_decay=0.05)

    u, i = torch.nn.Parameter(torch.randn(5, d)), torch.nn.Parameter(torch.randn(n, d))
    opt = make(u, i)
    run(opt, [u, i], grads[:3])
    buffer = io.BytesIO()
    torch.save({"u": u.detach().clone(), "i": i.detach().clone(), "opt": opt.state_dict()},
               buffer)
    assert all("graph" not in group for group in opt.state_dict()["param_groups"])
    run(opt, [u, i], grads[3:])

    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    u2, i2 = torch.nn.Parameter(saved["u"]), torch.nn.Parameter(saved["i"])
    opt2 = make(u2, i2)
    opt2.load_state_dict(saved["opt"])
    assert opt2.param_groups[1]["graph"] is graph  # the graph survives the load
    assert int(opt2.state[i2]["step"]) == 3
    run(opt2, [u2, i2], grads[3:])
    assert torch.equal(u, u2) and torch.equal(i, i2)


def test_errors():
    p = torch.nn.Parameter(torch.randn(4, 3))
    graph = as_graph(torch.tensor([[0, 1], [1, 0]]), None, 4)
    with pytest.raises(ValueError, match="beta"):
        StepwiseAdamW([{"params": [p], "graph": graph, "num_layers": 1}])
    with pytest.raises(ValueError, match="shape"):
        StepwiseAdamW([{"params": [p], "graph": graph, "beta": torch.ones(2)}])
    with pytest.raises(ValueError, match="rows"):
        StepwiseAdamW([{"params": [p], "graph": as_graph(torch.tensor([[0], [9]]), None, 10),
                        "beta": torch.ones(3)}])
    with pytest.raises(ValueError, match="SparseAdj"):
        StepwiseAdamW([{"params": [p], "graph": (torch.tensor([[0], [1]]), None),
                        "beta": torch.ones(3)}])
    with pytest.raises(ValueError):
        StepwiseAdamW([p], lr=-1.0)
    q = torch.nn.Parameter(torch.randn(2, 3))
    opt = StepwiseAdamW([{"params": [p, q], "graph": as_graph(torch.tensor([[0, 1], [1, 0]]),
                                                                 None, 6),
                          "beta": torch.ones(3), "num_layers": 1}])
    p.grad = torch.randn(4, 3)
    with pytest.raises(RuntimeError, match="gradient"):
        opt.step()


def test_fused_kernel_signature_matches_the_step_by_step_update():
    # Fails loudly if torch changes the private kernel behind fused_adamw_direction.
    if not has_fused_adamw():
        pytest.skip("this torch build has no fused AdamW kernel")
    torch.manual_seed(0)
    p0, g = torch.randn(6, 4), torch.randn(6, 4)
    fused, plain = torch.nn.Parameter(p0.clone()), torch.nn.Parameter(p0.clone())
    for p, flag in ((fused, True), (plain, False)):
        opt = StepwiseAdamW([p], lr=0.05, weight_decay=0.1, fused=flag)
        for _ in range(3):
            p.grad = g.clone()
            opt.step()
    assert rel_err(fused - p0, plain - p0.double()) < 1e-6
    assert StepwiseAdamW([fused], fused=True).fused


def test_graph_buffer_follows_the_model_and_steps_stay_on_the_parameter_device():
    n, d = 12, 4
    edge_index, edge_weight = random_graph(n, 40, seed=4, symmetric=True)
    holder = torch.nn.Module()
    holder.items = torch.nn.Parameter(torch.randn(n, d))
    holder.graph = SparseAdjBuffer(as_graph(edge_index, edge_weight, n))
    opt = StepwiseAdamW([{"params": [holder.items], "graph": holder.graph, "beta": torch.ones(d),
                          "num_layers": 2}], lr=0.01)
    holder.double()  # the optimizer reads the moved graph at its next step
    holder.items.grad = torch.randn(n, d, dtype=torch.float64)
    opt.step()
    assert opt.state[holder.items]["step"].device == holder.items.device
    assert holder.graph.get().adj.dtype == torch.float64

r"""The approximate (IVF) cosine kNN against a dense float64 reference, and its plumbing into the
modality graph, STAIR and FREEDOM."""
import numpy as np
import pytest
import torch

from stair_pyg.nn import knn_cosine, modality_graph
from stair_pyg.nn.knn import knn_recall, spherical_kmeans


def dense_topk(x, k, exclude_self=True):
    r"""Float64 reference: the k most cosine-similar rows of every row, as sets."""
    x = x.double().numpy()
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = x @ x.T
    if exclude_self:
        np.fill_diagonal(sim, -np.inf)
    return [set(np.argsort(-sim[i], kind="stable")[:k].tolist()) for i in range(len(x))]


def neighbour_sets(edge_index, n, k):
    cols = edge_index[1].view(n, k)
    return [set(row.tolist()) for row in cols]


def clustered(n, f, num_centers, noise, seed):
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(num_centers, f, generator=gen)
    labels = torch.randint(0, num_centers, (n,), generator=gen)
    return centers[labels] + noise * torch.randn(n, f, generator=gen)


@pytest.mark.parametrize("exclude_self", [True, False])
@pytest.mark.parametrize("n,f,k,clusters", [(200, 8, 5, 7), (120, 30, 3, 12), (50, 4, 10, 50)])
def test_ivf_probing_every_cluster_is_exact(n, f, k, clusters, exclude_self):
    x = torch.randn(n, f, generator=torch.Generator().manual_seed(n + f))
    got = knn_cosine(x, k, exclude_self=exclude_self, method="ivf", num_clusters=clusters,
                     num_probes=clusters)
    assert neighbour_sets(got, n, k) == dense_topk(x, k, exclude_self)
    # Same layout as the exact search: rows ascending, each k times, most similar first.
    assert torch.equal(got[0], torch.arange(n).repeat_interleave(k))
    xn = x.double() / x.double().norm(dim=1, keepdim=True)
    sims = (xn[got[0]] * xn[got[1]]).sum(1).view(n, k)
    assert bool((sims[:, :-1] >= sims[:, 1:] - 1e-6).all())


def test_ivf_recall_on_clustered_features():
    n, k = 3000, 10
    x = clustered(n, 64, num_centers=30, noise=0.8, seed=0)
    exact = knn_cosine(x, k)
    approx = knn_cosine(x, k, method="ivf")  # defaults: C = ceil(sqrt(8 n)), 8 probes
    recall = knn_recall(approx, exact, n)
    assert recall >= 0.95
    # Probing a single cluster misses the neighbours across cluster borders: recall drops.
    one = knn_recall(knn_cosine(x, k, method="ivf", num_probes=1, num_clusters=200), exact, n)
    assert one < recall


def test_ivf_rows_are_valid_neighbours():
    n, k = 400, 6
    x = torch.randn(n, 16, generator=torch.Generator().manual_seed(3))
    # Many tiny clusters and one probe: clusters hold fewer than k + 1 rows, so more clusters
    # must be probed until k candidates other than the row itself exist.
    ei = knn_cosine(x, k, method="ivf", num_clusters=300, num_probes=1)
    cols = ei[1].view(n, k)
    assert bool((cols != torch.arange(n)[:, None]).all())
    assert all(len(set(row.tolist())) == k for row in cols)
    assert int(cols.min()) >= 0 and int(cols.max()) < n


def test_ivf_is_deterministic_per_seed():
    x = clustered(500, 12, 10, 1.0, seed=1)
    a = knn_cosine(x, 4, method="ivf", num_probes=2, seed=5)
    b = knn_cosine(x, 4, method="ivf", num_probes=2, seed=5)
    assert torch.equal(a, b)


def test_ivf_bad_arguments():
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match="unknown kNN method"):
        knn_cosine(x, 2, method="hnsw")
    with pytest.raises(ValueError, match="num_probes"):
        knn_cosine(x, 2, method="ivf", num_probes=0)
    with pytest.raises(ValueError, match="num_clusters"):
        knn_cosine(x, 2, method="ivf", num_clusters=0)
    with pytest.raises(ValueError, match="candidates"):
        knn_cosine(x, 20, method="ivf")


def test_spherical_kmeans_converges_to_a_lloyd_fixed_point():
    gen = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(torch.randn(6, 32, generator=gen), dim=1)
    labels = torch.arange(600) % 6
    scale = torch.rand(600, 1, generator=gen) * 5 + 0.5  # norms must not matter
    x = (directions[labels] + 0.3 * torch.randn(600, 32, generator=gen)) * scale
    centroids = spherical_kmeans(x, 5, num_iters=60, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(centroids.norm(dim=1), torch.ones(5), atol=1e-5)
    # Float64 reference of one Lloyd step from the result: nothing moves.
    unit = x.double() / x.double().norm(dim=1, keepdim=True)
    assign = (unit @ centroids.double().t()).argmax(dim=1)
    step = torch.zeros(5, 32, dtype=torch.float64).index_add_(0, assign, unit)
    step = step / step.norm(dim=1, keepdim=True)
    assert torch.allclose(step, centroids.double(), atol=1e-5)
    # And it improves on its starting point (5 random rows): a higher total similarity.
    objective = (unit @ centroids.double().t()).max(dim=1).values.sum()
    start = unit[torch.randperm(600, generator=torch.Generator().manual_seed(1))[:5]]
    assert float(objective) > float((unit @ start.t()).max(dim=1).values.sum())
    with pytest.raises(ValueError, match="num_clusters"):
        spherical_kmeans(x, 601)


def test_knn_recall():
    exact = torch.tensor([[0, 0, 1, 1], [1, 2, 0, 2]])
    approx = torch.tensor([[0, 0, 1, 1], [2, 1, 0, 3]])
    assert knn_recall(approx, exact, 4) == pytest.approx(0.75)


def test_modality_graph_ivf_full_probes_equals_exact():
    gen = torch.Generator().manual_seed(7)
    feats = [torch.randn(90, 10, generator=gen), torch.randn(90, 5, generator=gen)]
    exact = modality_graph(feats, [4, 1])
    approx = modality_graph(feats, [4, 1], method="ivf", num_probes=10 ** 6)
    assert torch.equal(exact[0], approx[0])
    assert torch.allclose(exact[1], approx[1])


def test_models_accept_knn_method():
    from stair_pyg.data.synthetic import make_synthetic
    from stair_pyg.models import FREEDOM, STAIR

    ds = make_synthetic(num_users=60, num_items=40, interactions_per_user=5, seed=0)
    exact = STAIR.from_data(ds.data)
    approx = STAIR.from_data(ds.data, knn_method="ivf")
    assert approx.hparams["knn_method"] == "ivf"
    assert approx.item_adj.get().nnz() > 0
    # 40 items: C = ceil(sqrt(320)) = 18 clusters, 8 probes. The graph is a kNN graph of the
    # same size per item; most edges agree with the exact one.
    assert approx.item_adj.get().nnz() <= 2 * exact.item_adj.get().nnz()
    with pytest.raises(ValueError, match="knn_method"):
        STAIR(3, 4, knn_method="annoy")
    freedom = FREEDOM.from_data(ds.data, knn_method="ivf")
    assert freedom.hparams["knn_method"] == "ivf"
    with pytest.raises(ValueError, match="knn_method"):
        FREEDOM.from_data(ds.data, knn_method="annoy")

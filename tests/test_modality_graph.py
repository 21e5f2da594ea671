import numpy as np
import pytest
import torch

from stair_pyg.nn import modality_graph


def dense_reference(features, ks, normalize=True):
    r"""Float64 dense reference: per-modality top-k cosine (diagonal excluded), summed over
    modalities, max-symmetrised, D^-1/2 A D^-1/2."""
    n = features[0].shape[0]
    a = np.zeros((n, n))
    for x, k in zip(features, ks):
        x = x.double().numpy()
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        for i in range(n):
            a[i, np.argsort(-sim[i])[:k]] += 1.0
    a = np.maximum(a, a.T)
    if normalize:
        deg = a.sum(1)
        dis = np.where(deg > 0, deg ** -0.5, 0.0)
        a = dis[:, None] * a * dis[None, :]
    return a


def to_dense(edge_index, edge_weight, n):
    a = torch.zeros(n, n, dtype=torch.float64)
    a[edge_index[0], edge_index[1]] = edge_weight.double()
    return a.numpy()


@pytest.mark.parametrize("n,dims,ks", [(30, (8,), (3,)), (80, (16, 6), (5, 1)),
                                       (150, (32, 10, 4), (4, 2, 1))])
@pytest.mark.parametrize("normalize", [True, False])
def test_matches_dense_reference(n, dims, ks, normalize):
    gen = torch.Generator().manual_seed(n)
    feats = [torch.randn(n, f, generator=gen) for f in dims]
    edge_index, edge_weight = modality_graph(feats, ks, normalize=normalize, chunk_size=7)
    ref = dense_reference(feats, ks, normalize)
    assert edge_index.size(1) == np.count_nonzero(ref)  # exactly the reference edge set
    got = to_dense(edge_index, edge_weight, n)
    assert np.array_equal(got != 0, ref != 0)
    assert np.abs(got - ref).max() <= 1e-6 * np.abs(ref).max()
    assert edge_weight.dtype == torch.float32
    assert not bool((edge_index[0] == edge_index[1]).any())


def unit(degrees):
    angles = torch.tensor(degrees, dtype=torch.float32).deg2rad()
    return torch.stack([angles.cos(), angles.sin()], dim=1)


def test_weight_two_and_max_of_reciprocal_edges():
    # k = 1 per modality. text: 0->1, 1->0, 2->1, 3->2; image: 0->1, 1->0, 2->3, 3->1.
    text, image = unit([0, 10, 30, 80]), unit([0, 10, 90, 35])
    ei, ew = modality_graph([text, image], [1, 1], normalize=False)
    a = to_dense(ei, ew, 4)
    assert np.array_equal(a, dense_reference([text, image], [1, 1], normalize=False))
    assert a[0, 1] == 2 and a[1, 0] == 2  # found by both modalities: weight 2
    assert a[2, 3] == 1 and a[3, 2] == 1  # 3->2 and 2->3 once each: max 1 (a sum would give 2)
    assert a[1, 2] == 1 and a[2, 1] == 1  # one direction only
    assert a[1, 3] == 1 and a[3, 1] == 1
    assert a[0, 2] == 0 and a[0, 3] == 0
    assert ei.size(1) == 8


def test_max_symmetrisation_keeps_the_larger_direction():
    # text: 0->1, 1->0, 2->3, 3->2, 4->3; image: 0->1, 1->0, 2->3, 3->4, 4->3.
    text, image = unit([0, 10, 50, 60, 120]), unit([0, 10, 50, 70, 72])
    ei, ew = modality_graph([text, image], [1, 1], normalize=False)
    a = to_dense(ei, ew, 5)
    assert np.array_equal(a, dense_reference([text, image], [1, 1], normalize=False))
    assert a[2, 3] == 2 and a[3, 2] == 2  # 2->3 twice, 3->2 once: max(2, 1)
    assert a[3, 4] == 2 and a[4, 3] == 2  # 4->3 twice, 3->4 once
    assert a[0, 1] == 2 and a[2, 4] == 0
    # Normalised: D^-1/2 A D^-1/2 of exactly these counts.
    ei, ew = modality_graph([text, image], [1, 1])
    deg = a.sum(1)
    ref = a / np.sqrt(deg[:, None] * deg[None, :])
    assert np.abs(to_dense(ei, ew, 5) - ref).max() < 1e-6


def test_errors_and_zero_k():
    x = torch.randn(10, 4)
    with pytest.raises(ValueError):
        modality_graph([x], [1, 2])
    with pytest.raises(ValueError):
        modality_graph([x, torch.randn(9, 4)], [1, 1])
    with pytest.raises(ValueError):
        modality_graph([], [])
    ei, ew = modality_graph([x, torch.randn(10, 3)], [2, 0])
    ref = dense_reference([x], [2])
    assert np.abs(to_dense(ei, ew, 10) - ref).max() < 1e-6

import numpy as np
import pytest
import torch

from stair_pyg.nn import whiten


def spectrum_features(n, f, seed, decay=0.93):
    r"""Features with well separated singular values (so the leading subspace is well defined)
    and a non-zero column mean."""
    rng = np.random.default_rng(seed)
    r = min(n, f)
    u, _ = np.linalg.qr(rng.standard_normal((n, r)))
    v, _ = np.linalg.qr(rng.standard_normal((f, r)))
    s = 10.0 * decay ** np.arange(r)
    x = (u * s) @ v.T + rng.standard_normal((1, f)) * 3.0
    return torch.tensor(x, dtype=torch.float32)


def reference(x, dim, rtol=1e-6):
    r"""Dense float64 reference: centred thin SVD, directions above rtol * s_max, zero columns
    for the rest, scaled by sqrt(N / dim)."""
    a = x.double().numpy()
    a = a - a.mean(axis=0, keepdims=True)
    u, s, _ = np.linalg.svd(a, full_matrices=False)
    keep = min(dim, int((s > rtol * s[0]).sum()))
    out = np.zeros((a.shape[0], dim))
    out[:, :keep] = u[:, :keep] * np.sqrt(a.shape[0] / dim)
    return torch.from_numpy(out)


def rel_err(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm())


@pytest.mark.parametrize("n,f,dim", [(200, 32, 8), (500, 100, 64), (120, 70, 16), (64, 16, 16)])
@pytest.mark.parametrize("method", ["gram", "svd", "auto"])
def test_whiten_matches_dense_reference(n, f, dim, method):
    x = spectrum_features(n, f, seed=n + f)
    w = whiten(x, dim, method=method, chunk_size=37)  # odd chunk: exercises the blocks
    ref = reference(x, dim)
    assert w.shape == (n, dim) and w.dtype == torch.float32
    assert rel_err(w @ w.t(), ref @ ref.t()) < 1e-5
    # The kept columns are uncorrelated, centred, with mean square one... scaled by sqrt(N/dim).
    gram = w.double().t() @ w.double()
    assert torch.allclose(gram, torch.eye(dim, dtype=torch.float64) * n / dim, atol=1e-4 * n)
    assert torch.allclose(w.double().mean(0), torch.zeros(dim, dtype=torch.float64), atol=1e-5)


def test_methods_agree_including_signs():
    x = spectrum_features(300, 50, seed=1)
    a, b = whiten(x, 20, method="gram"), whiten(x, 20, method="svd")
    assert rel_err(a, b) < 1e-5
    # Sign convention: the largest-magnitude entry of every column is positive.
    cols = torch.arange(20)
    assert torch.all(a[a.abs().argmax(0), cols] > 0)


def test_fewer_feature_dims_than_dim_gives_zero_columns():
    # 19 "genres" whitened to 64 dimensions: 19 directions at most.
    torch.manual_seed(0)
    x = (torch.rand(300, 19) < 0.2).float()
    w = whiten(x, 64)
    ref = reference(x, 64)
    assert w.shape == (300, 64)
    assert torch.all(w[:, 19:] == 0)
    assert torch.count_nonzero(w.abs().sum(0)) == 19
    assert rel_err(w @ w.t(), ref @ ref.t()) < 1e-5


def test_fewer_items_than_dim_and_rank_deficiency():
    # N = 10 < dim: centring leaves at most 9 directions; the null direction is a zero column.
    x = spectrum_features(10, 40, seed=3)
    for method in ("svd", "gram"):
        w = whiten(x, 16, method=method)
        assert torch.count_nonzero(w.abs().sum(0)) == 9
        ref = reference(x, 16)
        assert rel_err(w @ w.t(), ref @ ref.t()) < 1e-5
    # Duplicate columns: rank 5 although f = 10.
    base = spectrum_features(100, 5, seed=4)
    w = whiten(torch.cat([base, 2 * base], dim=1), 8)
    assert torch.count_nonzero(w.abs().sum(0)) == 5
    assert torch.all(whiten(torch.ones(7, 3), 4) == 0)  # constant features: nothing to keep


def test_float64_and_errors():
    x = spectrum_features(80, 12, seed=5).double()
    assert whiten(x, 4).dtype == torch.float64
    with pytest.raises(ValueError):
        whiten(x, 0)
    with pytest.raises(ValueError):
        whiten(x[0], 4)
    with pytest.raises(ValueError):
        whiten(x, 4, method="eig")


@pytest.mark.parametrize("method", ["gram", "svd"])
def test_fitted_transform_reproduces_whiten_and_places_new_rows(method):
    # fit_whiten's (mean, projection) applied to the fitted rows is whiten's output; applied to
    # a copy of a row it gives that row's coordinates (what STAIR.add_items relies on).
    from stair_pyg.nn import fit_whiten

    gen = torch.Generator().manual_seed(3)
    x = torch.randn(40, 12, generator=gen, dtype=torch.float64) @ torch.randn(
        12, 12, generator=gen, dtype=torch.float64)
    w, transform = fit_whiten(x, 16, method=method)  # 16 > 12: padded zero columns
    assert torch.equal(w, whiten(x, 16, method=method))
    assert transform.mean.shape == (12,) and transform.projection.shape == (12, 16)
    torch.testing.assert_close(transform.apply(x), w, rtol=0, atol=1e-10)
    torch.testing.assert_close(transform.apply(x[[5]]), w[[5]], rtol=0, atol=1e-10)
    with pytest.raises(ValueError, match=r"shape \[N, 12\]"):
        transform.apply(x[:, :5])


def test_whiten_leaves_float64_input_unchanged():
    # The Gram route once centred a float64 input in place (its blocks were views).
    x = torch.randn(30, 6, dtype=torch.float64) + 3.0
    before = x.clone()
    a = whiten(x, 4, method="gram")
    assert torch.equal(x, before)
    assert torch.equal(a, whiten(x, 4, method="gram"))
    torch.testing.assert_close(a.abs(), whiten(x, 4, method="svd").abs(), rtol=0, atol=1e-8)

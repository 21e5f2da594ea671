import pytest
import torch

from stair_pyg.data import EDGE, make_synthetic, modality_features

SMALL = dict(num_users=600, num_items=300, interactions_per_user=15,
             modalities={"text": 32, "image": 48})


def auc(pos: torch.Tensor, neg: torch.Tensor) -> float:
    return ((pos[:, None] > neg[None, :]).double().mean()
            + 0.5 * (pos[:, None] == neg[None, :]).double().mean()).item()


def scores(ds, modality="text"):
    r"""AUC of test items against random items for a content-only score (mean of the user's train
    item features . item feature) and a collaborative-only score (item co-occurrence)."""
    train, _, test = ds.splits
    num_users, num_items = ds.data["user"].num_nodes, ds.data["item"].num_nodes
    x = ds.data["item"][f"{modality}_feat"].double()
    x = x - x.mean(0)
    a = torch.zeros(num_users, num_items, dtype=torch.float64)
    a[train[0], train[1]] = 1.0
    content = (a @ x) / a.sum(1, keepdim=True).clamp(min=1) @ x.t()
    co = a.t() @ a
    co.fill_diagonal_(0)
    collab = a @ co
    gen = torch.Generator().manual_seed(0)
    neg_items = torch.randint(num_items, (test.size(1),), generator=gen)
    out = []
    for s in (content, collab):
        out.append(auc(s[test[0], test[1]], s[test[0], neg_items]))
    return out


def test_defaults_and_contract():
    data, splits = make_synthetic()
    assert data["user"].num_nodes == 2000 and data["item"].num_nodes == 1000
    feats = modality_features(data)
    assert list(feats) == ["text", "image"]
    assert feats["text"].shape == (1000, 384) and feats["image"].shape == (1000, 512)
    assert feats["text"].dtype == torch.float32
    total = sum(s.size(1) for s in splits)
    assert 15 * 2000 < total < 25 * 2000
    assert torch.equal(data[EDGE].edge_index, splits.train)
    # every user has train, valid and test; no pair appears twice
    for split in splits:
        assert split[0].unique().numel() == 2000
    pairs = torch.cat(list(splits), 1)
    assert torch.unique(pairs[0] * 1000 + pairs[1]).numel() == total


def test_deterministic():
    a = make_synthetic(seed=3, cold_start_items=0.1, **SMALL)
    b = make_synthetic(seed=3, cold_start_items=0.1, **SMALL)
    c = make_synthetic(seed=4, cold_start_items=0.1, **SMALL)
    for x, y in zip(a.splits, b.splits):
        assert torch.equal(x, y)
    for m, x in modality_features(a.data).items():
        assert torch.equal(x, b.data["item"][f"{m}_feat"])  # bitwise
    assert not torch.equal(a.data["item"].text_feat, c.data["item"].text_feat)
    assert not torch.equal(a.splits.train, c.splits.train)


def test_content_weight_steers_who_wins():
    content1, collab1 = scores(make_synthetic(content_weight=1.0, seed=1, **SMALL))
    content0, collab0 = scores(make_synthetic(content_weight=0.0, seed=1, **SMALL))
    content_half, _ = scores(make_synthetic(content_weight=0.5, seed=1, **SMALL))
    # pure content: features predict held-out choices well; pure collaborative: not at all
    assert content1 > 0.85
    assert content0 < 0.6
    assert content0 < content_half < content1
    # with no content, co-occurrence beats the features by far
    assert collab0 > content0 + 0.25


def test_noise_per_modality():
    ds = make_synthetic(content_weight=1.0, noise={"text": 0.5, "image": 30.0}, seed=2, **SMALL)
    text_auc, _ = scores(ds, "text")
    image_auc, _ = scores(ds, "image")
    assert text_auc > image_auc + 0.1


def gini(degree: torch.Tensor) -> float:
    d = degree.double().sort().values
    n = d.numel()
    i = torch.arange(1, n + 1, dtype=torch.float64)
    return float(((2 * i - n - 1) * d).sum() / (n * d.sum()))


def test_popularity_skew():
    flat = make_synthetic(popularity=0.0, seed=5, **SMALL)
    skew = make_synthetic(popularity=1.5, seed=5, **SMALL)
    g_flat = gini(torch.bincount(torch.cat(list(flat.splits), 1)[1], minlength=300))
    g_skew = gini(torch.bincount(torch.cat(list(skew.splits), 1)[1], minlength=300))
    assert g_skew > g_flat + 0.15


def test_cold_start_items():
    num_items = SMALL["num_items"]
    ds = make_synthetic(cold_start_items=0.2, seed=6, **SMALL)
    train, valid, test = ds.splits
    trained = torch.zeros(num_items, dtype=torch.bool)
    trained[train[1]] = True
    held = torch.zeros(num_items, dtype=torch.bool)
    held[torch.cat([valid[1], test[1]])] = True
    cold = held & ~trained
    base = make_synthetic(cold_start_items=0.0, seed=6, **SMALL)
    trained0 = torch.zeros(num_items, dtype=torch.bool)
    trained0[base.splits.train[1]] = True
    # 60 planted cold items (20 %) with no train edge, held-out interactions, and features
    assert int(cold.sum()) >= 60
    assert int((~trained).sum()) >= int((~trained0).sum()) + 50
    assert ds.data["item"].text_feat.shape[0] == num_items
    # their interactions sit in valid or test, never in train
    assert not torch.isin(train[1], cold.nonzero().view(-1)).any()


@pytest.mark.parametrize("kwargs", [dict(content_weight=1.5), dict(cold_start_items=1.0),
                                    dict(noise={"audio": 1.0}), dict(num_items=1)])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        make_synthetic(**kwargs)

import pytest
import torch

from stair_pyg.train.sampling import NegativeSampler


def _pairs(seed=0, num_users=50, num_items=30):
    gen = torch.Generator().manual_seed(seed)
    users = torch.randint(0, num_users, (400,), generator=gen)
    items = torch.randint(0, num_items, (400,), generator=gen)
    return torch.stack([users, items])


def test_negatives_are_never_training_positives():
    pairs = _pairs()
    sampler = NegativeSampler(pairs, 50, 30)
    positives = {tuple(p) for p in pairs.t().tolist()}
    users = pairs[0].repeat(20)
    neg = sampler.sample(users, torch.Generator().manual_seed(1))
    assert neg.shape == users.shape and neg.dtype == torch.long
    assert int(neg.min()) >= 0 and int(neg.max()) < 30
    assert not any((u, i) in positives for u, i in zip(users.tolist(), neg.tolist()))


def test_deterministic_given_generator():
    pairs = _pairs()
    sampler = NegativeSampler(pairs, 50, 30)
    users = pairs[0]
    a = sampler.sample(users, torch.Generator().manual_seed(7))
    b = sampler.sample(users, torch.Generator().manual_seed(7))
    c = sampler.sample(users, torch.Generator().manual_seed(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_uniform_over_non_positives():
    # User 0 has items {0, 1, 2} of 10: each of the other 7 must come up with probability 1/7.
    pairs = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 5]])
    sampler = NegativeSampler(pairs, 2, 10)
    neg = sampler.sample(torch.zeros(70000, dtype=torch.long), torch.Generator().manual_seed(0))
    freq = torch.bincount(neg, minlength=10).double() / neg.numel()
    assert freq[:3].sum() == 0
    assert torch.allclose(freq[3:], torch.full((7,), 1 / 7, dtype=torch.float64), atol=0.01)


def test_user_with_every_item_raises():
    pairs = torch.tensor([[0, 0, 0, 1], [0, 1, 2, 0]])
    sampler = NegativeSampler(pairs, 2, 3)
    assert set(sampler.sample(torch.tensor([1] * 50)).tolist()) <= {1, 2}
    with pytest.raises(ValueError, match="all candidate items"):
        sampler.sample(torch.tensor([1, 0]))


def test_interacted_only_is_uniform_over_interacted_non_positives():
    # Items 0..9; only 0, 1, 2, 5, 7 and 8 have training interactions. User 0 has {0, 1, 2}:
    # its negatives must be uniform over {5, 7, 8}; the cold items 3, 4, 6, 9 never come up.
    pairs = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 1, 2, 5, 7, 8]])
    sampler = NegativeSampler(pairs, 2, 10, interacted_only=True)
    neg = sampler.sample(torch.zeros(30000, dtype=torch.long), torch.Generator().manual_seed(0))
    freq = torch.bincount(neg, minlength=10).double() / neg.numel()
    assert freq[[0, 1, 2, 3, 4, 6, 9]].sum() == 0
    assert torch.allclose(freq[[5, 7, 8]], torch.full((3,), 1 / 3, dtype=torch.float64),
                          atol=0.01)
    # User 1 has every interacted item but one cold item would still be free under "all".
    pairs = torch.tensor([[0, 1, 1], [0, 0, 1]])
    assert NegativeSampler(pairs, 2, 3).sample(torch.tensor([1])).item() == 2
    with pytest.raises(ValueError, match="all candidate items"):
        NegativeSampler(pairs, 2, 3, interacted_only=True).sample(torch.tensor([1]))


def test_interacted_only_serves_cold_start_items():
    # Under uniform negatives, cold-start items only ever appear as negatives and STAIR ranks
    # them last; drawn from interacted items only, they keep what MI and BSC give them.
    from stair_pyg.data import make_synthetic
    from stair_pyg.train import run_experiment

    dataset = make_synthetic(num_users=400, num_items=200, interactions_per_user=15,
                             cold_start_items=0.2, content_weight=0.7, seed=3)
    base = {"dataset": {"format": "synthetic"}, "model": {"name": "stair", "embedding_dim": 32},
            "train": {"epochs": 30, "patience": 0, "batch_size": 256, "weight_decay": 0.3,
                      "checkpoint_every": 0, "ks": [50], "metric": "NDCG@50", "device": "cpu"}}
    cold = {}
    for negatives in ("all", "interacted"):
        config = {**base, "train": {**base["train"], "negatives": negatives}}
        result = run_experiment(config, progress=False, dataset=dataset)
        cold[negatives] = result["test"]["cold/Recall@50"]
    assert cold["interacted"] > cold["all"] + 0.05, cold
